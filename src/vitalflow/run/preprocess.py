"""A preprocessing run on one host: plan, process cases in workers, commit parts, card, verify.

Safe to kill at any instant: examples are committed in parts every ``commit_every`` cases, the
ledger records each commit after its parts are published, and a rerun with the same inputs and
config (resume is the default) skips committed cases and removes unpublished leftovers.
"""

from __future__ import annotations

import hashlib
import logging
import os
import resource
import signal
import socket
import time
import traceback
from collections import deque
from concurrent.futures import FIRST_COMPLETED, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

from vitalflow.dataset.card import CaseOutcome, build_card, card_name, example_schema, write_card
from vitalflow.dataset.examples import case_block
from vitalflow.dataset.ledger import Ledger
from vitalflow.dataset.merge import merge_parts
from vitalflow.dataset.parts import PART_RE, PartWriter
from vitalflow.dataset.split import assign_splits
from vitalflow.dataset.verify import VerifyReport, block_units, check_unit, unit_schema, verify_output
from vitalflow.errors import CaseDataError, InputError, OutputError, VitalflowError
from vitalflow.pool import WorkerPool
from vitalflow.run.cases import CaseSelection
from vitalflow.run.inputs import CaseFile, find_case_files, input_identity, largest_first, local_copy, read_input_bytes
from vitalflow.run.progress import Reporter, Tally
from vitalflow.run.stop import StopRequest
from vitalflow.spec.model import Config, Spec, config_hash
from vitalflow.store import Store
from vitalflow.transform.case import CaseArrays, Span, bounded_span, preprocess_case
from vitalflow.transform.patient import Patient
from vitalflow.vital.clinical import read_clinical
from vitalflow.vital.read import Recording, read_vital

log = logging.getLogger("vitalflow")
LEDGER_FORMAT = "vitalflow-ledger/1"


@dataclass(frozen=True)
class RunOptions:
    workers: int = os.cpu_count() or 1
    commit_every: int = 16  # cases per commit (parts + ledger record)
    overwrite: bool = False
    retry_failed: bool = False
    merge: bool = False
    host_index: int = 0  # this host among host_count hosts sharing the run (SageMaker instances)
    host_count: int = 1
    stop_grace_s: float = 20.0  # after a stop request, how long cases in flight may finish

    @property
    def host(self) -> str:
        return f"h{self.host_index}"


@dataclass
class RunResult:
    output: str
    card: dict
    verify: VerifyReport | None  # None when the run stopped early (the card says partial)
    stopped_by: str | None = None

    @property
    def complete(self) -> bool:
        return self.card["status"] == "complete"


def subject_key(patient: Patient) -> str:
    """The subject a case belongs to; a case without subjectid is its own subject."""
    return patient.subject_id or f"case-{patient.case_id}"


def host_cases(selected: list[int], host_index: int, host_count: int) -> list[int]:
    """This host's share: every ``host_count``-th case. Disjoint across hosts, together all cases.

    >>> host_cases([1, 2, 3, 4, 5], 0, 2), host_cases([1, 2, 3, 4, 5], 1, 2)
    ([1, 3, 5], [2, 4])
    """
    return selected[host_index::host_count]


