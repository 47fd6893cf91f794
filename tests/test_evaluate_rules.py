"""The textbook rule protocol (vitalflow.evaluate.rules) on crafted windows.

Each window is 300 s of the spec's time-series features in clinical units, every vital normal
(BIS 50, MAP 80 mmHg, EtCO2 5.0 kPa = 37.5 mmHg, SpO2 98 %) and recorded unless a test changes it.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from vitalflow.evaluate.rules import GROUPS, MMHG_PER_KPA, RULE_GROUPS, RuleProtocol, rule_flags, rule_scores
from vitalflow.spec import load_spec

FEATURES = [f.name for f in load_spec().timeseries]  # HR, BP_SYS, BP_DIA, BP_MAP, SPO2, ETCO2, BIS, ...
WINDOW_S = 300
NORMAL = {"HR": 70.0, "BP_SYS": 120.0, "BP_DIA": 65.0, "BP_MAP": 80.0, "SPO2": 98.0, "ETCO2": 5.0, "BIS": 50.0}


def normal_windows(n: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``n`` windows [n, 300, F] of normal vitals (infusions and ventilator settings 0), all recorded."""
    series = np.zeros((n, WINDOW_S, len(FEATURES)), dtype=np.float32)
    for name, value in NORMAL.items():
        series[:, :, FEATURES.index(name)] = value
    return series, np.ones_like(series, dtype=np.uint8)


def col(name: str) -> int:
    return FEATURES.index(name)


def scores(series, observed, protocol=RuleProtocol()) -> dict[str, list[float]]:
    return {group: s.tolist() for group, s in rule_scores(series, observed, FEATURES, protocol).items()}


def test_normal_vitals_fire_nothing_and_opioid_has_no_rule():
    series, observed = normal_windows(3)
    assert scores(series, observed) == {group: [0.0, 0.0, 0.0] for group in GROUPS}
    assert "opioid" not in RULE_GROUPS.values()


def test_bis_above_60_for_the_last_2_min_fires_hypnotic():
    series, observed = normal_windows(4)
    series[0, -120:, col("BIS")] = 65.0  # the last 120 s: fires
    series[1, -100:, col("BIS")] = 65.0  # only the last 100 s: does not
    series[2, -120:, col("BIS")] = 65.0
    series[2, -60, col("BIS")] = 55.0  # one recorded second back in range: does not
    series[3, -120:, col("BIS")] = 60.0  # exactly 60: the rule is strict
    assert scores(series, observed)["hypnotic"] == [1.0, 0.0, 0.0, 0.0]
    flags = rule_flags(series, observed, FEATURES)
    assert flags["bis_high"].tolist() == [True, False, False, False]
    assert not flags["bis_low"].any()


def test_bis_below_40_for_the_last_2_min_fires_hypnotic_down():
    series, observed = normal_windows(2)
    series[0, -120:, col("BIS")] = 35.0
    series[1, -119:, col("BIS")] = 35.0  # one second short
    flags = rule_flags(series, observed, FEATURES)
    assert flags["bis_low"].tolist() == [True, False] and not flags["bis_high"].any()
    assert scores(series, observed)["hypnotic"] == [1.0, 0.0]


def test_masked_seconds_are_ignored_but_half_must_be_recorded():
    series, observed = normal_windows(4)
    series[:, -120:, col("BIS")] = 65.0
    # window 0: a masked stretch of 30 s holds an imputed 0 (the spec's default): ignored
    series[0, -90:-60, col("BIS")] = 0.0
    observed[0, -90:-60, col("BIS")] = 0
    # window 1: exactly half of the 120 s recorded (60 s), all above 60: fires
    observed[1, -120:-60, col("BIS")] = 0
    # window 2: 59 of 120 s recorded: too little to judge
    observed[2, -120:-59, col("BIS")] = 0
    # window 3: only the last 100 s high, but the 20 s before are masked and 100 >= 60 recorded
    series[3, -120:-100, col("BIS")] = 50.0
    observed[3, -120:-100, col("BIS")] = 0
    assert scores(series, observed)["hypnotic"] == [1.0, 1.0, 0.0, 1.0]
    # another feature's mask does not matter
    series, observed = normal_windows(1)
    series[0, -120:, col("BIS")] = 65.0
    observed[0, :, col("HR")] = 0
    assert scores(series, observed)["hypnotic"] == [1.0]


