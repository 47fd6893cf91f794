"""The exception tree. Every error names the case id and/or the file or URI it is about.

    VitalflowError
    ├── SpecError            a spec or config file is invalid (names the file and the field)
    ├── CaseSelectionError   a case selection string such as "1-10,17" is malformed
    ├── InputError           an input (recordings folder, clinical table) is missing or unusable
    │   ├── ClinicalError    the clinical table is unusable (unreadable, columns missing)
    │   └── VitalReadError   a .vital file cannot be read (names the file and why)
    ├── CaseDataError        a case's clinical row or recording cannot make valid examples
    ├── OutputError          an output location is unusable, or holds another run's dataset
    │   └── CorruptRecordError  a TFRecord file is truncated or fails a CRC check
    ├── StoreError           a storage call failed (names the URI; wraps the fsspec/OS error)
    ├── ModelError           a model directory is incomplete, unreadable or of another spec/dataset
    └── LaunchError          a SageMaker job cannot be built, submitted or watched

`CorruptRecordError` is also a ``ValueError`` (what a reader of damaged bytes raises).
"""

from __future__ import annotations


class VitalflowError(Exception):
    """Base class: the CLI prints these as one line ``Error: ...``."""


class SpecError(VitalflowError):
    pass


class CaseSelectionError(VitalflowError):
    pass


class InputError(VitalflowError):
    """An input the run reads is missing or unusable."""


class ClinicalError(InputError):
    pass


class VitalReadError(InputError):
    pass


class CaseDataError(VitalflowError):
    """A case's own data (clinical row, recording) cannot make a valid example."""


class OutputError(VitalflowError):
    """An output location is unusable, or its content fails verification."""


class CorruptRecordError(OutputError, ValueError):
    """A TFRecord file is truncated or fails a CRC check."""


class ModelError(VitalflowError):
    """A model directory (or its checkpoints) is incomplete, unreadable or does not fit the data."""


class StoreError(VitalflowError):
    """A storage operation failed; the message names the URI and the underlying error."""


class LaunchError(VitalflowError):
    """A job cannot be built, submitted or watched; the message says which option or call and why."""
