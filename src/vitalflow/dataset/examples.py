"""One ``tf.train.Example`` per window: the documented output schema."""

from __future__ import annotations

from typing import Iterator

import numpy as np

from vitalflow.dataset.tfrecord import encode_example
from vitalflow.transform.case import CaseArrays


def case_examples(arrays: CaseArrays, subject_id: str, write_mask: bool) -> Iterator[bytes]:
    """Serialized examples of every window of a case, in window order."""
    series, observed = arrays.windows()
    static = arrays.static.astype(np.float32)
    case_id = np.array([arrays.case_id], dtype=np.int64)
    subject = subject_id.encode()
    for i in range(arrays.n_windows):
        features = {
            "timeseries": series[i].reshape(-1),
            "static": static,
            "target": arrays.targets[i],
            "case_id": case_id,
            "subject_id": [subject],
            "window_start_s": np.array([arrays.window_starts[i]], dtype=np.int64),
        }
        if write_mask:
            features["mask"] = observed[i].reshape(-1).astype(np.float32)
        yield encode_example(features)
