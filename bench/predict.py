"""Batch prediction benchmark: cases/s, where the time goes (read, transform, model, write), and
the ratio of predict time to preprocess time for the same cases.

    .venv/bin/python bench/predict.py [--cases 16] [--hours 3] [--workers 2] [--model DIR] [--json out.json]

Builds a seeded synthetic corpus (no waves) and, unless ``--model`` is given, trains the tests'
tiny network on a small synthetic dataset (a trained model's size does not change the plumbing; the
default network's numbers are printed with ``--model`` of a model trained with the default config).
Then runs, each as the CLI in its own process: ``vitalflow preprocess`` on the corpus and
``vitalflow predict`` on the same recordings (Parquet only, then again with ``--csv --plots``), and
prints a Markdown table with the machine. Times per stage are the cards' (summed over workers for
read/transform; the model process and the writer are single).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import cpu_model

TINY = """\
network: {conv_filters: [8], conv_kernel: 3, pool: 5, lstm_units: [8, 8], dense_units: 8}
epochs: 2
early_stopping: null
batch_size: 64
"""


def vitalflow(*args) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "vitalflow", *map(str, args)], check=True, capture_output=True)
    return time.perf_counter() - t



def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", type=int, default=16)
    p.add_argument("--hours", type=float, default=3.0)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--model", type=Path)
    p.add_argument("--json", type=Path)
    a = p.parse_args()
    from vitalflow.synth import synth_corpus

    root = Path(tempfile.mkdtemp(prefix="vitalflow-bench-predict-"))
    env_home = root / "home"
    os.environ["VITALFLOW_HOME"] = str(env_home)  # training registers its model: not in the user's registry
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    synth_corpus(root / "rec", a.cases, seed=7, hours=a.hours, waves=False)
    model = a.model
    if model is None:
        synth_corpus(root / "tr", 12, seed=0, hours=1.5, waves=False)
        (root / "run.yaml").write_text("split: {seed: 3}\n")
        (root / "tiny.yaml").write_text(TINY)
        vitalflow("preprocess", "-i", root / "tr", "-c", root / "tr/clinical.csv", "-o", root / "ds",
                  "--config", root / "run.yaml", "-q")
        vitalflow("train", root / "ds", "--output", root / "model", "--config", root / "tiny.yaml")
        model = root / "model"
    rec, clinical = root / "rec", root / "rec" / "clinical.csv"
    pre_s = vitalflow("preprocess", "-i", rec, "-c", clinical, "-o", root / "pre", "-w", a.workers, "-q")
    pre = json.loads((root / "pre" / "preprocessing_metadata.json").read_text())
    pred_s = vitalflow("predict", "-m", model, "-i", rec, "-c", clinical, "-o", root / "pred", "-w", a.workers, "-q")
    card = json.loads((root / "pred" / "prediction_card.json").read_text())
    full_s = vitalflow("predict", "-m", model, "-i", rec, "-c", clinical, "-o", root / "pred2", "-w", a.workers,
                       "--csv", "--plots", "-q")
    card2 = json.loads((root / "pred2" / "prediction_card.json").read_text())
    t, t2, pt = card["timings_s"], card2["timings_s"], pre["timings_s"]
    rows = card["cases"]["rows"]
    params = json.loads((Path(model) / "model_card.json").read_text())["parameters"]
    result = {
        "machine": {"cpu": cpu_model(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "cases": a.cases, "hours": a.hours, "workers": a.workers, "rows": rows, "model_parameters": params,
        "preprocess_wall_s": round(pre_s, 2), "predict_wall_s": round(pred_s, 2),
        "predict_csv_plots_wall_s": round(full_s, 2), "preprocess_timings_s": pt, "predict_timings_s": t,
        "predict_csv_plots_timings_s": t2, "peak_rss_mb": card["run"]["peak_rss_mb"],
    }
    print(f"machine: {result['machine']['cpu']}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
          f"{a.cases} cases of {a.hours:g} h (no waves), {a.workers} workers, model of {params} parameters\n")
    print("| run | wall s | cases/s | read s | transform s | model s | write s | model load s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| preprocess | {pre_s:.1f} | {a.cases / pre_s:.2f} | {pt.get('read', 0):.1f} | "
          f"{pt.get('transform', 0):.1f} | - | {pt.get('encode', 0):.1f} (encode) | - |")
    for name, wall, tt in (("predict (Parquet)", pred_s, t), ("predict --csv --plots", full_s, t2)):
        print(f"| {name} | {wall:.1f} | {a.cases / wall:.2f} | {tt['read']:.1f} | {tt['transform']:.1f} | "
              f"{tt['model']:.1f} | {tt['write']:.1f} | {tt.get('model_load', 0):.1f} |")
    print(f"\npredict / preprocess wall time: {pred_s / pre_s:.2f} (Parquet), {full_s / pre_s:.2f} (--csv --plots); "
          f"{rows} rows; model share of predict's stage time: "
          f"{t['model'] / max(1e-9, t['read'] + t['transform'] + t['model'] + t['write']):.0%}; "
          f"peak RSS MB: {card['run']['peak_rss_mb']}")
    if a.json:
        a.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
