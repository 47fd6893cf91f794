"""Baselines the model must beat: persistence, the training median, and boosted trees on summaries.

All work on normalized values (the model's space); denormalize their outputs like the model's.
:func:`summary_features` reduces one batch of windows to a small ``[N, 3F + S]`` table, so that the
evaluation streams the dataset batch by batch and keeps only these tables, never all the windows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SUMMARY_LAST_S = 60
"""Seconds at the end of the window that the mean and the slope summarize."""


def persistence(timeseries: np.ndarray, target_indices: Sequence[int]) -> np.ndarray:
    """The targets' last values in the window ``[N, T]``: "nothing changes in the next 30 s".

    >>> ts = np.arange(12, dtype=np.float32).reshape(1, 3, 4)  # 1 window, 3 s, 4 features
    >>> persistence(ts, [3, 1])
    array([[11.,  9.]], dtype=float32)
    """
    return np.asarray(timeseries)[:, -1, list(target_indices)]


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


class TrainMedian:
    """Predicts every target's median over the training windows, whatever the input.

    >>> TrainMedian().fit(np.array([[0.0, 1.0], [0.2, 1.0], [0.9, -1.0]])).predict(2)
    array([[0.2, 1. ],
           [0.2, 1. ]], dtype=float32)
    """

    def __init__(self) -> None:
        self.median_: np.ndarray | None = None

    def fit(self, train_targets: np.ndarray) -> TrainMedian:
        y = np.asarray(train_targets, dtype=np.float64)
        if y.ndim != 2 or y.shape[0] == 0:
            raise ValueError(f"expected non-empty train targets [N, T], got shape {y.shape}")
        self.median_ = np.median(y, axis=0).astype(np.float32)
        return self

    def predict(self, n: int) -> np.ndarray:
        if self.median_ is None:
            raise RuntimeError("TrainMedian.predict before fit")
        return np.tile(self.median_, (n, 1))


class BoostedTrees:
    """XGBoost on :func:`summary_features`: one multi-output regressor (one tree per target per round).

    Deterministic for a given seed: ``tree_method="hist"``, a fixed ``n_jobs`` and seeded row and
    column subsampling. Predictions are clipped to [-1, 1] (normalized targets).

    Cost, measured on the 2-core development machine (xgboost 3.2, ``n_jobs=2``, synthetic random
    walks): fitting 20,000 windows x 54 features x 8 targets with the defaults (150 rounds of 8
    depth-5 trees) takes 3.7 s (16,000 windows: 3.2 s); with a validation set, early stopping
    (20 rounds of patience) usually ends sooner.
    """

    def __init__(
        self,
        n_estimators: int = 150,
        max_depth: int = 5,
        learning_rate: float = 0.1,
        early_stopping_rounds: int = 20,
        n_jobs: int = 2,
    ) -> None:
        self.params = {
            "n_estimators": n_estimators,
            "objective": "reg:squarederror",
            "max_depth": max_depth,
            "eta": learning_rate,
            "subsample": 0.8,
            "colsample_bytree": 0.8,
            "tree_method": "hist",
            "nthread": n_jobs,
        }
        self.early_stopping_rounds = early_stopping_rounds
        self.booster_ = None

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        seed: int = 0,
        valid: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> BoostedTrees:
        """Fit on ``X [N, K]`` and normalized targets ``y [N, T]``; ``valid=(Xv, yv)`` stops early."""
        import xgboost

        X = np.asarray(X, dtype=np.float32)
        y = np.asarray(y, dtype=np.float32)
        if X.ndim != 2 or y.ndim != 2 or X.shape[0] != y.shape[0] or X.shape[0] == 0:
            raise ValueError(f"expected X [N, K] and y [N, T] with N > 0, got {X.shape} and {y.shape}")
        params = {**self.params, "seed": seed}
        rounds = params.pop("n_estimators")
        train = xgboost.DMatrix(X, label=y)
        evals, stop = [], None
        if valid is not None:
            Xv, yv = (np.asarray(a, dtype=np.float32) for a in valid)
            evals, stop = [(xgboost.DMatrix(Xv, label=yv), "valid")], self.early_stopping_rounds
        booster = xgboost.train(
            params, train, num_boost_round=rounds, evals=evals, early_stopping_rounds=stop, verbose_eval=False
        )
        if stop is not None:  # keep the best round's trees, not the patience rounds after it
            booster = booster[: booster.best_iteration + 1]
        self.booster_ = booster
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Normalized predictions ``[N, T]`` float32, clipped to [-1, 1]."""
        import xgboost

        if self.booster_ is None:
            raise RuntimeError("BoostedTrees.predict before fit")
        dm = xgboost.DMatrix(np.asarray(X, dtype=np.float32))
        pred = np.asarray(self.booster_.predict(dm), dtype=np.float32)
        if pred.ndim == 1:  # a single target
            pred = pred[:, None]
        return np.clip(pred, -1.0, 1.0)
