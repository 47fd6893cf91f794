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
import socket
import time
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
from vitalflow.errors import CaseDataError, OutputError, VitalflowError
from vitalflow.pool import WorkerPool
from vitalflow.run.inputs import find_case_files, largest_first, local_copy, read_input_bytes
from vitalflow.run.progress import Reporter, Tally
from vitalflow.run.stop import StopRequest
from vitalflow.spec.model import Config, Spec, config_hash
from vitalflow.store import Store
from vitalflow.transform.case import preprocess_case
from vitalflow.transform.patient import Patient
from vitalflow.vital.clinical import read_clinical
from vitalflow.vital.read import read_vital

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
    cases: list[int] | None = None,
    options: RunOptions = RunOptions(),
    reporter: Reporter | None = None,
) -> RunResult:
    t0 = time.perf_counter()
    input_uri, clinical_uri = str(input_uri), str(clinical_uri)
    clinical = read_input_bytes(clinical_uri, "clinical table")
    patients = read_clinical(clinical, clinical_uri)
    files = find_case_files(input_uri)
    selected = sorted(files) if cases is None else cases
    if not selected:
        raise OutputError(f"{input_uri}: no case files (<caseid>.vital) found")
    mine = host_cases(selected, options.host_index, options.host_count)
    split_of = assign_splits(
        {c: subject_key(patients[c]) for c in selected if c in patients}, config.split.fractions, config.split.seed
    )
    store = Store(output)
    ledger = Ledger(store, options.host)
    manifest = {
        "format": LEDGER_FORMAT,
        "host": options.host,
        "host_count": options.host_count,
        "config_hash": config_hash(config, spec),
        "config": config.model_dump(mode="json"),
        "spec": {"name": spec.name, "version": spec.version, "hash": spec.content_hash()},
        "spec_content": spec.model_dump(mode="json"),
        "cases": selected,
        "clinical_sha256": hashlib.sha256(clinical).hexdigest(),
    }
    reporter = reporter or Reporter()
    with store.lock(ledger.lock_name, f"vitalflow preprocess on {socket.gethostname()}"), StopRequest() as stop:
        _open_ledger(store, ledger, manifest, options.overwrite, card_name(options.host, options.host_count))
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
        try:
            checked = _run_cases(todo, store, ledger, state.next_seq,
                                 (input_uri, files, patients, split_of, config, spec), options, stop, tally,
                                 reporter, timings)
        finally:
            reporter.close()

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
        }
        name = card_name(options.host, options.host_count)
        card = build_card(spec, config, mine, outcomes, state.parts, timings, merged, run_info)
        write_card(store, card, name)
        if not complete:
            return RunResult(store.uri, card, None, stop.requested)
        t1 = time.perf_counter()
        report = verify_output(store.uri, host=options.host if options.host_count > 1 else None,
                               workers=options.workers, checked=checked)
        card["timings_s"]["verify"] = round(time.perf_counter() - t1, 3)
        write_card(store, card, name)
        return RunResult(store.uri, card, report, stop.requested)


def _open_ledger(store: Store, ledger: Ledger, manifest: dict, overwrite: bool, card: str) -> None:
    """Start fresh, resume, or refuse an output written under other inputs or config."""
    if overwrite:
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
    differences = [what for key, what in (("config_hash", "config or spec"), ("cases", "case selection"),
                                          ("clinical_sha256", "clinical table"))
                   if existing.get(key) != manifest[key]]
    if differences:
        raise OutputError(
            f"{store.uri} was written with a different {' and '.join(differences)} "
            f"(spec {existing.get('spec', {}).get('hash', '?')[:19]}, config {existing.get('config_hash', '?')[:19]}); "
            "resuming would mix two datasets. Use the original settings to resume, or pass --overwrite to "
            "delete it and start fresh"
        )


# --- the case loop ------------------------------------------------------------------------------
_context: tuple = ()


def _set_context(*context) -> None:
    global _context
    _context = context


