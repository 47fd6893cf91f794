"""The stacked decision model: per event, the network's calibrated probability and the boosted
classifiers' (`vitalflow.model.boosted`) blended in logit space, then Platt-scaled (pure numpy).

On clinical data of this size gradient boosting on summaries is a strong baseline and often the
better of the two; the stack ships whichever mix ranks best on the validation split::

    z = w logit(p_network) + (1 - w) logit(p_boosted)        w in WEIGHTS, per event
    p = sigmoid(a z + b)                                      Platt scaling, per event

``w`` is the weight with the highest validation AUPRC (ties: the one nearest 0.5, the average of
the two); ``w = 1`` is the network alone and ``w = 0`` the boosters alone, so on validation the stack
ranks at least as well as the better member. ``(a, b)`` are fitted on the same validation windows
(`vitalflow.model.calibration.fit_platt`): the boosters are trained with weighted positives, so
their probabilities are shifted, which a temperature cannot undo. The test split is never read.

>>> y = np.array([0, 0, 1, 1] * 10); good = np.tile([0.1, 0.2, 0.8, 0.9], 10)
>>> bad = np.tile([0.9999, 0.0001, 0.0001, 0.0001], 10)  # sure, and wrong: any share of it misranks
>>> blend_weight(y, good, bad), blend_weight(y, bad, good)
(1.0, 0.0)
>>> blend_weight(y, good, np.full(40, 0.5))  # a constant member changes no ranking: a tie, the nearest 0.5
0.5
"""

from __future__ import annotations

import numpy as np

from vitalflow.model.calibration import fit_platt, sigmoid
from vitalflow.scores import auprc

#: The network's weights tried per event (the rest is the boosters').
WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, np.float64), 1e-6, 1 - 1e-6)
    return np.log(p) - np.log1p(-p)


def blend_weight(y: np.ndarray, network: np.ndarray, boosted: np.ndarray) -> float:
    """The network's weight in `WEIGHTS` whose blend of ``network`` and ``boosted`` probabilities
    ranks ``y`` (0/1) best by AUPRC (0.5 when ``y`` holds one class)."""
    order = sorted(WEIGHTS, key=lambda w: abs(w - 0.5))
    if not 0 < np.sum(y) < np.size(y):
        return 0.5
    m, x = logit(network), logit(boosted)
    return max(order, key=lambda w: auprc(y, w * m + (1 - w) * x))


def fit_stack(network: np.ndarray, boosted: np.ndarray, labels: np.ndarray, mask: np.ndarray
              ) -> tuple[list[float], list[tuple[float, float]]]:
    """Per event column of the validation windows' probabilities [N, events] (labels 0/1 and mask,
    True = valid): the network's weight and the Platt ``(a, b)`` of the blend."""
    weights, platt = [], []
    for j in range(labels.shape[1]):
        rows = np.asarray(mask[:, j], bool)
        y = labels[rows, j]
        w = blend_weight(y, network[rows, j], boosted[rows, j])
        weights.append(w)
        platt.append(fit_platt(w * logit(network[rows, j]) + (1 - w) * logit(boosted[rows, j]), y))
    return weights, platt


def stacked(network: np.ndarray, boosted: np.ndarray, weights, platt) -> np.ndarray:
    """The stack's probabilities [N, events] from its members' ([N, events] each)."""
    w = np.asarray(weights, np.float64)[None, :]
    a, b = (np.asarray(c, np.float64)[None, :] for c in zip(*platt)) if len(platt) else (w, w)
    return sigmoid(a * (w * logit(network) + (1 - w) * logit(boosted)) + b)
