"""Decision labels: did the clinician change a set-point within (t, t + H], which way, to what.

Pure numpy. A set-point (`vitalflow.spec.model.Setpoint`) is read like a feature (first source
with a plausible value, converted), carried forward at most ``max_gap_s`` seconds, and unknown
(NaN) elsewhere: before its first record, in a device gap, after the device stopped. A *change* is a
step of more than the set-point's ``tolerance`` between two consecutive known seconds.

For a window whose last second is ``t`` and a horizon ``H`` (seconds relative to the crop):

- ``event/<group>/<H>``: a set-point of the group changes in (t, t + H]. Valid only when every one of
  the group's set-points present in the case is known on all of [t, t + H] and t + H lies in the
  crop (the anaesthesia); a change seen by a valid member makes the label a valid positive however
  the other members fare (the decision happened).
- ``direction/<setpoint>/<H>``: 1 if the set-point's first change in (t, t + H] goes up, else 0;
  valid only where that set-point's event is a valid positive.
- ``value/<setpoint>/<H>``: the set-point at t + H, normalized with its range; valid where it is
  known at t + H inside the crop.

A label that is not valid is 0 with mask 0: the loss and every metric ignore it. Nothing here
reads an imputed default: a set-point is never given a value it was not recorded with.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vitalflow.spec.model import Decisions, Setpoint
from vitalflow.transform.normalize import normalize


@dataclass(frozen=True)
class DecisionLabels:
    labels: np.ndarray  # float32 [windows, labels] in `Decisions.labels` order; 0 where masked
    mask: np.ndarray  # uint8 [windows, labels]: 1 = a valid label
    onset_s: np.ndarray  # float32 [windows, events]: seconds from t to the group's first change (0: none)
    current: np.ndarray  # float32 [windows, setpoints]: each set-point at t, normalized (0 where unknown)
    current_known: np.ndarray  # uint8 [windows, setpoints]: 1 = known at t
    since_change_s: np.ndarray  # float32 [windows, setpoints]: seconds since the last change up to t
    #   (capped at SINCE_CAP_S; the cap when it never changed or is not in the case)


SINCE_CAP_S = 3600  # time since a change is told up to an hour: longer ago is "long ago"


def since_last_change(change: np.ndarray, ends: np.ndarray, cap: int = SINCE_CAP_S) -> np.ndarray:
    """Seconds from the last change at or before each of ``ends`` (capped at ``cap``; ``cap`` without one).

    >>> since_last_change(np.array([False, True, False, False, True, False]), np.array([0, 2, 4, 5]), 10).tolist()
    [10.0, 1.0, 0.0, 1.0]
    """
    n = change.shape[0]
    last = np.maximum.accumulate(np.where(change, np.arange(n), -1)) if n else np.zeros(0, np.int64)
    at = last[ends] if ends.size else np.zeros(0, np.int64)
    return np.where(at >= 0, np.minimum(ends - at, cap), cap).astype(np.float64)


def carry_known(values: np.ndarray, max_gap_s: int) -> np.ndarray:
    """Carry each recorded value forward at most ``max_gap_s`` seconds; NaN where unknown.

    >>> carry_known(np.array([np.nan, 2.0, np.nan, np.nan, np.nan, 3.0]), 2)
    array([nan,  2.,  2.,  2., nan,  3.])
    """
    n = values.shape[0]
    seconds = np.arange(n)
    recorded = ~np.isnan(values)
    last = np.maximum.accumulate(np.where(recorded, seconds, -1)) if n else seconds
    out = np.full(n, np.nan)
    ok = (last >= 0) & (seconds - last <= max_gap_s)
    out[ok] = values[last[ok]]
    return out


def changes(values: np.ndarray, tolerance: float) -> np.ndarray:
    """Seconds where a known value differs by more than ``tolerance`` from the known second before.

    >>> changes(np.array([1.0, 1.0, 2.0, np.nan, 5.0, 5.2]), 0.5).tolist()
    [False, False, True, False, False, False]
    """
    out = np.zeros(values.shape[0], dtype=bool)
    with np.errstate(invalid="ignore"):
        out[1:] = np.abs(np.diff(values)) > tolerance  # False wherever either side is NaN
    return out


def _window_sums(flags: np.ndarray) -> np.ndarray:
    """Prefix sums: ``s[b] - s[a]`` counts the flags in [a, b)."""
    out = np.zeros(flags.shape[0] + 1, dtype=np.int64)
    np.cumsum(flags, out=out[1:])
    return out


def _next_change(change: np.ndarray) -> np.ndarray:
    """For each second i, the first second >= i with a change (n when none)."""
    n = change.shape[0]
    idx = np.where(change, np.arange(n), n)
    return np.minimum.accumulate(idx[::-1])[::-1] if n else idx


@dataclass(frozen=True)
class _Setpoint:
    event: np.ndarray  # bool [windows, horizons]
    event_valid: np.ndarray
    onset: np.ndarray  # int [windows, horizons], seconds after t (0 when no event)
    up: np.ndarray  # bool [windows, horizons]: the first change goes up
    value: np.ndarray  # float32 [windows, horizons], normalized
    value_valid: np.ndarray


def _label_setpoint(sp: Setpoint, values: np.ndarray, ends: np.ndarray, horizons: np.ndarray) -> _Setpoint:
    """One set-point's labels at window ends ``ends`` (indices into ``values``) for ``horizons``."""
    n = values.shape[0]
    known = ~np.isnan(values)
    change = changes(values, sp.tolerance)
    unknown_sum, change_sum = _window_sums(~known), _window_sums(change)
    nxt = np.append(_next_change(change), n)
    t = ends[:, None]
    last = t + horizons[None, :]  # t + H
    inside = last < n
    lastc = np.minimum(last, n - 1)
    event_valid = inside & (unknown_sum[lastc + 1] - unknown_sum[t] == 0)
    event = inside & (change_sum[lastc + 1] - change_sum[t + 1] > 0)
    first = nxt[np.minimum(t + 1, n)]  # first change after t
    onset = np.where(event, first - t, 0)
    firstc = np.minimum(first, n - 1)
    with np.errstate(invalid="ignore"):
        up = event & (values[firstc] > values[np.maximum(firstc - 1, 0)])
    at = values[lastc]
    value_valid = inside & ~np.isnan(at)
    value, _ = normalize(np.where(value_valid, at, sp.range[0]), *sp.range)
    return _Setpoint(event, event_valid, onset, up, value.astype(np.float32), value_valid)


