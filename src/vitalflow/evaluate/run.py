"""`evaluate_model`: a model and a dataset split to ``metrics.json`` and a report, against baselines.

All models are scored on the same windows, in clinical units:

- **model**: the trained network;
- **persistence**: each target's last value in the window (right whenever nothing changes);
- **train median**: the training split's per-target median;
- **XGBoost**: gradient-boosted trees on per-window summary features (last value, mean and slope
  over the last 60 s of each signal, plus the static features), fitted on the training split with
  early stopping on validation. Like the network's residual head it predicts each target's change
  from its last value, so it starts from persistence too: a fair opponent, not a straw man.

Windows are read in batches and only their summaries are kept (54 numbers per window, not 9,600),
so memory grows with the number of windows by kilobytes, never with their length.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vitalflow.dataset.reference import Dataset, open_dataset
from vitalflow.evaluate.baselines import BoostedTrees, TrainMedian, persistence
from vitalflow.evaluate.decision_report import write_decision_report
from vitalflow.evaluate.decisions import decision_metrics, read_windows
from vitalflow.errors import OutputError
from vitalflow.evaluate.report import CaseTimeline, metrics_document, write_report
from vitalflow.model.card import ModelCard
from vitalflow.model.config import CONTEXT_INPUTS
from vitalflow.model.inputs import numpy_batches
from vitalflow.model.predictor import Predictor, load_model
from vitalflow.spec.model import SPLITS
from vitalflow.store import Store
from vitalflow.transform.normalize import denormalize_targets
from vitalflow.transform.summaries import summary_features

log = logging.getLogger("vitalflow.progress")
EVALUATION_DIR = "evaluation"


@dataclass(frozen=True)
class Evaluation:
    metrics: dict
    output: str  # where metrics.json and the report are
    files: list[str]


@dataclass
class _Split:
    """What evaluation keeps of a split's windows (normalized units)."""

    summary: np.ndarray
    target: np.ndarray
    last: np.ndarray
    predicted: np.ndarray | None
    case_id: np.ndarray
    window_start_s: np.ndarray


def _read(dataset: Dataset, split: str, card: ModelCard, target_indices, predictor: Predictor | None) -> _Split:
    names = [*card.inputs, "target", "case_id", "window_start_s"]
    parts: dict[str, list[np.ndarray]] = {k: [] for k in _Split.__dataclass_fields__}
    for batch in numpy_batches(dataset, split, names, batch_size=512):
        parts["summary"].append(summary_features(batch["timeseries"], batch["static"]))
        parts["target"].append(batch["target"])
        parts["last"].append(persistence(batch["timeseries"], target_indices))
        parts["case_id"].append(batch["case_id"])
        parts["window_start_s"].append(batch["window_start_s"])
        if predictor is not None:
            parts["predicted"].append(predictor.predict_normalized(batch["timeseries"], batch["static"],
                                                                   batch.get("mask")))
    return _Split(**{k: np.concatenate(v) if v else None for k, v in parts.items()})


def _timeline(test: _Split, clinical: dict[str, np.ndarray], horizon_s: int, window_s: int) -> CaseTimeline:
    """The test case with the most target changes (ties: the most windows, then the lowest id)."""
    changes = np.abs(test.target - test.last).sum(axis=1) > 0
    ids = np.unique(test.case_id)
    score = {int(c): (int(changes[test.case_id == c].sum()), int((test.case_id == c).sum()), -int(c)) for c in ids}
    case = max(score, key=score.get)
    rows = np.flatnonzero(test.case_id == case)
    rows = rows[np.argsort(test.window_start_s[rows], kind="stable")]
    seconds = test.window_start_s[rows] + window_s + horizon_s
    return CaseTimeline(case_id=str(case), seconds=seconds.astype(np.float64), actual=clinical["actual"][rows],
                        predicted=clinical["model"][rows])


