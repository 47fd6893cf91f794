"""Subject-level train/validation/test assignment: stable, deterministic, never a subject twice.

A subject's split is a function of its id and the seed alone: the subject's hash, read as a
number ``u`` in [0, 1), is compared with the cumulative fractions (train below 0.70, validation
below 0.85, test above, by default). So a 10-case smoke test, a 200-case pilot and the full run
put every patient in the same split, every host computes the same assignment without seeing the
others' cases, and adding cases never moves a patient. The price: the achieved fractions scatter
around the target (binomially; ±3.2 points for train at 200 subjects, one standard deviation),
and a small selection can leave a split empty. The card records the achieved fractions and warns
about empty splits.
"""

from __future__ import annotations

import hashlib
from typing import Mapping

from vitalflow.spec.model import SPLITS


def subject_unit(subject: str, seed: int) -> float:
    """The subject's position in [0, 1): the first 8 bytes of sha256("<seed>:<subject>") / 2**64.

    >>> subject_unit("42", 0) == int.from_bytes(hashlib.sha256(b"0:42").digest()[:8], "big") / 2**64
    True
    """
    return int.from_bytes(hashlib.sha256(f"{seed}:{subject}".encode()).digest()[:8], "big") / 2**64


def subject_split(subject: str, fractions: Mapping[str, float], seed: int) -> str:
    """The split of one subject: the first split whose cumulative fraction exceeds its position.

    >>> subject_split("s1", {"train": 1.0, "validation": 0.0, "test": 0.0}, 7)
    'train'
    """
    u, cumulative = subject_unit(subject, seed), 0.0
    for split in SPLITS:
        cumulative += fractions[split]
        if u < cumulative:
            return split
    return next(s for s in reversed(SPLITS) if fractions[s] > 0)  # rounding: the sum can be 1 - 1e-16


def assign_splits(subject_of_case: Mapping[int, str], fractions: Mapping[str, float], seed: int) -> dict[int, str]:
    """case id -> split of its subject.

    >>> a = assign_splits({1: "s1", 2: "s1", 3: "s2"}, {"train": .5, "validation": .25, "test": .25}, 0)
    >>> a[1] == a[2]
    True
    """
    split_of = {s: subject_split(s, fractions, seed) for s in set(subject_of_case.values())}
    return {case: split_of[s] for case, s in subject_of_case.items()}


def achieved_fractions(split_of_subject: Mapping[str, str]) -> dict[str, float]:
    """The share of subjects in each split.

    >>> achieved_fractions({"a": "train", "b": "train", "c": "test"})
    {'train': 0.666667, 'validation': 0.0, 'test': 0.333333}
    """
    n = len(split_of_subject)
    return {s: round(sum(v == s for v in split_of_subject.values()) / n, 6) if n else 0.0 for s in SPLITS}
