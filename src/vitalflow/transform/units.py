"""Unit conversions of gridded source values into the units of the spec's features."""

from __future__ import annotations

import math

import numpy as np

from vitalflow.errors import CaseDataError
from vitalflow.spec.model import (
    IdealBodyWeight,
    Infusion,
    NoConversion,
    PerIdealBodyWeight,
    Scale,
    VolPercentToKpa,
)
from vitalflow.transform.patient import Patient

MBAR_PER_KPA = 10.0
PLAUSIBLE_AMBIENT_MBAR = (500.0, 1200.0)


def ideal_body_weight(patient: Patient, rule: IdealBodyWeight) -> float:
    """Devine ideal body weight in kg, or the actual weight where Devine is not valid.

    Devine goes to zero or below for short patients (children), so below ``rule.floor_kg`` (and
    when height is unknown) the actual weight is used. Unknown sex uses the female formula.

    >>> rule = IdealBodyWeight(male_base_kg=50, female_base_kg=45.5, kg_per_cm=0.91,
    ...                        reference_height_cm=152.4, floor_kg=40)
    >>> round(ideal_body_weight(Patient(case_id=1, sex="M", height=180.0, weight=90.0), rule), 3)
    75.116
    >>> ideal_body_weight(Patient(case_id=2, sex="F", height=95.0, weight=14.0), rule)
    14.0
    """
    weight = _positive_weight(patient)
    if not math.isfinite(patient.height):
        return weight
    base = rule.male_base_kg if patient.sex == "M" else rule.female_base_kg
    ibw = base + rule.kg_per_cm * (patient.height - rule.reference_height_cm)
    return ibw if ibw >= rule.floor_kg else weight


def _positive_weight(patient: Patient) -> float:
    if not (math.isfinite(patient.weight) and patient.weight > 0):
        raise CaseDataError(
            f"case {patient.case_id}: weight {patient.weight} kg is missing or not positive; "
            "drug rates per kg cannot be computed"
        )
    return patient.weight


def convert(
    values: np.ndarray,
    conversion,
    patient: Patient,
    ibw_rule: IdealBodyWeight,
    ambient_mbar: np.ndarray | None = None,
) -> np.ndarray:
    """Convert one source's gridded values to the feature's unit.

    >>> from vitalflow.spec.model import Infusion
    >>> p = Patient(case_id=1, weight=80.0)
    >>> convert(np.array([12.0]), Infusion(kind="infusion", concentration=20, per="hour"), p, None)
    array([3.])
    >>> convert(np.array([12.0]), Infusion(kind="infusion", concentration=20, per="minute"), p, None)
    array([0.05])
    """
    if isinstance(conversion, NoConversion):
        return values
    if isinstance(conversion, Scale):
        return values * conversion.multiplier
    if isinstance(conversion, Infusion):
        per_minute = 60.0 if conversion.per == "minute" else 1.0
        return values * conversion.concentration / _positive_weight(patient) / per_minute
    if isinstance(conversion, PerIdealBodyWeight):
        return values * conversion.factor / ideal_body_weight(patient, ibw_rule)
    if isinstance(conversion, VolPercentToKpa):
        return values * ambient_kpa(ambient_mbar, values.shape[0], conversion.ambient_default_kpa) / 100.0
    raise TypeError(f"unknown conversion {conversion!r}")


def ambient_kpa(ambient_mbar: np.ndarray | None, n: int, default_kpa: float) -> np.ndarray:
    """Ambient pressure per second in kPa: the last plausible reading so far, else the default.

    >>> ambient_kpa(np.array([np.nan, 1000.0, np.nan, 0.0]), 4, 101.325)
    array([101.325, 100.   , 100.   , 100.   ])
    """
    out = np.full(n, default_kpa)
    if ambient_mbar is None:
        return out
    lo, hi = PLAUSIBLE_AMBIENT_MBAR
    ok = np.isfinite(ambient_mbar) & (ambient_mbar >= lo) & (ambient_mbar <= hi)
    last = np.maximum.accumulate(np.where(ok, np.arange(n), -1))
    seen = last >= 0
    out[seen] = ambient_mbar[last[seen]] / MBAR_PER_KPA
    return out
