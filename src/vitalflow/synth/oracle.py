"""The oracle: the probability that the simulated clinician changes a set-point of each group
within the next H seconds, from what it knows at the time, and the decision-log CSV.

`oracle_probabilities` computes it in memory from a simulated `State`; `write_oracle` and
`write_decisions` write the ``NNNN.oracle.npz`` and ``NNNN.decisions.csv`` files `synth_corpus`
puts beside each recording.

At a row time ``T`` (a multiple of 10 s; the state after the changes made at ``T``), for group
``g`` and horizon ``H``, the probability of a change in ``(T, T + H]`` combines independent
sources as ``1 - prod(1 - p)``:

- **a decision taken and pending** (decided at ``td``, acting at the first 10-s block after
  ``td + d``, ``d ~ U(DELAY_S)``, not yet acted): exactly ``P(td + d <= T + H | td + d > T)``
  (the horizon cut where the action would no longer change anything, e.g. the end of the
  hypnotic's maintenance);
- **a rule whose condition holds on the monitor but not yet for its full hold time (or is
  waiting for its refractory time)**: the rule would decide at a known look ``L`` *if the
  condition keeps holding*, so ``P(L + d <= T + H)``. Assuming that it keeps holding is an
  approximation: conditions that break before the hold time give false alarms, and conditions
  not holding yet give no warning, so the oracle is a strong but not a perfect predictor;
- **the plan** (drug starts and stops, sevoflurane on and off, FiO2 at intubation and at the
  end, norepinephrine off at extubation): 1 when its time is in ``(T, T + H]`` and it would
  change the current setting;
- **unexplained changes** (Poisson, ``NOISE_PER_H``): ``1 - exp(-rate x overlap)`` with
  ``overlap`` the part of ``(T, T + H]`` in which the group's noise can act (its maintenance
  window; for norepinephrine, while it runs at ``T``).

Actions that would change nothing at ``T`` (a setting at its limit) are left out. No decision
the clinician took after ``T`` and no random draw it has not made by ``T`` is looked at. In the
``"random"`` world the clinician does not look at the monitor, and the oracle is the constant
``1 - exp(-rate_g H)`` of the group's Poisson rate ``rate_g`` (planned changes, which still
happen, are ignored there).
"""

from __future__ import annotations

import csv
import io
import os
import zipfile
from pathlib import Path

import numpy as np

from vitalflow.synth.physiology import DECISION_GROUP, DT, GROUP_INDEX, GROUPS, State

HORIZONS_S = (60, 300, 600)  # s
ORACLE_STEP_S = DT  # one oracle row every 10 s
DECISION_COLUMNS = ("time_s", "setpoint", "group", "old", "new", "cause")
_NOISE_GROUP = {"hyp": 0, "remi": 1, "nepi": 2, "rr": 3, "tv": 3, "peep": 3, "fio2": 4}


