"""A decision model through the lifecycle: train (evaluate + register), metrics.json against an
independent recomputation, the registry's metrics, batch prediction's timelines against the
predictor, and the service's answer for a recording.

Independent expectations: the test split is read with TensorFlow's own TFRecord reader and parser
(not vitalflow's reader), AUPRC and AUROC come from scikit-learn, and the labels a timeline says
happened are the dataset's labels of the same window.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import tensorflow as tf
from sklearn.metrics import average_precision_score, roc_auc_score

from tests.conftest import TINY_TRAIN_CONFIG

pytestmark = pytest.mark.usefixtures("own_registry")

NAME = "decisions-lifecycle"
CONFIG = TINY_TRAIN_CONFIG.replace("task: values", "task: decisions").replace("epochs: 6", "epochs: 3") + \
    f"registered_model: {NAME}\n"


def vitalflow(*args, check: int = 0) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "vitalflow", *map(str, args)], capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == check, result.stdout + result.stderr
    return result


@pytest.fixture(scope="module")
def trained(trainable_dataset, tmp_path_factory):
    root = tmp_path_factory.mktemp("decision-lifecycle")
    (root / "train.yaml").write_text(CONFIG)
    result = vitalflow("train", trainable_dataset, "--output", root / "model", "--config", root / "train.yaml")
    return root / "model", result.stdout


def _test_split_with_tensorflow(dataset: Path) -> dict[str, np.ndarray]:
    """labels, label_mask, case_id and window_start_s of the test split, read by TensorFlow alone."""
    card = json.loads((dataset / "preprocessing_metadata.json").read_text())
    features = {name: tf.io.FixedLenFeature(f["shape"], getattr(tf, f["dtype"]))
                for name, f in card["example_schema"].items() if name in ("labels", "label_mask", "case_id",
                                                                          "window_start_s")}
    files = [str(dataset / p["path"]) for p in card["files"]["test"]]
    out: dict[str, list] = {k: [] for k in features}
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        ex = tf.io.parse_single_example(record, features)
        for k in features:
            out[k].append(ex[k].numpy())
    return {k: np.stack(v) for k, v in out.items()}


def test_training_registers_a_decision_model_with_its_heads_and_calibration(trained):
    model, stdout = trained
    card = json.loads((model / "model_card.json").read_text())
    assert card["task"] == "decisions" and card["targets"] == []
    assert [h["name"] for h in card["heads"]][:2] == ["event/hypnotic/60", "event/hypnotic/300"]
    assert card["calibration"]["method"] == "temperature"
    assert "val mean AUPRC" in stdout and f"registered: {NAME}/1" in stdout


def test_metrics_json_equals_scikit_learn_on_the_windows_tensorflow_reads(trained, trainable_dataset):
    from vitalflow.model.predictor import load_model

    model, _ = trained
    metrics = json.loads((model / "evaluation" / "test" / "metrics.json").read_text())
    split = _test_split_with_tensorflow(trainable_dataset)
    predictions = load_model(model).predict_dataset(str(trainable_dataset), "test")
    # the predictor's windows are the dataset's, in the same order as TensorFlow reads them
    assert np.array_equal(predictions.case_id.reshape(-1), split["case_id"].reshape(-1))
    assert np.array_equal(predictions.window_start_s.reshape(-1), split["window_start_s"].reshape(-1))
    names = predictions.label_names
    checked = 0
    for key, event in metrics["events"].items():
        group, horizon = key.split("/")
        j = names.index(f"event/{group}/{horizon}")
        valid = split["label_mask"][:, j] > 0
        y = split["labels"][valid, j]
        assert event["n"] == int(valid.sum()) and event["positives"] == int(y.sum())
        if y.size == 0 or y.min() == y.max():
            continue
        p = predictions[f"event/{group}/{horizon}"][valid]
        assert math.isclose(event["scorers"]["model"]["auprc"], average_precision_score(y, p), abs_tol=1e-5)
        assert math.isclose(event["scorers"]["model"]["auroc"], roc_auc_score(y, p), abs_tol=1e-5)
        # no skill: a constant score, so its AUPRC is the prevalence and its AUROC one half
        assert math.isclose(event["scorers"]["no_skill"]["auprc"], y.mean(), abs_tol=1e-5)
        assert event["scorers"]["no_skill"]["auroc"] == 0.5
        lo, hi = event["scorers"]["model"]["auprc_ci"]
        assert lo <= event["scorers"]["model"]["auprc"] <= hi
        checked += 1
    assert checked >= 4
    # the recordings are synthetic: the simulated clinician's oracle is a scorer
    assert "oracle" in metrics["scorers"]
    for name in ("report.md", "report.html", "pr_curves.png", "roc_curves.png", "reliability.png"):
        assert (model / "evaluation" / "test" / name).stat().st_size > 0


def test_the_registry_holds_the_event_metrics_and_ranks_on_mean_auprc(trained):
    from mlflow.tracking import MlflowClient

    from vitalflow.registry.tracking import tracking_uri

    model, _ = trained
    metrics = json.loads((model / "evaluation" / "test" / "metrics.json").read_text())
    client = MlflowClient(tracking_uri())
    version = client.get_model_version(NAME, "1")
    logged = client.get_run(version.run_id).data.metrics
    expected = [ev["scorers"]["model"]["auprc"] for ev in metrics["events"].values()
                if ev["positives"] and ev["scorers"]["model"]["auprc"] is not None]
    assert math.isclose(logged["test.mean_auprc.model"], sum(expected) / len(expected), rel_tol=1e-9)
    assert math.isclose(logged["test.auprc.oxygen/300.model"], metrics["events"]["oxygen/300"]["scorers"]["model"]
                        ["auprc"], rel_tol=1e-9)
    listing = vitalflow("models", "list", NAME).stdout
    assert "mean AUPRC" in listing and f"{logged['test.mean_auprc.model']:.4g}"[:5] in listing


def test_batch_predictions_are_the_predictors_probabilities_and_the_labels_happened(trained, trainable_dataset,
                                                                                    tmp_path):
    from vitalflow.model.predictor import load_model

    model, _ = trained
    predictions = load_model(model).predict_dataset(str(trainable_dataset), "test")
    split = _test_split_with_tensorflow(trainable_dataset)
    cases = sorted(set(predictions.case_id.reshape(-1).tolist()))[:3]  # test cases: labels to compare with
    recordings = trainable_dataset.parent / "rec"
    vitalflow("predict", "--model", model, "--input", recordings, "--clinical", recordings / "clinical.csv",
              "--output", tmp_path / "pred", "--cases", ",".join(map(str, cases)), "--plots")
    names = predictions.label_names
    compared = 0
    for case in cases:
        table = pq.read_table(tmp_path / "pred" / "cases" / f"{case}.parquet").to_pandas()
        assert (tmp_path / "pred" / "cases" / f"{case}.png").stat().st_size > 0
        rows = predictions.case_id.reshape(-1) == case
        by_time = {int(s) + 299: i for i, s in zip(np.flatnonzero(rows), predictions.window_start_s.reshape(-1)[rows])}
        assert sorted(by_time) == table["time_s"].tolist()  # one row per window, at its last second
        for _, row in table.iterrows():
            i = by_time[int(row["time_s"])]
            for group, horizon in (("hypnotic", 300), ("oxygen", 60), ("ventilation", 600)):
                j = names.index(f"event/{group}/{horizon}")
                assert 0.0 <= row[f"{group}_{horizon}s_pred"] <= 1.0
                assert math.isclose(row[f"{group}_{horizon}s_pred"], predictions[f"event/{group}/{horizon}"][i],
                                    abs_tol=1e-5)
                truth = row[f"{group}_{horizon}s_recorded"]
                if split["label_mask"][i, j] > 0:
                    assert truth == split["labels"][i, j]
                else:
                    assert math.isnan(truth)
            compared += 1
    assert compared > 20
    card = json.loads((tmp_path / "pred" / "prediction_card.json").read_text())
    assert {"name": "hypnotic_300s", "unit": "probability", "predicted": "hypnotic_300s_pred",
            "recorded": "hypnotic_300s_recorded"} in card["targets"]


def test_a_recording_through_predict_recording_answers_probabilities_per_group_and_horizon(trained,
                                                                                           trainable_dataset):
    from vitalflow.model.predictor import load_model
    from vitalflow.predict.recording import predict_recording
    from vitalflow.serve.app import timeline_document

    model, _ = trained
    predictor = load_model(model)
    recordings = trainable_dataset.parent / "rec"
    table = predict_recording(recordings / "0001.vital", {"age": 60, "sex": "F", "height": 160, "weight": 60},
                              predictor)
    document = timeline_document(table)
    assert document["targets"][:3] == ["hypnotic_60s", "hypnotic_300s", "hypnotic_600s"]
    assert document["units"][0] == "probability"
    probabilities = np.array(document["predictions"])[:, :15]
    assert ((probabilities >= 0) & (probabilities <= 1)).all()


def test_the_service_answers_json_windows_with_their_context_as_the_predictor_does(trained, trainable_dataset,
                                                                                 tmp_path):
    from tests.test_serve_http import serve
    from vitalflow.dataset.reference import open_dataset
    from vitalflow.model.config import CONTEXT_INPUTS
    from vitalflow.model.inputs import numpy_batches
    from vitalflow.model.predictor import load_model
    from vitalflow.predict.table import output_name

    model, _ = trained
    predictor = load_model(model)
    batch = next(iter(numpy_batches(open_dataset(str(trainable_dataset)), "test",
                                    ["timeseries", "static", *CONTEXT_INPUTS], batch_size=3)))
    context = {name: batch[name].reshape(3, -1) for name in CONTEXT_INPUTS}
    expected = predictor.predict_decisions(batch["timeseries"], batch["static"], context=context)
    body = {"timeseries": batch["timeseries"].tolist(), "static": batch["static"].tolist(), "units": "normalized"}
    with serve("--model", str(model), tmp=tmp_path) as server:
        answer = server.client.post("/invocations", json={**body, "context": {k: v.tolist() for k, v in context.items()}})
        assert answer.status_code == 200, answer.text
        doc = answer.json()
        assert doc["targets"][:15] == [output_name(n) for n in expected.event_names]
        assert doc["units"][:15] == ["probability"] * 15
        got = np.array(doc["predictions"])
        assert np.allclose(got[:, :15], expected.event_probability, atol=1e-5)
        assert np.allclose(got[:, 15:], expected.value, atol=1e-4)
        refused = server.client.post("/invocations", json=body)
        assert refused.status_code == 422 and "decision context" in refused.text
        assert server.ping().status_code == 200
