"""Read an output back and check it against its card and its ledger, without TensorFlow.

Checks: the card is complete and names exactly the parts the ledger committed; no uncommitted part
lies around; every part (and merged file) has the recorded checksum and example count, intact
framing, the schema's shapes, finite values in [-1, 1] and a 0/1 mask; every example belongs to the
split its case was assigned; window counts per case and split match; no subject is in two splits.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np

from vitalflow.dataset.card import CARD_NAME, build_card, card_name, read_card, write_card
from vitalflow.dataset.ledger import LEDGER, Ledger
from vitalflow.dataset.parts import PART_RE
from vitalflow.dataset.split import SPLITS
from vitalflow.dataset.tfrecord import CorruptRecordError, decode_example, read_records
from vitalflow.errors import OutputError
from vitalflow.spec.model import Config, Spec
from vitalflow.store import Store

MAX_PROBLEMS = 50


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


class _HashingReader:
    """A file wrapper that hashes every byte read through it."""

    def __init__(self, f):
        self.f, self.sha = f, hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        self.sha.update(data)
        return data

    def drain(self) -> str:
        while self.read(1 << 20):
            pass
        return self.sha.hexdigest()


def hosts(store: Store) -> list[str]:
    return sorted({name.split("/")[1] for name in store.list(LEDGER) if name.count("/") >= 2})


def verify_output(output: str, host: str | None = None) -> VerifyReport:
    """Verify one host's share (``host``), or the whole output (combining the hosts' ledgers into
    one card first when several hosts wrote it)."""
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
        if path in committed and committed[path] != part:
            report.problem(f"{path}: the card's record differs from the ledger's")
    for name in store.list():
        if PART_RE.match(name) and PART_RE.match(name).group(3) in scope and name not in committed:
            report.problem(f"{name}: a part file no commit record names (a leftover of an interrupted run)")

    checker = _ExampleChecker(card, report)
    for split in SPLITS:
        report.examples[split] = 0
        for part in card["files"].get(split, []):
            report.examples[split] += checker.check_file(store, part, split)
        if report.examples[split] != card["splits"][split]["windows"]:
            report.problem(f"{split}: {report.examples[split]} examples in the parts, card says "
                           f"{card['splits'][split]['windows']}")
    checker.check_totals()
    for split, merged in card.get("merged", {}).items():
        n = _ExampleChecker(card, report).check_file(store, merged, split)
        if n != card["splits"][split]["windows"]:
            report.problem(f"{merged['path']}: {n} examples, split {split} has {card['splits'][split]['windows']}")
    return report


class _ExampleChecker:
    def __init__(self, card: dict, report: VerifyReport):
        self.report = report
        self.sizes = {name: int(np.prod(f["shape"])) for name, f in card["example_schema"].items()}
        self.gzip = card["config"]["output"]["compression"] == "GZIP"
        self.split_of_case = {d["case_id"]: d["split"] for d in card["case_details"]}
        self.expected_windows = {d["case_id"]: d["windows"] for d in card["case_details"] if d["status"] == "ok"}
        self.subjects: dict[str, set[str]] = defaultdict(set)
        self.windows: Counter[int] = Counter()
        self.seen: set[tuple[int, int]] = set()

    def check_file(self, store: Store, entry: dict, split: str) -> int:
        name, count = entry["path"], 0
        if not store.exists(name):
            self.report.problem(f"{name}: missing")
            return 0
        with store.open(name) as raw:
            reader = _HashingReader(raw)
            try:
                for record in read_records(reader, compression="GZIP" if self.gzip else None):
                    count += 1
                    self._check_example(f"{name} example {count}", decode_example(record), split)
            except (CorruptRecordError, ValueError) as exc:
                self.report.problem(f"{name}: unreadable after {count} examples ({exc})")
            digest = reader.drain()
        if digest != entry["sha256"]:
            self.report.problem(f"{name}: checksum differs from the record (file changed or corrupt)")
        if count != entry["examples"]:
            self.report.problem(f"{name}: {count} examples, recorded {entry['examples']}")
        return count

    def _check_example(self, where: str, ex: dict, split: str) -> None:
        problem = self.report.problem
        for name, size in self.sizes.items():
            if name not in ex:
                return problem(f"{where}: feature {name} missing")
            if len(ex[name]) != size:
                return problem(f"{where}: {name} has {len(ex[name])} values, schema says {size}")
        for name in ("timeseries", "static", "target", "mask"):
            if name in self.sizes:
                v = ex[name]
                if not np.all(np.isfinite(v)) or v.min(initial=0) < -1 or v.max(initial=0) > 1:
                    problem(f"{where}: {name} has values outside [-1, 1] or not finite")
        if "mask" in self.sizes and not np.isin(ex["mask"], (0.0, 1.0)).all():
            problem(f"{where}: mask holds values other than 0 and 1")
        case_id = int(ex["case_id"][0])
        key = (case_id, int(ex["window_start_s"][0]))
        if key in self.seen:
            problem(f"{where}: window (case {key[0]}, start {key[1]} s) appears twice")
        self.seen.add(key)
        if self.split_of_case.get(case_id) != split:
            problem(f"{where}: case {case_id} belongs to {self.split_of_case.get(case_id)}, found in {split}")
        self.subjects[split].add(ex["subject_id"][0].decode())
        self.windows[case_id] += 1

    def check_totals(self) -> None:
        for case_id, n in self.expected_windows.items():
            if self.windows[case_id] != n:
                self.report.problem(f"case {case_id}: {self.windows[case_id]} windows in the parts, card says {n}")
        for i, a in enumerate(SPLITS):
            for b in SPLITS[i + 1 :]:
                shared = self.subjects[a] & self.subjects[b]
                if shared:
                    self.report.problem(f"subjects in both {a} and {b}: {sorted(shared)[:10]}")


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
    return build_card(spec, config, first["cases"], outcomes, parts, {}, None, {"hosts": scope})
