"""One preprocessing run on one machine: plan, process every case, publish, write the card, verify."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from vitalflow.dataset.card import CARD_NAME, CaseOutcome, build_card, write_card
from vitalflow.dataset.examples import case_examples
from vitalflow.dataset.split import SPLITS, assign_splits
from vitalflow.dataset.verify import VerifyReport, verify_output
from vitalflow.dataset.writer import INCOMPLETE, DatasetWriter, split_file_name
from vitalflow.errors import OutputError, VitalflowError
from vitalflow.run.cases import find_case_files
from vitalflow.spec.model import Config, Spec
from vitalflow.transform.case import preprocess_case
from vitalflow.transform.patient import Patient
from vitalflow.vital.clinical import read_clinical
from vitalflow.vital.read import read_vital

log = logging.getLogger("vitalflow")


@dataclass
class RunResult:
    output_dir: Path
    card: dict
    verify: VerifyReport

    @property
    def success_rate(self) -> float:
        return self.card["cases"]["success_rate"]


class _CaseFailed(Exception):
    def __init__(self, stage: str, reason: str):
        super().__init__(reason)
        self.stage, self.reason = stage, reason


def subject_key(patient: Patient) -> str:
    """The subject a case belongs to; a case without subjectid is its own subject."""
    return patient.subject_id or f"case-{patient.case_id}"


def prepare_output(output_dir: Path, overwrite: bool) -> None:
    """Create the output directory, refusing (or with ``overwrite`` removing) an earlier dataset."""
    output_dir.mkdir(parents=True, exist_ok=True)
    ours = [output_dir / CARD_NAME] + [
        output_dir / (split_file_name(s, c) + suffix)
        for s in SPLITS for c in ("none", "GZIP") for suffix in ("", INCOMPLETE)
    ]
    existing = [p for p in ours + [output_dir / (CARD_NAME + INCOMPLETE)] if p.exists()]
    if existing and not overwrite:
        raise OutputError(
            f"{output_dir} already holds a dataset ({existing[0].name}); "
            "choose another --output or pass --overwrite to replace it"
        )
    for p in existing:
        p.unlink()


def preprocess(
    input_dir: Path,
    clinical_path: Path,
    output_dir: Path,
    config: Config,
    spec: Spec,
    cases: list[int] | None = None,
    overwrite: bool = False,
    on_case: Callable[[CaseOutcome], None] | None = None,
) -> RunResult:
    """Run the whole pipeline. Per-case problems become failed/excluded outcomes, not exceptions."""
    t0 = time.perf_counter()
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    if not input_dir.is_dir():
        raise OutputError(f"input directory not found: {input_dir}")
    patients = read_clinical(clinical_path)
    files = find_case_files(input_dir)
    selected = sorted(files) if cases is None else cases
    if not selected:
        raise OutputError(f"{input_dir}: no case files (<caseid>.vital) found")
    split_of = assign_splits(
        {c: subject_key(patients[c]) for c in selected if c in patients},
        config.split.fractions,
        config.split.seed,
    )
    prepare_output(output_dir, overwrite)

    writer = DatasetWriter(output_dir, config.output.compression)
    timings = dict.fromkeys(("read", "transform", "encode", "write"), 0.0)
    outcomes = []
    try:
        for case_id in selected:
            outcome, examples = _process_case(case_id, files, patients, split_of, config, spec, timings)
            t = time.perf_counter()
            for example in examples:  # output errors (disk full) are the run's, not the case's
                writer.add(outcome.split, example)
            timings["write"] += time.perf_counter() - t
            outcomes.append(outcome)
            if outcome.status == "failed":
                log.warning("case %s failed at %s: %s", case_id, outcome.stage, outcome.reason)
            if on_case is not None:
                on_case(outcome)
        published = writer.publish()
    except BaseException:
        writer.abort()
        raise
    timings["total"] = time.perf_counter() - t0
    card = build_card(spec, config, outcomes, published, timings)
    write_card(output_dir, card)
    t1 = time.perf_counter()
    report = verify_output(output_dir)
    card["timings_s"]["verify"] = round(time.perf_counter() - t1, 3)
    write_card(output_dir, card)
    return RunResult(output_dir, card, report)


def _process_case(case_id, files, patients, split_of, config: Config, spec: Spec, timings) -> tuple[CaseOutcome, list[bytes]]:
    """Read, transform and encode one case; its problems become a failed or excluded outcome."""
    patient = patients.get(case_id)
    outcome = CaseOutcome(case_id, "failed", split=split_of.get(case_id),
                          subject_id=subject_key(patient) if patient else None)
    try:
        if case_id not in files:
            raise _CaseFailed("read", f"case {case_id}: no file {case_id:04d}.vital (or other zero padding) in the input")
        if patient is None:
            raise _CaseFailed("clinical", f"case {case_id}: no row in the clinical table")
        t = time.perf_counter()
        try:
            recording = read_vital(files[case_id], spec.tracks)
        except VitalflowError as exc:
            raise _CaseFailed("read", f"case {case_id}: {exc}") from exc
        t2 = time.perf_counter()
        timings["read"] += t2 - t
        try:
            arrays = preprocess_case(recording.tracks, recording.duration_s, patient, spec,
                                     config.windows, config.crop_to_anesthesia)
        except VitalflowError as exc:
            raise _CaseFailed("transform", str(exc)) from exc
        t3 = time.perf_counter()
        timings["transform"] += t3 - t2
        outcome.crop, outcome.packed = arrays.crop, recording.packed
        outcome.feature_stats = arrays.feature_stats
        outcome.static_defaulted, outcome.static_clipped = arrays.static_defaulted, arrays.static_clipped
        if arrays.n_windows == 0:
            span = config.windows.length_s + config.windows.horizon_s
            outcome.status = "excluded"
            outcome.reason = (f"too short: {arrays.crop.end_s - arrays.crop.start_s} s after cropping, "
                              f"one window plus horizon needs {span} s")
            return outcome, []
        # Encode every example before any is written: a case lands whole or not at all.
        examples = list(case_examples(arrays, outcome.subject_id, config.output.write_mask))
        timings["encode"] += time.perf_counter() - t3
        outcome.status, outcome.windows = "ok", arrays.n_windows
        return outcome, examples
    except _CaseFailed as exc:
        outcome.stage, outcome.reason = exc.stage, exc.reason
    except Exception as exc:  # a bug or an unforeseen input in this case's data: record it, go on
        log.exception("case %s: unexpected error", case_id)
        outcome.stage, outcome.reason = "internal", f"case {case_id}: {type(exc).__name__}: {exc}"
    return outcome, []
