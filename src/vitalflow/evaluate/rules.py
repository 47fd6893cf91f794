"""The textbook rule protocol as a baseline scorer of decision events.

A clinician following the textbook acts when a vital sign has been out of its target range for a
while: BIS above 60 (too light) or below 40 (too deep) -> hypnotic; MAP below 65 mmHg ->
vasopressor; EtCO2 outside 35-45 mmHg -> ventilation; SpO2 below 94 % -> oxygen. The protocol
scores a window 1 for a group when one of the group's rules holds at the END of the window, else 0;
the model must beat this to be worth more than the textbook.

"Holds for the last N s" means: every RECORDED second (observed mask 1) of the window's last N
seconds satisfies the condition, and at least ``min_recorded_fraction`` (default half) of those N
seconds are recorded. Filled or defaulted seconds (mask 0) are ignored whatever their value, so
an imputed default never fires a rule; a rule on a mostly unrecorded stretch does not fire.

There is no opioid rule (the textbook has no vital-sign trigger for remifentanil that is not also
a hypnotic or haemodynamic one): the opioid score is 0 for every window, i.e. a no-skill scorer.

Inputs are in clinical units (denormalized), with the spec's feature names
(``vitalflow/spec/master_poc.yaml``): BIS (index), BP_MAP (mmHg), ETCO2 (kPa: converted to mmHg
with ``etco2_mmhg_per_unit``), SPO2 (%). Pure numpy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

GROUPS = ("hypnotic", "opioid", "vasopressor", "ventilation", "oxygen")
"""The decision groups, in the order of the decision labels."""

MMHG_PER_KPA = 7.50062

RULE_GROUPS = {
    "bis_high": "hypnotic",  # up
    "bis_low": "hypnotic",  # down
    "map_low": "vasopressor",  # up
    "etco2_out_of_range": "ventilation",
    "spo2_low": "oxygen",  # up
}
"""Each rule of :func:`rule_flags` and the group whose set-point it calls for changing."""


@dataclass(frozen=True)
class RuleProtocol:
    """Thresholds (clinical units) and durations (seconds) of the rules; all comparisons are strict.

    >>> RuleProtocol(map_below=60.0).map_below, RuleProtocol().bis_above
    (60.0, 60.0)
    """

    bis_above: float = 60.0  # BIS > 60 ...
    bis_below: float = 40.0  # BIS < 40 ...
    bis_for_s: int = 120  # ... for the last 2 min -> hypnotic
    map_below: float = 65.0  # MAP < 65 mmHg ...
    map_for_s: int = 60  # ... for the last 1 min -> vasopressor
    etco2_below_mmhg: float = 35.0  # EtCO2 < 35 or ...
    etco2_above_mmhg: float = 45.0  # ... > 45 mmHg ...
    etco2_for_s: int = 120  # ... for the last 2 min -> ventilation
    spo2_below: float = 94.0  # SpO2 < 94 % ...
    spo2_for_s: int = 60  # ... for the last 1 min -> oxygen
    min_recorded_fraction: float = 0.5  # of the last N s that must be recorded
    etco2_mmhg_per_unit: float = MMHG_PER_KPA  # the spec's ETCO2 is kPa; 1.0 for a series in mmHg


def holds_at_end(condition: np.ndarray, observed: np.ndarray, seconds: int, min_recorded_fraction: float) -> np.ndarray:
    """Per window ``[W]``: the condition ``[W, L]`` holds on every recorded second of the last ``seconds``.

    ... and at least ``min_recorded_fraction * seconds`` of those seconds are recorded. ValueError if
    the window is shorter than ``seconds``.

    >>> cond = np.array([[0, 1, 1, 1], [0, 1, 0, 1], [0, 0, 0, 1]], dtype=bool)
    >>> rec = np.array([[1, 1, 1, 1], [1, 1, 0, 1], [1, 0, 0, 1]], dtype=bool)
    >>> holds_at_end(cond, rec, 3, 0.5).tolist()  # 3 of 3 true; 2 of 2 recorded true; 1 recorded < 1.5
    [True, True, False]
    """
    if seconds < 1 or seconds > condition.shape[1]:
        raise ValueError(f"a rule over the last {seconds} s needs windows of >= {seconds} s, got {condition.shape[1]}")
    tail_condition = condition[:, -seconds:]
    tail_recorded = observed[:, -seconds:].astype(bool)
    all_recorded_hold = np.all(tail_condition | ~tail_recorded, axis=1)
    enough_recorded = np.count_nonzero(tail_recorded, axis=1) >= min_recorded_fraction * seconds
    return all_recorded_hold & enough_recorded


def _column(series: np.ndarray, feature_names: Sequence[str], name: str) -> np.ndarray:
    return series[:, :, list(feature_names).index(name)].astype(np.float64)


def rule_flags(
    series: np.ndarray,
    observed: np.ndarray,
    feature_names: Sequence[str],
    protocol: RuleProtocol = RuleProtocol(),
) -> dict[str, np.ndarray]:
    """Per rule of :data:`RULE_GROUPS`: bool ``[windows]``, the rule holds at the end of the window.

    ``series`` is ``[windows, seconds, features]`` in clinical units, ``observed`` the same shape
    (1 = recorded). ValueError when a shape disagrees, a needed feature (BIS, BP_MAP, ETCO2, SPO2)
    is missing, or a window is shorter than a rule's duration. A NaN value never satisfies a rule.

    >>> names = ["BIS", "BP_MAP", "ETCO2", "SPO2"]
    >>> series = np.tile([65.0, 80.0, 5.0, 98.0], (1, 120, 1))  # BIS 65 for 2 min, EtCO2 5 kPa = 37.5 mmHg
    >>> flags = rule_flags(series, np.ones_like(series), names)
    >>> {rule: bool(f[0]) for rule, f in flags.items()}
    {'bis_high': True, 'bis_low': False, 'map_low': False, 'etco2_out_of_range': False, 'spo2_low': False}
    """
    series = np.asarray(series)
    observed = np.asarray(observed)
    if series.ndim != 3 or observed.shape != series.shape or series.shape[2] != len(feature_names):
        raise ValueError(
            f"expected series and observed [windows, seconds, {len(feature_names)} features], "
            f"got {series.shape} and {observed.shape}"
        )
    missing = [f for f in ("BIS", "BP_MAP", "ETCO2", "SPO2") if f not in feature_names]
    if missing:
        raise ValueError(f"the rule protocol needs the features {', '.join(missing)}")
    p = protocol

    def recorded(name: str) -> np.ndarray:
        return observed[:, :, list(feature_names).index(name)]

    bis = _column(series, feature_names, "BIS")
    bp_map = _column(series, feature_names, "BP_MAP")
    etco2_mmhg = _column(series, feature_names, "ETCO2") * p.etco2_mmhg_per_unit
    spo2 = _column(series, feature_names, "SPO2")
    fraction = p.min_recorded_fraction
    # a NaN value compares False: it never satisfies a rule
    return {
        "bis_high": holds_at_end(bis > p.bis_above, recorded("BIS"), p.bis_for_s, fraction),
        "bis_low": holds_at_end(bis < p.bis_below, recorded("BIS"), p.bis_for_s, fraction),
        "map_low": holds_at_end(bp_map < p.map_below, recorded("BP_MAP"), p.map_for_s, fraction),
        "etco2_out_of_range": holds_at_end(
            (etco2_mmhg < p.etco2_below_mmhg) | (etco2_mmhg > p.etco2_above_mmhg),
            recorded("ETCO2"),
            p.etco2_for_s,
            fraction,
        ),
        "spo2_low": holds_at_end(spo2 < p.spo2_below, recorded("SPO2"), p.spo2_for_s, fraction),
    }


def rule_scores(
    series: np.ndarray,
    observed: np.ndarray,
    feature_names: Sequence[str],
    protocol: RuleProtocol = RuleProtocol(),
) -> dict[str, np.ndarray]:
    """Per group of :data:`GROUPS`: float64 ``[windows]`` in {0, 1}, 1 when any of its rules holds.

    The score is the same for every horizon (the rules look back, not ahead). Opioid has no rule:
    0 everywhere. Errors as :func:`rule_flags`.

    >>> names = ["BIS", "BP_MAP", "ETCO2", "SPO2"]
    >>> series = np.tile([50.0, 60.0, 6.5, 98.0], (2, 120, 1))  # MAP 60, EtCO2 6.5 kPa = 48.8 mmHg
    >>> series[1, -30:, 1] = 70.0  # window 1: MAP back to 70 for its last 30 s
    >>> scores = rule_scores(series, np.ones_like(series), names)
    >>> scores["vasopressor"].tolist(), scores["ventilation"].tolist(), scores["hypnotic"].tolist()
    ([1.0, 0.0], [1.0, 1.0], [0.0, 0.0])
    >>> list(scores) == list(GROUPS) and not scores["opioid"].any()
    True
    """
    flags = rule_flags(series, observed, feature_names, protocol)
    windows = np.asarray(series).shape[0]
    scores = {group: np.zeros(windows, dtype=bool) for group in GROUPS}
    for rule, flag in flags.items():
        scores[RULE_GROUPS[rule]] |= flag
    return {group: s.astype(np.float64) for group, s in scores.items()}
