"""Part files: the examples of one commit, one file per split, published only when complete.

Names say what a part is: ``train-00003-h0.tfrecord`` is the train part of commit 3 of host 0.
A published part is never modified; the ledger records which cases it holds.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from vitalflow.dataset.split import SPLITS
from vitalflow.dataset.tfrecord import TFRecordWriter
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


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


class PartWriter:
    """Collects one commit's examples in staged files; :meth:`publish` makes them visible."""

    def __init__(self, store: Store, seq: int, host: str, compression: str):
        self.store, self.seq, self.host, self.compression = store, seq, host, compression
        self._staging = store.staging_dir(host)
        self._writers: dict[str, TFRecordWriter] = {}
        self._counts = {s: 0 for s in SPLITS}

    def _staged(self, split: str) -> Path:
        return self._staging / (part_name(split, self.seq, self.host, self.compression) + ".incomplete")

    def add(self, split: str, example: bytes) -> None:
        if split not in self._writers:
            self._writers[split] = TFRecordWriter(
                self._staged(split), compression=None if self.compression == "none" else "GZIP"
            )
        self._writers[split].write(example)
        self._counts[split] += 1

    @property
    def examples(self) -> int:
        return sum(self._counts.values())

    def publish(self) -> dict[str, PublishedFile]:
        """Close and publish every split that received examples."""
        published = {}
        for split, writer in self._writers.items():
            writer.close()
            staged = self._staged(split)
            name = part_name(split, self.seq, self.host, self.compression)
            size, digest = staged.stat().st_size, sha256_file(staged)
            self.store.publish(staged, name)
            published[split] = PublishedFile(name, self._counts[split], size, digest)
        self._writers.clear()
        return published

    def abort(self) -> None:
        """Close and delete what was not published."""
        for split, writer in self._writers.items():
            writer.close()
            self._staged(split).unlink(missing_ok=True)
        self._writers.clear()
