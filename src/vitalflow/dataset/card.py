"""The dataset card ``preprocessing_metadata.json``: what the output holds and how it was made."""

from __future__ import annotations

import datetime
import json
from dataclasses import asdict, dataclass, field
from importlib.metadata import version

from vitalflow.dataset.split import SPLITS, achieved_fractions
from vitalflow.errors import OutputError
from vitalflow.spec.model import Config, Spec, config_hash
from vitalflow.store import Store
from vitalflow.transform.case import Crop, FeatureStats

CARD_NAME = "preprocessing_metadata.json"
CARD_FORMAT = "vitalflow-dataset/1"


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
    traceback: str | None = None  # of an ``internal`` failure (a bug or an unforeseen input): for reports

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> CaseOutcome:
        data = dict(data)
        data["crop"] = Crop(**data["crop"]) if data.get("crop") else None
        data["feature_stats"] = {k: FeatureStats(**v) for k, v in (data.get("feature_stats") or {}).items()}
        data["static_defaulted"] = tuple(data.get("static_defaulted") or ())
        data["static_clipped"] = tuple(data.get("static_clipped") or ())
        return cls(**data)


def example_schema(spec: Spec, config: Config) -> dict:
    length, n_features = config.windows.length_s, len(spec.timeseries)
    schema = {
        "timeseries": {"dtype": "float32", "shape": [length * n_features], "reshape": [length, n_features],
                       "layout": "time-major: value of feature f at second t is at t * n_features + f"},
        "static": {"dtype": "float32", "shape": [len(spec.static)]},
        "target": {"dtype": "float32", "shape": [len(spec.targets)]},
        "case_id": {"dtype": "int64", "shape": [1]},
        "subject_id": {"dtype": "string", "shape": [1]},
        "window_start_s": {"dtype": "int64", "shape": [1], "meaning": "seconds from the recording start"},
    }
    if config.output.write_mask:
        schema["mask"] = {"dtype": "float32", "shape": [length * n_features], "meaning": "1 = recorded, 0 = filled or defaulted"}
    return schema


def build_card(
    spec: Spec,
    config: Config,
    selected: list[int],
    outcomes: dict[int, CaseOutcome],
    parts: list[dict],
    timings: dict[str, float],
    merged: dict[str, dict] | None = None,
    run: dict | None = None,
    inputs: dict | None = None,
) -> dict:
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
    return {
        "format": CARD_FORMAT,
        "status": "partial" if pending else "complete",
        "tool": {"name": "vitalflow", "version": version("vitalflow")},
        "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "spec": {"name": spec.name, "version": spec.version, "hash": spec.content_hash()},
        "config_hash": config_hash(config, spec),
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
        "files": {s: sorted((part_entry(p) for p in parts if p["split"] == s), key=lambda p: p["path"]) for s in SPLITS},
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
    }


def part_entry(p: dict) -> dict:
    """A part (or merged file) as the card lists it; the ledger also records its blocks."""
    return {k: p[k] for k in ("path", "examples", "bytes", "sha256")}


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
    """A single host writes the card; each of several hosts writes its own, and ``verify`` combines.

    >>> card_name("h0", 1), card_name("h2", 3)
    ('preprocessing_metadata.json', 'preprocessing_metadata-h2.json')
    """
    return CARD_NAME if host_count == 1 else CARD_NAME.replace(".json", f"-{host}.json")


def write_card(store: Store, card: dict, name: str = CARD_NAME) -> None:
    """Write a card atomically; it is the last thing a run writes."""
    store.write_bytes(name, (json.dumps(card, indent=2, allow_nan=False) + "\n").encode())


def read_card(store: Store, name: str = CARD_NAME) -> dict:
    if not store.exists(name):
        raise OutputError(f"{store.uri}: no {name} (not a vitalflow output, or no run has finished)")
    try:
        card = json.loads(store.read_bytes(name))
    except json.JSONDecodeError as exc:
        raise OutputError(f"{store.url(name)}: unreadable card ({exc})") from exc
    if card.get("format") != CARD_FORMAT:
        raise OutputError(f"{store.url(name)}: unknown card format {card.get('format')!r} (expected {CARD_FORMAT})")
    return card
