"""The latent 1 Hz state of a case, from which every track is sampled.

Depth of anesthesia, heart rate, blood pressure, SpO2, BIS, EtCO2, temperature, ventilator
settings and measurements, sevoflurane, and pump rates (mL/h), plus the curve helpers
(`drift`, `lowpass`, `steps`) the device tracks reuse.
"""

from __future__ import annotations

import numpy as np

from vitalflow.synth.patient import Flags, Patient
from vitalflow.synth.timeline import Timeline


class State(dict):
    """Named 1 Hz arrays on the grid ``g`` (which may start before the recording)."""

    def __init__(self, g: np.ndarray):
        super().__init__()
        self.g = g
        self.nepi_on: float | None = None  # norepinephrine start, if any

    def index(self, times: np.ndarray) -> np.ndarray:
        """Grid index nearest to each of ``times`` (clipped to the grid)."""
        return np.clip(np.rint(times - self.g[0]).astype(np.int64), 0, self.g.size - 1)

    def at(self, name: str, times: np.ndarray) -> np.ndarray:
        """Array ``name`` sampled at ``times`` (nearest grid second)."""
        return self[name][self.index(times)]


def _ramp(t: np.ndarray, a: float, b: float) -> np.ndarray:
    """0 before a, 1 after b, smooth in between."""
    if b <= a:
        return (t >= a).astype(np.float64)
    x = np.clip((t - a) / (b - a), 0.0, 1.0)
    return x * x * (3 - 2 * x)


def drift(rng: np.random.Generator, n: int, knot_s: float, sd: float) -> np.ndarray:
    """Slow random wander: normal knots every ``knot_s`` seconds, linearly joined."""
    knots = rng.normal(0.0, sd, int(n / knot_s) + 2)
    return np.interp(np.arange(n) / knot_s, np.arange(knots.size), knots)


def lowpass(x: np.ndarray, tau: float) -> np.ndarray:
    """First-order lag with time constant ``tau`` seconds (1 Hz input, zero initial state)."""
    n = x.size
    m = min(n, int(8 * tau) + 1)
    kernel = np.exp(-np.arange(m) / tau)
    kernel /= kernel.sum()
    size = 1 << int(np.ceil(np.log2(n + m)))
    y = np.fft.irfft(np.fft.rfft(x, size) * np.fft.rfft(kernel, size), size)[:n]
    return np.where(np.abs(y) < 1e-9 * max(1.0, float(np.abs(x).max(initial=0.0))), 0.0, y)


def steps(rng, g, t0, t1, level, sd, lo, hi, fl, every=(10, 30)) -> np.ndarray:
    """Piecewise-constant level on [t0, t1), a new value every 10-30 min (scaled by fl)."""
    out = np.zeros(g.size)
    t = t0
    while t < t1:
        seg = max(60.0, rng.uniform(*every) * 60 * fl)
        out[(g >= t) & (g < min(t + seg, t1))] = np.clip(level * np.exp(rng.normal(0, sd)), lo, hi)
        t += seg
    return out


