"""Resample irregular track records onto the 1 Hz grid."""

from __future__ import annotations

import numpy as np


def to_grid(times: np.ndarray, values: np.ndarray, n_seconds: int) -> np.ndarray:
    """Second ``k`` holds the last record with time in ``[k, k + 1)``; seconds without one are NaN.

    ``times`` are seconds from the recording start; records outside ``[0, n_seconds)`` (NaN and
    infinite times among them) are dropped. Ties keep the record that comes last in the input.

    >>> to_grid(np.array([0.2, 0.7, 2.5, 9.0, np.nan, -np.inf, 1e300]), np.arange(1.0, 8.0), 4)
    array([ 2., nan,  3., nan])
    """
    times = np.asarray(times, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    out = np.full(n_seconds, np.nan)
    inside = (times >= 0) & (times < n_seconds)  # False for NaN
    times, values = times[inside], values[inside]
    if times.size == 0:
        return out
    order = np.argsort(times, kind="stable")
    idx, vals = np.floor(times[order]).astype(np.int64), values[order]
    last_of_second = np.ones(idx.size, dtype=bool)
    last_of_second[:-1] = idx[1:] != idx[:-1]
    out[idx[last_of_second]] = vals[last_of_second]
    return out
