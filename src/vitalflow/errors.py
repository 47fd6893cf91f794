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

And the two rules every error text follows before anyone sees it, in one home for the CLI, the
service and the app: `one_line` (any error, pydantic's included, as one line) and `redact`
(no secret, credential, query string or signature in it).
"""

from __future__ import annotations

import re
from typing import Iterable


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


def one_line(error: BaseException | str) -> str:
    """An error or a text as one line: the one home of that rule (the CLI's ``Error:`` line, the
    service's and the app's error documents, the ledgers' per-case errors).

    A pydantic ``ValidationError`` becomes ``field: reason; ...`` for each of its errors (a missing
    field says "missing", an unknown one "unknown key", pydantic's "Value error, " prefix is cut,
    and a request's ``body`` level is not named); an OS error ``file: reason``; anything else its
    text with every run of blanks and line breaks made one space.

    >>> one_line("first line\\n  second   line\\n")
    'first line second line'
    >>> one_line(FileNotFoundError(2, "No such file or directory", "/data/1.vital"))
    '/data/1.vital: No such file or directory'
    >>> from pydantic import BaseModel, ConfigDict, ValidationError, field_validator
    >>> class Request(BaseModel):
    ...     model_config = ConfigDict(extra="forbid")
    ...     static: list
    ...     units: str = "clinical"
    ...     @field_validator("units")
    ...     @classmethod
    ...     def _known(cls, value):
    ...         assert value in ("clinical", "normalized"), f"{value!r} is not clinical or normalized"
    ...         return value
    >>> try:
    ...     Request.model_validate({"statc": [], "units": "si"})
    ... except ValidationError as e:
    ...     print(one_line(e))
    static: missing; units: Assertion failed, 'si' is not clinical or normalized; statc: unknown key
    """
    if isinstance(error, Exception) and callable(getattr(error, "errors", None)):  # pydantic, FastAPI
        parts = []
        for e in error.errors():
            where = ".".join(str(p) for p in e["loc"] if p != "body")
            what = {"missing": "missing", "extra_forbidden": "unknown key"}.get(e["type"],
                                                                               e["msg"].removeprefix("Value error, "))
            parts.append(f"{where}: {what}" if where else what)
        return one_line("; ".join(parts))
    if isinstance(error, OSError) and error.strerror:
        files = [str(f) for f in (error.filename, error.filename2) if f is not None]
        text = f"{' -> '.join(files)}: {error.strerror}" if files else error.strerror
    else:
        text = str(error)
    return " ".join(text.split())


_URI = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/@\s?#]*@)?(?P<rest>[^\s?#]*)"
                  r"(?P<query>\?[^\s#]*)?(?P<fragment>#\S*)?")
_SECRET = re.compile(r"(?i)\b(aws_secret_access_key|aws_session_token|x-amz-security-token|x-amz-signature|"
                     r"x-amz-credential|signature|token|password)=[^\s&]+")


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` without the given secrets, every URI without its user info, query string and
    fragment, and every ``secret=...`` pair masked: what may go into a log, an error or a result.

    >>> redact("https://bob:hunter2@mlflow.example/api failed, token abc123", ["abc123"])
    'https://mlflow.example/api failed, token ***'
    >>> redact("s3://AKIA:secret@bucket/k.vital?X-Amz-Signature=abc failed; token=xyz")
    's3://bucket/k.vital failed; token=***'
    >>> redact("https://user:pw@hooks.example/x?sig=1#frag")
    'https://hooks.example/x'
    """
    text = str(text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    text = _URI.sub(lambda m: m.group("scheme") + m.group("rest"), text)
    return _SECRET.sub(lambda m: f"{m.group(1)}=***", text)
