"""Per-target error metrics in clinical units, for all windows and for windows whose target changes.

Arrays are ``[N, T]``: N windows, T targets (the spec's targets, in order), in clinical units
(denormalize first). A window "changes" when its target 30 s ahead differs from the target's last
value in the window (the persistence forecast) by more than a per-target tolerance; most windows of
an anaesthetic do not change, so the all-window figures flatter any model that copies the last value.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

CHANGE_FRACTION = 1e-3
"""Default change tolerance as a fraction of the target's range (``hi - lo`` of the spec).

E.g. 0.012 mg/kg/h for Propofol_INF (0-12), 0.0008 ug/kg/min for Remifentanil_INF (0-0.8), 0.079 %
for FIO2 (21-100): above rounding and float32 noise, below any clinically meaningful step.
"""


def change_tolerance(ranges: Sequence[tuple[float, float]], fraction: float = CHANGE_FRACTION) -> np.ndarray:
    """Per-target tolerance in clinical units: ``fraction * (hi - lo)``.

    >>> change_tolerance([(0.0, 12.0), (21.0, 100.0)]).tolist()
    [0.012, 0.079]
    """
    spans = np.array([hi - lo for lo, hi in ranges], dtype=np.float64)
    return fraction * spans


def changed(actual: np.ndarray, persistence: np.ndarray, tol) -> np.ndarray:
    """Bool mask ``[N, T]``: the target moves by more than ``tol`` (scalar or ``[T]``) within the horizon.

    ``persistence`` is the target's last value in the window, same units as ``actual``.

    >>> changed(np.array([[1.0, 5.0], [1.2, 5.0]]), np.array([[1.0, 4.0], [1.0, 5.0]]), [0.1, 0.5])
    array([[False,  True],
           [ True, False]])
    """
    actual = np.asarray(actual, dtype=np.float64)
    persistence = np.asarray(persistence, dtype=np.float64)
    return np.abs(actual - persistence) > np.asarray(tol, dtype=np.float64)


def _float(x) -> float | None:
    """A finite Python float, or None (JSON has no NaN or infinity)."""
    x = float(x)
    return x if np.isfinite(x) else None


def r2_score(actual: np.ndarray, predicted: np.ndarray) -> float | None:
    """Coefficient of determination ``1 - SS_res / SS_tot``; None with < 2 values or constant ``actual``.

    >>> r2_score(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 4.0]))  # 1 - 1 / 2
    0.5
    >>> r2_score(np.array([2.0, 2.0]), np.array([2.0, 2.0])) is None
    True
    """
    actual = np.asarray(actual, dtype=np.float64)
    predicted = np.asarray(predicted, dtype=np.float64)
    if actual.size < 2 or np.ptp(actual) == 0:
        return None
    ss_res = np.sum((actual - predicted) ** 2)
    ss_tot = np.sum((actual - actual.mean()) ** 2)
    return _float(1.0 - ss_res / ss_tot) if ss_tot > 0 else None


def error_metrics(actual: np.ndarray, predicted: np.ndarray, infusion: bool) -> dict:
    """``n, mae, rmse, mdape, r2`` of one target's 1-D arrays (JSON-ready: floats or None).

    ``mdape`` is the median absolute percentage error in % (``|pred - actual| / actual * 100``) over
    the values with ``actual > 0``, for infusion targets only (an infusion is often 0, where a
    percentage means nothing); None for other targets or when no value is positive.

    >>> error_metrics(np.array([0.0, 2.0, 4.0]), np.array([1.0, 2.0, 3.0]), infusion=True)
    {'n': 3, 'mae': 0.6666666666666666, 'rmse': 0.816496580927726, 'mdape': 12.5, 'r2': 0.75}
    >>> error_metrics(np.array([]), np.array([]), infusion=False)
    {'n': 0, 'mae': None, 'rmse': None, 'mdape': None, 'r2': None}
    """
    actual = np.asarray(actual, dtype=np.float64)
    predicted = np.asarray(predicted, dtype=np.float64)
    n = int(actual.size)
    if n == 0:
        return {"n": 0, "mae": None, "rmse": None, "mdape": None, "r2": None}
    err = predicted - actual
    mdape = None
    positive = actual > 0
    if infusion and positive.any():
        with np.errstate(over="ignore"):  # a tiny positive actual: an infinite percentage
            mdape = _float(np.median(np.abs(err[positive]) / actual[positive]) * 100.0)
    return {
        "n": n,
        "mae": _float(np.mean(np.abs(err))),
        "rmse": _float(np.sqrt(np.mean(err**2))),
        "mdape": mdape,
        "r2": r2_score(actual, predicted),
    }


def target_metrics(
    actual: np.ndarray,
    predicted: np.ndarray,
    persistence: np.ndarray,
    names: Sequence[str],
    infusion_names: Sequence[str],
    ranges: Sequence[tuple[float, float]],
    change_fraction: float = CHANGE_FRACTION,
) -> dict:
    """Metrics of every target: ``{name: {"tolerance": tol, "all": m, "changed": m}}``.

    ``m`` is :func:`error_metrics` over all windows, or over the windows where :func:`changed` holds
    with the tolerance :func:`change_tolerance` (``change_fraction`` of the target's range, clinical
    units). ``ranges[i]`` is the spec's (lo, hi) of ``names[i]``. Raises ValueError on mismatched
    shapes or non-finite values (a NaN prediction must not become a silent None).

    >>> actual = np.array([[1.0], [2.0], [4.0]])
    >>> m = target_metrics(actual, actual + 1, np.array([[1.0], [1.0], [1.0]]), ["HR"], [], [(0, 10)])
    >>> m["HR"]["all"]  # R^2 = 1 - SS_res / SS_tot = 1 - 3 / (42 / 9) = 15 / 42
    {'n': 3, 'mae': 1.0, 'rmse': 1.0, 'mdape': None, 'r2': 0.3571428571428571}
    >>> m["HR"]["changed"]["n"], m["HR"]["tolerance"]
    (2, 0.01)
    """
    actual = np.asarray(actual, dtype=np.float64)
    predicted = np.asarray(predicted, dtype=np.float64)
    persistence = np.asarray(persistence, dtype=np.float64)
    expected = (actual.shape[0] if actual.ndim == 2 else -1, len(names))
    for label, a in (("actual", actual), ("predicted", predicted), ("persistence", persistence)):
        if a.shape != expected:
            raise ValueError(f"{label} has shape {a.shape}, expected [N, T] = {expected} ({len(names)} names)")
        if not np.isfinite(a).all():
            bad = [names[j] for j in np.flatnonzero(~np.isfinite(a).all(axis=0))]
            raise ValueError(f"{label} has non-finite values for {', '.join(bad)}")
    if len(ranges) != len(names):
        raise ValueError(f"{len(ranges)} ranges for {len(names)} targets")
    tol = change_tolerance(ranges, change_fraction)
    mask = changed(actual, persistence, tol)
    infusions = set(infusion_names)
    out = {}
    for j, name in enumerate(names):
        m = mask[:, j]
        out[name] = {
            "tolerance": float(tol[j]),
            "all": error_metrics(actual[:, j], predicted[:, j], name in infusions),
            "changed": error_metrics(actual[m, j], predicted[m, j], name in infusions),
        }
    return out
