"""The decision model (``task: decisions``): its masked loss against a hand computation, the card
(task, heads, class weights, temperatures), the predictor's calibrated probabilities against
``sigmoid(logit / T)`` from the raw Keras output, the early-stopping AUPRC against scikit-learn,
the refusal of examples without decision labels, determinism and resume after SIGKILL."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from sklearn.metrics import average_precision_score

#: Tiny and quick (2-3 epochs of seconds each on 2 cores); the decision model's batch 128 default is
#: kept, as is the task (``decisions`` is the default).
TINY = """\
network: {conv_filters: [8], conv_kernel: 3, pool: 5, lstm_units: [8, 8], dense_units: 8}
epochs: 3
early_stopping: null
"""
CARD = "model_card.json"


def _card(model_dir: Path) -> dict:
    return json.loads((Path(model_dir) / CARD).read_text())


def _weights(model_dir: Path) -> list[np.ndarray]:
    import keras

    return keras.models.load_model(Path(model_dir) / "model.keras", compile=False).get_weights()


def _same_weights(a: Path, b: Path) -> bool:
    wa, wb = _weights(a), _weights(b)
    return len(wa) == len(wb) and all(np.array_equal(x, y) for x, y in zip(wa, wb))


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("decision-config") / "train.yaml"
    path.write_text(TINY)
    return path


@pytest.fixture(scope="module")
def model(trainable_dataset, config, tmp_path_factory) -> Path:
    from vitalflow.train.run import train_model

    out = tmp_path_factory.mktemp("decision") / "model"
    result = train_model(str(trainable_dataset), str(out), str(config))
    assert result.card is not None and result.stopped is None
    return out


@pytest.fixture(scope="module")
def spec():
    from vitalflow.spec.model import load_spec

    return load_spec("master_poc")


# --- the loss ------------------------------------------------------------------------------------

def _softplus(x):
    return np.logaddexp(0.0, x)


def _hand_loss(kinds, w, head_weights, labels, mask, raw) -> float:
    """The documented loss, element by element: per head the mean over its unmasked entries."""
    sums, counts = [0.0, 0.0, 0.0], [0, 0, 0]
    for i in range(labels.shape[0]):
        for j, kind in enumerate(kinds):
            if not mask[i, j]:
                continue
            y, z = labels[i, j], raw[i, j]
            if kind == 0:
                s = z + np.log(w[j])
                loss = w[j] * y * _softplus(-s) + (1 - y) * _softplus(s)
            elif kind == 1:
                loss = y * _softplus(-z) + (1 - y) * _softplus(z)
            else:
                e = abs(z - y)
                loss = 0.5 * e * e if e <= 1 else e - 0.5
            sums[kind] += loss
            counts[kind] += 1
    return sum(hw * s / c for hw, s, c in zip(head_weights, sums, counts) if c)


def test_the_masked_loss_equals_a_hand_computation_and_ignores_masked_labels():
    from vitalflow.model.network import DecisionLoss

    kinds = [0, 0, 1, 1, 2, 2]
    w = [4.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    head_weights = (1.0, 0.3, 0.5)
    rng = np.random.default_rng(4)
    raw = np.concatenate([rng.normal(0, 2, (5, 4)), np.tanh(rng.normal(0, 1, (5, 2)))], axis=1).astype(np.float32)
    labels = np.concatenate([rng.integers(0, 2, (5, 4)), rng.uniform(-1, 1, (5, 2))], axis=1).astype(np.float32)
    labels[0, 4] = 3.0  # a value error over Huber's delta: the linear part
    mask = np.ones_like(labels)
    mask[1, 0] = mask[2, 3] = mask[3, 5] = mask[4, :] = 0
    loss = DecisionLoss(kinds, w, head_weights)
    got = float(loss(np.concatenate([labels, mask], 1), raw))
    expected = _hand_loss(kinds, w, head_weights, labels, mask, raw)
    assert got == pytest.approx(expected, rel=1e-5)
    # masked labels contribute nothing, whatever their value
    changed = labels.copy()
    changed[mask == 0] = rng.uniform(-50, 50, int((mask == 0).sum()))
    assert float(loss(np.concatenate([changed, mask], 1), raw)) == got
    # a head without an unmasked label in the batch adds 0
    no_values = mask.copy()
    no_values[:, 4:] = 0
    assert float(loss(np.concatenate([labels, no_values], 1), raw)) == pytest.approx(
        _hand_loss(kinds, w, head_weights, labels, no_values, raw), rel=1e-5)
    # the gradient reaches no masked output
    x = tf.Variable(raw)
    with tf.GradientTape() as tape:
        value = loss(tf.constant(np.concatenate([labels, mask], 1)), x)
    grad = tape.gradient(value, x).numpy()
    assert np.all(grad[mask == 0] == 0) and np.all(grad[mask == 1] != 0)


def test_the_focal_event_loss():
    from vitalflow.model.network import DecisionLoss

    raw = np.array([[2.0, -1.0], [0.5, 3.0]], np.float32)
    labels = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    mask = np.array([[1.0, 1.0], [1.0, 0.0]], np.float32)
    gamma = 2.0
    p = 1 / (1 + np.exp(-raw.astype(np.float64)))
    pt = labels * p + (1 - labels) * (1 - p)
    ce = labels * _softplus(-raw) + (1 - labels) * _softplus(raw)
    expected = float(((1 - pt) ** gamma * ce)[mask == 1].mean())
    got = float(DecisionLoss([0, 0], [9.0, 9.0], (1.0, 1.0, 1.0), "focal", gamma)(np.concatenate([labels, mask], 1),
                                                                                   raw))
    assert got == pytest.approx(expected, rel=1e-5)


# --- the model and its card ----------------------------------------------------------------------

def test_the_card_records_task_heads_class_weights_and_temperatures(model, trainable_dataset, spec):
    c = _card(model)
    names = [str(x) for x in spec.decisions.labels]
    assert c["task"] == "decisions" and c["format"] == "vitalflow-model/2"
    assert [h["name"] for h in c["heads"]] == names and c["targets"] == []
    events = [n for n in names if n.startswith("event/")]
    logits = [n for n in names if not n.startswith("value/")]
    assert all(h["output"] == ("tanh" if h["task"] == "value" else "logit") for h in c["heads"])
    fio2 = next(h for h in c["heads"] if h["name"] == "value/FIO2_SET/300")
    assert fio2["unit"] == "%" and fio2["range"] == [21.0, 100.0]
    # class weights: negatives / positives of the train split, capped at 20
    assert sorted(c["class_weights"]) == sorted(events)
    from vitalflow.dataset.reference import open_dataset
    from vitalflow.model.inputs import numpy_batches

    batches = list(numpy_batches(open_dataset(str(trainable_dataset)), "train", ["labels", "label_mask"]))
    labels = np.concatenate([b["labels"] for b in batches])
    valid = np.concatenate([b["label_mask"] for b in batches]) > 0
    for j, name in enumerate(events):
        pos = int((valid[:, j] & (labels[:, j] > 0)).sum())
        neg = int(valid[:, j].sum()) - pos
        assert c["class_weights"][name] == pytest.approx(min(20.0, neg / pos) if pos else 1.0, rel=1e-6)
    cal = c["calibration"]
    assert cal["method"] == "temperature" and cal["split"] == "validation"
    assert sorted(cal["temperatures"]) == sorted(logits)
    assert all(0.05 <= t <= 20 for t in cal["temperatures"].values())
    assert any(t != 1.0 for t in cal["temperatures"].values())
    assert set(cal["ece_after"]) == set(cal["ece_before"]) <= set(logits)
    # temperatures minimize the NLL, not the ECE: the ECE may move either way (tested on its own below)
    assert all(0 <= v <= 1 for v in [*cal["ece_before"].values(), *cal["ece_after"].values()])
    t = c["training"]
    assert t["monitor"] == "val_auprc" and t["epochs_run"] == 3
    assert c["metrics"]["val_auprc"] == max(t["history"]["val_auprc"]) == t["history"]["val_auprc"][t["best_epoch"] - 1]
    assert c["config"]["task"] == "decisions" and c["config"]["batch_size"] == 128


def _plain(dataset_dir: Path, split: str, n: int) -> dict[str, np.ndarray]:
    """The first ``n`` windows of a split read with TensorFlow alone (shapes written by hand)."""
    card = json.loads((dataset_dir / "preprocessing_metadata.json").read_text())
    files = [str(dataset_dir / f["path"]) for f in card["files"][split]]
    features = {"timeseries": tf.io.FixedLenFeature([300 * 16], tf.float32),
                "static": tf.io.FixedLenFeature([6], tf.float32),
                "labels": tf.io.FixedLenFeature([75], tf.float32),
                "label_mask": tf.io.FixedLenFeature([75], tf.float32),
                # the decision context: 10 set-points, 11 times since, 30 min of 16 features at 30 s
                "setpoints": tf.io.FixedLenFeature([10], tf.float32),
                "setpoints_known": tf.io.FixedLenFeature([10], tf.float32),
                "context": tf.io.FixedLenFeature([11], tf.float32),
                "history": tf.io.FixedLenFeature([60 * 16], tf.float32)}
    batch = next(iter(tf.data.TFRecordDataset(files, compression_type="GZIP").map(
        lambda r: tf.io.parse_single_example(r, features)).batch(n)))
    out = {k: v.numpy() for k, v in batch.items()}
    out["timeseries"] = out["timeseries"].reshape(-1, 300, 16)
    out["history"] = out["history"].reshape(-1, 60, 16)
    return out


def _stacked(model, event: dict, network: np.ndarray, plain: dict) -> np.ndarray:
    """The stack's probability from its card entry, written from README's formula: the booster read
    by XGBoost itself from the model directory, on the window summaries (tested against a hand
    computation in test_evaluate_baselines; trees split at data values, so the input must be those
    exact float32 numbers, not a recomputation that differs in the last bit)."""
    import xgboost

    from vitalflow.model.boosted import boosted_features

    x = boosted_features(plain["timeseries"], plain["static"], plain["setpoints"], plain["setpoints_known"])
    if isinstance(event["booster"], str):
        boosted = xgboost.Booster(model_file=str(model / event["booster"])).predict(xgboost.DMatrix(x))
    else:
        boosted = np.full(len(x), event["booster"])
    logit = lambda p: np.log(np.clip(p, 1e-6, 1 - 1e-6) / (1 - np.clip(p, 1e-6, 1 - 1e-6)))  # noqa: E731
    w, (a, b) = event["network_weight"], event["platt"]
    return 1 / (1 + np.exp(-(a * (w * logit(network) + (1 - w) * logit(boosted)) + b)))


def test_predictions_are_the_calibrated_raw_outputs(model, trainable_dataset, spec):
    import keras

    import vitalflow

    c = _card(model)
    temps = c["calibration"]["temperatures"]
    plain = _plain(trainable_dataset, "test", 40)
    inputs = ("timeseries", "static", "setpoints", "setpoints_known", "context", "history")
    assert c["inputs"] == list(inputs)
    raw = keras.models.load_model(model / "model.keras", compile=False).predict(
        {n: plain[n] for n in inputs}, verbose=0).astype(np.float64)
    names = [str(x) for x in spec.decisions.labels]
    predictor = vitalflow.load_model(model)
    got = predictor.predict_decisions(plain["timeseries"], plain["static"], context={n: plain[n] for n in inputs[2:]})
    setpoints = {s.name: s for s in spec.decisions.setpoints}
    order = [s.name for s in spec.decisions.setpoints]
    gates = c["value_gates"]["thresholds"]
    assert sorted(gates) == sorted(n for n in names if n.startswith("value/"))
    for j, name in enumerate(names):
        task, of, horizon = name.split("/")
        if task == "value":  # the network's value where its group's event is likely (or unknown now), else now
            lo, hi = setpoints[of].range
            k = order.index(of)
            likely = got[f"event/{spec.decisions.group_of(of)}/{horizon}"] >= gates[name]
            keep = likely | (plain["setpoints_known"][:, k] < 0.5)
            expected = lo + (np.where(keep, raw[:, j], plain["setpoints"][:, k]) + 1) / 2 * (hi - lo)
        else:
            expected = 1 / (1 + np.exp(-raw[:, j] / temps[name]))
        if task == "event":  # the network's alone; the model's is the stack (below)
            np.testing.assert_allclose(got.network_event_probability[:, j], expected, rtol=1e-5, atol=1e-6)
            expected = _stacked(model, c["stack"]["events"][j], expected, plain)
        np.testing.assert_allclose(got[name], expected, rtol=1e-5, atol=1e-6)
    assert got.event_probability.shape == (40, 15) and got.direction_probability.shape == (40, 30)
    assert got.value.shape == (40, 30) and got.value_units[names.index("value/FIO2_SET/60") - 45] == "%"
    assert list(got.event_names) == names[:15]
    # the whole split in dataset order, with the truth
    whole = predictor.predict_dataset(str(trainable_dataset), "test")
    n = json.loads((trainable_dataset / "preprocessing_metadata.json").read_text())["splits"]["test"]["windows"]
    assert len(whole.case_id) == len(whole.window_start_s) == n
    assert whole.labels.shape == whole.label_mask.shape == (n, 75) and whole.event_onset_s.shape == (n, 15)
    assert list(whole.label_names) == names
    for probability in (whole.event_probability, whole.direction_probability):
        assert np.all((probability >= 0) & (probability <= 1))
    np.testing.assert_array_equal(whole.labels[:40], plain["labels"])
    np.testing.assert_array_equal(whole.label_mask[:40], plain["label_mask"])
    np.testing.assert_allclose(whole.event_probability[:40], got.event_probability, rtol=1e-5, atol=1e-6)
    # a decision model predicts no 30 s values
    from vitalflow.errors import ModelError

    with pytest.raises(ModelError, match="predict_decisions"):
        predictor.predict(plain["timeseries"], plain["static"])
    with pytest.raises(ModelError, match="decision context: pass context with history"):
        predictor.predict_decisions(plain["timeseries"], plain["static"], context={n: plain[n] for n in inputs[2:5]})


def test_the_early_stopping_auprc_is_sklearns_average_precision(model, trainable_dataset):
    """The card's val_auprc (the best epoch's, whose weights the model holds) recomputed from the
    model's validation outputs with scikit-learn."""
    import vitalflow

    c = _card(model)
    val = vitalflow.load_model(model).predict_dataset(str(trainable_dataset), "validation")
    aps = {}
    for j, name in enumerate(val.event_names):
        valid = val.label_mask[:, j] > 0
        y = val.labels[valid, j]
        if 0 < y.sum() < y.size:
            aps[name] = average_precision_score(y, val.raw[valid, j])
    assert aps and sorted(f"val_ap/{n}" for n in aps) == sorted(k for k in c["metrics"] if k.startswith("val_ap/"))
    for name, ap in aps.items():
        assert c["metrics"][f"val_ap/{name}"] == pytest.approx(ap, rel=1e-6, abs=1e-9)
    assert c["metrics"]["val_auprc"] == pytest.approx(np.mean(list(aps.values())), rel=1e-6)


