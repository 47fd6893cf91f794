"""Asynchronous jobs in the FeMo job format: the request, where its recording may be read from,
what a worker does with it, and the status document.

Request::

    {"jobId": "case-0042", "requestTime": "2025-01-01T12:00:00Z",
     "s3Key": "ward3/0042.vital",          # relative to the first allowed input prefix, or
     "inputUri": "s3://bucket/in/0042.vital",  # a full URI below an allowed input prefix
     "patient": {"age": 63, "sex": "F", "height": 160, "weight": 58, "bmi": 22.7, "asa": 2},
     "options": {"csv": false}}

Result, below ``settings.results``: ``<jobId>/timeline.parquet`` (the case's prediction timeline,
`CaseTable`), ``<jobId>/timeline.csv`` (``options.csv``) and ``<jobId>/summary.json`` (rows, time
span, per-target mean and last prediction), written last. A failed job's document goes to
``<jobId>.json`` below ``settings.failures``. Status document::

    {"jobId", "status", "processing_time_seconds", "output_type", "result", "completedTimeStamp", "error"}
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import re
from typing import Any, Callable

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from vitalflow.errors import CaseDataError
from vitalflow.predict.recording import PATIENT_KEYS, patient_from, predict_recording
from vitalflow.predict.table import CaseTable
from vitalflow.errors import one_line, redact
from vitalflow.serve.queue import FINAL, ServiceJob
from vitalflow.serve.settings import ServeSettings
from vitalflow.store import Store

JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
OUTPUT_TYPE = "application/vnd.apache.parquet"
TIMELINE, TIMELINE_CSV, SUMMARY = "timeline.parquet", "timeline.csv", "summary.json"


class InputRefused(ValueError):
    """The request names a location the service may not read (HTTP 400)."""


class JobOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    csv: bool = False  # also write the timeline as CSV


class AsyncJobRequest(BaseModel):
    """An asynchronous job request; unknown keys are refused (a typo is an error, not ignored)."""

    model_config = ConfigDict(extra="forbid")

    jobId: str = Field(min_length=1, max_length=128)
    requestTime: str | None = None
    s3Key: str | None = Field(default=None, min_length=1, max_length=1024)
    inputUri: str | None = Field(default=None, min_length=1, max_length=2048)
    patient: dict[str, float | int | str | None] | None = None
    options: JobOptions = JobOptions()

    @field_validator("jobId")
    @classmethod
    def _job_id(cls, value: str) -> str:
        if not JOB_ID.match(value):
            raise ValueError("jobId must be 1-128 characters: letters, digits and . _ : - (starting with a "
                             "letter or digit); it names the job's outputs")
        return value

    @field_validator("patient")
    @classmethod
    def _patient(cls, value: dict | None) -> dict | None:
        unknown = sorted(set(value or {}) - set(PATIENT_KEYS))
        if unknown:
            raise ValueError(f"unknown patient key(s) {', '.join(unknown)} (known: {', '.join(PATIENT_KEYS)})")
        try:
            patient_from(value)  # a value that is not a number is refused now, not when the job runs
        except CaseDataError as exc:
            raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _one_location(self) -> AsyncJobRequest:
        if (self.s3Key is None) == (self.inputUri is None):
            raise ValueError("give exactly one of s3Key (relative to the allowed input prefix) and inputUri")
        return self


# -- where a job may read -------------------------------------------------------------------
def _normal(uri: str, what: str) -> str:
    """A location in one canonical form (s3://bucket/key or an absolute local path), or InputRefused."""
    if any(c in uri for c in "?#\\\x00") or any(ord(c) < 32 for c in uri):
        raise InputRefused(f"{what} {redact(uri)!r}: query strings, fragments, backslashes and control characters "
                           "are not allowed")
    if uri.startswith("s3://"):
        bucket, _, key = uri[5:].partition("/")
        parts = key.split("/")
        if not bucket or any(p in ("..", ".") for p in parts) or "" in parts[:-1]:
            raise InputRefused(f"{what} {redact(uri)!r}: not a plain s3://bucket/key location (no '..', '.' or '//')")
        return f"s3://{bucket}/{key}"
    if "://" in uri or uri.startswith("file:"):
        raise InputRefused(f"{what} {redact(uri)!r}: only s3:// and local paths are served")
    if not os.path.isabs(uri) or ".." in uri.split("/"):
        raise InputRefused(f"{what} {uri!r}: a local location must be an absolute path without '..'")
    return os.path.realpath(uri)  # symlinks resolved: a link cannot lead out of the prefix


def _inside(location: str, prefix: str) -> bool:
    prefix = prefix.rstrip("/")
    return location == prefix or location.startswith(prefix + "/")


def input_location(settings: ServeSettings, request: AsyncJobRequest) -> str:
    """The recording's location (canonical), checked to lie below one of ``settings.input_prefixes``."""
    prefixes = [_normal(p.rstrip("/") if p.rstrip("/") else p, "input prefix") for p in settings.input_prefixes]
    if not prefixes:
        raise InputRefused("this service reads no recordings: no input prefix is configured (--input-prefix)")
    if request.s3Key is not None:
        key = request.s3Key
        if key.startswith("/") or "://" in key:
            raise InputRefused(f"s3Key {key!r}: a key relative to the input prefix (no leading '/', no scheme)")
        if ".." in key.split("/"):
            raise InputRefused(f"s3Key {key!r}: '..' is not allowed")
        raw = prefixes[0].rstrip("/") + "/" + key
    else:
        raw = request.inputUri
    location = _normal(raw, "location")
    if location.endswith("/"):
        raise InputRefused(f"{redact(location)}: names a folder, not a recording")
    if not any(_inside(location, p) for p in prefixes):
        raise InputRefused(f"{redact(location)} is outside the locations this service may read")
    return location


# -- the status document --------------------------------------------------------------------
def iso(unix: float | None) -> str | None:
    """Unix time as ISO 8601 UTC with milliseconds.

    >>> iso(1700000000.25)
    '2023-11-14T22:13:20.250Z'
    """
    if unix is None:
        return None
    t = _dt.datetime.fromtimestamp(unix, _dt.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def status_doc(job: ServiceJob) -> dict[str, Any]:
    seconds = job.processing_time_s
    return {
        "jobId": job.job_id,
        "status": job.status,
        "processing_time_seconds": None if seconds is None else round(seconds, 3),
        "output_type": OUTPUT_TYPE if job.status == "Completed" else None,
        "result": job.result,
        "completedTimeStamp": iso(job.finished_at) if job.status in FINAL else None,
        "error": job.error,
    }


# -- running a job (in a worker) -------------------------------------------------------------
def _number(x: float) -> float | None:
    return None if not math.isfinite(x) else round(float(x), 6)


def summary(table: CaseTable, job_id: str, location: str, model_uri: str, spec_hash: str) -> dict[str, Any]:
    """What a reader wants before opening the timeline: rows, time span, per-target mean and last."""
    targets = {}
    for j, (name, unit) in enumerate(table.targets):
        column = table.predicted[:, j]
        targets[name] = {"unit": unit, "mean_predicted": _number(column.mean()) if table.rows else None,
                         "last_predicted": _number(column[-1]) if table.rows else None}
    first, last = (int(table.time_s[0]), int(table.time_s[-1])) if table.rows else (None, None)
    return {
        "jobId": job_id,
        "input": redact(location),
        "model": {"uri": redact(model_uri), "spec_hash": spec_hash},
        "rows": table.rows,
        "time_span": {"first_s": first, "last_s": last,
                      "start_utc": iso(table.start_unix + first) if first is not None else None,
                      "end_utc": iso(table.start_unix + last) if last is not None else None},
        "targets": targets,
    }


class Abandoned(Exception):
    """The worker no longer holds the job (cancelled, or its lease went to another worker)."""


def run_job(settings: ServeSettings, predictor, job: ServiceJob, still_mine: Callable[[], bool] = lambda: True) -> dict:
    """Read the job's recording, predict it, write its timeline and summary below
    ``settings.results`` (summary last); the result for the status document. Raises a
    `VitalflowError` or `InputRefused` saying why the job fails, `Abandoned` when ``still_mine``
    says the job is no longer this worker's (nothing is written then)."""
    request = AsyncJobRequest.model_validate(job.request)
    location = input_location(settings, request)
    parent, _, name = location.rpartition("/")
    data = Store(parent).read_bytes(name)
    if not still_mine():
        raise Abandoned(job.job_id)
    table = predict_recording(data, request.patient or {}, predictor, name=name)
    if not still_mine():
        raise Abandoned(job.job_id)
    out = Store(settings.results)
    about = summary(table, job.job_id, location, predictor.uri, predictor.card.spec.hash)
    out.write_bytes(f"{job.job_id}/{TIMELINE}", table.parquet())
    if request.options.csv:
        out.write_bytes(f"{job.job_id}/{TIMELINE_CSV}", table.csv())
    out.write_bytes(f"{job.job_id}/{SUMMARY}", json.dumps(about, indent=1).encode())
    result = {"output": redact(out.url(f"{job.job_id}/{SUMMARY}")), "timeline": redact(out.url(f"{job.job_id}/{TIMELINE}")),
              "rows": table.rows, "time_span": about["time_span"],
              "targets": {k: {"mean_predicted": v["mean_predicted"], "last_predicted": v["last_predicted"]}
                          for k, v in about["targets"].items()}}
    if request.options.csv:
        result["csv"] = redact(out.url(f"{job.job_id}/{TIMELINE_CSV}"))
    return result


def remove_outputs(settings: ServeSettings, job_id: str) -> None:
    """A cancelled job's outputs written before it learnt it was cancelled."""
    out = Store(settings.results)
    for name in (SUMMARY, TIMELINE, TIMELINE_CSV):
        out.delete(f"{job_id}/{name}")


def write_failure(settings: ServeSettings, job: ServiceJob, error: str) -> str:
    """``<jobId>.json`` below ``settings.failures``: the status document, the request (its
    location without credentials) and the attempts."""
    request = {k: (redact(v) if isinstance(v, str) else v) for k, v in job.request.items()}
    doc = {**status_doc(job), "status": "Failed", "error": error, "attempts": job.attempts, "request": request}
    store = Store(settings.failures)
    store.write_bytes(f"{job.job_id}.json", json.dumps(doc, indent=1).encode())
    return redact(store.url(f"{job.job_id}.json"))


def failure_reason(exc: BaseException) -> str:
    """One line, without credentials."""
    from vitalflow.errors import VitalflowError

    text = one_line(exc)
    if isinstance(exc, (VitalflowError, InputRefused)):
        return redact(text)
    return redact(f"internal error: {type(exc).__name__}: {text}")


__all__ = ["AsyncJobRequest", "JobOptions", "InputRefused", "Abandoned", "input_location", "status_doc", "run_job",
           "write_failure", "remove_outputs", "failure_reason"]
