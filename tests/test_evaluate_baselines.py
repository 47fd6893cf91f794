"""Baselines of vitalflow.evaluate.baselines: persistence, summaries, train median, boosted trees."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vitalflow.evaluate.baselines import BoostedTrees, TrainMedian, persistence
from vitalflow.transform.summaries import summary_feature_names, summary_features
from vitalflow.spec import load_spec


def _walks(rng, n, length=120, features=4):
    steps = rng.normal(0.0, 0.03, (n, length, features))
    return np.clip(np.cumsum(steps, axis=1), -1.0, 1.0).astype(np.float32)


def test_persistence_is_the_targets_last_value():
    spec = load_spec()
    ts = np.random.default_rng(0).uniform(-1, 1, (5, 300, len(spec.feature_names))).astype(np.float32)
    p = persistence(ts, spec.target_indices)
    assert p.shape == (5, len(spec.targets))
    assert np.array_equal(p[:, 0], ts[:, -1, spec.feature_names.index("Propofol_INF")])


def test_last_and_mean_by_hand():
    ts = np.zeros((1, 10, 2))
    ts[0, :, 0] = np.arange(10)  # 0..9
    ts[0, :, 1] = [0, 0, 0, 0, 0, 0, 1, 1, 3, -1]
    x = summary_features(ts, np.array([[0.25, -0.5]]), last_s=4)
    names = summary_feature_names(["a", "b"], ["age", "sex"], last_s=4)
    got = dict(zip(names, x[0].tolist(), strict=True))
    assert got["a_last"] == 9 and got["b_last"] == -1
    assert got["a_mean4s"] == 7.5 and got["b_mean4s"] == 1.0  # (6+7+8+9)/4, (1+1+3-1)/4
    assert got["a_slope4s"] == pytest.approx(1.0)
    # b over t = -1.5, -0.5, 0.5, 1.5: sum(t * (y - 1)) / sum(t^2) = (0 + 0 + 1 - 3) / 5
    assert got["b_slope4s"] == pytest.approx(-0.4)
    assert got["age"] == 0.25 and got["sex"] == -0.5
    assert x.dtype == np.float32


def test_spec_sized_summary_has_54_named_columns():
    spec = load_spec()
    static_names = [s.name for s in spec.static]
    names = summary_feature_names(spec.feature_names, static_names)
    x = summary_features(np.zeros((3, 300, len(spec.feature_names))), np.zeros((3, len(static_names))))
    assert x.shape == (3, 54) == (3, len(names)) and len(set(names)) == 54


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(2, 90))
def test_slope_matches_polyfit(seed, last_s):
    rng = np.random.default_rng(seed)
    ts = rng.uniform(-1, 1, (4, 90, 3))
    x = summary_features(ts, np.zeros((4, 0)), last_s=last_s)
    for i in range(4):
        for f in range(3):
            expected = np.polyfit(np.arange(last_s), ts[i, -last_s:, f], 1)[0]
            assert x[i, 6 + f] == pytest.approx(expected, rel=1e-5, abs=1e-6)
            assert x[i, 3 + f] == pytest.approx(ts[i, -last_s:, f].mean(), rel=1e-5, abs=1e-6)


def test_summary_streams_batch_by_batch():
    rng = np.random.default_rng(1)
    ts, static = _walks(rng, 50), rng.uniform(-1, 1, (50, 6))
    whole = summary_features(ts, static)
    batches = np.concatenate([summary_features(ts[i : i + 16], static[i : i + 16]) for i in range(0, 50, 16)])
    assert np.array_equal(whole, batches)


def test_summary_rejects_bad_input():
    with pytest.raises(ValueError, match="last_s"):
        summary_features(np.zeros((1, 10, 2)), np.zeros((1, 1)), last_s=11)
    with pytest.raises(ValueError, match="expected timeseries"):
        summary_features(np.zeros((2, 10, 2)), np.zeros((1, 1)))


def test_train_median():
    y = np.array([[0.0, -1.0], [0.5, 1.0], [1.0, 0.5], [0.25, 0.0]])
    model = TrainMedian().fit(y)
    assert model.predict(3).tolist() == [[0.375, 0.25]] * 3
    with pytest.raises(RuntimeError):
        TrainMedian().predict(1)


def _synthetic(rng, n):
    """Targets = the last values of signals 0 and 2 (random walks, so spread over [-1, 1])."""
    ts, static = _walks(rng, n), rng.uniform(-1, 1, (n, 2)).astype(np.float32)
    return summary_features(ts, static), ts[:, -1, [0, 2]]


def test_boosted_trees_learns_last_value_far_better_than_median():
    rng = np.random.default_rng(2)
    X, y = _synthetic(rng, 3000)
    Xv, yv = _synthetic(rng, 500)
    Xt, yt = _synthetic(rng, 1000)
    trees = BoostedTrees(n_estimators=60).fit(X, y, seed=0, valid=(Xv, yv))
    pred = trees.predict(Xt)
    assert pred.shape == yt.shape and pred.dtype == np.float32
    assert pred.min() >= -1.0 and pred.max() <= 1.0
    mae_trees = np.abs(pred - yt).mean()
    mae_median = np.abs(TrainMedian().fit(y).predict(len(yt)) - yt).mean()
    assert mae_trees < 0.1 * mae_median, (mae_trees, mae_median)


def test_boosted_trees_same_seed_same_predictions():
    rng = np.random.default_rng(3)
    X, y = _synthetic(rng, 1500)
    Xt, _ = _synthetic(rng, 200)
    a = BoostedTrees(n_estimators=30).fit(X, y, seed=7).predict(Xt)
    b = BoostedTrees(n_estimators=30).fit(X, y, seed=7).predict(Xt)
    assert np.array_equal(a, b)


def test_boosted_trees_clips_to_normalized_range():
    X = np.linspace(-1, 1, 200, dtype=np.float32)[:, None]
    y = np.where(X > 0, 1.0, -1.0).astype(np.float32)
    pred = BoostedTrees(n_estimators=50, learning_rate=1.0).fit(X, y, seed=0).predict(X)
    assert pred.shape == (200, 1) and pred.min() >= -1.0 and pred.max() <= 1.0