def test_average_precision_is_sklearns_with_ties():
    from vitalflow.scores import auprc as average_precision  # what early stopping reads

    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(2, 300))
        y = rng.integers(0, 2, n)
        if y.sum() == 0:
            y[0] = 1
        score = np.round(rng.normal(size=n), int(rng.integers(0, 3)))  # many ties
        assert average_precision(y, score) == pytest.approx(average_precision_score(y, score), rel=1e-12)
    assert np.isnan(average_precision(np.zeros(4), np.arange(4)))


def test_temperature_fit_and_ece():
    from vitalflow.model.calibration import fit_temperature, nll
    from vitalflow.scores import ece

    rng = np.random.default_rng(1)
    true_logit = rng.normal(0, 2, 4000)
    y = (rng.uniform(size=4000) < 1 / (1 + np.exp(-true_logit))).astype(float)
    for scale in (0.3, 3.0):  # under- and over-confident
        t = fit_temperature(true_logit * scale, y)
        assert t == pytest.approx(scale, rel=0.1)
        grid = np.exp(np.linspace(np.log(0.05), np.log(20), 2001))
        best = grid[np.argmin([nll(true_logit * scale / g, y) for g in grid])]
        assert t == pytest.approx(best, rel=0.01)
        p = lambda tt: 1 / (1 + np.exp(-true_logit * scale / tt))  # noqa: E731
        assert ece(y, p(t)) < ece(y, p(1.0))


