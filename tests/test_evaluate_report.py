"""The evaluation report of vitalflow.evaluate.report: figures, report.md/html and metrics.json."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from vitalflow.evaluate.report import (
    CaseTimeline,
    comparison_table,
    learning_curves_png,
    metrics_document,
    predicted_vs_actual_png,
    timeline_png,
    write_report,
)
from vitalflow.spec import load_spec
from vitalflow.transform.normalize import denormalize_targets

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def evaluation():
    """A synthetic evaluation of the spec's 8 targets: actual, 4 models' predictions, the document."""
    spec = load_spec()
    rng = np.random.default_rng(0)
    n, t = 300, len(spec.targets)
    last = rng.uniform(-1, 1, (n, t))
    actual_norm = np.clip(last + np.where(rng.random((n, t)) < 0.2, rng.normal(0, 0.1, (n, t)), 0.0), -1, 1)
    actual_norm[:50, :3] = -1.0  # infusions off: zero in clinical units
    norm_predictions = {
        "model": np.clip(actual_norm + rng.normal(0, 0.02, (n, t)), -1, 1),
        "persistence": last,
        "train_median": np.tile(np.median(actual_norm, axis=0), (n, 1)),
        "xgboost": np.clip(actual_norm + rng.normal(0, 0.05, (n, t)), -1, 1),
    }
    actual = denormalize_targets(actual_norm, spec)
    predictions = {k: denormalize_targets(v, spec) for k, v in norm_predictions.items()}
    ranges = {f.name: f.range for f in spec.timeseries}
    units = {f.name: f.unit for f in spec.timeseries}
    doc = metrics_document(
        "test",
        actual,
        predictions,
        predictions["persistence"],
        spec.targets,
        [name for name in spec.targets if name.endswith("_INF")],
        [ranges[name] for name in spec.targets],
        [units[name] for name in spec.targets],
    )
    return spec, actual, predictions, doc


def _read_png(path):
    from matplotlib.image import imread

    assert path.read_bytes()[:8] == PNG_MAGIC
    return imread(path)


def test_metrics_document_is_nan_free_json(evaluation):
    spec, _, _, doc = evaluation
    text = json.dumps(doc, allow_nan=False)
    assert json.loads(text) == doc
    assert list(doc["models"]) == ["model", "persistence", "train_median", "xgboost"]
    assert list(doc["units"]) == list(spec.targets) and doc["windows"] == 300
    assert doc["models"]["persistence"]["TV"]["changed"]["n"] > 0
    assert doc["models"]["persistence"]["TV"]["changed"]["mae"] > doc["models"]["model"]["TV"]["changed"]["mae"]
    assert doc["models"]["model"]["Propofol_INF"]["all"]["mdape"] is not None
    assert doc["models"]["model"]["TV"]["all"]["mdape"] is None


def test_comparison_table(evaluation):
    spec, _, _, doc = evaluation
    for kind in ("all", "changed"):
        rows = comparison_table(doc, kind)
        assert rows[0] == ["target", "unit", "n", "model", "persistence", "train median", "XGBoost"]
        assert [r[0] for r in rows[1:]] == list(spec.targets)
        assert rows[1][1] == "mg/kg/h"
        assert all(len(r) == 7 for r in rows)
    assert comparison_table(doc, "all")[1][2] == "300"
    with pytest.raises(ValueError, match="kind"):
        comparison_table(doc, "some")


def test_comparison_table_without_a_baseline(evaluation):
    _, _, _, doc = evaluation
    partial = {**doc, "models": {k: v for k, v in doc["models"].items() if k != "xgboost"}}
    assert comparison_table(partial)[0][-1] == "train median"


def test_figures_are_pngs_of_the_expected_size(evaluation, tmp_path):
    spec, actual, predictions, _ = evaluation
    units = [f.unit for f in spec.timeseries if f.name in spec.targets]
    img = _read_png(predicted_vs_actual_png(tmp_path / "pva.png", actual, predictions, spec.targets, units))
    assert img.shape == (600, 1280, 4)  # 2 rows x 4 columns of 3.2 x 3.0 in at 100 dpi
    history = {"loss": [0.3, 0.2, 0.15], "val_loss": [0.35, 0.3, 0.3]}
    img = _read_png(learning_curves_png(tmp_path / "lc.png", history))
    assert img.shape == (400, 600, 4)
    seconds = np.arange(329, 329 + 30 * 40, 30)
    path = timeline_png(tmp_path / "tl.png", seconds, actual[:40], predictions["model"][:40], spec.targets, units, "0042")
    img = _read_png(path)
    assert img.shape == (1440, 1000, 4)
    assert not list(tmp_path.glob(".*.tmp"))


def test_figures_from_threads(evaluation, tmp_path):
    """The object API (no pyplot) lets several threads draw at once."""
    spec, actual, predictions, _ = evaluation
    units = ["u"] * len(spec.targets)
    errors = []

    def draw(i):
        try:
            predicted_vs_actual_png(tmp_path / f"{i}.png", actual, predictions, spec.targets, units)
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=draw, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert all(_read_png(tmp_path / f"{i}.png").shape == (600, 1280, 4) for i in range(3))


def test_write_report(evaluation, tmp_path):
    spec, actual, predictions, doc = evaluation
    timeline = CaseTimeline("0042", np.arange(40) * 30 + 329, actual[:40], predictions["model"][:40])
    history = {"loss": [1.0, 0.5], "val_loss": [1.1, 0.7]}
    written = write_report(tmp_path / "report", doc, actual, predictions, history=history, timeline=timeline)
    out = tmp_path / "report"
    assert [p.name for p in written] == [
        "predicted_vs_actual.png",
        "learning_curves.png",
        "timeline.png",
        "report.md",
        "report.html",
        "metrics.json",
    ]
    assert all(p.parent == out and p.stat().st_size > 0 for p in written)
    for png in written[:3]:
        _read_png(png)
    md = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    for text in (md, html):
        for name in spec.targets:
            assert name in text
        for label in ("persistence", "train median", "XGBoost", "mg/kg/h", "ug/kg/min"):
            assert label in text
    for png in ("predicted_vs_actual.png", "learning_curves.png", "timeline.png"):
        assert f"]({png})" in md and f'src="{png}"' in html
    assert "## MAE, all windows" in md and "## MAE, change windows" in md
    assert html.startswith("<!DOCTYPE html>") and html.count("<table>") == 3
    assert json.loads((out / "metrics.json").read_text()) == doc
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in written)


def test_write_report_without_history_or_timeline(evaluation, tmp_path):
    _, actual, predictions, doc = evaluation
    written = write_report(tmp_path, doc, actual, predictions)
    assert [p.name for p in written] == ["predicted_vs_actual.png", "report.md", "report.html", "metrics.json"]
    assert "learning_curves" not in (tmp_path / "report.md").read_text()
