"""The dataset card ``preprocessing_metadata.json``: what the output holds and how it was made.

A `DatasetCard` is a typed, versioned record: format 2 added the dataset ``fingerprint`` and the
``verification``; a card of format 1 loads with neither.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ConfigDict, model_validator

from vitalflow.dataset.naming import NAMES
from vitalflow.dataset.parts import FileEntry, PartRecord
from vitalflow.dataset.record import Record, Tool
from vitalflow.dataset.schema import EXAMPLE_SCHEMA_VERSION, ExampleSchema, example_schema
from vitalflow.dataset.split import achieved_fractions
from vitalflow.errors import OutputError
from vitalflow.spec.model import SPLITS, Config, Spec, config_hash
from vitalflow.store import Store
from vitalflow.transform.case import Crop, FeatureStats

if TYPE_CHECKING:
    from vitalflow.dataset.verify import VerifyReport

CARD_NAME = NAMES.card()
CARD_FORMAT = "vitalflow-dataset/3"
# what `read_card` loads: 2 added the fingerprint and verification, 3 the decision labels' counts
_CARD_FORMATS = ("vitalflow-dataset/1", "vitalflow-dataset/2", CARD_FORMAT)


@dataclass
class CaseOutcome:
    """What happened to one case. ``status`` is ok, excluded (valid but no windows) or failed."""

    case_id: int
    status: str
    split: str | None = None
    subject_id: str | None = None
    windows: int = 0
    stage: str | None = None  # where a failure happened: clinical, read, transform, write
    reason: str | None = None  # why excluded or failed
    crop: Crop | None = None
    packed: bool | None = None
    feature_stats: dict[str, FeatureStats] = field(default_factory=dict)
    static_defaulted: tuple[str, ...] = ()
    static_clipped: tuple[str, ...] = ()
    windows_without_data: int = 0  # windows dropped for too little recorded data
    read: dict | None = None  # a read that was not clean: how much was read, why it stopped, gzip damage
    # per decision label (`Decisions.labels` name): [valid, positive] over the case's windows
    label_counts: dict[str, list[int]] = field(default_factory=dict)
    setpoint_sources: dict[str, str | None] = field(default_factory=dict)  # set-point -> track (None: absent)
    traceback: str | None = None  # of an ``internal`` failure (a bug or an unforeseen input): for reports


class SpecRef(Record):
    name: str
    version: int
    hash: str
    # the spec itself (`Spec.model_dump`), so that a model trained on the dataset reads its numbers
    # with the spec that made them wherever the spec file went; None: written before vitalflow 0.1's
    # training (the spec is then found by name and checked by hash)
    content: dict[str, Any] | None = None


class SplitCounts(Record):
    cases: int
    subjects: int
    windows: int


class CaseCounts(Record):
    selected: int  # with the selected ids that have no file
    without_file: int
    done: int
    pending: int
    succeeded: int  # ok or excluded
    with_windows: int
    excluded: int
    failed: int
    # over the done cases and the selected ids without a file (which can never succeed)
    success_rate: float


class Verification(Record):
    """The outcome of reading the whole output back (`vitalflow.dataset.verify.verify_output`)."""

    ok: bool
    problems: int
    verified_utc: str
    fingerprint: str | None  # the card's fingerprint when it was verified
    examples: dict[str, int]  # per split, in the parts


class DatasetCard(Record):
    """The card: what an output holds and how it was made. Read by attribute (``card.cases.failed``)
    or, like its JSON, by key (``card["cases"]["failed"]``)."""

    model_config = ConfigDict(frozen=False, validate_assignment=True)

    format: str = CARD_FORMAT
    status: Literal["complete", "partial"]
    verification: Verification | None = None  # None: not verified since it was written
    fingerprint: str | None = None  # see `fingerprint`; None: blocks recorded without sha256 (format 1)
    tool: Tool
    created_utc: str
    spec: SpecRef
    config_hash: str
    config: dict[str, Any]
    features: dict[str, Any]
    example_schema: ExampleSchema
    example_schema_version: int = 1  # `vitalflow.dataset.schema.EXAMPLE_SCHEMA_VERSION` when written
    files: dict[str, list[FileEntry]]  # per split, its parts in name order
    merged: dict[str, FileEntry] = {}
    splits: dict[str, SplitCounts]
    split_fractions: dict[str, Any]
    warnings: list[str] = []
    inputs: dict[str, Any] = {}
    cases: CaseCounts
    read_damage: list[dict[str, Any]] = []
    excluded: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    feature_stats: dict[str, dict[str, Any]] = {}
    # per decision label: windows, valid, positive (event/direction), masked; per set-point: cases by source
    label_stats: dict[str, dict[str, int]] = {}
    setpoint_stats: dict[str, dict[str, Any]] = {}
    static_stats: dict[str, dict[str, Any]] = {}
    case_details: list[dict[str, Any]] = []
    timings_s: dict[str, float] = {}
    run: dict[str, Any] = {}

    @model_validator(mode="before")
    @classmethod
    def _upgrade(cls, data: Any) -> Any:
        if isinstance(data, dict):
            if data.get("format", CARD_FORMAT) not in _CARD_FORMATS:
                raise ValueError(f"unknown card format {data.get('format')!r} (expected {CARD_FORMAT})")
            data = dict(data, format=CARD_FORMAT)  # format 1 lacks only what has defaults
        return data

    @property
    def compression(self) -> str:
        return self.config["output"]["compression"]

    def verified(self, report: VerifyReport) -> DatasetCard:
        """This card with the outcome of ``report`` (a verification of the output it describes)."""
        return self.model_copy(update={"verification": Verification(
            ok=report.ok, problems=len(report.problems), verified_utc=_now(), fingerprint=self.fingerprint,
            examples=dict(report.examples))})

    def with_merged(self, merged: dict[str, FileEntry]) -> DatasetCard:
        """This card listing ``merged`` files, not verified (the merged files are not yet)."""
        return self.model_copy(update={"merged": merged, "verification": None})


def fingerprint(parts: Iterable[PartRecord], spec_hash: str, config_hash: str) -> str | None:
    """The dataset's content hash: sha256 over the spec and config hashes and the sorted (case id,
    split, block sha256) of every case's block. Identical for identical inputs, spec and config,
    whatever the worker count, commit size, hosts or timing (a case's block is the same bytes,
    wherever it lands); different as soon as one example differs. None if a part's blocks lack
    hashes (ledger format 1) or do not account for its examples.

    >>> from vitalflow.dataset.parts import Block
    >>> part = lambda name, *blocks: PartRecord(path=name, examples=len(blocks), bytes=0, sha256="", blocks=[
    ...     Block(case_id=c, offset=0, bytes=0, examples=1, sha256=h) for c, h in blocks])
    >>> a = fingerprint([part("train-00000-h0.tfrecord", (1, "aa"), (2, "bb"))], "s", "c")
    >>> a == fingerprint([part("train-00001-h0.tfrecord", (2, "bb")), part("train-00000-h1.tfrecord", (1, "aa"))], "s", "c")
    True
    >>> a == fingerprint([part("train-00000-h0.tfrecord", (1, "aa"), (2, "bc"))], "s", "c")
    False
    """
    blocks = []
    for part in parts:
        if sum(b.examples for b in part.blocks) != part.examples or any(b.sha256 is None for b in part.blocks):
            return None
        blocks += [(b.case_id, part.split, b.sha256) for b in part.blocks]
    sha = hashlib.sha256(f"vitalflow-fingerprint/1\nspec {spec_hash}\nconfig {config_hash}\n".encode())
    for case_id, split, block_sha in sorted(blocks):
        sha.update(f"{case_id} {split} {block_sha}\n".encode())
    return "sha256:" + sha.hexdigest()


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def build_card(
    spec: Spec,
    config: Config,
    selected: list[int],
    outcomes: dict[int, CaseOutcome],
    parts: list[PartRecord],
    timings: dict[str, float],
    merged: dict[str, FileEntry] | None = None,
    run: dict | None = None,
    inputs: dict | None = None,
) -> DatasetCard:
    """The card of an output: complete when every selected case has an outcome, else partial.

    ``inputs``: what the run was made from (input location and recordings, clinical table,
    selection, selected ids without a file), from the run's manifest."""
    inputs = inputs or {}
    pending = [c for c in selected if c not in outcomes]
    outcomes = [outcomes[c] for c in selected if c in outcomes]
    ok = [o for o in outcomes if o.status != "failed"]
    without_file = (inputs.get("without_file") or {}).get("count", 0)
    with_windows = [o for o in outcomes if o.status == "ok"]
    splits = {}
    for s in SPLITS:
        members = [o for o in with_windows if o.split == s]
        splits[s] = {
            "cases": len(members),
            "subjects": len({o.subject_id for o in members}),
            "windows": sum(o.windows for o in members),
        }
    fractions = achieved_fractions({o.subject_id: o.split for o in with_windows})
    warnings = [f"split {s} is empty: the stable subject split put none of the {len({o.subject_id for o in with_windows})} "
                "subjects with windows there (few subjects; see README 'Splits')" for s in SPLITS
                if with_windows and not splits[s]["subjects"]]
    if without_file:
        warnings.append(f"{without_file} selected case id(s) have no file in the input: "
                        f"{inputs['without_file']['ids']}")
    damaged = [o for o in outcomes if o.read]
    if damaged:
        warnings.append(f"{len(damaged)} case(s) had a damaged or truncated file, or records past the case end; "
                        "see read_damage")
    spec_hash, hashed_config = spec.content_hash(), config_hash(config, spec)
    return DatasetCard.model_validate({
        "status": "partial" if pending else "complete",
        "fingerprint": fingerprint(parts, spec_hash, hashed_config),
        "tool": {"name": "vitalflow", "version": version("vitalflow")},
        "created_utc": _now(),
        "spec": {"name": spec.name, "version": spec.version, "hash": spec_hash,
                 "content": spec.model_dump(mode="json")},
        "config_hash": hashed_config,
        "config": config.model_dump(mode="json"),
        "features": {
            "timeseries": [
                {"index": i, "name": f.name, "unit": f.unit, "range": list(f.range),
                 "sources": [s.track for s in f.sources] + (["derived"] if f.derive else [])}
                for i, f in enumerate(spec.timeseries)
            ],
            "static": [
                {"index": i, "name": f.name, "unit": f.unit, "range": list(f.range) if f.range else None,
                 "categories": f.categories, "default": f.default}
                for i, f in enumerate(spec.static)
            ],
            "targets": [
                {"index": i, "name": t, "feature_index": spec.feature_names.index(t)}
                for i, t in enumerate(spec.targets)
            ],
            "normalization": "norm = clip((x - lo) / (hi - lo) * 2 - 1, -1, 1); inverse x = lo + (norm + 1) / 2 * (hi - lo)",
        },
        "example_schema": example_schema(spec, config),
        "example_schema_version": EXAMPLE_SCHEMA_VERSION,
        "files": {s: sorted((p.entry() for p in parts if p.split == s), key=lambda p: p.path) for s in SPLITS},
        "merged": merged or {},
        "splits": splits,
        "split_fractions": {"target": config.split.fractions, "achieved_subjects": fractions,
                            "rule": "a subject's split depends only on (subjectid, seed): stable as cases are added"},
        "warnings": warnings,
        "inputs": inputs,
        "cases": {
            "selected": len(selected) + without_file,
            "without_file": without_file,
            "done": len(outcomes),
            "pending": len(pending),
            "succeeded": len(ok),
            "with_windows": len(with_windows),
            "excluded": sum(o.status == "excluded" for o in outcomes),
            "failed": len(outcomes) - len(ok),
            # over the done cases and the selected ids without a file (which can never succeed)
            "success_rate": round(len(ok) / (len(outcomes) + without_file), 6) if outcomes or without_file else 0.0,
        },
        "read_damage": [dict(o.read, case_id=o.case_id, status=o.status) for o in damaged],
        "excluded": [{"case_id": o.case_id, "reason": o.reason} for o in outcomes if o.status == "excluded"],
        "failed": [{"case_id": o.case_id, "stage": o.stage, "error": o.reason}
                   | ({"traceback": o.traceback} if o.traceback else {}) for o in outcomes if o.status == "failed"],
        "feature_stats": _feature_stats(spec, outcomes),
        **_label_stats(spec, with_windows),
        "static_stats": {
            f.name: {
                "defaulted": sum(f.name in o.static_defaulted for o in ok),
                "clipped": sum(f.name in o.static_clipped for o in ok),
            }
            for f in spec.static
        },
        "case_details": [_case_detail(o) for o in outcomes],
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "run": run or {},
    })


