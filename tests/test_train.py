"""`vitalflow train`: determinism, checkpoints and resume (SIGKILL, SIGTERM), the model directory,
`load_model`, and the errors raised before any training starts."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from vitalflow.cli import app

STATE = "_checkpoints/state.json"


def train_cli(*args: str):
    return CliRunner().invoke(app, ["train", *map(str, args)])


def weights(model_dir: Path) -> list[np.ndarray]:
    import keras

    return keras.models.load_model(Path(model_dir) / "model.keras", compile=False).get_weights()


def same_weights(a: Path, b: Path) -> bool:
    wa, wb = weights(a), weights(b)
    return len(wa) == len(wb) and all(np.array_equal(x, y) for x, y in zip(wa, wb))


def card(model_dir: Path) -> dict:
    return json.loads((Path(model_dir) / "model_card.json").read_text())


@pytest.fixture(scope="module")
def reference_model(trainable_dataset, tiny_config, tmp_path_factory):
    """An uninterrupted training run: what every resumed run must reproduce."""
    out = tmp_path_factory.mktemp("reference") / "model"
    result = train_cli(trainable_dataset, "--output", out, "--config", tiny_config)
    assert result.exit_code == 0, result.output
    return out


def test_same_dataset_config_and_seed_give_the_same_weights(trainable_dataset, tiny_config, reference_model, tmp_path):
    again = tmp_path / "again"
    assert train_cli(trainable_dataset, "--output", again, "--config", tiny_config).exit_code == 0
    assert same_weights(reference_model, again)
    assert card(again)["training"]["history"] == card(reference_model)["training"]["history"]
    other_seed = tmp_path / "seed.yaml"
    other_seed.write_text(tiny_config.read_text() + "seed: 1\n")
    assert train_cli(trainable_dataset, "--output", tmp_path / "seed1", "--config", other_seed).exit_code == 0
    assert not same_weights(reference_model, tmp_path / "seed1")


def _start(dataset: Path, out: Path, config: Path) -> subprocess.Popen:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.Popen([sys.executable, "-m", "vitalflow", "train", str(dataset), "--output", str(out),
                             "--config", str(config)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _epochs_done(out: Path) -> int:
    try:
        return json.loads((out / STATE).read_text())["epochs_done"]
    except (FileNotFoundError, json.JSONDecodeError):
        return 0


def test_killed_at_random_moments_and_resumed_ends_with_the_uninterrupted_weights(
        trainable_dataset, tiny_config, reference_model, tmp_path):
    out = tmp_path / "model"
    rng = random.Random(13)
    kills, deadline = 0, time.monotonic() + 300
    for attempt in range(12):  # bounded: every run that is not killed finishes
        process = _start(trainable_dataset, out, tiny_config)
        seen = _epochs_done(out)
        # kill at a random moment after the run made progress (a new checkpoint) or while starting
        wait_for_epoch = rng.random() < 0.7
        delay = rng.uniform(0.0, 0.6)
        while process.poll() is None and time.monotonic() < deadline:
            if not wait_for_epoch or _epochs_done(out) > seen:
                time.sleep(delay)
                break
            time.sleep(0.02)
        if process.poll() is None and attempt < 10:
            process.kill()
            process.wait()
            kills += 1
            continue
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr
        break
    assert (out / "model_card.json").exists()
    assert kills >= 3
    assert card(out)["training"]["resumed"] >= 1
    assert same_weights(reference_model, out)
    assert card(out)["training"]["history"] == card(reference_model)["training"]["history"]
    leftovers = sorted(p.name for p in (out / "_checkpoints").iterdir())
    assert leftovers == sorted({"state.json", json.loads((out / STATE).read_text())["latest_file"],
                                json.loads((out / STATE).read_text())["best_file"]})


def test_sigterm_exits_75_soon_and_the_rerun_resumes(trainable_dataset, tiny_config, reference_model, tmp_path):
    out = tmp_path / "model"
    process = _start(trainable_dataset, out, tiny_config)
    deadline = time.monotonic() + 120
    while _epochs_done(out) < 1 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    sent = time.monotonic()
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    took = time.monotonic() - sent
    assert process.returncode == 75, stderr
    assert took < 10, f"exit took {took:.1f} s after SIGTERM (SageMaker allows 120 s)"
    assert "SIGTERM" in stderr and "rerun the same command" in stderr
    assert not (out / "model_card.json").exists()
    assert 1 <= _epochs_done(out) < 6
    result = train_cli(trainable_dataset, "--output", out, "--config", tiny_config)
    assert result.exit_code == 0, result.output
    assert same_weights(reference_model, out)


def test_the_model_directory_and_its_card(trainable_dataset, tiny_config, reference_model):
    from vitalflow.model.config import load_train_config, train_config_hash

    c = card(reference_model)
    assert (reference_model / "model.keras").is_file() and (reference_model / "export" / "saved_model.pb").is_file()
    dataset_card = json.loads((trainable_dataset / "preprocessing_metadata.json").read_text())
    assert c["spec"]["hash"] == dataset_card["spec"]["hash"]
    assert c["dataset"]["fingerprint"] == dataset_card["fingerprint"]
    assert c["dataset"]["windows"] == {s: v["windows"] for s, v in dataset_card["splits"].items()}
    assert c["config_hash"] == train_config_hash(load_train_config(tiny_config))
    spec = yaml.safe_load((Path(__file__).parents[1] / "src/vitalflow/spec/master_poc.yaml").read_text())
    assert [t["name"] for t in c["targets"]] == spec["targets"]
    assert [f["name"] for f in c["timeseries"]] == [f["name"] for f in spec["timeseries"]]
    ranges = {f["name"]: f["range"] for f in spec["timeseries"]}
    assert all(list(t["range"]) == ranges[t["name"]] for t in c["targets"])
    assert c["training"]["epochs_run"] == 6 and len(c["training"]["history"]["val_loss"]) == 6
    best = c["training"]["best_epoch"]
    assert c["metrics"]["val_loss"] == min(c["training"]["history"]["val_loss"]) == \
        c["training"]["history"]["val_loss"][best - 1]


def test_load_model_answers_in_clinical_units_as_the_export_does(trainable_dataset, reference_model):
    """Differential: the SavedModel export (TensorFlow alone), denormalized by hand from the spec's
    ranges, against `load_model(...).predict`."""
    import tensorflow as tf

    import vitalflow

    spec = yaml.safe_load((Path(__file__).parents[1] / "src/vitalflow/spec/master_poc.yaml").read_text())
    ranges = {f["name"]: f["range"] for f in spec["timeseries"]}
    lo = np.array([ranges[t][0] for t in spec["targets"]])
    hi = np.array([ranges[t][1] for t in spec["targets"]])
    F = {"timeseries": tf.io.FixedLenFeature([300 * 16], tf.float32),
         "static": tf.io.FixedLenFeature([6], tf.float32)}
    files = sorted(str(p) for p in trainable_dataset.glob("test-*.tfrecord.gz"))
    batch = next(iter(tf.data.TFRecordDataset(files, compression_type="GZIP").map(
        lambda r: tf.io.parse_single_example(r, F)).batch(40)))
    series = tf.reshape(batch["timeseries"], [-1, 300, 16]).numpy()
    static = batch["static"].numpy()
    exported = tf.saved_model.load(str(reference_model / "export"))
    normalized = exported.serve({"timeseries": tf.constant(series), "static": tf.constant(static)}).numpy()
    expected = lo + (normalized + 1) / 2 * (hi - lo)
    predictor = vitalflow.load_model(reference_model)
    got = predictor.predict(series, static)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert got.shape == (40, 8) and np.all(got >= lo - 1e-9) and np.all(got <= hi + 1e-9)
    # the whole split, in dataset order, with the truth
    whole = predictor.predict_dataset(str(trainable_dataset), "test")
    assert len(whole.predicted) == json.loads((trainable_dataset / "preprocessing_metadata.json").read_text()
                                              )["splits"]["test"]["windows"]
    np.testing.assert_allclose(whole.predicted[:40], expected, rtol=1e-5, atol=1e-6)


def test_a_value_model_written_before_the_decision_model_still_loads(trainable_dataset, reference_model, tmp_path):
    """A card of format 1 (no task, heads, calibration, class weights, monitor): a value model."""
    import vitalflow

    old = tmp_path / "old"
    shutil.copytree(reference_model, old, ignore=shutil.ignore_patterns("_checkpoints"))
    c = card(old)
    for key in ("task", "heads", "calibration", "class_weights"):
        c.pop(key)
    c["training"].pop("monitor")
    c["format"] = "vitalflow-model/1"
    (old / "model_card.json").write_text(json.dumps(c))
    predictor = vitalflow.load_model(old)
    assert predictor.task == "values" and predictor.card.heads == []
    whole = predictor.predict_dataset(str(trainable_dataset), "test")
    np.testing.assert_array_equal(whole.predicted, vitalflow.load_model(reference_model).predict_dataset(
        str(trainable_dataset), "test").predicted)


def test_rerunning_a_finished_training_does_nothing(trainable_dataset, tiny_config, reference_model):
    before = (reference_model / "model_card.json").read_bytes()
    result = train_cli(trainable_dataset, "--output", reference_model, "--config", tiny_config)
    assert result.exit_code == 0 and "already trained" in result.output
    assert (reference_model / "model_card.json").read_bytes() == before


# --- errors before any training starts -----------------------------------------------------------

def _error_line(result) -> str:
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, result.output
    return lines[0]


@pytest.mark.parametrize("text, needle", [
    ("epochs: 3\nbatchsize: 32\n", "batchsize: unknown key"),
    ("learning_rate: -1\n", "learning_rate"),
    ("loss: hinge\n", "loss"),
    ("target_weights: {Propofol: 2}\n", "Propofol"),
    ("network: {lstm_units: [8]}\n", "lstm_units"),
])
def test_a_bad_config_is_refused_naming_the_field(trainable_dataset, tmp_path, text, needle):
    config = tmp_path / "train.yaml"
    config.write_text(text)
    line = _error_line(train_cli(trainable_dataset, "--output", tmp_path / "m", "--config", config))
    assert needle in line and ("train.yaml" in line or "train config" in line)
    assert not (tmp_path / "m" / "_checkpoints").exists()


def _copy(dataset: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "ds"
    shutil.copytree(dataset, dest)
    return dest


def _edit_card(out: Path, **changes) -> None:
    path = out / "preprocessing_metadata.json"
    data = json.loads(path.read_text())
    for key, value in changes.items():
        data[key] = value
    path.write_text(json.dumps(data))


def test_bad_datasets_are_refused_naming_the_reason(trainable_dataset, tiny_config, tmp_path):
    missing = _error_line(train_cli(tmp_path / "nothing", "--output", tmp_path / "m", "--config", tiny_config))
    assert "nothing" in missing
    partial = _copy(trainable_dataset, tmp_path / "p")
    _edit_card(partial, status="partial")
    assert "partial" in _error_line(train_cli(partial, "--output", tmp_path / "m", "--config", tiny_config))
    unverified = _copy(trainable_dataset, tmp_path / "u")
    _edit_card(unverified, verification=None)
    assert "not verified" in _error_line(train_cli(unverified, "--output", tmp_path / "m", "--config", tiny_config))
    assert not (tmp_path / "m").exists()


def test_a_model_pins_its_datasets_spec_and_refuses_data_of_another(trainable_dataset, tiny_config, tmp_path):
    """A dataset made with an edited copy of the spec (version 3, another propofol range) trains a
    model of that spec, wherever the spec file goes afterwards; evaluating that model on data of
    the built-in spec is refused, naming both."""
    from vitalflow.spec.model import BUILTIN_DIR
    from vitalflow.synth import synth_corpus

    synth_corpus(tmp_path / "rec", 12, seed=0, hours=1.5, waves=False)
    spec = tmp_path / "my_spec.yaml"
    text = (BUILTIN_DIR / "master_poc.yaml").read_text()
    # the built-in spec is version 2 since the decision targets: the edited copy is version 3
    spec.write_text(text.replace("version: 2", "version: 3").replace("range: [0, 12]\n    plausible: [0, 2000]",
                                                                      "range: [0, 20]\n    plausible: [0, 2000]"))
    (tmp_path / "run.yaml").write_text("spec: my_spec.yaml\nsplit: {seed: 3}\n")
    r = CliRunner().invoke(app, ["preprocess", "-i", str(tmp_path / "rec"), "-c", str(tmp_path / "rec/clinical.csv"),
                                 "-o", str(tmp_path / "out"), "--config", str(tmp_path / "run.yaml"), "-q"])
    assert r.exit_code == 0, r.output
    spec.unlink()
    result = train_cli(tmp_path / "out", "--output", tmp_path / "m", "--config", tiny_config)
    assert result.exit_code == 0, result.output
    pinned = card(tmp_path / "m")["spec"]
    assert pinned["version"] == 3
    assert next(f for f in pinned["content"]["timeseries"] if f["name"] == "Propofol_INF")["range"] == [0, 20]
    assert card(tmp_path / "m")["targets"][0]["range"] == [0, 20]
    line = _error_line(CliRunner().invoke(app, ["evaluate", str(tmp_path / "m"), str(trainable_dataset)]))
    assert "trained with" in line and "spec" in line


def test_an_empty_validation_split_is_refused(corpus, tiny_config, tmp_path):
    """The 8-case session corpus with split seed 0 leaves some split empty; make it validation."""
    from vitalflow.synth import synth_corpus

    synth_corpus(tmp_path / "rec", 3, seed=5, hours=0.7, waves=False)
    (tmp_path / "run.yaml").write_text("split: {train: 1.0, validation: 0.0, test: 0.0}\n")
    r = CliRunner().invoke(app, ["preprocess", "-i", str(tmp_path / "rec"), "-c", str(tmp_path / "rec/clinical.csv"),
                                 "-o", str(tmp_path / "out"), "--config", str(tmp_path / "run.yaml"), "-q"])
    assert r.exit_code == 0, r.output
    line = _error_line(train_cli(tmp_path / "out", "--output", tmp_path / "m", "--config", tiny_config))
    assert "validation split has no windows" in line


def test_another_model_or_other_checkpoints_in_the_output_are_refused(trainable_dataset, tiny_config,
                                                                       reference_model, tmp_path):
    other = tmp_path / "other.yaml"
    other.write_text(tiny_config.read_text() + "seed: 7\n")
    line = _error_line(train_cli(trainable_dataset, "--output", reference_model, "--config", other))
    assert "holds another model" in line and "--overwrite" in line
    out = tmp_path / "m"
    shutil.copytree(reference_model / "_checkpoints", out / "_checkpoints")
    line = _error_line(train_cli(trainable_dataset, "--output", out, "--config", other))
    assert "checkpoints of another training" in line and "config hash" in line


def test_a_model_directory_missing_files_or_of_another_spec_is_refused(trainable_dataset, reference_model, tmp_path):
    import vitalflow
    from vitalflow.errors import ModelError

    broken = tmp_path / "broken"
    shutil.copytree(reference_model, broken)
    (broken / "model.keras").unlink()
    with pytest.raises(ModelError, match="missing model.keras"):
        vitalflow.load_model(broken)
    line = _error_line(CliRunner().invoke(app, ["evaluate", str(broken), str(trainable_dataset)]))
    assert "missing model.keras" in line
    assert "no model card" in _error_line(CliRunner().invoke(app, ["evaluate", str(tmp_path), str(trainable_dataset)]))
    other = tmp_path / "other"
    shutil.copytree(reference_model, other)
    data = card(other)
    data["spec"]["hash"] = "sha256:" + "1" * 64
    (other / "model_card.json").write_text(json.dumps(data))
    line = _error_line(CliRunner().invoke(app, ["evaluate", str(other), str(trainable_dataset)]))
    assert "trained with" in line and "spec" in line
