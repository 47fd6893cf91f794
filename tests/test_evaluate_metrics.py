"""Metrics of vitalflow.evaluate.metrics: hand-computed cases and properties."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from vitalflow.evaluate.metrics import change_tolerance, changed, error_metrics, r2_score, target_metrics

NAMES = ["HR", "Propofol_INF"]
RANGES = [(20.0, 200.0), (0.0, 12.0)]

values = st.integers(-100_000, 100_000).map(lambda i: i / 100)  # clinical values, 0.01 resolution


@st.composite
def triples(draw, min_n=1, max_n=40):
    """actual, predicted, persistence [N, 2] in clinical-like units."""
    n = draw(st.integers(min_n, max_n))
    a = draw(arrays(np.float64, (n, 2), elements=values))
    p = draw(arrays(np.float64, (n, 2), elements=values))
    # persistence equal to actual for some windows, different for others
    same = draw(arrays(np.bool_, (n, 2)))
    q = np.where(same, a, draw(arrays(np.float64, (n, 2), elements=values)))
    return a, p, q


def _metrics(a, p, q):
    return target_metrics(a, p, q, NAMES, ["Propofol_INF"], RANGES)


def test_hand_computed_infusion_and_vital():
    actual = np.array([[60.0, 0.0], [70.0, 2.0], [80.0, 4.0], [90.0, 4.0]])
    predicted = np.array([[62.0, 1.0], [70.0, 2.0], [77.0, 3.0], [90.0, 4.0]])
    persistence = np.array([[60.0, 0.0], [60.0, 2.0], [80.0, 2.0], [90.0, 4.0]])
    m = target_metrics(actual, predicted, persistence, NAMES, ["Propofol_INF"], RANGES)
    hr, prop = m["HR"], m["Propofol_INF"]
    # HR: errors 2, 0, -3, 0 -> MAE 5/4, RMSE sqrt(13/4); SS_tot = 225+25+25+225 = 500 -> R^2 = 1 - 13/500
    assert hr["all"] == {"n": 4, "mae": 1.25, "rmse": pytest.approx(np.sqrt(13 / 4)), "mdape": None,
                         "r2": pytest.approx(1 - 13 / 500)}
    # HR changes only in window 1 (70 vs 60 > 0.18): error 0
    assert hr["changed"] == {"n": 1, "mae": 0.0, "rmse": 0.0, "mdape": None, "r2": None}
    assert hr["tolerance"] == pytest.approx(0.18)
    # Propofol: errors 1, 0, -1, 0; percentage errors over actual > 0: 0, 25, 0 -> median 0
    assert prop["all"]["mae"] == 0.5 and prop["all"]["mdape"] == 0.0
    # changed: window 2 (4 vs 2) only -> 25 %
    assert prop["changed"] == {"n": 1, "mae": 1.0, "rmse": 1.0, "mdape": 25.0, "r2": None}


def test_no_positive_infusion_and_no_changed_window_give_none():
    a = np.zeros((3, 2))
    m = _metrics(a, a, a)
    assert m["Propofol_INF"]["all"]["mdape"] is None
    assert m["HR"]["all"]["r2"] is None  # zero variance
    assert m["HR"]["changed"] == {"n": 0, "mae": None, "rmse": None, "mdape": None, "r2": None}
    json.dumps(m, allow_nan=False)


def test_rejects_nan_and_bad_shapes():
    a = np.zeros((3, 2))
    bad = a.copy()
    bad[1, 1] = np.nan
    with pytest.raises(ValueError, match="predicted has non-finite values for Propofol_INF"):
        _metrics(a, bad, a)
    with pytest.raises(ValueError, match="shape"):
        _metrics(a, a[:, :1], a)


def test_changed_uses_per_target_tolerance():
    tol = change_tolerance(RANGES)
    assert tol.tolist() == pytest.approx([0.18, 0.012])
    a = np.array([[60.1, 1.02]])
    q = np.array([[60.0, 1.0]])
    assert changed(a, q, tol).tolist() == [[False, True]]


@settings(max_examples=200, deadline=None)
@given(triples())
def test_mae_at_most_rmse_and_json_safe(t):
    m = _metrics(*t)
    for per_target in m.values():
        for kind in ("all", "changed"):
            k = per_target[kind]
            if k["n"]:
                assert k["mae"] <= k["rmse"] * (1 + 1e-12) + 1e-12
    text = json.dumps(m, allow_nan=False)
    assert json.loads(text) == m


@settings(max_examples=200, deadline=None)
@given(triples(min_n=2))
def test_perfect_prediction(t):
    a, _, q = t
    m = _metrics(a, a, q)
    for j, per_target in enumerate(m.values()):
        assert per_target["all"]["mae"] == 0.0 and per_target["all"]["rmse"] == 0.0
        assert per_target["all"]["r2"] == (None if np.ptp(a[:, j]) == 0 else 1.0)


@settings(max_examples=200, deadline=None)
@given(triples(), st.randoms(use_true_random=False))
def test_invariant_to_window_order(t, rnd):
    a, p, q = t
    order = list(range(a.shape[0]))
    rnd.shuffle(order)
    m1, m2 = _metrics(a, p, q), _metrics(a[order], p[order], q[order])
    for name in NAMES:
        for kind in ("all", "changed"):
            x, y = m1[name][kind], m2[name][kind]
            assert x["n"] == y["n"]
            for key in ("mae", "rmse", "mdape", "r2"):
                assert (x[key] is None) == (y[key] is None)
                if x[key] is not None:
                    assert x[key] == pytest.approx(y[key], rel=1e-9, abs=1e-9)


@settings(max_examples=200, deadline=None)
@given(triples())
def test_changed_metrics_are_all_metrics_of_the_subset(t):
    a, p, q = t
    m = _metrics(a, p, q)
    mask = changed(a, q, change_tolerance(RANGES))
    for j, name in enumerate(NAMES):
        rows = mask[:, j]
        sub = _metrics(a[rows], p[rows], q[rows])
        assert m[name]["changed"] == sub[name]["all"]
        assert m[name]["changed"] == error_metrics(a[rows, j], p[rows, j], name == "Propofol_INF")


@settings(max_examples=100, deadline=None)
@given(st.integers(3, 200), st.integers(0, 2**32 - 1), st.floats(0.0, 3.0))
def test_r2_of_least_squares_fit_is_squared_correlation(n, seed, noise):
    """For an ordinary least-squares fit of y on x, R^2 = corr(x, y)^2 (independent formula)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    y = 2.0 * x + 1.0 + noise * rng.normal(size=n)
    slope, intercept = np.polyfit(x, y, 1)
    fit = slope * x + intercept
    assert r2_score(y, fit) == pytest.approx(np.corrcoef(x, y)[0, 1] ** 2, rel=1e-7, abs=1e-9)


def test_r2_of_mean_prediction_is_zero_and_can_be_negative():
    y = np.array([1.0, 2.0, 3.0, 6.0])
    assert r2_score(y, np.full(4, y.mean())) == pytest.approx(0.0, abs=1e-15)
    assert r2_score(y, y[::-1]) < 0