def preprocess(
    input_uri: str | Path,
    clinical_uri: str | Path,
    output: str | Path,
    config: Config,
    spec: Spec,
    cases: CaseSelection | None = None,
    options: RunOptions = RunOptions(),
    reporter: Reporter | None = None,
) -> RunResult:
    """Preprocess the selected cases (default: every ``<caseid>.vital`` in the input) that have a
    file; selected ids without one are listed in the card and count as not succeeded."""
    t0 = time.perf_counter()
    input_uri, clinical_uri = str(input_uri), str(clinical_uri)
    clinical = read_input_bytes(clinical_uri, "clinical table")
    patients = read_clinical(clinical, clinical_uri)
    files = find_case_files(input_uri)
    selection = cases if cases is not None else CaseSelection.of(files)
    selected = selection.among(files)
    if not selected:
        what = f"none of the {len(selection)} selected case ids ({selection.head(5)}) has" if cases else "no"
        raise InputError(f"{input_uri}: {what} case file (<caseid>.vital)")
    without_file = selection.without(files) if options.host_index == 0 else CaseSelection(())
    if without_file.ranges:
        log.warning("%d selected case id(s) have no file in %s: %s", len(without_file), input_uri, without_file.head())
    mine = host_cases(selected, options.host_index, options.host_count)
    split_of = assign_splits({c: subject_key(patients[c]) for c in mine if c in patients},
                             config.split.fractions, config.split.seed)
    store = Store(output)
    ledger = Ledger(store, options.host)
    inputs = {
        "input": input_identity(input_uri, files, selected),
        "clinical": {"uri": clinical_uri, "sha256": hashlib.sha256(clinical).hexdigest()},
        "selection": selection.text if cases is not None else None,
        "without_file": {"count": len(without_file), "ids": without_file.head(50)},
    }
    manifest = {
        "format": LEDGER_FORMAT,
        "host": options.host,
        "host_count": options.host_count,
        "config_hash": config_hash(config, spec),
        "config": config.model_dump(mode="json"),
        "spec": {"name": spec.name, "version": spec.version, "hash": spec.content_hash()},
        "spec_content": spec.model_dump(mode="json"),
        "cases": selected,
        "clinical_sha256": inputs["clinical"]["sha256"],
        "inputs": inputs,
    }
    reporter = reporter or Reporter()
    with store.lock(ledger.lock_name, f"vitalflow preprocess on {socket.gethostname()}"), StopRequest() as stop:
        _open_ledger(store, ledger, manifest, options, card_name(options.host, options.host_count))
        state = ledger.load()
        removed = ledger.remove_leftovers(state)
        if removed:
            log.warning("removed %d unpublished part(s) of an interrupted run: %s", len(removed), ", ".join(removed))
        done = state.outcomes
        todo = [c for c in mine if c not in done or (options.retry_failed and done[c].status == "failed")]
        tally = Tally(total=len(mine))
        for c in mine:
            if c in done and c not in todo:
                tally.add(done[c].windows, done[c].status == "failed")
        tally.done_at_start = tally.done
        timings = dict.fromkeys(("read", "transform", "encode", "peak_rss_mb"), 0.0)
        reporter.start(tally)
        context = CaseContext(input_uri, files, patients, split_of, config, spec)
        try:
            checked, deaths = _run_cases(todo, store, ledger, state.next_seq, context, options, stop, tally,
                                         reporter, timings)
        finally:
            reporter.close()
            store.remove_staging(options.host)  # empty by now: parts are published or deleted

        state = ledger.load()
        outcomes = state.outcomes
        complete = all(c in outcomes for c in mine)
        if options.merge and options.host_count > 1:
            log.warning("--merge ignored on host %s of %d: run `vitalflow verify --merge` once all hosts finished",
                        options.host, options.host_count)
        merge = complete and options.merge and options.host_count == 1
        merged = merge_parts(store, state.parts, config.output.compression) if merge else {}
        timings["total"] = time.perf_counter() - t0
        run_info = {
            "host": options.host,
            "host_count": options.host_count,
            "workers": options.workers,
            "commit_every": options.commit_every,
            "stopped_by": stop.requested,
            "cases_processed": tally.done - tally.done_at_start,
            "removed_leftovers": removed,
            "peak_rss_mb": {"main": peak_rss_mb(), "largest_worker": timings.pop("peak_rss_mb")},
            "worker_deaths": deaths,
        }
        name = card_name(options.host, options.host_count)
        card = build_card(spec, config, mine, outcomes, state.parts, timings, merged, run_info, inputs)
        write_card(store, card, name)
        if not complete:
            return RunResult(store.uri, card, None, stop.requested)
        t1 = time.perf_counter()
        report = verify_output(store.uri, host=options.host if options.host_count > 1 else None,
                               workers=options.workers, checked=checked)
        card["timings_s"]["verify"] = round(time.perf_counter() - t1, 3)
        write_card(store, card, name)
        return RunResult(store.uri, card, report, stop.requested)