def simulate_state(rng: np.random.Generator, tl: Timeline, p: Patient, f: Flags) -> State:
    """All latent arrays of the case, from 15 min before induction (or the recording start) to the end."""
    g = np.arange(min(0.0, np.floor(tl.anestart) - 900), tl.total + 2, 1.0)
    n = g.size
    s = State(g)
    u = rng.random(16)

    depth = _ramp(g, tl.anestart, tl.anestart + 60 + 90 * u[0]) * (1 - _ramp(g, tl.stop, tl.extub + 60))
    intub_bump = np.exp(-0.5 * ((g - tl.intub - 30) / 40) ** 2)
    incision = _ramp(g, tl.opstart, tl.opstart + 60) * np.exp(-np.clip(g - tl.opstart, 0, None) / 600)
    vent = ((g >= tl.intub) & (g < tl.extub)).astype(np.float64)
    s["depth"], s["vent"] = depth, vent

    base_hr = {"adult": 78, "child": 105, "infant": 135}[p.kind] + rng.normal(0, 8)
    s["hr"] = np.clip(
        base_hr * (1 - 0.15 * depth) + 15 * intub_bump + 8 * incision
        + drift(rng, n, 300, 4) + drift(rng, n, 20, 1.2), 35, 190)  # fmt: skip
    base_sbp = {"adult": 105 + 0.5 * p.age, "child": 100, "infant": 80}[p.kind] + rng.normal(0, 12)
    sbp = base_sbp * (1 - 0.22 * depth) + 30 * intub_bump + 15 * incision
    sbp += drift(rng, n, 600, 8) + drift(rng, n, 40, 2.5)
    if f.nepi:  # hypotension, then norepinephrine
        t_on = tl.opstart + (0.2 + 0.3 * u[1]) * (tl.stop - tl.opstart)
        sbp -= 25 * _ramp(g, t_on - 600, t_on) * (1 - 0.8 * _ramp(g, t_on, t_on + 300))
        s.nepi_on = t_on
    sbp = np.clip(sbp, 55, 220)
    dbp = sbp * (0.52 + 0.08 * u[2]) + drift(rng, n, 600, 3)
    s["sbp"], s["dbp"] = sbp, dbp
    s["mbp"] = (sbp + 2 * dbp) / 3 + drift(rng, n, 120, 1)
    o2 = _ramp(g, tl.anestart - 180, tl.anestart) * (1 - _ramp(g, tl.extub + 600, tl.extub + 900))
    s["spo2"] = np.clip(97.3 + 2.2 * o2 + drift(rng, n, 300, 0.6), 88, 100)
    s["bis"] = np.clip(94 - 46 * depth + drift(rng, n, 300, 4) + drift(rng, n, 15, 1.5), 5, 98)
    s["etco2"] = np.clip(35 + drift(rng, n, 900, 2.5) + drift(rng, n, 60, 0.8), 25, 50)
    s["bt"] = 36.4 + 0.3 * u[3] - 0.6 * _ramp(g, tl.intub, tl.intub + 3600) + drift(rng, n, 900, 0.1)

    # ventilator settings (piecewise constant) and measurements
    rr0 = {"adult": 10 + int(u[4] * 5), "child": 18, "infant": 26}[p.kind]
    t_change = tl.intub + (0.2 + 0.6 * u[5]) * (tl.extub - tl.intub)
    rr_set = np.where(g < t_change, rr0, rr0 + (int(u[6] * 5) - 2 if u[7] < 0.4 else 0))
    tv_kg = 6 + 2 * u[8]
    tv0 = max(20.0, round(tv_kg * p.ibw / 10) * 10)
    tv_step = round(0.08 * tv0 / 10) * 10 * (1 if u[9] < 0.5 else -1) if u[10] < 0.3 else 0
    tv_set = np.where(g < t_change, tv0, tv0 + tv_step)
    peep0 = 5.0 if u[11] < 0.7 else float(rng.choice([3, 4, 6, 7, 8]))
    peep_set = np.where(g < t_change, peep0, peep0 + (2 if u[12] < 0.2 else 0))
    fio2_0 = float(rng.choice([40, 45, 50, 60]))
    fio2_set = np.where(g < t_change, fio2_0, float(rng.choice([40, 50, 60])) if u[13] < 0.4 else fio2_0)
    fio2_set = np.where(g < tl.intub, 100.0, np.where(g >= tl.stop, 100.0, fio2_set))
    s["rr_set"], s["tv_set"], s["peep_set"], s["fio2_set"] = rr_set * 1.0, tv_set * 1.0, peep_set, fio2_set
    s["tv"] = tv_set * (1 + drift(rng, n, 300, 0.02)) + rng.normal(0, 0.01 * tv0, n)
    s["peep"] = peep_set + drift(rng, n, 300, 0.2)
    compliance = (40 if p.kind == "adult" else 12 if p.kind == "child" else 4) * (0.8 + 0.4 * u[14])
    s["compliance"] = compliance * (1 + drift(rng, n, 600, 0.05))
    s["pip"] = s["peep"] + s["tv"] / s["compliance"] + 2
    s["fio2"] = np.clip(fio2_set + drift(rng, n, 120, 1.0), 21, 100)
    s["pamb"] = 1000 + 20 * u[15] + drift(rng, n, 3600, 0.5)

    # sevoflurane (kPa), on between intubation and drug stop for non-TIVA cases
    sevo_target = np.zeros(n)
    if not f.tiva:
        on = tl.intub + rng.uniform(0, 120) * tl.fs
        sevo_target = steps(rng, g, on, tl.stop, 2.0, 0.12, 1.4, 2.6, tl.fl, every=(20, 40))
    exp_sevo = lowpass(sevo_target, 150)
    s["exp_sevo"] = exp_sevo
    s["insp_sevo"] = np.clip(exp_sevo + 1.5 * (sevo_target - exp_sevo) + 0.15 * (sevo_target > 0), 0, 8)

    # infusions (mL/h)
    w = p.weight
    if f.ppf:
        bolus_ml = rng.uniform(1.5, 2.5) * w / 20
        t0 = tl.anestart + rng.uniform(0, 20)
        t1 = tl.stop if f.tiva else tl.intub + rng.uniform(5, 15) * 60 * tl.fs
        pump = _bolus_then_steps(
            rng, g, t0, bolus_ml, bolus_rate=min(1200.0, max(50.0, 15 * w)), t1=t1,
            level=rng.uniform(5, 9), sd=0.2, lo=4, hi=12, to_mlh=w / 20, fl=tl.fl,
        )  # mg/kg/h -> mL/h of 20 mg/mL
        s["PPF20"], s["PPF20_maint"] = pump
    if f.rftn:
        conc = f.rftn
        bolus_ml = rng.uniform(0.5, 1.0) * w / conc
        t0 = tl.anestart - rng.uniform(0, 60)
        pump = _bolus_then_steps(
            rng, g, t0, bolus_ml, bolus_rate=bolus_ml / 30 * 3600, t1=tl.stop,
            level=rng.uniform(0.08, 0.2), sd=0.3, lo=0.02, hi=0.5, to_mlh=w * 60 / conc, fl=tl.fl,
        )  # ug/kg/min -> mL/h
        s[f"RFTN{conc}"], s[f"RFTN{conc}_maint"] = pump
    if s.nepi_on is not None:
        t_on = s.nepi_on
        ug_kg_min = steps(rng, g, t_on, tl.extub, rng.uniform(0.03, 0.1), 0.3, 0.01, 0.3, tl.fl)
        s["NEPI"] = np.round(ug_kg_min * w * 60 / 20, 1)  # 20 ug/mL
    return s


def _bolus_then_steps(rng, g, t0, bolus_ml, *, bolus_rate, t1, level, sd, lo, hi, to_mlh, fl):
    """Pump rate (mL/h): a bolus at ``bolus_rate``, then maintenance steps until ``t1``.

    Also returns the maintenance rate alone (the bolus replaced by the first step), from which
    the pump's target concentration (CT) is shown.
    """
    t_end = t0 + bolus_ml / bolus_rate * 3600
    maint = np.round(steps(rng, g, t_end, t1, level, sd, lo, hi, fl) * to_mlh, 1)
    rate = maint.copy()
    in_bolus = (g >= t0) & (g < t_end)
    rate[in_bolus] = round(bolus_rate, 1)
    after = np.flatnonzero(g >= t_end)
    maint[in_bolus] = maint[after[0]] if after.size else 0.0
    return rate, maint
