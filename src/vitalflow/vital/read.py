"""Read the numeric tracks of a ``.vital`` recording (both layouts).

`read_vital` returns what the ``vitaldb`` library's ``VitalFile`` reads (its start and end times,
layout flag and the records of each requested numeric track) with the fast reader in
`vitalflow.vital.fastread`, which inflates the gzip stream once and decodes only the records of
the wanted tracks (``vitaldb`` is the test oracle, not a runtime dependency of this module), and
a `ReadReport` of how much of the file was read and why reading stopped where it did.

It reads what vitaldb reads: the content of the sound gzip members (zero padding, stray bytes or
a damaged member after them, or a stream cut short are noted in ``report.gzip_note``), up to
where vitaldb's packet loop stops (``report.stop_reason``). It raises :class:`VitalReadError`, a
one-line message naming the file, for a file that is empty, not gzip, whose first gzip member is
damaged, whose content exceeds ``max_inflated_bytes`` (default
`~vitalflow.vital.fastread.MAX_INFLATED_BYTES`, 2 GB: a decompression bomb or an unusually large
recording) or is not a Vital file, whose header vitaldb fails on, whose start time is not a
plausible recording time (`~vitalflow.vital.fastread.EARLIEST_START` 1990-01-01 to
`~vitalflow.vital.fastread.LATEST_START` 2100-01-01 UTC) or whose end gives no finite duration.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from vitalflow.vital.fastread import (
    EARLIEST_START,
    INFLATER,
    LATEST_START,
    MAX_INFLATED_BYTES,
    ReadReport,
    check_times,
    inflate,
    read_numeric_tracks,
)

__all__ = [
    "Recording", "ReadReport", "read_vital", "inflate", "INFLATER", "MAX_INFLATED_BYTES", "EARLIEST_START",
    "LATEST_START",
]


@dataclass(frozen=True)
class Recording:
    path: str
    start: float  # unix time of the recording start
    duration_s: float
    packed: bool  # layout: packed (vitaldb writer) or time-interleaved (Vital Recorder)
    tracks: dict[str, tuple[np.ndarray, np.ndarray]]  # "Device/TRACK" -> (seconds from start, values)
    report: ReadReport  # how much of the file was read, and why reading stopped where it did


def read_vital(path: str | os.PathLike, track_names: Iterable[str], max_inflated_bytes: int | None = None) -> Recording:
    """Read the numeric tracks named ``track_names`` (absent ones are simply missing; the report's
    ``track_names`` lists the tracks the file has)."""
    label = str(path)
    got = read_numeric_tracks(path, track_names, label=label, max_inflated_bytes=max_inflated_bytes)
    duration_s = check_times(got.start, got.end, label)
    return Recording(path=label, start=got.start, duration_s=duration_s, packed=got.packed, tracks=got.tracks,
                     report=got.report)
