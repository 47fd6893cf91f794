"""`vitalflow evaluate` end to end: the numbers in metrics.json against an independent recomputation
(TensorFlow's own parser, the spec's ranges by hand), the report's files, the printed table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from vitalflow.cli import app

SPEC = yaml.safe_load((Path(__file__).parents[1] / "src/vitalflow/spec/master_poc.yaml").read_text())


@pytest.fixture(scope="module")
def evaluated(trainable_dataset, tiny_config, tmp_path_factory):
    model = tmp_path_factory.mktemp("evaluated") / "model"
    result = CliRunner().invoke(app, ["train", str(trainable_dataset), "--output", str(model),
                                      "--config", str(tiny_config)])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(app, ["evaluate", str(model), str(trainable_dataset)])
    assert result.exit_code == 0, result.output
    return model, result.output


def _test_windows(dataset: Path):
    """Every test window as plain TensorFlow reads it (nothing of vitalflow's reader)."""
    import tensorflow as tf

    F = {"timeseries": tf.io.FixedLenFeature([300 * 16], tf.float32),
         "static": tf.io.FixedLenFeature([6], tf.float32),
         "target": tf.io.FixedLenFeature([8], tf.float32)}
    files = sorted(str(p) for p in dataset.glob("test-*.tfrecord.gz"))
    rows = [tf.io.parse_single_example(r, F) for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]
    series = np.stack([r["timeseries"].numpy().reshape(300, 16) for r in rows])
    return series, np.stack([r["static"].numpy() for r in rows]), np.stack([r["target"].numpy() for r in rows])


def _clinical(norm: np.ndarray) -> np.ndarray:
    ranges = {f["name"]: f["range"] for f in SPEC["timeseries"]}
    lo = np.array([ranges[t][0] for t in SPEC["targets"]], dtype=np.float64)
    hi = np.array([ranges[t][1] for t in SPEC["targets"]], dtype=np.float64)
    return lo + (np.asarray(norm, np.float64) + 1) / 2 * (hi - lo)


def test_metrics_match_an_independent_recomputation(evaluated, trainable_dataset):
    model, _ = evaluated
    metrics = json.loads((model / "evaluation" / "test" / "metrics.json").read_text())
    series, static, target = _test_windows(trainable_dataset)
    names = SPEC["targets"]
    channels = [[f["name"] for f in SPEC["timeseries"]].index(t) for t in names]
    actual, last = _clinical(target), _clinical(series[:, -1, channels])
    assert metrics["windows"] == len(target)
    import tensorflow as tf

    exported = tf.saved_model.load(str(model / "export"))
    predicted = _clinical(exported.serve({"timeseries": tf.constant(series), "static": tf.constant(static)}).numpy())
    span = np.array([r[1] - r[0] for r in (next(f["range"] for f in SPEC["timeseries"] if f["name"] == t)
                                           for t in names)])
    for j, name in enumerate(names):
        changed = np.abs(actual[:, j] - last[:, j]) > 1e-3 * span[j]
        for model_name, values in (("persistence", last), ("model", predicted)):
            got = metrics["models"][model_name][name]
            assert got["all"]["mae"] == pytest.approx(np.abs(values[:, j] - actual[:, j]).mean(), rel=1e-4, abs=1e-7)
            assert got["all"]["rmse"] == pytest.approx(np.sqrt(((values[:, j] - actual[:, j]) ** 2).mean()),
                                                       rel=1e-4, abs=1e-7)
            assert got["changed"]["n"] == int(changed.sum())
            if changed.any():
                assert got["changed"]["mae"] == pytest.approx(
                    np.abs(values[changed, j] - actual[changed, j]).mean(), rel=1e-4, abs=1e-7)
        assert metrics["models"]["persistence"][name]["changed"]["mae"] in (None, pytest.approx(
            np.abs(last[changed, j] - actual[changed, j]).mean() if changed.any() else 0, rel=1e-4))
    # the train median: a constant per target, the median of the training split's targets
    import tensorflow as tf  # noqa: F811

    F = {"target": tf.io.FixedLenFeature([8], tf.float32)}
    train_files = sorted(str(p) for p in trainable_dataset.glob("train-*.tfrecord.gz"))
    train_targets = np.stack([tf.io.parse_single_example(r, F)["target"].numpy()
                              for r in tf.data.TFRecordDataset(train_files, compression_type="GZIP")])
    median = _clinical(np.median(train_targets, axis=0))
    for j, name in enumerate(names):
        assert metrics["models"]["train_median"][name]["all"]["mae"] == pytest.approx(
            np.abs(median[j] - actual[:, j]).mean(), rel=1e-4, abs=1e-7)
    assert set(metrics["models"]) == {"model", "persistence", "train_median", "xgboost"}


def test_the_report_and_the_printed_table(evaluated):
    model, output = evaluated
    report = model / "evaluation" / "test"
    for name in ("metrics.json", "report.md", "report.html", "predicted_vs_actual.png", "learning_curves.png",
                 "timeline.png"):
        assert (report / name).is_file(), name
        if name.endswith(".png"):
            assert (report / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (report / "report.md").read_text()
    for label in ("persistence", "train median", "XGBoost", *SPEC["targets"]):
        assert label in text and label in output
    assert "change" in output


def test_a_split_without_windows_or_an_unknown_split_is_an_error(evaluated, trainable_dataset):
    model, _ = evaluated
    result = CliRunner().invoke(app, ["evaluate", str(model), str(trainable_dataset), "--split", "holdout"])
    assert result.exit_code == 2 and "holdout" in result.output
