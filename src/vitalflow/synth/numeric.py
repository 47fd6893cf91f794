"""Numeric and string tracks of Solar8000 (with NIBP), Primus, BIS, Orchestra pumps, EV1000.

Each device has its own record interval, span (start and end) and unplugged gaps; record times
carry a few ms of jitter, and values get runs of artefacts (spikes, zeros, negative and absurd
values, NaN). `numeric_tracks` also returns the spans and gaps the wave tracks follow.
"""

from __future__ import annotations

import numpy as np

from vitalflow.synth.patient import Flags, Patient
from vitalflow.synth.physiology import State, drift, steps
from vitalflow.synth.timeline import EVENTS, Timeline
from vitalflow.vital.write import TrackData

# device record intervals in seconds
_SOLAR, _PRIMUS, _BIS, _ORCH, _EV1000 = 2.0, 7.0, 1.0, 1.0, 2.0

_UNITS = {
    "HR": "/min", "PLETH_HR": "/min", "PLETH_SPO2": "%", "ART_SBP": "mmHg", "ART_DBP": "mmHg",
    "ART_MBP": "mmHg", "NIBP_SBP": "mmHg", "NIBP_DBP": "mmHg", "NIBP_MBP": "mmHg", "ETCO2": "mmHg",
    "INCO2": "mmHg", "RR_CO2": "/min", "FIO2": "%", "FEO2": "%", "GAS2_EXPIRED": "%",
    "GAS2_INSPIRED": "%", "BT": "C", "RR": "/min", "CVP": "mmHg", "FEM_SBP": "mmHg",
    "FEM_DBP": "mmHg", "FEM_MBP": "mmHg", "VENT_TV": "mL", "VENT_MEAS_PEEP": "hPa", "VENT_RR": "/min",
    "VENT_PIP": "mbar", "VENT_MV": "L/min", "VENT_PPLAT": "mbar", "VENT_MAWP": "mbar",
    "VENT_SET_TV": "mL", "VENT_SET_FIO2": "%", "VENT_INSP_TM": "sec", "TV": "mL", "MV": "L",
    "PEEP_MBAR": "mbar", "PIP_MBAR": "mbar", "PPLAT_MBAR": "mbar", "MAWP_MBAR": "mbar",
    "PAMB_MBAR": "mbar", "COMPLIANCE": "mL / mbar", "SET_TV_L": "L", "SET_RR_IPPV": "/min",
    "SET_INTER_PEEP": "mbar", "SET_FIO2": "%", "SET_INSP_TM": "sec", "EXP_SEVO": "kPa",
    "INSP_SEVO": "kPa", "FLOW_O2": "mL / min", "FLOW_AIR": "mL / min", "SQI": "%", "EMG": "dB",
    "SR": "%", "SEF": "Hz", "TOTPOW": "dB", "CO": "L/min", "CI": "L/min/m2", "SV": "ml/beat",
    "SVV": "%", "FLOW_N2O": "mL/min", "SET_FRESH_FLOW": "mL/min", "VENT_LEAK": "mL/min",
    "SET_INSP_PAUSE": "%", "SET_FLOW_TRIG": "L/min", "VENT_COMPL": "mL/cmH2O",
}  # fmt: skip
_UNITS.update(dict.fromkeys(("ST_I", "ST_II", "ST_III", "ST_AVL", "ST_AVR", "ST_AVF", "ST_V5"), "mm"))


class _Builder:
    """Collects numeric tracks of one device: shared record times, per-track windows."""

    def __init__(self, rng, device: str, times: np.ndarray):
        self.rng, self.device, self.times, self.tracks = rng, device, times, []

    def add(self, name, values, decimals: int | None, window=None, spikes=(), rate=2e-4, unit=None) -> None:
        """Add track ``name`` (values at the device times), kept to ``window`` if given, rounded
        to ``decimals``, with runs of the ``spikes`` values at about ``rate`` per record."""
        t = self.times
        if window is not None:
            keep = (t >= window[0]) & (t < window[1])
            t, values = t[keep], values[keep]
        if t.size == 0:
            return
        values = np.asarray(values, dtype=np.float64)
        if decimals is not None:
            values = np.round(values, decimals)
        if spikes:
            values = _artefacts(self.rng, values, rate, spikes)
        unit = _UNITS.get(name, "") if unit is None else unit
        self.tracks.append(TrackData(self.device, name, "num", t, values.astype(np.float32), unit=unit))


