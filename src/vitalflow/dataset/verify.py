"""Read an output back and check it against its card and its ledger, without TensorFlow.

Checks: the card is complete and names exactly the parts the ledger committed; no uncommitted part
lies around; every part (and merged file) has the recorded checksum, size and example count, intact
framing, the schema's shapes, finite values in [-1, 1] and a 0/1 mask; each case's block holds the
examples the ledger records; every example belongs to the split its case was assigned; window
counts per case and split match; no window appears twice; no subject is in two splits.

The examples are read back block by block (a block is one case's examples, the unit the ledger
records with its byte range), in ``workers`` processes, while this process hashes whole files. A
run reads each commit's blocks back as it goes and hands those checks over (``checked``).
"""

from __future__ import annotations

import hashlib
import io
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np

from vitalflow.dataset.card import CARD_NAME, build_card, card_name, part_entry, read_card, write_card
from vitalflow.dataset.ledger import LEDGER, Ledger
from vitalflow.dataset.parts import PART_RE
from vitalflow.dataset.split import SPLITS
from vitalflow.dataset.tfrecord import CorruptRecordError, ExampleDecoder, read_records
from vitalflow.errors import OutputError
from vitalflow.runtime.pool import WorkerPool
from vitalflow.spec.model import Config, Spec
from vitalflow.store import Store

MAX_PROBLEMS = 50
_BOUNDED = ("timeseries", "static", "target", "mask")  # normalized: finite, in [-1, 1]
_BATCH = 1024  # examples whose values are checked in one numpy pass
_CHUNK = 1 << 20


@dataclass
class VerifyReport:
    output: str
    problems: list[str] = field(default_factory=list)
    examples: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def problem(self, text: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(text)
        elif len(self.problems) == MAX_PROBLEMS:
            self.problems.append("... more problems not listed")


def hosts(store: Store) -> list[str]:
    return sorted({name.split("/")[1] for name in store.list(LEDGER) if name.count("/") >= 2})


def verify_output(output: str, host: str | None = None, workers: int = 1,
                  checked: dict[tuple, _UnitCheck] | None = None) -> VerifyReport:
    """Verify one host's share (``host``), or the whole output (combining the hosts' ledgers into
    one card first when several hosts wrote it). ``checked``: blocks a run already read back
    (`check_unit` results by `_Unit.key`) while it went on; they are not read again."""
    store = Store(output)
    if host is not None:
        host_count = Ledger(store, host).read_manifest()["host_count"]
        card, scope = read_card(store, card_name(host, host_count)), [host]
    else:
        scope = hosts(store)
        manifests = [Ledger(store, h).read_manifest() for h in scope]
        if any(m and m["host_count"] > 1 for m in manifests):
            card = combined_card(store, scope, manifests)
            if store.exists(CARD_NAME):  # keep files an earlier `verify --merge` made (checked below)
                card["merged"] = read_card(store).get("merged", {})
            write_card(store, card)
        card = read_card(store)
    report = VerifyReport(store.uri)
    if card["status"] != "complete":
        report.problem(f"the run is partial: {card['cases']['pending']} of {card['cases']['selected']} "
                       "cases are not done; resume it (rerun the same command)")

    committed = {}
    for h in scope:
        for part in Ledger(store, h).load().parts:
            committed[part["path"]] = part
    in_card = {p["path"]: dict(p, split=s) for s, ps in card["files"].items() for p in ps}
    for path in sorted(set(committed) ^ set(in_card)):
        where = "the ledger but not the card" if path in committed else "the card but not the ledger"
        report.problem(f"{path}: listed in {where}")
    for path, part in in_card.items():
        if path in committed and part_entry(committed[path]) != part_entry(part):
            report.problem(f"{path}: the card's record differs from the ledger's")
    sizes = store.sizes()
    for name in sizes:
        if PART_RE.match(name) and PART_RE.match(name).group(3) in scope and name not in committed:
            report.problem(f"{name}: a part file no commit record names (a leftover of an interrupted run)")

    files, units = [], []  # (split, card entry, merged?) and the byte ranges to read back
    for split in SPLITS:
        for part in card["files"].get(split, []):
            files.append((split, part, False))
            units += _units(split, part["path"], committed.get(part["path"], {}).get("blocks"), sizes, report)
    for split, merged in card.get("merged", {}).items():
        parts = sorted((committed.get(p["path"], {}) for p in card["files"].get(split, [])),
                       key=lambda p: p.get("path", ""))
        files.append((split, merged, True))
        units += _units(split, merged["path"], _merged_blocks(parts), sizes, report)

    present = [entry for _, entry, _ in files if entry["path"] in sizes]
    checks, digests = _check_units(store, units, card, workers, present, checked or {})
    _tally(card, report, files, units, checks, digests)
    return report


@dataclass(frozen=True)
class _Unit:
    """A byte range of one file that is read back on its own: a case's block, or a whole file."""

    split: str
    path: str
    offset: int = 0
    length: int | None = None  # None: to the end of the file
    first: int = 0  # examples in the file before this range (for messages)
    case_id: int | None = None
    examples: int | None = None  # as the ledger records them, for a block

    @property
    def key(self) -> tuple:
        return self.path, self.offset, self.length


@dataclass
class _UnitCheck:
    count: int = 0
    keys: list[tuple[int, int]] = field(default_factory=list)  # (case id, window start) per example
    subjects: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)