def _delay_prob(x: np.ndarray, t: np.ndarray, u: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``P(x + d <= u | x + d > t)`` for ``d ~ U(lo, hi)`` (a point mass when ``lo == hi``)."""
    a = np.maximum(x + lo, t)  # the conditional support is (a, x + hi]
    b = x + hi
    if hi <= lo:
        return ((x + lo > t) & (x + lo <= u)).astype(np.float64)
    return np.clip((u - a) / np.maximum(b - a, 1e-9), 0.0, 1.0)


def _overlap(t0: np.ndarray, t1: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return np.clip(np.minimum(t1, hi) - np.maximum(t0, lo), 0.0, None)


def oracle_probabilities(state: State, total_s: float, horizons=HORIZONS_S) -> dict[str, np.ndarray]:
    """``{"time_s": int64 rows every 10 s on [0, total_s), "p/<group>/<H>": float32}`` for the
    simulated case ``state`` (see the module docstring). A consumer reads, for a time ``t``, the
    row with the largest ``time_s <= t``."""
    bt = state.block_t
    rows = np.flatnonzero((bt >= 0) & (bt < total_s))
    t = bt[rows]
    out: dict[str, np.ndarray] = {"time_s": t.astype(np.int64)}
    ng = len(GROUPS)
    if state.world == "random":
        rate = np.zeros(ng)
        for key, per_h in state.noise_per_h.items():
            rate[_NOISE_GROUP[key]] += per_h / 3600
        for h in horizons:
            for gi, g in enumerate(GROUPS):
                out[f"p/{g}/{h}"] = np.full(t.size, 1 - np.exp(-rate[gi] * h), dtype=np.float32)
        return out
    pos = np.full(bt.size, -1, dtype=np.int64)
    pos[rows] = np.arange(rows.size)
    src = np.array(state.sources, dtype=np.float64).reshape(-1, 4)
    src = src[pos[src[:, 0].astype(np.int64)] >= 0]
    sb = pos[src[:, 0].astype(np.int64)]
    sg = src[:, 1].astype(np.int64)
    lo, hi = state.delay_s
    rec_set = state.rec_set
    for h in horizons:
        logq = np.zeros((ng, t.size))  # sum of log(1 - p) per group and row
        with np.errstate(divide="ignore"):
            # pending decisions and rules about to decide
            ts = t[sb]
            p = _delay_prob(src[:, 2], ts, np.minimum(ts + h, src[:, 3]), lo, hi)
            np.add.at(logq, (sg, sb), np.log1p(-p))
            # the plan
            for tp, key, new in state.plan:
                hit = (t < tp) & (tp <= t + h) & (rec_set[key][rows] != new)
                logq[GROUP_INDEX[key]] += np.where(hit, -np.inf, 0.0)
        # unexplained changes
        n0, n1 = state.noise_window
        for key, per_h in state.noise_per_h.items():
            if key == "hyp":
                win = [w for w in (state.win["ppf"], state.win["sevo"]) if np.isfinite(w[0])]
            elif key == "remi":
                win = [state.win["remi"]] if np.isfinite(state.win["remi"][0]) else []
            else:
                win = [(-np.inf, np.inf)]
            over = np.zeros(t.size)
            for w0, w1 in _union(win):
                over += _overlap(t, t + h, max(n0, w0), min(n1, w1))
            if key == "nepi":
                over *= rec_set["nepi"][rows] > 0
            logq[_NOISE_GROUP[key]] -= per_h / 3600 * over
        for gi, g in enumerate(GROUPS):
            out[f"p/{g}/{h}"] = (0.0 - np.expm1(logq[gi])).astype(np.float32) + np.float32(0.0)
    return out


def _union(win):
    out: list[list[float]] = []
    for a, b in sorted(win):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return out


def write_oracle(path: str | os.PathLike, probs: dict[str, np.ndarray]) -> None:
    """Write the arrays of `oracle_probabilities` as an uncompressed ``.npz`` that `numpy.load` reads;
    fixed member dates, so the same arrays give the same bytes."""
    tmp = Path(f"{path}.tmp-{os.getpid()}")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:
        for name, arr in probs.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arr), allow_pickle=False)
            zf.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0)), buf.getvalue())
    os.replace(tmp, path)


def decision_rows(state: State) -> list[tuple]:
    """The decision log as CSV rows (``DECISION_COLUMNS``), in time order."""
    return [(int(round(tt)), sp, DECISION_GROUP[sp], _num(old), _num(new), cause)
            for tt, sp, old, new, cause in state.decisions]  # fmt: skip


def write_decisions(path: str | os.PathLike, state: State) -> None:
    """Write ``NNNN.decisions.csv``: one row per set-point change, times in s from the recording start
    (negative: before the recording), values in the device track's units."""
    tmp = Path(f"{path}.tmp-{os.getpid()}")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(DECISION_COLUMNS)
        w.writerows(decision_rows(state))
    os.replace(tmp, path)


def _num(x: float) -> str:
    return f"{float(x):.10g}"
