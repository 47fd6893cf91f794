"""Read the numeric tracks of a ``.vital`` recording (both layouts) with the ``vitaldb`` library.

``vitaldb`` swallows most read errors (a truncated file silently yields part of the data), so the
gzip stream is checked first: a file that is empty, not gzip, truncated, corrupt or not a Vital
file raises :class:`VitalReadError` naming the file and the reason.
"""

from __future__ import annotations

import contextlib
import io
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from vitalflow.errors import VitalReadError

GZIP_MAGIC = b"\x1f\x8b"
VITAL_SIGNATURE = b"VITA"
NUMERIC = 2  # vitaldb track type of numeric tracks
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Recording:
    path: str
    start: float  # unix time of the recording start
    duration_s: float
    packed: bool  # layout: packed (vitaldb writer) or time-interleaved (Vital Recorder)
    tracks: dict[str, tuple[np.ndarray, np.ndarray]]  # "Device/TRACK" -> (seconds from start, values)


def check_gzip_stream(path: str | os.PathLike) -> None:
    """Inflate the whole file once, discarding the output, to prove it is a complete Vital file."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(2)
        if not head:
            raise VitalReadError(f"{path}: empty file")
        if head != GZIP_MAGIC:
            raise VitalReadError(f"{path}: not a .vital file (no gzip header)")
        f.seek(0)
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        first = b""
        try:
            while chunk := f.read(_CHUNK):
                out = inflater.decompress(chunk)
                if len(first) < 4:
                    first += out[:4]
                while inflater.eof and inflater.unused_data:  # concatenated gzip members
                    rest = inflater.unused_data
                    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
                    inflater.decompress(rest)
        except zlib.error as exc:
            raise VitalReadError(f"{path}: corrupt gzip data ({exc})") from exc
    if not inflater.eof:
        raise VitalReadError(f"{path}: truncated gzip stream (the file ends before the gzip end marker)")
    if first[:4] != VITAL_SIGNATURE:
        raise VitalReadError(f"{path}: not a .vital file (no VITA signature after decompression)")


def read_vital(path: str | os.PathLike, track_names: Iterable[str]) -> Recording:
    """Read the numeric tracks named ``track_names`` (absent ones are simply missing)."""
    import vitaldb  # imported lazily: it pulls in pandas and wfdb

    check_gzip_stream(path)
    wanted = list(dict.fromkeys(track_names))
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            vf = vitaldb.VitalFile(str(path), track_names=wanted)
    except Exception as exc:  # the library raises bare exceptions on malformed packets
        raise VitalReadError(f"{path}: malformed .vital content ({type(exc).__name__}: {exc})") from exc
    message = printed.getvalue().strip()
    if message:
        raise VitalReadError(f"{path}: malformed .vital content ({message})")

    start = float(vf.dtstart)
    tracks = {}
    for name in wanted:
        trk = vf.trks.get(name)
        if trk is None or trk.type != NUMERIC or not trk.recs:
            continue
        times = np.fromiter((r["dt"] for r in trk.recs), dtype=np.float64, count=len(trk.recs)) - start
        values = np.fromiter((r["val"] for r in trk.recs), dtype=np.float64, count=len(trk.recs))
        tracks[name] = (times, values)
    return Recording(
        path=str(path),
        start=start,
        duration_s=max(0.0, float(vf.dtend) - start),
        packed=bool(vf.packed),
        tracks=tracks,
    )