def _artefacts(rng, values: np.ndarray, rate: float, choices) -> np.ndarray:
    """Replace short runs (1-5 records) by implausible values, NaN or zeros."""
    k = rng.poisson(values.size * rate)
    if k == 0:
        return values
    values = values.copy()
    where, length, pick = rng.integers(0, values.size, k), rng.integers(1, 6, k), rng.integers(0, len(choices), k)
    for i, n, c in zip(where, length, pick):
        values[i : i + n] = choices[c]
    return values


def _span(a: float, b: float, total: float) -> tuple[float, float]:
    """Device connected from ``a`` to ``b``, cut to the recording."""
    return max(0.0, a), min(total, b)


def _gaps(rng, span, per_hour: float = 0.35) -> list[tuple[float, float]]:
    """Unplugged intervals of 30 s-10 min in ``span``, about ``per_hour`` per hour, sorted."""
    a, b = span
    if b <= a:
        return []
    k = rng.poisson((b - a) / 3600 * per_hour)
    starts = rng.uniform(a, b, k)
    lengths = np.exp(rng.uniform(np.log(30), np.log(600), k))
    return sorted(zip(starts.tolist(), (starts + lengths).tolist()))


def _device_times(rng, span, interval: float, gaps) -> np.ndarray:
    """Record times every ``interval`` seconds in ``span`` with ms jitter, outside ``gaps``."""
    a, b = span
    t = a + np.arange(max(0, int(np.ceil((b - a) / interval)))) * interval
    t = np.round(t + rng.uniform(-0.01, 0.01, t.size) * min(1.0, interval), 3)
    keep = (t >= 0) & (t < b)
    for g0, g1 in gaps:
        keep &= (t < g0) | (t >= g1)
    return t[keep]


