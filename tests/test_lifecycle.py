"""README's lifecycle, command for command, from recordings to timelines: preprocess, train twice,
list and compare the two versions, promote one, predict with ``NAME@champion`` on recordings the
model has never seen, read the timelines. Every command runs as a user runs it (a subprocess of
``vitalflow``); the registry is MLflow's SQLite store in the session's temporary home."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

NAME = "vitalflow-lifecycle"


def vitalflow(*args, expect: int = 0) -> str:
    result = subprocess.run([sys.executable, "-m", "vitalflow", *map(str, args)], capture_output=True, text=True,
                            timeout=600, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "COLUMNS": "200"})
    assert result.returncode == expect, result.stdout + result.stderr
    return result.stdout


def test_train_twice_compare_promote_predict_with_the_champion(trainable_dataset, tiny_config, tmp_path):
    refs = []
    for seed in (0, 1):
        config = tmp_path / f"train{seed}.yaml"
        config.write_text(tiny_config.read_text() + f"seed: {seed}\nregistered_model: {NAME}\n")
        output = vitalflow("train", trainable_dataset, "--output", tmp_path / f"model{seed}", "--config", config)
        refs.append(next(line.split()[1] for line in output.splitlines() if line.startswith("registered: ")))
    assert refs == [f"{NAME}/1", f"{NAME}/2"]

    listing = vitalflow("models", "list", NAME)
    assert all(ref in listing for ref in refs)
    comparison = vitalflow("models", "compare", *refs)
    assert all(ref in comparison for ref in refs) and "persistence" in comparison
    vitalflow("models", "promote", refs[1], "--alias", "champion")
    assert f"{NAME}@champion" in vitalflow("models", "show", f"{NAME}@champion") or refs[1] in \
        vitalflow("models", "show", f"{NAME}@champion")

    from vitalflow.synth import synth_corpus

    unseen = tmp_path / "unseen"
    synth_corpus(unseen, 3, seed=77, hours=1.0, waves=False)
    vitalflow("predict", "--model", f"{NAME}@champion", "--input", unseen, "--clinical", unseen / "clinical.csv",
              "--output", tmp_path / "pred")
    card = json.loads((tmp_path / "pred" / "prediction_card.json").read_text())
    champion_card = json.loads((tmp_path / "model1" / "model_card.json").read_text())
    assert card["cases"]["ok"] == 3
    assert json.dumps(card).count(champion_card["config_hash"]) >= 1  # the champion's lineage, not model 0's

    # read the timelines: one table per case, the predictions equal the champion's own predictor on
    # the same windows (checked in tests/test_predict.py); here: shape, units, time order, values in range
    import vitalflow as vf

    targets = [t["name"] for t in champion_card["targets"]]
    ranges = {t["name"]: t["range"] for t in champion_card["targets"]}
    for case in (1, 2, 3):
        table = pq.read_table(tmp_path / "pred" / "cases" / f"{case}.parquet").to_pandas()
        assert len(table) > 0 and np.all(np.diff(table["time_s"].to_numpy()) > 0)
        for t in targets:
            values = table[f"{t}_pred"].to_numpy()
            assert np.all((values >= ranges[t][0] - 1e-6) & (values <= ranges[t][1] + 1e-6)), t
            assert f"{t}_recorded" in table
    assert vf.load_model(tmp_path / "model1").targets == targets


@pytest.mark.parametrize("reference, needle", [(f"{NAME}@nobody", "nobody"), (f"{NAME}/99", "99"),
                                               ("no-such-model@champion", "no-such-model")])
def test_predict_with_an_unknown_reference_is_one_error_line(reference, needle, tmp_path, corpus):
    result = subprocess.run([sys.executable, "-m", "vitalflow", "predict", "--model", reference, "--input",
                             str(corpus), "--clinical", str(corpus / "clinical.csv"), "--output", str(tmp_path / "p")],
                            capture_output=True, text=True, timeout=300,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 1, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and needle in errors[0], result.stderr
    assert not (tmp_path / "p" / "prediction_card.json").exists()
