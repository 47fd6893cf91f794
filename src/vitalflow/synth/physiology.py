"""The latent 1 Hz state of a case, from which every track is sampled: a closed loop.

Drugs act on the patient through first-order effect-site lags; a simulated anesthesiologist
looks at the monitor every ``DT`` seconds and, after a drawn reaction delay, changes pump rates,
the sevoflurane dial and the ventilator (README, "Synthetic world", states every rule). The loop
runs forward in blocks of ``DT`` seconds with the inputs constant in a block, so each lag has a
closed form inside a block; the 1 Hz arrays are then rebuilt from the recorded block inputs and
block-start values with the same formulas (`_vitals`), so the arrays show exactly what the
clinician saw. Also the curve helpers (`drift`, `lowpass`, `steps`) the device tracks reuse.

Every set-point change goes through one decision log (`State.decisions`: time, set-point, old,
new, cause; planned changes have cause ``"plan"``), in the units of the device tracks. Propofol
and remifentanil run on TCI pumps (`vitalflow.synth.pk`) in most adult cases: the clinician
changes the target, the pump the rate, and the drug acts through the delivered rate. While it
runs, the loop also records what the clinician knows about its next decisions (pending
decisions, rules whose condition holds, the plan, the noise windows), from which
`vitalflow.synth.oracle` computes the probability of a change (nothing random is looked at).

Worlds: ``"default"``; ``"deterministic"`` (a fixed reaction delay, no unexplained changes);
``"random"`` (no reaction to the monitor: Poisson changes only, at ``RANDOM_PER_H``).
"""

from __future__ import annotations

import numpy as np

from vitalflow.synth import pk
from vitalflow.synth.patient import Flags, Patient
from vitalflow.synth.timeline import Timeline


class State(dict):
    """Named 1 Hz arrays on the grid ``g`` (which may start before the recording)."""

    def __init__(self, g: np.ndarray):
        super().__init__()
        self.g = g
        # the decision log: (time s, set-point, old, new, cause), set-points as in `DECISION_GROUP`
        self.decisions: list[tuple[float, str, float, float, str]] = []
        # the oracle's inputs: (block, group index, decision time or look, no effect after)
        self.sources: list[tuple[int, int, float, float]] = []
        self.plan: list[tuple[float, str, float]] = []  # planned changes (time, setting, new value)
        self.world = "default"
        self.stims: list[tuple[float, float]] = []  # surgical stimulation events (start, duration), s
        self.nibp_times = np.zeros(0)  # NIBP cuff reading times (s) and their errors (mmHg)
        self.nibp_err = np.zeros(0)

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


DT = 10  # s between the clinician's looks at the monitor (and block length of the loop)
# effect-site / measurement lags (s): propofol, sevoflurane effect, expired sevoflurane,
# remifentanil, norepinephrine, a manual vasopressor bolus, EtCO2 after a ventilation change, FiO2
TAU = {"ppf": 180.0, "sevo": 240.0, "exp": 150.0, "remi": 100.0, "nepi": 90.0, "vaso": 480.0, "co2": 120.0,
       "fio2": 60.0}  # fmt: skip
BIS_BAND = (40.0, 60.0)
MAP_LOW = {"adult": 65.0, "child": 50.0, "infant": 40.0}  # mmHg; norepinephrine weaned above MAP_HIGH
MAP_HIGH = 85.0
ETCO2_BAND = (30.0, 42.0)  # mmHg
SPO2_LOW, SPO2_HIGH = 94.0, 98.0  # %
HOLD_S = 120.0  # a condition must hold this long on the monitor
DELAY_S = (60.0, 180.0)  # reaction delay, drawn per decision
REFRACTORY_S = 240.0  # after an action, the same rule waits this long
NOISE_PER_H = {"hyp": 0.8, "remi": 0.6, "nepi": 0.6, "rr": 0.3, "tv": 0.2, "peep": 0.25, "fio2": 0.3}
WORLDS = ("default", "deterministic", "random")
FIXED_DELAY_S = 240.0  # the reaction delay of the deterministic world
# the random world: Poisson changes only (per hour, in the maintenance period), about as many as
# the default world's clinician makes
RANDOM_PER_H = {"hyp": 1.6, "remi": 1.2, "nepi": 1.2, "rr": 0.8, "tv": 0.4, "peep": 0.25, "fio2": 0.6}
TCI_SHARE = 0.75  # share of adult pump cases run as TCI (target-controlled) rather than manual rates
PPF_CT_RANGE = (2.0, 6.0)  # ug/mL, the clinician's propofol targets (Schnider effect site)
RFTN_CT_RANGE = (1.0, 10.0)  # ng/mL, remifentanil targets (Minto effect site)
GROUPS = ("hypnotic", "opioid", "vasopressor", "ventilation", "oxygen")
# decision log set-points and their groups
DECISION_GROUP = {
    "PPF_CT": "hypnotic", "PPF_RATE": "hypnotic", "SEVO": "hypnotic", "RFTN_CT": "opioid",
    "RFTN_RATE": "opioid", "NEPI_RATE": "vasopressor", "TV_SET": "ventilation", "RR_SET": "ventilation",
    "PEEP_SET": "ventilation", "FIO2_SET": "oxygen",
}  # fmt: skip
# the loop's settings and actions -> group index
GROUP_INDEX = {
    "ppf": 0, "sevo": 0, "hyp": 0, "remi": 1, "nepi": 2, "vent": 3, "rr": 3, "tv": 3, "peep": 3, "fio2": 4,
}  # fmt: skip