def _feature_stats(spec: Spec, outcomes: list[CaseOutcome]) -> dict:
    """Per feature, over every second of every successful case (a second counts once, however
    many windows contain it)."""
    out = {}
    for f in spec.timeseries:
        stats = [o.feature_stats[f.name] for o in outcomes if f.name in o.feature_stats]
        seconds = sum(s.observed + s.filled + s.defaulted for s in stats)
        sources: dict[str, int] = {}
        for s in stats:
            key = s.source or "none"
            sources[key] = sources.get(key, 0) + 1
        out[f.name] = {
            "seconds": seconds,
            "observed_fraction": round(sum(s.observed for s in stats) / seconds, 6) if seconds else 0.0,
            "filled_fraction": round(sum(s.filled for s in stats) / seconds, 6) if seconds else 0.0,
            "defaulted_fraction": round(sum(s.defaulted for s in stats) / seconds, 6) if seconds else 0.0,
            "clipped": sum(s.clipped for s in stats),
            "implausible": sum(s.implausible for s in stats),
            "cases_by_source": dict(sorted(sources.items())),
        }
    return out


def _label_stats(spec: Spec, outcomes: list[CaseOutcome]) -> dict:
    """``label_stats`` (per decision label, over the windows written) and ``setpoint_stats``."""
    if spec.decisions is None:
        return {}
    windows = sum(o.windows for o in outcomes)
    labels = {}
    for name in map(str, spec.decisions.labels):
        valid = sum(o.label_counts.get(name, (0, 0))[0] for o in outcomes)
        positive = sum(o.label_counts.get(name, (0, 0))[1] for o in outcomes)
        labels[name] = {"windows": windows, "valid": valid, "masked": windows - valid}
        if not name.startswith("value/"):
            labels[name]["positive"] = positive
    setpoints = {}
    for sp in spec.decisions.setpoints:
        sources: dict[str, int] = {}
        for o in outcomes:
            key = o.setpoint_sources.get(sp.name) or "none"
            sources[key] = sources.get(key, 0) + 1
        setpoints[sp.name] = {"unit": sp.unit, "group": spec.decisions.group_of(sp.name),
                              "cases_by_source": dict(sorted(sources.items()))}
    return {"label_stats": labels, "setpoint_stats": setpoints}


