"""Window summaries: a few numbers per signal of a window (last value, recent mean and slope), the
input of the gradient-boosted baselines and of the stacked decision model's boosted member.

Pure numpy: the evaluation streams the dataset batch by batch and keeps only these tables.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SUMMARY_LAST_S = 60
"""Seconds at the end of the window that the mean and the slope summarize."""


def summary_feature_names(
    feature_names: Sequence[str], static_names: Sequence[str], last_s: int = SUMMARY_LAST_S
) -> list[str]:
    """Column names of :func:`summary_features`: all last values, all means, all slopes, statics.

    >>> summary_feature_names(["HR", "SPO2"], ["age"])
    ['HR_last', 'SPO2_last', 'HR_mean60s', 'SPO2_mean60s', 'HR_slope60s', 'SPO2_slope60s', 'age']
    """
    return (
        [f"{f}_last" for f in feature_names]
        + [f"{f}_mean{last_s}s" for f in feature_names]
        + [f"{f}_slope{last_s}s" for f in feature_names]
        + list(static_names)
    )


def summary_features(timeseries: np.ndarray, static: np.ndarray, last_s: int = SUMMARY_LAST_S) -> np.ndarray:
    """``[N, L, F]`` windows and ``[N, S]`` statics to ``[N, 3F + S]`` float32 summaries.

    Per signal: the last value, the mean over the last ``last_s`` seconds and the least-squares slope
    per second over them (1 Hz series; normalized units per second); then the static features. The
    order of the columns is :func:`summary_feature_names`.

    >>> ts = np.array([[[0.0], [0.0], [0.1], [0.2], [0.3]]])  # 1 window, 5 s, 1 signal
    >>> summary_features(ts, np.array([[0.5]]), last_s=3)  # last, mean, slope, static
    array([[0.3, 0.2, 0.1, 0.5]], dtype=float32)
    """
    ts = np.asarray(timeseries, dtype=np.float64)
    static = np.asarray(static, dtype=np.float64)
    if ts.ndim != 3 or static.ndim != 2 or static.shape[0] != ts.shape[0]:
        raise ValueError(f"expected timeseries [N, L, F] and static [N, S], got {ts.shape} and {static.shape}")
    if not 2 <= last_s <= ts.shape[1]:
        raise ValueError(f"last_s must be in 2..{ts.shape[1]} (the window length), got {last_s}")
    tail = ts[:, -last_s:, :]
    mean = tail.mean(axis=1)
    t = np.arange(last_s, dtype=np.float64) - (last_s - 1) / 2.0  # centred: sum(t) == 0
    slope = np.einsum("t,ntf->nf", t, tail - mean[:, None, :]) / np.sum(t * t)
    return np.concatenate([ts[:, -1, :], mean, slope, static], axis=1).astype(np.float32)
