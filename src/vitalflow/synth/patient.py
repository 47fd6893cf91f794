"""Patients and the per-case plan.

Case ids come in blocks of 20, each partitioned into subjects: the first 2-4 cases of a block
share a subject, position 7 starts an infant and 13 a child, and block 10 (cases 181-200,
381-400, ...) opens with one subject having 14 cases. `draw_flags` fixes which devices, tracks
and drugs a case has, including the quirks scheduled by case id (``id % 10 == 6`` no *_MBP,
``id % 20 == 14`` EV1000, ``id % 71 == 19`` norepinephrine).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_BLOCK = 20  # case ids per subject block
_FORCED_STARTS = (7, 8, 13, 14, _BLOCK)  # block positions that always start a new subject
_INFANT_POS, _CHILD_POS = 7, 13
_FREQUENT_FLYER_CASES = 14  # block b with b % 10 == 9 opens with one subject having 14 cases
_NIBP_CYCLES = (150.0, 180.0, 240.0, 300.0)  # s between NIBP cuff readings


@dataclass(frozen=True)
class Patient:
    """The subject as seen in one case (weight varies a little between a subject's cases)."""

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


def draw_patient(seed: int, case_id: int, rng: np.random.Generator) -> Patient:
    """The patient of case ``case_id``: the subject drawn from ``(seed, subject)``, weight from ``rng``."""
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
    return Patient(subjectid, kind, sex, age, round(height, 1), round(weight, 1), max(ibw, weight * 0.7))


@dataclass(frozen=True)
class Flags:
    """What a case has: anesthetic technique, drugs, devices, optional tracks, NIBP cycle (s)."""

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


def draw_flags(rng: np.random.Generator, case_id: int, p: Patient) -> Flags:
    """Random choices at VitalDB-like rates, plus the case-id schedule of rare features."""
    u = rng.random(24)
    tiva = bool(u[0] < 0.52)
    primus = bool(u[6] < 0.88)
    hr = bool(u[10] > 0.03)
    ev1000 = case_id % 20 == 14
    return Flags(
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
