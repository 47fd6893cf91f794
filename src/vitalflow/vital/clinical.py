"""Read the VitalDB clinical table (one row per case) into :class:`Patient` records."""

from __future__ import annotations

import csv
import io
import math

from vitalflow.errors import ClinicalError
from vitalflow.spec.model import CLINICAL_STATIC_COLUMNS
from vitalflow.transform.patient import Patient

REQUIRED = ("caseid", "subjectid", "anestart", "aneend", *CLINICAL_STATIC_COLUMNS)
NUMERIC = ("anestart", "aneend", "age", "height", "weight", "bmi", "asa")
OPTIONAL = ("caseend",)  # read when the table has it


def _number(text: str | None) -> float:
    """A number from a CSV cell; empty or garbage cells are NaN.

    >>> _number("12.5"), _number(""), _number("n/a")
    (12.5, nan, nan)
    """
    try:
        return float(text) if text not in (None, "") else math.nan
    except ValueError:
        return math.nan


def read_clinical(data: bytes, source: str) -> dict[int, Patient]:
    """caseid -> Patient from the CSV bytes of ``source``. Raises ClinicalError for an unreadable
    table or missing columns."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ClinicalError(f"{source}: not a readable CSV file ({exc})") from exc
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            raise ClinicalError(f"{source}: clinical table lacks columns {', '.join(missing)}")
        optional = [c for c in OPTIONAL if c in reader.fieldnames]
        patients: dict[int, Patient] = {}
        for line, row in enumerate(reader, start=2):
            case_id = _number(row["caseid"])
            if not (math.isfinite(case_id) and case_id == int(case_id)):
                raise ClinicalError(f"{source}:{line}: caseid {row['caseid']!r} is not an integer")
            case_id = int(case_id)
            if case_id in patients:
                raise ClinicalError(f"{source}:{line}: caseid {case_id} appears twice")
            sex = (row["sex"] or "").strip().upper()
            patients[case_id] = Patient(
                case_id=case_id,
                subject_id=(row["subjectid"] or "").strip() or None,
                sex=sex if sex in ("F", "M") else None,
                **{c: _number(row[c]) for c in (*NUMERIC, *optional)},
            )
    except csv.Error as exc:
        raise ClinicalError(f"{source}: not a readable CSV file ({exc})") from exc
    return patients
