"""The stacked decision model's parts: Platt scaling, the blend weight, the stack's ranking on the
split it was fitted on, and the XGBoost boosters' files (vitalflow.model.{calibration,stack,boosted})."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score

from vitalflow.model.boosted import BOOSTED_DIR, EventBoosters, boosted_feature_names, boosted_features
from vitalflow.model.calibration import fit_platt, sigmoid
from vitalflow.model.stack import WEIGHTS, fit_stack, logit, stacked
from vitalflow.store import Store


def test_platt_scaling_matches_an_unpenalized_logistic_regression():
    rng = np.random.default_rng(3)
    z = rng.normal(0, 2, 5000)
    y = (rng.random(5000) < sigmoid(0.6 * z - 1.2)).astype(float)
    a, b = fit_platt(z, y)
    reference = LogisticRegression(C=np.inf, tol=1e-10, max_iter=1000).fit(z[:, None], y)
    assert a == pytest.approx(reference.coef_[0, 0], abs=1e-4)
    assert b == pytest.approx(reference.intercept_[0], abs=1e-4)
    assert 0.5 < a < 0.7 and -1.35 < b < -1.05  # and near the truth it was drawn from


def test_platt_keeps_the_ranking_when_the_score_is_reversed():
    """A score that ranks backwards (a < 0 fits best) is not turned around: a stays positive."""
    z = np.linspace(-3, 3, 200)
    y = (z < 0).astype(float)
    a, _ = fit_platt(z, y)
    assert a > 0


def test_platt_leaves_what_it_cannot_fit():
    assert fit_platt(np.arange(30.0), np.zeros(30)) == (1.0, 0.0)  # one class
    assert fit_platt(np.arange(5.0), np.array([0, 1, 0, 1, 0.0])) == (1.0, 0.0)  # too few windows


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), events=st.integers(1, 3))
def test_the_stack_ranks_at_least_as_well_as_either_member_where_it_was_fitted(seed, events):
    """On the windows it was fitted on, each event's stack has an AUPRC (scikit-learn's) no lower
    than the better of the network and the boosters (w = 1 and w = 0 are among the choices, and
    Platt scaling with a > 0 keeps the ranking)."""
    rng = np.random.default_rng(seed)
    n = 300
    labels = (rng.random((n, events)) < 0.2).astype(float)
    network = sigmoid(labels * rng.normal(1, 1, (n, events)) + rng.normal(0, 1.5, (n, events)))
    boosted = sigmoid(labels * rng.normal(1, 1, (n, events)) + rng.normal(0, 1.5, (n, events)))
    mask = rng.random((n, events)) < 0.9
    weights, platt = fit_stack(network, boosted, labels, mask)
    assert all(w in WEIGHTS for w in weights)
    together = stacked(network, boosted, weights, platt)
    assert together.shape == (n, events) and np.all((together > 0) & (together < 1))
    for j in range(events):
        rows = mask[:, j]
        y = labels[rows, j]
        if not 0 < y.sum() < y.size:
            continue
        best = max(average_precision_score(y, network[rows, j]), average_precision_score(y, boosted[rows, j]))
        assert average_precision_score(y, together[rows, j]) >= best - 1e-9


def test_stacked_is_the_formula():
    network, boosted = np.array([[0.2, 0.9]]), np.array([[0.6, 0.1]])
    got = stacked(network, boosted, [0.25, 1.0], [(2.0, -1.0), (1.0, 0.0)])
    z0 = 0.25 * np.log(0.2 / 0.8) + 0.75 * np.log(0.6 / 0.4)
    np.testing.assert_allclose(got, [[1 / (1 + np.exp(-(2 * z0 - 1))), 0.9]])
    np.testing.assert_allclose(logit(np.array([0.5, 0.75])), [0.0, np.log(3)])


def _windows(rng, n):
    ts = rng.uniform(-1, 1, (n, 300, 3)).astype(np.float32)
    static = rng.uniform(-1, 1, (n, 2)).astype(np.float32)
    sp = rng.uniform(-1, 1, (n, 2)).astype(np.float32)
    known = (rng.random((n, 2)) < 0.8).astype(np.float32)
    return ts, static, sp, known


def test_boosted_features_are_the_summaries_then_the_setpoints():
    rng = np.random.default_rng(0)
    ts, static, sp, known = _windows(rng, 4)
    x = boosted_features(ts, static, sp, known)
    names = boosted_feature_names(["a", "b", "c"], ["age", "sex"], ["PPF_CT", "FIO2_SET"])
    assert x.shape == (4, len(names)) and x.dtype == np.float32
    np.testing.assert_array_equal(x[:, names.index("b_last")], ts[:, -1, 1])
    np.testing.assert_allclose(x[:, names.index("c_mean60s")], ts[:, -60:, 2].mean(axis=1), rtol=1e-6)
    np.testing.assert_array_equal(x[:, names.index("FIO2_SET")], sp[:, 1])
    np.testing.assert_array_equal(x[:, names.index("PPF_CT_known")], known[:, 0])


def test_boosters_learn_a_threshold_and_read_back_from_their_files(tmp_path):
    """Event 0 follows a threshold on one feature (the boosters must find it), event 1 has one
    class in training (a constant), event 2 has no valid window; saved and loaded, XGBoost's own
    reader gives the same probabilities."""
    import xgboost

    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, (2000, 5)).astype(np.float32)
    labels = np.stack([(x[:, 3] > 0.4).astype(float), np.zeros(2000), np.ones(2000)], axis=1)
    mask = np.ones_like(labels, bool)
    mask[:, 2] = False
    boosters = EventBoosters().fit(x[:1500], labels[:1500], mask[:1500], x[1500:], labels[1500:], mask[1500:])
    p = boosters.predict(x[1500:])
    assert p.shape == (500, 3)
    assert average_precision_score(labels[1500:, 0], p[:, 0]) > 0.99
    assert np.all(p[:, 1] == 0.0) and np.all(p[:, 2] == 0.0)
    store = Store(str(tmp_path / "model"))
    saved = boosters.save(store)
    assert saved == [f"{BOOSTED_DIR}/event_00.ubj", 0.0, 0.0]
    np.testing.assert_array_equal(EventBoosters.load(store, saved).predict(x[1500:]), p)
    own = xgboost.Booster(model_file=str(tmp_path / "model" / saved[0])).predict(xgboost.DMatrix(x[1500:]))
    np.testing.assert_allclose(own, p[:, 0], rtol=1e-6)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), depth=st.integers(1, 6), rows=st.integers(1, 12),
       missing=st.sampled_from([0.0, 0.2, 1.0]))
def test_the_numpy_forest_equals_xgboost_on_random_boosters_and_windows(seed, depth, rows, missing):
    """`Forest` (the hand-written small-batch path) against XGBoost's own ``Booster.predict``: random
    boosters (depth 1-6, missing values in training so both default directions occur), random rows
    with NaNs, and a row exactly on a split threshold (XGBoost's ``x < threshold`` goes left)."""
    import json

    import xgboost

    from vitalflow.model.forest import Forest

    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (400, 6)).astype(np.float32)
    x[rng.random(x.shape) < 0.15] = np.nan
    boosters = [xgboost.train({"objective": "binary:logistic", "max_depth": depth, "eta": 0.3, "seed": seed,
                               "nthread": 1, "base_score": float(rng.uniform(0.1, 0.9))},
                              xgboost.DMatrix(x, label=(rng.random(400) < 0.5 + 0.3 * np.tanh(x[:, k] * 2)).astype(int)),
                              num_boost_round=int(rng.integers(1, 20)))
                for k in range(3)]
    probe = rng.normal(0, 1, (rows, 6)).astype(np.float32)
    probe[rng.random(probe.shape) < missing] = np.nan
    tree = json.loads(bytes(boosters[0].save_raw("json")))["learner"]["gradient_booster"]["model"]["trees"][0]
    if tree["left_children"][0] >= 0:  # the root's split value itself
        probe[0, tree["split_indices"][0]] = np.float32(tree["split_conditions"][0])
    want = np.stack([b.predict(xgboost.DMatrix(probe)) for b in boosters], axis=1)
    np.testing.assert_allclose(Forest.of_boosters(boosters).probabilities(probe), want, rtol=2e-6, atol=1e-7)