def process_case(case_id: int) -> tuple[CaseOutcome, bytes, dict[str, float]]:
    """Read, transform and encode one case (in a worker): its outcome, and its examples as a block
    ready to append to a part file. Problems become failed/excluded outcomes."""
    input_uri, files, patients, split_of, config, spec = _context
    timings: dict[str, float] = {}
    patient = patients.get(case_id)
    outcome = CaseOutcome(case_id, "failed", split=split_of.get(case_id),
                          subject_id=subject_key(patient) if patient else None)
    stage = "read"
    try:
        if case_id not in files:
            raise CaseDataError(f"case {case_id}: no file {case_id:04d}.vital (or other zero padding) in the input")
        if patient is None:
            stage = "clinical"
            raise CaseDataError(f"case {case_id}: no row in the clinical table")
        t = time.perf_counter()
        try:
            with local_copy(input_uri, files[case_id].name) as path:
                recording = read_vital(path, spec.tracks)
        except VitalflowError as exc:
            raise CaseDataError(f"case {case_id}: {exc}") from exc
        t2 = time.perf_counter()
        timings["read"] = t2 - t
        stage = "transform"
        arrays = preprocess_case(recording.tracks, recording.duration_s, patient, spec,
                                 config.windows, config.crop_to_anesthesia)
        t3 = time.perf_counter()
        timings["transform"] = t3 - t2
        outcome.crop, outcome.packed = arrays.crop, recording.packed
        outcome.feature_stats = arrays.feature_stats
        outcome.static_defaulted, outcome.static_clipped = arrays.static_defaulted, arrays.static_clipped
        if arrays.n_windows == 0:
            span = config.windows.length_s + config.windows.horizon_s
            outcome.status = "excluded"
            outcome.reason = (f"too short: {arrays.crop.end_s - arrays.crop.start_s} s after cropping, "
                              f"one window plus horizon needs {span} s")
            return outcome, b"", timings
        stage = "encode"
        block = case_block(arrays, outcome.subject_id, config.output.write_mask, config.output.compression)
        timings["encode"] = time.perf_counter() - t3
        outcome.status, outcome.windows = "ok", arrays.n_windows
        timings["peak_rss_mb"] = peak_rss_mb()
        return outcome, block, timings
    except VitalflowError as exc:
        outcome.stage, outcome.reason = stage, str(exc)
    except Exception as exc:  # a bug or an unforeseen input in this case's data: record it, go on
        log.exception("case %s: unexpected error", case_id)
        outcome.stage, outcome.reason = "internal", f"case {case_id}: {type(exc).__name__}: {exc}"
    return outcome, b"", timings


def _run_cases(todo, store, ledger, seq, context, options: RunOptions, stop: StopRequest, tally: Tally,
               reporter: Reporter, timings: dict) -> dict:
    """Process the cases; return the read-back checks of the blocks committed (see `verify_output`)."""
    config, spec = context[4], context[5]
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
        return WorkerPool(max(1, min(options.workers, len(todo))), _set_context, context)

    workers = pool() if todo else None
    pending, inflight = deque(largest_first(todo, context[1])), {}
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
            broken = False
            for future in finished:
                case_id = inflight.pop(future)
                try:
                    outcome, block, case_timings = future.result()
                except BrokenProcessPool:  # a worker was killed (OOM?): every case in flight is lost
                    outcome, block, case_timings = _worker_died(case_id, context), b"", {}
                    broken = True
                if block:
                    part.add(outcome.split, case_id, block, outcome.windows)
                for k, v in case_timings.items():
                    timings[k] = max(timings[k], v) if k == "peak_rss_mb" else timings[k] + v
                if outcome.status == "failed":
                    log.warning("case %s failed at %s: %s", case_id, outcome.stage, outcome.reason)
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
    return done


def _worker_died(case_id: int, context) -> CaseOutcome:
    patients, split_of = context[2], context[3]
    patient = patients.get(case_id)
    return CaseOutcome(case_id, "failed", split=split_of.get(case_id),
                       subject_id=subject_key(patient) if patient else None, stage="worker",
                       reason=f"case {case_id}: the worker process died (killed, or out of memory)")


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
