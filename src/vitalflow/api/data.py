"""What the dataset, model and prediction pages show, as plain data (no FastAPI): found below the
app's roots, read with the library (`DatasetCard`, the ledger's blocks, `ExampleDecoder`, the
registry, pyarrow), returned as JSON-ready dicts. The routers (`datasets`, `models`,
`predictions`) render these dicts as pages and return them from the ``/api`` routes.

Locations are named in URLs by an **id**: the folder's path relative to its root, as URL-safe
base64 prefixed by the root's index (`encode_id`). `decode_id` accepts an id only when it decodes
to a folder inside that root (symlinks resolved, no ``..``) holding the expected file; anything
else is `NotFound` (a forged or stale id) or `BadId` (not an id at all).
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

#: How deep below a root the pages look for datasets and predictions (a root is depth 0).
MAX_DEPTH = 4
#: At most this many folders of a kind are listed.
MAX_FOUND = 500
#: Folders never entered while searching: the ledgers, checkpoints, caches, hidden folders.
SKIP = re.compile(r"^[._]|^(node_modules|__pycache__)$")

DATASET_CARD = "preprocessing_metadata.json"
PREDICTION_CARD = re.compile(r"^prediction_card(-h[0-9]+)?\.json$")
JOB_SUMMARY, JOB_TIMELINE = "summary.json", "timeline.parquet"

#: Value histograms of a dataset page: windows read at most (the first of each part), bins per feature.
HIST_WINDOWS, HIST_STRIDE, HIST_BINS = 2000, 10, 30


class BadId(ValueError):
    """Not an id this app makes (HTTP 400)."""


class NotFound(LookupError):
    """No such dataset, case, model or prediction below the roots (HTTP 404)."""


# --- roots and ids -------------------------------------------------------------------------------

def local_roots(roots: Iterable[str]) -> list[Path]:
    """The roots the pages search: local directories (an ``s3://`` root is not listed)."""
    return [Path(r).resolve() for r in roots if "://" not in r]


def inside_roots(path: str | os.PathLike, roots: Iterable[str]) -> Path | None:
    """``path`` resolved (symlinks followed) if it lies inside one of ``roots``, else None: the
    app's rule (`vitalflow.api.paths.check_path`) for a location the pages read.

    >>> import tempfile; root = Path(tempfile.mkdtemp()).resolve()
    >>> inside_roots(root / "a" / "b", [str(root)]) == root / "a" / "b"
    True
    >>> inside_roots(root / ".." / "etc", [str(root)]) is None, inside_roots("/etc/passwd", [str(root)]) is None
    (True, True)
    """
    from vitalflow.api.paths import PathRefused, check_path

    try:
        return Path(check_path(os.fspath(path), tuple(str(r) for r in local_roots(roots)), allow_s3=False))
    except PathRefused:
        return None


def encode_id(path: Path, roots: Sequence[str]) -> str:
    """The id of a folder inside a root: ``<root index>.<base64url of the relative path>``."""
    resolved = Path(path).resolve()
    for i, root in enumerate(local_roots(roots)):
        if resolved == root or root in resolved.parents:
            rel = resolved.relative_to(root).as_posix()
            return f"{i}.{base64.urlsafe_b64encode(rel.encode()).decode().rstrip('=')}"
    raise NotFound(f"{path} is not inside the app's roots")


_ID = re.compile(r"^([0-9]{1,3})\.([A-Za-z0-9_-]{0,1400})$")


def decode_id(ident: str, roots: Sequence[str], marker: str | re.Pattern | Sequence[str]) -> Path:
    """The folder an id names: inside its root and holding ``marker`` (a file name, a pattern, or
    a list of names that must all be there)."""
    m = _ID.fullmatch(ident)
    if m is None:
        raise BadId(f"{ident!r} is not an id")
    index, encoded = int(m.group(1)), m.group(2)
    try:
        rel = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadId(f"{ident!r} is not an id") from None
    listed = local_roots(roots)
    if index >= len(listed) or "\x00" in rel or Path(rel).is_absolute() or ".." in Path(rel).parts:
        raise NotFound(f"no such folder: {ident}")
    folder = inside_roots(listed[index] / rel, [str(listed[index])])
    if folder is None or not folder.is_dir() or not _holds(folder, marker):
        raise NotFound(f"no such folder: {ident}")
    return folder


def _holds(folder: Path, marker: str | re.Pattern | Sequence[str]) -> bool:
    if isinstance(marker, re.Pattern):
        return any(marker.match(p.name) for p in folder.iterdir() if p.is_file())
    names = [marker] if isinstance(marker, str) else list(marker)
    return all((folder / n).is_file() for n in names)


def find_folders(roots: Sequence[str], holds: str | re.Pattern | Sequence[str],
                 max_depth: int = MAX_DEPTH, limit: int = MAX_FOUND) -> list[Path]:
    """Folders at most ``max_depth`` below a root that hold ``holds``, sorted; symlinked folders
    are not followed, hidden and ``_`` folders not entered, a found folder not searched further."""
    found: list[Path] = []
    for root in local_roots(roots):
        stack = [(root, 0)]
        while stack and len(found) < limit:
            folder, depth = stack.pop()
            try:
                if _holds(folder, holds):
                    found.append(folder)
                    continue
                if depth < max_depth:
                    children = sorted((p for p in folder.iterdir() if p.is_dir() and not p.is_symlink()
                                       and not SKIP.match(p.name)), reverse=True)
                    stack += [(c, depth + 1) for c in children]
            except OSError:  # unreadable folder: not ours to show
                continue
    return sorted(set(found))


# --- datasets --------------------------------------------------------------------------------------

def read_dataset_card(folder: Path):
    from vitalflow.dataset.card import DatasetCard

    path = folder / DATASET_CARD
    return DatasetCard.load(path.read_bytes(), str(path), "card")


def list_datasets(roots: Sequence[str]) -> list[dict]:
    """Every dataset below the roots: id, path, status, verification, fingerprint, counts; a card
    that does not load is listed with its error."""
    from vitalflow.errors import VitalflowError
    from vitalflow.errors import redact

    out = []
    for folder in find_folders(roots, DATASET_CARD):
        item = {"id": encode_id(folder, roots), "path": str(folder)}
        try:
            card = read_dataset_card(folder)
        except (VitalflowError, OSError, ValueError) as exc:
            out.append({**item, "error": redact(str(exc))})
            continue
        out.append({**item, "status": card.status, "created_utc": card.created_utc,
                    "verified": bool(card.verification and card.verification.ok
                                     and card.verification.fingerprint == card.fingerprint),
                    "fingerprint": card.fingerprint, "spec": f"{card.spec.name} v{card.spec.version}",
                    "cases": card.cases.with_windows, "excluded": card.cases.excluded, "failed": card.cases.failed,
                    "windows": sum(s.windows for s in card.splits.values())})
    return out


def datasets_by_fingerprint(roots: Sequence[str]) -> dict[str, str]:
    """Fingerprint -> dataset id, for the lineage links of the models page."""
    return {d["fingerprint"]: d["id"] for d in list_datasets(roots) if d.get("fingerprint")}


def _feature_names(card) -> list[dict]:
    return [{"name": f["name"], "unit": f["unit"], "range": f["range"]} for f in card.features["timeseries"]]


def dataset_summary(folder: Path, card) -> dict:
    """Everything the dataset page shows from the card alone."""
    from vitalflow.errors import redact

    fractions = []
    for f in _feature_names(card):
        s = card.feature_stats.get(f["name"], {})
        fractions.append({"feature": f["name"], "unit": f["unit"], "seconds": s.get("seconds", 0),
                          "observed": s.get("observed_fraction", 0.0), "filled": s.get("filled_fraction", 0.0),
                          "defaulted": s.get("defaulted_fraction", 0.0), "clipped": s.get("clipped", 0),
                          "implausible": s.get("implausible", 0), "cases_by_source": s.get("cases_by_source", {})})
    target = card.split_fractions.get("target", {})
    achieved = card.split_fractions.get("achieved_subjects", {})
    balance = [{"split": s, "configured": target.get(s), "achieved": achieved.get(s)} for s in card.splits]
    cases = [{k: d.get(k) for k in ("case_id", "status", "split", "subject_id", "windows")} for d in card.case_details]
    verification = card.verification.model_dump() if card.verification else None
    return {
        "path": str(folder), "status": card.status, "created_utc": card.created_utc, "fingerprint": card.fingerprint,
        "verification": verification,
        "spec": {"name": card.spec.name, "version": card.spec.version, "hash": card.spec.hash},
        "config_hash": card.config_hash, "tool": card.tool.model_dump(),
        "mask": "mask" in card.example_schema.root,
        "splits": {s: c.model_dump() for s, c in card.splits.items()},
        "cases": card.cases.model_dump(),
        "excluded": [{"case_id": e.get("case_id"), "reason": redact(str(e.get("reason")))} for e in card.excluded],
        "failed": [{"case_id": e.get("case_id"), "stage": e.get("stage"), "error": redact(str(e.get("error")))}
                   for e in card.failed],
        "warnings": [redact(w) for w in card.warnings],
        "feature_fractions": fractions,
        "static_stats": card.static_stats,
        "split_balance": balance,
        "split_rule": card.split_fractions.get("rule"),
        "case_list": cases,
    }


def _records(folder: Path, card, path: str, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
    from vitalflow.dataset.tfrecord import read_records

    file = inside_roots(folder / path, [str(folder)])
    if file is None:
        raise NotFound(f"{path}: not a file of the dataset")
    with open(file, "rb") as f:
        f.seek(offset)
        source = io.BytesIO(f.read(length)) if length is not None else f
        compression = None if card.compression == "none" else card.compression
        yield from read_records(source, compression=compression)


def _denormalize(values: np.ndarray, ranges: list) -> np.ndarray:
    lo = np.array([r[0] for r in ranges], np.float64)
    hi = np.array([r[1] for r in ranges], np.float64)
    return lo + (values.astype(np.float64) + 1.0) / 2.0 * (hi - lo)


_HISTOGRAMS: OrderedDict[tuple, dict] = OrderedDict()
_HIST_LOCK = threading.Lock()


def value_histograms(folder: Path, card, windows: int = HIST_WINDOWS, stride: int = HIST_STRIDE,
                     bins: int = HIST_BINS) -> dict:
    """Per feature, a histogram of its values in clinical units over ``bins`` equal bins of its
    range, from a bounded sample: the first ``windows / parts`` windows of every part, every
    ``stride``-th of them (consecutive windows overlap), each second of a kept window once. Only
    recorded seconds count when the dataset has the mask (filled and defaulted values would show
    as spikes at the last value and the default), all seconds otherwise. The card holds no
    histograms, hence the sample."""
    from vitalflow.dataset.tfrecord import ExampleDecoder

    key = (str(folder), card.fingerprint, card.created_utc, windows, stride, bins)
    with _HIST_LOCK:
        if key in _HISTOGRAMS:
            return _HISTOGRAMS[key]
    features = _feature_names(card)
    n = len(features)
    parts = [p.path for s in card.files for p in card.files[s]]
    per_part = max(1, math.ceil(windows / max(1, len(parts))))
    counts = np.zeros((n, bins), np.int64)
    edges = [np.linspace(f["range"][0], f["range"][1], bins + 1) for f in features]
    decoder, read, kept, seconds = ExampleDecoder(), 0, 0, 0
    has_mask = "mask" in card.example_schema.root
    for path in parts:
        for i, record in enumerate(_records(folder, card, path)):
            if i >= per_part:
                break
            read += 1
            if i % stride:
                continue
            ex = decoder.decode(record)
            series = _denormalize(np.asarray(ex["timeseries"]).reshape(-1, n), [f["range"] for f in features])
            keep = np.asarray(ex["mask"]).reshape(-1, n) > 0.5 if has_mask else np.ones_like(series, bool)
            kept += 1
            seconds += series.shape[0]
            for j in range(n):
                counts[j] += np.histogram(np.clip(series[keep[:, j], j], *features[j]["range"]), edges[j])[0]
    out = {"windows_read": read, "windows_used": kept, "seconds": seconds,
           "values": "recorded seconds" if has_mask else "all seconds (the dataset has no mask)",
           "features": [{"feature": f["name"], "unit": f["unit"], "edges": [float(x) for x in e],
                         "counts": [int(c) for c in row]} for f, e, row in zip(features, edges, counts)]}
    with _HIST_LOCK:
        _HISTOGRAMS[key] = out
        while len(_HISTOGRAMS) > 16:
            _HISTOGRAMS.popitem(last=False)
    return out


def _case_blocks(folder: Path, card, case_id: int) -> list[tuple[str, int | None, int | None]]:
    """(part, offset, bytes) of the case's examples: its blocks as the ledger records them, else
    (old ledgers) every part of its split, read whole."""
    from vitalflow.dataset.ledger import Ledger
    from vitalflow.dataset.verify import hosts
    from vitalflow.store import Store

    in_card = {p.path for ps in card.files.values() for p in ps}
    store = Store(str(folder))
    found = []
    for host in hosts(store):
        for part in Ledger(store, host).load().parts:
            if part.path in in_card:
                found += [(part.path, b.offset, b.bytes) for b in part.blocks if b.case_id == case_id]
    if found:
        return found
    split = next((d.get("split") for d in card.case_details if d.get("case_id") == case_id), None)
    return [(p.path, None, None) for p in card.files.get(split, [])] if split else []


def zero_runs(mask: np.ndarray) -> list[list[int]]:
    """``[start, end)`` index ranges where ``mask`` is 0 (NaN, "no window", ends a run).

    >>> zero_runs(np.array([1, 0, 0, 1, 0, np.nan, 0]))
    [[1, 3], [4, 5], [6, 7]]
    """
    zero = np.concatenate([[False], np.asarray(mask) == 0, [False]]).astype(np.int8)
    change = np.flatnonzero(np.diff(zero))
    return [[int(a), int(b)] for a, b in zip(change[::2], change[1::2])]


def case_series(folder: Path, card, case_id: int) -> dict:
    """One case's 16 signals per second, in clinical units, from its windows, with the stretches
    where the mask is 0 (filled or defaulted: imputed) per signal.

    Consecutive windows overlap and hold the same per-second series, so each second is taken from
    any window that covers it; seconds no window covers (dropped windows) are null and end a
    stretch. Without the mask feature there are no stretches (``mask: false``)."""
    from vitalflow.dataset.tfrecord import ExampleDecoder

    detail = next((d for d in card.case_details if d.get("case_id") == case_id), None)
    if detail is None:
        raise NotFound(f"case {case_id} is not in the dataset")
    features = _feature_names(card)
    n = len(features)
    has_mask = "mask" in card.example_schema.root
    decoder, windows = ExampleDecoder(), {}
    for path, offset, length in _case_blocks(folder, card, case_id):
        for record in _records(folder, card, path, offset or 0, length):
            ex = decoder.decode(record)
            if int(ex["case_id"][0]) != case_id:
                continue
            ts = np.asarray(ex["timeseries"], np.float32).reshape(-1, n)
            mask = np.asarray(ex["mask"], np.float32).reshape(-1, n) if has_mask else None
            windows[int(ex["window_start_s"][0])] = (ts, mask)
    base = {"case_id": case_id, "split": detail.get("split"), "status": detail.get("status"),
            "subject_id": detail.get("subject_id"), "windows": len(windows), "mask": has_mask,
            "features": [{"feature": f["name"], "unit": f["unit"], "range": f["range"]} for f in features]}
    if not windows:
        return {**base, "time_s": [], "series": []}
    length = next(iter(windows.values()))[0].shape[0]
    t0, t1 = min(windows), max(windows) + length
    values = np.full((t1 - t0, n), np.nan)
    masks = np.full((t1 - t0, n), np.nan)
    for start, (ts, mask) in sorted(windows.items()):
        values[start - t0:start - t0 + length] = ts
        if mask is not None:
            masks[start - t0:start - t0 + length] = mask
    clinical = _denormalize(values, [f["range"] for f in features])
    series = []
    for j, f in enumerate(features):
        column = clinical[:, j]
        runs = [[t0 + a, t0 + b] for a, b in zero_runs(masks[:, j])] if has_mask else []
        recorded = int(np.sum(masks[:, j] == 1)) if has_mask else None
        series.append({"feature": f["name"], "unit": f["unit"],
                       "values": [None if math.isnan(v) else round(float(v), 6) for v in column],
                       "imputed": runs, "recorded_seconds": recorded,
                       "imputed_seconds": sum(b - a for a, b in runs)})
    return {**base, "time_s": list(range(t0, t1)), "series": series}


# --- predictions -----------------------------------------------------------------------------------

def _is_job(folder: Path) -> bool:
    return (folder / JOB_SUMMARY).is_file() and (folder / JOB_TIMELINE).is_file()


def list_predictions(roots: Sequence[str]) -> dict:
    """Batch prediction outputs (folders with a prediction card) and the inference service's job
    results (``<results>/<jobId>/`` with summary.json and timeline.parquet) below the roots."""
    from vitalflow.errors import redact

    batches = []
    for folder in find_folders(roots, PREDICTION_CARD):
        item = {"id": encode_id(folder, roots), "path": str(folder)}
        try:
            cards = prediction_cards(folder)
        except (OSError, ValueError) as exc:
            batches.append({**item, "error": redact(str(exc))})
            continue
        first = cards[0]
        batches.append({**item, "status": ", ".join(sorted({c["status"] for c in cards})),
                        "created_utc": first["created_utc"], "model": redact(first["model"]["reference"]),
                        "ok": sum(c["cases"]["ok"] for c in cards), "excluded": sum(c["cases"]["excluded"] for c in cards),
                        "failed": sum(c["cases"]["failed"] for c in cards), "rows": sum(c["cases"]["rows"] for c in cards),
                        "hosts": len(cards)})
    jobs = []
    for folder in find_folders(roots, [JOB_SUMMARY, JOB_TIMELINE]):
        item = {"id": encode_id(folder, roots), "path": str(folder), "results": str(folder.parent)}
        try:
            summary = json.loads((folder / JOB_SUMMARY).read_text())
        except (OSError, ValueError) as exc:
            jobs.append({**item, "error": redact(str(exc))})
            continue
        jobs.append({**item, "job_id": str(summary.get("jobId", folder.name)), "rows": summary.get("rows"),
                     "input": redact(str(summary.get("input", ""))), "time_span": summary.get("time_span")})
    return {"batches": batches, "jobs": jobs}


def prediction_cards(folder: Path) -> list[dict]:
    """The folder's prediction cards (one, or one per host), validated."""
    from vitalflow.predict.card import PredictionCard

    names = sorted(p.name for p in folder.iterdir() if PREDICTION_CARD.match(p.name))
    return [PredictionCard.model_validate_json((folder / n).read_bytes()).model_dump(mode="json") for n in names]


def prediction_summary(folder: Path) -> dict:
    """A batch output's page: the model, the counts, and every case (done with rows, excluded
    and failed with the reason); or a job result's summary."""
    from vitalflow.errors import redact

    if _is_job(folder) and not any(PREDICTION_CARD.match(p.name) for p in folder.iterdir()):
        summary = json.loads((folder / JOB_SUMMARY).read_text())
        return {"kind": "job", "path": str(folder), "job_id": str(summary.get("jobId", folder.name)),
                "summary": redacted(summary)}
    cards = prediction_cards(folder)
    first = cards[0]
    model = {k: (redact(v) if isinstance(v, str) else v) for k, v in first["model"].items()}
    done = sorted((d for c in cards for d in c["done"]), key=lambda d: d["case_id"])
    return {"kind": "batch", "path": str(folder), "status": sorted({c["status"] for c in cards}),
            "created_utc": first["created_utc"], "model": model, "targets": first["targets"],
            "cases": {k: sum(c["cases"][k] for c in cards) for k in first["cases"] if k != "success_rate"},
            "done": [{"case_id": d["case_id"], "rows": d.get("rows")} for d in done],
            "excluded": [{"case_id": e["case_id"], "reason": redact(str(e.get("reason")))}
                         for c in cards for e in c["excluded"]],
            "failed": [{"case_id": e["case_id"], "stage": e.get("stage"), "error": redact(str(e.get("error")))}
                       for c in cards for e in c["failed"]]}


def redacted(value):
    """``value`` (JSON data) with every string passed through `vitalflow.errors.redact`."""
    from vitalflow.errors import redact

    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redacted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redacted(v) for v in value]
    return value


def _json_number(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def timeline(path: Path) -> dict:
    """A prediction timeline (``cases/<id>.parquet`` or a job's ``timeline.parquet``): the
    seconds, and per target its unit, predictions and recorded values (NaN as null), exactly the
    Parquet columns."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    names = table.column_names
    targets = [c[:-len("_pred")] for c in names if c.endswith("_pred") and c[:-len("_pred")] + "_recorded" in names]
    out = {"time_s": [int(t) for t in table.column("time_s").to_pylist()], "targets": []}
    for t in targets:
        field = table.schema.field(f"{t}_pred")
        unit = (field.metadata or {}).get(b"unit", b"").decode()
        out["targets"].append({"name": t, "unit": unit,
                               "predicted": [_json_number(v) for v in table.column(f"{t}_pred").to_pylist()],
                               "recorded": [_json_number(v) for v in table.column(f"{t}_recorded").to_pylist()]})
    # a decision model's timeline: event probabilities (unit "probability"), then set-point values
    out["decisions"] = any(t["unit"] == "probability" for t in out["targets"])
    meta = table.schema.metadata or {}
    out["recording_start_utc"] = meta.get(b"vitalflow.recording_start_utc", b"").decode() or None
    return out


def case_timeline_path(folder: Path, case_id: int | None) -> Path:
    """The Parquet file of a case of a batch output (``cases/<id>.parquet``), or a job's timeline
    (``case_id`` None); inside the folder or `NotFound`."""
    from vitalflow.predict.table import PARQUET, case_files

    name = JOB_TIMELINE if case_id is None else case_files.name(case_id, PARQUET)
    path = inside_roots(folder / name, [str(folder)])
    if path is None or not path.is_file():
        raise NotFound(f"no timeline {name} in this prediction output")
    return path


# --- models ----------------------------------------------------------------------------------------

#: The run metrics the models table shows (`vitalflow.registry.log`): name -> MLflow key.
MODEL_METRICS = {
    "val_loss": "best.val_loss",
    "ratio_all": "test.all.mae_ratio.model",  # mean over targets of MAE / persistence's MAE
    "ratio_changed": "test.changed.mae_ratio.model",
    "xgboost_ratio_all": "test.all.mae_ratio.xgboost",
    "xgboost_ratio_changed": "test.changed.mae_ratio.xgboost",
    "mean_auprc": "test.mean_auprc.model",  # a decision model: mean over the events of its test AUPRC
    "xgboost_mean_auprc": "test.mean_auprc.xgboost",
}
EVALUATION_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,120}\.png$")


def _created(ms: int) -> str:
    import datetime as _dt

    return _dt.datetime.fromtimestamp(ms / 1000, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M") if ms else "-"


def _version_row(v, datasets: dict[str, str]) -> dict:
    from vitalflow.errors import redact

    fingerprint = v.tags.get("dataset.fingerprint")
    return {"reference": v.reference, "name": v.name, "version": v.version, "aliases": list(v.aliases),
            "created_utc": _created(v.created_ms), "run_id": v.run_id,
            **{k: v.metrics.get(key) for k, key in MODEL_METRICS.items()},
            "spec": f"{v.tags.get('spec.name', '?')} v{v.tags.get('spec.version', '?')}",
            "spec_hash": v.tags.get("spec.hash"), "config_hash": v.tags.get("config.hash"),
            "dataset_fingerprint": fingerprint, "dataset_id": datasets.get(fingerprint or ""),
            "dataset_uri": redact(v.tags.get("dataset.uri", "")) or None,
            "model_package": v.tags.get("sagemaker.model_package_arn")}


def list_models(roots: Sequence[str]) -> dict:
    """The registry as the models table shows it: every version with its aliases, val_loss, test
    MAE ratios against persistence and lineage (the dataset's id when it is below the roots).
    A registry that cannot be opened is an ``error``, not an exception."""
    from vitalflow.errors import ModelError
    from vitalflow.registry.tracking import tracking_uri
    from vitalflow.registry.versions import list_versions
    from vitalflow.errors import redact

    where = redact(tracking_uri())
    try:
        versions = list_versions()
    except ModelError as exc:
        return {"tracking_uri": where, "versions": [], "error": redact(str(exc))}
    datasets = datasets_by_fingerprint(roots)
    return {"tracking_uri": where, "versions": [_version_row(v, datasets) for v in versions], "error": None}


def model_reference(name: str, version: str) -> str:
    """``NAME/VERSION`` if both are valid, else `BadId`."""
    from vitalflow.registry.versions import ModelReference

    parsed = ModelReference.parse(f"{name}/{version}")
    if parsed is None or parsed.version is None:
        raise BadId(f"{name}/{version} is not a registered model version (NAME/VERSION)")
    return str(parsed)


def model_handle(name: str, version: str):
    """The version's `ModelHandle` (its directory: the registry's copy in the cache), or
    `NotFound` naming what exists."""
    return _registered_handle(model_reference(name, version))


def evaluation_images(model_dir: Path) -> dict[str, list[str]]:
    """Split -> the PNG files of ``<model>/evaluation/<split>/``."""
    from vitalflow.spec.model import SPLITS

    out = {}
    for split in SPLITS:
        folder = model_dir / "evaluation" / split
        if folder.is_dir():
            names = sorted(p.name for p in folder.iterdir() if p.is_file() and EVALUATION_FILE.match(p.name))
            if names:
                out[split] = names
    return out


def model_detail(name: str, version: str, roots: Sequence[str]) -> dict:
    """A version's page: the registry row, the card (training, lineage), the test metrics against
    the baselines (`vitalflow.evaluate.report.comparison_table`) and the report's images."""
    from vitalflow.evaluate.tables import metrics_tables
    from vitalflow.predict.table import output_columns
    from vitalflow.errors import redact

    handle = model_handle(name, version)
    card = handle.card
    row = _version_row(handle.version, datasets_by_fingerprint(roots))
    metrics = handle.metrics("test")
    tables = [t._asdict() for t in metrics_tables(metrics)] if metrics else None
    t = card.training
    return {
        **row,
        "card": {"created_utc": card.created_utc, "parameters": card.parameters, "epochs_run": t.epochs_run,
                 "best_epoch": t.best_epoch, "stopped_early": t.stopped_early, "history": t.history,
                 "val_loss": card.metrics.get("val_loss"), "val_mae": card.metrics.get("val_mae"),
                 "targets": [{"name": n, "unit": u} for n, u in output_columns(card)],
                 "window_s": card.window_s},
        "lineage": [["dataset", redact(card.dataset.uri)], ["dataset fingerprint", card.dataset.fingerprint],
                    ["dataset windows", ", ".join(f"{s} {n}" for s, n in card.dataset.windows.items())],
                    ["spec", f"{card.spec.name} v{card.spec.version} ({card.spec.hash})"],
                    ["config hash", card.config_hash],
                    ["tool", f"vitalflow {card.tool.version}, TensorFlow {card.tool.tensorflow}, Keras {card.tool.keras}"],
                    ["trained into", redact(handle.version.tags.get("model.uri", "-"))]],
        "test": None if metrics is None else {"windows": metrics.get("windows"), "dataset": redact(str(metrics.get("dataset", "?"))),
                                              "tables": tables},
        "images": evaluation_images(Path(handle.uri)),
    }


def evaluation_image(name: str, version: str, split: str, filename: str) -> Path:
    """A PNG of the version's ``evaluation/<split>/`` folder, and nothing else (`NotFound`)."""
    from vitalflow.spec.model import SPLITS

    if split not in SPLITS or not EVALUATION_FILE.match(filename):
        raise NotFound(f"no image {split}/{filename}")
    folder = (Path(model_handle(name, version).uri) / "evaluation" / split).resolve()
    path = (folder / filename).resolve()
    if path.parent != folder or not path.is_file():
        raise NotFound(f"no image {split}/{filename}")
    return path


def _registered_handle(reference: str):
    """A `ModelHandle` of a registry reference (``NAME@ALIAS`` or ``NAME/VERSION``); no path."""
    from vitalflow.errors import ModelError
    from vitalflow.evaluate.compare import ModelHandle
    from vitalflow.registry.versions import ModelReference
    from vitalflow.errors import redact

    if ModelReference.parse(reference) is None or (Path(reference) / "model_card.json").exists():
        raise BadId(f"{reference!r} is not a registry reference: NAME@ALIAS or NAME/VERSION")
    try:
        return ModelHandle(reference)
    except ModelError as exc:
        raise NotFound(redact(str(exc))) from None


def compare_versions(a: str, b: str) -> dict:
    """Two models side by side (`vitalflow.evaluate.compare.compare_models` on their stored test
    evaluations): what ``vitalflow models compare A B`` prints. A refusal is a `ModelError`."""
    from vitalflow.evaluate.compare import compare_models
    from vitalflow.errors import redact

    handles = [_registered_handle(ref) for ref in (a, b)]
    warnings: list[str] = []
    result = compare_models(*handles, warn=lambda text: warnings.append(redact(text)))
    return {"labels": list(result.labels), "headline": redact(result.headline), "warnings": warnings,
            "summary": result.summary, "tables": [t._asdict() for t in result.tables()]}


def promote_version(reference: str, alias: str) -> dict:
    """Point ``alias`` at ``reference`` (`vitalflow.registry.versions.promote`)."""
    from vitalflow.registry.versions import promote

    info, before = promote(reference, alias)
    return {"alias": alias, "name": info.name, "version": info.version, "reference": info.reference,
            "before": before}