def numeric_tracks(rng, tl: Timeline, s: State, p: Patient, f: Flags):
    """All numeric and string tracks; also returns device spans and gaps for the waves."""
    T, fs = tl.total, tl.fs
    u = rng.random(14)
    spans = {
        "Solar8000": _span(30 * u[0], T - 30 * u[1], T),
        "Primus": _span(tl.anestart - (1 + 4 * u[2]) * 60 * fs, T - 60 * u[3], T),
        "BIS": _span(tl.anestart - (1 + 7 * u[4]) * 60 * fs, tl.aneend + 300 * u[5] * fs, T),
        "Orchestra": _span(tl.anestart - (0.5 + 2.5 * u[6]) * 60 * fs, tl.aneend + (1 + 9 * u[7]) * 60 * fs, T),
        "EV1000": _span(tl.artline if tl.artline is not None else T, T - 60 * u[8], T),
        "SNUADC": _span(60 * u[11], T - 30 * u[1], T),
    }
    gaps = {dev: _gaps(rng, span) for dev, span in spans.items()}
    art_window = (tl.artline if tl.artline is not None else T, T - 120 * u[9])
    vent_window = (tl.intub + 20, tl.extub)
    tracks = []

    # ---- Solar8000 (2 s)
    b = _Builder(rng, "Solar8000", _device_times(rng, spans["Solar8000"], _SOLAR, gaps["Solar8000"]))
    t = b.times
    hr = s.at("hr", t) + rng.normal(0, 1, t.size)
    if f.hr:
        b.add("HR", hr, 0, spikes=(0, 350, -1, 255, np.nan), rate=4e-4)
    if f.pleth_hr:
        b.add("PLETH_HR", hr + rng.normal(0, 1, t.size), 0, spikes=(0, np.nan, 300), rate=3e-4)
    spo2 = np.minimum(s.at("spo2", t) + rng.normal(0, 0.4, t.size), 100)
    b.add("PLETH_SPO2", spo2, 0, spikes=(0, 0, np.nan, 40), rate=4e-4)
    if f.art:
        sbp, dbp, mbp = (s.at(k, t) + rng.normal(0, 1, t.size) for k in ("sbp", "dbp", "mbp"))
        b.add("ART_SBP", sbp, 0, art_window, spikes=(0, 300, -20, np.nan), rate=5e-4)
        b.add("ART_DBP", dbp, 0, art_window, spikes=(0, 300, -20, np.nan), rate=5e-4)
        if not f.no_mbp:
            b.add("ART_MBP", mbp, 0, art_window, spikes=(0, 300, -20, np.nan), rate=5e-4)
    if f.solar_capno:
        etco2 = s.at("etco2", t) + rng.normal(0, 0.5, t.size)
        b.add("ETCO2", etco2, 0, vent_window, spikes=(0, 99, np.nan), rate=2e-4)
        b.add("INCO2", np.abs(rng.normal(0, 0.4, t.size)), 0, vent_window)
        b.add("RR_CO2", s.at("rr_set", t), 0, vent_window, spikes=(0, 60), rate=1e-4)
    if f.solar_gas:
        pamb_kpa = s.at("pamb", t) / 10
        b.add("FIO2", s.at("fio2", t), 0, (tl.anestart - 180, tl.extub))
        b.add("FEO2", s.at("fio2", t) - 4 + rng.normal(0, 0.5, t.size), 0, (tl.anestart - 180, tl.extub))
        if not f.tiva:
            b.add("GAS2_EXPIRED", s.at("exp_sevo", t) * 100 / pamb_kpa, 1, vent_window, spikes=(np.nan,), rate=1e-4)
            b.add("GAS2_INSPIRED", s.at("insp_sevo", t) * 100 / pamb_kpa, 1, vent_window)
    if f.solar_vent:
        tv, rr = s.at("tv", t), s.at("rr_set", t)
        b.add("VENT_TV", tv, 0, vent_window, spikes=(0, 2000, np.nan), rate=1e-4)
        b.add("VENT_MEAS_PEEP", s.at("peep", t), 1, vent_window)
        b.add("VENT_RR", rr, 0, vent_window)
        b.add("VENT_PIP", s.at("pip", t), 0, vent_window)
        b.add("VENT_PPLAT", s.at("pip", t) - 2, 0, vent_window)
        b.add("VENT_MAWP", s.at("peep", t) + 3, 0, vent_window)
        b.add("VENT_MV", tv * rr / 1000, 1, vent_window)
        b.add("VENT_SET_TV", s.at("tv_set", t), 0, vent_window)
        b.add("VENT_SET_FIO2", s.at("fio2_set", t), 0, vent_window)
        b.add("VENT_INSP_TM", 60 / np.maximum(rr, 1) / 3, 1, vent_window)
        b.add("VENT_COMPL", s.at("compliance", t), 0, vent_window)
    if f.rr_imp:
        awake = 1 - s.at("vent", t)
        rr_imp = np.where(awake > 0, 16 + rng.normal(0, 2, t.size), s.at("rr_set", t) + rng.normal(0, 0.5, t.size))
        b.add("RR", rr_imp, 0, spikes=(0, 80), rate=3e-4)
    if f.bt:
        probe = (tl.intub + (2 + 13 * u[10]) * 60 * fs, tl.extub)  # esophageal probe after intubation
        b.add("BT", s.at("bt", t), 1, probe, spikes=(0, 25.0, np.nan), rate=2e-4)
    b.add("ST_II", rng.normal(0.1, 0.15, t.size), 1)
    if f.st_leads:
        leads = (("ST_I", 0.0), ("ST_III", 0.1), ("ST_AVL", -0.1), ("ST_AVR", -0.1), ("ST_AVF", 0.1), ("ST_V5", 0.2))
        for name, mean in leads:
            b.add(name, rng.normal(mean, 0.15, t.size), 1)
    if f.cvp:
        b.add("CVP", 8 + 2 * s.at("vent", t) + rng.normal(0, 1, t.size), 0, art_window)
    if f.fem:
        for k in ("sbp", "dbp") + (() if f.no_mbp else ("mbp",)):
            b.add(f"FEM_{k.upper()}", s.at(k, t) + 3 + rng.normal(0, 1, t.size), 0, art_window)
    tracks += b.tracks

    # ---- NIBP (Solar8000, one cuff reading per cycle)
    # the cuff times and errors come from the physiology: the simulated clinician reads them
    a, e = spans["Solar8000"]
    tn, err = s.nibp_times, s.nibp_err
    keep = (tn >= a + 15) & (tn >= 0) & (tn < e)
    for g0, g1 in gaps["Solar8000"]:
        keep &= (tn < g0) | (tn >= g1)
    tn, err = tn[keep], err[keep]
    nb = _Builder(rng, "Solar8000", tn)
    nb.add("NIBP_SBP", s.at("sbp", tn) + err, 0, spikes=(0, 300, np.nan), rate=5e-3)
    nb.add("NIBP_DBP", s.at("dbp", tn) + err * 0.6, 0, spikes=(0, np.nan), rate=5e-3)
    if not f.no_mbp:
        nb.add("NIBP_MBP", s.at("mbp", tn) + err * 0.8, 0, spikes=(0, np.nan), rate=5e-3)
    tracks += nb.tracks

    # ---- Primus (7 s)
    if f.primus:
        b = _Builder(rng, "Primus", _device_times(rng, spans["Primus"], _PRIMUS, gaps["Primus"]))
        t = b.times
        tv, rr, peep = s.at("tv", t), s.at("rr_set", t), s.at("peep", t)
        pre_ox = (tl.anestart - 180, tl.extub)
        etco2 = s.at("etco2", t) + rng.normal(0, 0.5, t.size)
        b.add("ETCO2", etco2, 0, vent_window, spikes=(0, 99, -1, np.nan), rate=5e-4)
        b.add("INCO2", np.abs(rng.normal(0, 0.3, t.size)), 0, vent_window)
        b.add("RR_CO2", rr, 0, vent_window, spikes=(0, 60), rate=2e-4)
        b.add("FIO2", s.at("fio2", t), 0, pre_ox, spikes=(0, np.nan), rate=2e-4)
        b.add("FEO2", s.at("fio2", t) - 4 + rng.normal(0, 0.5, t.size), 0, pre_ox)
        b.add("TV", tv, 0, vent_window, spikes=(0, 3000, np.nan), rate=3e-4)
        b.add("MV", tv * rr / 1000, 1, vent_window)
        b.add("PEEP_MBAR", peep, 1, vent_window, spikes=(0, -1, 50, np.nan), rate=3e-4)
        b.add("PIP_MBAR", s.at("pip", t), 0, vent_window)
        b.add("PPLAT_MBAR", s.at("pip", t) - 2, 0, vent_window)
        b.add("MAWP_MBAR", peep + 3, 0, vent_window)
        b.add("COMPLIANCE", s.at("compliance", t), 0, vent_window)
        b.add("PAMB_MBAR", s.at("pamb", t), 0)
        b.add("SET_TV_L", s.at("tv_set", t) / 1000, 2, vent_window)
        b.add("SET_RR_IPPV", rr, 0, vent_window)
        b.add("SET_INTER_PEEP", s.at("peep_set", t), 0, vent_window)
        b.add("SET_FIO2", s.at("fio2_set", t), 0, pre_ox)
        b.add("SET_INSP_TM", 60 / np.maximum(rr, 1) / 3, 1, vent_window)
        o2 = np.where(s.at("vent", t) > 0, 1000.0, 6000.0)
        b.add("FLOW_O2", o2, 0, pre_ox)
        b.add("FLOW_AIR", np.where(s.at("vent", t) > 0, 1000.0, 0.0), 0, pre_ox)
        b.add("FLOW_N2O", np.zeros(t.size), 0, pre_ox)
        b.add("SET_FRESH_FLOW", np.where(s.at("vent", t) > 0, 2000.0, 6000.0), 0, pre_ox)
        b.add("VENT_LEAK", 80 + 40 * np.abs(rng.standard_normal(t.size)), 0, vent_window)
        b.add("SET_INSP_PAUSE", np.full(t.size, 10.0), 0, vent_window)
        b.add("SET_FLOW_TRIG", np.full(t.size, 2.0), 0, vent_window)
        b.add("SET_AGE", np.full(t.size, float(int(p.age))), 0)
        if f.primus_sevo:
            exp_sevo, insp_sevo = s.at("exp_sevo", t), s.at("insp_sevo", t)
            b.add("EXP_SEVO", exp_sevo, 2, vent_window, spikes=(np.nan, -0.1), rate=1e-4)
            b.add("INSP_SEVO", insp_sevo, 2, vent_window)
            mac_age = 2.05 * 10 ** (-0.00269 * (max(p.age, 1) - 40))
            b.add("MAC", exp_sevo * 100 / (s.at("pamb", t) / 10) / mac_age, 2, vent_window)
        tracks += b.tracks

    # ---- BIS (1 s)
    if f.bis:
        b = _Builder(rng, "BIS", _device_times(rng, spans["BIS"], _BIS, gaps["BIS"]))
        t = b.times
        d = s.at("depth", t)
        b.add("BIS", s.at("bis", t) + rng.normal(0, 1, t.size), 0, spikes=(0, np.nan, 100), rate=3e-4)
        b.add("SQI", np.clip(95 + rng.normal(0, 4, t.size) - 30 * (rng.random(t.size) < 0.02), 0, 100), 0)
        b.add("EMG", 45 - 18 * d + rng.normal(0, 2, t.size), 1)
        b.add("SEF", 24 - 10 * d + rng.normal(0, 1, t.size), 1)
        b.add("SR", np.where(s.at("bis", t) < 35, rng.uniform(0, 20, t.size), 0.0), 0)
        b.add("TOTPOW", 62 + 10 * d + rng.normal(0, 2, t.size), 1)
        tracks += b.tracks

    # ---- Orchestra pumps (1 s)
    b = _Builder(rng, "Orchestra", _device_times(rng, spans["Orchestra"], _ORCH, gaps["Orchestra"]))
    t = b.times
    w = p.weight
    for drug in ("PPF20", "RFTN20", "RFTN50", "NEPI"):
        if drug not in s:
            continue
        rate = s[drug]
        b.add(f"{drug}_RATE", rate[s.index(t)], 1, spikes=(-1.0, np.nan), rate=5e-5, unit="mL/h")
        vol = np.cumsum(rate) / 3600
        b.add(f"{drug}_VOL", vol[s.index(t)], 2, unit="mL")
        if f"{drug}_CT" in s:  # a TCI pump: target, plasma and effect-site concentrations (model)
            unit = "mcg/mL" if drug == "PPF20" else "ng/mL"
            b.add(f"{drug}_CT", s[f"{drug}_CT"][s.index(t)], 1, unit=unit)
            b.add(f"{drug}_CP", s[f"{drug}_CP"][s.index(t)], 2, unit=unit)
            b.add(f"{drug}_CE", s[f"{drug}_CE"][s.index(t)], 2, unit=unit)

    # other infusions now and then (phenylephrine, rocuronium): rate and volume only
    for drug, share, ml_h in (("PHEN", 0.06, 10.0), ("ROC", 0.05, 5.0)):
        if u[12] < share or (drug == "ROC" and 0.5 < u[12] < 0.5 + share):
            on = tl.intub + rng.uniform(0.1, 0.5) * (tl.stop - tl.intub)
            rate = np.round(steps(rng, s.g, on, tl.stop, ml_h * w / 70, 0.3, 0.5, 60, tl.fl), 1)
            b.add(f"{drug}_RATE", rate[s.index(t)], 1, unit="mL/h")
            b.add(f"{drug}_VOL", (np.cumsum(rate) / 3600)[s.index(t)], 2, unit="mL")
    tracks += b.tracks

    # ---- EV1000 (rare; needs the arterial line)
    if f.ev1000 and tl.artline is not None:
        b = _Builder(rng, "EV1000", _device_times(rng, spans["EV1000"], _EV1000, gaps["EV1000"]))
        t = b.times
        co = 4.5 * (w / 70) ** 0.75 * (1 + drift(rng, t.size, 600, 0.08))
        if not f.no_mbp:
            b.add("ART_MBP", s.at("mbp", t) + rng.normal(0, 1, t.size), 0, spikes=(0, np.nan), rate=2e-4)
        b.add("CO", co, 1)
        b.add("CI", co / 1.8, 1)
        b.add("SV", co * 1000 / s.at("hr", t), 0)
        b.add("SVV", 10 + drift(rng, t.size, 300, 3), 0)
        tracks += b.tracks

    # ---- events (string track without a device, as Vital Recorder writes it)
    if f.event:
        when = (tl.anestart, tl.intub, tl.artline, tl.opstart, tl.opend, tl.extub)
        ev = [(round(w_, 3), name) for w_, name in zip(when, EVENTS) if w_ is not None and 0 <= w_ < T]
        if ev:
            tracks.append(TrackData("", "EVENT", "str", np.array([e[0] for e in ev]), [e[1] for e in ev]))
    return tracks, {"spans": spans, "gaps": gaps, "art_window": art_window}
