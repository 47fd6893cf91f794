"""Read an output back and check it against its card and its ledger, without TensorFlow.

Checks: the card is complete and names exactly the parts the ledger committed, with the ledger's
fingerprint; no uncommitted part lies around; every part (and merged file) has the recorded
checksum, size and example count, intact framing, the schema's features, dtypes and shapes, finite
values in [-1, 1] and a 0/1 mask; each case's block has the sha256 and holds the examples the
ledger records; every example belongs to the split its case was assigned; window
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

from vitalflow.dataset.card import CARD_NAME, DatasetCard, build_card, fingerprint, read_card, write_card
from vitalflow.dataset.ledger import Ledger, manifest_differences
from vitalflow.dataset.naming import LEDGER, NAMES
from vitalflow.dataset.parts import Block, FileEntry, PartRecord
from vitalflow.dataset.schema import ExampleSchema
from vitalflow.dataset.tfrecord import CorruptRecordError, ExampleDecoder, read_records
from vitalflow.errors import OutputError
from vitalflow.runtime.pool import WorkerPool
from vitalflow.spec.model import SPLITS, Config, Spec
from vitalflow.store import Store

MAX_PROBLEMS = 50
_NUMPY = {"float32": np.float32, "int64": np.int64}
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
    (`check_unit` results by `_Unit.key`) while it went on; they are not read again. The card does
    not change: the caller records the outcome (``write_card(store, card.verified(report), name)``)."""
    store = Store(output)
    if host is not None:
        host_count = Ledger(store, host).read_manifest()["host_count"]
        card, scope = read_card(store, NAMES.card(host, host_count)), [host]
    else:
        scope = hosts(store)
        manifests = [Ledger(store, h).read_manifest() for h in scope]
        if any(m and m["host_count"] > 1 for m in manifests):
            card = combined_card(store, scope, manifests)
            if store.exists(CARD_NAME):  # keep files an earlier `verify --merge` made (checked below)
                card = card.with_merged(read_card(store).merged)
            write_card(store, card)
        card = read_card(store)
    report = VerifyReport(store.uri)
    if card.status != "complete":
        report.problem(f"the run is partial: {card.cases.pending} of {card.cases.selected} "
                       "cases are not done; resume it (rerun the same command)")

    committed: dict[str, PartRecord] = {}
    for h in scope:
        for part in Ledger(store, h).load().parts:
            committed[part.path] = part
    in_card = {p.path: p for ps in card.files.values() for p in ps}
    for path in sorted(set(committed) ^ set(in_card)):
        where = "the ledger but not the card" if path in committed else "the card but not the ledger"
        report.problem(f"{path}: listed in {where}")
    for path, part in in_card.items():
        if path in committed and committed[path].entry() != part:
            report.problem(f"{path}: the card's record differs from the ledger's")
    if card.fingerprint != fingerprint(committed.values(), card.spec.hash, card.config_hash):
        report.problem(f"the card's fingerprint {card.fingerprint} differs from its ledger's blocks")
    sizes = store.sizes()
    for name in sizes:
        part = NAMES.parse_part(name)
        if part is not None and part.host in scope and name not in committed:
            report.problem(f"{name}: a part file no commit record names (a leftover of an interrupted run)")

    files, units = [], []  # (split, card entry, merged?) and the byte ranges to read back
    for split in SPLITS:
        for part in card.files.get(split, []):
            files.append((split, part, False))
            units += _units(split, part.path, _blocks(committed, [part]), sizes, report)
    for split, merged in card.merged.items():
        files.append((split, merged, True))
        units += _units(split, merged.path, _blocks(committed, card.files.get(split, [])), sizes, report)

    present = [entry for _, entry, _ in files if entry.path in sizes]
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
    sha256: str | None = None  # of a block's bytes, as the ledger records it (format 2)

    @property
    def key(self) -> tuple:
        return self.path, self.offset, self.length


@dataclass
class _UnitCheck:
    count: int = 0
    keys: list[tuple[int, int]] = field(default_factory=list)  # (case id, window start) per example
    subjects: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)


def _units(split: str, path: str, blocks: list[Block] | None, sizes: dict[str, int],
           report: VerifyReport) -> list[_Unit]:
    """The blocks of a file when they tile it exactly, else the whole file as one range."""
    if path not in sizes:
        report.problem(f"{path}: missing")
        return []
    if blocks:
        offsets = [b.offset for b in blocks]
        ends = [b.offset + b.bytes for b in blocks]
        if offsets[0] == 0 and offsets[1:] == ends[:-1] and ends[-1] == sizes[path]:
            firsts = np.cumsum([0] + [b.examples for b in blocks[:-1]]).tolist()
            return [_Unit(split, path, b.offset, b.bytes, first, b.case_id, b.examples, b.sha256)
                    for b, first in zip(blocks, firsts)]
        report.problem(f"{path}: the recorded blocks do not cover its {sizes[path]} bytes exactly")
    return [_Unit(split, path)]


