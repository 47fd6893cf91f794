"""Scores of event predictions: will a group of set-points change within the horizon?

The clinical decision-support literature scores such an alert model by discrimination (AUROC, and
AUPRC because events are rare), calibration (Brier score, reliability diagram, ECE) and by what a
clinician would see at a tolerable alert rate: recall and precision when the model may raise at
most one alert per ``per_minutes`` minutes of case time, and how early the true alerts come.

Inputs are 1-D arrays over windows: ``y`` the binary labels (0/1, bool or float), ``p`` the scores
(probabilities, or any real score where higher means "more likely"; the calibration scores need
probabilities in [0, 1]). Pure numpy: no I/O, no logging.

Degenerate input never raises and never divides by zero: a score that is undefined for it (empty
input, a single class, scores outside [0, 1] for the calibration scores, no alert) is NaN. Each
function says when. Mismatched shapes are a caller's bug and raise ValueError.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

NAN = float("nan")

WINDOW_MINUTES = 0.5
"""Case time per window: windows end every 30 s."""

ALERT_BUDGET_MINUTES = 10.0
"""Default alert budget: at most one alert per 10 minutes of case time."""


def _labels_scores(y, p) -> tuple[np.ndarray, np.ndarray]:
    """``y`` as bool and ``p`` as float64, both 1-D of the same length (ValueError otherwise)."""
    y = np.asarray(y).reshape(-1)
    p = np.asarray(p, dtype=np.float64).reshape(-1)
    if y.shape != p.shape:
        raise ValueError(f"{y.shape[0]} labels for {p.shape[0]} scores")
    return y.astype(bool), p


def _is_probability(p: np.ndarray) -> bool:
    return bool(np.all((p >= 0.0) & (p <= 1.0)))  # False for NaN


def prevalence(y) -> float:
    """Fraction of positive labels; NaN for no labels.

    >>> prevalence([0, 1, 0, 0])
    0.25
    >>> prevalence([])
    nan
    """
    y = np.asarray(y).reshape(-1).astype(bool)
    return float(np.count_nonzero(y) / y.size) if y.size else NAN


def auroc(y, p) -> float:
    """Area under the ROC curve: the probability that a random positive outscores a random negative.

    Computed as the Mann-Whitney U statistic with average ranks, so a tie between a positive and a
    negative counts one half. NaN for empty input, no positives or no negatives.

    >>> auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])  # pairs won: (0.35 > 0.1) + (0.8 > both) = 3 of 4
    0.75
    >>> auroc([0, 1], [0.5, 0.5])  # a tie counts one half
    0.5
    >>> auroc([1, 1], [0.2, 0.9])
    nan
    """
    y, p = _labels_scores(y, p)
    positives = int(np.count_nonzero(y))
    negatives = y.size - positives
    if positives == 0 or negatives == 0:
        return NAN
    order = np.argsort(p)  # any order within ties: a tie group's ranks are averaged
    sorted_p = p[order]
    # groups of equal scores: [first, last] positions (0-based) in sorted order
    new_group = np.empty(p.size, dtype=bool)
    new_group[0] = True
    np.not_equal(sorted_p[1:], sorted_p[:-1], out=new_group[1:])
    group = np.cumsum(new_group) - 1
    firsts = np.flatnonzero(new_group)
    lasts = np.append(firsts[1:], p.size) - 1
    average_rank = (firsts + lasts) / 2.0 + 1.0  # 1-based average rank of each group
    rank_sum = float(np.sum(average_rank[group][y[order]]))
    u = rank_sum - positives * (positives + 1) / 2.0
    return u / (positives * negatives)


def _descending_counts(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """At each distinct score, highest first: the score, true positives and alerts at ``p >= score``."""
    order = np.argsort(-p)  # any order within ties: counts are read at group ends
    sorted_p = p[order]
    true_positives = np.cumsum(y[order])
    last_of_group = np.flatnonzero(np.append(sorted_p[1:] != sorted_p[:-1], True))
    return sorted_p[last_of_group], true_positives[last_of_group], last_of_group + 1


def auprc(y, p) -> float:
    """Average precision: ``sum_n (R_n - R_(n-1)) P_n`` over the distinct scores, highest first.

    ``P_n`` and ``R_n`` are the precision and recall when every window scoring at least the n-th
    highest distinct score is flagged (ties flagged together), ``R_0 = 0``: scikit-learn's
    ``average_precision_score``, a step function (no interpolation). Its no-skill value is the
    prevalence. NaN for empty input, no positives or no negatives (scikit-learn gives 1.0 for
    all-positive labels: a score of nothing).

    >>> auprc([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1])  # 1/2 * 1/1 + 1/2 * 2/3
    0.8333333333333333
    >>> auprc([0, 0], [0.3, 0.4])
    nan
    """
    y, p = _labels_scores(y, p)
    positives = int(np.count_nonzero(y))
    if positives == 0 or positives == y.size:
        return NAN
    _, true_positives, alerts = _descending_counts(y, p)
    recall_gain = np.diff(true_positives, prepend=0) / positives
    return float(np.sum(recall_gain * (true_positives / alerts)))


def brier(y, p) -> float:
    """Mean squared difference between the probability and the 0/1 label (0 is perfect).

    NaN for empty input or a score outside [0, 1] (not a probability). A single class is fine.

    >>> brier([0, 1], [0.25, 0.5])  # (0.25^2 + 0.5^2) / 2 = (0.0625 + 0.25) / 2
    0.15625
    >>> brier([1], [1.7])
    nan
    """
    y, p = _labels_scores(y, p)
    if y.size == 0 or not _is_probability(p):
        return NAN
    return float(np.mean((p - y) ** 2))


@dataclass(frozen=True)
class Reliability:
    """A reliability diagram: per equal-width bin of [0, 1], the windows and their outcome.

    ``edges`` has ``bins + 1`` values; bin i holds the scores in ``(edges[i], edges[i + 1]]`` (bin 0
    also holds 0), as scikit-learn's ``calibration_curve``. An empty bin has count 0 and NaN means.
    """

    edges: np.ndarray  # float64 [bins + 1]
    count: np.ndarray  # int64 [bins]
    mean_predicted: np.ndarray  # float64 [bins], NaN where count is 0
    observed: np.ndarray  # float64 [bins]: fraction of positives, NaN where count is 0


def reliability(y, p, bins: int = 10) -> Reliability:
    """The reliability diagram of probabilities ``p`` in ``bins`` equal-width bins of [0, 1].

    Every bin is NaN (count 0) for empty input or a score outside [0, 1].

    >>> r = reliability([0, 1, 1, 0], [0.1, 0.15, 0.9, 0.7], bins=2)
    >>> r.count.tolist(), r.mean_predicted.tolist(), r.observed.tolist()
    ([2, 2], [0.125, 0.8], [0.5, 0.5])
    """
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    y, p = _labels_scores(y, p)
    edges = np.linspace(0.0, 1.0, bins + 1)
    if y.size == 0 or not _is_probability(p):
        empty = np.full(bins, np.nan)
        return Reliability(edges, np.zeros(bins, dtype=np.int64), empty, empty.copy())
    which = np.searchsorted(edges[1:-1], p)  # side "left": a score on an edge goes to the lower bin
    count = np.bincount(which, minlength=bins).astype(np.int64)
    sum_predicted = np.bincount(which, weights=p, minlength=bins)
    sum_observed = np.bincount(which, weights=y.astype(np.float64), minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        return Reliability(edges, count, sum_predicted / count, sum_observed / count)


def ece(y, p, bins: int = 10) -> float:
    """Expected calibration error: ``sum_bins count / n * |mean predicted - observed fraction|``.

    Over :func:`reliability`'s equal-width bins (empty bins weigh 0). NaN for empty input or a score
    outside [0, 1].

    >>> ece([0, 1, 1, 0], [0.1, 0.15, 0.9, 0.7], bins=2)  # 2/4 * |0.125 - 0.5| + 2/4 * |0.8 - 0.5|
    0.3375
    """
    r = reliability(y, p, bins)
    n = int(r.count.sum())
    if n == 0:
        return NAN
    used = r.count > 0
    gaps = np.abs(r.mean_predicted[used] - r.observed[used])
    return float(np.sum(r.count[used] * gaps) / n)


def alert_threshold(p, minutes_covered: float, per_minutes: float = ALERT_BUDGET_MINUTES) -> float:
    """The lowest threshold at which ``p >= threshold`` flags at most ``minutes_covered / per_minutes`` windows.

    The budget is ``floor(minutes_covered / per_minutes)`` alerts (``minutes_covered``: the case
    time the windows cover, 0.5 min per window for windows every 30 s). The threshold is one of the
    scores, so with ties fewer alerts than the budget may be raised. When even the top score is tied
    across more windows than the budget, the threshold is that score: one tie group, over the budget
    (`at_budget` counts the alerts), rather than no alert at all (a scorer with few distinct values,
    such as the oracle or a rule, would otherwise never alert); but a constant scorer (no skill, a
    rule that never fires) raises none. ``inf`` (no alert) then, and when the budget is 0. NaN for no scores, a non-finite or negative ``minutes_covered`` or a non-positive
    ``per_minutes``.

    >>> alert_threshold([0.1, 0.9, 0.5, 0.7], minutes_covered=20)  # 2 alerts: 0.9 and 0.7
    0.7
    >>> alert_threshold([0.1, 0.7, 0.7, 0.9], minutes_covered=20)  # 0.7 would make 3
    0.9
    >>> alert_threshold([0.1, 0.9], minutes_covered=5)  # a budget of 0 alerts
    inf
    >>> alert_threshold([1.0, 1.0, 1.0, 0.2], minutes_covered=10)  # the top tie: 3 alerts for 1
    1.0
    >>> alert_threshold([0.3, 0.3, 0.3, 0.3], minutes_covered=10)  # a constant: no alert
    inf
    """
    p = np.asarray(p, dtype=np.float64).reshape(-1)
    if p.size == 0 or not np.isfinite(minutes_covered) or minutes_covered < 0 or not per_minutes > 0:
        return NAN
    budget = int(np.floor(minutes_covered / per_minutes))
    descending = np.sort(p)[::-1]
    if budget >= p.size:
        return float(descending[-1])
    if budget == 0:
        return float("inf")
    first_left_out = descending[budget]
    above = descending[descending > first_left_out]
    if above.size:
        return float(above[-1])
    return float(descending[0]) if descending[0] > descending[-1] else float("inf")


class BudgetScores(NamedTuple):
    """What a clinician sees at one threshold."""

    recall: float  # true alerts / positive windows; NaN without positives
    precision: float  # true alerts / alerts; NaN without alerts
    alerts: int  # windows with p >= threshold


def at_budget(y, p, threshold: float) -> BudgetScores:
    """Recall, precision and the number of alerts when a window alerts at ``p >= threshold``.

    Recall is NaN without positives, precision NaN without alerts; all NaN (0 alerts) for a NaN
    threshold.

    >>> at_budget([1, 0, 1, 0], [0.9, 0.8, 0.3, 0.1], threshold=0.8)  # 2 alerts, 1 true, of 2 positives
    BudgetScores(recall=0.5, precision=0.5, alerts=2)
    """
    y, p = _labels_scores(y, p)
    if np.isnan(threshold):
        return BudgetScores(NAN, NAN, 0)
    alert = p >= threshold
    alerts = int(np.count_nonzero(alert))
    true_alerts = int(np.count_nonzero(alert & y))
    positives = int(np.count_nonzero(y))
    return BudgetScores(
        true_alerts / positives if positives else NAN,
        true_alerts / alerts if alerts else NAN,
        alerts,
    )


def median_lead_time(y, p, threshold: float, onset_s) -> float:
    """Median ``onset_s`` over the true alerts (``p >= threshold`` and ``y == 1``), in seconds.

    ``onset_s`` is per window: seconds from the window's end to the first real change (meaningful
    where ``y`` is 1). NaN without a true alert (or for a NaN threshold).

    >>> median_lead_time([1, 1, 0, 1], [0.9, 0.8, 0.95, 0.2], 0.5, [240, 30, 0, 10])  # (240 + 30) / 2
    135.0
    """
    y, p = _labels_scores(y, p)
    onset_s = np.asarray(onset_s, dtype=np.float64).reshape(-1)
    if onset_s.shape != p.shape:
        raise ValueError(f"{onset_s.shape[0]} onsets for {p.shape[0]} scores")
    if np.isnan(threshold):
        return NAN
    true_alert = (p >= threshold) & y
    return float(np.median(onset_s[true_alert])) if true_alert.any() else NAN


@dataclass(frozen=True)
class EventScores:
    """The scores of one event (group and horizon) over the windows with a valid label."""

    n: int  # windows with a valid label
    cases: int  # cases among them
    positives: int
    prevalence: float  # the no-skill AUPRC
    auroc: float
    auprc: float
    brier: float
    ece: float
    reliability: Reliability
    threshold: float  # the alert threshold of the budget
    recall_at_budget: float
    precision_at_budget: float
    alerts: int
    median_lead_s: float


def score_events(
    y,
    p,
    mask,
    case_ids,
    onset_s,
    minutes_per_window: float = WINDOW_MINUTES,
    budget_per_minutes: float = ALERT_BUDGET_MINUTES,
    bins: int = 10,
) -> EventScores:
    """All scores of one event: windows with ``mask`` 0 (no valid label) are dropped first.

    The alert budget is one alert per ``budget_per_minutes`` of the case time the kept windows
    cover (``minutes_per_window`` each), one threshold over all cases. Each score is NaN where its
    function says (no positives, no negatives, no windows left).

    >>> s = score_events([1, 0, 1, 0, 1], [0.9, 0.2, 0.3, 0.1, 0.99], [1, 1, 1, 1, 0],
    ...                  ["a", "a", "b", "b", "b"], [60, 0, 30, 0, 10], budget_per_minutes=1)
    >>> s.n, s.cases, s.positives, s.auroc, s.alerts, s.recall_at_budget, s.median_lead_s
    (4, 2, 2, 1.0, 2, 1.0, 45.0)
    """
    y, p = _labels_scores(y, p)
    mask = np.asarray(mask).reshape(-1).astype(bool)
    case_ids = np.asarray(case_ids).reshape(-1)
    onset_s = np.asarray(onset_s, dtype=np.float64).reshape(-1)
    for label, a in (("mask", mask), ("case_ids", case_ids), ("onset_s", onset_s)):
        if a.shape != y.shape:
            raise ValueError(f"{label} has {a.shape[0]} values for {y.shape[0]} windows")
    y, p, case_ids, onset_s = y[mask], p[mask], case_ids[mask], onset_s[mask]
    threshold = alert_threshold(p, y.size * minutes_per_window, budget_per_minutes)
    budget = at_budget(y, p, threshold)
    return EventScores(
        n=int(y.size),
        cases=int(np.unique(case_ids).size),
        positives=int(np.count_nonzero(y)),
        prevalence=prevalence(y),
        auroc=auroc(y, p),
        auprc=auprc(y, p),
        brier=brier(y, p),
        ece=ece(y, p, bins),
        reliability=reliability(y, p, bins),
        threshold=threshold,
        recall_at_budget=budget.recall,
        precision_at_budget=budget.precision,
        alerts=budget.alerts,
        median_lead_s=median_lead_time(y, p, threshold, onset_s),
    )
