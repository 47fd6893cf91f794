"""Hand-computed expectations for every transform, and Hypothesis properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vitalflow.errors import CaseDataError
from vitalflow.spec import load_spec
from vitalflow.spec.model import Impute, Infusion, PerIdealBodyWeight, Scale, VolPercentToKpa, Windows
from vitalflow.transform.case import anesthesia_crop, preprocess_case, static_vector
from vitalflow.transform.grid import to_grid
from vitalflow.transform.impute import DEFAULTED, FILLED, OBSERVED, impute
from vitalflow.transform.normalize import denormalize, normalize
from vitalflow.transform.patient import Patient
from vitalflow.transform.units import ambient_kpa, convert, ideal_body_weight
from vitalflow.transform.windows import target_seconds, window_count, window_starts

SPEC = load_spec()
IBW = SPEC.ideal_body_weight
ADULT = Patient(case_id=1, subject_id="s1", age=60.0, sex="M", height=180.0, weight=70.0, bmi=21.6, asa=2.0,
                anestart=0.0, aneend=1e9)


# --- grid -----------------------------------------------------------------------------------------
def test_grid_takes_last_record_of_each_second_and_drops_outside():
    times = np.array([3.9, 3.1, -0.5, 0.0, 5.0, 1.999])
    values = np.array([30.0, 31.0, 99.0, 10.0, 50.0, 19.0])
    out = to_grid(times, values, 5)
    # second 0: 10 (t=0.0); 1: 19; 2: none; 3: last by time is t=3.9 -> 30; 5.0 and -0.5 outside
    np.testing.assert_array_equal(out, [10.0, 19.0, np.nan, 30.0, np.nan])


def test_grid_ties_keep_input_order():
    out = to_grid(np.array([1.5, 1.5]), np.array([1.0, 2.0]), 2)
    assert out[1] == 2.0


# --- units ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "conversion, raw, expected",
    [
        (Scale(kind="scale", divisor=7.50062), 37.5, 37.5 / 7.50062),  # mmHg -> kPa
        (Scale(kind="scale", factor=1.01972), 5.0, 5.0986),  # mbar -> cmH2O
        (Infusion(kind="infusion", concentration=20, per="hour"), 21.0, 6.0),  # 21 mL/h * 20 mg/mL / 70 kg
        (Infusion(kind="infusion", concentration=20, per="minute"), 10.5, 0.05),  # 10.5*20/60/70
        (Infusion(kind="infusion", concentration=50, per="minute"), 4.2, 0.05),  # 4.2*50/60/70
        (PerIdealBodyWeight(kind="per_ibw"), 450.0, 450.0 / 75.116),  # male 180 cm: 50 + 0.91*27.6
    ],
)
def test_conversions_by_hand(conversion, raw, expected):
    got = convert(np.array([raw]), conversion, ADULT, IBW)
    assert got[0] == pytest.approx(expected, rel=1e-4)


def test_vol_percent_to_kpa_uses_last_ambient_reading_else_default():
    conv = VolPercentToKpa(kind="vol_percent_to_kpa", ambient_track="Primus/PAMB_MBAR", ambient_default_kpa=101.325)
    ambient = np.array([np.nan, 1000.0, np.nan, 2.0])  # 2 mbar is implausible: keep 1000
    got = convert(np.array([2.0, 2.0, 2.0, 2.0]), conv, ADULT, IBW, ambient)
    np.testing.assert_allclose(got, [2.0265, 2.0, 2.0, 2.0])
    np.testing.assert_allclose(ambient_kpa(None, 2, 101.325), [101.325, 101.325])


@pytest.mark.parametrize(
    "sex, height, weight, expected",
    [
        ("M", 180.0, 90.0, 50 + 0.91 * (180 - 152.4)),
        ("F", 165.0, 90.0, 45.5 + 0.91 * (165 - 152.4)),
        (None, 165.0, 90.0, 45.5 + 0.91 * (165 - 152.4)),  # unknown sex: female formula
        ("F", 140.0, 33.0, 33.0),  # Devine 34.2 < floor 40: actual weight
        ("M", 70.0, 8.0, 8.0),  # infant: Devine negative -> actual weight, never <= 0
        ("M", math.nan, 81.0, 81.0),  # unknown height: actual weight
    ],
)
def test_ideal_body_weight_safe_rule(sex, height, weight, expected):
    p = Patient(case_id=1, sex=sex, height=height, weight=weight)
    assert ideal_body_weight(p, IBW) == pytest.approx(expected)


@pytest.mark.parametrize("weight", [0.0, -5.0, math.nan])
def test_drug_conversion_refuses_non_positive_weight(weight):
    with pytest.raises(CaseDataError, match="case 9: weight"):
        convert(np.array([1.0]), Infusion(kind="infusion", concentration=20, per="hour"),
                Patient(case_id=9, weight=weight), IBW)


# --- impute ---------------------------------------------------------------------------------------
def test_impute_gap_hold_and_defaults_by_hand():
    rule = Impute(before_first_value=70, max_gap_s=2, hold_after_last_s=4, after_last_value=-5)
    x = np.array([np.nan, np.nan, 60, np.nan, np.nan, np.nan, np.nan, np.nan, 80, np.nan])
    r = impute(x, rule)
    # carry = max(2, 4) = 4 s after the observation at second 2: seconds 3..6 filled, 7 after-last
    np.testing.assert_array_equal(r.values, [70, 70, 60, 60, 60, 60, 60, -5, 80, 80])
    np.testing.assert_array_equal(
        r.state, [DEFAULTED, DEFAULTED, OBSERVED, FILLED, FILLED, FILLED, FILLED, DEFAULTED, OBSERVED, FILLED]
    )


def test_impute_not_filled_when_max_gap_zero():
    rule = Impute(before_first_value=0, max_gap_s=0, hold_after_last_s=0, after_last_value=0)
    r = impute(np.array([1.0, np.nan, 2.0]), rule)
    np.testing.assert_array_equal(r.values, [1.0, 0.0, 2.0])


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.one_of(st.none(), st.floats(-1e3, 1e3)), min_size=1, max_size=60),
    change_at=st.integers(0, 59),
    gap=st.integers(0, 10),
    hold=st.integers(0, 10),
)
def test_impute_never_uses_future_values(values, change_at, gap, hold):
    x = np.array([np.nan if v is None else v for v in values])
    rule = Impute(before_first_value=-7, max_gap_s=gap, hold_after_last_s=hold, after_last_value=3)
    base = impute(x, rule)
    k = min(change_at, len(x) - 1)
    future = x.copy()
    future[k:] = np.where(np.isnan(future[k:]), 123.0, np.nan)  # flip what the future holds
    changed = impute(future, rule)
    np.testing.assert_array_equal(base.values[:k], changed.values[:k])
    np.testing.assert_array_equal(base.state[:k], changed.state[:k])
    assert not np.isnan(base.values).any()


# --- normalize ------------------------------------------------------------------------------------
@settings(max_examples=200, deadline=None)
@given(lo=st.floats(-1e3, 1e3), width=st.floats(1e-2, 1e3), u=st.floats(0, 1))
def test_normalize_denormalize_round_trip(lo, width, u):
    hi = lo + width
    x = lo + u * width
    norm, clipped = normalize(np.array([x]), lo, hi)
    assert clipped == 0 and -1 <= norm[0] <= 1
    assert denormalize(norm, lo, hi)[0] == pytest.approx(x, abs=1e-9 * max(1.0, abs(lo), abs(hi)))


def test_normalize_counts_clipping_of_spec_defaults():
    # SPEC: ETCO2 default 0 kPa and FIO2 default 0 % normalize below -1: clipped and counted
    norm, clipped = normalize(np.array([0.0, 5.0]), 2.0, 8.0)
    assert clipped == 1 and norm[0] == -1.0 and norm[1] == 0.0


# --- windows --------------------------------------------------------------------------------------
@settings(max_examples=300, deadline=None)
@given(n=st.integers(0, 2000), length=st.integers(1, 400), step=st.integers(1, 100), horizon=st.integers(0, 100))
def test_window_count_matches_brute_force(n, length, step, horizon):
    brute = [s for s in range(0, n, step) if s + length - 1 + horizon <= n - 1]
    assert window_count(n, length, step, horizon) == len(brute)
    starts = window_starts(n, length, step, horizon)
    assert starts.tolist() == brute
    assert all(t < n for t in target_seconds(starts, length, horizon))


# --- crop -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "anestart, aneend, expected, note",
    [
        (120.0, 900.0, (120, 900), None),
        (120.4, 899.2, (121, 900), None),
        (-300.0, 900.0, (0, 900), "before the recording start"),
        (120.0, 9e9, (120, 1000), "after the recording end"),
        (500.0, 100.0, (0, 1000), "not after anestart"),
        (math.nan, 900.0, (0, 1000), "missing"),
        (2000.0, 3000.0, (0, 1000), "outside the recording"),
    ],
)
def test_anesthesia_crop(anestart, aneend, expected, note):
    crop = anesthesia_crop(1000, anestart, aneend)
    assert (crop.start_s, crop.end_s) == expected
    assert (crop.note is None) if note is None else (note in crop.note)


# --- static ---------------------------------------------------------------------------------------
def test_static_vector_by_hand():
    p = Patient(case_id=3, age=30.0, sex="F", height=165.0, weight=56.0, bmi=20.0, asa=6.0)
    vec, defaulted, clipped = static_vector(p, SPEC.static)
    expected = [30 / 120 * 2 - 1, -1, (165 - 100) / 130 * 2 - 1, (56 - 20) / 180 * 2 - 1, (20 - 10) / 40 * 2 - 1, 1.0]
    np.testing.assert_allclose(vec, expected, rtol=1e-6)
    assert defaulted == () and clipped == ()
    vec, defaulted, _ = static_vector(Patient(case_id=4), SPEC.static)
    assert defaulted == ("age", "sex", "height", "weight", "bmi", "asa")
    np.testing.assert_allclose(vec, [50 / 120 * 2 - 1, -1, 70 / 130 * 2 - 1, 50 / 180 * 2 - 1, 14.2 / 40 * 2 - 1, 0.2 * 2 - 1],
                               rtol=1e-6)


# --- preprocess_case: a tiny case computed by hand ------------------------------------------------
def _feature(name):
    return SPEC.feature_names.index(name)


def test_preprocess_case_by_hand():
    win = Windows(length_s=4, step_s=3, horizon_s=2, min_observed_share=0)  # every window that fits
    patient = Patient(case_id=5, subject_id="s5", sex="M", height=180.0, weight=80.0, anestart=2.0, aneend=14.0)
    tracks = {
        # HR: 350 is implausible (dropped), PLETH_HR is a lower-priority source and is ignored
        "Solar8000/HR": (np.array([1.0, 4.0, 6.0]), np.array([110.0, 350.0, 65.0])),
        "Solar8000/PLETH_HR": (np.array([5.0]), np.array([90.0])),
        # propofol 16 mL/h x 20 mg/mL / 80 kg = 4 mg/kg/h from second 3; norepinephrine is not filled
        "Orchestra/PPF20_RATE": (np.array([3.0]), np.array([16.0])),
        # no MAP track: MAP derived from NIBP where both SYS and DIA were recorded
        "Solar8000/NIBP_SBP": (np.array([2.5]), np.array([120.0])),
        "Solar8000/NIBP_DBP": (np.array([2.5]), np.array([60.0])),
    }
    arrays = preprocess_case(tracks, 16.0, patient, SPEC, win)
    assert (arrays.crop.start_s, arrays.crop.end_s) == (2, 14)
    # 12 s after cropping: windows of 4 s + 2 s horizon every 3 s: starts 2, 5, 8 (from recording start)
    assert arrays.window_starts.tolist() == [2, 5, 8]
    # with the default rule (>= 25 % of the 8 input-only signals recorded in the window): window 2..5
    # has SYS, DIA and the MAP derived from them at second 2 (3 of 8); 5..8 only HR at 6; 8..11 nothing
    kept = preprocess_case(tracks, 16.0, patient, SPEC, Windows(length_s=4, step_s=3, horizon_s=2))
    assert kept.window_starts.tolist() == [2] and kept.windows_without_data == 2

    def n(x, lo, hi):
        return max(-1.0, min(1.0, (x - lo) / (hi - lo) * 2 - 1))

    hr = arrays.series[:, _feature("HR")]
    # seconds 2..13: 110 carried from second 1 (observed before the crop), 350 dropped, 65 from second 6
    expected_hr = [110, 110, 110, 110, 65, 65, 65, 65, 65, 65, 65, 65]
    np.testing.assert_allclose(hr, [n(v, 20, 200) for v in expected_hr], rtol=1e-6)
    assert arrays.feature_stats["HR"].source == "Solar8000/HR"
    assert arrays.feature_stats["HR"].implausible == 1
    assert arrays.feature_stats["HR"].observed == 1  # only second 6 is inside the crop
    np.testing.assert_array_equal(arrays.observed[:, _feature("HR")], [0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0])

    ppf = arrays.series[:, _feature("Propofol_INF")]
    # before second 3: default 0; observed at 3; carried 10 s (to 13)
    np.testing.assert_allclose(ppf, [n(v, 0, 12) for v in [0, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4]], rtol=1e-6)

    mapv = arrays.series[:, _feature("BP_MAP")]
    assert arrays.feature_stats["BP_MAP"].source == "derived"
    assert mapv[0] == pytest.approx(n((120 + 2 * 60) / 3, 40, 180), rel=1e-6)

    # ETCO2 never recorded: default 0 kPa, below the 2..8 range: clipped to -1 and counted
    assert (arrays.series[:, _feature("ETCO2")] == -1).all()
    assert arrays.feature_stats["ETCO2"].clipped == 12
    assert arrays.feature_stats["ETCO2"].source is None

    # targets: target of window starting at recording second s is at s + 4 - 1 + 2
    tgt_idx = [SPEC.targets.index("Propofol_INF")]
    for w, start in enumerate([2, 5, 8]):
        t = start + 5 - 2  # index into the cropped series
        assert arrays.targets[w, tgt_idx[0]] == pytest.approx(ppf[t])
    series, mask = arrays.windows()
    assert series.shape == (3, 4, 16) and mask.shape == (3, 4, 16)
    np.testing.assert_array_equal(series[1], arrays.series[3:7])


def test_preprocess_case_drops_implausible_source_and_falls_back():
    # Every Primus/TV value is absurd (5000 mL): the source has no plausible value, VENT_TV is used
    patient = Patient(case_id=6, sex="F", height=165.0, weight=60.0)
    tracks = {
        "Primus/TV": (np.array([0.0, 1.0]), np.array([5000.0, -3.0])),
        "Solar8000/VENT_TV": (np.array([0.0]), np.array([400.0])),
    }
    arrays = preprocess_case(tracks, 400.0, patient, SPEC, Windows(length_s=300, step_s=30, horizon_s=30))
    assert arrays.feature_stats["TV"].source == "Solar8000/VENT_TV"
    ibw = 45.5 + 0.91 * (165 - 152.4)
    assert arrays.series[0, _feature("TV")] == pytest.approx((400 / ibw) / 12 * 2 - 1, rel=1e-6)


@pytest.mark.parametrize("value", [np.nan, np.inf, -4.0])
def test_nan_inf_negative_rates_are_dropped_and_counted(value):
    patient = Patient(case_id=7, sex="M", height=180.0, weight=80.0)
    tracks = {"Orchestra/PPF20_RATE": (np.array([0.0, 1.0, 2.0]), np.array([16.0, value, 20.0]))}
    arrays = preprocess_case(tracks, 10.0, patient, SPEC, Windows(length_s=3, step_s=1, horizon_s=0))
    ppf = arrays.series[:, _feature("Propofol_INF")]
    # second 1 is carried from second 0 (4 mg/kg/h); second 2 observed 5 mg/kg/h
    np.testing.assert_allclose(ppf[:3], [4 / 12 * 2 - 1, 4 / 12 * 2 - 1, 5 / 12 * 2 - 1], rtol=1e-6)
    assert arrays.feature_stats["Propofol_INF"].implausible == (0 if np.isnan(value) else 1)


@pytest.mark.parametrize("weight, height, match", [(0.0, 170.0, "weight 0"), (-3.0, 170.0, "weight -3"),
                                                   (70.0, -170.0, "height -170"), (70.0, 0.0, "height 0")])
def test_preprocess_case_refuses_bad_weight_or_height(weight, height, match):
    with pytest.raises(CaseDataError, match=f"case 8: {match}"):
        preprocess_case({}, 100.0, Patient(case_id=8, weight=weight, height=height), SPEC)


def test_short_case_has_no_windows():
    # a recording of d seconds spans seconds 0..floor(d); one window + horizon needs 330 of them
    every = Windows(min_observed_share=0)  # nothing is recorded here: count the windows that fit
    arrays = preprocess_case({}, 328.9, Patient(case_id=9, weight=70.0), SPEC, every, crop_to_anesthesia=False)
    assert arrays.n_windows == 0 and arrays.targets.shape == (0, 8)
    assert preprocess_case({}, 329.0, Patient(case_id=9, weight=70.0), SPEC, every, crop_to_anesthesia=False).n_windows == 1
    empty = preprocess_case({}, 329.0, Patient(case_id=9, weight=70.0), SPEC, crop_to_anesthesia=False)
    assert empty.n_windows == 0 and empty.windows_without_data == 1  # a window of defaults is not a window
