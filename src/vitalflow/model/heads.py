"""The decision model's output: one vector of the dataset's ``labels`` layout, and the one place
that says which slice of it is which head.

The network's ``labels`` output has one column per entry of ``spec.decisions.labels`` (example
feature ``labels``), in that order:

- ``event/<group>/<H>``: a logit; P(a set-point of the group changes within H s) = sigmoid(logit / T)
- ``direction/<setpoint>/<H>``: a logit; P(the first change goes up | a change) = sigmoid(logit / T)
- ``value/<setpoint>/<H>``: tanh, the set-point at t + H normalized to [-1, 1] with its range

(``T``: the label's temperature, fitted on the validation split after training; 1 before.) The
model card records the heads (`vitalflow.model.card.Head`) in this order, so a model can be read
without the spec's decision code.

>>> from vitalflow.spec.model import load_spec
>>> heads = Heads.from_spec(load_spec("master_poc"))
>>> len(heads), heads.names[0], heads.names[15], heads.names[45]
(75, 'event/hypnotic/60', 'direction/PPF_CT/60', 'value/PPF_CT/60')
>>> heads.indices("event")[:3].tolist(), heads.value_range("value/FIO2_SET/300")
([0, 1, 2], (21.0, 100.0))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

from vitalflow.spec.model import TASKS, Spec

#: The integer code of each task in `Heads.kinds` (what the loss and the output layer read).
KIND = {task: i for i, task in enumerate(TASKS)}


@dataclass(frozen=True)
class Heads:
    names: tuple[str, ...]  # the label names, in output order
    tasks: tuple[str, ...]  # "event", "direction" or "value" per label
    units: tuple[str | None, ...]  # the set-point's unit (direction, value); None for events
    ranges: tuple[tuple[float, float] | None, ...]  # the set-point's normalization range (value)

    @classmethod
    def from_spec(cls, spec: Spec) -> Heads:
        if spec.decisions is None:
            raise ValueError(f"spec {spec.name} v{spec.version} defines no decision targets")
        setpoints = {s.name: s for s in spec.decisions.setpoints}
        names, tasks, units, ranges = [], [], [], []
        for label in spec.decisions.labels:
            sp = setpoints.get(label.of) if label.task != "event" else None
            names.append(str(label))
            tasks.append(label.task)
            units.append(sp.unit if sp else None)
            ranges.append(tuple(map(float, sp.range)) if sp and label.task == "value" else None)
        return cls(tuple(names), tuple(tasks), tuple(units), tuple(ranges))

    @classmethod
    def from_card(cls, heads: Iterable) -> Heads:
        """From a model card's ``heads`` (`vitalflow.model.card.Head` records)."""
        heads = list(heads)
        return cls(tuple(h.name for h in heads), tuple(h.task for h in heads), tuple(h.unit for h in heads),
                   tuple(tuple(map(float, h.range)) if h.range is not None else None for h in heads))

    def __len__(self) -> int:
        return len(self.names)

    @property
    def kinds(self) -> list[int]:
        """Per label, its task's code (`KIND`)."""
        return [KIND[t] for t in self.tasks]

    def indices(self, task: str) -> np.ndarray:
        """The output columns of ``task``'s labels, in order."""
        return np.array([i for i, t in enumerate(self.tasks) if t == task], dtype=np.int64)

    def names_of(self, task: str) -> tuple[str, ...]:
        return tuple(self.names[i] for i in self.indices(task))

    @property
    def calibrated(self) -> np.ndarray:
        """The columns that are logits (events and directions): what temperatures apply to."""
        return np.array([i for i, t in enumerate(self.tasks) if t != "value"], dtype=np.int64)

    def value_range(self, name: str) -> tuple[float, float]:
        r = self.ranges[self.names.index(name)]
        if r is None:
            raise ValueError(f"{name} is not a value label")
        return r

    def denormalize_values(self, normalized: np.ndarray) -> np.ndarray:
        """The value columns [N, values] (normalized, in `indices("value")` order) in clinical units."""
        idx = self.indices("value")
        lo = np.array([self.ranges[i][0] for i in idx], dtype=np.float64)
        hi = np.array([self.ranges[i][1] for i in idx], dtype=np.float64)
        return lo + (np.asarray(normalized, np.float64) + 1.0) / 2.0 * (hi - lo)
