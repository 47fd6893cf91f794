"""Subject-level train/validation/test assignment: exact, deterministic, never a subject twice."""

from __future__ import annotations

import hashlib
from typing import Mapping

SPLITS = ("train", "validation", "test")


def split_sizes(n_subjects: int, fractions: Mapping[str, float]) -> dict[str, int]:
    """Subjects per split by largest remainder, so the sizes add up to ``n_subjects`` exactly.

    >>> split_sizes(10, {"train": 0.7, "validation": 0.15, "test": 0.15})
    {'train': 7, 'validation': 2, 'test': 1}
    """
    quotas = {s: n_subjects * fractions[s] for s in SPLITS}
    sizes = {s: int(quotas[s] + 1e-9) for s in SPLITS}
    by_remainder = sorted(SPLITS, key=lambda s: (-(quotas[s] - sizes[s]), SPLITS.index(s)))
    for s in by_remainder[: n_subjects - sum(sizes.values())]:
        sizes[s] += 1
    return sizes


def assign_splits(subject_of_case: Mapping[int, str], fractions: Mapping[str, float], seed: int) -> dict[int, str]:
    """case id -> split. Subjects are ordered by a seeded hash, then cut by :func:`split_sizes`.

    The result depends only on the set of (case, subject) pairs, the fractions and the seed, so
    every host computes the same assignment.

    >>> a = assign_splits({1: "s1", 2: "s1", 3: "s2", 4: "s3"}, {"train": .5, "validation": .25, "test": .25}, 0)
    >>> a[1] == a[2], sorted(set(a.values()))
    (True, ['test', 'train', 'validation'])
    """
    subjects = sorted(set(subject_of_case.values()))
    order = sorted(subjects, key=lambda s: hashlib.sha256(f"{seed}:{s}".encode()).digest())
    sizes = split_sizes(len(order), fractions)
    split_of_subject: dict[str, str] = {}
    i = 0
    for split in SPLITS:
        for subject in order[i : i + sizes[split]]:
            split_of_subject[subject] = split
        i += sizes[split]
    return {case: split_of_subject[subject] for case, subject in subject_of_case.items()}