# --- refusals ------------------------------------------------------------------------------------

def test_examples_without_decision_labels_are_refused_naming_both_versions(trainable_dataset, config, tmp_path):
    from vitalflow.errors import OutputError
    from vitalflow.train.run import train_model

    old = tmp_path / "ds"
    shutil.copytree(trainable_dataset, old)
    path = old / "preprocessing_metadata.json"
    card = json.loads(path.read_text())
    card["example_schema_version"] = 1
    for name in ("labels", "label_mask", "event_onset_s"):
        card["example_schema"].pop(name)
    path.write_text(json.dumps(card))
    with pytest.raises(OutputError) as info:
        train_model(str(old), str(tmp_path / "m"), str(config))
    assert str(info.value) == (f"{old}: examples of schema version 1 hold no decision labels; this vitalflow trains on "
                               "schema version 2: preprocess the recordings again (or set task: values)")
    assert not (tmp_path / "m").exists()


def test_a_dataset_without_the_decision_context_is_refused_unless_context_inputs_is_off(trainable_dataset, config,
                                                                                       tmp_path):
    from vitalflow.errors import OutputError
    from vitalflow.train.run import train_model

    old = tmp_path / "ds"
    shutil.copytree(trainable_dataset, old)
    path = old / "preprocessing_metadata.json"
    card = json.loads(path.read_text())
    card["example_schema"].pop("history")
    path.write_text(json.dumps(card))
    with pytest.raises(OutputError, match=r"no history feature .*context_inputs: false"):
        train_model(str(old), str(tmp_path / "m"), str(config))


