"""The exception tree. Every error names the case id and/or the file it is about.

    VitalflowError
    ├── SpecError          a spec or config file is invalid (names the file and the field)
    ├── CaseSelectionError a case selection string such as "1-10,17" is malformed
    ├── ClinicalError      the clinical table file is unusable (unreadable, columns missing)
    ├── VitalReadError     a .vital file cannot be read (names the file and why)
    ├── CaseDataError      a case's clinical row or recording cannot make valid examples
    └── OutputError        an output directory is unusable or its content fails verification
"""

from __future__ import annotations


class VitalflowError(Exception):
    """Base class: the CLI prints these as one line ``Error: ...``."""


class SpecError(VitalflowError):
    pass


class CaseSelectionError(VitalflowError):
    pass


class ClinicalError(VitalflowError):
    pass


class VitalReadError(VitalflowError):
    pass


class OutputError(VitalflowError):
    pass


class CaseDataError(VitalflowError):
    """A case's own data (clinical row, recording) cannot make a valid example."""
