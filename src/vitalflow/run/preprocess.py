"""A preprocessing run on one host: plan, process cases in workers, commit parts, card, verify.

Safe to kill at any instant: examples are committed in parts every ``commit_every`` cases, the
ledger records each commit after its parts are published, and a rerun with the same inputs and
config (resume is the default) skips committed cases and removes unpublished leftovers.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from vitalflow.dataset.card import build_card, card_name, example_schema, write_card
from vitalflow.dataset.ledger import MANIFEST_FORMAT, Ledger, manifest_differences
from vitalflow.dataset.merge import merge_parts
from vitalflow.dataset.split import assign_splits
from vitalflow.dataset.verify import VerifyReport, unit_schema, verify_output
from vitalflow.errors import InputError, OutputError
from vitalflow.run.cases import CaseSelection
from vitalflow.run.inputs import find_case_files, input_identity, read_input_bytes
from vitalflow.run.preprocess_job import PartsCommitter, PreprocessJob, subject_key
from vitalflow.runtime.pool import peak_rss_mb
from vitalflow.runtime.progress import Reporter, Tally
from vitalflow.runtime.runner import WorkerLimits, run_cases
from vitalflow.runtime.stop import StopRequest
from vitalflow.spec.model import Config, Spec, config_hash
from vitalflow.store import Store
from vitalflow.vital.clinical import read_clinical

log = logging.getLogger("vitalflow")


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
        return self.card.status == "complete"


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
    cases: CaseSelection | Iterable[int] | None = None,
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
    if cases is not None and not isinstance(cases, CaseSelection):
        cases = CaseSelection.of(cases)  # ids from a library caller
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
        "format": MANIFEST_FORMAT,
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
        job = PreprocessJob(input_uri, files, patients, split_of, config, spec)
        committer = PartsCommitter(store, ledger, state.next_seq, options.host, config.output.compression,
                                   unit_schema(example_schema(spec, config), config.output.compression))
        reporter.start(tally)
        try:
            stats = run_cases(job=job, cases=todo, committer=committer, workers=options.workers,
                              commit_every=options.commit_every, stop=stop, tally=tally, reporter=reporter,
                              limits=WorkerLimits(config.limits.case_timeout_s, config.limits.worker_memory_mb),
                              stop_grace_s=options.stop_grace_s)
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
        timings = {k: stats.timings.get(k, 0.0) for k in ("read", "transform", "encode")}
        timings["total"] = time.perf_counter() - t0
        run_info = {
            "host": options.host,
            "host_count": options.host_count,
            "workers": options.workers,
            "commit_every": options.commit_every,
            "stopped_by": stop.requested,
            "cases_processed": tally.done - tally.done_at_start,
            "removed_leftovers": removed,
            "peak_rss_mb": {"main": peak_rss_mb(), "largest_worker": stats.peak_worker_rss_mb},
            "worker_deaths": stats.worker_deaths,
        }
        name = card_name(options.host, options.host_count)
        card = build_card(spec, config, mine, outcomes, state.parts, timings, merged, run_info, inputs)
        write_card(store, card, name)
        if not complete:
            return RunResult(store.uri, card, None, stop.requested)
        t1 = time.perf_counter()
        report = verify_output(store.uri, host=options.host if options.host_count > 1 else None,
                               workers=options.workers, checked=committer.checked())
        card = card.verified(report)
        card.timings_s["verify"] = round(time.perf_counter() - t1, 3)
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
                   or ledger.owns_part(n)]
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