# --- determinism and resume ----------------------------------------------------------------------

def test_the_same_seed_gives_the_same_weights(model, trainable_dataset, config, tmp_path):
    from vitalflow.train.run import train_model

    train_model(str(trainable_dataset), str(tmp_path / "again"), str(config))
    assert _same_weights(model, tmp_path / "again")
    assert _card(tmp_path / "again")["training"]["history"] == _card(model)["training"]["history"]
    assert _card(tmp_path / "again")["calibration"] == _card(model)["calibration"]
    assert _card(tmp_path / "again")["stack"] == _card(model)["stack"]  # the boosters too
    for e in _card(model)["stack"]["events"]:
        if isinstance(e["booster"], str):
            assert (tmp_path / "again" / e["booster"]).read_bytes() == (model / e["booster"]).read_bytes()


def test_the_card_records_the_stack_and_a_corrupt_booster_is_refused_by_name(model, spec, tmp_path):
    import vitalflow
    from vitalflow.errors import ModelError

    stack = _card(model)["stack"]
    events = [str(e) for e in spec.decisions.events]
    assert [e["name"] for e in stack["events"]] == events
    assert stack["split"] == "validation" and len(stack["features"]) == 3 * 16 + 6 + 2 * 10
    for e in stack["events"]:
        auprc = e["validation_auprc"]
        if auprc["stack"] is not None:  # on validation the stack ranks at least as well as either member
            assert auprc["stack"] >= max(auprc["network"], auprc["xgboost"]) - 1e-6
    gates = _card(model)["value_gates"]
    assert gates["split"] == "validation" and any(t > 0 for t in gates["thresholds"].values())
    for name, mae in gates["mae"].items():  # on validation the gated values are no worse than either
        if mae["gated"] is not None:
            assert mae["gated"] <= min(mae["network"], mae["persistence"]) + 1e-6, name
    broken = tmp_path / "broken"
    shutil.copytree(model, broken)
    first = next(e["booster"] for e in stack["events"] if isinstance(e["booster"], str))
    (broken / first).write_bytes(b"not a booster")
    with pytest.raises(ModelError, match="boosted/"):
        vitalflow.load_model(broken)


