"""Fitting the value gates after the network (and the stack) on the validation split
(`vitalflow.model.value_gates`). The test split is never read."""

from __future__ import annotations

import numpy as np

from vitalflow.dataset.reference import Dataset
from vitalflow.model.card import ValueGates
from vitalflow.model.heads import Heads
from vitalflow.model.inputs import numpy_batches
from vitalflow.model.value_gates import fit_gates, value_pairs
from vitalflow.spec.model import Spec
from vitalflow.train.fit import Split


def fit_value_gates(dataset: Dataset, spec: Spec, heads: Heads, raw: np.ndarray, events: np.ndarray,
                    validation: Split) -> ValueGates:
    """``raw``: the network's output on the validation split, ``events``: the event probabilities the
    model reports there (the stack's, or the network's), both in the dataset's order."""
    batches = list(numpy_batches(dataset, "validation", ["setpoints", "setpoints_known"], batch_size=1024))
    setpoints = np.concatenate([b["setpoints"] for b in batches])
    known = np.concatenate([b["setpoints_known"] for b in batches]) > 0.5
    index, event = value_pairs(spec, heads)
    values = heads.indices("value")
    thresholds, mae = fit_gates(raw[:, values], setpoints[:, index], known[:, index], events[:, event],
                                validation.labels[:, values], validation.label_mask[:, values] > 0)
    names = heads.names_of("value")
    return ValueGates(thresholds=dict(zip(names, thresholds)),
                      mae={n: {k: None if v is None else round(v, 6) for k, v in m.items()} for n, m in zip(names, mae)})
