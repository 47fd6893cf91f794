"""Batch prediction as a job on the case runner: the worker side (read + transform, numpy only)
and the main-process side (the model, then the case's table, written atomically, then the ledger).

A worker reads and transforms a case exactly as preprocessing does (`PreprocessJob.run_case_with`,
with the model's spec and windows), and returns its model inputs (`WindowRequest`) with the
seconds of the targets and what was recorded there (`CaseTimeline`). The committer sends each
finished case to the model process as it arrives, keeps the small result (one row per window),
and at each commit writes every case's files under ``cases/`` and then one ledger record for them.
"""

from __future__ import annotations

import time
from concurrent.futures import Future
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from vitalflow.dataset.card import CaseOutcome
from vitalflow.dataset.ledger import Ledger
from vitalflow.errors import ModelError
from vitalflow.predict.model_process import ModelProcess, WindowRequest
from vitalflow.predict.table import CaseTable, case_files
from vitalflow.run.preprocess_job import PreprocessJob
from vitalflow.runtime.runner import CaseResult
from vitalflow.store import Store
from vitalflow.transform.case import CaseArrays
from vitalflow.transform.normalize import denormalize
from vitalflow.transform.windows import target_seconds
from vitalflow.vital.read import Recording


@dataclass(frozen=True)
class CaseTimeline:
    """What a worker returns for a case with windows: the model's inputs and the times of its rows."""

    request: WindowRequest
    start_unix: float  # the recording's start (unix time)
    target_s: np.ndarray  # int64 [windows]: the second each prediction is for, from the recording start
    recorded: np.ndarray  # float64 [windows, targets]: recorded there (units), NaN where not

    def table(self, predicted: np.ndarray, targets: list[tuple[str, str]]) -> CaseTable:
        """The case's prediction timeline with the model's ``predicted`` targets (clinical units)."""
        return CaseTable(self.request.case_id, self.start_unix, self.target_s, predicted, self.recorded, targets)


@dataclass(frozen=True)
class PredictJob:
    """The worker side: everything a worker needs, handed to each worker once (by fork)."""

    cases: PreprocessJob  # the model's spec and windows; preprocessing's read and transform
    reads_mask: bool  # the model takes the observed mask as an input
    # a decision model's output labels (`vitalflow.predict.table.prediction_labels`); () for a value model
    decision_labels: tuple[str, ...] = ()
    context_inputs: tuple[str, ...] = ()  # the decision context features the model reads

    def size(self, case_id: int) -> int:
        return self.cases.size(case_id)

    def lost_case(self, case_id: int, reason: str) -> CaseResult:
        return self.cases.lost_case(case_id, reason)

    def run_case(self, case_id: int) -> CaseResult:
        return self.cases.run_case_with(case_id, "pack", self._pack)

    def _pack(self, outcome: CaseOutcome, recording: Recording, arrays: CaseArrays) -> CaseTimeline:
        w = self.cases.config.windows
        first = arrays.window_starts - arrays.crop.start_s
        context = {name: window_context(arrays, name) for name in self.context_inputs} or None
        request = WindowRequest(arrays.case_id, arrays.series, arrays.observed if self.reads_mask else None,
                                arrays.static, first, w.length_s, context)
        if self.decision_labels:  # rows at each window's end; what happened: the labels, NaN where masked
            return CaseTimeline(request, float(recording.start), first + w.length_s - 1 + arrays.crop.start_s,
                                decision_truth(arrays, self.cases.spec, self.decision_labels))
        rows = target_seconds(first, w.length_s, w.horizon_s)
        return CaseTimeline(request, float(recording.start), rows + arrays.crop.start_s,
                            np.asarray(arrays.recorded_targets[rows], np.float64))


def window_context(arrays: CaseArrays, name: str) -> np.ndarray:
    """A decision context feature of every window as the examples hold it (float32, one row per window)."""
    value = getattr(arrays, name)
    if value is None:
        raise ModelError(f"case {arrays.case_id}: the model reads {name}, which the model's spec does not make")
    return np.asarray(value, np.float32).reshape(arrays.n_windows, -1)


def decision_truth(arrays: CaseArrays, spec, labels: tuple[str, ...]) -> np.ndarray:
    """float64 [windows, labels]: each label as the recording says it happened (an event 1/0, a value
    in its set-point's unit), NaN where the label is masked."""
    names = [str(lab) for lab in spec.decisions.labels]
    ranges = {sp.name: sp.range for sp in spec.decisions.setpoints}
    cols = [names.index(lab) for lab in labels]
    out = np.where(arrays.label_mask[:, cols] > 0, arrays.labels[:, cols], np.nan).astype(np.float64)
    for j, lab in enumerate(labels):
        task, of, _ = lab.split("/")
        if task == "value":
            out[:, j] = denormalize(out[:, j], *ranges[of])
    return out


@dataclass(frozen=True)
class Outputs:
    """Which files each case gets besides its Parquet table."""

    csv: bool = False
    plots: bool = False


class PredictionCommitter:
    """The main-process side: the model per case as it arrives, the case files and the ledger
    record per commit. A case's files are published before the record that names the case
    done; files of a case that no record names are leftovers (removed on resume)."""

    def __init__(self, store: Store, ledger: Ledger, seq: int, model: ModelProcess, targets: list[tuple[str, str]],
                 outputs: Outputs, model_label: str):
        self.store, self.ledger, self.seq, self.model = store, ledger, seq, model
        self.targets, self.outputs, self.model_label = targets, outputs, model_label
        self.batch: list[tuple[CaseOutcome, CaseTable | None]] = []
        self.timings = {"model": 0.0, "write": 0.0}

    def add(self, result: CaseResult) -> None:
        outcome, timeline = result.payload
        table = None
        if outcome.status == "ok":
            try:
                predicted, seconds = self.model.predict(timeline.request)
            except ModelError as exc:
                if "died" in str(exc):  # the model process is gone: the run cannot go on
                    raise
                outcome = replace(outcome, status="failed", stage="model", reason=str(exc), windows=0)
            else:
                self.timings["model"] += seconds
                table = timeline.table(predicted, self.targets)
        self.batch.append((outcome, table))

    def commit(self, background: Callable[..., Future] | None) -> None:
        if not self.batch:
            return
        t = time.perf_counter()
        for outcome, table in self.batch:
            if table is not None:
                for name, data in table.files(self.outputs.csv, self.outputs.plots, self.model_label).items():
                    self.store.write_bytes(name, data)
        self.ledger.record(self.seq, {}, [o for o, _ in self.batch])
        self.timings["write"] += time.perf_counter() - t
        self.seq, self.batch = self.seq + 1, []

    def abort(self) -> None:
        self.batch = []


def leftover_files(store: Store, cases: list[int], committed_ok: set[int]) -> list[str]:
    """This host's case files that no ledger record names done (an interrupted commit's)."""
    mine = set(cases) - committed_ok
    found = []
    for name in store.list("cases"):
        case_id = case_files.parse(name)
        if case_id is not None and case_id in mine:
            found.append(name)
    return sorted(found)
