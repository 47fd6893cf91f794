"""Registry benchmark: the cost of creating the embedded MLflow store once, then of each registry
operation on an existing store (target: under a second each).

    .venv/bin/python bench/registry.py MODEL_DIR [--repeat 5] [--json out.json]

``MODEL_DIR``: a trained model directory (e.g. ``vitalflow-demo/model`` after ``vitalflow demo``);
its ``evaluation/test/metrics.json`` is logged with it when present. Everything happens in a fresh
temporary ``VITALFLOW_HOME`` and ``VITALFLOW_CACHE`` (``MLFLOW_TRACKING_URI`` unset), removed at
the end. Phases, in one process:

- ``import mlflow``: once per process (every CLI command that touches the registry pays it);
- ``create store``: the first ``client()`` on a new SQLite file (alembic migrations);
- ``open store``: ``client()`` on the existing file in a child process (what each later CLI
  command pays, import excluded);
- per repetition (median and max of ``--repeat``): ``log_training`` (run, params, per-epoch and
  evaluation metrics, artifacts, registered version), split into ``log run`` (create the run, log
  params and metrics), ``log artifacts`` (copy the model directory) and ``register`` (a new
  version); ``promote`` (set an alias); ``resolve alias`` (``NAME@ALIAS`` to its version);
  ``resolve_model`` first (download into the cache) and cached; ``list versions``.

Prints a Markdown table with the machine; the last line of stdout is the whole result as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import cpu_model


def _timed(fn):
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def _machine() -> str:
    return f"{cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json")
    args = parser.parse_args()
    model_dir = str(Path(args.model_dir).resolve())
    metrics_file = Path(model_dir) / "evaluation" / "test" / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.exists() else None

    root = Path(tempfile.mkdtemp(prefix="vitalflow-bench-registry-"))
    os.environ.update(VITALFLOW_HOME=str(root / "home"), VITALFLOW_CACHE=str(root / "cache"))
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    try:
        result = {"machine": _machine(), "model_dir": model_dir, "evaluation_logged": metrics is not None,
                  "repeat": args.repeat}
        t_import, _ = _timed(lambda: __import__("mlflow"))
        from vitalflow.registry import tracking
        from vitalflow.registry.log import MODEL_ARTIFACT, _ensure_registered_model, _log_model_dir, _log_values, \
            lineage_tags, local_copy, log_training
        from vitalflow.registry.resolve import resolve_model
        from vitalflow.registry.versions import find_version, list_versions, promote
        from vitalflow.model.card import read_model_card

        t_create, client = _timed(tracking.client)
        child = ("import time, vitalflow.registry.tracking as t, mlflow; s = time.perf_counter(); t.client(); "
                 "print(time.perf_counter() - s)")
        t_open = float(subprocess.run([sys.executable, "-c", child], capture_output=True, text=True,
                                      check=True).stdout.strip().splitlines()[-1])
        phases: dict[str, list[float]] = {k: [] for k in (
            "log_training", "log run", "log artifacts", "register", "promote", "resolve alias",
            "resolve_model (download)", "resolve_model (cached)", "list versions")}
        card = read_model_card(model_dir)
        name = "bench"
        for i in range(args.repeat):
            t, version = _timed(lambda: log_training(model_dir, metrics, name))
            phases["log_training"].append(t)
            # the same work in its parts
            exp = tracking.experiment_id(client, name)
            start = time.perf_counter()
            run = client.create_run(exp, tags=lineage_tags(card, model_dir))
            _log_values(client, run.info.run_id, card, metrics)
            phases["log run"].append(time.perf_counter() - start)
            start = time.perf_counter()
            with local_copy(model_dir) as local:
                _log_model_dir(client, run.info.run_id, local)
            phases["log artifacts"].append(time.perf_counter() - start)
            start = time.perf_counter()
            _ensure_registered_model(client, name)
            mv = client.create_model_version(name, f"{run.info.artifact_uri}/{MODEL_ARTIFACT}", run.info.run_id)
            client.set_terminated(run.info.run_id)
            phases["register"].append(time.perf_counter() - start)
            phases["promote"].append(_timed(lambda: promote(f"{name}/{mv.version}", "champion"))[0])
            phases["resolve alias"].append(_timed(lambda: find_version(f"{name}@champion"))[0])
            phases["resolve_model (download)"].append(_timed(lambda: resolve_model(f"{name}@champion"))[0])
            phases["resolve_model (cached)"].append(_timed(lambda: resolve_model(f"{name}@champion"))[0])
            phases["list versions"].append(_timed(lambda: list_versions(name))[0])
            del version
        result["seconds"] = {"import mlflow": round(t_import, 3), "create store": round(t_create, 3),
                             "open store": round(t_open, 3),
                             **{k: {"median": round(statistics.median(v), 3), "max": round(max(v), 3)}
                                for k, v in phases.items()}}
        result["versions_at_end"] = len(list_versions(name))
        size = sum(p.stat().st_size for p in Path(model_dir).rglob("*") if p.is_file() and "_checkpoints" not in p.parts)
        result["model_dir_bytes"] = size
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"Machine: {result['machine']}; model directory {size / 1e6:.1f} MB (without _checkpoints), "
          f"{args.repeat} repetitions\n")
    print("| operation | seconds |\n|---|---|")
    for key, value in result["seconds"].items():
        text = f"{value:.3f}" if isinstance(value, float) else f"{value['median']:.3f} (max {value['max']:.3f})"
        print(f"| {key} | {text} |")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
