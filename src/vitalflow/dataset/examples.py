"""One ``tf.train.Example`` per window, as `vitalflow.dataset.schema` defines it."""

from __future__ import annotations

import numpy as np

from vitalflow.dataset.schema import written_features
from vitalflow.dataset.tfrecord import encode_block, encode_examples
from vitalflow.transform.case import CaseArrays


def case_examples(arrays: CaseArrays, subject_id: str, write_mask: bool, decisions=None) -> list[bytes]:
    """Serialized examples of every window of a case, in window order."""
    n = arrays.n_windows
    if n == 0:
        return []
    series, observed = arrays.windows()
    values = {  # per window: one row per window; else one value for every window of the case
        "timeseries": lambda: series.reshape(n, -1),
        "target": lambda: arrays.targets,
        "window_start_s": lambda: np.asarray(arrays.window_starts).reshape(n, 1),
        "mask": lambda: observed.reshape(n, -1),
        "labels": lambda: arrays.labels,
        "label_mask": lambda: arrays.label_mask,
        "event_onset_s": lambda: arrays.label_onset_s,
        "setpoints": lambda: arrays.setpoints,
        "setpoints_known": lambda: arrays.setpoints_known,
        "history": lambda: arrays.history.reshape(n, -1),
        "context": lambda: arrays.context,
        "static": lambda: arrays.static,
        "case_id": lambda: [arrays.case_id],
        "subject_id": lambda: [subject_id],
    }
    rows, same = {}, {}
    for f in written_features(write_mask, decisions):
        (rows if f.per_window else same)[f.name] = f.cast(values[f.name]())
    return encode_examples(rows, same)


def case_block(arrays: CaseArrays, subject_id: str, write_mask: bool, compression: str, decisions=None) -> bytes:
    """A case's examples as a block of a part file: framed, and compressed for ``"GZIP"``; ``decisions``:
    the spec's (`vitalflow.spec.model.Decisions`), whose labels and context the examples carry."""
    return encode_block(case_examples(arrays, subject_id, write_mask, decisions), compression)