class _Ex:
    """Exogenous 1 Hz arrays and per-case constants (independent of the clinician)."""


def _clip(x, lo, hi):
    """``np.clip`` for arrays, plain min/max for scalars (the loop calls `_vitals` per block)."""
    return np.clip(x, lo, hi) if isinstance(x, np.ndarray) else min(max(x, lo), hi)


def _vitals(ex: _Ex, i, c: dict) -> dict:
    """Vital signs at grid index ``i`` (int or array) from lag-channel values ``c`` (same shape)."""
    remi = c["remi"]
    blunt = remi / (remi + 0.06)  # remifentanil blunts the response to stimulation
    h = ex.sens * (c["ppf"] / 7.0 + c["sevo"] / 2.0) * (1 + 0.3 * remi / (remi + 0.1))
    depth = h * h / (h * h + 0.3025)  # Emax model, half effect at h = 0.55
    resp = 1 - 0.85 * blunt
    hr = _clip(ex.base_hr * (1 - 0.12 * depth - 0.08 * blunt) + resp * (15 * ex.intub[i] + ex.stim_hr[i])
                 + ex.hr_d[i], 35, 190)  # fmt: skip
    sbp = (ex.base_sbp * (1 - 0.25 * depth - 0.06 * blunt) + resp * (30 * ex.intub[i] + ex.stim_sbp[i])
           + 45 * c["nepi"] / (c["nepi"] + 0.1) + c["vaso"] - ex.hypo[i] + ex.sbp_d[i])  # fmt: skip
    sbp = _clip(sbp, 55, 220)
    dbp = sbp * ex.dbp_ratio + ex.dbp_d[i]
    mbp = (sbp + 2 * dbp) / 3 + ex.mbp_d[i]
    bis = _clip(96 - 62 * depth + 5 * resp * ex.stim_lvl[i] + ex.bis_d[i], 5, 98)
    etco2 = _clip(c["co2"] * ex.co2prod[i] + ex.etco2_d[i], 20, 60)
    spo2 = _clip(97.3 + 2.2 * ex.o2[i] - ex.desat[i] * 50 / c["fio2"] + ex.spo2_d[i], 80, 100)
    return {"depth": depth, "hr": hr, "sbp": sbp, "dbp": dbp, "mbp": mbp, "bis": bis, "etco2": etco2, "spo2": spo2}


def _episodes(rng, g, a, b, per_h, dur, amp) -> tuple[np.ndarray, list]:
    """Sum of smooth episodes (Poisson, ``per_h`` per hour in [a, b)), durations and amplitudes drawn."""
    out = np.zeros(g.size)
    k = rng.poisson(max(0.0, b - a) / 3600 * per_h)
    ev = []
    for t0, d, h in zip(rng.uniform(a, max(a, b), k), rng.uniform(*dur, k), rng.uniform(*amp, k)):
        out += h * _ramp(g, t0, t0 + 60) * (1 - _ramp(g, t0 + d, t0 + d + 120))
        ev.append((float(t0), float(d)))
    return out, ev


