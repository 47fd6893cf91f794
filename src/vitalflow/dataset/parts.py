"""Part files: the examples of one commit, one file per split, published only when complete.

Names say what a part is: ``train-00003-h0.tfrecord`` is the train part of commit 3 of host 0.
A published part is never modified; the ledger records which cases it holds.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from vitalflow.store import Store

PART_RE = re.compile(r"^(train|validation|test)-(\d{5})-(h\d+)\.tfrecord(\.gz)?$")


def part_name(split: str, seq: int, host: str, compression: str) -> str:
    """The published name of a part.

    >>> part_name("train", 3, "h0", "none"), part_name("test", 12, "h1", "GZIP")
    ('train-00003-h0.tfrecord', 'test-00012-h1.tfrecord.gz')
    """
    return f"{split}-{seq:05d}-{host}.tfrecord" + (".gz" if compression == "GZIP" else "")


@dataclass(frozen=True)
class PublishedFile:
    path: str  # name in the store
    examples: int
    bytes: int
    sha256: str
    # [case id, byte offset, bytes, examples] of each case's block, in file order: verify checks
    # blocks in parallel, and a reader can find one case's examples without reading the rest
    blocks: list = field(default_factory=list)


class StagedFile:
    """A staged part: blocks appended, counted and hashed as they are written."""

    def __init__(self, path: Path):
        self.path, self.file, self.sha = path, open(path, "wb"), hashlib.sha256()
        self.examples = self.bytes = 0
        self.blocks: list[list[int]] = []

    def append(self, block: bytes, examples: int = 0, case_id: int | None = None) -> None:
        if case_id is not None:
            self.blocks.append([case_id, self.bytes, len(block), examples])
        self.file.write(block)
        self.sha.update(block)
        self.examples += examples
        self.bytes += len(block)

    def published(self, name: str) -> PublishedFile:
        return PublishedFile(name, self.examples, self.bytes, self.sha.hexdigest(), self.blocks)


class PartWriter:
    """Collects one commit's blocks (see `vitalflow.dataset.examples.case_block`) in staged files;
    :meth:`publish` makes them visible."""

    def __init__(self, store: Store, seq: int, host: str, compression: str):
        self.store, self.seq, self.host, self.compression = store, seq, host, compression
        self._staging = store.staging_dir(host)
        self._files: dict[str, StagedFile] = {}

    def _name(self, split: str) -> str:
        return part_name(split, self.seq, self.host, self.compression)

    def add(self, split: str, case_id: int, block: bytes, examples: int) -> None:
        """Append a case's block of ``examples`` records, framed and compressed like this part."""
        if split not in self._files:
            self._files[split] = StagedFile(self._staging / (self._name(split) + ".incomplete"))
        self._files[split].append(block, examples, case_id)

    def publish(self) -> dict[str, PublishedFile]:
        """Close and publish every split that received examples."""
        published = {}
        for split, staged in self._files.items():
            staged.file.close()
            self.store.publish(staged.path, self._name(split))
            published[split] = staged.published(self._name(split))
        self._files.clear()
        return published

    def abort(self) -> None:
        """Close and delete what was not published."""
        for staged in self._files.values():
            staged.file.close()
            staged.path.unlink(missing_ok=True)
        self._files.clear()
