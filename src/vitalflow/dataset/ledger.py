"""The ledger: the single source of truth of what a host has committed to an output.

Layout under the output (per host ``hN``; names from `vitalflow.dataset.naming`)::

    _ledger/hN/run.json             what this output is: config hash, spec hash, cases, clinical table
    _ledger/hN/commit-00003.json    a `CommitRecord`, written after the parts of commit 3 are
                                    published: the parts (examples, bytes, sha256, and each case's
                                    `Block`: byte offset, bytes, examples, sha256) and the outcome of
                                    every case in them

A commit record is written only after its parts exist under their final names, and each record is
itself written atomically. So after any crash: parts named by a record are complete and hold
exactly the cases the record lists; parts without a record are leftovers, deleted on resume.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from pydantic import model_validator

from vitalflow.dataset.card import CaseOutcome
from vitalflow.dataset.naming import LEDGER, NAMES
from vitalflow.dataset.parts import PartRecord
from vitalflow.dataset.record import Record
from vitalflow.store import Store

__all__ = ["LEDGER", "CommitRecord", "Ledger", "LedgerState"]

MANIFEST_FORMAT = "vitalflow-ledger/1"  # run.json: what an output is made from (see manifest_differences)
COMMIT_FORMAT = "vitalflow-commit/2"
_COMMIT_FORMATS = ("vitalflow-commit/1", COMMIT_FORMAT)  # 1: no format key, blocks as lists, no block sha256


class CommitRecord(Record):
    format: str = COMMIT_FORMAT
    seq: int
    host: str
    parts: dict[str, PartRecord]  # by split
    cases: list[CaseOutcome]

    @model_validator(mode="before")
    @classmethod
    def _known_format(cls, data):
        if isinstance(data, dict):
            found = data.get("format", _COMMIT_FORMATS[0])
            if found not in _COMMIT_FORMATS:
                raise ValueError(f"unknown ledger record format {found!r} (expected {COMMIT_FORMAT})")
            data = dict(data, format=found)
        return data


@dataclass
class LedgerState:
    commits: list[CommitRecord] = field(default_factory=list)

    @property
    def outcomes(self) -> dict[int, CaseOutcome]:
        """The latest outcome of every committed case (a retried case's later record wins)."""
        return {case.case_id: case for commit in self.commits for case in commit.cases}

    @property
    def parts(self) -> list[PartRecord]:
        return [p for c in self.commits for p in c.parts.values()]

    @property
    def next_seq(self) -> int:
        return self.commits[-1].seq + 1 if self.commits else 0


class Ledger:
    def __init__(self, store: Store, host: str):
        self.store, self.host = store, host
        self.prefix = NAMES.ledger_prefix(host)

    @property
    def lock_name(self) -> str:
        return NAMES.lock(self.host)

    def read_manifest(self) -> dict | None:
        name = NAMES.manifest(self.host)
        return json.loads(self.store.read_bytes(name)) if self.store.exists(name) else None

    def write_manifest(self, manifest: dict) -> None:
        self.store.write_bytes(NAMES.manifest(self.host), _json(manifest))

    def load(self) -> LedgerState:
        names = sorted(n for n in self.store.list(self.prefix) if NAMES.parse_commit(n) is not None)
        # records are written atomically: one that does not load is damage
        commits = [CommitRecord.load(self.store.read_bytes(n), self.store.url(n), "ledger record") for n in names]
        return LedgerState(sorted(commits, key=lambda c: c.seq))

    def record(self, seq: int, parts: dict[str, PartRecord], outcomes: list[CaseOutcome]) -> CommitRecord:
        commit = CommitRecord(seq=seq, host=self.host, parts=parts, cases=outcomes)
        self.store.write_bytes(NAMES.commit(self.host, seq), commit.to_json(indent=1, sort_keys=True))
        return commit

    def owns_part(self, name: str) -> bool:
        """Whether ``name`` is a part this host writes (committed or not)."""
        part = NAMES.parse_part(name)
        return part is not None and part.host == self.host

    def remove_leftovers(self, state: LedgerState) -> list[str]:
        """Delete this host's parts that no commit record names, and staged files."""
        committed = {p.path for p in state.parts}
        removed = []
        for name in self.store.list():
            if self.owns_part(name) and name not in committed:
                self.store.delete(name)
                removed.append(name)
        self.store.clear_staging(self.host)
        return removed

    def clear(self) -> None:
        """Forget everything this host wrote (``--overwrite``): parts, records, card, merged files."""
        for name in self.store.list():
            if self.owns_part(name) or name.startswith(self.prefix + "/") or name in OWN_FILES:
                self.store.delete(name)
        self.store.clear_staging(self.host)


OWN_FILES = {NAMES.card()} | NAMES.merged_files()


def _json(obj: dict) -> bytes:
    return (json.dumps(obj, indent=1, sort_keys=True, allow_nan=False) + "\n").encode()


def manifest_differences(old: dict, new: dict, failed: set[str] = frozenset()) -> list[str]:
    """The one compatibility rule of run manifests: why an output made under manifest ``old``
    cannot be continued (or combined) with one made under ``new``; empty when it can. Recordings
    of the ``failed`` cases (ids as strings) may have changed (``--retry-failed`` rereads them)."""
    out = []
    if old.get("config_hash") != new["config_hash"]:
        out.append(f"config or spec (spec {old.get('spec', {}).get('hash', '?')[:19]}, "
                   f"config {old.get('config_hash', '?')[:19]})")
    if old.get("cases") != new["cases"]:
        out.append("case selection")
    old_in, new_in = (old.get("inputs") or {}), new["inputs"]
    if old.get("clinical_sha256") != new["clinical_sha256"]:
        out.append(f"clinical table (was {old_in.get('clinical', {}).get('uri', '?')}, "
                   f"sha256 {old.get('clinical_sha256', '?')[:12]})")
    old_input, new_input = old_in.get("input") or {}, new_in["input"]
    if old_input.get("uri") != new_input["uri"]:
        out.append(f"--input {new_input['uri']} (the output was made from {old_input.get('uri', '?')})")
    else:
        before, now = old_input.get("recordings") or {}, new_input["recordings"]
        changed = [now[c][0] for c in now if c in before and before[c] != now[c] and c not in failed]
        if changed:
            out.append(f"{len(changed)} recording(s) changed since (size or modification time): "
                       f"{', '.join(changed[:5])}")
    return out
