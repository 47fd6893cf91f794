"""Synthetic VitalDB-like recordings and clinical table (demo data, test and benchmark corpus).

`synth_case` builds one case in memory (pure: same arguments, same result); `synth_corpus`
writes ``0001.vital``, ``0002.vital``, ... and ``clinical.csv``. Case ``i`` draws from its own
random streams seeded by ``(seed, i)``, so it does not depend on how many cases are written.

What a case looks like (the numbers follow VitalDB; see SPEC.md, "VitalDB facts"):

- Devices and intervals: Solar8000 numerics every 2 s, NIBP one reading every 2.5-5 min, Primus
  every 7 s, BIS and Orchestra pumps every 1 s, EV1000 (rare) every 2 s; waves SNUADC 500 Hz
  (ECG_II, ECG_V5, PLETH, ART after the arterial line, CVP/FEM in a few cases; int16 with gain),
  Primus AWP/CO2 62.5 Hz (float32), BIS EEG1_WAV/EEG2_WAV 128 Hz (int16 with gain). Record times
  carry a few ms of jitter; each device has its own start, end and unplugged gaps.
- Timeline: awake monitoring, induction at ``anestart`` (propofol/remifentanil bolus then
  maintenance rates stepped every 10-30 min), intubation 2-6 min later (EtCO2 and ventilator
  values appear only then), incision, sevoflurane for non-TIVA cases, drugs off near the end of
  surgery, extubation, ``aneend``. Arterial line 10-40 min after induction in ~60 % of cases.
- Drug presence like VitalDB: propofol pump ~55 %, remifentanil ~75 % (RFTN20, sometimes
  RFTN50), norepinephrine ~1.4 % (case ids with ``id % 71 == 19``).
- Artefacts: spikes, zeros, negative and absurd values, NaN, device gaps of 30 s-10 min.
- Clinical table quirks, on a fixed schedule of case ids so any corpus of >= 20 cases has each:
  ``id % 10 == 3`` anestart < 0 (recording started after induction); ``id % 10 == 8`` corrupt
  aneend (before anestart, or days past caseend); ``id % 12 == 5`` ASA missing;
  ``id % 25 == 11`` ASA 6; ``id % 10 == 6`` no *_MBP track at all; ``id % 20 == 14`` EV1000.
  Subjects: case ids come in blocks of 20; the first 2-4 cases of a block share a subject,
  position 7 of a block is an infant (< 100 cm, < 10 kg), position 13 a child (100-150 cm), and
  block 10 (cases 181-200, 381-400, ...) opens with one subject having 14 cases.
- Layout: odd case ids are written "interleaved" (Vital Recorder), even ones "packed" (vitaldb).

>>> tracks, row, start, layout = synth_case(1, seed=0, hours=0.5, waves=False)
>>> layout, row["caseid"], row["casestart"], row["caseend"]
('interleaved', 1, 0, 1800)
>>> "Solar8000/HR" in {t.dtname for t in tracks} or "Solar8000/PLETH_HR" in {t.dtname for t in tracks}
True
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vitalflow.vital.write import TrackData, write_vital

__all__ = ["CLINICAL_COLUMNS", "synth_case", "synth_corpus"]

CLINICAL_COLUMNS = (
    "caseid", "subjectid", "casestart", "caseend", "anestart", "aneend", "opstart", "opend",
    "adm", "dis", "icu_days", "death_inhosp", "age", "sex", "height", "weight", "bmi", "asa",
    "emop", "department", "optype", "dx", "opname", "approach", "position", "ane_type",
)  # fmt: skip

_EPOCH_KST = 1469977200.0  # 2016-08-01 00:00 KST, start of VitalDB's collection period
_MIN_HOURS = 0.1
_BLOCK = 20  # case ids per subject block
_FORCED_STARTS = (7, 8, 13, 14, _BLOCK)  # block positions that always start a new subject
_INFANT_POS, _CHILD_POS = 7, 13
_FREQUENT_FLYER_CASES = 14  # block b with b % 10 == 9 opens with one subject having 14 cases

# device record intervals in seconds
_SOLAR, _PRIMUS, _BIS, _ORCH, _EV1000 = 2.0, 7.0, 1.0, 1.0, 2.0
_NIBP_CYCLES = (150.0, 180.0, 240.0, 300.0)
_ADC_HZ, _PRIMUS_HZ, _EEG_HZ = 500.0, 62.5, 128.0

# (department, optype, dx, opname, approach choices, position, sex or "")
_PROCEDURES = (
    ("General surgery", "Colorectal", "Rectal cancer", "Low anterior resection", ("Open", "Videoscopic", "Robotic"), "Lithotomy", ""),
    ("General surgery", "Colorectal", "Sigmoid colon cancer", "Anterior resection", ("Open", "Videoscopic"), "Supine", ""),
    ("General surgery", "Stomach", "Stomach cancer", "Distal gastrectomy", ("Open", "Videoscopic", "Robotic"), "Supine", ""),
    ("General surgery", "Stomach", "Stomach cancer", "Total gastrectomy", ("Open", "Videoscopic"), "Supine", ""),
    ("General surgery", "Biliary/Pancreas", "Pancreatic cancer", "Pylorus preserving pancreaticoduodenectomy", ("Open",), "Supine", ""),
    ("General surgery", "Biliary/Pancreas", "Gallbladder stone", "Cholecystectomy", ("Videoscopic",), "Reverse Trendelenburg", ""),
    ("General surgery", "Hepatic", "Hepatocellular carcinoma", "Hemihepatectomy", ("Open", "Videoscopic"), "Supine", ""),
    ("General surgery", "Breast", "Breast cancer", "Breast-conserving surgery", ("Open",), "Supine", "F"),
    ("General surgery", "Thyroid", "Thyroid cancer", "Total thyroidectomy", ("Open", "Robotic"), "Supine", ""),
    ("General surgery", "Vascular", "Varicose vein", "Stripping of varicose vein", ("Open",), "Supine", ""),
    ("General surgery", "Transplantation", "Liver cirrhosis", "Liver transplantation", ("Open",), "Supine", ""),
    ("Thoracic surgery", "Major resection", "Lung cancer", "Lobectomy", ("Videoscopic", "Open"), "Left lateral decubitus", ""),
    ("Thoracic surgery", "Minor resection", "Lung nodule", "Wedge resection", ("Videoscopic",), "Right lateral decubitus", ""),
    ("Gynecology", "Others", "Uterine leiomyoma", "Total laparoscopic hysterectomy", ("Videoscopic", "Robotic"), "Lithotomy", "F"),
    ("Gynecology", "Major resection", "Ovarian cancer", "Debulking operation", ("Open",), "Lithotomy", "F"),
    ("Urology", "Others", "Prostate cancer", "Robot-assisted radical prostatectomy", ("Robotic",), "Trendelenburg", "M"),
    ("Urology", "Major resection", "Renal cell carcinoma", "Partial nephrectomy", ("Robotic", "Open"), "Left lateral decubitus", ""),
)  # fmt: skip
_PEDIATRIC_PROCEDURES = (
    ("General surgery", "Others", "Inguinal hernia", "Herniorrhaphy", ("Open", "Videoscopic"), "Supine", ""),
    ("General surgery", "Biliary/Pancreas", "Choledochal cyst", "Excision of choledochal cyst", ("Open", "Videoscopic"), "Supine", ""),
    ("Urology", "Others", "Vesicoureteral reflux", "Ureteroneocystostomy", ("Open",), "Supine", ""),
)  # fmt: skip
_EVENTS = ("Induction", "Intubation", "A-line", "Incision", "Surgery end", "Extubation")


# =========================================================================== public API


def synth_case(
    case_id: int, seed: int = 0, hours: float | None = None, waves: bool = True
) -> tuple[list[TrackData], dict, float, str]:
    """Build one synthetic case: ``(tracks, clinical_row, start_unix_time, layout)``.

    ``hours=None`` draws the case length (anesthesia 90-240 min, median 150, plus 10-30 min
    before and after); ``hours=H`` makes the recording H hours long (H >= 0.1). Numeric tracks
    do not depend on ``waves``.
    """
    _check_int("case_id", case_id, 1)
    _check_int("seed", seed, 0)
    if hours is not None and not (isinstance(hours, (int, float)) and hours >= _MIN_HOURS):
        raise ValueError(f"hours must be None or a number >= {_MIN_HOURS}, got {hours!r}")
    rng = np.random.default_rng([seed, case_id, 0])
    patient = _patient(seed, case_id, rng)
    flags = _flags(rng, case_id, patient)
    tl = _timeline(rng, case_id, hours, flags)
    state = _state(rng, tl, patient, flags)
    tracks, spans = _numeric_tracks(rng, tl, state, patient, flags)
    if waves:
        wrng = np.random.default_rng([seed, case_id, 1])
        tracks = _wave_tracks(wrng, tl, state, flags, spans) + tracks
    row = _clinical_row(rng, seed, case_id, patient, tl)
    start = _EPOCH_KST + float(rng.integers(0, 330)) * 86400 + float(rng.integers(27000, 55800))
    layout = "interleaved" if case_id % 2 else "packed"
    return tracks, row, start, layout


def synth_corpus(
    out_dir: str | os.PathLike, cases: int, seed: int = 0, hours: float | None = None, waves: bool = True
) -> list[Path]:
    """Write ``cases`` recordings (``0001.vital`` ...) and ``clinical.csv`` into ``out_dir``.

    Returns the paths of the `.vital` files. Same arguments, same bytes.
    """
    _check_int("cases", cases, 0)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths, rows = [], []
    width = max(4, len(str(cases)))
    for case_id in range(1, cases + 1):
        tracks, row, start, layout = synth_case(case_id, seed=seed, hours=hours, waves=waves)
        path = out / f"{case_id:0{width}d}.vital"
        write_vital(path, tracks, start, layout=layout)
        paths.append(path)
        rows.append(row)
    _write_csv(out / "clinical.csv", rows)
    return paths


def _check_int(name: str, value: object, lo: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo:
        raise ValueError(f"{name} must be an int >= {lo}, got {value!r}")


def _write_csv(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CLINICAL_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row[k] is None else row[k] for k in CLINICAL_COLUMNS})
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    tmp.write_text(buf.getvalue(), encoding="utf-8")
    os.replace(tmp, path)


# =========================================================================== patient and plan


@dataclass(frozen=True)
class _Patient:
    subjectid: int
    kind: str  # "adult" | "child" | "infant"
    sex: str
    age: float
    height: float
    weight: float
    ibw: float  # body weight used for ventilator settings (Devine, or actual weight for children)


def _block_groups(seed: int, block: int) -> list[tuple[int, int]]:
    """Partition of the 20 positions of a block into subjects: [(first position, size)]."""
    if block % 10 == 9:
        head = _FREQUENT_FLYER_CASES
        return [(0, head)] + [(p, 1) for p in range(head, _BLOCK)]
    rng = np.random.default_rng([seed, 2, block])
    groups = [(0, int(rng.integers(2, 5)))]
    pos = groups[0][1]
    while pos < _BLOCK:
        size = int(rng.choice([1, 2, 3, 4, 6], p=[0.8, 0.1, 0.05, 0.03, 0.02]))
        end = min([pos + size] + [b for b in _FORCED_STARTS if b > pos])
        groups.append((pos, end - pos))
        pos = end
    return groups


def _patient(seed: int, case_id: int, rng: np.random.Generator) -> _Patient:
    block, pos = divmod(case_id - 1, _BLOCK)
    first, nth = next((s, pos - s) for s, n in _block_groups(seed, block) if s <= pos < s + n)
    key = block * _BLOCK + first
    srng = np.random.default_rng([seed, 3, key])  # shared by all cases of the subject
    u = srng.random()
    if block % 10 != 9 and first == _INFANT_POS or u < 0.006:
        kind = "infant"
    elif block % 10 != 9 and first == _CHILD_POS or u < 0.015:
        kind = "child"
    else:
        kind = "adult"
    sex = "M" if srng.random() < 0.5 else "F"
    later = nth * srng.uniform(0.05, 0.6)  # years between the subject's cases
    if kind == "adult":
        age = float(np.clip(round(srng.normal(58, 14) + later), 18, 90))
        height = srng.normal(170.5 if sex == "M" else 157.5, 6.0)
        weight = float(np.clip(srng.normal(23.5, 3.4), 16, 42)) * (height / 100) ** 2
        ibw = (50.0 if sex == "M" else 45.5) + 0.91 * (height - 152.4)
    elif kind == "child":
        age = round(srng.uniform(3, 12) + later, 1)
        height = float(np.clip(95 + (age - 3) * 6.0 + srng.normal(0, 4), 100, 149))
        weight = srng.uniform(14, 19) * (height / 100) ** 2
        ibw = weight
    else:
        age = round(srng.uniform(0.1, 1.2) + later / 4, 1)
        height = float(np.clip(50 + age * 25 + srng.normal(0, 3), 48, 95))
        weight = float(np.clip(3.3 + (height - 50) * 0.16 + srng.normal(0, 0.3), 2.5, 9.8))
        ibw = weight
    weight *= 1 + rng.normal(0, 0.015)  # a case-to-case change
    if kind == "infant":
        weight = min(weight, 9.9)
    subjectid = (key * 7919 + seed * 104729) % 999983 + 1
    return _Patient(subjectid, kind, sex, age, round(height, 1), round(weight, 1), max(ibw, weight * 0.7))


@dataclass(frozen=True)
class _Flags:
    tiva: bool
    ppf: bool
    rftn: int  # 0 (none), 20 or 50 ug/mL
    nepi: bool
    no_mbp: bool
    ev1000: bool
    art: bool
    primus: bool
    primus_sevo: bool
    solar_vent: bool
    solar_capno: bool
    solar_gas: bool
    bis: bool
    hr: bool
    pleth_hr: bool
    rr_imp: bool
    bt: bool
    st_leads: bool
    ecg_v5: bool
    pleth: bool
    cvp: bool
    fem: bool
    event: bool
    nibp_cycle: float


def _flags(rng: np.random.Generator, case_id: int, p: _Patient) -> _Flags:
    u = rng.random(24)
    tiva = bool(u[0] < 0.52)
    primus = bool(u[6] < 0.88)
    hr = bool(u[10] > 0.03)
    ev1000 = case_id % 20 == 14
    return _Flags(
        tiva=tiva,
        ppf=bool(tiva or u[1] < 0.06),
        rftn=(50 if u[3] < 0.25 else 20) if u[2] < (0.95 if tiva else 0.53) else 0,
        nepi=case_id % 71 == 19,
        no_mbp=case_id % 10 == 6,
        ev1000=ev1000,
        art=bool(ev1000 or u[4] < 0.6) and p.kind != "infant",
        primus=primus,
        primus_sevo=bool(not tiva or u[5] < 0.5),
        solar_vent=bool(not primus or u[7] < 0.1),
        solar_capno=bool(not primus or u[8] < 0.85),
        solar_gas=bool(not primus or u[9] < 0.45),
        bis=bool(u[11] < 0.9),
        hr=hr,
        pleth_hr=bool(not hr or u[12] < 0.95),
        rr_imp=bool(u[13] < 0.6),
        bt=bool(u[14] < 0.9),
        st_leads=bool(u[15] < 0.5),
        ecg_v5=bool(u[16] < 0.8),
        pleth=bool(u[17] < 0.95),
        cvp=bool(u[18] < 0.08) and p.kind == "adult",
        fem=bool(u[19] < 0.03) and p.kind == "adult",
        event=bool(u[20] < 0.85),
        nibp_cycle=_NIBP_CYCLES[int(u[21] * len(_NIBP_CYCLES))],
    )


@dataclass(frozen=True)
class _Timeline:
    total: float  # recording length (s)
    anestart: float
    aneend: float
    intub: float
    opstart: float
    stop: float  # pumps and sevoflurane off
    opend: float
    extub: float
    artline: float | None
    fs: float  # time scale for minute-long steps (1 unless the case is short)
    fl: float  # time scale for tens-of-minutes steps


def _timeline(rng: np.random.Generator, case_id: int, hours: float | None, f: _Flags) -> _Timeline:
    pre, post = rng.uniform(10, 30, 2) * 60
    if hours is None:
        dur = float(np.clip(np.exp(rng.normal(np.log(150 * 60), 0.28)), 90 * 60, 240 * 60))
        total = float(round(pre + dur + post))
    else:
        total = float(round(hours * 3600))
        shrink = min(1.0, 0.35 * total / (pre + post))
        pre, post = pre * shrink, post * shrink
    anestart, aneend = pre, total - post
    u = rng.random(12)
    fl = min(1.0, (aneend - anestart) / 5400)
    if case_id % 10 == 3:  # the recording started after induction
        anestart = -(2 + 8 * u[0]) * 60 * fl
    dur = aneend - anestart
    fs, fl = min(1.0, dur / 1800), min(1.0, dur / 5400)
    intub = anestart + (2 + 4 * u[1]) * 60 * fs
    extub = aneend - (1 + 4 * u[2]) * 60 * fs
    stop = extub - (5 + 10 * u[3]) * 60 * fs
    opstart = intub + (10 + 20 * u[4]) * 60 * fl
    stop = max(stop, intub + 0.5 * (extub - intub))
    opstart = min(opstart, intub + 0.3 * (stop - intub))
    opend = min(stop + (5 * u[5]) * 60 * fs, extub - 30 * fs)
    artline = None
    if f.art:
        artline = max(anestart + (10 + 30 * u[6]) * 60 * fl, intub + 60 * fs)
    return _Timeline(total, anestart, aneend, intub, opstart, stop, opend, extub, artline, fs, fl)


# =========================================================================== 1 Hz physiology


class _State(dict):
    """Named 1 Hz arrays on the grid ``g`` (which may start before the recording)."""

    def __init__(self, g: np.ndarray):
        super().__init__()
        self.g = g
        self.nepi_on: float | None = None  # norepinephrine start, if any

    def at(self, name: str, times: np.ndarray) -> np.ndarray:
        idx = np.clip(np.rint(times - self.g[0]).astype(np.int64), 0, self.g.size - 1)
        return self[name][idx]


def _ramp(t: np.ndarray, a: float, b: float) -> np.ndarray:
    """0 before a, 1 after b, smooth in between."""
    if b <= a:
        return (t >= a).astype(np.float64)
    x = np.clip((t - a) / (b - a), 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _drift(rng: np.random.Generator, n: int, knot_s: float, sd: float) -> np.ndarray:
    """Slow random wander: normal knots every ``knot_s`` seconds, linearly joined."""
    knots = rng.normal(0.0, sd, int(n / knot_s) + 2)
    return np.interp(np.arange(n) / knot_s, np.arange(knots.size), knots)


def _lowpass(x: np.ndarray, tau: float) -> np.ndarray:
    """First-order lag with time constant ``tau`` seconds (1 Hz input, zero initial state)."""
    n = x.size
    m = min(n, int(8 * tau) + 1)
    kernel = np.exp(-np.arange(m) / tau)
    kernel /= kernel.sum()
    size = 1 << int(np.ceil(np.log2(n + m)))
    y = np.fft.irfft(np.fft.rfft(x, size) * np.fft.rfft(kernel, size), size)[:n]
    return np.where(np.abs(y) < 1e-9 * max(1.0, float(np.abs(x).max(initial=0.0))), 0.0, y)


def _steps(rng, g, t0, t1, level, sd, lo, hi, fl, every=(10, 30)) -> np.ndarray:
    """Piecewise-constant level on [t0, t1), a new value every 10-30 min (scaled by fl)."""
    out = np.zeros(g.size)
    t = t0
    while t < t1:
        seg = max(60.0, rng.uniform(*every) * 60 * fl)
        out[(g >= t) & (g < min(t + seg, t1))] = np.clip(level * np.exp(rng.normal(0, sd)), lo, hi)
        t += seg
    return out


def _state(rng: np.random.Generator, tl: _Timeline, p: _Patient, f: _Flags) -> _State:
    g = np.arange(min(0.0, np.floor(tl.anestart) - 900), tl.total + 2, 1.0)
    n = g.size
    s = _State(g)
    u = rng.random(16)

    depth = _ramp(g, tl.anestart, tl.anestart + 60 + 90 * u[0]) * (1 - _ramp(g, tl.stop, tl.extub + 60))
    intub_bump = np.exp(-0.5 * ((g - tl.intub - 30) / 40) ** 2)
    incision = _ramp(g, tl.opstart, tl.opstart + 60) * np.exp(-np.clip(g - tl.opstart, 0, None) / 600)
    vent = ((g >= tl.intub) & (g < tl.extub)).astype(np.float64)
    s["depth"], s["vent"] = depth, vent

    base_hr = {"adult": 78, "child": 105, "infant": 135}[p.kind] + rng.normal(0, 8)
    s["hr"] = np.clip(
        base_hr * (1 - 0.15 * depth) + 15 * intub_bump + 8 * incision
        + _drift(rng, n, 300, 4) + _drift(rng, n, 20, 1.2), 35, 190)  # fmt: skip
    base_sbp = {"adult": 105 + 0.5 * p.age, "child": 100, "infant": 80}[p.kind] + rng.normal(0, 12)
    sbp = base_sbp * (1 - 0.22 * depth) + 30 * intub_bump + 15 * incision
    sbp += _drift(rng, n, 600, 8) + _drift(rng, n, 40, 2.5)
    if f.nepi:  # hypotension, then norepinephrine
        t_on = tl.opstart + (0.2 + 0.3 * u[1]) * (tl.stop - tl.opstart)
        sbp -= 25 * _ramp(g, t_on - 600, t_on) * (1 - 0.8 * _ramp(g, t_on, t_on + 300))
        s.nepi_on = t_on
    sbp = np.clip(sbp, 55, 220)
    dbp = sbp * (0.52 + 0.08 * u[2]) + _drift(rng, n, 600, 3)
    s["sbp"], s["dbp"] = sbp, dbp
    s["mbp"] = (sbp + 2 * dbp) / 3 + _drift(rng, n, 120, 1)
    o2 = _ramp(g, tl.anestart - 180, tl.anestart) * (1 - _ramp(g, tl.extub + 600, tl.extub + 900))
    s["spo2"] = np.clip(97.3 + 2.2 * o2 + _drift(rng, n, 300, 0.6), 88, 100)
    s["bis"] = np.clip(94 - 46 * depth + _drift(rng, n, 300, 4) + _drift(rng, n, 15, 1.5), 5, 98)
    s["etco2"] = np.clip(35 + _drift(rng, n, 900, 2.5) + _drift(rng, n, 60, 0.8), 25, 50)
    s["bt"] = 36.4 + 0.3 * u[3] - 0.6 * _ramp(g, tl.intub, tl.intub + 3600) + _drift(rng, n, 900, 0.1)

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
    s["tv"] = tv_set * (1 + _drift(rng, n, 300, 0.02)) + rng.normal(0, 0.01 * tv0, n)
    s["peep"] = peep_set + _drift(rng, n, 300, 0.2)
    compliance = (40 if p.kind == "adult" else 12 if p.kind == "child" else 4) * (0.8 + 0.4 * u[14])
    s["compliance"] = compliance * (1 + _drift(rng, n, 600, 0.05))
    s["pip"] = s["peep"] + s["tv"] / s["compliance"] + 2
    s["fio2"] = np.clip(fio2_set + _drift(rng, n, 120, 1.0), 21, 100)
    s["pamb"] = 1000 + 20 * u[15] + _drift(rng, n, 3600, 0.5)

    # sevoflurane (kPa), on between intubation and drug stop for non-TIVA cases
    sevo_target = np.zeros(n)
    if not f.tiva:
        on = tl.intub + rng.uniform(0, 120) * tl.fs
        sevo_target = _steps(rng, g, on, tl.stop, 2.0, 0.12, 1.4, 2.6, tl.fl, every=(20, 40))
    exp_sevo = _lowpass(sevo_target, 150)
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
        ug_kg_min = _steps(rng, g, t_on, tl.extub, rng.uniform(0.03, 0.1), 0.3, 0.01, 0.3, tl.fl)
        s["NEPI"] = np.round(ug_kg_min * w * 60 / 20, 1)  # 20 ug/mL
    return s


def _bolus_then_steps(rng, g, t0, bolus_ml, *, bolus_rate, t1, level, sd, lo, hi, to_mlh, fl):
    """Pump rate (mL/h): a bolus at ``bolus_rate``, then maintenance steps until ``t1``.

    Also returns the maintenance rate alone (the bolus replaced by the first step), from which
    the pump's target concentration (CT) is shown.
    """
    t_end = t0 + bolus_ml / bolus_rate * 3600
    maint = np.round(_steps(rng, g, t_end, t1, level, sd, lo, hi, fl) * to_mlh, 1)
    rate = maint.copy()
    in_bolus = (g >= t0) & (g < t_end)
    rate[in_bolus] = round(bolus_rate, 1)
    after = np.flatnonzero(g >= t_end)
    maint[in_bolus] = maint[after[0]] if after.size else 0.0
    return rate, maint


# =========================================================================== numeric tracks


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
for _st in ("ST_I", "ST_II", "ST_III", "ST_AVL", "ST_AVR", "ST_AVF", "ST_V5"):
    _UNITS[_st] = "mm"


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
    return max(0.0, a), min(total, b)


def _gaps(rng, span, per_hour: float = 0.35) -> list[tuple[float, float]]:
    a, b = span
    if b <= a:
        return []
    k = rng.poisson((b - a) / 3600 * per_hour)
    starts = rng.uniform(a, b, k)
    lengths = np.exp(rng.uniform(np.log(30), np.log(600), k))
    return sorted(zip(starts.tolist(), (starts + lengths).tolist()))


def _device_times(rng, span, interval: float, gaps) -> np.ndarray:
    a, b = span
    t = a + np.arange(max(0, int(np.ceil((b - a) / interval)))) * interval
    t = np.round(t + rng.uniform(-0.01, 0.01, t.size) * min(1.0, interval), 3)
    keep = (t >= 0) & (t < b)
    for g0, g1 in gaps:
        keep &= (t < g0) | (t >= g1)
    return t[keep]


def _numeric_tracks(rng, tl: _Timeline, s: _State, p: _Patient, f: _Flags):
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
    a, e = spans["Solar8000"]
    cycle = f.nibp_cycle
    count = int(max(0.0, e - a - 20) // cycle) + 1
    tn = a + 20 + np.arange(count) * cycle + rng.uniform(-5, 5, count)
    tn = np.round(tn[(tn >= 0) & (tn < e)], 3)
    for g0, g1 in gaps["Solar8000"]:
        tn = tn[(tn < g0) | (tn >= g1)]
    nb = _Builder(rng, "Solar8000", tn)
    err = rng.normal(0, 4, tn.size)
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
    pk = {  # drug: (mg or ug per mL, clearance L/min, V1 L, ke0 1/min) -- textbook-ish values
        "PPF20": (20.0, 0.027 * w, 0.228 * w, 0.456),
        "RFTN20": (20.0, 0.037 * w, 0.07 * w, 0.595),
        "RFTN50": (50.0, 0.037 * w, 0.07 * w, 0.595),
    }
    for drug in ("PPF20", "RFTN20", "RFTN50", "NEPI"):
        if drug not in s:
            continue
        rate = s[drug]
        b.add(f"{drug}_RATE", rate[_grid_idx(s, t)], 1, spikes=(-1.0, np.nan), rate=5e-5, unit="mL/h")
        vol = np.cumsum(rate) / 3600
        b.add(f"{drug}_VOL", vol[_grid_idx(s, t)], 2, unit="mL")
        if drug in pk:
            conc, cl, v1, ke0 = pk[drug]
            steady = rate * conc / 60 / cl  # mg/L (= ug/mL) for propofol, ug/L (= ng/mL) for remi
            cp = _lowpass(steady, v1 / cl * 60)
            ce = _lowpass(cp, 60 / ke0)
            b.add(f"{drug}_CP", cp[_grid_idx(s, t)], 2)
            b.add(f"{drug}_CE", ce[_grid_idx(s, t)], 2)
            ct = s[f"{drug}_maint"] * conc / 60 / cl
            b.add(f"{drug}_CT", ct[_grid_idx(s, t)], 1)

    # other infusions now and then (phenylephrine, rocuronium): rate and volume only
    for drug, share, ml_h in (("PHEN", 0.06, 10.0), ("ROC", 0.05, 5.0)):
        if u[12] < share or (drug == "ROC" and 0.5 < u[12] < 0.5 + share):
            on = tl.intub + rng.uniform(0.1, 0.5) * (tl.stop - tl.intub)
            rate = np.round(_steps(rng, s.g, on, tl.stop, ml_h * w / 70, 0.3, 0.5, 60, tl.fl), 1)
            b.add(f"{drug}_RATE", rate[_grid_idx(s, t)], 1, unit="mL/h")
            b.add(f"{drug}_VOL", (np.cumsum(rate) / 3600)[_grid_idx(s, t)], 2, unit="mL")
    tracks += b.tracks

    # ---- EV1000 (rare; needs the arterial line)
    if f.ev1000 and tl.artline is not None:
        b = _Builder(rng, "EV1000", _device_times(rng, spans["EV1000"], _EV1000, gaps["EV1000"]))
        t = b.times
        co = 4.5 * (w / 70) ** 0.75 * (1 + _drift(rng, t.size, 600, 0.08))
        if not f.no_mbp:
            b.add("ART_MBP", s.at("mbp", t) + rng.normal(0, 1, t.size), 0, spikes=(0, np.nan), rate=2e-4)
        b.add("CO", co, 1)
        b.add("CI", co / 1.8, 1)
        b.add("SV", co * 1000 / s.at("hr", t), 0)
        b.add("SVV", 10 + _drift(rng, t.size, 300, 3), 0)
        tracks += b.tracks

    # ---- events (string track without a device, as Vital Recorder writes it)
    if f.event:
        when = (tl.anestart, tl.intub, tl.artline, tl.opstart, tl.opend, tl.extub)
        ev = [(round(w_, 3), name) for w_, name in zip(when, _EVENTS) if w_ is not None and 0 <= w_ < T]
        if ev:
            tracks.append(TrackData("", "EVENT", "str", np.array([e[0] for e in ev]), [e[1] for e in ev]))
    return tracks, {"spans": spans, "gaps": gaps, "art_window": art_window}


def _grid_idx(s: _State, t: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(t - s.g[0]).astype(np.int64), 0, s.g.size - 1)


# =========================================================================== waves

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


def _wave_tracks(rng, tl: _Timeline, s: _State, f: _Flags, info: dict) -> list[TrackData]:
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


def _cautery(rng, ecg: np.ndarray, ts: np.ndarray, tl: _Timeline, noise: np.ndarray) -> None:
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


# =========================================================================== clinical table


def _clinical_row(rng, seed: int, case_id: int, p: _Patient, tl: _Timeline) -> dict:
    u = rng.random(12)
    if case_id % 25 == 11:
        asa: int | None = 6
    elif case_id % 12 == 5:
        asa = None
    else:
        asa = int(np.searchsorted([0.25, 0.80, 0.98, 1.0], u[0], side="right")) + 1
    emop = int(u[1] < (0.3 if (asa or 2) >= 4 else 0.08))
    table = _PEDIATRIC_PROCEDURES if p.kind != "adult" else tuple(x for x in _PROCEDURES if x[6] in ("", p.sex))
    if asa == 6:  # brain-dead organ donor
        proc = ("General surgery", "Transplantation", "Brain death", "Deceased donor hepatectomy", ("Open",), "Supine", "")
    else:
        proc = table[int(u[2] * len(table))]
    approach = proc[4][int(u[3] * len(proc[4]))]

    caseend = int(round(tl.total))
    anestart, aneend = int(round(tl.anestart)), int(round(tl.aneend))
    if case_id % 10 == 8:  # corrupt end time as found in the real table
        if (case_id // 10) % 2 == 0:
            aneend = anestart - int(60 + u[4] * 3600)  # before the start
        else:
            aneend = caseend + int(86400 * (1 + u[5] * 30))  # days after the recording ended
    days_before = int(u[6] * 4) + (0 if emop else 1)
    adm = -(days_before * 86400 + int(u[7] * 43200))
    icu_days = int(u[8] * 6) if (u[9] < 0.1 or asa in (4, 5)) else 0
    stay = int(2 + u[10] * 12 + icu_days)
    dis = caseend + stay * 86400 - int(u[11] * 43200)
    death = int(asa == 6 or u[9] < 0.008)
    age: float = p.age if p.kind != "adult" else int(p.age)
    return {
        "caseid": case_id,
        "subjectid": p.subjectid,
        "casestart": 0,
        "caseend": caseend,
        "anestart": anestart,
        "aneend": aneend,
        "opstart": int(round(tl.opstart)),
        "opend": int(round(tl.opend)),
        "adm": adm,
        "dis": dis,
        "icu_days": icu_days,
        "death_inhosp": death,
        "age": age,
        "sex": p.sex,
        "height": p.height,
        "weight": p.weight,
        "bmi": round(p.weight / (p.height / 100) ** 2, 1),
        "asa": asa,
        "emop": emop,
        "department": proc[0],
        "optype": proc[1],
        "dx": proc[2],
        "opname": proc[3],
        "approach": approach,
        "position": proc[5],
        "ane_type": "General",
    }
