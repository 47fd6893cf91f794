"""`vitalflow train` and `evaluate` with the dataset and the model on S3 (SeaweedFS on loopback), and the
local cache of an S3 dataset (`vitalflow.model.inputs.local_files`)."""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import vitalflow
from vitalflow.cli import app

runner = CliRunner()
CARD = "preprocessing_metadata.json"


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _upload(client, bucket: str, folder: Path, prefix: str) -> list[str]:
    keys = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        key = f"{prefix}/{path.relative_to(folder).as_posix()}"
        client.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())
        keys.append(key)
    return keys


def _keys(client, bucket: str, prefix: str) -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", ()))


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """VITALFLOW_CACHE for this module's S3 reads (a fresh directory)."""
    path = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VITALFLOW_CACHE", str(path))
        yield path


@pytest.fixture(scope="module")
def s3(s3_server, trainable_dataset, tiny_config, cache):
    """A fresh bucket holding the trainable dataset at ds/ and a model trained from it at models/m1."""
    client = s3_server.client()
    bucket = s3_server.make_bucket(f"tr-{uuid.uuid4().hex[:10]}")
    uploaded = _upload(client, bucket, trainable_dataset, "ds")
    assert f"ds/{CARD}" in uploaded
    result = runner.invoke(app, ["train", f"s3://{bucket}/ds", "--output", f"s3://{bucket}/models/m1",
                                 "--config", str(tiny_config)])
    assert result.exit_code == 0, result.output
    return {"client": client, "bucket": bucket, "dataset": f"s3://{bucket}/ds", "model": f"s3://{bucket}/models/m1"}


@pytest.fixture(scope="module")
def local_model(trainable_dataset, tiny_config, tmp_path_factory):
    out = tmp_path_factory.mktemp("local-model") / "m1"
    result = runner.invoke(app, ["train", str(trainable_dataset), "--output", str(out), "--config", str(tiny_config)])
    assert result.exit_code == 0, result.output
    return out


