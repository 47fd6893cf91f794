"""A synchronous request's windows as the model's normalized inputs (pure numpy; no web framework).

A request gives one window ``[300, 16]`` or many ``[N, 300, 16]`` and the 6 static features
(one vector for every window, or one per window), in **clinical** units (the default) or already
**normalized** as the dataset holds them. Clinical values are normalized with the ranges of the
model's pinned spec and clipped to [-1, 1], exactly as preprocessing does; the static features go
through preprocessing's own `static_vector` (``null``/``None``: the spec's default; ``sex`` is a
category, ``"F"`` or ``"M"``). Every refusal is an `InputRejected` with a one-line reason.

>>> from vitalflow.spec import load_spec
>>> spec = load_spec()
>>> ts, st = clinical_inputs(np.full((300, 16), 50.0), [60, "M", 170, 70, None, 2], spec)
>>> ts.shape, st.shape, round(float(st[0, 1]), 1)
((1, 300, 16), (1, 6), 1.0)
>>> clinical_inputs(np.zeros((300, 15)), [60, "M", 170, 70, 24, 2], spec)
Traceback (most recent call last):
...
vitalflow.serve.inputs.InputRejected: timeseries: expected [300, 16] or [N, 300, 16], got [300, 15]
"""

from __future__ import annotations

import io
import math
from typing import Any, Literal, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from vitalflow.errors import VitalflowError, one_line
from vitalflow.spec.model import Spec
from vitalflow.transform.case import static_vector
from vitalflow.transform.normalize import normalize
from vitalflow.transform.patient import Patient

CLINICAL, NORMALIZED = "clinical", "normalized"
UNITS = (CLINICAL, NORMALIZED)
#: The most windows one synchronous request may carry (a whole case belongs in a .vital request or a job).
MAX_WINDOWS = 4096


class InputRejected(VitalflowError):
    """A request the model cannot answer; the message is the one-line reason sent back."""


class WindowsRequest(BaseModel):
    """The JSON body of a synchronous request: ``{"timeseries", "static", "units"[, "mask"]}``."""

    model_config = ConfigDict(extra="forbid")

    timeseries: list[Any]  # [300][16] or [N][300][16]
    static: list[Any]  # [6] or [N][6]
    units: Literal["clinical", "normalized"] = CLINICAL
    mask: list[Any] | None = None  # 0/1, the shape of timeseries (only a model trained with use_mask reads it)
    # a decision model's context, per window as the examples hold it (normalized): setpoints,
    # setpoints_known, context, history (README "Decision targets"; only a model that reads it)
    context: dict[str, list[Any]] | None = None


def parse_windows_request(document: Any) -> WindowsRequest:
    """The validated request, or `InputRejected` naming the first bad key."""
    try:
        return WindowsRequest.model_validate(document)
    except ValidationError as exc:
        raise InputRejected(one_line(exc)) from None


def _array(values: Any, name: str) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (ValueError, TypeError):
        raise InputRejected(f"{name}: not a rectangular array of numbers") from None
    if not np.isfinite(array).all():
        raise InputRejected(f"{name}: non-finite values (NaN or infinity) at {_first_bad(array)}")
    return array


def _first_bad(array: np.ndarray) -> str:
    index = tuple(int(i) for i in np.argwhere(~np.isfinite(array))[0])
    return "[" + ", ".join(map(str, index)) + "]"


def _windows(array: np.ndarray, length: int, features: int, name: str = "timeseries") -> np.ndarray:
    shape = list(array.shape)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3 or array.shape[1:] != (length, features):
        raise InputRejected(f"{name}: expected [{length}, {features}] or [N, {length}, {features}], got {shape}")
    if len(array) == 0:
        raise InputRejected(f"{name}: no windows")
    if len(array) > MAX_WINDOWS:
        raise InputRejected(f"{name}: {len(array)} windows; at most {MAX_WINDOWS} per request "
                            "(send a whole recording as a .vital payload or a job)")
    return array