def test_killed_after_an_epoch_and_resumed_ends_with_the_uninterrupted_weights(model, trainable_dataset, config,
                                                                                 tmp_path):
    out = tmp_path / "model"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [sys.executable, "-m", "vitalflow", "train", str(trainable_dataset), "--output", str(out), "--config",
               str(config), "--no-register"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    state = out / "_checkpoints" / "state.json"
    deadline = time.monotonic() + 180
    while process.poll() is None and time.monotonic() < deadline:
        try:
            if json.loads(state.read_text())["epochs_done"] >= 1:
                break
        except (FileNotFoundError, json.JSONDecodeError):
            pass
        time.sleep(0.02)
    process.kill()
    process.communicate()
    saved = json.loads(state.read_text())
    assert 1 <= saved["epochs_done"] < 3 and saved["best_val_auprc"] is not None
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert _card(out)["training"]["resumed"] == 1
    assert _same_weights(model, out)
    assert _card(out)["training"]["history"] == _card(model)["training"]["history"]
    assert _card(out)["calibration"] == _card(model)["calibration"]


def test_an_untrained_decision_network_predicts_each_value_as_its_set_point_now():
    """The value heads are residual on the set-points and start at zero change: before training, a
    value label's prediction is persistence (the set-point at the window's end), whatever the inputs."""
    import keras

    from vitalflow.model.config import TrainConfig
    from vitalflow.model.heads import Heads
    from vitalflow.model.network import build_decision_network
    from vitalflow.spec import load_spec

    spec = load_spec()
    heads = Heads.from_spec(spec)
    names = [sp.name for sp in spec.decisions.setpoints]
    index = [names.index(n.split("/")[1]) for n in heads.names_of("value")]
    sizes = {"setpoints": (10,), "setpoints_known": (10,), "context": (11,), "history": (60, 16)}
    keras.utils.set_random_seed(3)
    model = build_decision_network(TrainConfig(), 300, 16, 6, heads, context=sizes, setpoint_index=index)
    rng = np.random.default_rng(0)
    inputs = {"timeseries": rng.uniform(-1, 1, (4, 300, 16)), "static": rng.uniform(-1, 1, (4, 6)),
              **{name: rng.uniform(-1, 1, (4, *shape)) for name, shape in sizes.items()}}
    out = np.asarray(model.predict({k: v.astype(np.float32) for k, v in inputs.items()}, verbose=0))
    values = out[:, heads.indices("value")]
    assert np.allclose(values, inputs["setpoints"][:, index], atol=1e-6)