def _open_ledger(store: Store, ledger: Ledger, manifest: dict, options: RunOptions, card: str) -> None:
    """Start fresh, resume, or refuse an output written under other inputs or config.

    A recording of a case that failed may have changed (fixing it is what ``--retry-failed`` is
    for); with ``--retry-failed`` the manifest then records the new files the retried cases read."""
    if options.overwrite:
        ledger.clear()
    existing = ledger.read_manifest()
    if existing is None:
        mine = ledger.prefix + "/"
        foreign = [n for n in store.list() if n == card or n.startswith(mine)
                   or (PART_RE.match(n) and PART_RE.match(n).group(3) == ledger.host)]
        if foreign:
            raise OutputError(
                f"{store.uri} already holds a dataset ({foreign[0]}) this run did not start; "
                "choose another --output or pass --overwrite to replace it"
            )
        ledger.write_manifest(manifest)
        return
    failed = {str(c) for c, o in ledger.load().outcomes.items() if o.status == "failed"}
    differences = manifest_differences(existing, manifest, failed)
    if differences:
        raise OutputError(
            f"{store.uri} was written from other inputs or settings: {'; '.join(differences)}. "
            "Resuming would mix two datasets. Use the original inputs and settings to resume, or pass "
            "--overwrite to delete it and start fresh"
        )
    if options.retry_failed and existing.get("inputs") != manifest["inputs"]:
        ledger.write_manifest(manifest)


def manifest_differences(old: dict, new: dict, failed: set[str] = frozenset()) -> list[str]:
    """Why an output's manifest ``old`` cannot be resumed with ``new`` (empty: it can). Recordings
    of the ``failed`` cases (ids as strings) may have changed."""
    out = []
    if old.get("config_hash") != new["config_hash"]:
        out.append(f"config or spec (spec {old.get('spec', {}).get('hash', '?')[:19]}, "
                   f"config {old.get('config_hash', '?')[:19]})")
    if old.get("cases") != new["cases"]:
        out.append("case selection")
    old_in, new_in = (old.get("inputs") or {}), new["inputs"]
    if old.get("clinical_sha256") != new["clinical_sha256"]:
        out.append(f"clinical table (was {old_in.get('clinical', {}).get('uri', '?')}, "
                   f"sha256 {old.get('clinical_sha256', '?')[:12]})")
    old_input, new_input = old_in.get("input") or {}, new_in["input"]
    if old_input.get("uri") != new_input["uri"]:
        out.append(f"--input {new_input['uri']} (the output was made from {old_input.get('uri', '?')})")
    else:
        before, now = old_input.get("recordings") or {}, new_input["recordings"]
        changed = [now[c][0] for c in now if c in before and before[c] != now[c] and c not in failed]
        if changed:
            out.append(f"{len(changed)} recording(s) changed since (size or modification time): "
                       f"{', '.join(changed[:5])}")
    return out


# --- the case loop ------------------------------------------------------------------------------
@dataclass(frozen=True)
class CaseContext:
    """What a worker needs to process any case of the run (handed to each worker once)."""

    input_uri: str
    files: dict[int, CaseFile]
    patients: dict[int, Patient]
    split_of: dict[int, str]
    config: Config
    spec: Spec


class CaseTimeout(BaseException):
    """Raised in a worker by SIGALRM when a case exceeds ``limits.case_timeout_s``. A BaseException,
    so that no ``except Exception`` on the way turns it into another error."""


_context: CaseContext | None = None
_timed = False  # workers: each case runs under an alarm (set by `_init_worker`)


def _set_context(context: CaseContext) -> None:
    """Make ``context`` the one `process_case` uses (in this process)."""
    global _context
    _context = context


