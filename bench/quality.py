"""Quality bar: the decision model against no skill, the rule protocol, XGBoost and the oracle on the
held-out test split of a synthetic corpus.

    .venv/bin/python bench/quality.py [--cases 60] [--seed 1] [--world default] [--dir /tmp/vitalflow-quality]
                                      [--config train.yaml] [--run-config run.yaml] [--bootstrap 1000]

Synthesizes ``--cases`` recordings (no waves, lengths drawn: 2-4.5 h) in the ``--world`` (default;
``deterministic``: no delay jitter, no unexplained changes; ``random``: changes independent of the
recording, the leakage check), preprocesses them with the default run config (split by subject) or
``--run-config``, trains with the default training config (or ``--config``), evaluates on the test
split (``--bootstrap`` resamples over cases) and prints README's tables as Markdown: AUPRC and
AUROC per group and horizon with 95 % intervals, the fraction of the AUPRC gap to the oracle the
model closes, alerts at the budget, and the set-point values; then the time of each step and the
model's calibration (ECE per event). Everything is kept in ``--dir`` (the report:
``<dir>/model/evaluation/test/report.md``; the figures as JSON: ``<dir>/quality.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def run(*args: str) -> float:
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "vitalflow", *args], check=True, env={**os.environ,
                   "TF_CPP_MIN_LOG_LEVEL": "3"})
    return time.monotonic() - started


def markdown(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows[1:]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=60)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--world", default="default", choices=("default", "deterministic", "random"))
    parser.add_argument("--dir", type=Path, default=Path("/tmp/vitalflow-quality"))
    parser.add_argument("--config", type=Path, default=None, help="training config (default: built-in)")
    parser.add_argument("--run-config", type=Path, default=None, help="preprocessing run config (default: built-in)")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--reuse", action="store_true", help="keep the recordings and dataset of an earlier run")
    args = parser.parse_args()
    rec, out, model = args.dir / "recordings", args.dir / "output", args.dir / "model"
    times = {}
    if not (args.reuse and (out / "preprocessing_metadata.json").exists()):
        times["synth"] = run("synth", str(rec), "--cases", str(args.cases), "--seed", str(args.seed), "--no-waves",
                             "--world", args.world)
        times["preprocess"] = run("preprocess", "-i", str(rec), "-c", str(rec / "clinical.csv"), "-o", str(out),
                                  "--overwrite", "-q", *(["--config", str(args.run_config)] if args.run_config else []))
    train = ["train", str(out), "--output", str(model), "--overwrite", "--no-register"]
    times["train"] = run(*train, *(["--config", str(args.config)] if args.config else []))
    times["evaluate"] = run("evaluate", str(model), str(out), "--bootstrap", str(args.bootstrap))

    from vitalflow.evaluate.tables import metrics_tables

    metrics = json.loads((model / "evaluation" / "test" / "metrics.json").read_text())
    card = json.loads((model / "model_card.json").read_text())
    print(f"\n{args.cases} synthetic cases ({args.world} world, seed {args.seed}); test split: {metrics['windows']} "
          f"windows of {metrics['cases']} cases\n")
    for table in metrics_tables(metrics):
        print(f"\n{table.title}:\n\n{markdown(table.rows)}")
    ece = {key: ev["scorers"]["model"]["ece"] for key, ev in metrics["events"].items() if "model" in ev["scorers"]}
    print("\nmodel ECE (test): " + ", ".join(f"{k} {v:.3f}" for k, v in ece.items() if v is not None))
    print(f"training: {card['training']['epochs_run']} epochs, {card['training']['seconds']:.1f} s; "
          f"{card['parameters']} parameters")
    print("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in times.items()))
    (args.dir / "quality.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                                       "seconds": times, "metrics": metrics}, indent=1))


if __name__ == "__main__":
    main()