def _blocks(committed: dict[str, PartRecord], entries: list[FileEntry]) -> list[Block] | None:
    """The blocks of the concatenation of files (one part, or the parts of a merged file, in order)
    as the ledger records them; None if one of them has no record of its blocks."""
    blocks, base = [], 0
    for entry in sorted(entries, key=lambda e: e.path):
        part = committed.get(entry.path)
        if part is None or not part.blocks:
            return None
        blocks += [b.model_copy(update={"offset": base + b.offset}) for b in part.blocks]
        base += part.bytes
    return blocks


def block_units(split: str, part: PartRecord | dict) -> list[_Unit]:
    """The blocks of a part just published (its ledger record), to check with `check_unit`."""
    part = PartRecord.model_validate(part)
    return _units(split, part.path, part.blocks, {part.path: part.bytes}, VerifyReport(""))


def unit_schema(example_schema: ExampleSchema | dict, compression: str) -> tuple[ExampleSchema, str]:
    """`check_unit`'s last two arguments: the schema of the examples, and the compression."""
    return ExampleSchema.model_validate(example_schema), compression


def _check_units(store: Store, all_units: list[_Unit], card: DatasetCard, workers: int, entries: list[FileEntry],
                 checked: dict[tuple, _UnitCheck]) -> tuple[list[_UnitCheck], dict[str, str]]:
    """Check every unit not checked yet (in worker processes when there are several), and hash the
    files here."""
    schema = unit_schema(card.example_schema, card.compression)
    units = [u for u in all_units if u.key not in checked]
    digests: dict[str, str] = {}
    if workers > 1 and len(units) > 1:
        pool = WorkerPool(min(workers, len(units)))
        try:
            largest_first = sorted(range(len(units)), key=lambda i: -(units[i].length or 1 << 62))
            futures = {i: pool.submit(check_unit, store.uri, units[i], *schema) for i in largest_first}
            for entry in entries:
                digests[entry.path] = _sha256(store, entry.path)
            checks = [futures[i].result() for i in range(len(units))]
        except BaseException:
            pool.kill()
            raise
        pool.close()
    else:
        checks = [check_unit(store.uri, unit, *schema) for unit in units]
        for entry in entries:
            digests[entry.path] = _sha256(store, entry.path)
    found = {**checked, **{u.key: c for u, c in zip(units, checks)}}
    return [found[u.key] for u in all_units], digests


def _sha256(store: Store, path: str) -> str:
    sha = hashlib.sha256()
    with store.open(path) as f:
        while chunk := f.read(_CHUNK):
            sha.update(chunk)
    return sha.hexdigest()


def check_unit(uri: str, unit: _Unit, schema: ExampleSchema, compression: str) -> _UnitCheck:
    """Read one range back: its sha256, framing and CRCs, then each example's schema, values and identity."""
    check, pending, decoder = _UnitCheck(), [], ExampleDecoder()
    expected = _Expected(schema)
    at = f" (the block of case {unit.case_id} at byte {unit.offset})" if unit.case_id is not None else ""
    with Store(uri).open(unit.path) as f:
        f.seek(unit.offset)
        source = f
        if unit.length is not None:
            data = f.read(unit.length)
            if unit.sha256 is not None and hashlib.sha256(data).hexdigest() != unit.sha256:
                check.problems.append(f"{unit.path}: bytes differ from the sha256 the ledger records{at}")
            source = io.BytesIO(data)
        try:
            for record in read_records(source, compression=compression):
                check.count += 1
                where = f"{unit.path} example {unit.first + check.count}"
                example = decoder.decode(record)
                if expected.holds(where, example, check):
                    pending.append((where, example))
                if len(pending) >= _BATCH:
                    expected.check_values(pending, check.problems)
        except (CorruptRecordError, ValueError) as exc:
            check.problems.append(f"{unit.path}: unreadable after {unit.first + check.count} examples{at} ({exc})")
        expected.check_values(pending, check.problems)
    return check


