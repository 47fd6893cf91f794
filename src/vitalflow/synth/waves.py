"""Wave tracks: SNUADC 500 Hz (ECG_II, ECG_V5, PLETH, ART, FEM, CVP), Primus 62.5 Hz (AWP, CO2)
and BIS 128 Hz (EEG1_WAV, EEG2_WAV), stored as int16 with gain or float32 in ~1 s records.
"""

from __future__ import annotations

import numpy as np

from vitalflow.synth.patient import Flags
from vitalflow.synth.physiology import State
from vitalflow.synth.timeline import Timeline
from vitalflow.vital.write import TrackData

_ADC_HZ, _PRIMUS_HZ, _EEG_HZ = 500.0, 62.5, 128.0  # sample rates (Hz)

# (format, gain, offset) of the stored samples
_WAVE_FMT = {
    "ECG_II": (5, 0.005, 0.0), "ECG_V5": (5, 0.005, 0.0), "PLETH": (5, 0.1, 0.0),
    "ART": (5, 0.05, 0.0), "FEM": (5, 0.05, 0.0), "CVP": (5, 0.05, 0.0),
    "AWP": (1, 1.0, 0.0), "CO2": (1, 1.0, 0.0), "EEG1_WAV": (5, 0.2, 0.0), "EEG2_WAV": (5, 0.2, 0.0),
}  # fmt: skip
_WAVE_UNITS = {"ECG_II": "mV", "ECG_V5": "mV", "PLETH": "", "ART": "mmHg", "FEM": "mmHg", "CVP": "cmH2O",
               "AWP": "hPa", "CO2": "mmHg", "EEG1_WAV": "uV", "EEG2_WAV": "uV"}  # fmt: skip


def _lut(points: list[tuple[float, float, float]], n: int = 1024) -> np.ndarray:
    """Sum of Gaussians (center, width, height) over one cycle [0, 1)."""
    x = np.arange(n) / n
    return sum(h * np.exp(-0.5 * ((x - c) / wd) ** 2) for c, wd, h in points)


_ECG_LUT = _lut([(0.10, 0.025, 0.12), (0.22, 0.008, -0.10), (0.24, 0.010, 1.10), (0.265, 0.010, -0.25), (0.50, 0.050, 0.30)])
_ECG_V5_LUT = _lut([(0.10, 0.025, 0.08), (0.22, 0.008, -0.15), (0.24, 0.011, 1.50), (0.27, 0.012, -0.40), (0.50, 0.055, 0.45)])
_ART_LUT = _lut([(0.10, 0.06, 1.0), (0.30, 0.06, 0.45), (0.16, 0.10, 0.35), (0.55, 0.28, 0.22)])
_ART_LUT = (_ART_LUT - _ART_LUT.min()) / (_ART_LUT.max() - _ART_LUT.min())
_PLETH_LUT = _lut([(0.18, 0.09, 1.0), (0.42, 0.08, 0.35)])
_PLETH_LUT = (_PLETH_LUT - _PLETH_LUT.min()) / (_PLETH_LUT.max() - _PLETH_LUT.min())


