"""Split files written under temporary names and published by rename only when complete."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from vitalflow.dataset.split import SPLITS
from vitalflow.dataset.tfrecord import TFRecordWriter

INCOMPLETE = ".incomplete"


def split_file_name(split: str, compression: str) -> str:
    """The published name of a split's file.

    >>> split_file_name("train", "GZIP")
    'train.tfrecord.gz'
    """
    return f"{split}.tfrecord" + (".gz" if compression == "GZIP" else "")


@dataclass(frozen=True)
class PublishedFile:
    path: str  # relative to the output directory
    examples: int
    bytes: int
    sha256: str


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


class DatasetWriter:
    """One open TFRecord file per split; ``publish()`` renames them to their final names."""

    def __init__(self, output_dir: Path, compression: str = "none"):
        self.output_dir = Path(output_dir)
        self.compression = compression
        self._writers: dict[str, TFRecordWriter] = {}
        self._counts = {s: 0 for s in SPLITS}

    def _temp(self, split: str) -> Path:
        return self.output_dir / (split_file_name(split, self.compression) + INCOMPLETE)

    def _writer(self, split: str) -> TFRecordWriter:
        if split not in self._writers:
            self._writers[split] = TFRecordWriter(
                self._temp(split), compression=None if self.compression == "none" else "GZIP"
            )
        return self._writers[split]

    def add(self, split: str, example: bytes) -> None:
        self._writer(split).write(example)
        self._counts[split] += 1

    def publish(self) -> dict[str, PublishedFile]:
        """Close every split file (creating empty ones for splits without examples) and publish."""
        published = {}
        for split in SPLITS:
            self._writer(split)
            self._writers.pop(split).close()
            temp = self._temp(split)
            with open(temp, "rb+") as f:
                os.fsync(f.fileno())
            final = self.output_dir / split_file_name(split, self.compression)
            os.replace(temp, final)
            published[split] = PublishedFile(final.name, self._counts[split], final.stat().st_size, sha256_file(final))
        return published

    def abort(self) -> None:
        """Close and delete everything not yet published."""
        for split, writer in list(self._writers.items()):
            writer.close()
            self._temp(split).unlink(missing_ok=True)
        self._writers.clear()