def _units(split: str, path: str, blocks: list | None, sizes: dict[str, int], report: VerifyReport) -> list[_Unit]:
    """The blocks of a file when they tile it exactly, else the whole file as one range."""
    if path not in sizes:
        report.problem(f"{path}: missing")
        return []
    if blocks:
        offsets = [b[1] for b in blocks]
        ends = [b[1] + b[2] for b in blocks]
        if offsets[0] == 0 and offsets[1:] == ends[:-1] and ends[-1] == sizes[path]:
            firsts = np.cumsum([0] + [b[3] for b in blocks[:-1]]).tolist()
            return [_Unit(split, path, off, n, first, case, ex) for (case, off, n, ex), first in zip(blocks, firsts)]
        report.problem(f"{path}: the recorded blocks do not cover its {sizes[path]} bytes exactly")
    return [_Unit(split, path)]


def _merged_blocks(parts: list[dict]) -> list | None:
    """The blocks of a merged file: its parts' blocks, in part order, one after another."""
    blocks, base = [], 0
    for part in parts:
        if not part.get("blocks"):
            return None
        blocks += [[case, base + off, n, ex] for case, off, n, ex in part["blocks"]]
        base += part["bytes"]
    return blocks


def block_units(split: str, part: dict) -> list[_Unit]:
    """The blocks of a part just published (a ledger part record), to check with `check_unit`."""
    return _units(split, part["path"], part["blocks"], {part["path"]: part["bytes"]}, VerifyReport(""))


def unit_schema(example_schema: dict, compression: str) -> tuple[dict[str, int], str]:
    """`check_unit`'s last two arguments: values per feature, and the compression."""
    return {name: int(np.prod(f["shape"])) for name, f in example_schema.items()}, compression


def _check_units(store: Store, all_units: list[_Unit], card: dict, workers: int, entries: list[dict],
                 checked: dict[tuple, _UnitCheck]) -> tuple[list[_UnitCheck], dict[str, str]]:
    """Check every unit not checked yet (in worker processes when there are several), and hash the
    files here."""
    schema = unit_schema(card["example_schema"], card["config"]["output"]["compression"])
    units = [u for u in all_units if u.key not in checked]
    digests: dict[str, str] = {}
    if workers > 1 and len(units) > 1:
        pool = WorkerPool(min(workers, len(units)))
        try:
            largest_first = sorted(range(len(units)), key=lambda i: -(units[i].length or 1 << 62))
            futures = {i: pool.submit(check_unit, store.uri, units[i], *schema) for i in largest_first}
            for entry in entries:
                digests[entry["path"]] = _sha256(store, entry["path"])
            checks = [futures[i].result() for i in range(len(units))]
        except BaseException:
            pool.kill()
            raise
        pool.close()
    else:
        checks = [check_unit(store.uri, unit, *schema) for unit in units]
        for entry in entries:
            digests[entry["path"]] = _sha256(store, entry["path"])
    found = {**checked, **{u.key: c for u, c in zip(units, checks)}}
    return [found[u.key] for u in all_units], digests


def _sha256(store: Store, path: str) -> str:
    sha = hashlib.sha256()
    with store.open(path) as f:
        while chunk := f.read(_CHUNK):
            sha.update(chunk)
    return sha.hexdigest()


def check_unit(uri: str, unit: _Unit, sizes: dict[str, int], compression: str) -> _UnitCheck:
    """Read one range back: framing and CRCs, then each example's schema, values and identity."""
    check, pending, decoder = _UnitCheck(), [], ExampleDecoder()
    with Store(uri).open(unit.path) as f:
        f.seek(unit.offset)
        source = f if unit.length is None else io.BytesIO(f.read(unit.length))
        try:
            for record in read_records(source, compression=compression):
                check.count += 1
                where = f"{unit.path} example {unit.first + check.count}"
                example = decoder.decode(record)
                if _schema_holds(where, example, sizes, check):
                    pending.append((where, example))
                if len(pending) >= _BATCH:
                    _check_values(pending, sizes, check.problems)
        except (CorruptRecordError, ValueError) as exc:
            at = f" (the block of case {unit.case_id} at byte {unit.offset})" if unit.case_id is not None else ""
            check.problems.append(f"{unit.path}: unreadable after {unit.first + check.count} examples{at} ({exc})")
        _check_values(pending, sizes, check.problems)
    return check


def _schema_holds(where: str, ex: dict, sizes: dict[str, int], check: _UnitCheck) -> bool:
    """Check the schema and note the example's identity; True if its values are to be checked."""
    for name, size in sizes.items():
        if name not in ex:
            check.problems.append(f"{where}: feature {name} missing")
            return False
        if len(ex[name]) != size:
            check.problems.append(f"{where}: {name} has {len(ex[name])} values, schema says {size}")
            return False
    check.keys.append((int(ex["case_id"][0]), int(ex["window_start_s"][0])))
    check.subjects.add(ex["subject_id"][0].decode())
    return True


