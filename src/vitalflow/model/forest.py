"""XGBoost binary classifiers' trees as numpy arrays, evaluated for a few windows at once.

Why hand-written: XGBoost is measurably the bottleneck of one window through the service. A
stacked decision model holds one booster per event (15 on the default spec); each
``Booster.predict`` of one row costs ~0.15-0.25 ms of per-call overhead on 2 cores (configuration,
a DMatrix, thread dispatch), ~2-3 ms per window in all, more than the XLA-compiled network
(`vitalflow.serve.model_host`). Here every tree of every booster is one row of padded node arrays
and a window walks all of them at once, one numpy step per tree level (depth 4: ~0.1 ms for the
15 boosters). XGBoost stays the oracle: tests/test_stack.py checks this against
``Booster.predict`` on random windows, missing values included, and `EventBoosters.predict` uses
XGBoost itself for larger batches, where its threads win.

The rules are XGBoost's for numerical splits: a value goes left when ``x < split_condition``
(float32), a missing value (NaN) goes where ``default_left`` says, a leaf's value is its
``split_conditions`` entry, and a classifier's margin is ``logit(base_score)`` plus its trees'
leaves (``binary:logistic``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Forest:
    """The trees of several binary classifiers ("models"), padded to one node count."""

    left: np.ndarray  # [trees, nodes] int32; a leaf points to itself, so extra steps stay there
    right: np.ndarray
    feature: np.ndarray  # [trees, nodes] int32 (0 at leaves)
    threshold: np.ndarray  # [trees, nodes] float32
    default_left: np.ndarray  # [trees, nodes] bool
    leaf_value: np.ndarray  # [trees, nodes] float32 (0 at inner nodes)
    membership: np.ndarray  # [trees, models] float64: 1 where the tree belongs to the classifier
    base_margin: np.ndarray  # [models] float64
    depth: int

    @classmethod
    def of_boosters(cls, boosters: list) -> Forest:
        """From ``xgboost.Booster`` objects (``binary:logistic``, numerical splits only)."""
        trees, model_of_tree, base = [], [], []
        for m, booster in enumerate(boosters):
            learner = json.loads(bytes(booster.save_raw("json")))["learner"]
            objective = learner["objective"]["name"]
            if objective != "binary:logistic":
                raise ValueError(f"booster {m}: objective {objective!r}, not binary:logistic")
            p = float(np.asarray(json.loads(learner["learner_model_param"]["base_score"]), float).ravel()[0])
            base.append(np.log(p / (1 - p)))
            for tree in learner["gradient_booster"]["model"]["trees"]:
                if any(tree["split_type"]):
                    raise ValueError(f"booster {m}: a categorical split (only numerical ones are evaluated here)")
                trees.append(tree)
                model_of_tree.append(m)
        nodes = max((len(t["left_children"]) for t in trees), default=1)
        shape = (len(trees), nodes)
        left, right = np.zeros(shape, np.int32), np.zeros(shape, np.int32)
        feature = np.zeros(shape, np.int32)
        threshold, leaf_value = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
        default_left = np.zeros(shape, bool)
        depth = 0
        for i, tree in enumerate(trees):
            n = len(tree["left_children"])
            own = np.arange(n, dtype=np.int32)
            lc, rc = np.asarray(tree["left_children"], np.int32), np.asarray(tree["right_children"], np.int32)
            leaf = lc < 0
            left[i, :n], right[i, :n] = np.where(leaf, own, lc), np.where(leaf, own, rc)
            left[i, n:], right[i, n:] = np.arange(n, nodes), np.arange(n, nodes)
            condition = np.asarray(tree["split_conditions"], np.float32)
            feature[i, :n] = np.where(leaf, 0, tree["split_indices"])
            threshold[i, :n] = np.where(leaf, 0, condition)
            leaf_value[i, :n] = np.where(leaf, condition, 0)
            default_left[i, :n] = np.asarray(tree["default_left"], bool)
            depth = max(depth, _depth(lc, rc))
        membership = np.zeros((len(trees), len(boosters)))
        membership[np.arange(len(trees)), model_of_tree] = 1.0
        return cls(left, right, feature, threshold, default_left, leaf_value, membership, np.asarray(base, np.float64),
                   depth)

    def margins(self, x: np.ndarray) -> np.ndarray:
        """Rows ``x`` [N, features] -> each classifier's margin (logit) [N, models] (float64)."""
        x = np.asarray(x, np.float32)
        trees = np.arange(len(self.left))[None, :]
        rows = np.arange(len(x))[:, None]
        node = np.zeros((len(x), len(self.left)), np.int32)
        for _ in range(self.depth):
            value = x[rows, self.feature[trees, node]]
            go_left = np.where(np.isnan(value), self.default_left[trees, node], value < self.threshold[trees, node])
            node = np.where(go_left, self.left[trees, node], self.right[trees, node])
        return self.leaf_value[trees, node].astype(np.float64) @ self.membership + self.base_margin

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """P(class 1) [N, models]."""
        return 1.0 / (1.0 + np.exp(-self.margins(x)))


def _depth(left: np.ndarray, right: np.ndarray) -> int:
    """The number of splits on the longest root-to-leaf path of one tree (node 0 is the root)."""
    depth, level = 0, [0]
    while True:
        level = [c for n in level if left[n] >= 0 for c in (left[n], right[n])]
        if not level:
            return depth
        depth += 1
