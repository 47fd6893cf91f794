"""Part files: the examples of one commit, one file per split, published only when complete.

Names say what a part is (`vitalflow.dataset.naming`): ``train-00003-h0.tfrecord.gz`` is the train
part of commit 3 of host 0. A published part is never modified; the ledger records which cases it
holds, each as a `Block`: where its examples are in the part, and their sha256.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from pydantic import model_validator

from vitalflow.dataset.naming import NAMES
from vitalflow.dataset.record import Record
from vitalflow.store import Store



class Block(Record):
    """One case's examples in a file: byte range, example count and the sha256 of those bytes (one
    gzip member for GZIP). Verify reads blocks on their own; a reader can find a case's examples
    without reading the rest; the dataset fingerprint is made of block hashes."""

    case_id: int
    offset: int
    bytes: int
    examples: int
    sha256: str | None = None  # None: recorded by format 1 of the ledger, which did not hash blocks

    @model_validator(mode="before")
    @classmethod
    def _from_list(cls, data):
        """Format 1 of the ledger wrote a block as ``[case id, offset, bytes, examples]``."""
        if isinstance(data, (list, tuple)):
            return dict(zip(("case_id", "offset", "bytes", "examples"), data, strict=True))
        return data


class FileEntry(Record):
    """A published file (part or merged) as the card lists it."""

    path: str  # name in the store
    examples: int
    bytes: int
    sha256: str

    @property
    def split(self) -> str:
        split = NAMES.split_of(self.path)
        if split is None:
            raise ValueError(f"{self.path}: not the name of a part or merged file")
        return split


class PartRecord(FileEntry):
    """A published file as the ledger records it: with its blocks, in file order."""

    blocks: list[Block] = []

    def entry(self) -> FileEntry:
        return FileEntry(path=self.path, examples=self.examples, bytes=self.bytes, sha256=self.sha256)


class StagedFile:
    """A staged part: blocks appended, counted and hashed as they are written."""

    def __init__(self, path: Path):
        self.path, self.file, self.sha = path, open(path, "wb"), hashlib.sha256()
        self.examples = self.bytes = 0
        self.blocks: list[Block] = []

    def append(self, block: bytes, examples: int = 0, case_id: int | None = None) -> None:
        """Append bytes; with a ``case_id`` they are that case's block of ``examples`` examples."""
        if case_id is not None:
            self.blocks.append(Block(case_id=case_id, offset=self.bytes, bytes=len(block), examples=examples,
                                     sha256=hashlib.sha256(block).hexdigest()))
        self.file.write(block)
        self.sha.update(block)
        self.examples += examples
        self.bytes += len(block)

    def published(self, name: str) -> PartRecord:
        return PartRecord(path=name, examples=self.examples, bytes=self.bytes, sha256=self.sha.hexdigest(),
                          blocks=self.blocks)


class PartWriter:
    """Collects one commit's blocks (see `vitalflow.dataset.examples.case_block`) in staged files;
    :meth:`publish` makes them visible."""

    def __init__(self, store: Store, seq: int, host: str, compression: str):
        self.store, self.seq, self.host, self.compression = store, seq, host, compression
        self._staging = store.staging_dir(host)
        self._files: dict[str, StagedFile] = {}

    def _name(self, split: str) -> str:
        return NAMES.part(split, self.seq, self.host, self.compression)

    def add(self, split: str, case_id: int, block: bytes, examples: int) -> None:
        """Append a case's block of ``examples`` records, framed and compressed like this part."""
        if split not in self._files:
            self._files[split] = StagedFile(self._staging / (self._name(split) + ".incomplete"))
        self._files[split].append(block, examples, case_id)

    def publish(self) -> dict[str, PartRecord]:
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
