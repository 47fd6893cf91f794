"""One ``tf.train.Example`` per window: the documented output schema."""

from __future__ import annotations

import numpy as np

from vitalflow.dataset.tfrecord import encode_block, encode_examples
from vitalflow.transform.case import CaseArrays


def case_examples(arrays: CaseArrays, subject_id: str, write_mask: bool) -> list[bytes]:
    """Serialized examples of every window of a case, in window order."""
    n = arrays.n_windows
    if n == 0:
        return []
    series, observed = arrays.windows()
    rows = {
        "timeseries": series.reshape(n, -1),
        "target": arrays.targets,
        "window_start_s": np.asarray(arrays.window_starts, dtype=np.int64).reshape(n, 1),
    }
    if write_mask:
        rows["mask"] = observed.reshape(n, -1).astype(np.float32)
    same = {
        "static": arrays.static.astype(np.float32),
        "case_id": np.array([arrays.case_id], dtype=np.int64),
        "subject_id": [subject_id.encode()],
    }
    return encode_examples(rows, same)


def case_block(arrays: CaseArrays, subject_id: str, write_mask: bool, compression: str) -> bytes:
    """A case's examples as a block of a part file: framed, and compressed for ``"GZIP"``."""
    return encode_block(case_examples(arrays, subject_id, write_mask), compression)
