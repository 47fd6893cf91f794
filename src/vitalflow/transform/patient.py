"""What the transforms need to know about a patient: one row of the clinical table."""

from __future__ import annotations

import math
from dataclasses import dataclass

NAN = math.nan


@dataclass(frozen=True)
class Patient:
    """A clinical-table row. Unknown numbers are NaN, unknown text is None.

    ``anestart``/``aneend``/``caseend`` are seconds from the recording start, as in VitalDB.
    """

    case_id: int
    subject_id: str | None = None
    age: float = NAN
    sex: str | None = None
    height: float = NAN
    weight: float = NAN
    bmi: float = NAN
    asa: float = NAN
    anestart: float = NAN
    aneend: float = NAN
    caseend: float = NAN  # optional column: bounds a recording whose records run past the case

    def column(self, name: str) -> float | str | None:
        return getattr(self, name)
