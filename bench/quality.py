"""Quality bar: the model against the three baselines on a held-out test split of a synthetic corpus.

    .venv/bin/python bench/quality.py [--cases 60] [--seed 1] [--dir /tmp/vitalflow-quality] [--config train.yaml]

Synthesizes ``--cases`` recordings (no waves, lengths drawn: 2-4.5 h), preprocesses them with the
default run config (split by subject, seed 0), trains with the default training config (or
``--config``), evaluates on the test split and prints README's two tables (MAE on all windows and
on the windows where the target changes within the horizon) as Markdown, plus the time of each step.
Everything is kept in ``--dir`` (the model's report: ``<dir>/model/evaluation/test/report.md``).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path


def run(*args: str) -> float:
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "vitalflow", *args], check=True)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=60)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/vitalflow-quality"))
    parser.add_argument("--config", type=Path, default=None, help="training config (default: built-in)")
    args = parser.parse_args()
    rec, out, model = args.dir / "recordings", args.dir / "output", args.dir / "model"
    times = {"synth": run("synth", str(rec), "--cases", str(args.cases), "--seed", str(args.seed), "--no-waves")}
    times["preprocess"] = run("preprocess", "-i", str(rec), "-c", str(rec / "clinical.csv"), "-o", str(out),
                              "--overwrite", "-q")
    train = ["train", str(out), "--output", str(model), "--overwrite"]
    times["train"] = run(*train, *(["--config", str(args.config)] if args.config else []))
    times["evaluate"] = run("evaluate", str(model), str(out))

    import json

    from vitalflow.evaluate.report import comparison_table

    metrics = json.loads((model / "evaluation" / "test" / "metrics.json").read_text())
    for kind, title in (("all", "all test windows"), ("changed", "windows where the target changes within 30 s")):
        rows = comparison_table(metrics, kind)
        print(f"\nMAE, {title} ({metrics['windows']} test windows):\n")
        print("| " + " | ".join(rows[0]) + " |")
        print("|" + "---|" * len(rows[0]))
        for row in rows[1:]:
            print("| " + " | ".join(row) + " |")
    print("\nseconds: " + ", ".join(f"{k} {v:.1f}" for k, v in times.items()))


if __name__ == "__main__":
    main()
