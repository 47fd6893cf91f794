"""The ledger: the single source of truth of what a host has committed to an output.

Layout under the output (per host ``hN``)::

    _ledger/hN/run.json             what this output is: config hash, spec hash, cases, clinical table
    _ledger/hN/commit-00003.json    written after the parts of commit 3 are published: the parts
                                    (examples, bytes, sha256, and each case's block: byte offset,
                                    bytes, examples) and the outcome of every case in them

A commit record is written only after its parts exist under their final names, and each record is
itself written atomically. So after any crash: parts named by a record are complete and hold
exactly the cases the record lists; parts without a record are leftovers, deleted on resume.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from vitalflow.dataset.card import CARD_NAME, CaseOutcome
from vitalflow.dataset.parts import PART_RE, PublishedFile
from vitalflow.errors import OutputError
from vitalflow.store import Store

LEDGER = "_ledger"
COMMIT_RE = re.compile(r"commit-(\d{5})\.json$")


@dataclass
class LedgerState:
    commits: list[dict] = field(default_factory=list)

    @property
    def outcomes(self) -> dict[int, CaseOutcome]:
        """The latest outcome of every committed case (a retried case's later record wins)."""
        latest: dict[int, CaseOutcome] = {}
        for commit in self.commits:
            for case in commit["cases"]:
                latest[case["case_id"]] = CaseOutcome.from_json(case)
        return latest

    @property
    def parts(self) -> list[dict]:
        return [dict(p, split=split) for c in self.commits for split, p in c["parts"].items()]

    @property
    def next_seq(self) -> int:
        return self.commits[-1]["seq"] + 1 if self.commits else 0


class Ledger:
    def __init__(self, store: Store, host: str):
        self.store, self.host = store, host
        self.prefix = f"{LEDGER}/{host}"

    @property
    def lock_name(self) -> str:
        return f"{LEDGER}/{self.host}.lock"

    def read_manifest(self) -> dict | None:
        name = f"{self.prefix}/run.json"
        return json.loads(self.store.read_bytes(name)) if self.store.exists(name) else None

    def write_manifest(self, manifest: dict) -> None:
        self.store.write_bytes(f"{self.prefix}/run.json", _json(manifest))

    def load(self) -> LedgerState:
        names = sorted(n for n in self.store.list(self.prefix) if COMMIT_RE.search(n))
        commits = []
        for name in names:
            try:
                commits.append(json.loads(self.store.read_bytes(name)))
            except json.JSONDecodeError as exc:  # records are written atomically: this is damage
                raise OutputError(f"{self.store.url(name)}: unreadable ledger record ({exc})") from exc
        return LedgerState(sorted(commits, key=lambda c: c["seq"]))

    def record(self, seq: int, parts: dict[str, PublishedFile], outcomes: list[CaseOutcome]) -> dict:
        commit = {
            "seq": seq,
            "host": self.host,
            "parts": {split: vars(p) for split, p in parts.items()},
            "cases": [o.to_json() for o in outcomes],
        }
        self.store.write_bytes(f"{self.prefix}/commit-{seq:05d}.json", _json(commit))
        return commit

    def remove_leftovers(self, state: LedgerState) -> list[str]:
        """Delete this host's parts that no commit record names, and staged files."""
        committed = {p["path"] for p in state.parts}
        removed = []
        for name in self.store.list():
            m = PART_RE.match(name)
            if m and m.group(3) == self.host and name not in committed:
                self.store.delete(name)
                removed.append(name)
        self.store.clear_staging(self.host)
        return removed

    def clear(self) -> None:
        """Forget everything this host wrote (``--overwrite``): parts, records, card, merged files."""
        for name in self.store.list():
            m = PART_RE.match(name)
            if (m and m.group(3) == self.host) or name.startswith(self.prefix + "/") or name in OWN_FILES:
                self.store.delete(name)
        self.store.clear_staging(self.host)


OWN_FILES = {CARD_NAME} | {f"{s}.tfrecord{ext}" for s in ("train", "validation", "test") for ext in ("", ".gz")}


def _json(obj: dict) -> bytes:
    return (json.dumps(obj, indent=1, sort_keys=True, allow_nan=False) + "\n").encode()
