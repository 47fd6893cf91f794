"""Read the VitalDB clinical table (one row per case) into :class:`Patient` records."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

from vitalflow.errors import ClinicalError
from vitalflow.transform.patient import Patient

REQUIRED = ("caseid", "subjectid", "anestart", "aneend", "age", "sex", "height", "weight", "bmi", "asa")
NUMERIC = ("anestart", "aneend", "age", "height", "weight", "bmi", "asa")


def _number(text: str | None) -> float:
    """A number from a CSV cell; empty or garbage cells are NaN.

    >>> _number("12.5"), _number(""), _number("n/a")
    (12.5, nan, nan)
    """
    try:
        return float(text) if text not in (None, "") else math.nan
    except ValueError:
        return math.nan


def read_clinical(path: str | os.PathLike) -> dict[int, Patient]:
    """caseid -> Patient. Raises ClinicalError for an unreadable file or missing columns."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
            if missing:
                raise ClinicalError(f"{path}: clinical table lacks columns {', '.join(missing)}")
            patients: dict[int, Patient] = {}
            for line, row in enumerate(reader, start=2):
                case_id = _number(row["caseid"])
                if not (math.isfinite(case_id) and case_id == int(case_id)):
                    raise ClinicalError(f"{path}:{line}: caseid {row['caseid']!r} is not an integer")
                case_id = int(case_id)
                if case_id in patients:
                    raise ClinicalError(f"{path}:{line}: caseid {case_id} appears twice")
                sex = (row["sex"] or "").strip().upper()
                patients[case_id] = Patient(
                    case_id=case_id,
                    subject_id=(row["subjectid"] or "").strip() or None,
                    sex=sex if sex in ("F", "M") else None,
                    **{c: _number(row[c]) for c in NUMERIC},
                )
    except FileNotFoundError:
        raise ClinicalError(f"clinical table not found: {path}") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ClinicalError(f"{path}: not a readable CSV file ({exc})") from exc
    return patients
