"""Training and evaluation benchmark: vitalflow's tf.data pipeline against the training step and the
README's naive reader; wall time and peak memory of `train_model` and `evaluate_model`.

    .venv/bin/python bench/train.py [--cases 100] [--demo 12] [--memory-cases 50] [--arena-max 1] [--repeat 3]
                                    [--parts throughput,train] [--json out.json]

Corpora (built once and cached in ``bench/.corpus-train-<N>``): ``synth_corpus(rec, N, seed=0,
hours=1.5, waves=False)`` preprocessed with the default config but ``split.seed: 3`` (so that all
three splits hold windows); GZIP output, the mask included (the default). The demo corpus is
``--demo`` (12) cases, the large one ``--cases`` (100).

``throughput`` (one child process, on the large corpus's train split; the methods take turns in
each of ``--repeat`` rounds after one warm-up round, and the best round of each is reported):

  (1) pipeline: ``training_batches(dataset, "train", <the default model's inputs>, <its task>,
      batch_size=64, seed=0, epoch=0)`` iterated to the end, no model (an epoch's input as
      `train_model` reads it; the decision model: timeseries, static and the decision context, with
      labels and masks as the truth);
  (2) step:     ``model.fit`` of the default network (``TrainConfig()``, built by
      `vitalflow.train.run.build_model`, op determinism on, as in `train_model`) for one epoch on the same windows already in memory (a cached
      ``tf.data`` of tensors, batches of 64, no validation), so the input is not the bottleneck;
  (3) naive:    the code ``tensorflow_snippet(schema, "GZIP", output=dataset)`` writes (README's
      "read it with TensorFlow"), exec'd, its ``train`` dataset iterated to the end;
  (3s) naive + shuffle: the same code with ``.shuffle(4096, seed=0)`` before the parse (what a
      user adds for training; still one case after another through the buffer).

  (0) read:     the bound of (1): the same GZIP parts read in parallel (``TFRecordDataset``
      interleaved over all parts), no shuffle, no parse: what inflating costs.

Ratios: (1)/(2) (requirement >= 5) and (1)/(3) (requirement >= 3), (1)/(3s) for reference.

``train`` (one child process per phase, on the demo corpus, ``--memory-cases`` and the large one):
wall time and peak RSS (VmHWM of the child) of ``train_model(dataset, out)`` with the default
config, then of ``evaluate_model(model, dataset)`` (test split, the baselines, report files);
each once with glibc's default malloc and once with ``MALLOC_ARENA_MAX=--arena-max`` (1) in the
child's environment: with TensorFlow's many threads, glibc's per-thread arenas fragment, and peak
RSS grows with the epochs times the shuffle buffer's bytes; one arena keeps it flat.

Prints a Markdown table with the machine (CPU model, cores, RAM, Python, TensorFlow); the last line
of stdout is the whole result as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import cpu_model

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

CORPUS_SEED = 0
HOURS = 1.5
SPLIT_SEED = 3
BATCH = 64


# --- corpora ----------------------------------------------------------------------------------
def cached_dataset(cases: int) -> Path:
    """The preprocessed GZIP dataset of ``cases`` synthetic 1.5-hour cases (made once)."""
    from corpus import cached_corpus

    root = HERE / f".corpus-train-{cases}"
    rec, out = root / "rec", root / "dataset"
    from vitalflow.dataset.schema import EXAMPLE_SCHEMA_VERSION

    marker = root / f".dataset-{CORPUS_SEED}-{HOURS}-split{SPLIT_SEED}-schema{EXAMPLE_SCHEMA_VERSION}"
    if not marker.exists() or not (out / "preprocessing_metadata.json").exists():
        cached_corpus(rec, cases, CORPUS_SEED, HOURS, False)
        shutil.rmtree(out, ignore_errors=True)
        from vitalflow.run.preprocess import RunOptions, preprocess
        from vitalflow.spec import load_config
        from vitalflow.spec.model import Config, Split

        _, spec = load_config()
        result = preprocess(str(rec), str(rec / "clinical.csv"), str(out), Config(split=Split(seed=SPLIT_SEED)),
                            spec, options=RunOptions(workers=os.cpu_count() or 1))
        assert result.verify.ok and result.card["cases"]["failed"] == 0
        marker.touch()
    return out


# --- throughput, in one child -----------------------------------------------------------------
def _count(batches) -> int:
    n = 0
    for batch in batches:
        target = batch[-1] if isinstance(batch, tuple) else batch["target"]
        n += int(target.shape[0])
    return n


def throughput(dataset_dir: Path, repeat: int) -> dict:
    import numpy as np
    import tensorflow as tf

    from vitalflow.dataset.reference import open_dataset
    from vitalflow.dataset.schema import tensorflow_snippet
    from vitalflow.model.config import TrainConfig
    from vitalflow.model.inputs import TRUTH, training_batches
    from vitalflow.model.network import input_names
    from vitalflow.train.fit import make_deterministic
    from vitalflow.train.run import build_model, dataset_spec

    dataset = open_dataset(str(dataset_dir))
    windows = dataset.examples("train")
    config = TrainConfig()  # the default model: its inputs and truth are what training reads
    inputs, task = input_names(config), config.task
    os.environ["VITALFLOW_CACHE"] = tempfile.mkdtemp(prefix="vitalflow-bench-cache-")  # built fresh, timed below

    def pipeline() -> int:  # what training reads every epoch: the parsed-window cache
        return _count(training_batches(dataset, "train", inputs, task, batch_size=BATCH, seed=0, epoch=0, cache=True))

    def pipeline_uncached() -> int:  # the same windows in the same order, inflated and parsed each time
        return _count(training_batches(dataset, "train", inputs, task, batch_size=BATCH, seed=0, epoch=0))

    from vitalflow.model.inputs import prepare_parsed_cache

    started = time.perf_counter()
    prepare_parsed_cache(dataset, "train", [*inputs, *TRUTH[task]])  # once, before the first epoch
    cache_build_s = time.perf_counter() - started

    code = tensorflow_snippet(dataset.example_schema, "GZIP", output=str(dataset_dir))
    plain = "train = train.map(parse).batch(64)"
    assert plain in code, code
    shuffled = code.replace(plain, "train = train.shuffle(4096, seed=0).map(parse).batch(64)")

    def snippet(source: str):
        def run() -> int:
            scope: dict = {}
            exec(source, scope)  # noqa: S102 - the README's own snippet
            return _count(scope["train"])
        return run

    # the training step: the default network on the train windows held in memory
    make_deterministic()
    model, _, _ = build_model(config, dataset, dataset_spec(dataset))
    parts: dict[str, list] = {n: [] for n in (*inputs, "y")}
    for x, y in training_batches(dataset, "train", inputs, task, batch_size=BATCH, seed=0, epoch=0):
        for n in inputs:
            parts[n].append(x[n].numpy())
        parts["y"].append(y.numpy())
    arrays = {k: np.concatenate(v) for k, v in parts.items()}
    in_memory = tf.data.Dataset.from_tensor_slices(
        ({n: arrays[n] for n in inputs}, arrays["y"])).batch(BATCH).cache()
    _count(in_memory)  # fill the cache

    def step() -> int:
        model.fit(in_memory, epochs=1, verbose=0, shuffle=False)
        return windows

    files = [str(dataset_dir / f.path) for f in dataset.parts["train"]]

    def read_only() -> int:  # the inflate bound: the same parallel reads, no shuffle, no parse
        records = tf.data.Dataset.from_tensor_slices(files).interleave(
            lambda f: tf.data.TFRecordDataset(f, compression_type="GZIP"), cycle_length=len(files),
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return _count(records.batch(BATCH).prefetch(tf.data.AUTOTUNE).map(lambda b: {"target": b}))

    methods = {"read": read_only, "pipeline": pipeline, "pipeline_uncached": pipeline_uncached, "step": step,
               "naive": snippet(code),
               "naive_shuffle": snippet(shuffled)}
    times: dict[str, list[float]] = {k: [] for k in methods}
    for round_ in range(repeat + 1):  # round 0 warms up (graph tracing, page cache) and is not counted
        for name, method in methods.items():
            t = time.perf_counter()
            n = method()
            elapsed = time.perf_counter() - t
            assert n == windows, (name, n, windows)
            if round_:
                times[name].append(elapsed)
    best = {k: min(v) for k, v in times.items()}
    return {"windows": windows, "parts": len(dataset.parts["train"]), "seconds": times,
            "cache_build_s": round(cache_build_s, 2),
            "windows_per_s": {k: round(windows / v) for k, v in best.items()},
            "windows_per_s_all": {k: [round(windows / x) for x in v] for k, v in times.items()}}


# --- train and evaluate, one child per phase --------------------------------------------------
def phase_train(dataset_dir: Path, model_dir: Path) -> dict:
    from vitalflow.train.run import train_model

    t = time.perf_counter()
    result = train_model(str(dataset_dir), str(model_dir), overwrite=True)
    wall = time.perf_counter() - t
    training = result.card.training
    return {"wall_s": round(wall, 2), "epochs": training.epochs_run, "best_epoch": training.best_epoch,
            "fit_s": round(training.seconds, 2), "s_per_epoch": round(training.seconds / training.epochs_run, 2),
            "windows": result.card.dataset.windows}


def phase_evaluate(dataset_dir: Path, model_dir: Path) -> dict:
    from vitalflow.evaluate.run import evaluate_model

    t = time.perf_counter()
    evaluation = evaluate_model(str(model_dir), str(dataset_dir))
    wall = time.perf_counter() - t
    return {"wall_s": round(wall, 2), "files": len(evaluation.files)}


def child(args) -> None:
    from vitalflow.runtime.pool import peak_rss_mb

    if args.child == "throughput":
        out = throughput(Path(args.dataset), args.repeat)
    elif args.child == "train":
        out = phase_train(Path(args.dataset), Path(args.model))
    else:
        out = phase_evaluate(Path(args.dataset), Path(args.model))
    out["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(out))


def run_child(kind: str, dataset: Path, model: Path | None = None, repeat: int = 3, arena_max: int = 0) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    if arena_max:
        env["MALLOC_ARENA_MAX"] = str(arena_max)
    cmd = [sys.executable, __file__, "--child", kind, "--dataset", str(dataset), "--repeat", str(repeat)]
    if model is not None:
        cmd += ["--model", str(model)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode:
        sys.exit(f"{kind} child failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- machine and report -----------------------------------------------------------------------
def machine() -> dict:
    import keras
    import tensorflow as tf

    return {"cpu": cpu_model(), "cores": os.cpu_count(),
            "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
            "python": platform.python_version(), "tensorflow": tf.__version__, "keras": keras.__version__}


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def report(results: dict) -> str:
    m = results["machine"]
    lines = [f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Python {m['python']}, "
             f"TensorFlow {m['tensorflow']} (Keras {m['keras']}); load average before / after: "
             f"{results['load_before']} / {results['load_after']}.", ""]
    if "throughput" in results:
        t = results["throughput"]
        w = t["windows_per_s"]
        lines += [f"Throughput, {results['large_cases']}-case corpus, train split: {t['windows']} windows in "
                  f"{t['parts']} GZIP parts; best of {len(t['seconds']['pipeline'])} rounds, methods alternating; "
                  f"building the parsed-window cache once: {t['cache_build_s']} s.",
                  "", "| method | windows/s (best) | all rounds |", "|---|---|---|"]
        labels = {"read": "(0) bound: the GZIP parts read in parallel (`TFRecordDataset` interleaved), no parse",
                  "pipeline": "(1) vitalflow, as training reads: `training_batches(..., batch_size=64, seed=0, "
                              "epoch=0, cache=True)`, no model",
                  "pipeline_uncached": "(1u) the same without the parsed-window cache (inflate + parse each epoch)",
                  "step": "(2) training step: default network, `model.fit` 1 epoch on windows in memory",
                  "naive": "(3) README snippet: `parse_single_example` per record, `.batch(64)`",
                  "naive_shuffle": "(3s) README snippet + `.shuffle(4096)` before the parse"}
        for key, label in labels.items():
            lines.append(f"| {label} | {w[key]:,} | {', '.join(f'{x:,}' for x in t['windows_per_s_all'][key])} |")
        r = results["ratios"]
        lines += ["", "| ratio | measured | requirement |", "|---|---|---|",
                  f"| pipeline / training step | **{r['pipeline_over_step']}x** | >= 5x |",
                  f"| pipeline / README snippet | **{r['pipeline_over_naive']}x** | >= 3x |",
                  f"| pipeline / README snippet + shuffle | {r['pipeline_over_naive_shuffle']}x | |", ""]
    if "train" in results:
        lines += ["| corpus | glibc malloc | train / validation / test windows | `train_model` wall | epochs | "
                  "s per epoch | peak RSS | `evaluate_model` wall | peak RSS |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in results["train"].values():
            tr, ev = r["train"], r["evaluate"]
            win = tr["windows"]
            malloc = f"MALLOC_ARENA_MAX={r['malloc_arena_max']}" if r["malloc_arena_max"] else "default"
            lines.append(f"| {r['cases']} cases x {HOURS} h | {malloc} | "
                         f"{win['train']:,} / {win['validation']:,} / {win['test']:,} | {tr['wall_s']:.1f} s | "
                         f"{tr['epochs']} (best {tr['best_epoch']}) | {tr['s_per_epoch']:.2f} | "
                         f"{tr['peak_rss_mb']:.0f} MB | {ev['wall_s']:.1f} s | {ev['peak_rss_mb']:.0f} MB |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=100, help="the large corpus (throughput, train, evaluate)")
    ap.add_argument("--demo", type=int, default=12, help="the demo corpus (train, evaluate)")
    ap.add_argument("--memory-cases", type=int, default=50, help="a middle corpus for the memory comparison (0: none)")
    ap.add_argument("--arena-max", type=int, default=1,
                    help="also train and evaluate with MALLOC_ARENA_MAX=N in the environment (0: only the default)")
    ap.add_argument("--repeat", type=int, default=3, help="counted rounds of the throughput methods")
    ap.add_argument("--parts", default="throughput,train", help="comma-separated: throughput, train")
    ap.add_argument("--json", type=Path, help="also write the result here")
    ap.add_argument("--child")
    ap.add_argument("--dataset")
    ap.add_argument("--model")
    args = ap.parse_args()
    if args.child:
        return child(args)

    t0 = time.perf_counter()
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    unknown = parts - {"throughput", "train"}
    if unknown:
        sys.exit(f"unknown --parts: {', '.join(sorted(unknown))}")
    results: dict = {"machine": machine(), "large_cases": args.cases, "load_before": load(),
                     "command": " ".join(["bench/train.py", *sys.argv[1:]])}
    print(f"machine: {results['machine']}; load {results['load_before']}", flush=True)
    if "throughput" in parts:
        t = run_child("throughput", cached_dataset(args.cases), repeat=args.repeat)
        w = t["windows_per_s"]
        results["throughput"] = t
        results["ratios"] = {"pipeline_over_step": round(w["pipeline"] / w["step"], 1),
                             "pipeline_over_naive": round(w["pipeline"] / w["naive"], 1),
                             "pipeline_over_naive_shuffle": round(w["pipeline"] / w["naive_shuffle"], 1)}
        print("throughput:", json.dumps(t["windows_per_s_all"]), results["ratios"], flush=True)
    if "train" in parts:
        results["train"] = {}
        for cases in sorted({n for n in (args.demo, args.memory_cases, args.cases) if n}):
            for arena in sorted({0, args.arena_max}):
                dataset = cached_dataset(cases)
                model = dataset.parent / "model"
                trained = run_child("train", dataset, model, arena_max=arena)
                evaluated = run_child("evaluate", dataset, model, arena_max=arena)
                key = f"{cases}" + (f" MALLOC_ARENA_MAX={arena}" if arena else "")
                results["train"][key] = {"cases": cases, "malloc_arena_max": arena, "train": trained,
                                         "evaluate": evaluated}
                print(f"{key}: train {trained}; evaluate {evaluated}", flush=True)
    results["load_after"] = load()
    results["bench_seconds"] = round(time.perf_counter() - t0, 1)
    print()
    print(report(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
