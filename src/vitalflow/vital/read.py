"""Read the numeric tracks of a ``.vital`` recording (both layouts).

`read_vital` returns what the ``vitaldb`` library's ``VitalFile`` reads (its start and end times,
layout flag and the records of each requested numeric track) with the fast reader in
`vitalflow.vital.fastread`, which inflates the gzip stream once and decodes only the records of
the wanted tracks (``vitaldb`` is the test oracle, not a runtime dependency of this module). A
file that is empty, not gzip, truncated, corrupt or not a Vital file, or whose content vitaldb
fails on, raises :class:`VitalReadError` naming the file and the reason.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from vitalflow.vital.fastread import INFLATER, inflate, read_numeric_tracks

__all__ = ["Recording", "read_vital", "inflate", "INFLATER"]


@dataclass(frozen=True)
class Recording:
    path: str
    start: float  # unix time of the recording start
    duration_s: float
    packed: bool  # layout: packed (vitaldb writer) or time-interleaved (Vital Recorder)
    tracks: dict[str, tuple[np.ndarray, np.ndarray]]  # "Device/TRACK" -> (seconds from start, values)


def read_vital(path: str | os.PathLike, track_names: Iterable[str]) -> Recording:
    """Read the numeric tracks named ``track_names`` (absent ones are simply missing)."""
    start, duration_s, packed, tracks = read_numeric_tracks(path, track_names, label=str(path))
    return Recording(path=str(path), start=start, duration_s=duration_s, packed=packed, tracks=tracks)
