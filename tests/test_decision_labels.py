"""Decision labels against an independent computation from the raw set-point track.

The expectations are written here from the spec's definition (README "Decision targets"), second by
second with plain Python loops, never by calling `vitalflow.transform.decisions`:

- the set-point at second s is the last record in [s - max_gap_s, s] (records on the 1 Hz grid),
  unknown when there is none;
- a change at second s: both s - 1 and s known and |x[s] - x[s - 1]| > tolerance;
- event at (t, H): some change in (t, t + H]; valid iff t + H is inside the crop and every second of
  [t, t + H] is known;
- direction: the first change's sign, valid iff the event is a valid positive;
- value: x[t + H] normalized with the set-point's range, valid iff known and inside the crop.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from vitalflow.spec import load_spec
from vitalflow.spec.model import Decisions, Setpoint, Source, Windows
from vitalflow.transform.case import preprocess_case
from vitalflow.transform.decisions import decision_labels
from vitalflow.transform.patient import Patient

SPEC = load_spec()
FIO2 = next(s for s in SPEC.decisions.setpoints if s.name == "FIO2_SET")


def _grid_by_hand(times, values, n, max_gap):
    """The set-point per second: the last record of the last max_gap seconds (None: unknown)."""
    out = [None] * n
    for s in range(n):
        best = None
        for t, v in zip(times, values):
            if s - max_gap <= math.floor(t) <= s and (best is None or t >= best[0]):
                best = (t, v)
        out[s] = None if best is None else best[1]
    return out


def _labels_by_hand(x, t, horizon, tol, lo, hi, crop_len):
    """(event, event_valid, up, value, value_valid) for the window ending at t (crop coordinates)."""
    end = t + horizon
    if end >= crop_len:
        return 0, False, 0, 0.0, False
    known = all(x[s] is not None for s in range(t, end + 1))
    first = None
    for s in range(t + 1, end + 1):
        if x[s] is not None and x[s - 1] is not None and abs(x[s] - x[s - 1]) > tol:
            first = s
            break
    event = int(first is not None)
    up = int(first is not None and x[first] > x[first - 1])
    value = None if x[end] is None else min(1.0, max(-1.0, (x[end] - lo) / (hi - lo) * 2 - 1))
    return event, known, up, value or 0.0, value is not None


def _onset_by_hand(x, t, horizon, tol):
    """Seconds from t to the first change in (t, t + H], 0 when none."""
    for s in range(t + 1, min(len(x), t + horizon + 1)):
        if x[s] is not None and x[s - 1] is not None and abs(x[s] - x[s - 1]) > tol:
            return s - t
    return 0


def _case(fio2_times, fio2_values, duration, anestart, aneend):
    """A recording with the inputs always recorded and a FiO2 set track as given."""
    t = np.arange(0, duration, 2.0)
    tracks = {
        "Solar8000/HR": (t, np.full(t.size, 70.0)),
        "Solar8000/PLETH_SPO2": (t, np.full(t.size, 98.0)),
        "Solar8000/NIBP_SBP": (t, np.full(t.size, 120.0)),
        "Solar8000/NIBP_DBP": (t, np.full(t.size, 70.0)),
        "BIS/BIS": (t, np.full(t.size, 45.0)),
        "Primus/SET_FIO2": (np.asarray(fio2_times, float), np.asarray(fio2_values, float)),
    }
    patient = Patient(case_id=7, age=50.0, sex="F", height=165.0, weight=60.0, bmi=22.0, asa=2.0,
                      anestart=anestart, aneend=aneend)
    return preprocess_case(tracks, duration, patient, SPEC, Windows(length_s=300, step_s=30, horizon_s=30))


def _column(name):
    return [str(x) for x in SPEC.decisions.labels].index(name)


def test_labels_of_a_crafted_case_equal_the_hand_computation_across_a_device_gap_and_the_anaesthesia_end():
    # FiO2 set every 7 s from 0 to 3000 s: 50 %, 80 % from 1000 s, a device gap (no records) over
    # 1500-1700 s, 40 % from 2000 s; the anaesthesia ends at 2400 s, the recording at 3000 s.
    times = [s for s in np.arange(0, 3000, 7.0) if not 1500 <= s < 1700]
    values = [50.0 if s < 1000 else 80.0 if s < 2000 else 40.0 for s in times]
    arrays = _case(times, values, 3000.0, 100.0, 2400.0)
    crop = arrays.crop
    assert (crop.start_s, crop.end_s) == (100, 2400)
    x = _grid_by_hand(times, values, 3000, FIO2.max_gap_s)[crop.start_s:crop.end_s]
    ends = arrays.window_starts - crop.start_s + 299
    checked = {"gap": 0, "after": 0, "positive": 0}
    for h in SPEC.decisions.horizons_s:
        ev, dr, va = (_column(f"event/oxygen/{h}"), _column(f"direction/FIO2_SET/{h}"), _column(f"value/FIO2_SET/{h}"))
        for w, t in enumerate(ends):
            event, valid, up, value, value_valid = _labels_by_hand(x, int(t), h, FIO2.tolerance, *FIO2.range,
                                                                   crop.end_s - crop.start_s)
            assert arrays.label_mask[w, ev] == valid, (h, t)
            assert arrays.labels[w, ev] == (event if valid else 0), (h, t)
            assert arrays.label_mask[w, dr] == (valid and event), (h, t)
            assert arrays.labels[w, dr] == (up if valid and event else 0), (h, t)
            assert arrays.label_mask[w, va] == value_valid, (h, t)
            assert math.isclose(arrays.labels[w, va], value if value_valid else 0.0, abs_tol=1e-6), (h, t)
            checked["gap"] += t + h < crop.end_s - crop.start_s and not valid  # masked inside: the gap
            checked["after"] += t + h >= crop.end_s - crop.start_s and not valid
            checked["positive"] += bool(valid and event)
    # the crafted case exercises every rule: masked across the gap, masked after aneend, positives
    assert checked["gap"] > 0 and checked["after"] > 0 and checked["positive"] > 0
    # no label of the windows whose horizon runs past the anaesthesia is valid: no "FiO2 to 21 %"
    late = ends + 600 >= crop.end_s - crop.start_s
    assert late.any() and not arrays.label_mask[late, _column("event/oxygen/600")].any()


def test_a_group_ignores_set_points_absent_from_the_case_and_masks_where_a_present_one_is_unknown():
    arrays = _case(np.arange(0, 3000, 7.0), np.full(429, 50.0), 3000.0, 0.0, 3000.0)
    # no pump and no ventilator set tracks but FiO2: opioid has no member in the case -> all masked
    assert not arrays.label_mask[:, _column("event/opioid/300")].any()
    assert arrays.setpoint_sources["FIO2_SET"] == "Primus/SET_FIO2" and arrays.setpoint_sources["RFTN_CT"] is None
    # FiO2 never changes: every valid oxygen event is negative
    col = _column("event/oxygen/300")
    assert arrays.label_mask[:, col].sum() > 0 and arrays.labels[:, col].sum() == 0


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(st.tuples(st.integers(1, 40), st.sampled_from([0.0, 0.3, 1.0, -1.0, 2.5])), min_size=1, max_size=25),
    gaps=st.lists(st.tuples(st.integers(0, 400), st.integers(1, 60)), max_size=4),
    horizon=st.sampled_from([1, 5, 30]),
)
def test_labeller_equals_the_definition_on_random_tracks(steps, gaps, horizon):
    # a piecewise-constant track with steps and unknown stretches, labelled at every second
    x: list[float | None] = []
    level = 5.0
    for length, jump in steps:
        level += jump
        x += [level] * length
    for start, length in gaps:
        for s in range(start, min(len(x), start + length)):
            x[s] = None
    n = len(x)
    sp = Setpoint(name="A", unit="u", sources=(Source(track="X/A"),), range=(0, 10), plausible=(-100, 100),
                  tolerance=0.5)
    d = Decisions(horizons_s=(horizon,), setpoints=(sp,), groups={"g": ("A",)})
    ends = np.arange(n)
    values = np.array([np.nan if v is None else v for v in x])
    out = decision_labels({"A": values}, d, ends)
    for t in range(n):
        event, valid, up, value, value_valid = _labels_by_hand(x, t, horizon, 0.5, 0, 10, n)
        assert out.mask[t, 0] == valid and out.labels[t, 0] == (event if valid else 0)
        assert out.mask[t, 1] == (valid and event) and out.labels[t, 1] == (up if valid and event else 0)
        assert out.mask[t, 2] == value_valid
        assert math.isclose(out.labels[t, 2], value if value_valid else 0.0, abs_tol=1e-6)
        assert out.onset_s[t, 0] == (_onset_by_hand(x, t, horizon, 0.5) if valid and event else 0)
        now = None if x[t] is None else min(1.0, max(-1.0, x[t] / 10 * 2 - 1))  # persistence's value
        assert out.current_known[t, 0] == (now is not None)
        assert math.isclose(out.current[t, 0], now or 0.0, abs_tol=1e-6)


@settings(max_examples=60, deadline=None)
@given(values=st.lists(st.floats(-1, 1, allow_nan=False), min_size=1, max_size=80),
       steps=st.integers(1, 6), step_s=st.integers(1, 7), data=st.data())
def test_history_block_means_equal_a_loop_over_the_seconds(values, steps, step_s, data):
    from vitalflow.transform.case import block_means

    series = np.array(values)[:, None] * np.array([[1.0, -2.0]])  # two features
    ends = np.array(data.draw(st.lists(st.integers(0, len(values) - 1), min_size=1, max_size=5)))
    got = block_means(series, ends, steps, step_s)
    for w, end in enumerate(ends):
        for j in range(steps):
            last = end - (steps - 1 - j) * step_s
            seconds = [max(s, 0) for s in range(last - step_s + 1, last + 1)]  # before the first row: row 0
            expected = series[seconds].mean(axis=0)
            assert np.allclose(got[w, j], expected, atol=1e-5), (end, j)


@settings(max_examples=60, deadline=None)
@given(flags=st.lists(st.booleans(), min_size=1, max_size=60), cap=st.integers(1, 30))
def test_time_since_the_last_change_equals_a_backward_search(flags, cap):
    from vitalflow.transform.decisions import since_last_change

    change = np.array(flags)
    ends = np.arange(len(flags))
    got = since_last_change(change, ends, cap)
    for t in ends:
        back = next((t - s for s in range(t, -1, -1) if flags[s]), None)
        assert got[t] == (cap if back is None else min(back, cap))