def test_event_boosters_take_the_forest_for_small_batches_and_xgboost_for_large_ones():
    from vitalflow.model import boosted

    rng = np.random.default_rng(2)
    x = rng.uniform(-1, 1, (600, 4)).astype(np.float32)
    labels = np.stack([(x[:, 0] > 0).astype(float), (x[:, 1] + x[:, 2] > 0.5).astype(float)], axis=1)
    boosters = EventBoosters(rounds=20).fit(x, labels, np.ones_like(labels, bool))
    large = boosters.predict(x[:100])  # over FOREST_MAX_ROWS: XGBoost
    for n in (1, 3, boosted.FOREST_MAX_ROWS):
        np.testing.assert_allclose(boosters.predict(x[:n]), large[:n], rtol=2e-6)
    refit = EventBoosters(rounds=5).fit(x, labels[:, ::-1], np.ones_like(labels, bool))
    refit.predict(x[:1])
    refit.fit(x, labels, np.ones_like(labels, bool))  # a refit forgets the forest of its earlier boosters
    np.testing.assert_allclose(refit.predict(x[:2]), EventBoosters(rounds=5).fit(
        x, labels, np.ones_like(labels, bool)).predict(x[:2]), rtol=2e-6)


# --- value gates (vitalflow.model.value_gates) ------------------------------------------------------
from vitalflow.model.value_gates import THRESHOLDS, fit_gates, gated  # noqa: E402