def test_a_nan_recorded_value_never_satisfies_a_rule():
    series, observed = normal_windows(1)
    series[0, -120:, col("BIS")] = 65.0
    series[0, -10, col("BIS")] = np.nan
    assert scores(series, observed)["hypnotic"] == [0.0]
    observed[0, -10, col("BIS")] = 0  # unrecorded: ignored
    assert scores(series, observed)["hypnotic"] == [1.0]


def test_map_below_65_for_the_last_minute_fires_vasopressor():
    series, observed = normal_windows(3)
    series[0, -60:, col("BP_MAP")] = 60.0
    series[1, -59:, col("BP_MAP")] = 60.0  # 59 s
    series[2, -60:, col("BP_MAP")] = 65.0  # strict
    assert scores(series, observed)["vasopressor"] == [1.0, 0.0, 0.0]


@pytest.mark.parametrize(
    ("etco2_kpa", "fires"),
    [
        (5.0, False),  # 37.5 mmHg
        (4.0, True),  # 30.0 mmHg < 35
        (4.66, True),  # 34.95 mmHg < 35
        (4.67, False),  # 35.03 mmHg
        (5.99, False),  # 44.93 mmHg
        (6.0, True),  # 45.0037 mmHg > 45
        (6.5, True),  # 48.75 mmHg
    ],
)
def test_etco2_in_kpa_is_converted_to_mmhg(etco2_kpa, fires):
    series, observed = normal_windows(1)
    series[0, -120:, col("ETCO2")] = etco2_kpa
    assert scores(series, observed)["ventilation"] == [float(fires)]


def test_etco2_out_of_range_for_the_last_2_min_either_side_and_mmhg_input():
    series, observed = normal_windows(2)
    series[0, -120:-60, col("ETCO2")] = 4.0  # low for a minute...
    series[0, -60:, col("ETCO2")] = 6.5  # ...then high: out of range all along
    series[1, -119:, col("ETCO2")] = 4.0  # 119 s only
    assert scores(series, observed)["ventilation"] == [1.0, 0.0]
    # a series already in mmHg: tell the protocol
    series, observed = normal_windows(2)
    series[:, :, col("ETCO2")] = 37.5
    series[1, -120:, col("ETCO2")] = 30.0
    assert scores(series, observed, RuleProtocol(etco2_mmhg_per_unit=1.0))["ventilation"] == [0.0, 1.0]
    assert MMHG_PER_KPA == 7.50062


def test_spo2_below_94_for_the_last_minute_fires_oxygen():
    series, observed = normal_windows(2)
    series[0, -60:, col("SPO2")] = 93.0
    series[1, -60:, col("SPO2")] = 94.0  # strict
    assert scores(series, observed)["oxygen"] == [1.0, 0.0]


def test_several_rules_and_groups_at_once():
    series, observed = normal_windows(1)
    series[0, -120:, col("BIS")] = 30.0
    series[0, -60:, col("BP_MAP")] = 55.0
    series[0, -60:, col("SPO2")] = 90.0
    out = scores(series, observed)
    assert out == {"hypnotic": [1.0], "opioid": [0.0], "vasopressor": [1.0], "ventilation": [0.0], "oxygen": [1.0]}


def test_the_protocol_can_be_changed():
    series, observed = normal_windows(1)
    series[0, -100:, col("BIS")] = 65.0  # 100 s high: not 2 min, but 90 s
    assert scores(series, observed)["hypnotic"] == [0.0]
    assert scores(series, observed, RuleProtocol(bis_for_s=90))["hypnotic"] == [1.0]
    assert scores(series, observed, RuleProtocol(bis_above=70.0, bis_for_s=90))["hypnotic"] == [0.0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        RuleProtocol().bis_above = 70.0  # type: ignore[misc]


def test_bad_input_raises():
    series, observed = normal_windows(1)
    with pytest.raises(ValueError, match="shape|features"):
        rule_scores(series, observed[:, :, :-1], FEATURES)
    with pytest.raises(ValueError, match="BIS"):
        keep = [i for i, f in enumerate(FEATURES) if f != "BIS"]
        rule_scores(series[:, :, keep], observed[:, :, keep], [FEATURES[i] for i in keep])
    with pytest.raises(ValueError, match="120 s"):
        rule_scores(series[:, -100:], observed[:, -100:], FEATURES)  # shorter than the 2-min rules


def test_no_windows_give_empty_scores():
    series, observed = normal_windows(0)
    assert scores(series, observed) == {group: [] for group in GROUPS}
