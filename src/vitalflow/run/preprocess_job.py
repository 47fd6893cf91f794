"""Preprocessing as a job on the case runner: what a worker does with one case, and how the main
process commits finished cases (parts, then the ledger record).

Per case (in a worker): read the recording, bound its span, transform it, encode its windows
into one block ready to append to a part. Problems become failed or excluded outcomes with a stage
and a one-line reason; nothing raises out of a case.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass
from concurrent.futures import Future
from typing import Callable

from vitalflow.dataset.card import CaseOutcome
from vitalflow.dataset.examples import case_block
from vitalflow.dataset.ledger import Ledger
from vitalflow.dataset.parts import PartWriter
from vitalflow.dataset.verify import block_units, check_unit
from vitalflow.errors import CaseDataError, VitalflowError, one_line
from vitalflow.run.inputs import CaseFile, local_copy
from vitalflow.runtime.pool import peak_rss_mb
from vitalflow.runtime.runner import CaseResult, CaseTimeout
from vitalflow.spec.model import Config, Spec
from vitalflow.store import Store
from vitalflow.transform.case import CaseArrays, Span, bounded_span, preprocess_case
from vitalflow.transform.decisions import label_counts
from vitalflow.transform.patient import Patient
from vitalflow.vital.read import Recording, read_vital


def subject_key(patient: Patient) -> str:
    """The subject a case belongs to; a case without subjectid is its own subject."""
    return patient.subject_id or f"case-{patient.case_id}"


@dataclass(frozen=True)
class PreprocessJob:
    """Everything a worker needs to preprocess any case of the run (handed to each worker once)."""

    input_uri: str
    files: dict[int, CaseFile]
    patients: dict[int, Patient]
    split_of: dict[int, str]
    config: Config
    spec: Spec

    def size(self, case_id: int) -> int:
        return self.files[case_id].bytes

    def _outcome(self, case_id: int) -> CaseOutcome:
        patient = self.patients.get(case_id)
        return CaseOutcome(case_id, "failed", split=self.split_of.get(case_id),
                           subject_id=subject_key(patient) if patient else None)

    def lost_case(self, case_id: int, reason: str) -> CaseResult:
        outcome = self._outcome(case_id)
        outcome.stage, outcome.reason = "worker", reason
        return _result(outcome, b"", {})

    def run_case(self, case_id: int) -> CaseResult:
        return self.run_case_with(case_id, "encode", self._encode)

    def _encode(self, outcome: CaseOutcome, recording: Recording, arrays: CaseArrays) -> bytes:
        output = self.config.output
        return case_block(arrays, outcome.subject_id, output.write_mask, output.compression, self.spec.decisions)

    def run_case_with(self, case_id: int, last_stage: str,
                      finish: Callable[[CaseOutcome, Recording, CaseArrays], object]) -> CaseResult:
        """Read and transform the case, then ``finish`` it (stage ``last_stage``): the result's
        payload is ``(outcome, what finish returned)``, or ``(outcome, b"")`` for a case excluded or
        failed. Another job on the case runner (batch prediction) reads and transforms cases
        exactly as preprocessing does through this method."""
        limits = self.config.limits
        timings: dict[str, float] = {}
        patient = self.patients.get(case_id)
        outcome = self._outcome(case_id)
        stage = "read"
        try:
            file = self.files[case_id]
            if file.problem:
                raise CaseDataError(f"case {case_id}: {file.problem}")
            if patient is None:
                stage = "clinical"
                raise CaseDataError(f"case {case_id}: no row in the clinical table")
            t = time.perf_counter()
            try:
                with local_copy(self.input_uri, file.name) as path:
                    recording = read_vital(path, self.spec.tracks,
                                           max_inflated_bytes=limits.max_inflated_bytes(file.bytes))
                span = bounded_span(recording.duration_s, recording.tracks, patient.caseend,
                                    limits.max_recording_h * 3600)
            except VitalflowError as exc:
                raise CaseDataError(f"case {case_id}: {file.name}: {exc}" if file.name not in str(exc)
                                    else f"case {case_id}: {exc}") from exc
            outcome.packed, outcome.read = recording.packed, read_details(recording, span)
            report = recording.report
            if report.stop_reason and report.read_fraction < limits.min_read_fraction:
                raise CaseDataError(
                    f"case {case_id}: {file.name}: reading stopped at byte {report.read_bytes} of "
                    f"{report.inflated_bytes} ({report.read_fraction:.0%}, below limits.min_read_fraction "
                    f"{limits.min_read_fraction:.0%}): {report.stop_reason}")
            t2 = time.perf_counter()
            timings["read"] = t2 - t
            stage = "transform"
            arrays = preprocess_case(recording.tracks, span.duration_s, patient, self.spec,
                                     self.config.windows, self.config.crop_to_anesthesia)
            t3 = time.perf_counter()
            timings["transform"] = t3 - t2
            outcome.crop = arrays.crop
            outcome.feature_stats = arrays.feature_stats
            outcome.static_defaulted, outcome.static_clipped = arrays.static_defaulted, arrays.static_clipped
            outcome.windows_without_data = arrays.windows_without_data
            outcome.setpoint_sources = arrays.setpoint_sources
            outcome.label_counts = label_counts(arrays.labels, arrays.label_mask, self.spec.decisions)
            if arrays.n_windows == 0:
                outcome.status = "excluded"
                outcome.reason = exclusion_reason(recording, arrays, self.spec, self.config)
                return _result(outcome, b"", timings)
            stage = last_stage
            block = finish(outcome, recording, arrays)
            timings[last_stage] = time.perf_counter() - t3
            outcome.status, outcome.windows = "ok", arrays.n_windows
            timings["peak_rss_mb"] = peak_rss_mb()
            return _result(outcome, block, timings)
        except VitalflowError as exc:
            outcome.stage, outcome.reason = stage, one_line(exc)
        except MemoryError:
            outcome.stage = stage
            outcome.reason = (f"case {case_id}: out of memory: needs more than limits.worker_memory_mb "
                              f"{limits.worker_memory_mb} MB")
        except CaseTimeout:
            outcome.stage = stage
            outcome.reason = f"case {case_id}: took longer than limits.case_timeout_s {limits.case_timeout_s:g} s"
        except Exception as exc:  # a bug or an unforeseen input in this case's data: record it, go on
            outcome.stage, outcome.reason = "internal", f"case {case_id}: {type(exc).__name__}: {one_line(exc)}"
            outcome.traceback = traceback.format_exc()  # in the card; printed with --verbose
        return _result(outcome, b"", timings)


def _result(outcome: CaseOutcome, block, timings: dict[str, float]) -> CaseResult:
    return CaseResult(outcome.case_id, outcome.status == "failed", outcome.windows, (outcome, block), timings,
                      None if outcome.status != "failed" else f"at {outcome.stage}: {outcome.reason}")


def read_details(recording: Recording, span: Span) -> dict | None:
    """What the card says about a read that was not clean (None when it was)."""
    r = recording.report
    if not (r.stop_reason or r.gzip_note or span.note):
        return None
    return {"file_bytes": r.file_bytes, "inflated_bytes": r.inflated_bytes, "read_bytes": r.read_bytes,
            "read_fraction": round(r.read_fraction, 6), "stop_reason": r.stop_reason, "gzip_note": r.gzip_note,
            "records_after_end": span.records_after_end, "span_note": span.note}


def exclusion_reason(recording: Recording, arrays: CaseArrays, spec: Spec, config: Config) -> str:
    """Why a case that was read and transformed has no window: the first true reason of
    no spec track, no usable value, too short, too little recorded in every window."""
    if not recording.tracks:
        names = recording.report.track_names
        if not any(n in spec.tracks for n in names):
            listed = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
            has = f"it has {len(names)} other track(s): {listed}" if names else "it defines no tracks"
            return f"none of the spec's tracks is in the recording ({has})"
        return "the spec's tracks in the recording hold no records"
    if all(s.source is None for s in arrays.feature_stats.values()):
        return "no plausible value in any of the spec's tracks (all missing, NaN or out of range)"
    w = config.windows
    if arrays.windows_without_data == 0:
        return (f"too short: {arrays.crop.end_s - arrays.crop.start_s} s after cropping, "
                f"one window plus horizon needs {w.length_s + w.horizon_s} s")
    n_inputs = len(spec.timeseries) - len(spec.targets)
    return (f"none of its {arrays.windows_without_data} windows has enough recorded data "
            f"(windows.min_observed_share {w.min_observed_share:g}: at least that share of the {n_inputs} "
            "input signals recorded at least once in the window)")


class PartsCommitter:
    """Commits finished cases: their blocks into one part per split, published, then the ledger
    record naming them; after each commit the workers read its blocks back (a head start for the
    verification at the end)."""

    def __init__(self, store: Store, ledger: Ledger, seq: int, host: str, compression: str, schema: tuple):
        self.store, self.ledger, self.seq, self.host, self.compression = store, ledger, seq, host, compression
        self.schema = schema  # `verify.unit_schema` of the examples
        self.part = PartWriter(store, seq, host, compression)
        self.batch: list[CaseOutcome] = []
        self.checks: dict[tuple, Future] = {}  # block key -> its read-back check, run in the workers

    def add(self, result: CaseResult) -> None:
        outcome, block = result.payload
        if block:
            self.part.add(outcome.split, outcome.case_id, block, outcome.windows)
        self.batch.append(outcome)

    def commit(self, background: Callable[..., Future] | None) -> None:
        if not self.batch:
            return
        published = self.part.publish()
        self.ledger.record(self.seq, published, self.batch)
        self.seq, self.batch = self.seq + 1, []
        self.part = PartWriter(self.store, self.seq, self.host, self.compression)
        if background is None:
            return
        for split, file in published.items():
            for unit in block_units(split, vars(file)):
                self.checks[unit.key] = background(check_unit, self.store.uri, unit, *self.schema)

    def abort(self) -> None:
        self.part.abort()

    def checked(self) -> dict:
        """The read-back checks that completed (a check lost with a broken pool or a stop is simply
        done again by verify)."""
        return {key: f.result() for key, f in self.checks.items() if f.done() and not f.cancelled()
                and f.exception() is None}