def decision_labels(setpoint_values: dict[str, np.ndarray], decisions: Decisions, ends: np.ndarray) -> DecisionLabels:
    """The labels of windows ending at ``ends`` (seconds relative to the crop), from each present
    set-point's values on the crop (NaN where unknown; see `carry_known`). A set-point missing from
    ``setpoint_values`` is not in the case: its labels are masked and its group ignores it.

    >>> from vitalflow.spec.model import Decisions, Setpoint, Source
    >>> d = Decisions(horizons_s=(2, 4), groups={"g": ("A",)}, setpoints=(Setpoint(name="A", unit="u",
    ...     sources=(Source(track="X/A"),), range=(0, 10), plausible=(0, 10), tolerance=0.5),))
    >>> out = decision_labels({"A": np.array([1, 1, 1, 1, 3, 3, 3, np.nan], float)}, d, np.array([0, 1, 3]))
    >>> [str(x) for x in d.labels]
    ['event/g/2', 'event/g/4', 'direction/A/2', 'direction/A/4', 'value/A/2', 'value/A/4']
    >>> out.labels[:, :4].tolist(), out.mask[:, :4].tolist()
    ([[0.0, 1.0, 0.0, 1.0], [0.0, 1.0, 0.0, 1.0], [1.0, 0.0, 1.0, 0.0]], [[1, 1, 0, 1], [1, 1, 0, 1], [1, 0, 1, 0]])
    >>> out.onset_s.tolist()
    [[0.0, 4.0], [0.0, 3.0], [1.0, 0.0]]
    """
    horizons = np.asarray(decisions.horizons_s, dtype=np.int64)
    w, nh = ends.shape[0], horizons.shape[0]
    per = {sp.name: _label_setpoint(sp, setpoint_values[sp.name], ends, horizons)
           for sp in decisions.setpoints if sp.name in setpoint_values}
    blocks, masks, onsets = [], [], []
    for task in decisions.tasks:
        if task == "event":
            for members in decisions.groups.values():
                present = [per[m] for m in members if m in per]
                if not present:
                    z = np.zeros((w, nh))
                    blocks.append(z), masks.append(z.astype(bool)), onsets.append(z)
                    continue
                seen = np.any([p.event & p.event_valid for p in present], axis=0)
                valid = seen | np.all([p.event_valid for p in present], axis=0)
                big = np.iinfo(np.int64).max
                onset = np.min([np.where(p.event & p.event_valid, p.onset, big) for p in present], axis=0)
                blocks.append(seen), masks.append(valid), onsets.append(np.where(seen, onset, 0))
        else:
            for sp in decisions.setpoints:
                p = per.get(sp.name)
                if p is None:
                    z = np.zeros((w, nh))
                    blocks.append(z), masks.append(z.astype(bool))
                elif task == "direction":
                    valid = p.event & p.event_valid
                    blocks.append(p.up & valid), masks.append(valid)
                else:
                    blocks.append(np.where(p.value_valid, p.value, 0.0)), masks.append(p.value_valid)
    labels = np.concatenate(blocks, axis=1) if blocks else np.zeros((w, 0))
    mask = np.concatenate(masks, axis=1) if masks else np.zeros((w, 0), bool)
    onset_s = np.concatenate(onsets, axis=1) if onsets else np.zeros((w, 0))
    labels = np.where(mask, labels, 0.0)
    s_count = len(decisions.setpoints)
    current, known = np.zeros((w, s_count), np.float32), np.zeros((w, s_count), bool)
    since = np.full((w, s_count), float(SINCE_CAP_S))
    for j, sp in enumerate(decisions.setpoints):
        if sp.name in setpoint_values and w:
            values = setpoint_values[sp.name]
            now = values[ends]
            known[:, j] = ~np.isnan(now)
            current[:, j] = np.where(known[:, j], normalize(np.where(known[:, j], now, sp.range[0]), *sp.range)[0], 0.0)
            since[:, j] = since_last_change(changes(values, sp.tolerance), ends)
    return DecisionLabels(labels.astype(np.float32), mask.astype(np.uint8), onset_s.astype(np.float32), current,
                          known.astype(np.uint8), since.astype(np.float32))


def label_counts(labels: np.ndarray | None, mask: np.ndarray | None, decisions: Decisions | None) -> dict[str, list[int]]:
    """Per label name: [valid, positive] over a case's windows (the dataset card sums them).

    >>> from vitalflow.spec.model import Decisions, Setpoint, Source
    >>> d = Decisions(horizons_s=(60,), groups={"g": ("A",)}, tasks=("event",), setpoints=(Setpoint(name="A",
    ...     unit="u", sources=(Source(track="X/A"),), range=(0, 1), plausible=(0, 1), tolerance=0.1),))
    >>> label_counts(np.array([[1.0], [0.0], [0.0]]), np.array([[1], [1], [0]]), d)
    {'event/g/60': [2, 1]}
    """
    if decisions is None or labels is None or mask is None:
        return {}
    valid = mask.sum(axis=0)
    positive = (labels * mask > 0).sum(axis=0)
    return {str(name): [int(v), int(p)] for name, v, p in zip(decisions.labels, valid, positive)}