def test_a_gate_keeps_the_setpoint_now_below_its_threshold_and_where_unknown_the_network():
    values = np.array([[0.4, 0.4], [0.4, 0.4], [0.4, 0.4]])
    now = np.array([[0.1, 0.1], [0.1, 0.1], [0.1, 0.1]])
    known = np.array([[True, True], [True, False], [True, True]])
    p = np.array([[0.2, 0.2], [0.6, 0.1], [0.5, 0.9]])
    np.testing.assert_array_equal(gated(values, now, known, p, [0.5, 1.01]),
                                  [[0.1, 0.1], [0.4, 0.4], [0.4, 0.1]])


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_gated_values_are_never_worse_than_the_network_or_persistence_where_fitted(seed):
    """The chosen threshold's MAE (computed here from the definition) is at most the network's
    (threshold 0) and persistence's (above 1) on the windows it was fitted on."""
    rng = np.random.default_rng(seed)
    n, k = 200, 3
    now = rng.uniform(-1, 1, (n, k))
    changed = rng.random((n, k)) < 0.2
    truth = np.where(changed, rng.uniform(-1, 1, (n, k)), now)
    values = np.where(rng.random((n, k)) < 0.5, truth, now) + rng.normal(0, 0.05, (n, k))
    p = np.clip(changed * 0.5 + rng.random((n, k)) * 0.5, 0, 1)
    known = rng.random((n, k)) < 0.9
    mask = rng.random((n, k)) < 0.8
    thresholds, mae = fit_gates(values, now, known, p, truth, mask)
    for j, t in enumerate(thresholds):
        assert t in THRESHOLDS
        rows = mask[:, j]
        def error(threshold):
            keep = (p[rows, j] >= threshold) | ~known[rows, j]
            return np.mean(np.abs(np.where(keep, values[rows, j], now[rows, j]) - truth[rows, j]))
        assert error(t) <= min(error(0.0), error(2.0)) + 1e-12
        assert mae[j]["gated"] == pytest.approx(error(t))
        assert mae[j]["network"] == pytest.approx(error(0.0)) and mae[j]["persistence"] == pytest.approx(error(2.0))