def _init_worker(context: CaseContext) -> None:
    """A worker of the run: the context, the memory limit (address space: an allocation past it
    raises MemoryError, which fails the case instead of waking the kernel's OOM killer) and the
    per-case alarm."""
    global _timed
    _set_context(context)
    limit = context.config.limits.worker_memory_mb * 2**20
    try:
        resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
    except (ValueError, OSError):  # a hard limit below ours: keep the system's
        log.info("could not limit worker memory to %d MB", context.config.limits.worker_memory_mb)
    signal.signal(signal.SIGALRM, _alarm)
    _timed = True


def _alarm(signum, frame):
    raise CaseTimeout


def process_case(case_id: int) -> tuple[CaseOutcome, bytes, dict[str, float]]:
    """Read, transform and encode one case (in a worker): its outcome, and its examples as a block
    ready to append to a part file. Problems become failed/excluded outcomes with a stage and a
    one-line reason."""
    ctx = _context
    limits = ctx.config.limits
    timings: dict[str, float] = {}
    patient = ctx.patients.get(case_id)
    outcome = CaseOutcome(case_id, "failed", split=ctx.split_of.get(case_id),
                          subject_id=subject_key(patient) if patient else None)
    stage = "read"
    if _timed:
        signal.setitimer(signal.ITIMER_REAL, limits.case_timeout_s)
    try:
        file = ctx.files[case_id]
        if file.problem:
            raise CaseDataError(f"case {case_id}: {file.problem}")
        if patient is None:
            stage = "clinical"
            raise CaseDataError(f"case {case_id}: no row in the clinical table")
        t = time.perf_counter()
        try:
            with local_copy(ctx.input_uri, file.name) as path:
                recording = read_vital(path, ctx.spec.tracks, max_inflated_bytes=limits.max_inflated_bytes(file.bytes))
            span = bounded_span(recording.duration_s, recording.tracks, patient.caseend, limits.max_recording_h * 3600)
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
        arrays = preprocess_case(recording.tracks, span.duration_s, patient, ctx.spec,
                                 ctx.config.windows, ctx.config.crop_to_anesthesia)
        t3 = time.perf_counter()
        timings["transform"] = t3 - t2
        outcome.crop = arrays.crop
        outcome.feature_stats = arrays.feature_stats
        outcome.static_defaulted, outcome.static_clipped = arrays.static_defaulted, arrays.static_clipped
        outcome.windows_without_data = arrays.windows_without_data
        if arrays.n_windows == 0:
            outcome.status, outcome.reason = "excluded", exclusion_reason(recording, arrays, ctx.spec, ctx.config)
            return outcome, b"", timings
        stage = "encode"
        block = case_block(arrays, outcome.subject_id, ctx.config.output.write_mask, ctx.config.output.compression)
        timings["encode"] = time.perf_counter() - t3
        outcome.status, outcome.windows = "ok", arrays.n_windows
        timings["peak_rss_mb"] = peak_rss_mb()
        return outcome, block, timings
    except VitalflowError as exc:
        outcome.stage, outcome.reason = stage, _one_line(exc)
    except MemoryError:
        outcome.stage = stage
        outcome.reason = (f"case {case_id}: out of memory: needs more than limits.worker_memory_mb "
                          f"{limits.worker_memory_mb} MB")
    except CaseTimeout:
        outcome.stage = stage
        outcome.reason = f"case {case_id}: took longer than limits.case_timeout_s {limits.case_timeout_s:g} s"
    except Exception as exc:  # a bug or an unforeseen input in this case's data: record it, go on
        outcome.stage, outcome.reason = "internal", f"case {case_id}: {type(exc).__name__}: {_one_line(exc)}"
        outcome.traceback = traceback.format_exc()  # in the card; printed with --verbose
    finally:
        if _timed:
            signal.setitimer(signal.ITIMER_REAL, 0)
    return outcome, b"", timings


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


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


