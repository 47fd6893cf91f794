"""Baselines the model must beat: persistence, the training median, and boosted trees on summaries.

All work on normalized values (the model's space); denormalize their outputs like the model's.
The boosted trees read `vitalflow.transform.summaries.summary_features`, a small ``[N, 3F + S]``
table per batch of windows, so that the evaluation never keeps the windows themselves.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def persistence(timeseries: np.ndarray, target_indices: Sequence[int]) -> np.ndarray:
    """The targets' last values in the window ``[N, T]``: "nothing changes in the next 30 s".

    >>> ts = np.arange(12, dtype=np.float32).reshape(1, 3, 4)  # 1 window, 3 s, 4 features
    >>> persistence(ts, [3, 1])
    array([[11.,  9.]], dtype=float32)
    """
    return np.asarray(timeseries)[:, -1, list(target_indices)]


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
    """XGBoost on `vitalflow.transform.summaries.summary_features`: one multi-output regressor (one tree per target per round).

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
