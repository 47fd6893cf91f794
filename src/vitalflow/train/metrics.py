"""Validation metrics of the decision model (pure numpy): average precision per event label and
their mean, the score early stopping and the best checkpoint follow.

``average_precision`` is scikit-learn's ``average_precision_score`` (the step-wise area under the
precision-recall curve, ties of the score counted as one threshold):
``AP = sum_n (R_n - R_{n-1}) P_n`` over the distinct scores from the highest down.

>>> average_precision(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
0.8333333333333333
>>> average_precision(np.array([1, 0, 1]), np.array([0.5, 0.5, 0.5]))
0.6666666666666666
"""

from __future__ import annotations

import numpy as np

from vitalflow.model.heads import Heads


def average_precision(y: np.ndarray, score: np.ndarray) -> float:
    """AP of the 0/1 labels ``y`` ranked by ``score`` (NaN without a positive)."""
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    score = np.asarray(score, dtype=np.float64).reshape(-1)
    positives = y.sum()
    if y.size == 0 or positives == 0:
        return float("nan")
    order = np.argsort(-score, kind="mergesort")
    s, y = score[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), y.size - 1]  # the last index of each distinct score
    tp = np.cumsum(y)[last]
    precision = tp / (last + 1)
    recall = tp / positives
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def event_average_precision(labels: np.ndarray, mask: np.ndarray, raw: np.ndarray, heads: Heads
                            ) -> dict[str, float]:
    """Per event label with both classes among its unmasked windows: its AP over those windows
    (scored by the raw logit; a calibration never changes the ranking)."""
    out = {}
    for i in heads.indices("event"):
        valid = mask[:, i] > 0
        y = labels[valid, i]
        if y.size and 0 < y.sum() < y.size:
            out[heads.names[i]] = average_precision(y, raw[valid, i])
    return out


def scoreable_events(labels: np.ndarray, mask: np.ndarray, heads: Heads) -> list[str]:
    """The event labels `event_average_precision` scores on this data."""
    return [heads.names[i] for i in heads.indices("event")
            if 0 < labels[mask[:, i] > 0, i].sum() < (mask[:, i] > 0).sum()]


def mean_auprc(per_label: dict[str, float]) -> float:
    """The mean over the scored labels (NaN when none is)."""
    return float(np.mean(list(per_label.values()))) if per_label else float("nan")
