"""Synthetic VitalDB-like recordings and clinical table (demo data, test and benchmark corpus).

`synth_case` builds one case in memory (pure: same arguments, same result); `synth_corpus`
writes ``0001.vital``, ``0002.vital``, ... and ``clinical.csv``. Case ``i`` draws from its own
random streams seeded by ``(seed, i)``, so it does not depend on how many cases are written.

The modules follow the order a case is built in: `patient` (subject, body and the per-case
plan with its quirk schedule), `timeline` (event times), `physiology` (the 1 Hz latent state),
`numeric` (device numeric tracks), `waves` (wave tracks) and `clinical` (table row and CSV).
The files are written with `vitalflow.vital.write`; `vitalflow.vital` never imports this package.

What a case looks like (the numbers follow VitalDB; see SPEC.md, "VitalDB facts"):

- Devices and intervals: Solar8000 numerics every 2 s, NIBP one reading every 2.5-5 min, Primus
  every 7 s, BIS and Orchestra pumps every 1 s, EV1000 (rare) every 2 s; waves SNUADC 500 Hz
  (ECG_II, ECG_V5, PLETH, ART after the arterial line, CVP/FEM in a few cases; int16 with gain),
  Primus AWP/CO2 62.5 Hz (float32), BIS EEG1_WAV/EEG2_WAV 128 Hz (int16 with gain). Record times
  carry a few ms of jitter; each device has its own start, end and unplugged gaps.
- Timeline: awake monitoring, induction at ``anestart`` (propofol/remifentanil bolus then
  maintenance), intubation 2-6 min later (EtCO2 and ventilator values appear only then),
  incision and surgical stimulation, sevoflurane for non-TIVA cases, drugs off near the end of
  surgery, extubation, ``aneend``. Arterial line 10-40 min after induction in ~60 % of cases.
- A closed loop (`physiology`): drugs act through first-order effect-site lags, and a simulated
  anesthesiologist changes pump rates, the sevoflurane dial and the ventilator in reaction to
  the monitor (BIS, MAP, HR/SBP jumps, EtCO2, SpO2) after 1-3 min delays, plus unexplained
  changes (README, "Synthetic world").
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

import math

import os
from pathlib import Path

import numpy as np

from vitalflow.synth.clinical import CLINICAL_COLUMNS, clinical_row, write_csv
from vitalflow.synth.numeric import numeric_tracks
from vitalflow.synth.oracle import HORIZONS_S, oracle_probabilities, write_decisions, write_oracle
from vitalflow.synth.patient import draw_flags, draw_patient
from vitalflow.synth.physiology import WORLDS, State, simulate_state
from vitalflow.synth.timeline import draw_timeline
from vitalflow.synth.waves import wave_tracks
from vitalflow.vital.write import TrackData, write_vital

__all__ = ["CLINICAL_COLUMNS", "HORIZONS_S", "WORLDS", "case_state", "oracle_probabilities", "synth_case",
           "synth_corpus"]  # fmt: skip

_EPOCH_KST = 1469977200.0  # 2016-08-01 00:00 KST, start of VitalDB's collection period
_MIN_HOURS = 0.1


def synth_case(
    case_id: int, seed: int = 0, hours: float | None = None, waves: bool = True, world: str = "default"
) -> tuple[list[TrackData], dict, float, str]:
    """Build one synthetic case: ``(tracks, clinical_row, start_unix_time, layout)``.

    ``hours=None`` draws the case length (anesthesia 90-240 min, median 150, plus 10-30 min
    before and after); ``hours=H`` makes the recording H hours long (H >= 0.1). Numeric tracks
    do not depend on ``waves``. ``world`` is the clinician's: ``"default"``, ``"deterministic"``
    (fixed reaction delay, no unexplained changes) or ``"random"`` (Poisson changes only, no
    reaction to the monitor); README, "Synthetic world".
    """
    return _case(case_id, seed, hours, waves, world)[:4]


def case_state(case_id: int, seed: int = 0, hours: float | None = None, world: str = "default") -> tuple[State, float]:
    """The simulated state of a case (decision log, oracle inputs, 1 Hz arrays) and the recording
    length in s: what `synth_case` builds the tracks from, without the tracks."""
    _check_args(case_id, seed, hours, world)
    rng = np.random.default_rng([seed, case_id, 0])
    patient = draw_patient(seed, case_id, rng)
    flags = draw_flags(rng, case_id, patient)
    tl = draw_timeline(rng, case_id, hours, flags)
    return simulate_state(np.random.default_rng([seed, case_id, 2]), tl, patient, flags, world), tl.total


def _case(case_id, seed, hours, waves, world):
    _check_args(case_id, seed, hours, world)
    rng = np.random.default_rng([seed, case_id, 0])
    patient = draw_patient(seed, case_id, rng)
    flags = draw_flags(rng, case_id, patient)
    tl = draw_timeline(rng, case_id, hours, flags)
    # the closed loop draws from its own stream, so device artefacts and the clinical row do not
    # depend on how many decisions the simulated clinician made
    state = simulate_state(np.random.default_rng([seed, case_id, 2]), tl, patient, flags, world)
    tracks, devices = numeric_tracks(rng, tl, state, patient, flags)
    if waves:
        wrng = np.random.default_rng([seed, case_id, 1])
        tracks = wave_tracks(wrng, tl, state, flags, devices) + tracks
    row = clinical_row(rng, case_id, patient, tl)
    if world == "random":
        # the leakage check: the table's anaesthesia is the maintenance period (intubation + 5 min to
        # drugs off), in which every set-point change is a Poisson event; the planned changes around
        # induction and emergence (which follow the clock, so a model could rightly predict them) and
        # the table's quirks fall outside the labelled windows
        row["anestart"], row["aneend"] = math.ceil(tl.intub + 300), math.floor(tl.stop)
    start = _EPOCH_KST + float(rng.integers(0, 330)) * 86400 + float(rng.integers(27000, 55800))
    layout = "interleaved" if case_id % 2 else "packed"
    return tracks, row, start, layout, state, tl.total


def synth_corpus(
    out_dir: str | os.PathLike, cases: int, seed: int = 0, hours: float | None = None, waves: bool = True,
    world: str = "default",
) -> list[Path]:
    """Write ``cases`` recordings (``0001.vital`` ...) and ``clinical.csv`` into ``out_dir``, and
    beside each recording the clinician's decision log ``0001.decisions.csv`` and the oracle
    ``0001.oracle.npz`` (`vitalflow.synth.oracle`).

    Returns the paths of the `.vital` files. Same arguments, same bytes.
    """
    _check_int("cases", cases, 0)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths, rows = [], []
    width = max(4, len(str(cases)))
    for case_id in range(1, cases + 1):
        tracks, row, start, layout, state, total = _case(case_id, seed, hours, waves, world)
        path = out / f"{case_id:0{width}d}.vital"
        write_vital(path, tracks, start, layout=layout)
        write_decisions(out / f"{case_id:0{width}d}.decisions.csv", state)
        write_oracle(out / f"{case_id:0{width}d}.oracle.npz", oracle_probabilities(state, total))
        paths.append(path)
        rows.append(row)
    write_csv(out / "clinical.csv", rows)
    return paths


def _check_args(case_id, seed, hours, world) -> None:
    _check_int("case_id", case_id, 1)
    _check_int("seed", seed, 0)
    if hours is not None and not (isinstance(hours, (int, float)) and hours >= _MIN_HOURS):
        raise ValueError(f"hours must be None or a number >= {_MIN_HOURS}, got {hours!r}")
    if world not in WORLDS:
        raise ValueError(f"world must be one of {WORLDS}, got {world!r}")


def _check_int(name: str, value: object, lo: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo:
        raise ValueError(f"{name} must be an int >= {lo}, got {value!r}")
