"""Throughput benchmark: vitalflow against the limit (inflate only) and the straightforward way.

    .venv/bin/python bench/run.py [--cases 16] [--repeat 5] [--scale 200] [--json bench/result.json]

On one fixed, seeded corpus (built once and cached in ``bench/.corpus``: 16 cases of 2 to 4 hours
with waves, both file layouts, ~20 MB each) it measures, each method in its own process so that
peak memory is its own:

  (a) limit:  only inflating each file's gzip stream with the fastest inflater available;
  (b) naive:  per case ``vitaldb.VitalFile`` + ``to_numpy(interval=1)`` + pandas ffill,
              normalization and a window loop (what a researcher writes today);
  (c) vitalflow: per case read + transform + encode + TFRecord write (default config: GZIP), one
              process; and the whole ``preprocess`` run (workers, commits, card, read-back
              verification) with 1 worker and with all CPUs (and once more uncompressed).

(a), (c) and the runs are repeated (``--repeat``, alternating) and their medians reported; (c)/(a)
compares (c) with (a) timed in the same process on the same case just before, so that the shared
machine's drift between minutes cancels out (the ratio of the separate children is printed too).

It prints per-case milliseconds (median, max), cases/s, input MB/s, peak RSS per process, output
bytes per window and the ratios (c)/(a) and (b)/(c), and writes everything as JSON. ``--scale N``
adds a run over N cases without waves next to the same cases' 16-case run, to show that per-case
time and memory do not grow with the number of cases.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from corpus import cached_corpus

from vitalflow.runtime.pool import peak_rss_mb

HERE = Path(__file__).resolve().parent
CORPUS_SEED = 2026


def corpus(path: Path, cases: int, waves: bool) -> list[Path]:
    return cached_corpus(path, cases, CORPUS_SEED, None, waves)


# --- the methods, each run in a child process -------------------------------------------------
def method_inflate(files: list[Path]) -> list[float]:
    from vitalflow.vital.read import inflate  # the fastest inflater vitalflow found

    times = []
    for f in files:
        t = time.perf_counter()
        inflate(f.read_bytes(), str(f))
        times.append(time.perf_counter() - t)
    return times


def method_naive(files: list[Path], clinical: Path) -> list[float]:
    import numpy as np
    import pandas as pd
    import vitaldb

    from vitalflow.spec import load_spec

    spec = load_spec()
    rows = pd.read_csv(clinical).set_index("caseid")
    times = []
    for f in files:
        t = time.perf_counter()
        row = rows.loc[int(f.stem)]
        vf = vitaldb.VitalFile(str(f))
        columns = []
        for feat in spec.timeseries:
            names = [s.track for s in feat.sources]
            data = vf.to_numpy(names, interval=1)
            df = pd.DataFrame(data, columns=names)
            series = df.bfill(axis=1).iloc[:, 0]  # first source with a value, per second
            if feat.name in ("Propofol_INF", "Remifentanil_INF", "Noradrenalin_INF"):
                series = series * 20 / row["weight"]
            series = series.ffill().fillna(feat.impute.before_first_value)
            lo, hi = feat.range
            columns.append(((series - lo) / (hi - lo) * 2 - 1).clip(-1, 1).to_numpy(np.float32))
        x = np.stack(columns, axis=1)
        windows, targets = [], []
        for s in range(0, len(x) - 330 + 1, 30):
            windows.append(x[s : s + 300].copy())
            targets.append(x[s + 329, 7:15].copy())
        if windows:
            np.stack(windows), np.stack(targets)
        times.append(time.perf_counter() - t)
    return times


def method_vitalflow_cases(files: list[Path], clinical: Path) -> tuple[list[float], list[float], int, int]:
    """Per case: read + transform + encode + write to a TFRecord file, in this process; and (a)
    timed on the same case right before it."""
    from vitalflow.dataset.split import assign_splits
    from vitalflow.run.inputs import find_case_files
    from vitalflow.run.preprocess_job import PreprocessJob, subject_key
    from vitalflow.spec import load_config
    from vitalflow.vital.clinical import read_clinical

    config, spec = load_config()
    patients = read_clinical(clinical.read_bytes(), str(clinical))
    ids = [int(f.stem) for f in files]
    split_of = assign_splits({c: subject_key(patients[c]) for c in ids}, config.split.fractions, 0)
    job = PreprocessJob(str(files[0].parent), find_case_files(files[0].parent), patients, split_of, config, spec)
    from vitalflow.vital.read import inflate

    times, paired, windows, size = [], [], 0, 0
    with tempfile.TemporaryDirectory() as tmp:
        for f in files:
            t = time.perf_counter()
            inflate(f.read_bytes(), str(f))  # (a) on the same case just before: drift cancels out
            t1 = time.perf_counter()
            outcome, block = job.run_case(int(f.stem)).payload
            (Path(tmp) / "out.tfrecord").write_bytes(block)
            times.append(time.perf_counter() - t1)
            paired.append(t1 - t)
            windows += outcome.windows
            size += (Path(tmp) / "out.tfrecord").stat().st_size
    return times, paired, windows, size


def method_labels_cost(files: list[Path], clinical: Path) -> dict:
    """Per case, read + transform + encode with the default spec and with the same spec without its
    decision targets, alternating on each case (paired: drift cancels out): what the labels cost."""
    from vitalflow.dataset.split import assign_splits
    from vitalflow.run.inputs import find_case_files
    from vitalflow.run.preprocess_job import PreprocessJob, subject_key
    from vitalflow.spec import load_config
    from vitalflow.vital.clinical import read_clinical

    config, spec = load_config()
    patients = read_clinical(clinical.read_bytes(), str(clinical))
    ids = [int(f.stem) for f in files]
    split_of = assign_splits({c: subject_key(patients[c]) for c in ids}, config.split.fractions, 0)
    jobs = {name: PreprocessJob(str(files[0].parent), find_case_files(files[0].parent), patients, split_of, config, s)
            for name, s in (("with", spec), ("without", spec.model_copy(update={"decisions": None})))}
    times: dict[str, list[float]] = {"with": [], "without": []}
    for i, f in enumerate(files):
        for name in (("with", "without") if i % 2 else ("without", "with")):
            t = time.perf_counter()
            jobs[name].run_case(int(f.stem))
            times[name].append(time.perf_counter() - t)
    return {"times": times["with"], "without": times["without"]}


def method_vitalflow_run(files: list[Path], clinical: Path, workers: int, compression: str) -> dict:
    from vitalflow.run.preprocess import RunOptions, preprocess
    from vitalflow.spec import load_config
    from vitalflow.spec.model import Config, Output

    _, spec = load_config()
    config = Config(output=Output(compression=compression))
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        result = preprocess(str(files[0].parent), str(clinical), tmp, config, spec,
                            cases=[int(f.stem) for f in files], options=RunOptions(workers=workers))
        wall = time.perf_counter() - t
        assert result.verify.ok and result.card["cases"]["failed"] == 0, result.card["failed"]
        windows = sum(s["windows"] for s in result.card["splits"].values())
        size = sum(p["bytes"] for parts in result.card["files"].values() for p in parts)
        return {"wall_s": wall, "windows": windows, "output_bytes": size, "card_timings_s": result.card["timings_s"],
                "peak_rss_mb": result.card["run"]["peak_rss_mb"]}


def child(args) -> None:
    files = [Path(p) for p in args.files]
    clinical = files[0].parent / "clinical.csv"
    out: dict = {}
    if args.method == "inflate":
        out["times"] = method_inflate(files)
    elif args.method == "labels":
        out.update(method_labels_cost(files, clinical))
    elif args.method == "naive":
        out["times"] = method_naive(files, clinical)
    elif args.method == "cases":
        times, paired, windows, size = method_vitalflow_cases(files, clinical)
        out.update(times=times, paired_inflate=paired, windows=windows, output_bytes=size)
    else:
        out.update(method_vitalflow_run(files, clinical, args.workers, args.compression))
    out["peak_rss_mb"] = out.get("peak_rss_mb") or {"main": peak_rss_mb()}  # of this child process
    print(json.dumps(out))


def run_child(method: str, files: list[Path], workers: int = 1, compression: str = "GZIP") -> dict:
    cmd = [sys.executable, __file__, "--child", method, "--workers", str(workers), "--compression", compression,
           "--files", *map(str, files)]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def per_case(children: list[dict], mb: float) -> dict:
    """Per-case figures over the repeats of one method (each repeat: every case once)."""
    times = [t for child in children for t in child["times"]]
    return {**summarize(times, mb * len(children)),
            "peak_rss_mb": {"main": max(child["peak_rss_mb"]["main"] for child in children)}}


def run_children_at_once(method: str, files: list[Path], n: int) -> list[dict]:
    """``n`` children of one method started together (the machine's own parallel capacity)."""
    cmd = [sys.executable, __file__, "--child", method, "--files", *map(str, files)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(n)]
    outs = [p.communicate()[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    return [json.loads(o.strip().splitlines()[-1]) for o in outs]


def summarize(times: list[float], mb: float) -> dict:
    return {"per_case_ms_median": round(1000 * statistics.median(times), 1),
            "per_case_ms_max": round(1000 * max(times), 1),
            "cases_per_s": round(len(times) / sum(times), 2),
            "input_mb_per_s": round(mb / sum(times), 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=16)
    ap.add_argument("--scale", type=int, default=0, help="also run N cases without waves (e.g. 200)")
    ap.add_argument("--json", type=Path, default=HERE / "result.json")
    ap.add_argument("--repeat", type=int, default=5, help="runs of each timed method, alternating")
    ap.add_argument("--labels-cost", action="store_true",
                    help="only the paired per-case cost of the decision labels (spec with and without decisions)")
    ap.add_argument("--child")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--compression", default="GZIP")
    ap.add_argument("--files", nargs="*")
    args = ap.parse_args()
    if args.child:
        args.method = args.child
        return child(args)

    t0 = time.perf_counter()
    files = corpus(HERE / ".corpus", args.cases, waves=True)
    mb = sum(f.stat().st_size for f in files) / 1e6
    cpus = os.cpu_count() or 1
    machine = {"cpus": cpus, "machine": platform.machine(), "python": platform.python_version(),
               "processor": platform.processor() or "", "memory_gb": round(os.sysconf("SC_PAGE_SIZE") *
                                                                        os.sysconf("SC_PHYS_PAGES") / 2**30, 1)}
    print(f"corpus: {len(files)} cases with waves, {mb:.0f} MB ({mb / len(files):.1f} MB/case); {machine}")
    results: dict = {"machine": machine, "corpus": {"cases": len(files), "mb": round(mb, 1)}}
    if args.labels_cost:
        runs = [run_child("labels", files) for _ in range(args.repeat)]
        with_ = statistics.median(t for r in runs for t in r["times"])
        without = statistics.median(t for r in runs for t in r["without"])
        ratio = statistics.median(a / b for r in runs for a, b in zip(r["times"], r["without"]))
        results["labels_cost"] = {"per_case_ms_median_with_decisions": round(1000 * with_, 1),
                                  "per_case_ms_median_without": round(1000 * without, 1),
                                  "paired_ratio_median": round(ratio, 3), "repeats": args.repeat}
        print("labels cost:", results["labels_cost"])
        return

    # The machine is shared and timings drift by 10 % or more between minutes: the timed methods run
    # --repeat times, alternating, and the medians over all repeats are reported.
    a, c, run1, runn, ceiling = [], [], [], [], []
    for _ in range(args.repeat):
        a.append(run_child("inflate", files))
        together = run_children_at_once("inflate", files, cpus)  # (a) on every CPU at once
        ceiling.append(cpus * sum(a[-1]["times"]) / statistics.mean(sum(t["times"]) for t in together))
        c.append(run_child("cases", files))
        run1.append(run_child("run", files, workers=1))
        runn.append(run_child("run", files, workers=cpus))
    b = run_child("naive", files)
    rawn = run_child("run", files, workers=cpus, compression="none")
    results["repeats"] = args.repeat
    results["a_inflate"] = per_case(a, mb)
    results["b_naive"] = per_case([b], mb)
    results["c_vitalflow_per_case"] = {**per_case(c, mb), "output_bytes_per_window":
                                       round(sum(r["output_bytes"] for r in c) / sum(r["windows"] for r in c))}
    for key, runs in (("c_run_1_worker", run1), (f"c_run_{cpus}_workers", runn),
                      (f"c_run_{cpus}_workers_uncompressed", [rawn])):
        r = sorted(runs, key=lambda r: r["wall_s"])[len(runs) // 2]  # the median run
        results[key] = {"wall_s": round(r["wall_s"], 2), "wall_s_all": [round(x["wall_s"], 2) for x in runs],
                        "cases_per_s": round(len(files) / r["wall_s"], 2),
                        "input_mb_per_s": round(mb / r["wall_s"], 1), "peak_rss_mb": r["peak_rss_mb"],
                        "output_bytes_per_window": round(r["output_bytes"] / r["windows"]),
                        "timings_s": r["card_timings_s"]}
    ms = lambda key: results[key]["per_case_ms_median"]  # noqa: E731
    paired_a = 1000 * statistics.median(t for r in c for t in r["paired_inflate"])
    results["ratios"] = {
        # (a) timed in the (c) process, on each case right before (c): the machine's drift between
        # the two children's minutes cancels out
        "c_over_a_per_case": round(ms("c_vitalflow_per_case") / paired_a, 2),
        "a_paired_per_case_ms_median": round(paired_a, 1),
        "c_over_a_per_case_separate_processes": round(ms("c_vitalflow_per_case") / ms("a_inflate"), 2),
        "b_over_c_per_case": round(ms("b_naive") / ms("c_vitalflow_per_case"), 1),
        "all_workers_over_1_worker_throughput": round(results["c_run_1_worker"]["wall_s"] /
                                                      results[f"c_run_{cpus}_workers"]["wall_s"], 2),
        # the same for (a) itself: one inflate process against one per CPU, all inflating at once
        # (what this machine's CPUs deliver together; shared caches and memory, or hyperthreads)
        "machine_ceiling_all_cpus_over_1_cpu": round(statistics.median(ceiling), 2),
        "machine_ceiling_all": [round(x, 2) for x in ceiling],
    }
    if args.scale:
        small = corpus(HERE / ".corpus-nowaves", args.scale, waves=False)
        few = run_child("cases", small[: args.cases])
        many = run_child("cases", small)
        results["scaling"] = {
            f"{len(few['times'])}_cases": {**summarize(few["times"], 0), "peak_rss_mb": few["peak_rss_mb"]},
            f"{len(many['times'])}_cases": {**summarize(many["times"], 0), "peak_rss_mb": many["peak_rss_mb"]},
            "first_vs_last_quarter_ms": [round(1000 * statistics.median(many["times"][: len(small) // 4]), 1),
                                         round(1000 * statistics.median(many["times"][-len(small) // 4:]), 1)],
        }
    results["bench_seconds"] = round(time.perf_counter() - t0, 1)

    for key in ("a_inflate", "b_naive", "c_vitalflow_per_case"):
        r = results[key]
        print(f"{key:24s} median {r['per_case_ms_median']:8.1f} ms  max {r['per_case_ms_max']:8.1f} ms  "
              f"{r['cases_per_s']:6.2f} cases/s  {r['input_mb_per_s']:7.1f} MB/s  peak RSS {r['peak_rss_mb']}")
    for key in [k for k in results if k.startswith("c_run")]:
        r = results[key]
        print(f"{key:24s} wall {r['wall_s']:6.2f} s  {r['cases_per_s']:6.2f} cases/s  {r['input_mb_per_s']:7.1f} MB/s  "
              f"{r['output_bytes_per_window']} B/window  peak RSS {r['peak_rss_mb']}")
    print("ratios:", results["ratios"])
    if "scaling" in results:
        print("scaling:", json.dumps(results["scaling"]))
    args.json.write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
