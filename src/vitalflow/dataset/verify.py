"""Read a finished output back and check it against its card, without TensorFlow."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vitalflow.dataset.card import read_card
from vitalflow.dataset.split import SPLITS
from vitalflow.dataset.tfrecord import CorruptRecordError, decode_example, read_records
from vitalflow.dataset.writer import sha256_file

MAX_PROBLEMS = 50


@dataclass
class VerifyReport:
    output_dir: str
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


def verify_output(output_dir: str | Path) -> VerifyReport:
    """Check files (presence, checksum, framing), shapes, ranges, counts and split disjointness."""
    output_dir = Path(output_dir)
    card = read_card(output_dir)
    report = VerifyReport(str(output_dir))
    schema = card["example_schema"]
    sizes = {name: int(np.prod(f["shape"])) for name, f in schema.items()}
    compression = card["config"]["output"]["compression"]
    expected_windows = {d["case_id"]: d["windows"] for d in card["case_details"] if d["status"] == "ok"}
    split_of_case = {d["case_id"]: d["split"] for d in card["case_details"]}

    subjects_by_split: dict[str, set[str]] = defaultdict(set)
    windows_by_case: Counter[int] = Counter()
    seen: set[tuple[int, int]] = set()
    for split in SPLITS:
        entry = card["files"].get(split)
        if entry is None:
            report.problem(f"card lists no file for split {split}")
            continue
        path = output_dir / entry["path"]
        if not path.is_file():
            report.problem(f"{path}: missing")
            continue
        if sha256_file(path) != entry["sha256"]:
            report.problem(f"{path}: checksum differs from the card (file changed or corrupt)")
        count = 0
        try:
            for record in read_records(path, compression=None if compression == "none" else "GZIP"):
                count += 1
                _check_example(report, path, count, decode_example(record), sizes, split, split_of_case,
                               subjects_by_split, windows_by_case, seen)
        except (CorruptRecordError, ValueError) as exc:
            report.problem(f"{path}: unreadable after {count} examples ({exc})")
        report.examples[split] = count
        if count != entry["examples"] or count != card["splits"][split]["windows"]:
            report.problem(
                f"{path}: {count} examples, card says {entry['examples']} (file) and "
                f"{card['splits'][split]['windows']} (split)"
            )
    for case_id, n in expected_windows.items():
        if windows_by_case[case_id] != n:
            report.problem(f"case {case_id}: {windows_by_case[case_id]} windows in the files, card says {n}")
    for a in SPLITS:
        for b in SPLITS[SPLITS.index(a) + 1 :]:
            shared = subjects_by_split[a] & subjects_by_split[b]
            if shared:
                report.problem(f"subjects in both {a} and {b}: {sorted(shared)[:10]}")
    return report


def _check_example(report, path, n, ex, sizes, split, split_of_case, subjects_by_split, windows_by_case, seen):
    where = f"{path} example {n}"
    for name, size in sizes.items():
        value = ex.get(name)
        if value is None:
            report.problem(f"{where}: feature {name} missing")
            return
        if len(value) != size:
            report.problem(f"{where}: {name} has {len(value)} values, schema says {size}")
            return
    for name in ("timeseries", "static", "target", "mask"):
        if name in sizes:
            v = ex[name]
            if not np.all(np.isfinite(v)) or v.min(initial=0) < -1 or v.max(initial=0) > 1:
                report.problem(f"{where}: {name} has values outside [-1, 1] or not finite")
    if "mask" in sizes and not np.isin(ex["mask"], (0.0, 1.0)).all():
        report.problem(f"{where}: mask holds values other than 0 and 1")
    case_id = int(ex["case_id"][0])
    key = (case_id, int(ex["window_start_s"][0]))
    if key in seen:
        report.problem(f"{where}: window (case {key[0]}, start {key[1]} s) appears twice")
    seen.add(key)
    if split_of_case.get(case_id) != split:
        report.problem(f"{where}: case {case_id} belongs to {split_of_case.get(case_id)}, found in {split}")
    subjects_by_split[split].add(ex["subject_id"][0].decode())
    windows_by_case[case_id] += 1
