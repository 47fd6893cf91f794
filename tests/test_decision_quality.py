"""The leakage check: in the random world (`vitalflow synth --world random`) the clinician's
set-point changes come at Poisson times independent of the recording, so no scorer can rank the
windows before a change above the others: every model's and baseline's AUROC lies near 0.5. A
window that saw its own label (or a label built from the future) would fail this.

60 cases of 2 h, half of them in the test split (30 cases, ~3,500 windows) so that the AUROC of an
event rests on dozens of independent changes; the mean over the events with at least 30 positive
windows must lie in 0.45-0.55 for the trained network and for XGBoost.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from tests.conftest import TINY_TRAIN_CONFIG


def vitalflow(*args) -> None:
    result = subprocess.run([sys.executable, "-m", "vitalflow", *map(str, args)], capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr


def test_in_the_random_world_the_network_and_xgboost_rank_at_chance(tmp_path):
    rec, out, model = tmp_path / "rec", tmp_path / "out", tmp_path / "model"
    vitalflow("synth", rec, "--cases", 60, "--hours", 2, "--no-waves", "--world", "random", "--seed", 5)
    (tmp_path / "run.yaml").write_text("split: {train: 0.4, validation: 0.1, test: 0.5, seed: 1}\n")
    vitalflow("preprocess", "-i", rec, "-c", rec / "clinical.csv", "-o", out, "-q", "--config", tmp_path / "run.yaml")
    (tmp_path / "train.yaml").write_text(TINY_TRAIN_CONFIG.replace("task: values", "task: decisions")
                                         .replace("epochs: 6", "epochs: 3"))
    vitalflow("train", out, "--output", model, "--config", tmp_path / "train.yaml", "--no-register")
    vitalflow("evaluate", model, out, "--bootstrap", 0)
    metrics = json.loads((model / "evaluation" / "test" / "metrics.json").read_text())
    assert metrics["cases"] >= 25
    events = [e for e in metrics["events"].values() if e["positives"] >= 30]
    assert len(events) >= 8
    for scorer in ("model", "network", "xgboost"):  # the shipped stack, its network alone, the baseline
        mean = float(np.mean([e["scorers"][scorer]["auroc"] for e in events]))
        assert 0.45 <= mean <= 0.55, (scorer, mean, {k: e["scorers"][scorer]["auroc"]
                                                     for k, e in metrics["events"].items()})
    # the oracle of a random world is a constant: exactly chance
    assert all(e["scorers"]["oracle"]["auroc"] == 0.5 for e in events)
