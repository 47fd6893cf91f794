"""A preprocessing run on one host: plan, process cases in workers, commit parts, card, verify.

Safe to kill at any instant: examples are committed in parts every ``commit_every`` cases, the
ledger records each commit after its parts are published, and a rerun with the same inputs and
config (resume is the default) skips committed cases and removes unpublished leftovers.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from vitalflow.dataset.card import DatasetCard, build_card, card_name, example_schema, write_card
from vitalflow.dataset.ledger import MANIFEST_FORMAT, Ledger, manifest_differences
from vitalflow.dataset.merge import merge_parts
from vitalflow.dataset.split import assign_splits
from vitalflow.dataset.verify import VerifyReport, unit_schema, verify_output
from vitalflow.run.cases import CaseSelection
from vitalflow.run.driver import CaseRunOptions, OutputKind, failed_ids, open_output, plan_cases, running
from vitalflow.run.preprocess_job import PartsCommitter, PreprocessJob, subject_key
from vitalflow.runtime.pool import peak_rss_mb
from vitalflow.runtime.progress import Reporter
from vitalflow.runtime.runner import WorkerLimits, run_cases
from vitalflow.spec.model import Config, Spec, config_hash
from vitalflow.store import Store

log = logging.getLogger("vitalflow")


@dataclass(frozen=True)
class RunOptions(CaseRunOptions):
    """A preprocessing run's options: the per-case run's (`CaseRunOptions`) and ``merge``."""

    merge: bool = False


@dataclass
class RunResult:
    output: str
    card: DatasetCard
    verify: VerifyReport | None  # None when the run stopped early (the card says partial)
    stopped_by: str | None = None

    @property
    def complete(self) -> bool:
        return self.card.status == "complete"


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
    plan = plan_cases(input_uri, clinical_uri, cases, options)
    mine, patients, inputs = plan.mine, plan.patients, plan.inputs
    split_of = assign_splits({c: subject_key(patients[c]) for c in mine if c in patients},
                             config.split.fractions, config.split.seed)
    store = Store(output)
    ledger = Ledger(store, options.host)
    manifest = {
        "format": MANIFEST_FORMAT,
        "host": options.host,
        "host_count": options.host_count,
        "config_hash": config_hash(config, spec),
        "config": config.model_dump(mode="json"),
        "spec": {"name": spec.name, "version": spec.version, "hash": spec.content_hash()},
        "spec_content": spec.model_dump(mode="json"),
        "cases": plan.selected,
        "clinical_sha256": inputs["clinical"]["sha256"],
        "inputs": inputs,
    }
    name = card_name(options.host, options.host_count)
    kind = OutputKind("a dataset", name, ledger.owns_part,
                      lambda existing, new: manifest_differences(existing, new, failed_ids(ledger)))
    reporter = reporter or Reporter()
    with running(store, ledger, "preprocess", mine, options,
                 lambda: open_output(store, ledger, manifest, options, kind)) as run:
        stop, state, tally, todo = run.stop, run.state, run.tally, run.todo
        removed = ledger.remove_leftovers(state)
        if removed:
            log.warning("removed %d unpublished part(s) of an interrupted run: %s", len(removed), ", ".join(removed))
        job = PreprocessJob(plan.input_uri, plan.files, patients, split_of, config, spec)
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
