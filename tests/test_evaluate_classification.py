"""Event scores (vitalflow.scores) and the case bootstrap (vitalflow.evaluate.bootstrap).

scikit-learn is the oracle for AUROC, average precision, the Brier score and the reliability
diagram; hand-computed examples, degenerate inputs, the alert budget, the lead time and the
bootstrap's properties are checked directly.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import asdict

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.calibration import calibration_curve
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from vitalflow.evaluate.bootstrap import (
    CaseResampler,
    Interval,
    bootstrap_over_cases,
    bootstrap_paired,
    difference,
    gap_closed,
)
from vitalflow.scores import (
    BudgetScores,
    alert_threshold,
    at_budget,
    auprc,
    auroc,
    brier,
    ece,
    median_lead_time,
    prevalence,
    reliability,
    score_events,
)

# --- hypothesis inputs: labels and probabilities, with many ties ------------------------------


@st.composite
def labelled_scores(draw, min_n=1, max_n=60):
    """(y, p): 0/1 labels and probabilities in [0, 1]; scores often tied (a few distinct values)."""
    n = draw(st.integers(min_n, max_n))
    y = np.array(draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)), dtype=np.int64)
    few = st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.5, 0.7, 1.0])
    any_probability = st.floats(0.0, 1.0, allow_nan=False)
    values = draw(st.one_of(st.just(few), st.just(any_probability)))
    p = np.array(draw(st.lists(values, min_size=n, max_size=n)), dtype=np.float64)
    return y, p


def both_classes(y) -> bool:
    return 0 < int(np.sum(y)) < len(y)


# --- differential against scikit-learn -----------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(labelled_scores())
def test_auroc_matches_sklearn(data):
    y, p = data
    if both_classes(y):
        assert auroc(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    else:
        assert math.isnan(auroc(y, p))


@settings(max_examples=300, deadline=None)
@given(labelled_scores())
def test_auprc_matches_sklearn(data):
    y, p = data
    if both_classes(y):
        assert auprc(y, p) == pytest.approx(average_precision_score(y, p), abs=1e-12)
    else:
        assert math.isnan(auprc(y, p))


@settings(max_examples=200, deadline=None)
@given(labelled_scores())
def test_ranking_scores_accept_any_real_score(data):
    """AUROC and AUPRC depend on the order of the scores only: any real score, same ranking, same numbers."""
    y, p = data
    rank = np.unique(p, return_inverse=True)[1].reshape(-1)
    real = 3.5 * rank - 40.0  # exactly the same order and ties as p, outside [0, 1]
    for score in (auroc, auprc):
        a, b = score(y, p), score(y, real)
        assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, abs=1e-12)


@settings(max_examples=200, deadline=None)
@given(labelled_scores())
def test_brier_matches_sklearn(data):
    y, p = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-learn warns about a single class
        expected = brier_score_loss(y, p, pos_label=1)
    assert brier(y, p) == pytest.approx(expected, abs=1e-12)


@settings(max_examples=200, deadline=None)
@given(labelled_scores(), st.sampled_from([1, 2, 5, 10]))
def test_reliability_matches_sklearn_calibration_curve(data, bins):
    y, p = data
    r = reliability(y, p, bins)
    prob_true, prob_pred = calibration_curve(y, p, n_bins=bins, strategy="uniform", pos_label=1)
    used = r.count > 0
    assert int(r.count.sum()) == len(y)
    np.testing.assert_allclose(r.observed[used], prob_true, atol=1e-12)
    np.testing.assert_allclose(r.mean_predicted[used], prob_pred, atol=1e-12)
    assert np.isnan(r.observed[~used]).all() and np.isnan(r.mean_predicted[~used]).all()
    # ECE from scikit-learn's bins, weighted by the counts the same binning gives
    counts = np.bincount(np.searchsorted(np.linspace(0, 1, bins + 1)[1:-1], p), minlength=bins)
    expected_ece = np.sum(counts[counts > 0] * np.abs(prob_pred - prob_true)) / len(y)
    assert ece(y, p, bins) == pytest.approx(expected_ece, abs=1e-12)


# --- hand-computed examples ----------------------------------------------------------------


def test_auroc_hand_example_with_ties():
    y = [0, 0, 1, 1, 0, 1]
    p = [0.1, 0.5, 0.5, 0.9, 0.3, 0.3]
    # positives 0.5, 0.9, 0.3 vs negatives 0.1, 0.5, 0.3: 9 pairs
    # 0.5: beats 0.1 and 0.3, ties 0.5 -> 2.5; 0.9: beats all -> 3; 0.3: beats 0.1, ties 0.3 -> 1.5
    # AUROC = (2.5 + 3 + 1.5) / 9 = 7 / 9
    assert auroc(y, p) == pytest.approx(7 / 9)


def test_auprc_hand_example_with_ties():
    y = [1, 0, 1, 1, 0, 0]
    p = [0.9, 0.7, 0.7, 0.4, 0.4, 0.1]
    # 3 positives; thresholds highest first:
    #   >= 0.9: 1 alert, 1 TP -> P = 1,   R = 1/3
    #   >= 0.7: 3 alerts, 2 TP -> P = 2/3, R = 2/3   (the tie flagged together)
    #   >= 0.4: 5 alerts, 3 TP -> P = 3/5, R = 1
    #   >= 0.1: 6 alerts, 3 TP -> P = 1/2, R = 1     (no recall gain)
    # AP = 1/3 * 1 + 1/3 * 2/3 + 1/3 * 3/5 = 1/3 + 2/9 + 1/5 = (15 + 10 + 9) / 45 = 34 / 45
    assert auprc(y, p) == pytest.approx(34 / 45)


def test_brier_ece_reliability_hand_example():
    y = [0, 0, 1, 1, 1]
    p = [0.1, 0.3, 0.3, 0.8, 1.0]
    # Brier: (0.01 + 0.09 + 0.49 + 0.04 + 0) / 5 = 0.63 / 5 = 0.126
    assert brier(y, p) == pytest.approx(0.126)
    # 2 bins: [0, 0.5] holds 0.1, 0.3, 0.3 (y 0, 0, 1); (0.5, 1] holds 0.8, 1.0 (y 1, 1)
    r = reliability(y, p, bins=2)
    assert r.count.tolist() == [3, 2]
    np.testing.assert_allclose(r.mean_predicted, [0.7 / 3, 0.9])
    np.testing.assert_allclose(r.observed, [1 / 3, 1.0])
    # ECE = 3/5 * |0.7/3 - 1/3| + 2/5 * |0.9 - 1| = 3/5 * 0.1 + 2/5 * 0.1 = 0.1
    assert ece(y, p, bins=2) == pytest.approx(0.1)
    assert prevalence(y) == pytest.approx(0.6)


def test_reliability_reports_empty_bins_as_count_zero_and_nan():
    r = reliability([0, 1], [0.05, 0.95], bins=10)
    assert r.count.tolist() == [1, 0, 0, 0, 0, 0, 0, 0, 0, 1]
    assert np.isnan(r.mean_predicted[1:9]).all() and np.isnan(r.observed[1:9]).all()
    assert r.edges.tolist() == pytest.approx(np.linspace(0, 1, 11).tolist())
    assert ece([0, 1], [0.05, 0.95], bins=10) == pytest.approx(0.05)  # 1/2 * 0.05 + 1/2 * 0.05


# --- degenerate inputs: NaN, no exception, no warning --------------------------------------


@pytest.mark.filterwarnings("error")  # no RuntimeWarning (a division by zero) either
def test_degenerate_inputs_give_nan():
    empty = np.array([])
    for score in (auroc, auprc, brier, ece):
        assert math.isnan(score(empty, empty))
    assert math.isnan(prevalence(empty))
    for y in ([0, 0, 0], [1, 1, 1]):  # a single class: ranking undefined, calibration defined
        assert math.isnan(auroc(y, [0.2, 0.5, 0.9]))
        assert math.isnan(auprc(y, [0.2, 0.5, 0.9]))
        assert not math.isnan(brier(y, [0.2, 0.5, 0.9]))
        assert not math.isnan(ece(y, [0.2, 0.5, 0.9]))
    # scores that are not probabilities: calibration undefined, ranking fine
    assert math.isnan(brier([0, 1], [-1.0, 3.0])) and math.isnan(ece([0, 1], [-1.0, 3.0]))
    assert np.isnan(reliability([0, 1], [-1.0, 3.0]).observed).all()
    assert auroc([0, 1], [-1.0, 3.0]) == 1.0
    # alert budget and lead time
    assert math.isnan(alert_threshold(empty, 10.0))
    assert math.isnan(alert_threshold([0.5], float("nan")))
    assert math.isnan(alert_threshold([0.5], -1.0))
    none = at_budget(empty, empty, 0.5)
    assert math.isnan(none.recall) and math.isnan(none.precision) and none.alerts == 0
    no_positive = at_budget([0, 0], [0.9, 0.1], 0.5)
    assert math.isnan(no_positive.recall) and no_positive.precision == 0.0 and no_positive.alerts == 1
    no_alert = at_budget([1, 0], [0.4, 0.1], 0.5)
    assert no_alert.recall == 0.0 and math.isnan(no_alert.precision) and no_alert.alerts == 0
    assert math.isnan(median_lead_time([1, 0], [0.4, 0.9], 0.5, [30, 0]))  # the only alert is false
    s = score_events([1, 0], [0.9, 0.1], [0, 0], ["a", "a"], [30, 0])  # every label masked
    assert s.n == 0 and s.cases == 0 and s.alerts == 0
    assert all(math.isnan(v) for v in (s.prevalence, s.auroc, s.auprc, s.brier, s.ece, s.median_lead_s))


def test_mismatched_lengths_raise():
    with pytest.raises(ValueError):
        auroc([0, 1, 1], [0.1, 0.2])
    with pytest.raises(ValueError):
        score_events([0, 1], [0.1, 0.2], [1], ["a", "a"], [0, 0])


# --- alert budget -------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 400), st.integers(0, 2**32 - 1), st.sampled_from([5.0, 10.0, 30.0]))
def test_budget_gives_exactly_the_allowed_alerts_on_distinct_scores(windows, seed, per_minutes):
    p = np.random.default_rng(seed).permutation(windows) / windows  # distinct scores
    minutes = windows * 0.5
    allowed = int(minutes // per_minutes)
    threshold = alert_threshold(p, minutes, per_minutes)
    alerts = at_budget(np.zeros(windows), p, threshold).alerts
    assert alerts == min(allowed, windows)
    if allowed == 0:
        assert threshold == math.inf


@settings(max_examples=200, deadline=None)
@given(labelled_scores(max_n=200), st.floats(0.0, 200.0))
def test_budget_with_ties_is_the_most_alerts_within_the_budget(data, minutes):
    y, p = data
    allowed = int(np.floor(minutes / 10.0))
    threshold = alert_threshold(p, minutes)
    alerts = int(np.sum(p >= threshold))
    if allowed >= 1 and int(np.sum(p == p.max())) > allowed:
        # the top tie alone breaks the budget: it alerts, over the budget, unless the scorer is a constant
        assert threshold == (p.max() if p.max() > p.min() else math.inf)
        return
    assert alerts <= allowed
    lower = p[p < threshold]
    if lower.size:  # the next lower score would break the budget
        assert int(np.sum(p >= lower.max())) > allowed


def test_budget_hand_example():
    # 40 windows = 20 min of case time -> 2 alerts allowed at one per 10 min
    p = np.zeros(40)
    p[[3, 17, 25]] = [0.9, 0.8, 0.6]
    y = np.zeros(40)
    y[[3, 25, 30]] = 1
    threshold = alert_threshold(p, minutes_covered=20.0)
    assert threshold == 0.8
    # alerts at 0.9 (true) and 0.8 (false): recall 1/3, precision 1/2
    assert at_budget(y, p, threshold) == BudgetScores(recall=1 / 3, precision=0.5, alerts=2)


def test_median_lead_time_hand_example():
    y = [1, 1, 1, 0, 1, 1]
    p = [0.9, 0.6, 0.2, 0.95, 0.7, 0.8]
    onset_s = [300, 120, 30, 0, 45, 600]
    # threshold 0.5: true alerts are windows 0, 1, 4, 5 (window 3 is false, window 2 missed)
    # their onsets 300, 120, 45, 600 -> sorted 45, 120, 300, 600 -> median (120 + 300) / 2 = 210
    assert median_lead_time(y, p, 0.5, onset_s) == 210.0


def test_score_events_drops_masked_labels_first():
    rng = np.random.default_rng(5)
    n = 500
    y = (rng.random(n) < 0.2).astype(int)
    p = np.clip(0.2 + 0.4 * y + rng.normal(0, 0.2, n), 0, 1)
    mask = rng.random(n) < 0.7
    cases = np.repeat(np.arange(10), 50)
    onset = np.where(y == 1, rng.integers(1, 600, n), 0)
    s = score_events(y, p, mask, cases, onset)
    # masked windows carry arbitrary labels: flipping them changes nothing
    flipped = np.where(mask, y, 1 - y)
    np.testing.assert_equal(asdict(score_events(flipped, p, mask, cases, onset)), asdict(s))  # NaN == NaN
    kept = mask
    assert s.n == int(kept.sum()) and s.positives == int(y[kept].sum()) and s.cases == 10
    assert s.auroc == pytest.approx(roc_auc_score(y[kept], p[kept]))
    assert s.auprc == pytest.approx(average_precision_score(y[kept], p[kept]))
    assert s.brier == pytest.approx(brier_score_loss(y[kept], p[kept]))
    assert s.prevalence == pytest.approx(y[kept].mean())
    # the budget: kept windows x 0.5 min / 10 min
    assert s.alerts <= int(kept.sum() * 0.5 // 10) and s.alerts > 0
    assert s.threshold == alert_threshold(p[kept], kept.sum() * 0.5, 10)
    expected = at_budget(y[kept], p[kept], s.threshold)
    assert (s.recall_at_budget, s.precision_at_budget) == (expected.recall, expected.precision)
    assert s.median_lead_s == median_lead_time(y[kept], p[kept], s.threshold, onset[kept])


# --- bootstrap over cases ------------------------------------------------------------------


def _cases_and_scores(seed=0, cases=60, windows=10_000, positive_rate=0.1):
    rng = np.random.default_rng(seed)
    case_ids = np.sort(rng.integers(0, cases, windows))
    y = (rng.random(windows) < positive_rate).astype(np.int8)
    p = np.clip(0.1 + 0.3 * y + rng.normal(0, 0.2, windows), 0, 1)
    return case_ids, y, p


def test_resampler_draws_cases_with_all_their_windows():
    case_ids = np.array([7, 7, 7, 3, 9, 9])  # case 3: 1 window, case 7: 3, case 9: 2
    r = CaseResampler(case_ids, n=50, seed=1)
    size = {3: 1, 7: 3, 9: 2}
    for i in range(50):
        assert r.times_drawn[i].sum() == 3  # as many draws as cases
        idx = r.indices(i)
        drawn = dict(zip([3, 7, 9], r.times_drawn[i].tolist(), strict=True))
        assert len(idx) == sum(drawn[c] * size[c] for c in drawn)  # a case drawn twice counts twice
        for window in range(6):
            assert np.count_nonzero(idx == window) == drawn[int(case_ids[window])]


def test_same_seed_same_interval_other_seed_other_interval():
    case_ids, y, p = _cases_and_scores(windows=2000)
    a = bootstrap_over_cases(auprc, case_ids, y, p, n=200, seed=4)
    b = bootstrap_over_cases(auprc, case_ids, y, p, n=200, seed=4)
    c = bootstrap_over_cases(auprc, case_ids, y, p, n=200, seed=5)
    assert a == b
    assert a.point == c.point and (a.lo, a.hi) != (c.lo, c.hi)
    assert isinstance(a, Interval) and a.resamples_used == 200


@pytest.mark.parametrize("seed", range(5))
def test_interval_contains_the_point_for_a_smooth_metric(seed):
    case_ids, y, p = _cases_and_scores(seed=seed, windows=3000)
    point, lo, hi, used = bootstrap_over_cases(brier, case_ids, y, p, n=300, seed=seed)
    assert lo < point < hi and used == 300
    point, lo, hi, _ = bootstrap_over_cases(auroc, case_ids, y, p, n=300, seed=seed)
    assert lo < point < hi


def test_one_case_holding_all_positives_gives_a_wide_interval():
    """Resampling cases, not windows: the case with every positive is drawn 0, 1, 2, ... times."""
    cases, per_case = 20, 50
    case_ids = np.repeat(np.arange(cases), per_case)
    y = np.zeros(cases * per_case, dtype=int)
    y[:25] = 1  # half of case 0's windows; no other case has a positive
    point, lo, hi, used = bootstrap_over_cases(prevalence, case_ids, y, n=1000, seed=0)
    assert point == 0.025
    assert lo == 0.0 and hi >= 0.05  # case 0 missing (0) or drawn 2+ times (>= 0.05)
    # the same windows as independent units: a narrow binomial interval around 0.025
    _, window_lo, window_hi, _ = bootstrap_over_cases(prevalence, np.arange(y.size), y, n=1000, seed=0)
    assert 0.01 < window_lo < 0.025 < window_hi < 0.04
    # AUPRC is undefined when case 0 is not drawn (P = (19/20)^20 = 0.36): those resamples drop
    p = np.where(y == 1, 0.8, 0.3) + np.random.default_rng(0).normal(0, 0.2, y.size)
    _, _, _, used = bootstrap_over_cases(auprc, case_ids, y, p, n=1000, seed=0)
    assert 550 < used < 730


def test_paired_bootstrap_scores_both_on_the_same_cases():
    case_ids, y, p = _cases_and_scores(windows=2000)
    rescaled = 0.5 * p + 0.1  # the same ranking: AUPRC identical on every resample
    assert bootstrap_paired(auprc, difference, case_ids, y, p, rescaled, n=200) == (0.0, 0.0, 0.0, 200)
    # the model is the oracle: it closes the whole gap on every resample
    noskill = np.full(y.size, 0.5)
    assert bootstrap_paired(auprc, gap_closed, case_ids, y, p, noskill, p, n=200) == (1.0, 1.0, 1.0, 200)
    # a real difference: the paired interval is that of the per-resample difference
    noisy = np.clip(p + np.random.default_rng(1).normal(0, 0.3, y.size), 0, 1)
    point, lo, hi, _ = bootstrap_paired(auprc, difference, case_ids, y, p, noisy, n=300, seed=2)
    assert point == pytest.approx(auprc(y, p) - auprc(y, noisy))
    assert 0 < lo < point < hi


def test_bootstrap_of_auprc_is_fast():
    case_ids, y, p = _cases_and_scores()  # 10,000 windows of 60 cases
    bootstrap_over_cases(auprc, case_ids, y, p, n=20)  # warm up
    start = time.perf_counter()
    interval = bootstrap_over_cases(auprc, case_ids, y, p, n=1000, seed=0)
    elapsed = time.perf_counter() - start
    assert interval.resamples_used == 1000
    assert elapsed < 3.0, f"{elapsed:.2f} s (0.27 s measured on the development VM; 2 shared cores)"
