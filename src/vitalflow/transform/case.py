"""``preprocess_case``: one recording and its clinical row in, normalized windows out.

Pure numpy: no files, no logging, no globals. The steps, in order:
grid (1 Hz) -> per feature: convert each source to the feature's unit, drop implausible values,
pick the first source with a plausible value (else derive, e.g. MAP from SYS/DIA) -> causal
imputation + observed mask -> crop to the anesthesia period -> normalize to [-1, 1] -> windows and
targets. Imputation runs before the crop so values seen before anesthesia start carry into it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from vitalflow.errors import CaseDataError
from vitalflow.spec.model import Read, Setpoint, Spec, StaticFeature, VolPercentToKpa, Windows
from vitalflow.transform.decisions import carry_known, decision_labels
from vitalflow.transform.grid import to_grid
from vitalflow.transform.impute import DEFAULTED, FILLED, OBSERVED, impute
from vitalflow.transform.normalize import normalize
from vitalflow.transform.patient import Patient
from vitalflow.transform.units import convert
from vitalflow.transform.windows import target_seconds, window_starts

Track = tuple[np.ndarray, np.ndarray]  # (times in seconds from recording start, values)
DERIVED = "derived"


@dataclass(frozen=True)
class Crop:
    start_s: int  # first second kept, from the recording start
    end_s: int  # one past the last second kept
    note: str | None = None  # why the crop differs from anestart/aneend, if it does


@dataclass(frozen=True)
class FeatureStats:
    source: str | None  # the track used, "derived", or None when nothing was recorded
    observed: int = 0  # seconds (within the crop) with a plausible recorded value
    filled: int = 0  # seconds carried forward from an earlier value
    defaulted: int = 0  # seconds set to a default value
    implausible: int = 0  # seconds whose recorded value was outside the plausible range
    clipped: int = 0  # seconds whose normalized value was clipped to [-1, 1]


@dataclass(frozen=True)
class CaseArrays:
    case_id: int
    crop: Crop
    series: np.ndarray  # float32 [seconds, features], normalized
    observed: np.ndarray  # uint8 [seconds, features], 1 = recorded, 0 = filled or defaulted
    static: np.ndarray  # float32 [static features], normalized
    window_starts: np.ndarray  # int64 [windows], seconds from the recording start
    targets: np.ndarray  # float32 [windows, targets], normalized
    length_s: int
    feature_stats: dict[str, FeatureStats] = field(default_factory=dict)
    static_defaulted: tuple[str, ...] = ()
    static_clipped: tuple[str, ...] = ()
    windows_without_data: int = 0  # windows that fit but were dropped: too little recorded in them
    # float64 [seconds, targets] in the targets' units: the plausible recorded value of each target
    # at each second of the crop (before imputation, normalization and clipping), NaN where none
    recorded_targets: np.ndarray | None = None
    # decision labels (`vitalflow.transform.decisions`), when the spec has decisions: per window
    labels: np.ndarray | None = None  # float32 [windows, labels]
    label_mask: np.ndarray | None = None  # uint8 [windows, labels], 1 = valid
    label_onset_s: np.ndarray | None = None  # float32 [windows, events]
    setpoints: np.ndarray | None = None  # float32 [windows, setpoints]: each set-point at the window's end, normalized
    setpoints_known: np.ndarray | None = None  # uint8 [windows, setpoints]: 1 = known there
    # the decision context (`vitalflow.spec.model.Context`), when the spec asks for it: per window
    history: np.ndarray | None = None  # float32 [windows, steps, features]: block means before the window's end
    context: np.ndarray | None = None  # float32 [windows, setpoints + 1]: times since, normalized
    setpoint_sources: dict[str, str | None] = field(default_factory=dict)  # set-point -> track read (None: absent)

    @property
    def n_windows(self) -> int:
        return int(self.window_starts.shape[0])

    def windows(self) -> tuple[np.ndarray, np.ndarray]:
        """Views [windows, length, features] of the series and the observed mask (no copies)."""
        first = self.window_starts - self.crop.start_s
        return _windows(self.series, first, self.length_s), _windows(self.observed, first, self.length_s)


def _windows(a: np.ndarray, first: np.ndarray, length: int) -> np.ndarray:
    if first.size == 0:
        return np.empty((0, length, a.shape[1]), dtype=a.dtype)
    view = np.lib.stride_tricks.sliding_window_view(a, length, axis=0)  # [T-L+1, F, L]
    return view[first].transpose(0, 2, 1)


def anesthesia_crop(n_seconds: int, anestart: float, aneend: float) -> Crop:
    """The seconds to keep: the anesthesia period when the clinical times are sane.

    >>> anesthesia_crop(1000, 100.0, 900.5)
    Crop(start_s=100, end_s=901, note=None)
    >>> anesthesia_crop(1000, -60.0, 900.0).note
    'anestart -60 s is before the recording start; cropped from 0 s'
    >>> anesthesia_crop(1000, 300.0, 10.0)
    Crop(start_s=0, end_s=1000, note='whole recording used: aneend 10 s is not after anestart 300 s')
    """
    if not (math.isfinite(anestart) and math.isfinite(aneend)):
        return Crop(0, n_seconds, f"whole recording used: anestart/aneend missing ({anestart}, {aneend})")
    if aneend <= anestart:
        return Crop(0, n_seconds, f"whole recording used: aneend {aneend:g} s is not after anestart {anestart:g} s")
    start, end = max(0, math.ceil(anestart)), min(n_seconds, math.ceil(aneend))
    if end <= start:
        return Crop(
            0, n_seconds,
            f"whole recording used: anesthesia {anestart:g}..{aneend:g} s lies outside the recording (0..{n_seconds} s)",
        )
    notes = []
    if anestart < 0:
        notes.append(f"anestart {anestart:g} s is before the recording start; cropped from 0 s")
    if aneend > n_seconds:
        notes.append(f"aneend {aneend:g} s is after the recording end; cropped at {n_seconds} s")
    return Crop(start, end, "; ".join(notes) or None)


CASEEND_SLACK_S = 300  # records this long after the clinical table's caseend still count


@dataclass(frozen=True)
class Span:
    duration_s: float  # what the grid covers, from the recording start
    records_after_end: int = 0  # records dropped because they lie after the bounded end
    note: str | None = None  # why the span is shorter than the recording's own end time


def bounded_span(duration_s: float, tracks: Mapping[str, Track], caseend: float, max_s: float) -> Span:
    """The recording's span, bounded by what the clinical table and the records agree on.

    The recording ends at its last record (``duration_s``); when the clinical table's ``caseend``
    (seconds from the recording start) is sane, records more than 300 s after it are dropped, so
    one record moved days into the future cannot stretch the grid. A span still longer than
    ``max_s`` raises CaseDataError (the caller reports it as a ``read`` failure).

    >>> t = {"A": (np.array([0.0, 10.0, 1e7]), np.ones(3))}
    >>> bounded_span(1e7, t, 3600.0, 48 * 3600)
    Span(duration_s=3900.0, records_after_end=1, note='span bounded at caseend 3600 s + 300 s (the recording claims 2777.8 h); 1 record(s) after it dropped')
    >>> bounded_span(1e7, t, math.nan, 48 * 3600)
    Traceback (most recent call last):
    ...
    vitalflow.errors.CaseDataError: the recording spans 2777.8 h (more than limits.max_recording_h 48 h) and the clinical table has no usable caseend to bound it
    """
    if not math.isfinite(duration_s) or duration_s < 0:
        raise CaseDataError(f"the recording's duration {duration_s!r} s is not a time span")
    end, dropped, note = duration_s, 0, None
    if math.isfinite(caseend) and caseend > 0 and duration_s > caseend + CASEEND_SLACK_S:
        end = caseend + CASEEND_SLACK_S
        dropped = sum(int(np.count_nonzero(t >= end)) for t, _ in tracks.values())
        note = (f"span bounded at caseend {caseend:g} s + {CASEEND_SLACK_S} s (the recording claims "
                f"{duration_s / 3600:.1f} h); {dropped} record(s) after it dropped")
    if end > max_s:
        why = "the clinical table has no usable caseend to bound it" if note is None else f"so does its caseend {caseend:g} s"
        raise CaseDataError(f"the recording spans {end / 3600:.1f} h (more than limits.max_recording_h "
                            f"{max_s / 3600:g} h) and {why}")
    return Span(end, dropped, note)


def validate_patient(patient: Patient) -> None:
    """Refuse clinical values no example can be built from (weights are divisors)."""
    if not (math.isfinite(patient.weight) and patient.weight > 0):
        raise CaseDataError(
            f"case {patient.case_id}: weight {patient.weight:g} kg is missing or not positive "
            "(drug rates and tidal volume are per kg)"
        )
    if math.isfinite(patient.height) and patient.height <= 0:
        raise CaseDataError(f"case {patient.case_id}: height {patient.height:g} cm is not positive")


def preprocess_case(
    tracks: Mapping[str, Track],
    duration_s: float,
    patient: Patient,
    spec: Spec,
    windows: Windows = Windows(),
    crop_to_anesthesia: bool = True,
) -> CaseArrays:
    """Turn one recording (``tracks``: name -> (times, values)) into normalized windows."""
    validate_patient(patient)
    n = math.floor(duration_s) + 1 if duration_s > 0 else 0  # second k holds records in [k, k + 1)
    grids = {name: to_grid(t, v, n) for name, (t, v) in tracks.items() if name in spec.tracks}
    crop = anesthesia_crop(n, patient.anestart, patient.aneend) if crop_to_anesthesia else Crop(0, n)
    keep = slice(crop.start_s, crop.end_s)

    series, observed, stats = [], [], {}
    chosen: dict[str, np.ndarray] = {}  # plausible recorded values per feature, NaN elsewhere
    for feature in spec.timeseries:
        values, source, implausible = _select_source(feature, grids, patient, spec, n)
        if source is None and feature.derive is not None:
            sys_, dia = chosen[feature.derive.systolic], chosen[feature.derive.diastolic]
            derived = (sys_ + 2.0 * dia) / 3.0  # NaN unless both were recorded that second
            if np.isfinite(derived).any():
                values, source = derived, DERIVED
        chosen[feature.name] = values
        filled = impute(values, feature.impute)
        norm, clipped = normalize(filled.values[keep], *feature.range)
        state = filled.state[keep]
        series.append(norm)
        observed.append(state == OBSERVED)
        stats[feature.name] = FeatureStats(
            source=source,
            observed=int(np.count_nonzero(state == OBSERVED)),
            filled=int(np.count_nonzero(state == FILLED)),
            defaulted=int(np.count_nonzero(state == DEFAULTED)),
            implausible=int(np.count_nonzero(implausible[keep])),
            clipped=clipped,
        )

    series_arr = np.stack(series, axis=1).astype(np.float32) if n else np.empty((0, len(series)), np.float32)
    observed_arr = np.stack(observed, axis=1).astype(np.uint8) if n else np.empty((0, len(series)), np.uint8)
    recorded = (np.stack([chosen[t][keep] for t in spec.targets], axis=1) if n
                else np.empty((0, len(spec.targets))))
    starts = window_starts(crop.end_s - crop.start_s, windows.length_s, windows.step_s, windows.horizon_s)
    targets = series_arr[target_seconds(starts, windows.length_s, windows.horizon_s)][:, list(spec.target_indices)]
    usable = usable_windows(observed_arr, starts, windows.length_s, _input_only(spec), windows.min_observed_share)
    starts, targets = starts[usable], targets[usable]
    labels, sources, history, context = None, {}, None, None
    if spec.decisions is not None:
        values, sources = setpoint_values(spec, grids, patient, n)
        ends = starts + windows.length_s - 1
        labels = decision_labels({k: v[keep] for k, v in values.items()}, spec.decisions, ends)
        ctx = spec.decisions.context
        if ctx.history_steps:
            history = block_means(series_arr, ends, ctx.history_steps, ctx.history_step_s)
        if ctx.time_since:
            since_start = ends + crop.start_s - (patient.anestart if math.isfinite(patient.anestart) else crop.start_s)
            context = time_since_context(labels.since_change_s, since_start)
    static, defaulted, static_clipped = static_vector(patient, spec.static)
    return CaseArrays(
        case_id=patient.case_id,
        crop=crop,
        series=series_arr,
        observed=observed_arr,
        static=static,
        window_starts=starts + crop.start_s,
        targets=targets.astype(np.float32),
        length_s=windows.length_s,
        feature_stats=stats,
        static_defaulted=defaulted,
        static_clipped=static_clipped,
        windows_without_data=int(usable.size - np.count_nonzero(usable)),
        recorded_targets=recorded,
        labels=None if labels is None else labels.labels,
        label_mask=None if labels is None else labels.mask,
        label_onset_s=None if labels is None else labels.onset_s,
        setpoints=None if labels is None else labels.current,
        setpoints_known=None if labels is None else labels.current_known,
        history=history,
        context=context,
        setpoint_sources=sources,
    )


HOURS_SINCE_ANESTART = 4  # the time since anestart is told up to this many hours


def time_since_context(since_change_s: np.ndarray, since_anestart_s: np.ndarray) -> np.ndarray:
    """The ``context`` feature: each set-point's seconds since its last change (0..1 h -> -1..1) and the
    seconds since anestart (0..4 h -> -1..1), clipped.

    >>> time_since_context(np.array([[0.0, 3600.0]]), np.array([7200.0])).tolist()
    [[-1.0, 1.0, 0.0]]
    """
    from vitalflow.transform.decisions import SINCE_CAP_S

    change, _ = normalize(since_change_s, 0, SINCE_CAP_S)
    start, _ = normalize(since_anestart_s, 0, HOURS_SINCE_ANESTART * 3600)
    return np.concatenate([change, start[:, None]], axis=1).astype(np.float32)


def block_means(series: np.ndarray, ends: np.ndarray, steps: int, step_s: int) -> np.ndarray:
    """float32 [windows, steps, features]: the mean of each ``step_s`` block of ``series`` ([seconds,
    features]) over the ``steps * step_s`` seconds ending at each of ``ends`` (inclusive), oldest
    first; seconds before the first row count as the first row.

    >>> block_means(np.arange(6.0).reshape(6, 1), np.array([5, 1]), 2, 2)[:, :, 0].tolist()
    [[2.5, 4.5], [0.0, 0.5]]
    """
    n, f = series.shape
    if ends.size == 0 or n == 0:
        return np.zeros((ends.size, steps, f), np.float32)
    sums = np.zeros((n + 1, f))
    np.cumsum(series, axis=0, out=sums[1:])
    last = ends[:, None] - (steps - 1 - np.arange(steps))[None, :] * step_s  # [windows, steps], inclusive
    lo = np.maximum(last - step_s + 1, 0)
    inside = np.maximum(last - lo + 1, 0)  # seconds of the block at or after the first row
    total = np.where(inside[..., None] > 0, sums[np.maximum(last, -1) + 1] - sums[lo], 0.0)
    total += (step_s - inside)[..., None] * series[0]  # the seconds before the first row
    return (total / step_s).astype(np.float32)


def setpoint_values(spec: Spec, grids: Mapping[str, np.ndarray], patient: Patient, n: int
                    ) -> tuple[dict[str, np.ndarray], dict[str, str | None]]:
    """Each set-point present in the case on the whole grid (NaN where unknown), and the track
    each was read from (None: absent, or replaced by the set-point it is ``only_without``)."""
    assert spec.decisions is not None
    sources: dict[str, str | None] = {}
    values: dict[str, np.ndarray] = {}
    setpoints: list[Setpoint] = list(spec.decisions.setpoints)
    for sp in sorted(setpoints, key=lambda s: s.only_without is not None):  # the preferred ones first
        if sp.only_without is not None and sources.get(sp.only_without) is not None:
            sources[sp.name] = None
            continue
        raw, source, _ = _select_source(sp, grids, patient, spec, n)
        sources[sp.name] = source
        if source is not None:
            values[sp.name] = carry_known(raw, sp.max_gap_s)
    return values, {sp.name: sources[sp.name] for sp in setpoints}


def _input_only(spec: Spec) -> np.ndarray:
    """Indices of the time-series features that are inputs only (not targets)."""
    return np.array([i for i, name in enumerate(spec.feature_names) if name not in spec.targets], dtype=np.intp)


def usable_windows(observed: np.ndarray, starts: np.ndarray, length: int, features: np.ndarray,
                   min_share: float) -> np.ndarray:
    """Which windows have enough recorded data: at least ``min_share`` of ``features`` were
    recorded at least once in the window (``observed``: [seconds, all features], 0/1; ``starts``
    relative to its first row).

    >>> obs = np.zeros((10, 3), np.uint8); obs[2, 0] = obs[4, 2] = obs[7, 1] = 1
    >>> usable_windows(obs, np.array([0, 3, 5]), 5, np.array([0, 1, 2]), 0.5).tolist()
    [True, True, False]
    """
    if starts.size == 0 or features.size == 0 or min_share <= 0:
        return np.ones(starts.size, dtype=bool)
    counts = np.zeros((observed.shape[0] + 1, features.size), dtype=np.int64)
    np.cumsum(observed[:, features], axis=0, out=counts[1:])
    seen = (counts[starts + length] - counts[starts]) > 0  # [windows, features]
    return seen.sum(axis=1) >= min_share * features.size


def _select_source(
    feature: Read, grids: Mapping[str, np.ndarray], patient: Patient, spec: Spec, n: int
) -> tuple[np.ndarray, str | None, np.ndarray]:
    """The first source with any plausible value: (values with NaN where missing, track, implausible mask)."""
    lo, hi = feature.plausible
    for src in feature.sources:
        raw = grids.get(src.track)
        if raw is None:
            continue
        ambient = grids.get(src.convert.ambient_track) if isinstance(src.convert, VolPercentToKpa) else None
        with np.errstate(invalid="ignore", over="ignore"):
            values = convert(raw, src.convert, patient, spec.ideal_body_weight, ambient)
            plausible = np.isfinite(values) & (values >= lo) & (values <= hi)
        if plausible.any():
            implausible = ~plausible & ~np.isnan(raw)
            return np.where(plausible, values, np.nan), src.track, implausible
    return np.full(n, np.nan), None, np.zeros(n, dtype=bool)


def static_vector(patient: Patient, features: tuple[StaticFeature, ...]) -> tuple[np.ndarray, tuple[str, ...], tuple[str, ...]]:
    """Normalized static features, plus the names that were defaulted and clipped.

    >>> from vitalflow.spec import load_spec
    >>> vec, defaulted, clipped = static_vector(Patient(case_id=1, age=60.0, sex="M", height=90.0,
    ...     weight=110.0, bmi=float("nan"), asa=3.0), load_spec().static)
    >>> [round(float(v), 4) for v in vec], defaulted, clipped
    ([0.0, 1.0, -1.0, 0.0, -0.29, -0.2], ('bmi',), ('height',))
    """
    out, defaulted, clipped = [], [], []
    for f in features:
        raw = patient.column(f.column)
        if f.categories is not None:
            if raw not in f.categories:
                raw = f.default
                defaulted.append(f.name)
            out.append(f.categories[raw])
            continue
        if raw is None or not math.isfinite(raw):
            raw = f.default
            defaulted.append(f.name)
        norm, n_clipped = normalize(np.array([raw]), *f.range)
        if n_clipped:
            clipped.append(f.name)
        out.append(float(norm[0]))
    return np.asarray(out, dtype=np.float32), tuple(defaulted), tuple(clipped)