def _check_values(pending: list[tuple[str, dict]], sizes: dict[str, int], problems: list[str]) -> None:
    """Normalized values finite and in [-1, 1], mask 0/1: one numpy pass over many examples."""
    if not pending:
        return
    for name in (n for n in _BOUNDED if n in sizes):
        values = np.stack([ex[name] for _, ex in pending])
        if values.size and not (values.min() >= -1 and values.max() <= 1):  # NaN fails too: find them
            inside = (values >= -1) & (values <= 1)
            for i in np.flatnonzero(~inside.all(axis=1)):
                problems.append(f"{pending[i][0]}: {name} has values outside [-1, 1] or not finite")
        if name == "mask":
            for i in np.flatnonzero(((values != 0) & (values != 1)).any(axis=1)):
                problems.append(f"{pending[i][0]}: mask holds values other than 0 and 1")
    pending.clear()


def _tally(card: dict, report: VerifyReport, files: list, units: list[_Unit], checks: list[_UnitCheck],
           digests: dict[str, str]) -> None:
    """Combine the units' checks: counts per block, file, case and split; duplicates; splits."""
    split_of_case = {d["case_id"]: d["split"] for d in card["case_details"]}
    counts: Counter[str] = Counter()
    seen: dict[bool, set[tuple[int, int]]] = {False: set(), True: set()}  # parts / merged files
    merged_paths = {entry["path"] for _, entry, merged in files if merged}
    windows: Counter[int] = Counter()
    subjects: dict[str, set[str]] = defaultdict(set)
    for unit, check in zip(units, checks):
        for p in check.problems:
            report.problem(p)
        counts[unit.path] += check.count
        if unit.examples is not None and check.count != unit.examples:
            report.problem(f"{unit.path}: the block of case {unit.case_id} at byte {unit.offset} holds "
                           f"{check.count} examples, recorded {unit.examples}")
        merged = unit.path in merged_paths
        for case_id, start in check.keys:
            if (case_id, start) in seen[merged]:
                report.problem(f"{unit.path}: window (case {case_id}, start {start} s) appears twice")
            seen[merged].add((case_id, start))
            if split_of_case.get(case_id) != unit.split:
                report.problem(f"{unit.path}: case {case_id} belongs to {split_of_case.get(case_id)}, "
                               f"found in {unit.split}")
            if not merged:
                windows[case_id] += 1
        if not merged:
            subjects[unit.split] |= check.subjects
    for split, entry, merged in files:
        path = entry["path"]
        if path in digests and digests[path] != entry["sha256"]:
            report.problem(f"{path}: checksum differs from the record (file changed or corrupt)")
        if path in digests and counts[path] != entry["examples"]:
            report.problem(f"{path}: {counts[path]} examples, recorded {entry['examples']}")
        if not merged:
            report.examples[split] = report.examples.get(split, 0) + counts[path]
    for split in SPLITS:
        expected = card["splits"][split]["windows"]
        if report.examples.setdefault(split, 0) != expected:
            report.problem(f"{split}: {report.examples[split]} examples in the parts, card says {expected}")
        for split_, entry, merged in files:
            if merged and split_ == split and counts[entry["path"]] != expected:
                report.problem(f"{entry['path']}: {counts[entry['path']]} examples, split {split} has {expected}")
    for d in card["case_details"]:
        if d["status"] == "ok" and windows[d["case_id"]] != d["windows"]:
            report.problem(f"case {d['case_id']}: {windows[d['case_id']]} windows in the parts, "
                           f"card says {d['windows']}")
    for i, a in enumerate(SPLITS):
        for b in SPLITS[i + 1 :]:
            shared = subjects[a] & subjects[b]
            if shared:
                report.problem(f"subjects in both {a} and {b}: {sorted(shared)[:10]}")


def combined_card(store: Store, scope: list[str], manifests: list[dict | None]) -> dict:
    """One card for an output several hosts wrote, from their manifests and ledgers."""
    first = next(m for m in manifests if m)
    expected = [f"h{i}" for i in range(first["host_count"])]
    problems = []
    if scope != expected:
        problems.append(f"ledgers of hosts {scope}, expected {expected}")
    for h, m in zip(scope, manifests):
        if not m or any(m[k] != first[k] for k in ("config_hash", "cases", "clinical_sha256", "host_count")):
            problems.append(f"host {h} ran with other settings")
    if problems:
        raise OutputError(f"{store.uri}: cannot combine hosts: {'; '.join(problems)}")
    outcomes, parts = {}, []
    for h in scope:
        state = Ledger(store, h).load()
        outcomes.update(state.outcomes)
        parts += state.parts
    spec, config = Spec.model_validate(first["spec_content"]), Config.model_validate(first["config"])
    return build_card(spec, config, first["cases"], outcomes, parts, {}, None, {"hosts": scope}, first.get("inputs"))