def simulate_state(rng: np.random.Generator, tl: Timeline, p: Patient, f: Flags, world: str = "default") -> State:
    """All latent arrays of the case, from 15 min before induction (or the recording start) to the end.

    The grid starts at a multiple of ``DT`` seconds, so the clinician's blocks start at multiples
    of ``DT`` from the recording start."""
    if world not in WORLDS:
        raise ValueError(f"world must be one of {WORLDS}, got {world!r}")
    g = np.arange(DT * np.floor(min(0.0, np.floor(tl.anestart) - 900) / DT), tl.total + 2, 1.0)
    n = g.size
    s = State(g)
    s.world = world
    u = rng.random(16)
    w = p.weight
    ex = _Ex()

    # ---- exogenous: stimulation, intubation, drifts, hypotension, CO2 load, desaturation
    ex.intub = np.exp(-0.5 * ((g - tl.intub - 30) / 40) ** 2)
    incision = _ramp(g, tl.opstart, tl.opstart + 60) * np.exp(-np.clip(g - tl.opstart, 0, None) / 600)
    stim, s.stims = _episodes(rng, g, tl.opstart + 600, tl.opend, 4.0, (120, 480), (0.6, 1.4))
    s.stims.insert(0, (float(tl.opstart), 600.0))
    ex.stim_lvl = np.clip(incision + stim, 0, 2)
    ex.stim_hr, ex.stim_sbp = 14 * ex.stim_lvl, 24 * ex.stim_lvl
    vent = ((g >= tl.intub) & (g < tl.extub)).astype(np.float64)
    s["vent"] = vent
    ex.base_hr = {"adult": 78, "child": 105, "infant": 135}[p.kind] + rng.normal(0, 8)
    ex.base_sbp = {"adult": 105 + 0.5 * p.age, "child": 100, "infant": 80}[p.kind] + rng.normal(0, 12)
    ex.hr_d = drift(rng, n, 300, 4) + drift(rng, n, 20, 1.2)
    ex.sbp_d = drift(rng, n, 600, 8) + drift(rng, n, 40, 2.5)
    ex.dbp_ratio = 0.52 + 0.08 * u[2]
    ex.dbp_d = drift(rng, n, 600, 3)
    ex.mbp_d = drift(rng, n, 120, 1)
    ex.bis_d = drift(rng, n, 300, 4) + drift(rng, n, 15, 1.5)
    ex.etco2_d = drift(rng, n, 60, 0.8)
    ex.spo2_d = drift(rng, n, 300, 0.6)
    ex.o2 = _ramp(g, tl.anestart - 180, tl.anestart) * (1 - _ramp(g, tl.extub + 600, tl.extub + 900))
    ex.sens = float(np.exp(rng.normal(0, 0.18)))  # sensitivity to hypnotics
    ex.hypo = np.zeros(n)
    if f.nepi:  # a vasoplegic phase that calls for norepinephrine
        t_h = tl.opstart + (0.15 + 0.3 * u[1]) * (tl.stop - tl.opstart)
        ex.hypo = 40 * _ramp(g, t_h, t_h + 600) * (1 - 0.5 * _ramp(g, t_h + 2400, t_h + 5400))
    load, _ = _episodes(rng, g, tl.intub, tl.stop, 0.6, (900, 3600), (0.12, 0.25))
    ex.co2prod = 1 + drift(rng, n, 900, 0.04) + load * vent
    desat, _ = _episodes(rng, g, tl.intub + 600, tl.stop, 0.4, (600, 2400), (4.0, 9.0))
    ex.desat = desat * vent
    s["bt"] = 36.4 + 0.3 * u[3] - 0.6 * _ramp(g, tl.intub, tl.intub + 3600) + drift(rng, n, 900, 0.1)

    # ---- NIBP cuff times and errors (the clinician sees these readings when there is no art line)
    cycle = f.nibp_cycle
    tn = g[0] + rng.uniform(0, cycle) + np.arange(int(n // cycle) + 1) * cycle
    s.nibp_times = np.round(tn + rng.uniform(-5, 5, tn.size), 3)
    s.nibp_err = rng.normal(0, 4, tn.size)

    # ---- initial settings (all in the units of the device tracks: pump rates mL/h, targets
    # ug/mL or ng/mL, TV mL, RR /min, PEEP mbar, FiO2 %, sevoflurane dial vol %)
    rr0 = {"adult": 10 + int(u[4] * 5), "child": 18, "infant": 26}[p.kind]
    rr_lo, rr_hi = {"adult": (8, 20), "child": (14, 28), "infant": (20, 36)}[p.kind]
    tv0 = max(20.0, round((6 + 2 * u[8]) * p.ibw / 10) * 10.0)
    tv_lo, tv_hi = min(tv0, max(0.92 * tv0, 5.8 * p.ibw)), max(tv0, min(1.1 * tv0, 8.0 * p.ibw))
    peep0 = 5.0 if u[11] < 0.7 else float(rng.choice([3, 4, 6, 7, 8]))
    fio2_0 = float(rng.choice([40, 45, 50, 60]))
    etco2_base = 33 + 5 * u[5]
    mv_ref = rr0 * tv0
    map_low = MAP_LOW[p.kind]
    set_ = {"ppf": 0.0, "sevo": 0.0, "remi": 0.0, "nepi": 0.0, "rr": float(rr0), "tv": tv0, "peep": peep0,
            "fio2": 100.0}  # fmt: skip
    conc_r = f.rftn or 20
    # TCI (Orchestra) or manual rates: adults only (the PK models are adult models), ~75 % of them
    tci_ppf = f.ppf and p.kind == "adult" and u[12] >= 1 - TCI_SHARE
    tci_remi = bool(f.rftn) and p.kind == "adult" and u[12] >= 1 - TCI_SHARE
    s.tci = {"ppf": bool(tci_ppf), "remi": bool(tci_remi)}
    setpoint = {"ppf": "PPF_CT" if tci_ppf else "PPF_RATE", "remi": "RFTN_CT" if tci_remi else "RFTN_RATE",
                "nepi": "NEPI_RATE", "sevo": "SEVO", "rr": "RR_SET", "tv": "TV_SET", "peep": "PEEP_SET",
                "fio2": "FIO2_SET"}  # fmt: skip
    ppf_ml = lambda dose: round(dose * w / 20, 1)  # noqa: E731  mg/kg/h -> mL/h (20 mg/mL)
    remi_ml = lambda dose: round(dose * w * 60 / conc_r, 1)  # noqa: E731  ug/kg/min -> mL/h
    nepi_ml = lambda dose: round(dose * w * 60 / 20, 1)  # noqa: E731  ug/kg/min -> mL/h (20 ug/mL)

    # ---- the plan: (block time, setting, new value), known to the clinician in advance
    plan: list[tuple[float, str, float]] = []
    win = {"ppf": (np.inf, np.inf), "remi": (np.inf, np.inf), "sevo": (np.inf, np.inf)}  # maintenance windows
    manual_bolus = None  # induction with a hand bolus of propofol (no pump; not a set-point)
    if f.ppf:
        t0 = _blk(tl.anestart + rng.uniform(0, 20))
        t1 = _blk(tl.stop if f.tiva else tl.intub + rng.uniform(5, 15) * 60 * tl.fs)
        if tci_ppf:
            tm = _blk(tl.intub + rng.uniform(1, 4) * 60 * tl.fs)
            plan.append((t0, "ppf", round(rng.uniform(3.5, 5.0), 1)))
            plan.append((tm, "ppf", round(rng.uniform(2.3, 3.5), 1)))
        else:  # the pump's bolus (1.5-2.5 mg/kg, whole control steps), then a maintenance rate
            bolus_ml = rng.uniform(1.5, 2.5) * w / 20
            nbl = max(1, int(np.ceil(bolus_ml / min(1200.0, max(50.0, 15 * w)) * 3600 / DT)))
            tm = t0 + nbl * DT
            plan.append((t0, "ppf", round(bolus_ml * 3600 / (nbl * DT), 1)))
            plan.append((tm, "ppf", ppf_ml(rng.uniform(5, 9))))
        t1 = max(t1, tm + DT)
        plan.append((t1, "ppf", 0.0))
        win["ppf"] = (tm, t1)
    else:
        manual_bolus = (tl.anestart + rng.uniform(0, 20), rng.uniform(1.5, 2.5))
    remi_start = 0.0
    if f.rftn:
        t0 = _blk(tl.anestart - rng.uniform(0, 60))
        if tci_remi:
            remi_start = round(rng.uniform(2.0, 5.0), 1)
            plan.append((t0, "remi", remi_start))
        else:  # a 30 s bolus of 0.5-1 ug/kg, then a maintenance rate
            plan.append((t0, "remi", round(rng.uniform(0.5, 1.0) * w / conc_r / 30 * 3600, 1)))
            remi_start = remi_ml(rng.uniform(0.08, 0.2))
            plan.append((t0 + 30, "remi", remi_start))
        t1 = max(_blk(tl.stop), t0 + 30 + DT)
        plan.append((t1, "remi", 0.0))
        win["remi"] = (t0 + 30, t1)
    if not f.tiva:
        on, off = _blk(tl.intub + rng.uniform(0, 120) * tl.fs), _blk(tl.stop)
        plan += [(on, "sevo", float(np.clip(round(2.0 * np.exp(rng.normal(0, 0.12)), 1), 1.4, 2.6))), (off, "sevo", 0.0)]
        win["sevo"] = (on, off)
    plan += [(_blk(tl.intub), "fio2", fio2_0), (_blk(tl.stop), "fio2", 100.0)]
    if f.nepi:
        plan.append((_blk(tl.extub), "nepi", 0.0))
    plan.sort(key=lambda e: e[0])
    s.plan = plan
    pumps = {}
    if tci_ppf:
        pumps["ppf"] = pk.TciPump(pk.schnider(p.age, w, p.height, p.sex), 20.0)
    if tci_remi:
        pumps["remi"] = pk.TciPump(pk.minto(p.age, w, p.height, p.sex), float(conc_r))
    s.pumps = pumps

    # ---- unexplained changes: Poisson times in the maintenance period (a factor or step each);
    # in the random world these are all the clinician does
    nz0, nz1 = tl.intub + 300, max(tl.intub + 300, tl.stop)
    rates = {} if world == "deterministic" else RANDOM_PER_H if world == "random" else NOISE_PER_H
    s.noise_window, s.noise_per_h = (nz0, nz1), dict(rates)
    noise = []
    for key, per_h in rates.items():
        k = rng.poisson((nz1 - nz0) / 3600 * per_h)
        for t in rng.uniform(nz0, nz1, k):
            noise.append((float(t), key, float(rng.normal(0, 1)), float(rng.random())))
    noise.sort()
    delays = rng.uniform(*DELAY_S, 4096) if world != "deterministic" else np.full(4096, FIXED_DELAY_S)
    mags = rng.random(4096)
    s.delay_s = (FIXED_DELAY_S, FIXED_DELAY_S) if world == "deterministic" else DELAY_S
    draw = [0]

    def nxt():
        j = draw[0] % 4096
        draw[0] += 1
        return float(delays[j]), float(mags[j])

    # ---- the loop
    a = {k: np.exp(-1.0 / v) for k, v in TAU.items()}
    aDT = {k: v**DT for k, v in a.items()}
    chan = dict.fromkeys(TAU, 0.0)
    chan["fio2"], chan["co2"] = 100.0, etco2_base
    nb = -(-n // DT)
    rec_x = {k: np.zeros(nb) for k in TAU}
    rec_c = {k: np.zeros(nb) for k in TAU}
    rec_set = {k: np.zeros(nb) for k in set_}
    rec_rate = {k: np.zeros(nb) for k in ("ppf", "remi")}
    pk_x = {k: np.zeros(4) for k in pumps}
    rec_pk = {k: np.zeros((nb, 4)) for k in pumps}
    pending: list[tuple[float, str, str, float, float]] = []  # (due, setting, cause, magnitude, decided at)
    since: dict[str, float | None] = {}
    ready: dict[str, float] = {}
    holding: dict[str, tuple[float, str, str, float]] = {}  # rule -> (decision look, action, cause, rule end)
    sources = s.sources  # oracle: (block, group, decided or deciding at, no effect after)
    nibp_j, nibp_map, nibp_sbp = 0, None, None
    hr_base = sbp_base = None
    last_remi_t = -1e9
    ni = pi = 0
    log = s.decisions
    ppf_lim = (3 * w / 20, 12 * w / 20) if not tci_ppf else PPF_CT_RANGE
    remi_lim = (0.02 * w * 60 / conc_r, 0.5 * w * 60 / conc_r) if not tci_remi else RFTN_CT_RANGE

    def change(t, key, new, cause):
        old = set_[key]
        if new != old:
            set_[key] = new
            log.append((t, setpoint[key], old, new, cause))

    def hyp_key(t):
        if win["ppf"][0] <= t < win["ppf"][1]:
            return "ppf"
        return "sevo" if win["sevo"][0] <= t < win["sevo"][1] else None

    def hyp_end(t):
        """End of the hypnotic maintenance time containing t (t itself when none)."""
        ends = [e for b_, e in (win["ppf"], win["sevo"]) if b_ <= t < e]
        if not ends:
            return t
        e = max(ends)
        return max(e, win["sevo"][1]) if win["sevo"][0] <= e < win["sevo"][1] else e

    def act(t, key, cause, m):
        """Apply a decided change to the current setting (magnitude m in [0, 1))."""
        if key == "hyp":
            key = hyp_key(t)
            if key is None:
                return
            up = cause in ("bis_high", "noise_up")
            if key == "ppf" and tci_ppf:
                step = 0.2 + 0.8 * m if up else -(0.2 + 0.6 * m)
                change(t, "ppf", round(float(np.clip(set_["ppf"] + step, *PPF_CT_RANGE)), 1), cause)
            elif key == "ppf":
                f_ = 1.15 + 0.2 * m if up else 0.75 + 0.13 * m
                change(t, "ppf", round(float(np.clip(set_["ppf"] * f_, *ppf_lim)), 1), cause)
            else:
                step = 0.2 + 0.3 * m
                new = round(float(np.clip(set_["sevo"] + (step if up else -step), 0.8, 3.5)), 1)
                if abs(new - set_["sevo"]) >= 0.2 - 1e-9:  # a visible dial change (>= 0.3 kPa inspired)
                    change(t, "sevo", new, cause)
        elif key == "remi":
            if not (win["remi"][0] <= t < win["remi"][1]):
                return
            if tci_remi:
                step = {"stim": 0.5 + 1.5 * m, "remi_wean": -(0.5 + 0.5 * m)}.get(cause, np.sign(m - 0.5) * (0.5 + abs(m - 0.5)))
                change(t, "remi", round(float(np.clip(set_["remi"] + step, *RFTN_CT_RANGE)), 1), cause)
            else:
                f_ = {"stim": 1.25 + 0.25 * m, "remi_wean": 0.8 + 0.1 * m}.get(cause, np.exp(0.25 * (m - 0.5) * 2))
                change(t, "remi", round(float(np.clip(set_["remi"] * f_, *remi_lim)), 1), cause)
        elif key == "nepi":
            cur = set_["nepi"] * 20 / 60 / w  # ug/kg/min
            if cause == "map_low":
                dose = 0.03 + 0.03 * m if cur == 0 else min(0.3, cur * (1.3 + 0.3 * m))
            elif cause == "map_high":
                dose = cur * (0.6 + 0.2 * m)
                dose = 0.0 if dose < 0.02 else dose
            else:  # noise
                if cur == 0:
                    return
                dose = float(np.clip(cur * np.exp(0.3 * (m - 0.5)), 0.02, 0.3))
            change(t, "nepi", nepi_ml(dose), cause)
        elif key == "vent":  # EtCO2 out of band: RR (2/3) or TV (1/3)
            up = cause == "etco2_high"
            new_rr = float(np.clip(set_["rr"] + (1 + int(m * 2)) * (1 if up else -1), rr_lo, rr_hi))
            new_tv = float(np.clip(round(set_["tv"] * (1.06 if up else 0.94) / 10) * 10, tv_lo, tv_hi))
            if (m * 3 % 1 < 2 / 3 or new_tv == set_["tv"]) and new_rr != set_["rr"]:
                change(t, "rr", new_rr, cause)
            else:
                change(t, "tv", new_tv, cause)
        elif key == "fio2":
            new = set_["fio2"] + (10 + 10 * int(m * 2)) if cause == "spo2_low" else set_["fio2"] - 10
            change(t, "fio2", float(np.clip(new, 30, 100)), cause)

    def can_change(t, key, cause):
        """Whether ``key`` for ``cause`` would change a setting now (the oracle's view)."""
        up = cause in ("bis_high", "noise_up", "stim", "map_low", "etco2_high", "spo2_low")
        if key == "hyp":
            k = hyp_key(t)
            if k is None:
                return False
            lo, hi = (ppf_lim if k == "ppf" else (0.8, 3.5))
            return set_[k] < hi - 0.15 if up else set_[k] > lo + 0.15
        if key == "remi":
            return cause == "noise" or (set_["remi"] < remi_lim[1] if up else set_["remi"] > remi_lim[0])
        if key == "nepi":
            return set_["nepi"] < nepi_ml(0.3) if up else set_["nepi"] > 0
        if key == "vent":
            return (set_["rr"] < rr_hi or set_["tv"] < tv_hi) if up else (set_["rr"] > rr_lo or set_["tv"] > tv_lo)
        return set_["fio2"] < 100 if up else set_["fio2"] > 30

    def act_end(t, key):
        """Time after which an action of ``key`` has nothing left to change."""
        if key == "hyp":
            return hyp_end(t)
        if key == "remi":
            return win["remi"][1] if win["remi"][0] <= t < win["remi"][1] else t
        return np.inf

    def rule(t, name, cond, hold, key, cause, end):
        """Schedule ``key`` after a reaction delay once ``cond`` has held ``hold`` s on the monitor
        (the rule is active until ``end``)."""
        if not cond:
            since[name] = None
            return
        if since.get(name) is None:
            since[name] = t
        if t - since[name] >= hold and t >= ready.get(name, -1e9):
            d, m = nxt()
            pending.append((t + d, key, cause, m, t))
            ready[name] = t + d + REFRACTORY_S
            since[name] = None
        else:  # the look at which it will decide if the condition keeps holding
            due = max(since[name] + hold, ready.get(name, -1e9))
            holding[name] = (t + DT * max(1, int(np.ceil((due - t) / DT - 1e-9))), key, cause, end)

    for b in range(nb):
        i0 = b * DT
        t = float(g[i0])
        # planned events, unexplained changes and decided actions due by now
        while pi < len(plan) and plan[pi][0] <= t:
            _, key, new = plan[pi]
            pi += 1
            change(t, key, new, "plan")
        if manual_bolus is not None and manual_bolus[0] <= t < manual_bolus[0] + DT:
            chan["ppf"] += manual_bolus[1] * 3600 * (1 - a["ppf"])
        def unexplained(t, key, z, m):
            if key == "hyp":
                act(t, "hyp", "noise_up" if z > 0 else "noise_down", m)
            elif key in ("remi", "nepi"):
                act(t, key, "noise", m)
            elif key == "rr":
                change(t, "rr", float(np.clip(set_["rr"] + (1 if z > 0 else -1), rr_lo, rr_hi)), "noise")
            elif key == "tv":
                change(t, "tv", float(np.clip(round(set_["tv"] * (1 + 0.05 * np.sign(z)) / 10) * 10, tv_lo, tv_hi)), "noise")
            elif key == "peep":
                change(t, "peep", float(np.clip(set_["peep"] + (1 + int(m * 2)) * np.sign(z), 3, 10)), "noise")
            elif key == "fio2" and tl.intub <= t < tl.stop:
                change(t, "fio2", float(np.clip(set_["fio2"] + 5 * (1 + int(m * 2)) * np.sign(z), 30, 80)), "noise")

        while ni < len(noise) and noise[ni][0] <= t:
            _, key, z, m = noise[ni]
            ni += 1
            logged = len(log)
            unexplained(t, key, z, m)
            if world == "random" and len(log) == logged:
                # at a bound the drawn step changes nothing; the random world's changes happen at their
                # Poisson times whatever the setting, so it steps the other way (else the setting now
                # would tell when a change can come)
                unexplained(t, key, -z, 1.0 - m)
        if pending:
            due = [x for x in pending if x[0] <= t]
            if due:
                pending = [x for x in pending if x[0] > t]
                for _, key, cause, m, _ in sorted(due):
                    act(t, key, cause, m)
                    if key == "remi":
                        last_remi_t = t
        # what the clinician knows now about its next decisions (the oracle's inputs)
        for _, key, cause, _, td in pending:
            if can_change(t, key, cause):
                sources.append((b, GROUP_INDEX[key], td, act_end(t, key)))
        for lk, key, cause, end in holding.values():
            if lk < end and can_change(t, key, cause):
                sources.append((b, GROUP_INDEX[key], lk, act_end(lk, key)))
        holding.clear()
        # pumps: the rate for this block (TCI: from the model state and the target)
        for k in ("ppf", "remi"):
            if k in pumps:
                r = pumps[k].rate(pk_x[k], set_[k])
                rec_pk[k][b] = pk_x[k]
                pk_x[k] = pumps[k].step(pk_x[k], r)
            else:
                r = set_[k]
            rec_rate[k][b] = r
        # channel inputs for this block
        x = {
            "ppf": rec_rate["ppf"][b] * 20 / w, "sevo": set_["sevo"], "exp": set_["sevo"],
            "remi": rec_rate["remi"][b] * conc_r / 60 / w, "nepi": set_["nepi"] * 20 / 60 / w, "vaso": 0.0,
            "co2": etco2_base * mv_ref / (set_["rr"] * set_["tv"]), "fio2": set_["fio2"],
        }  # fmt: skip
        for k in TAU:
            rec_x[k][b], rec_c[k][b] = x[k], chan[k]
        for k in set_:
            rec_set[k][b] = set_[k]
        # what the monitor shows at the end of the block
        i1 = min(n, i0 + DT) - 1
        kk = i1 - i0
        c_end = {k: x[k] + (chan[k] - x[k]) * a[k] ** kk for k in TAU}
        v = _vitals(ex, i1, c_end)
        t_end = float(g[i1])
        while nibp_j < s.nibp_times.size and s.nibp_times[nibp_j] <= t_end:
            tj = s.nibp_times[nibp_j]
            if tj >= t:
                ij = min(i1, max(i0, int(round(tj - g[0]))))
                cj = {k: x[k] + (chan[k] - x[k]) * a[k] ** (ij - i0) for k in TAU}
                vj = _vitals(ex, ij, cj)
                err = s.nibp_err[nibp_j]
                nibp_sbp, nibp_map = vj["sbp"] + err, vj["mbp"] + 0.8 * err
            nibp_j += 1
        art = tl.artline is not None and t_end >= tl.artline
        map_obs = v["mbp"] if art else nibp_map
        sbp_obs = v["sbp"] if art else nibp_sbp
        hr_base = v["hr"] if hr_base is None else hr_base + (v["hr"] - hr_base) * DT / 600
        if sbp_obs is not None:
            sbp_base = sbp_obs if sbp_base is None else sbp_base + (sbp_obs - sbp_base) * DT / 600
        for k in TAU:
            chan[k] = x[k] + (chan[k] - x[k]) * aDT[k]
        if world == "random":  # no reaction to the monitor
            continue
        maint = tl.intub + 300 <= t_end < tl.stop
        if f.bis and maint and hyp_key(t_end) is not None:
            end = min(tl.stop, hyp_end(t_end))
            rule(t_end, "bis_high", v["bis"] > BIS_BAND[1], HOLD_S, "hyp", "bis_high", end)
            rule(t_end, "bis_low", v["bis"] < BIS_BAND[0], HOLD_S, "hyp", "bis_low", end)
        if map_obs is not None and tl.anestart + 300 <= t_end < tl.extub:
            if f.nepi:
                rule(t_end, "map_low", map_obs < map_low, HOLD_S, "nepi", "map_low", tl.extub)
                rule(t_end, "map_high", set_["nepi"] > 0 and map_obs > MAP_HIGH, 300.0, "nepi", "map_high", tl.extub)
            elif map_obs < map_low and t_end >= ready.get("vaso", -1e9):  # a hand bolus (not recorded)
                if since.get("vaso") is None:
                    since["vaso"] = t_end
                elif t_end - since["vaso"] >= HOLD_S:
                    d, m = nxt()
                    chan["vaso"] += 10 + 10 * m
                    ready["vaso"], since["vaso"] = t_end + 300, None
            else:
                since["vaso"] = None
        if f.rftn and tl.intub <= t_end < tl.stop:
            jump = v["hr"] > 1.15 * hr_base or (sbp_obs is not None and sbp_obs > 1.2 * sbp_base)
            rule(t_end, "stim", jump, 60.0, "remi", "stim", tl.stop)
            if not jump and set_["remi"] > 1.2 * remi_start:
                if t_end - last_remi_t > 1800 and t_end >= ready.get("stim", -1e9):
                    d, m = nxt()
                    pending.append((t_end + d, "remi", "remi_wean", m, t_end))
                    last_remi_t = t_end + d
                else:  # the wean it will decide if nothing happens meanwhile
                    due = max(last_remi_t + 1800 + 1e-6, ready.get("stim", -1e9))
                    lk = t_end + DT * max(1, int(np.ceil((due - t_end) / DT - 1e-9)))
                    holding["remi_wean"] = (lk, "remi", "remi_wean", tl.stop)
        if maint:
            rule(t_end, "etco2_high", v["etco2"] > ETCO2_BAND[1], HOLD_S, "vent", "etco2_high", tl.stop)
            rule(t_end, "etco2_low", v["etco2"] < ETCO2_BAND[0], HOLD_S, "vent", "etco2_low", tl.stop)
            rule(t_end, "spo2_low", v["spo2"] < SPO2_LOW, 60.0, "fio2", "spo2_low", tl.stop)
            rule(t_end, "spo2_high", v["spo2"] > SPO2_HIGH and set_["fio2"] > fio2_0, 600.0, "fio2", "spo2_high", tl.stop)

    # ---- the 1 Hz arrays, from the recorded block inputs and block-start values
    s.block_t = g[::DT][:nb].copy()
    s.rec_set = rec_set
    s.win = win
    idx = np.arange(n)
    blk, off = idx // DT, idx % DT
    ch = {}
    for k in TAU:
        pw = a[k] ** np.arange(DT)
        xs = rec_x[k][blk]
        ch[k] = xs + (rec_c[k][blk] - xs) * pw[off]
    v = _vitals(ex, idx, ch)
    for k in ("depth", "hr", "sbp", "dbp", "mbp", "spo2", "bis", "etco2"):
        s[k] = v[k]
    st = {k: rec_set[k][blk] for k in set_}
    s["rr_set"], s["tv_set"], s["peep_set"], s["fio2_set"] = st["rr"], st["tv"], st["peep"], st["fio2"]
    s["tv"] = s["tv_set"] * (1 + drift(rng, n, 300, 0.02)) + rng.normal(0, 0.01 * tv0, n)
    s["peep"] = s["peep_set"] + drift(rng, n, 300, 0.2)
    compliance = (40 if p.kind == "adult" else 12 if p.kind == "child" else 4) * (0.8 + 0.4 * u[14])
    s["compliance"] = compliance * (1 + drift(rng, n, 600, 0.05))
    s["pip"] = s["peep"] + s["tv"] / s["compliance"] + 2
    s["fio2"] = np.clip(ch["fio2"] + drift(rng, n, 120, 1.0), 21, 100)
    s["pamb"] = 1000 + 20 * u[15] + drift(rng, n, 3600, 0.5)
    dial = st["sevo"]
    s["sevo_dial"] = dial
    s["exp_sevo"] = ch["exp"]
    s["insp_sevo"] = np.clip(ch["exp"] + 1.5 * (dial - ch["exp"]) + 0.15 * (dial > 0), 0, 8)

    # pumps (mL/h, and for TCI the target, plasma and effect-site concentrations)
    for k, name, on in (("ppf", "PPF20", f.ppf), ("remi", f"RFTN{f.rftn}", bool(f.rftn))):
        if not on:
            continue
        s[name] = rec_rate[k][blk]
        if k in pumps:
            cp, ce = pumps[k].fill(rec_pk[k], rec_rate[k])
            s[f"{name}_CT"], s[f"{name}_CP"], s[f"{name}_CE"] = st[k], cp[:n], ce[:n]
    if f.nepi:
        s["NEPI"] = st["nepi"]
    return s


def _blk(t: float) -> float:
    """The first block start at or after ``t`` (block starts are multiples of DT)."""
    return float(DT * np.ceil(t / DT - 1e-9))