def test_train_from_and_to_s3_gives_the_model_trained_locally(s3, local_model, trainable_dataset, tiny_config):
    from vitalflow.model.config import load_train_config, train_config_hash

    keys = _keys(s3["client"], s3["bucket"], "models/m1/")
    for name in ("model_card.json", "model.keras", "export/saved_model.pb"):
        assert f"models/m1/{name}" in keys, keys
    card = json.loads(s3["client"].get_object(Bucket=s3["bucket"], Key="models/m1/model_card.json")["Body"].read())
    dataset_card = json.loads((trainable_dataset / CARD).read_text())
    assert card["dataset"]["uri"] == s3["dataset"]
    assert card["dataset"]["fingerprint"] == dataset_card["fingerprint"]
    assert card["config_hash"] == train_config_hash(load_train_config(tiny_config))
    assert card["training"]["epochs_run"] == 6
    on_s3 = vitalflow.load_model(s3["model"]).predict_dataset(s3["dataset"], "test")
    local = vitalflow.load_model(local_model).predict_dataset(str(trainable_dataset), "test")
    assert len(on_s3.predicted) == dataset_card["splits"]["test"]["windows"]
    np.testing.assert_array_equal(on_s3.case_id, local.case_id)
    np.testing.assert_array_equal(on_s3.window_start_s, local.window_start_s)
    np.testing.assert_allclose(on_s3.predicted, local.predicted, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(on_s3.actual, local.actual)
    assert json.loads((local_model / "model_card.json").read_text())["training"]["history"] == \
        card["training"]["history"]


def test_a_stacked_decision_model_on_s3_predicts_as_its_local_copy(s3, tiny_config, tmp_path):
    """The stack's boosters are written to S3 beside the network and read back from there: the
    model's event probabilities and gated values equal those of the same files copied locally."""
    config = tmp_path / "decisions.yaml"
    config.write_text(tiny_config.read_text().replace("task: values", "task: decisions").replace("epochs: 6",
                                                                                                "epochs: 2"))
    model = f"s3://{s3['bucket']}/models/d1"
    result = runner.invoke(app, ["train", s3["dataset"], "--output", model, "--config", str(config), "--no-register"])
    assert result.exit_code == 0, result.output
    keys = _keys(s3["client"], s3["bucket"], "models/d1/")
    card = json.loads(s3["client"].get_object(Bucket=s3["bucket"], Key="models/d1/model_card.json")["Body"].read())
    files = [e["booster"] for e in card["stack"]["events"] if isinstance(e["booster"], str)]
    assert files and all(f"models/d1/{f}" in keys for f in files), keys
    local = tmp_path / "d1"
    for key in keys:
        path = local / key.removeprefix("models/d1/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(s3["client"].get_object(Bucket=s3["bucket"], Key=key)["Body"].read())
    on_s3 = vitalflow.load_model(model).predict_dataset(s3["dataset"], "test")
    copied = vitalflow.load_model(local).predict_dataset(s3["dataset"], "test")
    assert on_s3.event_probability.shape[1] == 15
    np.testing.assert_array_equal(on_s3.event_probability, copied.event_probability)
    np.testing.assert_array_equal(on_s3.value, copied.value)
    assert not np.allclose(on_s3.event_probability, on_s3.network_event_probability)  # the stack is in use


def test_evaluate_a_model_and_dataset_on_s3(s3):
    result = runner.invoke(app, ["evaluate", s3["model"], s3["dataset"]])
    assert result.exit_code == 0, result.output
    keys = _keys(s3["client"], s3["bucket"], "models/m1/evaluation/test/")
    assert {"models/m1/evaluation/test/metrics.json", "models/m1/evaluation/test/report.md"} <= set(keys), keys
    metrics = json.loads(s3["client"].get_object(Bucket=s3["bucket"],
                                                 Key="models/m1/evaluation/test/metrics.json")["Body"].read())
    assert metrics["model"] == s3["model"] and metrics["dataset"] == s3["dataset"]
    report = s3["client"].get_object(Bucket=s3["bucket"], Key="models/m1/evaluation/test/report.md")["Body"].read()
    assert len(report) > 100


def _cached_parts(cache: Path, dataset_card: dict) -> dict[str, Path]:
    root = cache / "datasets" / dataset_card["fingerprint"].replace(":", "-")
    return {f["path"]: root / f["path"] for split in ("train", "validation", "test")
            for f in dataset_card["files"][split]}


def test_the_cache_holds_verified_parts_and_replaces_damaged_ones(s3, cache, trainable_dataset):
    from vitalflow.dataset.reference import open_dataset
    from vitalflow.model.inputs import local_files

    dataset_card = json.loads((trainable_dataset / CARD).read_text())
    cached = _cached_parts(cache, dataset_card)
    recorded = {f["path"]: f["sha256"] for split in dataset_card["files"].values() for f in split}
    for split in ("train", "validation"):  # training read them
        assert all(cached[f["path"]].is_file() for f in dataset_card["files"][split]), split
    ds = open_dataset(s3["dataset"])
    for split in ("train", "validation", "test"):
        assert local_files(ds, split) == [str(cached[f["path"]]) for f in dataset_card["files"][split]]
    for path, target in cached.items():
        assert _sha256(target) == recorded[path]
        assert target.read_bytes() == (trainable_dataset / path).read_bytes()
    (train_part,) = [f["path"] for f in dataset_card["files"]["train"]]
    target = cached[train_part]
    original = (trainable_dataset / train_part).read_bytes()
    # another size (a download cut short): downloaded again
    target.write_bytes(original[: len(original) // 2])
    assert local_files(ds, "train") == [str(target)]
    assert target.read_bytes() == original
    # the same size, other bytes (a flipped block): downloaded again, never read as is
    damaged = bytearray(original)
    damaged[len(damaged) // 2: len(damaged) // 2 + 64] = bytes(64)
    assert bytes(damaged) != original
    target.write_bytes(bytes(damaged))
    assert local_files(ds, "train") == [str(target)]
    assert target.read_bytes() == original
    # a sound cache is read without asking S3 again
    s3["client"].delete_object(Bucket=s3["bucket"], Key=f"ds/{dataset_card['files']['test'][0]['path']}")
    try:
        assert local_files(ds, "test") == [str(cached[dataset_card["files"]["test"][0]["path"]])]
    finally:
        _upload(s3["client"], s3["bucket"], trainable_dataset, "ds")


def test_an_s3_part_altered_after_verification_is_refused_naming_it(s3_server, trainable_dataset, tiny_config,
                                                                     tmp_path, monkeypatch):
    from vitalflow.dataset.reference import open_dataset
    from vitalflow.errors import OutputError
    from vitalflow.model.inputs import local_files

    monkeypatch.setenv("VITALFLOW_CACHE", str(tmp_path / "cache"))
    client = s3_server.client()
    bucket = s3_server.make_bucket(f"alt-{uuid.uuid4().hex[:10]}")
    _upload(client, bucket, trainable_dataset, "ds")
    dataset_card = json.loads((trainable_dataset / CARD).read_text())
    (part,) = [f["path"] for f in dataset_card["files"]["train"]]
    original = (trainable_dataset / part).read_bytes()
    altered = bytearray(original)
    altered[100:164] = bytes(x ^ 0xFF for x in altered[100:164])
    client.put_object(Bucket=bucket, Key=f"ds/{part}", Body=bytes(altered))
    assert client.head_object(Bucket=bucket, Key=f"ds/{part}")["ContentLength"] == len(original)
    uri = f"s3://{bucket}/ds"
    ds = open_dataset(uri)  # the card is intact and verified: the dataset opens
    with pytest.raises(OutputError, match=rf"s3://{bucket}/ds/{part}: its content differs from what the card "
                                          r"records \(sha256\)"):
        local_files(ds, "train")
    assert not (tmp_path / "cache" / "datasets" / dataset_card["fingerprint"].replace(":", "-") / part).exists()
    # the other splits are untouched and read
    assert len(local_files(ds, "validation")) == 1
    # the command refuses it too, naming the object, and writes no model
    result = runner.invoke(app, ["train", uri, "--output", f"s3://{bucket}/models/m", "--config", str(tiny_config)])
    assert result.exit_code == 1, result.output
    assert f"s3://{bucket}/ds/{part}" in result.output
    assert "models/m/model_card.json" not in _keys(client, bucket, "models/")