def _rows(rows: Sequence[Any], windows: int, width: int) -> list[Sequence[Any]]:
    """The static rows, one per window (a single vector applies to every window)."""
    if isinstance(rows, (list, tuple)) and rows and all(isinstance(r, (list, tuple)) for r in rows):
        if len(rows) not in (1, windows):
            raise InputRejected(f"static: {len(rows)} vectors for {windows} windows (give one, or one per window)")
        out = list(rows) * (windows if len(rows) == 1 else 1)
    elif isinstance(rows, (list, tuple)):
        out = [rows] * windows
    else:
        raise InputRejected("static: expected a list of numbers")
    for row in out:
        if len(row) != width:
            raise InputRejected(f"static: expected {width} values, got {len(row)}")
    return out


def clinical_static(row: Sequence[Any], spec: Spec) -> np.ndarray:
    """One patient's static features in clinical units (the spec's order) normalized as preprocessing
    does (`static_vector`): numbers clipped to the range, ``None`` the default, categories mapped.

    >>> from vitalflow.spec import load_spec
    >>> [round(float(v), 3) for v in clinical_static([60, "m", 90, 110, None, 3], load_spec())]
    [0.0, 1.0, -1.0, 0.0, -0.29, -0.2]
    >>> clinical_static([60, "X", 170, 70, 24, 2], load_spec())
    Traceback (most recent call last):
    ...
    vitalflow.serve.inputs.InputRejected: static: sex 'X' is not one of F, M (null: the default, F)
    """
    values: dict[str, Any] = {}
    for feature, value in zip(spec.static, row):
        if feature.categories is not None:
            if value is not None:
                value = str(value).strip().upper() if isinstance(value, str) else value
                if value not in feature.categories:
                    raise InputRejected(f"static: {feature.name} {value!r} is not one of "
                                        f"{', '.join(feature.categories)} (null: the default, {feature.default})")
            values[feature.column] = value
            continue
        if value is None:
            values[feature.column] = math.nan  # unknown: static_vector uses the spec's default
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise InputRejected(f"static: {feature.name} {value!r} is not a finite number")
        values[feature.column] = float(value)
    vector, _, _ = static_vector(Patient(case_id=0, **values), spec.static)
    return vector