def _case_detail(o: CaseOutcome) -> dict:
    detail = {"case_id": o.case_id, "status": o.status, "split": o.split, "subject_id": o.subject_id,
              "windows": o.windows}
    if o.crop is not None:
        detail["crop_s"] = [o.crop.start_s, o.crop.end_s]
        if o.crop.note:
            detail["crop_note"] = o.crop.note
    if o.packed is not None:
        detail["layout"] = "packed" if o.packed else "interleaved"
    implausible = {k: s.implausible for k, s in o.feature_stats.items() if s.implausible}
    if implausible:
        detail["implausible_seconds"] = implausible
    if o.windows_without_data:
        detail["windows_without_data"] = o.windows_without_data
    if o.read:
        detail["read"] = o.read
    if o.reason:
        detail["reason"] = o.reason
    return detail


def card_name(host: str, host_count: int) -> str:
    """The card a host writes (see `vitalflow.dataset.naming.FileTemplate.card`)."""
    return NAMES.card(host, host_count)


def write_card(store: Store, card: DatasetCard, name: str = CARD_NAME) -> None:
    """Write a card atomically; it is the last thing a run writes."""
    store.write_bytes(name, card.to_json(indent=2))


def read_card(store: Store, name: str = CARD_NAME) -> DatasetCard:
    if not store.exists(name):
        raise OutputError(f"{store.uri}: no {name} (not a vitalflow output, or no run has finished)")
    return DatasetCard.load(store.read_bytes(name), store.url(name), "card")
