"""``--merge``: one ``train.tfrecord`` / ``validation.tfrecord`` / ``test.tfrecord`` from the parts.

The layout the Master POC v5 documents expect. Parts are concatenated in part order: TFRecord
files, and gzip files, concatenate into valid files of the same kind. Each merged file is
published atomically like a part, and the callers verify it (records, CRCs, counts) afterwards.
"""

from __future__ import annotations

from vitalflow.dataset.naming import NAMES
from vitalflow.dataset.parts import FileEntry, StagedFile
from vitalflow.spec.model import SPLITS
from vitalflow.store import Store

_CHUNK = 1 << 24


def merge_parts(store: Store, parts: list[FileEntry], compression: str) -> dict[str, FileEntry]:
    """Concatenate the parts of each split (ledger `PartRecord`s or the card's entries)."""
    merged = {}
    for split in SPLITS:
        name = NAMES.merged(split, compression)
        staged = StagedFile(store.staging_dir("merge") / (name + ".incomplete"))
        for part in sorted((p for p in parts if p.split == split), key=lambda p: p.path):
            with store.open(part.path) as f:
                while chunk := f.read(_CHUNK):
                    staged.append(chunk)
            staged.examples += part.examples
        staged.file.close()
        store.publish(staged.path, name)
        merged[split] = staged.published(name).entry()
    store.remove_staging("merge")
    return merged