def clinical_inputs(timeseries: Any, static: Sequence[Any], spec: Spec, length: int = 300
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Windows (``length`` seconds: the model's) and static features in clinical units -> normalized
    float32 ``[N, length, 16]``, ``[N, 6]``."""
    ts = _windows(_array(timeseries, "timeseries"), length, len(spec.timeseries))
    lo = np.array([f.range[0] for f in spec.timeseries])
    hi = np.array([f.range[1] for f in spec.timeseries])
    norm, _ = normalize(ts, lo, hi)
    rows = _rows(static, len(ts), len(spec.static))
    by_row: dict[tuple, np.ndarray] = {}
    vectors = []
    for row in rows:
        key = tuple(map(repr, row))
        if key not in by_row:
            by_row[key] = clinical_static(row, spec)
        vectors.append(by_row[key])
    return norm.astype(np.float32), np.stack(vectors).astype(np.float32)


def normalized_inputs(timeseries: Any, static: Sequence[Any], spec: Spec, length: int = 300
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Windows and static features already normalized (each value in [-1, 1]) -> float32 arrays."""
    ts = _windows(_array(timeseries, "timeseries"), length, len(spec.timeseries))
    rows = _rows(static, len(ts), len(spec.static))
    st = _array([list(r) for r in rows], "static")
    for name, array in (("timeseries", ts), ("static", st)):
        outside = np.abs(array) > 1.0
        if outside.any():
            index = ", ".join(str(int(i)) for i in np.argwhere(outside)[0])
            raise InputRejected(f"{name}: normalized values lie in [-1, 1]; [{index}] is "
                                f"{array[outside][0]:g} (send units \"clinical\" for clinical values)")
    return ts.astype(np.float32), st.astype(np.float32)


def model_inputs(timeseries: Any, static: Sequence[Any], units: str, spec: Spec, length: int = 300
                 ) -> tuple[np.ndarray, np.ndarray]:
    if units == CLINICAL:
        return clinical_inputs(timeseries, static, spec, length)
    if units == NORMALIZED:
        return normalized_inputs(timeseries, static, spec, length)
    raise InputRejected(f"units: {units!r} is not one of {', '.join(UNITS)}")


def mask_input(mask: Any, windows: int, spec: Spec, length: int = 300) -> np.ndarray:
    array = _windows(_array(mask, "mask"), length, len(spec.timeseries), "mask")
    if len(array) != windows:
        raise InputRejected(f"mask: {len(array)} windows for {windows} windows of timeseries")
    if not np.isin(array, (0.0, 1.0)).all():
        raise InputRejected("mask: values are 0 (not recorded) or 1 (recorded)")
    return array.astype(np.float32)


def context_sizes(spec: Spec) -> dict[str, int]:
    """Values per window of each decision context feature under ``spec`` (the example schema's sizes).

    >>> from vitalflow.spec import load_spec
    >>> context_sizes(load_spec())
    {'setpoints': 10, 'setpoints_known': 10, 'context': 11, 'history': 960}
    """
    d = spec.decisions
    if d is None:
        return {}
    s = len(d.setpoints)
    return {"setpoints": s, "setpoints_known": s, "context": s + 1,
            "history": d.context.history_steps * len(spec.timeseries)}


def context_input(context: dict[str, Any] | None, names: Sequence[str], windows: int, spec: Spec
                  ) -> dict[str, np.ndarray] | None:
    """The decision context a model reads (``names``), validated: per window, normalized, finite, in
    [-1, 1] (``*_known``: 0/1); None when the model reads none."""
    if not names:
        return None
    if context is None:
        raise InputRejected(f"context: this model reads the decision context: send \"context\" with "
                            f"{', '.join(names)} (per window, normalized as in the dataset's examples), or the "
                            ".vital recording")
    unknown = sorted(set(context) - set(names))
    if unknown:
        raise InputRejected(f"context: unknown key(s) {', '.join(unknown)} (this model reads {', '.join(names)})")
    sizes, out = context_sizes(spec), {}
    for name in names:
        if name not in context:
            raise InputRejected(f"context.{name}: missing")
        array = _array(context[name], f"context.{name}")
        array = array.reshape(1, -1) if array.ndim == 1 and windows == 1 and array.size == sizes[name] else array
        array = array.reshape(len(array), -1) if array.ndim > 1 else array
        if array.ndim != 2 or array.shape != (windows, sizes[name]):
            raise InputRejected(f"context.{name}: expected {windows} window(s) of {sizes[name]} values, got shape "
                                f"{list(array.shape)}")
        if name.endswith("_known") and not np.isin(array, (0.0, 1.0)).all():
            raise InputRejected(f"context.{name}: values are 0 or 1")
        if np.abs(array).max(initial=0) > 1:
            raise InputRejected(f"context.{name}: normalized values lie in [-1, 1]")
        out[name] = array.astype(np.float32)
    return out


def read_npy(body: bytes) -> np.ndarray:
    """A NumPy ``.npy`` body (no pickles) as an array, or `InputRejected`.

    >>> buffer = io.BytesIO(); np.save(buffer, np.zeros((2, 3))); read_npy(buffer.getvalue()).shape
    (2, 3)
    >>> read_npy(b"not numpy")
    Traceback (most recent call last):
    ...
    vitalflow.serve.inputs.InputRejected: body: not a NumPy .npy array (no \\x93NUMPY header)
    """
    if not body.startswith(b"\x93NUMPY"):
        raise InputRejected("body: not a NumPy .npy array (no \\x93NUMPY header)")
    try:
        array = np.lib.format.read_array(io.BytesIO(body), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputRejected(f"body: unreadable .npy array ({_lower_first(reason)})") from None
    if array.dtype.kind not in "iuf":
        raise InputRejected(f"body: expected a numeric array, got dtype {array.dtype}")
    return array


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:] if text[1:2].islower() else text


def parse_static_query(text: str) -> list[Any]:
    """``static`` of an .npy request's query: comma-separated values in the spec's order, an empty
    value or ``null`` for unknown; a category (``F``/``M``) stays text.

    >>> parse_static_query("60,M,170,70,,2")
    [60.0, 'M', 170.0, 70.0, None, 2.0]
    """
    out: list[Any] = []
    for item in text.split(","):
        item = item.strip()
        if item in ("", "null", "None"):
            out.append(None)
            continue
        try:
            out.append(float(item))
        except ValueError:
            out.append(item)
    return out
