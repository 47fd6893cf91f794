"""``--merge``: one ``train.tfrecord`` / ``validation.tfrecord`` / ``test.tfrecord`` from the parts.

The layout the Master POC v5 documents expect. Records are re-read (CRC-checked) and re-written in
part order; each merged file is published atomically like a part.
"""

from __future__ import annotations

from vitalflow.dataset.parts import PublishedFile, sha256_file
from vitalflow.dataset.split import SPLITS
from vitalflow.dataset.tfrecord import TFRecordWriter, read_records
from vitalflow.store import Store


def merged_name(split: str, compression: str) -> str:
    """The merged file of a split.

    >>> merged_name("train", "GZIP")
    'train.tfrecord.gz'
    """
    return f"{split}.tfrecord" + (".gz" if compression == "GZIP" else "")


def merge_parts(store: Store, parts: list[dict], compression: str) -> dict[str, dict]:
    gzip = None if compression == "none" else "GZIP"
    merged = {}
    for split in SPLITS:
        name = merged_name(split, compression)
        staged = store.staging_dir("merge") / (name + ".incomplete")
        count = 0
        with TFRecordWriter(staged, compression=gzip) as writer:
            for part in sorted((p for p in parts if p["split"] == split), key=lambda p: p["path"]):
                with store.open(part["path"]) as f:
                    for record in read_records(f, compression=gzip):
                        writer.write(record)
                        count += 1
        published = PublishedFile(name, count, staged.stat().st_size, sha256_file(staged))
        store.publish(staged, name)
        merged[split] = vars(published)
    return merged
