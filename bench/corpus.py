"""The benchmarks' synthetic corpora, built once and cached beside the scripts."""

from __future__ import annotations

import shutil
from pathlib import Path

from vitalflow.synth import synth_corpus


def cached_corpus(path: Path, cases: int, seed: int, hours: float | None, waves: bool) -> list[Path]:
    """The ``.vital`` files of ``synth_corpus(path, cases, seed, hours, waves)``, made only once."""
    marker = path / f".made-{cases}-{seed}-{hours}-{waves}"
    if not marker.exists():
        shutil.rmtree(path, ignore_errors=True)
        synth_corpus(path, cases, seed=seed, hours=hours, waves=waves)
        marker.touch()
    return sorted(path.glob("*.vital"))
