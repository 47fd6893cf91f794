"""The run driver every per-case job goes through (preprocessing, batch prediction): options,
planning (which cases this host runs), opening the output (start, resume or refuse), the lock,
the stop request and the tally. A job kind supplies its per-case work (a `CaseJob` and a
`Committer` for `vitalflow.runtime.runner.run_cases`), its manifest and its card.

What lives here once, and both kinds use:
- `CaseRunOptions`: workers, commit size, overwrite, retry of failed cases, this host's place
  among several, the stop grace;
- `plan_cases`: the clinical table, the case files, the selection, the ids without a file (logged
  on their own line) and this host's share, and the ``inputs`` record the manifest and card keep;
- `open_output`: a fresh output, a resumable one, or a refusal naming why (another run's files,
  other inputs or settings) and what to do (``--overwrite``);
- `running`: the output's lock, the stop request (SIGINT/SIGTERM) and the tally of what is done.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

from vitalflow.dataset.ledger import Ledger, LedgerState
from vitalflow.errors import InputError, OutputError
from vitalflow.run.cases import CaseSelection
from vitalflow.run.inputs import find_case_files, input_identity, read_input_bytes
from vitalflow.runtime.progress import Tally
from vitalflow.runtime.stop import StopRequest
from vitalflow.store import Store
from vitalflow.vital.clinical import read_clinical

log = logging.getLogger("vitalflow")


@dataclass(frozen=True)
class CaseRunOptions:
    """The options of every per-case run (a job kind adds its own: `RunOptions`, `PredictOptions`)."""

    workers: int = os.cpu_count() or 1
    commit_every: int = 16  # cases per commit (the job's files, then one ledger record)
    overwrite: bool = False
    retry_failed: bool = False  # on resume, run the cases that failed again
    host_index: int = 0  # this host among host_count hosts sharing the run (SageMaker instances)
    host_count: int = 1
    stop_grace_s: float = 20.0  # after a stop request, how long cases in flight may finish

    @property
    def host(self) -> str:
        return f"h{self.host_index}"


def host_cases(selected: list[int], host_index: int, host_count: int) -> list[int]:
    """This host's share: every ``host_count``-th case. Disjoint across hosts, together all cases.

    >>> host_cases([1, 2, 3, 4, 5], 0, 2), host_cases([1, 2, 3, 4, 5], 1, 2)
    ([1, 3, 5], [2, 4])
    """
    return selected[host_index::host_count]


@dataclass
class CasePlan:
    """What a run reads and which cases this host runs."""

    input_uri: str
    clinical_uri: str
    patients: dict
    files: dict
    selected: list[int]  # the selected ids that have a file (every host's)
    mine: list[int]  # this host's share of them
    inputs: dict = field(default_factory=dict)  # the manifest's and card's record of the inputs


def plan_cases(input_uri: str, clinical_uri: str, cases: CaseSelection | Iterable[int] | None,
               options: CaseRunOptions) -> CasePlan:
    """Read the clinical table, list the case files and choose this host's cases. Selected ids
    without a file are logged on their own line and recorded in ``inputs`` (not failures)."""
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
    inputs = {
        "input": input_identity(input_uri, files, selected),
        "clinical": {"uri": clinical_uri, "sha256": hashlib.sha256(clinical).hexdigest()},
        "selection": selection.text if cases is not None else None,
        "without_file": {"count": len(without_file), "ids": without_file.head(50)},
    }
    return CasePlan(input_uri, clinical_uri, patients, files, selected,
                    host_cases(selected, options.host_index, options.host_count), inputs)


@dataclass(frozen=True)
class OutputKind:
    """How one job kind's output is recognised and compared (what `open_output` needs of it)."""

    noun: str  # "a dataset", "predictions": what the output holds, in messages
    card: str  # this host's card file
    owns: Callable[[str], bool]  # a file this kind's run would have written (besides its card and ledger)
    differences: Callable[[dict, dict], list[str]]  # (existing, new manifest) -> why it cannot resume
    clear: Callable[[], None] = lambda: None  # with --overwrite: delete this run's files besides the ledger


def open_output(store: Store, ledger: Ledger, manifest: dict, options: CaseRunOptions, kind: OutputKind) -> None:
    """Start fresh, resume, or refuse an output written by another run or under other inputs or
    settings (the error says which, and that ``--overwrite`` starts fresh). With ``--retry-failed``
    the manifest records the inputs the retried cases read (their recordings may have changed)."""
    if options.overwrite:
        ledger.clear()
        kind.clear()
    existing = ledger.read_manifest()
    if existing is None:
        foreign = [n for n in store.list() if n == kind.card or n.startswith(ledger.prefix + "/") or kind.owns(n)]
        if foreign:
            raise OutputError(f"{store.uri} already holds {kind.noun} ({foreign[0]}) this run did not start; "
                              "choose another --output or pass --overwrite to replace it")
        ledger.write_manifest(manifest)
        return
    differences = kind.differences(existing, manifest)
    if differences:
        raise OutputError(f"{store.uri} was made from other inputs or settings: {'; '.join(differences)}. "
                          "Resuming would mix two runs' outputs. Use the original inputs and settings to resume, "
                          "or pass --overwrite to delete it and start fresh")
    if options.retry_failed and existing.get("inputs") != manifest["inputs"]:
        ledger.write_manifest(manifest)


def failed_ids(ledger: Ledger) -> set[str]:
    """The ids (as strings) of the cases the ledger records as failed: their recordings may change."""
    return {str(c) for c, o in ledger.load().outcomes.items() if o.status == "failed"}


@dataclass
class Running:
    """A run in progress: its stop request, ledger state at the start, tally and the cases to run."""

    stop: StopRequest
    state: LedgerState
    tally: Tally
    todo: list[int]


@contextmanager
def running(store: Store, ledger: Ledger, what: str, mine: list[int], options: CaseRunOptions,
            opened: Callable[[], None]) -> Iterator[Running]:
    """Hold the output's lock and a stop request; ``opened()`` (the kind's `open_output` call)
    runs under the lock. Yields the ledger's state, the tally of the cases already done and the
    cases to run (those not done, and the failed ones again with ``--retry-failed``)."""
    with store.lock(ledger.lock_name, f"vitalflow {what} on {socket.gethostname()}"), StopRequest() as stop:
        opened()
        state = ledger.load()
        done = state.outcomes
        todo = [c for c in mine if c not in done or (options.retry_failed and done[c].status == "failed")]
        tally = Tally(total=len(mine))
        for c in mine:
            if c in done and c not in todo:
                tally.add(done[c].windows, done[c].status == "failed")
        tally.done_at_start = tally.done
        yield Running(stop, state, tally, todo)