def evaluate_model(model_uri: str, dataset_uri: str, split: str = "test", output: str | None = None,
                   seed: int = 0, resamples: int = 1000) -> Evaluation:
    """Score the model and its baselines on ``split``; write metrics.json and the report to
    ``output`` (default: ``<model>/evaluation/<split>``). A decision model: `evaluate_decisions`."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: one of {', '.join(SPLITS)}")
    predictor = load_model(model_uri)
    dataset = open_dataset(dataset_uri)
    predictor.check_dataset(dataset)
    if predictor.card.task == "decisions":
        return evaluate_decisions(predictor, dataset, split, output, seed, resamples)
    card, spec = predictor.card, predictor.spec
    indices = list(spec.target_indices)
    for needed in {split, "train"}:
        if dataset.examples(needed) == 0:
            raise OutputError(f"{dataset.uri}: the {needed} split has no windows")
    log.info("evaluating %s on the %s split of %s (%d windows)", predictor.uri, split, dataset.uri,
             dataset.examples(split))
    test = _read(dataset, split, card, indices, predictor)
    train = _read(dataset, "train", card, indices, None)
    validation = _read(dataset, "validation", card, indices, None) if dataset.examples("validation") else None
    trees = BoostedTrees().fit(train.summary, train.target - train.last, seed=seed,
                               valid=None if validation is None else (validation.summary,
                                                                      validation.target - validation.last))
    normalized = {
        "model": test.predicted,
        "persistence": test.last,
        "train_median": TrainMedian().fit(train.target).predict(len(test.target)),
        "xgboost": np.clip(trees.predict(test.summary) + test.last, -1.0, 1.0),
    }
    clinical = {name: denormalize_targets(values, spec) for name, values in normalized.items()}
    actual = denormalize_targets(test.target, spec)
    names = list(spec.targets)
    metrics = metrics_document(
        split, actual, clinical, clinical["persistence"], names, [n for n in names if n.endswith("_INF")],
        [tuple(t.range) for t in card.targets], [t.unit for t in card.targets])
    metrics.update(model=predictor.uri, model_config_hash=card.config_hash, dataset=dataset.uri,
                   dataset_fingerprint=dataset.fingerprint)
    return _publish(predictor, split, output, metrics, lambda local: write_report(
        local, metrics, actual, clinical, history=card.training.history,
        timeline=_timeline(test, {"actual": actual, **clinical}, card.horizon_s, card.window_s)))


def _publish(predictor: Predictor, split: str, output: str | None, metrics: dict, write) -> Evaluation:
    """Write the report (``write(local_folder) -> paths``) to ``output`` (default
    ``<model>/evaluation/<split>``), through a local folder when it is on S3."""
    store = Store(output or Store(predictor.uri).url(f"{EVALUATION_DIR}/{split}"))
    local = Path(store.local_path("")) if store.is_local else Path(tempfile.mkdtemp(prefix="vitalflow-eval-"))
    try:
        written = write(local)
        if not store.is_local:
            for path in written:
                store.write_bytes(path.name, path.read_bytes())
    finally:
        if not store.is_local:
            shutil.rmtree(local, ignore_errors=True)
    return Evaluation(metrics=metrics, output=store.uri, files=[store.url(p.name) for p in written])


def evaluate_decisions(predictor: Predictor, dataset: Dataset, split: str, output: str | None, seed: int,
                       resamples: int) -> Evaluation:
    """A decision model against no skill, the rule protocol, XGBoost and (synthetic data) the oracle,
    per group and horizon (`vitalflow.evaluate.decisions`)."""
    spec = predictor.spec
    for needed in {split, "train"}:
        if dataset.examples(needed) == 0:
            raise OutputError(f"{dataset.uri}: the {needed} split has no windows")
    heads = predictor.heads
    if list(heads.names_of("event")) != [str(e) for e in spec.decisions.events]:
        raise OutputError(f"{predictor.uri}: the model's event heads are not the spec's events")

    def model(batch) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        context = {n: batch[n] for n in CONTEXT_INPUTS if n in batch}
        raw = predictor.predict_normalized(batch["timeseries"], batch["static"], batch.get("mask"), context=context)
        boosted = predictor.boosted_probabilities(batch["timeseries"], batch["static"], context)
        d = predictor.decisions_from_raw(raw, boosted, context)
        return d.event_probability, d.value_normalized, (d.network_event_probability if predictor.boosters else None)

    log.info("evaluating %s on the %s split of %s (%d windows)", predictor.uri, split, dataset.uri,
             dataset.examples(split))
    names = list(predictor.card.inputs)
    test = read_windows(dataset, split, spec, names, model)
    train = read_windows(dataset, "train", spec, names, None)
    validation = read_windows(dataset, "validation", spec, names, None) if dataset.examples("validation") else None
    scored = decision_metrics(spec, dataset, split, test, train, validation, resamples=resamples, seed=seed)
    metrics = scored.metrics
    metrics.update(model=predictor.uri, model_config_hash=predictor.card.config_hash, dataset=dataset.uri,
                   dataset_fingerprint=dataset.fingerprint)
    return _publish(predictor, split, output, metrics, lambda local: write_decision_report(
        local, metrics, scored.y, scored.scores, history=predictor.card.training.history))
