"""Set-point values that do no harm (pure numpy): per value label, the network's value where its
group's event probability at that horizon reaches a threshold, the set-point now elsewhere.

Most set-points do not change within a horizon, so carrying the current value forward is right for
most windows, and a value head that moves every value a little is worse than persistence where
nothing happens. The gate keeps the network's value only where a change is likely::

    value = network value     if P(event of its group within H) >= threshold or the set-point is unknown now
            set-point now     otherwise

``threshold`` is chosen per value label on the validation split from `THRESHOLDS` (0: always the
network; above 1: always the set-point now), the one with the lowest mean absolute error over the
label's valid windows (ties: the highest, the more conservative). So on validation the gated value
is never worse than either the network or persistence.

>>> values, now = np.array([[0.5], [0.1]]), np.array([[0.0], [0.0]])
>>> gated(values, now, np.ones_like(now, bool), np.array([[0.9], [0.1]]), [0.3]).tolist()
[[0.5], [0.0]]
"""

from __future__ import annotations

import numpy as np

from vitalflow.model.heads import Heads
from vitalflow.spec.model import Spec

THRESHOLDS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.01)


def gated(values: np.ndarray, now: np.ndarray, known: np.ndarray, probability: np.ndarray, thresholds
          ) -> np.ndarray:
    """``values``, ``now`` (the set-point now), ``known`` (bool) and ``probability`` (its group's
    event at the label's horizon) [N, values], normalized alike; ``thresholds`` per column."""
    keep_network = (probability >= np.asarray(thresholds, np.float64)[None, :]) | ~known
    return np.where(keep_network, values, now)


def fit_gates(values: np.ndarray, now: np.ndarray, known: np.ndarray, probability: np.ndarray, truth: np.ndarray,
              mask: np.ndarray) -> tuple[list[float], list[dict[str, float | None]]]:
    """Per value column: the threshold with the lowest validation MAE (see the module docstring), and
    the MAE of the network, of persistence (the network where the set-point is unknown) and of the
    gated values over its valid windows (None without any)."""
    thresholds, mae = [], []
    for j in range(values.shape[1]):
        rows = np.asarray(mask[:, j], bool)
        if not rows.any():
            thresholds.append(THRESHOLDS[-1])
            mae.append({"network": None, "persistence": None, "gated": None})
            continue
        args = (values[rows, j:j + 1], now[rows, j:j + 1], known[rows, j:j + 1], probability[rows, j:j + 1])
        errors = {t: float(np.mean(np.abs(gated(*args, [t])[:, 0] - truth[rows, j]))) for t in THRESHOLDS}
        best = min(reversed(THRESHOLDS), key=lambda t: errors[t])
        thresholds.append(best)
        mae.append({"network": errors[THRESHOLDS[0]], "persistence": errors[THRESHOLDS[-1]], "gated": errors[best]})
    return thresholds, mae


def value_pairs(spec: Spec, heads: Heads) -> tuple[list[int], list[int]]:
    """Per value label (head order): its set-point's column in ``setpoints`` and its group's event
    at the same horizon among the events (`Heads.names_of("event")` order)."""
    d = spec.decisions
    setpoints = [sp.name for sp in d.setpoints]
    events = list(heads.names_of("event"))
    index, event = [], []
    for name in heads.names_of("value"):
        _, sp, horizon = name.split("/")
        index.append(setpoints.index(sp))
        event.append(events.index(f"event/{d.group_of(sp)}/{horizon}"))
    return index, event