def wave_tracks(rng, tl: Timeline, s: State, f: Flags, info: dict) -> list[TrackData]:
    """All wave tracks; ``info`` holds the device spans, gaps and arterial line window of `numeric_tracks`."""
    spans, gaps = info["spans"], info["gaps"]
    T = tl.total
    out: list[TrackData] = []

    # SNUADC: one sample grid shared by all its tracks
    a, b = spans["SNUADC"]
    i0, i1 = int(np.ceil(a * _ADC_HZ)), int(np.floor(b * _ADC_HZ))
    ts = np.arange(i0, i1) / _ADC_HZ
    tg = ts - s.g[0]
    beats = np.cumsum(s["hr"] / 60.0)
    phase = np.interp(tg, np.arange(s.g.size), beats)
    k = (phase * 1024).astype(np.int64) & 1023
    noise = rng.standard_normal(ts.size + 4096, dtype=np.float32)
    resp = np.sin(2 * np.pi * np.interp(tg, np.arange(s.g.size), np.cumsum(np.maximum(s["rr_set"], 12) / 60)))

    def emit(device, name, srate, first, values, window=None):
        fmt, gain, offset = _WAVE_FMT[name]
        if window is not None:
            lo = max(0, int(np.ceil(window[0] * srate)) - first)
            hi = min(values.size, int(np.floor(window[1] * srate)) - first)
            if hi <= lo:
                return
            values, first = values[lo:hi], first + lo
        if fmt == 1:
            stored = np.round(values, 1).astype(np.float32)
        else:
            info16 = np.iinfo(np.int16)
            stored = np.clip(np.rint((values - offset) / gain), info16.min + 1, info16.max).astype(np.int16)
        times, chunks = _chunks(first, stored, srate, gaps[device])
        if chunks:
            unit = _WAVE_UNITS[name]
            out.append(TrackData(device, name, "wave", times, chunks, unit, srate, fmt, gain, offset))

    amp = 0.8 + 0.5 * rng.random()
    ecg = amp * _ECG_LUT[k] + 0.05 * resp + 0.006 * noise[: ts.size]
    _cautery(rng, ecg, ts, tl, noise)
    emit("SNUADC", "ECG_II", _ADC_HZ, i0, ecg)
    if f.ecg_v5:
        emit("SNUADC", "ECG_V5", _ADC_HZ, i0, amp * _ECG_V5_LUT[k] + 0.04 * resp + 0.006 * noise[7 : ts.size + 7])
    if f.pleth:
        kp = (k - 420) & 1023  # pulse arrives ~0.4 cycle after the R wave
        pleth = 25 + (35 + 10 * rng.random()) * _PLETH_LUT[kp] * (1 + 0.03 * resp) + 0.03 * noise[13 : ts.size + 13]
        emit("SNUADC", "PLETH", _ADC_HZ, i0, pleth)
    if f.art:
        ka = (k - 300) & 1023
        sbp, dbp = np.interp(tg, np.arange(s.g.size), s["sbp"]), np.interp(tg, np.arange(s.g.size), s["dbp"])
        ppv = 1 + 0.05 * resp * np.interp(tg, np.arange(s.g.size), s["vent"])
        art = dbp + (sbp - dbp) * _ART_LUT[ka] * ppv + 0.06 * noise[29 : ts.size + 29]
        _flushes(rng, art, ts, info["art_window"])
        emit("SNUADC", "ART", _ADC_HZ, i0, art, info["art_window"])
        if f.fem:
            emit("SNUADC", "FEM", _ADC_HZ, i0, art + 3, info["art_window"])
    if f.cvp:
        cvp = 8 + 2 * resp + 1.5 * _ECG_LUT[(k - 100) & 1023] + 0.1 * noise[41 : ts.size + 41]
        emit("SNUADC", "CVP", _ADC_HZ, i0, cvp, info["art_window"])

    if f.primus:  # airway pressure and capnogram, 62.5 Hz
        a, b = spans["Primus"]
        j0, j1 = int(np.ceil(a * _PRIMUS_HZ)), int(np.floor(b * _PRIMUS_HZ))
        tp = np.arange(j0, j1) / _PRIMUS_HZ
        tgp = tp - s.g[0]
        grid = np.arange(s.g.size)
        breath = np.interp(tgp, grid, np.cumsum(s["rr_set"] / 60))
        ph = breath - np.floor(breath)
        vent = np.interp(tgp, grid, s["vent"])
        peep, pip = np.interp(tgp, grid, s["peep"]), np.interp(tgp, grid, s["pip"])
        insp = ph < 1 / 3
        rise, fall = 1 - np.exp(-ph / 0.04), np.exp(-(ph - 1 / 3) / 0.03)
        awp = peep + (pip - peep) * np.where(insp, rise, fall)
        awp = awp * vent + 0.05 * rng.standard_normal(tp.size)
        emit("Primus", "AWP", _PRIMUS_HZ, j0, awp)
        et = np.interp(tgp, grid, s["etco2"])
        co2 = np.where(insp, et * np.exp(-ph / 0.02), et * (1 - np.exp(-(ph - 1 / 3) / 0.04)))
        emit("Primus", "CO2", _PRIMUS_HZ, j0, co2 + 0.1 * rng.standard_normal(tp.size), (tl.intub + 20, tl.extub))

    if f.bis:  # EEG, 128 Hz: faster and smaller awake, slower and larger anesthetized
        a, b = spans["BIS"]
        j0, j1 = int(np.ceil(a * _EEG_HZ)), int(np.floor(b * _EEG_HZ))
        te = np.arange(j0, j1) / _EEG_HZ
        d = np.interp(te - s.g[0], np.arange(s.g.size), s["depth"])
        white = rng.standard_normal((2, te.size + 16), dtype=np.float32)
        kernel = np.hanning(12).astype(np.float32)
        kernel /= np.sqrt((kernel**2).sum())
        spindle = np.sin(2 * np.pi * 10 * te) * (0.5 + 0.5 * np.sin(2 * np.pi * 0.2 * te))
        for ch, name in enumerate(("EEG1_WAV", "EEG2_WAV")):
            slow = np.convolve(white[ch], kernel, mode="same")[: te.size]
            fast = white[ch][8 : te.size + 8]
            eeg = (1 - d) * 6 * fast + d * (18 * slow + 8 * spindle)
            emit("BIS", name, _EEG_HZ, j0, eeg)
    return out


def _cautery(rng, ecg: np.ndarray, ts: np.ndarray, tl: Timeline, noise: np.ndarray) -> None:
    """Electrocautery bursts during surgery: seconds of large high-frequency noise."""
    if ts.size == 0:
        return
    k = rng.poisson(max(0.0, tl.opend - tl.opstart) / 300)
    for t0, dur in zip(rng.uniform(tl.opstart, tl.opend, k), rng.uniform(2, 10, k)):
        lo, hi = np.searchsorted(ts, [t0, t0 + dur])
        ecg[lo:hi] += 1.5 * noise[: hi - lo]


def _flushes(rng, art: np.ndarray, ts: np.ndarray, window) -> None:
    """Arterial line artefacts: flush (~300 mmHg) and blood sampling (~0 mmHg)."""
    for level in (300.0, 0.0):
        for t0 in rng.uniform(window[0], max(window[0], window[1]), rng.poisson(1.5)):
            lo, hi = np.searchsorted(ts, [t0, t0 + rng.uniform(5, 20)])
            art[lo:hi] = level + rng.standard_normal(hi - lo)


def _chunks(first: int, stored: np.ndarray, srate: float, gaps) -> tuple[np.ndarray, list[np.ndarray]]:
    """Split samples (sample index ``first`` onwards) into ~1 s records; drop records in gaps."""
    last = first + stored.size
    bounds = np.round(np.arange(np.ceil(first / srate), last / srate) * srate).astype(np.int64)
    bounds = np.unique(np.concatenate([[first], bounds[(bounds > first) & (bounds < last)], [last]]))
    starts = bounds[:-1]
    times = starts / srate
    keep = np.ones(starts.size, dtype=bool)
    for g0, g1 in gaps:
        keep &= (times < g0) | (times >= g1)
    rel = (bounds - first).tolist()
    chunks = [stored[rel[i] : rel[i + 1]] for i in np.flatnonzero(keep).tolist()]
    return times[keep], chunks
