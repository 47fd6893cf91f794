"""``--merge``: one ``train.tfrecord`` / ``validation.tfrecord`` / ``test.tfrecord`` from the parts.

The layout the Master POC v5 documents expect. Parts are concatenated in part order: TFRecord
files, and gzip files, concatenate into valid files of the same kind. Each merged file is
published atomically like a part, and the callers verify it (records, CRCs, counts) afterwards.
"""

from __future__ import annotations

from vitalflow.dataset.card import part_entry
from vitalflow.dataset.parts import StagedFile
from vitalflow.dataset.split import SPLITS
from vitalflow.store import Store

_CHUNK = 1 << 24


def merged_name(split: str, compression: str) -> str:
    """The merged file of a split.

    >>> merged_name("train", "GZIP")
    'train.tfrecord.gz'
    """
    return f"{split}.tfrecord" + (".gz" if compression == "GZIP" else "")


def merge_parts(store: Store, parts: list[dict], compression: str) -> dict[str, dict]:
    merged = {}
    for split in SPLITS:
        name = merged_name(split, compression)
        staged = StagedFile(store.staging_dir("merge") / (name + ".incomplete"))
        for part in sorted((p for p in parts if p["split"] == split), key=lambda p: p["path"]):
            with store.open(part["path"]) as f:
                while chunk := f.read(_CHUNK):
                    staged.append(chunk)
            staged.examples += part["examples"]
        staged.file.close()
        store.publish(staged.path, name)
        merged[split] = part_entry(vars(staged.published(name)))
    store.remove_staging("merge")
    return merged
