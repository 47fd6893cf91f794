"""Fitting the stacked decision model after the network (`vitalflow.model.stack`): XGBoost classifiers
on the train split's window summaries (early stopping on validation), then per event the network's
weight and the Platt scaling on the validation split. The test split is never read."""

from __future__ import annotations

import logging

import numpy as np

from vitalflow.dataset.reference import Dataset
from vitalflow.model.boosted import EventBoosters, boosted_feature_names, boosted_inputs
from vitalflow.model.calibration import BINS
from vitalflow.model.card import Stack, StackedEvent
from vitalflow.model.heads import Heads
from vitalflow.model.inputs import numpy_batches
from vitalflow.model.stack import fit_stack, stacked
from vitalflow.scores import auprc, ece
from vitalflow.spec.model import Spec
from vitalflow.store import Store

log = logging.getLogger("vitalflow.progress")
STACK_INPUTS = ("timeseries", "static", "setpoints", "setpoints_known", "labels", "label_mask")


def boosted_table(dataset: Dataset, split: str, events: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A split's boosters' input [N, K], event labels and masks [N, events] (dataset order), read
    batch by batch (the windows themselves are not kept)."""
    x, y, m = [], [], []
    for batch in numpy_batches(dataset, split, STACK_INPUTS, batch_size=512):
        x.append(boosted_inputs(batch["timeseries"], batch["static"], batch))
        y.append(batch["labels"][:, events])
        m.append(batch["label_mask"][:, events] > 0.5)
    return np.concatenate(x), np.concatenate(y), np.concatenate(m)


def _auprc(y: np.ndarray, p: np.ndarray) -> float | None:
    return round(auprc(y, p), 6) if 0 < y.sum() < y.size else None


def fit_stacked(dataset: Dataset, spec: Spec, heads: Heads, network_validation: np.ndarray, seed: int,
                store: Store) -> tuple[Stack, np.ndarray]:
    """Fit the boosters, write them into the model directory ``store`` (``boosted/``) and return the
    card's stack and its event probabilities on the validation split. ``network_validation``: the
    network's calibrated event probabilities there [N, events], in the dataset's order."""
    events = heads.indices("event")
    log.info("stacking: XGBoost on window summaries (%d event classifiers)", len(events))
    x, y, m = boosted_table(dataset, "train", events)
    xv, yv, mv = boosted_table(dataset, "validation", events)
    if network_validation.shape != yv.shape:
        raise AssertionError(f"validation windows: network {network_validation.shape}, summaries {yv.shape}")
    boosters = EventBoosters().fit(x, y, m, xv, yv, mv, seed=seed)
    boosted = boosters.predict(xv)
    weights, platt = fit_stack(network_validation, boosted, yv, mv)
    together = stacked(network_validation, boosted, weights, platt)
    features = boosted_feature_names(spec.feature_names, [f.name for f in spec.static],
                                     [sp.name for sp in spec.decisions.setpoints])
    saved = boosters.save(store)
    out, ece_after = [], {}
    for j, name in enumerate(heads.names_of("event")):
        rows = mv[:, j]
        out.append(StackedEvent(name=name, network_weight=weights[j], platt=(round(platt[j][0], 6),
                                round(platt[j][1], 6)), booster=saved[j], validation_auprc={
            "network": _auprc(yv[rows, j], network_validation[rows, j]), "xgboost": _auprc(yv[rows, j], boosted[rows, j]),
            "stack": _auprc(yv[rows, j], together[rows, j])}))
        if rows.any():
            ece_after[name] = round(ece(yv[rows, j], together[rows, j], BINS), 6)
    return Stack(features=features, events=out, ece_after=ece_after), together