class _Expected:
    """What the schema says of each decoded example."""

    def __init__(self, schema: ExampleSchema):
        self.features = [(name, f.size, f.dtype) for name, f in schema.items()]
        self.binary = schema.with_values("0/1")
        self.bounded = schema.with_values("normalized") + self.binary  # finite, in [-1, 1]

    def holds(self, where: str, ex: dict, check: _UnitCheck) -> bool:
        """Check the features, dtypes and sizes and note the example's identity; True if its
        values are to be checked."""
        for name, size, dtype in self.features:
            if name not in ex:
                check.problems.append(f"{where}: feature {name} missing")
                return False
            value = ex[name]
            is_list = isinstance(value, list)  # how the decoder returns a bytes_list
            if (dtype == "string") != is_list or (not is_list and value.dtype != _NUMPY[dtype]):
                check.problems.append(f"{where}: {name} is not {dtype}")
                return False
            if len(value) != size:
                check.problems.append(f"{where}: {name} has {len(value)} values, schema says {size}")
                return False
        check.keys.append((int(ex["case_id"][0]), int(ex["window_start_s"][0])))
        check.subjects.add(ex["subject_id"][0].decode())
        return True

    def check_values(self, pending: list[tuple[str, dict]], problems: list[str]) -> None:
        """Normalized values finite and in [-1, 1], mask 0/1: one numpy pass over many examples."""
        if not pending:
            return
        for name in self.bounded:
            values = np.stack([ex[name] for _, ex in pending])
            if values.size and not (values.min() >= -1 and values.max() <= 1):  # NaN fails too: find them
                inside = (values >= -1) & (values <= 1)
                for i in np.flatnonzero(~inside.all(axis=1)):
                    problems.append(f"{pending[i][0]}: {name} has values outside [-1, 1] or not finite")
            if name in self.binary:
                for i in np.flatnonzero(((values != 0) & (values != 1)).any(axis=1)):
                    problems.append(f"{pending[i][0]}: {name} holds values other than 0 and 1")
        pending.clear()


def _tally(card: DatasetCard, report: VerifyReport, files: list, units: list[_Unit], checks: list[_UnitCheck],
           digests: dict[str, str]) -> None:
    """Combine the units' checks: counts per block, file, case and split; duplicates; splits."""
    split_of_case = {d["case_id"]: d["split"] for d in card.case_details}
    counts: Counter[str] = Counter()
    seen: dict[bool, set[tuple[int, int]]] = {False: set(), True: set()}  # parts / merged files
    merged_paths = {entry.path for _, entry, merged in files if merged}
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
        path = entry.path
        if path in digests and digests[path] != entry.sha256:
            report.problem(f"{path}: checksum differs from the record (file changed or corrupt)")
        if path in digests and counts[path] != entry.examples:
            report.problem(f"{path}: {counts[path]} examples, recorded {entry.examples}")
        if not merged:
            report.examples[split] = report.examples.get(split, 0) + counts[path]
    for split in SPLITS:
        expected = card.splits[split].windows
        if report.examples.setdefault(split, 0) != expected:
            report.problem(f"{split}: {report.examples[split]} examples in the parts, card says {expected}")
        for split_, entry, merged in files:
            if merged and split_ == split and counts[entry.path] != expected:
                report.problem(f"{entry.path}: {counts[entry.path]} examples, split {split} has {expected}")
    for d in card.case_details:
        if d["status"] == "ok" and windows[d["case_id"]] != d["windows"]:
            report.problem(f"case {d['case_id']}: {windows[d['case_id']]} windows in the parts, "
                           f"card says {d['windows']}")
    for i, a in enumerate(SPLITS):
        for b in SPLITS[i + 1 :]:
            shared = subjects[a] & subjects[b]
            if shared:
                report.problem(f"subjects in both {a} and {b}: {sorted(shared)[:10]}")


def combined_card(store: Store, scope: list[str], manifests: list[dict | None]) -> DatasetCard:
    """One card for an output several hosts wrote, from their manifests and ledgers."""
    first = next(m for m in manifests if m)
    expected = [f"h{i}" for i in range(first["host_count"])]
    problems = []
    if scope != expected:
        problems.append(f"ledgers of hosts {scope}, expected {expected}")
    for h, m in zip(scope, manifests):
        if not m:
            problems.append(f"host {h} has no run manifest")
            continue
        differences = manifest_differences(first, m) + (["host count"] if m["host_count"] != first["host_count"] else [])
        if differences:
            problems.append(f"host {h} ran with other inputs or settings: {'; '.join(differences)}")
    if problems:
        raise OutputError(f"{store.uri}: cannot combine hosts: {'; '.join(problems)}")
    outcomes, parts = {}, []
    for h in scope:
        state = Ledger(store, h).load()
        outcomes.update(state.outcomes)
        parts += state.parts
    spec, config = Spec.model_validate(first["spec_content"]), Config.model_validate(first["config"])
    return build_card(spec, config, first["cases"], outcomes, parts, {}, None, {"hosts": scope}, first.get("inputs"))