def _run_cases(todo, store, ledger, seq, context: CaseContext, options: RunOptions, stop: StopRequest,
               tally: Tally, reporter: Reporter, timings: dict) -> tuple[dict, list[dict]]:
    """Process the cases; return the read-back checks of the blocks committed (see `verify_output`)
    and the worker processes that died (exit code or signal, and the cases lost with them)."""
    config, spec = context.config, context.spec
    compression = config.output.compression
    schema = unit_schema(example_schema(spec, config), compression)
    part = PartWriter(store, seq, options.host, compression)
    batch: list[CaseOutcome] = []
    checks: dict = {}  # block key -> future of its read-back check, run by the workers between cases

    def commit() -> None:
        nonlocal part, seq, batch
        if batch:
            published = part.publish()
            ledger.record(seq, published, batch)
            seq, batch = seq + 1, []
            part = PartWriter(store, seq, options.host, compression)
            if stop.requested:
                return  # a stopped run is partial and not verified: do not delay the stop
            for split, file in published.items():
                for unit in block_units(split, vars(file)):
                    checks[unit.key] = workers.submit(check_unit, store.uri, unit, *schema)

    def pool() -> WorkerPool:
        return WorkerPool(max(1, min(options.workers, len(todo))), _init_worker, (context,))

    workers = pool() if todo else None
    pending, inflight = deque(largest_first(todo, context.files)), {}
    deaths: list[dict] = []
    limit = 2 * options.workers  # cases in flight: memory depends on this, not on len(todo)
    deadline = None
    try:
        while pending or inflight:
            if stop.requested and deadline is None:
                deadline = time.monotonic() + options.stop_grace_s
                pending.clear()
            while pending and len(inflight) < limit:
                case_id = pending.popleft()
                inflight[workers.submit(process_case, case_id)] = case_id
            finished, _ = wait(list(inflight), timeout=0.5, return_when=FIRST_COMPLETED)
            timings["peak_rss_mb"] = max(timings["peak_rss_mb"], workers.peak_rss_mb())  # also of one that dies
            broken = False
            for future in finished:
                case_id = inflight.pop(future)
                try:
                    outcome, block, case_timings = future.result()
                except BrokenProcessPool:  # a worker was killed (OOM?): every case in flight is lost
                    if not broken:
                        died = workers.deaths()
                        deaths.append({"cases_in_flight": sorted([case_id, *inflight.values()]), "workers": died})
                    outcome, block, case_timings = _worker_died(case_id, context, died), b"", {}
                    broken = True
                if block:
                    part.add(outcome.split, case_id, block, outcome.windows)
                for k, v in case_timings.items():
                    timings[k] = max(timings[k], v) if k == "peak_rss_mb" else timings[k] + v
                if outcome.status == "failed":  # listed at the end; as it happens with --verbose
                    log.info("case %s failed at %s: %s", case_id, outcome.stage, outcome.reason)
                batch.append(outcome)
                tally.add(outcome.windows, outcome.status == "failed")
                if len(batch) >= options.commit_every:
                    commit()
            if broken:
                workers.kill()
                checks.clear()  # lost with the pool: verify reads those blocks at the end
                workers = pool()
                for case_id in inflight.values():  # lost with the pool: run them again
                    pending.appendleft(case_id)
                inflight.clear()
            if deadline is not None and time.monotonic() > deadline and inflight:
                log.warning("abandoning %d case(s) still in flight; they will run on resume", len(inflight))
                workers.kill()
                inflight.clear()
            reporter.update()
        commit()
    except BaseException:
        part.abort()
        if workers is not None:
            workers.kill()
        raise
    done = {}
    for key, future in checks.items():
        if stop.requested:
            future.cancel()
            continue
        try:
            done[key] = future.result()
        except Exception:  # noqa: BLE001 - a check lost with a broken pool is simply run again by verify
            pass
    if workers is not None:
        workers.close()
    return done, deaths


def _worker_died(case_id: int, context: CaseContext, died: list[str]) -> CaseOutcome:
    patient = context.patients.get(case_id)
    how = "; ".join(died) or "killed, or out of memory"
    return CaseOutcome(case_id, "failed", split=context.split_of.get(case_id),
                       subject_id=subject_key(patient) if patient else None, stage="worker",
                       reason=f"case {case_id}: the worker process died ({how}) while this case was in flight")


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM; ``ru_maxrss`` would include a pre-exec parent)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
