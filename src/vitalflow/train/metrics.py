"""Validation metrics of the decision model (pure numpy): average precision per event label and
their mean, the score early stopping and the best checkpoint follow.

Average precision is `vitalflow.scores.auprc` (scikit-learn's ``average_precision_score``), the
one the evaluation reports.
"""

from __future__ import annotations

import numpy as np

from vitalflow.model.heads import Heads
from vitalflow.scores import auprc


def event_average_precision(labels: np.ndarray, mask: np.ndarray, raw: np.ndarray, heads: Heads
                            ) -> dict[str, float]:
    """Per event label with both classes among its unmasked windows: its AP over those windows
    (scored by the raw logit; a calibration never changes the ranking)."""
    out = {}
    for i in heads.indices("event"):
        valid = mask[:, i] > 0
        y = labels[valid, i]
        if y.size and 0 < y.sum() < y.size:
            out[heads.names[i]] = auprc(y, raw[valid, i])
    return out


def scoreable_events(labels: np.ndarray, mask: np.ndarray, heads: Heads) -> list[str]:
    """The event labels `event_average_precision` scores on this data."""
    return [heads.names[i] for i in heads.indices("event")
            if 0 < labels[mask[:, i] > 0, i].sum() < (mask[:, i] > 0).sum()]


def mean_auprc(per_label: dict[str, float]) -> float:
    """The mean over the scored labels (NaN when none is)."""
    return float(np.mean(list(per_label.values()))) if per_label else float("nan")
