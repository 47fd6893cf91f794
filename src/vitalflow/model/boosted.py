"""Gradient-boosted event classifiers (XGBoost) on window summaries: the evaluation's XGBoost
baseline and the stacked decision model's second member (`vitalflow.model.stack`), one class for both.

The input of a window is `boosted_features`: the summaries of its signals
(`vitalflow.transform.summaries.summary_features`: last value, 60 s mean and slope per signal, the
static features), then the set-points now (normalized, 0 where unknown) and whether each is known.
One binary classifier per event label, fitted on the windows where that label is valid; positives
are weighted by the negatives-to-positives ratio of the training windows (capped at 20, so its
probabilities are not calibrated: the stack's Platt scaling is), early stopping on the validation
split's log loss. Deterministic for a seed (``hist``, 2 threads, seeded subsampling). An event
whose training windows hold one class only gets that class's rate as a constant.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from vitalflow.model.forest import Forest
from vitalflow.store import Store
from vitalflow.transform.summaries import summary_feature_names, summary_features

#: The model directory's folder of the stacked model's boosters (one XGBoost UBJSON file per event).
BOOSTED_DIR = "boosted"
PARAMS = {"objective": "binary:logistic", "max_depth": 4, "eta": 0.1, "subsample": 0.8, "colsample_bytree": 0.8,
          "tree_method": "hist", "nthread": 2, "max_bin": 64, "eval_metric": "logloss"}
ROUNDS, PATIENCE, MAX_POSITIVE_WEIGHT = 150, 15, 20.0
FOREST_MAX_ROWS = 8  # batches up to this size are evaluated by `Forest` (faster below ~16 rows)


def boosted_features(timeseries: np.ndarray, static: np.ndarray, setpoints: np.ndarray,
                     setpoints_known: np.ndarray) -> np.ndarray:
    """Windows ([N, T, F] normalized, [N, S] static, [N, P] set-points and known flags) to the
    boosters' input [N, 3F + S + 2P] float32 (`boosted_feature_names`)."""
    return np.concatenate([summary_features(timeseries, static), np.asarray(setpoints, np.float32),
                           np.asarray(setpoints_known, np.float32)], axis=1)


def boosted_feature_names(features, static, setpoints) -> list[str]:
    return [*summary_feature_names(features, static), *setpoints, *(f"{s}_known" for s in setpoints)]


def boosted_inputs(timeseries: np.ndarray, static: np.ndarray, context: Mapping[str, np.ndarray]) -> np.ndarray:
    """`boosted_features` of a batch whose decision context (``setpoints``, ``setpoints_known``) is
    in ``context`` (the example features of those names)."""
    return boosted_features(timeseries, static, context["setpoints"], context["setpoints_known"])


@dataclass
class EventBoosters:
    """One XGBoost classifier per event (or a constant probability where training had one class)."""

    boosters: list = field(default_factory=list)  # xgboost.Booster | float per event
    rounds: int = ROUNDS
    patience: int = PATIENCE

    def fit(self, x: np.ndarray, labels: np.ndarray, mask: np.ndarray, x_valid: np.ndarray | None = None,
            labels_valid: np.ndarray | None = None, mask_valid: np.ndarray | None = None, seed: int = 0
            ) -> EventBoosters:
        """``labels``/``mask`` [N, events] (0/1; True = valid) of the rows of ``x``; the validation
        arrays stop each classifier early where its label has valid windows there."""
        import xgboost

        self.boosters = []
        self.__dict__.pop("_forest", None)
        for j in range(labels.shape[1]):
            rows = np.asarray(mask[:, j], bool)
            y = labels[rows, j]
            if y.size == 0 or y.min() == y.max():  # one class only: a constant is all it can learn
                self.boosters.append(float(y.mean()) if y.size else 0.0)
                continue
            ratio = min(MAX_POSITIVE_WEIGHT, float((y == 0).sum()) / max(1.0, float((y == 1).sum())))
            evals, stop = [], None
            if x_valid is not None and np.asarray(mask_valid[:, j], bool).any():
                vrows = np.asarray(mask_valid[:, j], bool)
                evals, stop = [(xgboost.DMatrix(x_valid[vrows], label=labels_valid[vrows, j]), "valid")], self.patience
            booster = xgboost.train({**PARAMS, "seed": seed, "scale_pos_weight": ratio},
                                    xgboost.DMatrix(x[rows], label=y), num_boost_round=self.rounds, evals=evals,
                                    early_stopping_rounds=stop, verbose_eval=False)
            if stop is not None:  # the best round's trees, not the patience rounds after it
                booster = booster[: booster.best_iteration + 1]
            self.boosters.append(booster)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        """P(event) [N, events] (float64): up to `FOREST_MAX_ROWS` rows through `Forest` (numpy,
        without XGBoost's per-call overhead), more through XGBoost itself; the two agree to float32
        rounding (tests/test_stack.py)."""
        x = np.asarray(x, np.float32)
        out = np.zeros((len(x), len(self.boosters)))
        trained = [j for j, b in enumerate(self.boosters) if not isinstance(b, float)]
        for j, b in enumerate(self.boosters):
            if isinstance(b, float):
                out[:, j] = b
        if trained and len(x) <= FOREST_MAX_ROWS:
            out[:, trained] = self._forest.probabilities(x)
        elif trained:
            out[:, trained] = np.stack([self.boosters[j].inplace_predict(x) for j in trained], axis=1)
        return out

    @cached_property
    def _forest(self) -> Forest:
        return Forest.of_boosters([b for b in self.boosters if not isinstance(b, float)])

    def save(self, store: Store) -> list[str | float]:
        """Write each booster as ``boosted/event_<j>.ubj`` under ``store``; per event its file's path
        (relative to ``store``) or its constant (what `load` reads back)."""
        saved: list[str | float] = []
        for j, b in enumerate(self.boosters):
            if isinstance(b, float):
                saved.append(b)
                continue
            path = f"{BOOSTED_DIR}/event_{j:02d}.ubj"
            store.write_bytes(path, bytes(b.save_raw("ubj")))
            saved.append(path)
        return saved

    @classmethod
    def load(cls, store: Store, saved: list[str | float]) -> EventBoosters:
        import xgboost

        boosters: list = []
        for item in saved:
            if isinstance(item, (int, float)):
                boosters.append(float(item))
                continue
            booster = xgboost.Booster(params={"nthread": PARAMS["nthread"]})
            booster.load_model(bytearray(store.read_bytes(item)))
            boosters.append(booster)
        return cls(boosters)
