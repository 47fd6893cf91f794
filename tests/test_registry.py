"""The registry library (`vitalflow.registry`) on MLflow's real SQLite store, in the session's
temporary ``VITALFLOW_HOME`` (``conftest.py``): what a logged training holds (params, per-epoch
and evaluation metrics, artifacts, lineage tags read back against the card's JSON), references,
`resolve_model` and its cache, and the registered model name in the config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vitalflow.cli import app
from vitalflow.errors import ModelError

NAME = "vitalflow-lib"


@pytest.fixture(scope="module")
def logged(trainable_dataset, tiny_config, tmp_path_factory):
    """A model trained without registering, evaluated, then logged with `log_training`."""
    from vitalflow.evaluate.run import evaluate_model
    from vitalflow.registry.log import log_training

    model = tmp_path_factory.mktemp("registry") / "model"
    result = CliRunner().invoke(app, ["train", str(trainable_dataset), "--output", str(model), "--config",
                                      str(tiny_config), "--no-register"])
    assert result.exit_code == 0 and "registered:" not in result.output, result.output
    evaluation = evaluate_model(str(model), str(trainable_dataset), "test")
    version = log_training(str(model), evaluation.metrics, NAME)
    return {"model": model, "version": version, "metrics": evaluation.metrics}


def test_the_run_holds_params_metrics_and_the_model_directory(logged):
    from mlflow import MlflowClient

    from vitalflow.registry.tracking import tracking_uri

    c = MlflowClient(tracking_uri())
    card = json.loads((logged["model"] / "model_card.json").read_text())
    run = c.get_run(logged["version"].run_id)
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["config_hash"] == card["config_hash"]
    assert params["network.lstm_units"] == "[8, 8]" and params["epochs"] == "6" and params["early_stopping"] == "null"
    history = c.get_metric_history(run.info.run_id, "val_loss")
    assert [(m.step, m.value) for m in history] == list(enumerate(card["training"]["history"]["val_loss"], 1))
    m = run.data.metrics
    assert m["best.val_loss"] == card["metrics"]["val_loss"] and m["best.epoch"] == card["training"]["best_epoch"]
    doc = logged["metrics"]["models"]
    assert m["test.all.mae.Propofol_INF.model"] == doc["model"]["Propofol_INF"]["all"]["mae"]
    assert m["test.changed.mae.PEEP.persistence"] == doc["persistence"]["PEEP"]["changed"]["mae"]
    assert m["test.all.mae.TV.xgboost"] == doc["xgboost"]["TV"]["all"]["mae"]
    assert m["test.changed.n.FIO2"] == doc["model"]["FIO2"]["changed"]["n"]
    ratios = [doc["model"][t]["all"]["mae"] / doc["persistence"][t]["all"]["mae"] for t in doc["model"]
              if doc["persistence"][t]["all"]["mae"]]
    assert m["test.all.mae_ratio.model"] == pytest.approx(sum(ratios) / len(ratios))
    files = {a.path for a in c.list_artifacts(run.info.run_id, "model")}
    assert {"model/model_card.json", "model/model.keras", "model/export", "model/evaluation"} <= files
    assert not any("_checkpoints" in f for f in files)
    report = {a.path for a in c.list_artifacts(run.info.run_id, "model/evaluation/test")}
    assert {"model/evaluation/test/report.html", "model/evaluation/test/metrics.json",
            "model/evaluation/test/predicted_vs_actual.png"} <= report


def test_lineage_tags_are_the_cards_values(logged):
    """Expected values read from the card's JSON, not through vitalflow's model."""
    from vitalflow.registry.versions import find_version

    card = json.loads((logged["model"] / "model_card.json").read_text())
    expected = {
        "dataset.fingerprint": card["dataset"]["fingerprint"], "dataset.uri": card["dataset"]["uri"],
        "spec.name": card["spec"]["name"], "spec.version": str(card["spec"]["version"]),
        "spec.hash": card["spec"]["hash"], "config.hash": card["config_hash"],
        "tool.version": card["tool"]["version"], "model.uri": str(logged["model"]),
    }
    info = find_version(str(logged["version"]))
    assert {k: info.tags[k] for k in expected} == expected
    from mlflow import MlflowClient

    from vitalflow.registry.tracking import tracking_uri

    run_tags = MlflowClient(tracking_uri()).get_run(info.run_id).data.tags
    assert {k: run_tags[k] for k in expected} == expected


def test_references_parse_and_format():
    from vitalflow.registry.versions import ModelReference

    assert ModelReference.parse("vitalflow@champion") == ModelReference("vitalflow", alias="champion")
    assert ModelReference.parse("my.model-2/17") == ModelReference("my.model-2", version="17")
    for text in ("s3://bucket/vitalflow/1", "/abs/model", "runs/model-a", "vitalflow", "a/b/1", "x@"):
        assert ModelReference.parse(text) is None, text
    assert str(ModelReference.parse("vitalflow/3")) == "vitalflow/3"


def test_resolve_keeps_directories_and_downloads_a_version_once(logged, tmp_path, monkeypatch):
    from vitalflow.registry.resolve import MARKER, resolve_model

    assert resolve_model(str(logged["model"])) == str(logged["model"])
    assert resolve_model("s3://bucket/models/m1") == "s3://bucket/models/m1"
    # a local folder named like a reference is the folder
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / NAME / "1"
    folder.mkdir(parents=True)
    (folder / "model_card.json").write_text((logged["model"] / "model_card.json").read_text())
    assert resolve_model(f"{NAME}/1") == f"{NAME}/1"
    folder.joinpath("model_card.json").unlink()
    cached = Path(resolve_model(str(logged["version"])))
    assert (cached / "model.keras").read_bytes() == (logged["model"] / "model.keras").read_bytes()
    stamp = (cached / "model.keras").stat().st_mtime_ns
    assert Path(resolve_model(str(logged["version"]))) == cached and (cached / "model.keras").stat().st_mtime_ns == stamp
    # a cached copy of another registry's version of that number is replaced
    marker = json.loads((cached / MARKER).read_text())
    (cached / MARKER).write_text(json.dumps({**marker, "run_id": "another"}))
    assert Path(resolve_model(str(logged["version"]))) == cached
    assert json.loads((cached / MARKER).read_text())["run_id"] == logged["version"].run_id


def test_unknown_references_raise_model_error_naming_what_exists(logged):
    from vitalflow.registry.resolve import resolve_model

    with pytest.raises(ModelError, match=r"no registered model 'nothing-here'.*vitalflow-lib"):
        resolve_model("nothing-here@champion")
    with pytest.raises(ModelError, match=r"vitalflow-lib has no alias 'champion' \(aliases: none; versions: 1\)"):
        resolve_model(f"{NAME}@champion")
    with pytest.raises(ModelError, match=r"vitalflow-lib has no version 5 \(versions: 1\)"):
        resolve_model(f"{NAME}/5")


@pytest.mark.parametrize("value", ["bad name", "-x", "a/b", "x@y", ""])
def test_a_bad_registered_model_name_is_refused_before_training(trainable_dataset, tmp_path, value):
    config = tmp_path / "train.yaml"
    config.write_text(f"registered_model: {json.dumps(value)}\n")
    result = CliRunner().invoke(app, ["train", str(trainable_dataset), "--output", str(tmp_path / "m"),
                                      "--config", str(config)])
    assert result.exit_code == 1, result.output
    line = next(x for x in result.output.splitlines() if x.startswith("Error:"))
    assert "registered_model" in line
    assert not (tmp_path / "m").exists()


def test_the_registered_model_name_does_not_change_the_config_hash():
    from vitalflow.model.config import TrainConfig, train_config_hash

    assert train_config_hash(TrainConfig(registered_model="other")) == train_config_hash(TrainConfig())
    assert TrainConfig().registered_model == "vitalflow"
