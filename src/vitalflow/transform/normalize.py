"""Fixed-range normalization to [-1, 1] and its inverse (no statistics are fitted)."""

from __future__ import annotations

import numpy as np


def normalize(x: np.ndarray, lo: float, hi: float) -> tuple[np.ndarray, int]:
    """``(x - lo) / (hi - lo) * 2 - 1`` clipped to [-1, 1]; returns the values and the clip count.

    >>> normalize(np.array([20.0, 110.0, 200.0, 250.0, 0.0]), 20, 200)
    (array([-1.,  0.,  1.,  1., -1.]), 2)
    """
    scaled = (np.asarray(x, dtype=np.float64) - lo) / (hi - lo) * 2.0 - 1.0
    clipped = int(np.count_nonzero((scaled < -1.0) | (scaled > 1.0)))
    return np.clip(scaled, -1.0, 1.0), clipped


def denormalize(norm: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Inverse of :func:`normalize` (within the range): ``lo + (norm + 1) / 2 * (hi - lo)``.

    >>> denormalize(np.array([-1.0, 0.0, 1.0]), 20, 200)
    array([ 20., 110., 200.])
    """
    return lo + (np.asarray(norm, dtype=np.float64) + 1.0) / 2.0 * (hi - lo)


def denormalize_targets(targets: np.ndarray, spec) -> np.ndarray:
    """Model outputs (normalized, last axis = the spec's targets in order) back in clinical units.

    >>> from vitalflow.spec import load_spec
    >>> denormalize_targets(np.zeros(8), load_spec()).tolist()  # mid-range of every target
    [6.0, 0.4, 0.25, 6.0, 15.0, 60.5, 18.0, 3.0]
    """
    ranges = {f.name: f.range for f in spec.timeseries}
    lo = np.array([ranges[t][0] for t in spec.targets])
    hi = np.array([ranges[t][1] for t in spec.targets])
    return denormalize(targets, lo, hi)
