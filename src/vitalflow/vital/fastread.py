"""Read the numeric tracks of a ``.vital`` recording fast, with the results of the `vitaldb` library.

`read_numeric_tracks` returns exactly what ``vitaldb.VitalFile(path, track_names=names)`` gives
(``dtstart``, ``dtend``, ``packed`` and the ``recs`` of each numeric track named in ``names``)
but inflates the gzip stream only once and never decodes a wave sample, and says how much of the
file it read (`ReadReport`):

1. **Inflate** the file in one call with the fastest inflater installed: ``isal``
   (`isal.isal_zlib`), else ``zlib-ng`` (`zlib_ng.zlib_ng`), else the standard library
   (bench/read.py: isal inflates these files ~1.8x, zlib-ng ~1.55x as fast as the stdlib). The
   call is bounded (``decompress(data, max_length)``): content beyond ``max_inflated_bytes``
   (default `MAX_INFLATED_BYTES`, 2 GB) is never produced, the read fails as soon as the output
   would exceed it (a decompression bomb costs the limit, not its size); a file larger than the
   limit (plus 1 % and 1 MB) is refused before it is read. The bounded call costs nothing
   measurable against an unbounded one. Where the gzip data is not clean, what vitaldb reads
   (through ``gzip.GzipFile``) is read, and ``gzip_note`` says what was wrong:

   - zero padding after the gzip data, stray bytes after it, a damaged gzip member after the
     first (bad header, bad deflate data, CRC or length mismatch), or a stream cut short: the
     content of the sound members is read (of a stream cut short, what inflates);
   - a damaged member contributes nothing (not even the part that inflated before the damage
     showed); so a damaged *first* member fails the read, as do an empty file, a file that is
     not gzip and content that does not start with ``VITA``.

   Anything unusual is inflated again with the stdlib ``zlib``, whose output and reasons are
   the ones vitaldb sees (isal holds back the last byte of a stream cut short).
2. **Header and track definitions**: the packets before the first record are parsed one by one
   in Python, exactly as ``VitalFile.load_vital`` does.
3. **The packet chain**: from the first record on, packet starts are followed (``next = pos + 5
   + len``) without looking at payloads. Packed files (each track's records together, one record
   per wave track) are walked in Python by runs of equal-length packets, each run checked with
   one strided numpy view. Interleaved files (Vital Recorder: the records of all tracks in time
   order, ~170 bytes a packet) are walked by a few thousand numpy "walkers" in lockstep, one
   from each *anchor*: a likely record start found every 16 KiB by a regex for bytes 3-6 of a
   record. A walker stops where it lands on the next anchor, and the chain is put together from
   the walker at the first record along the landings; a false anchor is never landed on, so it
   costs a little time, never correctness. The cost is a few random reads per packet.
4. **vitaldb's reading rules on the chain, with numpy**: the skips (``f.seek``) over records of
   unwanted tracks by the trkinfo's ``reclen``, the early stop of packed files after the last
   wanted track's block, short or truncated records, records of unknown track ids, the
   ``dtstart``/``dtend`` updates by the records of matched tracks (wave records extend ``dtend``
   by ``nsamp / srate``), the reset of the ``EVENT`` track by a cmd packet, and finally one
   gather per value format of the records of the wanted numeric tracks.

Anything unusual after the first record (a devinfo, trkinfo or raw-data packet, a packet that
would make vitaldb raise, a skip that lands off the chain) sends the whole file to the exact
packet-by-packet port of ``load_vital`` (`_parse_sequential`), which is also what reads the
header part. So the result is vitaldb's in every case, including partial results of files cut
short, with the deliberate differences below.

Where reading stopped (`ReadReport`): ``read_bytes`` is the offset in the content where the
packet loop stopped and ``stop_reason`` says why, when it stopped before the end of the content
(vitaldb stops silently, or prints an error and keeps what it read):

- ``"packet of 0 bytes at byte P"``; ``"packet at byte P claims N bytes (over 1 MB)"`` (files
  not flagged packed);
- a packet or a skip running past the end: ``"the last packet is cut short (byte P: R of N
  bytes)"``, ``"packet at byte P claims N bytes but only R remain"`` (N over 1 MB: a bad
  length, e.g. a trkinfo claiming 2 GB in a packed file), ``"a skip over a track's block at byte
  P claims N bytes but only R remain"``; vitaldb reads such a packet as far as it goes, and
  ``read_bytes`` is its start;
- ``"K stray bytes at the end"`` ("1 stray byte", 1-4 bytes: too few for a packet header, vitaldb
  raises);
- ``"vitaldb's reading error: ..."``: vitaldb's packet loop raised (it prints ``Error in
  reading file`` and keeps what it read so far, as here).

The planned early stop of packed files after the last wanted track's block is not a stop
reason. ``track_names`` lists every track a trkinfo packet defines (read before the stop), as
vitaldb names them, wanted or not.

Semantics kept from vitaldb (``load_vital``, vitaldb 1.7):

- Track names ``Device/NAME`` (device name from the devinfo packet, ``name or devtype``), or
  ``NAME`` when the track's device id is 0 or has no devinfo. Tracks are *matched* as vitaldb
  does (exact name, name ending with a requested name, or ``Device/*``; every track when no name
  is requested): matched tracks' records move ``dtstart``/``dtend`` and decide the early stop of
  packed files. Only exact names are returned (``VitalFile.trks[name]``), and only numeric ones
  with at least one record, values as stored (vitaldb applies no gain/offset to numeric tracks).
- ``dtstart``/``dtend`` from the header when it is >= 26 bytes long, then ``dtstart = dt if
  dtstart == 0 or 0 < dt < dtstart`` and ``dtend = max(dtend, dt)`` per matched record. Record
  times are taken as stored, NaN, infinite or absurd ones included (the transform drops them).
- In files not flagged packed, reading stops at the first packet longer than 1 MB; it stops too
  at a packet of length 0; a truncated last packet is read as far as it goes; unknown packet
  types are skipped; a record shorter than its track's value is skipped.
- Where the gzip data does not end cleanly (stray bytes or a damaged member after it, or the
  stream cut short), ``GzipFile`` raises on any read past the content: a header or packet that
  runs past its end is not read at all (vitaldb's ``f.read`` raises, and the loop stops), and
  the header cut short fails the read.
- Errors vitaldb raises out of ``VitalFile`` (a header too short for its fields) raise
  :class:`VitalReadError` with the same text (where the header runs past a hard end:
  ``"the .vital header is cut short (<gzip note>)"``).

Times: `check_times` (applied by `vitalflow.vital.read.read_vital`, not here: vitaldb has no such
rule) refuses a start that is not a number from `EARLIEST_START` (1990-01-01 UTC, inclusive) to
`LATEST_START` (2100-01-01 UTC, exclusive), and an end that gives no finite duration, each with a
one-line VitalReadError. The start checked is vitaldb's ``dtstart`` after the records' updates:
a header start that is NaN, negative, near zero or before 1990 stays (the records cannot move
it), one that is too late (after 2100, 1e300, inf) is replaced by the earliest positive record
time of a matched track and fails only without such a record (or if that is implausible too).
Record times are not checked (NaN, -inf, 1e300 records read), except through these two: a
matched record at +inf makes vitaldb's ``dtend`` infinite, so the duration is not finite. No time
arithmetic here raises (numpy's warnings are silenced; Python's float arithmetic gives inf/nan).

Deliberate differences:

- Value formats 7 and 8 (int32/uint32) are read as 4-byte integers. vitaldb's ``FMT_TYPE_LEN``
  uses the native ``'l'``/``'L'`` codes, 8 bytes on 64-bit Linux: it raises when a record ends
  after the 4 value bytes (every such record written by a Vital writer) and otherwise mixes the
  next 4 bytes into the value. Where vitaldb reads the right value (the 4 bytes after the value
  are its sign extension) the results agree. The same holds for wave records of these formats
  (vitaldb fails to map the samples; here only their count matters, for ``dtend``).
- ``track_names`` given as one string is one name (vitaldb would split it at commas).
- A damaged gzip member is not read at all: vitaldb keeps what inflated before the damage
  showed (deflate output before a detected error, or a whole member whose CRC does not match,
  may already be wrong). So a damaged first member fails here; a damaged later one ends the
  content where it starts.
- Reserved gzip header flags fail the member (RFC 1952 asks for an error, zlib gives one;
  ``gzip.GzipFile`` ignores them).
- Content beyond ``max_inflated_bytes`` fails the read (vitaldb inflates anything).
"""

from __future__ import annotations

import math
import os
import re
import struct
import zlib
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from vitalflow.errors import VitalReadError

__all__ = [
    "read_numeric_tracks", "NumericTracks", "ReadReport", "inflate", "check_times", "INFLATER",
    "MAX_INFLATED_BYTES", "EARLIEST_START", "LATEST_START",
]

GZIP_MAGIC = b"\x1f\x8b"
VITAL_SIGNATURE = b"VITA"
_WBITS_GZIP = 16 + zlib.MAX_WBITS
#: default limit on the decompressed content of one file (``max_inflated_bytes=None``): 2 GB,
#: room for ~24 h with several 500 Hz waves; the reader holds the content in memory
MAX_INFLATED_BYTES = 2_000_000_000
#: plausible recording start times, unix seconds (UTC): 1990-01-01 (inclusive) to 2100-01-01
EARLIEST_START = 631_152_000.0
LATEST_START = 4_102_444_800.0


def _load_inflaters() -> list[tuple[str, object]]:
    """Available inflaters, fastest first (measured in bench/read.py: isal, zlib-ng, stdlib)."""
    found: list[tuple[str, object]] = []
    try:
        from isal import isal_zlib

        found.append(("isal", isal_zlib))
    except ImportError:  # pragma: no cover - depends on the environment
        pass
    try:
        from zlib_ng import zlib_ng

        found.append(("zlib-ng", zlib_ng))
    except ImportError:  # pragma: no cover - depends on the environment
        pass
    found.append(("zlib", zlib))
    return found


_INFLATERS = _load_inflaters()
#: name of the inflater `inflate` uses ("isal", "zlib-ng" or "zlib")
INFLATER: str = _INFLATERS[0][0]


class _GzipProblem(Exception):
    """The first gzip member is damaged: there is no content to read."""


class _TooBig(Exception):
    """The content would exceed the limit."""


@dataclass(frozen=True)
class _Inflated:
    data: bytes
    note: str | None  # gzip_note
    hard_end: bool  # gzip.GzipFile raises on a read past the content (see the module doc)


def _inflate_with(mod, raw, limit: int = MAX_INFLATED_BYTES) -> _Inflated:
    """The content of the sound gzip members of ``raw``, at most ``limit`` bytes (else _TooBig);
    _GzipProblem(reason) if the first member is damaged."""
    pieces: list[bytes] = []
    total = 0
    member, at, src = 1, 0, raw

    def content() -> bytes:
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    while True:
        try:
            if mod is not zlib and len(src) > 3 and src[3] & 0xE0:
                raise _GzipProblem("reserved header flags")  # zlib refuses these, isal does not
            inflater = mod.decompressobj(_WBITS_GZIP)
            out = inflater.decompress(src, limit - total + 1)
        except (mod.error, _GzipProblem) as exc:
            why = exc.args[0] if isinstance(exc, _GzipProblem) else str(exc)
            if member == 1:
                raise _GzipProblem(f"corrupt gzip data ({why})") from None
            note = f"gzip member {member} at byte {at} is damaged ({why}); it and what follows are ignored"
            return _Inflated(content(), note, True)
        total += len(out)
        if total > limit:
            raise _TooBig
        pieces.append(out)
        if not inflater.eof:
            return _Inflated(content(), "the gzip stream is cut short (file truncated)", True)
        rest = inflater.unused_data
        if not rest:
            return _Inflated(content(), None, False)
        body = rest.lstrip(b"\x00")
        if not body:
            return _Inflated(content(), f"{_bytes(len(rest))} of zero padding after the gzip data", False)
        if body[:2] != GZIP_MAGIC:
            return _Inflated(content(), f"{_bytes(len(rest), 'stray ')} after the gzip data ignored", True)
        member, at, src = member + 1, len(raw) - len(body), body  # a further member


def _inflated(path_or_bytes, label: str, limit: int | None) -> tuple[_Inflated, int]:
    """The content of a ``.vital`` file (`inflate`), and the file's size."""
    limit = _check_limit(limit)
    shown = f"{limit / 1e6:g} MB" if limit >= 1_000_000 else _bytes(limit)
    too_big = f"{label}: inflates to more than {shown} (the limit max_inflated_bytes={limit}); " \
              "a decompression bomb or an unusually large recording"
    most = limit + limit // 100 + (1 << 20)  # no sound file within the limit is larger
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        raw = bytes(path_or_bytes)
        if len(raw) > most:
            raise VitalReadError(f"{label}: the file ({len(raw)} bytes) is larger than its content may be "
                                 f"(max_inflated_bytes={limit})")
    else:
        try:
            with open(path_or_bytes, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size > most:
                    raise VitalReadError(f"{label}: the file ({size} bytes) is larger than its content may be "
                                         f"(max_inflated_bytes={limit})")
                raw = f.read(min(size, most) + 1)  # read(n) allocates n bytes up front
        except OSError as exc:
            raise VitalReadError(f"{label}: cannot read the file ({exc.strerror or exc})") from None
        if len(raw) > most:  # grew while being read
            raise VitalReadError(f"{label}: the file is larger than its content may be (max_inflated_bytes={limit})")
    if not raw:
        raise VitalReadError(f"{label}: empty file")
    if raw[:2] != GZIP_MAGIC:
        raise VitalReadError(f"{label}: not a .vital file (no gzip header)")
    got = None
    try:
        got = _inflate_with(_INFLATERS[0][1], raw, limit)
    except _TooBig:
        raise VitalReadError(too_big) from None
    except _GzipProblem as problem:
        if _INFLATERS[0][1] is zlib:
            raise VitalReadError(f"{label}: {problem}") from None
    if got is None or got.hard_end and _INFLATERS[0][1] is not zlib:
        got = None  # let the stdlib decide: its output and reasons are the ones vitaldb sees
        try:
            got = _inflate_with(zlib, raw, limit)
        except _TooBig:
            raise VitalReadError(too_big) from None
        except _GzipProblem as problem:
            raise VitalReadError(f"{label}: {problem}") from None
    data = got.data
    if data[:4] != VITAL_SIGNATURE:
        if got.note and VITAL_SIGNATURE.startswith(data):
            raise VitalReadError(f"{label}: no .vital content before the gzip data ends ({got.note})")
        raise VitalReadError(f"{label}: not a .vital file (no VITA signature after decompression)")
    return got, len(raw)


def _bytes(n: int, what: str = "") -> str:
    return f"{n} {what}byte" + ("" if n == 1 else "s")


def _check_limit(limit) -> int:
    if limit is None:
        return MAX_INFLATED_BYTES
    if isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
        raise ValueError(f"max_inflated_bytes must be a positive integer or None, got {limit!r}")
    return limit


def inflate(path_or_bytes, label: str | None = None, max_inflated_bytes: int | None = None) -> bytes:
    """The decompressed content of a ``.vital`` file (a path, or the file's bytes): the content
    of its sound gzip members (see the module doc).

    Raises VitalReadError ``"<label>: <reason>"`` for an empty file, a file that is not gzip, a
    damaged first gzip member, content beyond ``max_inflated_bytes`` (default
    `MAX_INFLATED_BYTES`), or content that does not start with ``VITA``.
    """
    return _inflated(path_or_bytes, label or _label(path_or_bytes), max_inflated_bytes)[0].data


def _label(path_or_bytes) -> str:
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        return "<bytes>"
    return os.fspath(path_or_bytes)


# --------------------------------------------------------------------------- public entry


@dataclass(frozen=True)
class ReadReport:
    """How much of a ``.vital`` file was read, and why reading stopped where it did."""

    file_bytes: int  # size of the .vital file (compressed)
    inflated_bytes: int  # bytes of decompressed content that were available to the packet reader
    read_bytes: int  # offset in the decompressed content where the packet loop stopped
    #: None: read to the end of the content (or vitaldb's planned early stop of packed files after
    #: the last wanted track's block); else one line saying why reading stopped early
    stop_reason: str | None
    #: None when the gzip data was sound and nothing followed it; else one line saying what was wrong
    gzip_note: str | None
    #: every track the file defines (trkinfo packets), named as vitaldb names them, in file order
    track_names: tuple[str, ...]

    @property
    def read_fraction(self) -> float:
        """``read_bytes / inflated_bytes``; 1.0 when reading did not stop early or there is no content."""
        if self.stop_reason is None or self.inflated_bytes == 0:
            return 1.0
        return self.read_bytes / self.inflated_bytes


@dataclass(frozen=True)
class NumericTracks:
    """What `read_numeric_tracks` read: vitaldb's ``dtstart``, ``dtend`` and ``packed``, the records
    of the requested numeric tracks, and the report."""

    start: float  # vitaldb's dtstart
    end: float  # vitaldb's dtend
    packed: bool
    tracks: dict[str, tuple[np.ndarray, np.ndarray]]  # "Device/NAME" -> (seconds from start, values)
    report: ReadReport

    @property
    def duration_s(self) -> float:
        """``max(0, end - start)`` (0 when that is NaN)."""
        return max(0.0, self.end - self.start)


def read_numeric_tracks(
    path_or_bytes, track_names: Iterable[str], label: str | None = None, max_inflated_bytes: int | None = None
) -> NumericTracks:
    """The records of the numeric tracks named ``track_names``, as vitaldb reads them.

    Tracks that are absent, not numeric or without records are left out; records are in file
    order, times in seconds from ``start``, values as float64 (as stored: no gain/offset). Raises
    VitalReadError (naming ``label``, by default the path) for a file whose gzip data or header
    yields nothing to read (see `inflate`) or that vitaldb raises on; stops where vitaldb stops,
    saying so in the report. No check on the times here (see `check_times`).
    """
    if isinstance(track_names, str):
        track_names = [track_names]
    names = list(dict.fromkeys(track_names))
    label = label or _label(path_or_bytes)
    got, file_bytes = _inflated(path_or_bytes, label, max_inflated_bytes)
    data = got.data
    try:
        with np.errstate(all="ignore"):  # NaN, infinite, absurd times: as vitaldb keeps them
            st = _parse(data, names, got.hard_end)
            start = float(st.dtstart)
            tracks: dict[str, tuple[np.ndarray, np.ndarray]] = {}
            for name in names:
                trk = st.trks.get(name)
                if trk is None or trk.type != _NUM:
                    continue
                dts, vals = trk.arrays()
                if dts.size:
                    tracks[name] = (dts - start, vals)
    except _HeaderCut:
        raise VitalReadError(f"{label}: the .vital header is cut short ({got.note})") from None
    except _HeaderError as exc:
        raise VitalReadError(f"{label}: malformed .vital content ({exc})") from None
    report = ReadReport(
        file_bytes=file_bytes, inflated_bytes=len(data), read_bytes=st.stop_pos, stop_reason=st.stop_reason,
        gzip_note=got.note, track_names=tuple(dict.fromkeys(st.defined)),
    )
    return NumericTracks(start=start, end=float(st.dtend), packed=bool(st.packed), tracks=tracks, report=report)


def check_times(start: float, end: float, label: str) -> float:
    """The duration ``max(0, end - start)``; VitalReadError unless ``start`` is a plausible recording
    time (`EARLIEST_START` <= start < `LATEST_START`) and ``end - start`` is finite."""
    if not EARLIEST_START <= start < LATEST_START:  # False for NaN too
        raise VitalReadError(f"{label}: start time {start!r} is not a plausible recording time "
                             "(unix seconds from 1990-01-01 to 2100-01-01 UTC)")
    span = end - start
    if not math.isfinite(span):
        raise VitalReadError(f"{label}: end time {end!r} gives no finite duration from the start {start!r}")
    return max(0.0, span)


# --------------------------------------------------------------------------- state and errors

_WAV, _NUM, _STR = 1, 2, 5
#: value format -> (struct code, byte length). vitaldb uses native 'l'/'L' (8 bytes) for 7/8.
_FMT_LEN = {
    1: ("<f", 4), 2: ("<d", 8), 3: ("<b", 1), 4: ("<B", 1), 5: ("<h", 2), 6: ("<H", 2), 7: ("<i", 4), 8: ("<I", 4),
}
_FMT_NP = {f: np.dtype(code) for f, (code, _) in _FMT_LEN.items()}
_MAX_PACKET = 1_000_000  # vitaldb stops at a longer packet in files not flagged packed

_unpack_b = struct.Struct("<B").unpack_from
_unpack_w = struct.Struct("<H").unpack_from
_unpack_s = struct.Struct("<h").unpack_from
_unpack_f = struct.Struct("<f").unpack_from
_unpack_d = struct.Struct("<d").unpack_from
_unpack_dw = struct.Struct("<L").unpack_from


class _HeaderError(Exception):
    """vitaldb raises out of VitalFile (text: ``<type>: <message>``)."""


class _HeaderCut(_HeaderError):
    """The header runs past the content where gzip.GzipFile raises on reading past it."""


class _Fallback(Exception):
    """The fast path met something it leaves to the sequential parser."""


@dataclass
class _Track:
    type: int
    fmt: int
    srate: float
    dts: list = field(default_factory=list)  # sequential parser: record times
    vals: list = field(default_factory=list)  # sequential parser: values
    fast: tuple | None = None  # fast path: (times, values) arrays

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        if self.fast is not None:
            return self.fast
        n = len(self.dts)
        return (
            np.fromiter(self.dts, dtype=np.float64, count=n),
            np.fromiter(self.vals, dtype=np.float64, count=n),
        )


@dataclass
class _State:
    dtstart: float = 0
    dtend: float = 0
    packed: bool = False
    did_dnames: dict = field(default_factory=dict)
    tid_dtnames: dict = field(default_factory=dict)
    tid_reclens: dict = field(default_factory=dict)
    trk_order_tids: list = field(default_factory=list)
    trks: dict = field(default_factory=dict)
    defined: list = field(default_factory=list)  # the name of every track defined, in file order
    stop_pos: int = 0  # where the packet loop stopped
    stop_reason: str | None = None


def _matches(dtname: str, dname: str, names: list[str], name_set: set[str]) -> bool:
    if not names:
        return True
    if dtname in name_set:
        return True
    for sel in names:
        if dtname.endswith(sel) or (dname + "/*" == sel):
            return True
    return False


def _str_at(buf, pos):
    strlen = _unpack_dw(buf, pos)[0]
    pos += 4
    val = bytes(buf[pos : pos + strlen]).decode("utf-8", "ignore")
    return val, pos + strlen


# --------------------------------------------------------------------------- parsing


def _parse(data: bytes, names: list[str], hard_end: bool = False) -> _State:
    """vitaldb's reading of ``data`` (``hard_end``: reads past its end raise, see `_Inflated`)."""
    st = _State()
    pos = _parse_header(data, st, hard_end)
    if pos is None:
        st.stop_pos = len(data)
        return st
    first_rec = _parse_sequential(data, pos, st, names, True, hard_end)
    if first_rec is None:
        return st
    try:
        _parse_fast(data, first_rec, st, names, hard_end)
    except _Fallback:
        st = _State()
        pos = _parse_header(data, st, hard_end)
        _parse_sequential(data, pos, st, names, False, hard_end)
    return st


def _parse_header(data: bytes, st: _State, hard_end: bool = False) -> int | None:
    """Position of the first packet, or None where vitaldb returns early with nothing read."""
    n = len(data)
    pos = min(8, n)  # b"VITA" (checked) and the version: f.read(4) takes what is there
    if hard_end and n < 10:
        raise _HeaderCut
    buf = data[pos : pos + 2]
    if buf == b"":
        return None
    try:
        headerlen = _unpack_w(buf, 0)[0]
        pos += 2
        if hard_end and pos + headerlen > n:
            raise _HeaderCut
        header = data[pos : pos + headerlen]
        pos = min(n, pos + headerlen)
        _unpack_s(header, 0)  # dgmt
        if headerlen >= 26:
            st.dtstart = _unpack_d(header, 10)[0]
            st.dtend = _unpack_d(header, 18)[0]
        st.packed = False
        if headerlen >= 27:
            st.packed = _unpack_b(header, 26)[0] == 1
    except (_HeaderCut, MemoryError):
        raise
    except Exception as exc:
        raise _HeaderError(f"{type(exc).__name__}: {exc}") from None
    return pos


def _parse_sequential(data: bytes, pos: int, st: _State, names: list[str], stop_at_rec: bool,
                      hard_end: bool = False) -> int | None:
    """The packet loop of ``VitalFile.load_vital``, ported statement by statement.

    With ``stop_at_rec`` it returns the position of the first record packet, unread (None if
    reading ends before one); otherwise it reads to where vitaldb stops and returns None. Where
    and why reading stopped is left in ``st.stop_pos`` and ``st.stop_reason``. An exception
    ends the loop as in vitaldb (``print(f'Error in reading file: {e}'); return False``: what
    was read so far is kept).
    """
    try:
        return _sequential_loop(data, pos, st, names, stop_at_rec, hard_end)
    except MemoryError:  # the worker's memory limit, not a property of the file: the case fails so
        raise
    except Exception as exc:  # vitaldb: print(f'Error in reading file: {e}'); return False
        st.stop_reason = f"vitaldb's reading error: {exc}"  # at the packet it was reading
        return None


def _stop(st: _State, at: int, reason: str | None) -> None:
    st.stop_pos, st.stop_reason = at, reason


def _stop_reason(data, at: int, packed: bool, hard_end: bool) -> str | None:
    """Why vitaldb's loop reads no further than the packet at ``at`` (a packet it stops at, or one
    that runs past the end); None at the end of the data."""
    rem = len(data) - at
    if rem <= 0:
        return None
    if rem < 5:
        if hard_end:
            return f"the last packet is cut short (byte {at}: {rem} of its 5 header bytes)"
        return f"{_bytes(rem, 'stray ')} at the end"
    plen = _unpack_dw(data, at + 1)[0]
    if not packed and plen > _MAX_PACKET:
        return f"packet at byte {at} claims {plen} bytes (over 1 MB)"
    if plen == 0:
        return f"packet of 0 bytes at byte {at}"
    if plen > rem - 5:
        if plen > _MAX_PACKET:
            return f"packet at byte {at} claims {plen} bytes but only {rem - 5} remain"
        return f"the last packet is cut short (byte {at}: {rem - 5} of {plen} bytes)"
    return None


def _skip_reason(at: int, reclen: int, n: int) -> str:
    return f"a skip over a track's block at byte {at} claims {reclen} bytes but only {n - at} remain"


def _sequential_loop(data, pos, st, names, stop_at_rec, hard_end):  # noqa: C901 - a faithful port
    n = len(data)
    mv = memoryview(data)
    name_set = set(names)
    packed = st.packed
    tid_dtnames, did_dnames, tid_reclens = st.tid_dtnames, st.did_dnames, st.tid_reclens
    trk_order_tids = st.trk_order_tids
    trks = st.trks
    defined = st.defined
    rec_consumed = 0
    stop_offset = None
    cut = None  # (where, why) a packet or a skip ran past the end (then pos == n)
    while True:
        at = st.stop_pos = pos  # where vitaldb's loop is, should it raise
        buf = mv[pos : pos + 5]
        if len(buf) < 5:
            if len(buf) == 0:
                break
            return _stop(st, at, _stop_reason(data, at, packed, hard_end))  # vitaldb: struct.error
        if stop_at_rec and buf[0] == 1:
            plen = _unpack_dw(buf, 1)[0]
            if (packed or plen <= _MAX_PACKET) and plen and pos + 5 < n:
                return pos
        packet_type = _unpack_b(buf, 0)[0]
        packet_len = _unpack_dw(buf, 1)[0]
        pos += 5
        # vitaldb breaks at a packet over 1 MB (not packed) and where f.read(packet_len) gives
        # b"" (0 bytes, or the end); with a hard end f.read raises if the packet runs past it
        if (not packed and packet_len > _MAX_PACKET) or packet_len == 0 or pos == n or (
            hard_end and pos + packet_len > n
        ):
            return _stop(st, at, _stop_reason(data, at, packed, hard_end))
        buf = mv[pos : pos + packet_len]
        if pos + packet_len > n:  # read as far as it goes
            cut = at, _stop_reason(data, at, packed, False)
        pos = min(n, pos + packet_len)
        p = 0
        if packet_type == 10:  # raw data: nothing to keep, but vitaldb may raise on it
            dt = _unpack_d(buf, p)[0]
            p += 8
            if packet_len > p:
                sport, p = _str_at(buf, p)
            if packet_len > p:
                bsent = _unpack_b(buf, p)[0]
                p += 1
            if packet_len > p:
                buflen = _unpack_dw(buf, p)[0]
                p += 4
            if packet_len >= p + buflen:  # noqa: F821 - UnboundLocalError as in vitaldb
                (dt, sport, bsent)  # noqa: B018 - the names vitaldb's append reads
        elif packet_type == 9:  # devinfo
            did = _unpack_dw(buf, p)[0]
            p += 4
            devtype, p = _str_at(buf, p)
            name, p = _str_at(buf, p)
            if len(buf) > p + 4:  # port is optional
                _port, p = _str_at(buf, p)
            if not name:
                name = devtype
            did_dnames[did] = name
        elif packet_type == 0:  # trkinfo
            did = 0
            srate = 0.0
            tid = _unpack_w(buf, p)[0]
            p += 2
            trktype = _unpack_b(buf, p)[0]
            p += 1
            fmt = _unpack_b(buf, p)[0]
            p += 1
            if trktype == 1 or trktype == 2:
                if fmt not in _FMT_LEN:
                    continue
            tname, p = _str_at(buf, p)
            if packet_len > p:
                _unit, p = _str_at(buf, p)
            if packet_len > p:  # mindisp
                _unpack_f(buf, p)
                p += 4
            if packet_len > p:  # maxdisp
                _unpack_f(buf, p)
                p += 4
            if packet_len > p:  # col
                _unpack_dw(buf, p)
                p += 4
            if packet_len > p:
                srate = _unpack_f(buf, p)[0]
                p += 4
            if packet_len > p:  # gain
                _unpack_d(buf, p)
                p += 8
            if packet_len > p:  # offset
                _unpack_d(buf, p)
                p += 8
            if packet_len > p:  # montype
                _unpack_b(buf, p)
                p += 1
            if packet_len > p:
                did = _unpack_dw(buf, p)[0]
                p += 4
            reclen = 0
            if packet_len > p:
                reclen = _unpack_dw(buf, p)[0]
                p += 4
            if packet_len > p:  # trk_dtstart
                _unpack_d(buf, p)
                p += 8
            if packet_len > p:  # trk_dtend
                _unpack_d(buf, p)
                p += 8
            dname = ""
            if did and did in did_dnames:
                dname = did_dnames[did]
                dtname = dname + "/" + tname
            else:
                dtname = tname
            matched = _matches(dtname, dname, names, name_set)
            defined.append(dtname)
            tid_reclens[tid] = reclen
            trk_order_tids.append(tid)
            if not matched:
                continue
            tid_dtnames[tid] = dtname
            trks[dtname] = _Track(trktype, fmt, srate)
        elif packet_type == 1:  # rec
            if stop_offset is None:
                stop_offset = _stop_offset(st, names)
            rec_consumed += 5 + packet_len
            if len(buf) < p + 12:
                continue
            infolen = _unpack_w(buf, p)[0]
            p += 2
            dt = _unpack_d(buf, p)[0]
            p += 8
            tid = _unpack_w(buf, p)[0]
            p = 2 + infolen
            if tid not in tid_dtnames:  # tid not to read
                if tid in tid_reclens:
                    if tid_reclens[tid] > 5 + packet_len:
                        if pos + tid_reclens[tid] - (5 + packet_len) > n:
                            # vitaldb seeks to the end (with a hard end f.seek raises): either
                            # way nothing more is read
                            cut = at, _skip_reason(at, tid_reclens[tid], n)
                        pos = min(n, pos + tid_reclens[tid] - (5 + packet_len))
                        rec_consumed += tid_reclens[tid] - (5 + packet_len)
                if stop_offset > 0 and rec_consumed >= stop_offset:
                    break
                continue
            trk = trks[tid_dtnames[tid]]
            if st.dtstart == 0 or (dt > 0 and dt < st.dtstart):
                st.dtstart = dt
            if dt > st.dtend:
                st.dtend = dt
            if trk.type == 1:  # wav
                fmtlen = _FMT_LEN[trk.fmt][1]
                if len(buf) < p + 4:
                    continue
                nsamp = _unpack_dw(buf, p)[0]
                p += 4
                if len(buf) < p + nsamp * fmtlen:
                    continue
                if trk.srate > 0:
                    rec_dtend = dt + nsamp / trk.srate
                    if rec_dtend > st.dtend:
                        st.dtend = rec_dtend
            elif trk.type == 2:  # num
                fmtcode, fmtlen = _FMT_LEN[trk.fmt]
                if len(buf) < p + fmtlen:
                    continue
                trk.dts.append(dt)
                trk.vals.append(struct.unpack_from(fmtcode, buf, p)[0])
            elif trk.type == 5:  # str
                p += 4
                if len(buf) < p + 4:
                    continue
        elif packet_type == 6:  # cmd
            cmd = _unpack_b(buf, p)[0]
            p += 1
            if cmd == 6:  # reset events
                if "EVENT" in trks:
                    trks["EVENT"].dts = []
                    trks["EVENT"].vals = []
            elif cmd == 5:  # trk order
                cnt = _unpack_w(buf, p)[0]
                p += 2
                np.ndarray((cnt,), buffer=buf, offset=p, dtype=np.dtype("H"))
        if stop_offset is not None and stop_offset > 0 and rec_consumed >= stop_offset:
            break
    # the end of the data, or the planned early stop of a packed file
    return _stop(st, *cut) if cut is not None else _stop(st, pos, None)


def _stop_offset(st: _State, names: list[str]) -> int:
    """vitaldb's early stop of packed files: the REC bytes up to the last wanted track's block."""
    if st.packed and names:
        order = st.trk_order_tids
        wanted_idx = [i for i, t in enumerate(order) if t in st.tid_dtnames]
        if wanted_idx and all(st.tid_reclens.get(t, 0) > 0 for t in order):
            return sum(st.tid_reclens[t] for t in order[: wanted_idx[-1] + 1])
    return -1


# --------------------------------------------------------------------------- the fast path

#: the first 17 bytes of a record packet: type, len, infolen, dt, tid
_HDR = np.dtype([("type", "u1"), ("plen", "<u4"), ("infolen", "<u2"), ("dt", "<f8"), ("tid", "<u2")])
_HDR_LEN = _HDR.itemsize  # 17
#: the 16 bytes after the type; gathered as complex128 items: a typed copy is faster than a void one
_REST = np.dtype([("plen", "<u4"), ("infolen", "<u2"), ("dt", "<f8"), ("tid", "<u2")])
_END, _BREAK, _ERROR = 0, 1, 2  # how the chain of packets ends (vitaldb: EOF, `break`, exception)


def _view(data: bytes, dtype) -> np.ndarray:
    """``dtype`` items starting at every byte offset of ``data`` (unaligned, stride 1)."""
    dtype = np.dtype(dtype)
    return np.ndarray((max(0, len(data) - dtype.itemsize + 1),), dtype, data, 0, (1,))


def _parse_fast(data: bytes, p0: int, st: _State, names: list[str], hard_end: bool = False) -> None:  # noqa: C901
    """Read the records from ``p0`` (the first record packet) into ``st``, or raise _Fallback."""
    n = len(data)
    if n - p0 < 4 * _HDR_LEN:
        raise _Fallback
    if st.packed:
        P, (term_kind, term_pos) = _chain_runs(data, p0, True)
        ptype, H = _headers(data, P)
    else:
        P, ptype, H, (term_kind, term_pos) = _chain_walkers(data, p0)
    if P.size == 0:
        raise _Fallback
    plen = H["plen"].astype(np.int64)
    stops = plen == 0 if st.packed else (plen == 0) | (plen > _MAX_PACKET)
    if stops.any():  # vitaldb stops reading at this packet
        k = int(np.argmax(stops))
        if k == 0:
            raise _Fallback
        term_kind, term_pos = _BREAK, int(P[k])
        P, ptype, H, plen = P[:k], ptype[:k], H[:k], plen[:k]
    bl = plen  # payload bytes present: only the last packet can be cut short
    if int(P[-1]) + 5 + int(plen[-1]) > n:
        if hard_end:  # vitaldb's f.read raises: the packet is not read
            term_kind, term_pos = _BREAK, int(P[-1])
            P, ptype, H, plen = P[:-1], ptype[:-1], H[:-1], plen[:-1]
            if P.size == 0:
                raise _Fallback
            bl = plen
        else:
            bl = plen.copy()
            bl[-1] = n - 5 - int(P[-1])
    m = P.size
    special = np.flatnonzero(ptype != 1)
    special_types = ptype[special]
    if np.any((special_types == 0) | (special_types == 9) | (special_types == 10)):
        raise _Fallback  # device/track definitions or raw packets among the records
    recok = bl >= 12  # vitaldb skips shorter records (`continue`)
    recok[special] = False

    # per track id: 0 not matched, 1 matched, 2 + k the k-th requested numeric track
    outs = [nm for nm in names if nm in st.trks and st.trks[nm].type == _NUM]
    lut = np.zeros(65536, dtype=np.int16)
    kind = np.zeros(65536, dtype=np.int16)
    flen = np.zeros(65536, dtype=np.int64)
    rates = np.zeros(65536, dtype=np.float64)
    for t, dtname in st.tid_dtnames.items():
        trk = st.trks[dtname]
        lut[t] = 2 + outs.index(dtname) if dtname in outs else 1
        kind[t] = trk.type
        flen[t] = _FMT_LEN[trk.fmt][1] if trk.fmt in _FMT_LEN else 0
        rates[t] = trk.srate
    seek = np.zeros(65536, dtype=np.int64)  # reclen of the tids vitaldb skips by
    for t, reclen in st.tid_reclens.items():
        if t not in st.tid_dtnames:
            seek[t] = reclen

    tid = H["tid"].astype(np.intp)
    cls = lut[tid]
    if not recok.all():
        cls[~recok] = 0
    visited = None  # packets vitaldb reads (None: all of them)

    # vitaldb's skips over records of unwanted tracks (packed files: the rest of their block)
    seeking = None
    seek_end = -1  # the record whose skip reaches the end of the data
    if seek.any():
        seeking = recok & (cls == 0) & (seek[tid] > 5 + plen)
        seek_idx = np.flatnonzero(seeking)
        if seek_idx.size:
            visited = np.ones(m, dtype=bool)
            k = 0
            while k < seek_idx.size:
                s = int(seek_idx[k])
                target = int(P[s]) + int(seek[tid[s]])
                if target >= n:  # a seek to the end of the data
                    visited[s + 1 :] = False
                    term_kind, term_pos = _END, n
                    seek_end = s
                    break
                j = int(np.searchsorted(P, target))
                if j < m and int(P[j]) == target:
                    visited[s + 1 : j] = False
                    k = int(np.searchsorted(seek_idx, j))
                    continue
                if j == m and target == term_pos:
                    visited[s + 1 :] = False
                    break
                raise _Fallback  # the skip lands off the chain of packets

    mi = np.flatnonzero(cls > 0)  # records of matched tracks
    mtid = tid[mi]
    mkind = kind[mtid]
    vpos = 2 + H["infolen"][mi].astype(np.int64)  # where the value starts in the payload
    mbl = bl[mi]
    # the records that get to the end of vitaldb's loop body (and its early-stop check)
    complete = np.ones(mi.size, dtype=bool)
    is_num = mkind == _NUM
    complete[is_num] = mbl[is_num] >= vpos[is_num] + flen[mtid[is_num]]
    wav = wav0 = np.flatnonzero(mkind == _WAV)
    nsamp = np.zeros(wav.size, dtype=np.int64)
    if wav.size:
        has_n = mbl[wav] >= vpos[wav] + 4
        at = P[mi[wav[has_n]]] + 5 + vpos[wav[has_n]]
        nsamp[has_n] = _view(data, "<u4")[at]
        complete[wav] = has_n & (mbl[wav] >= vpos[wav] + 4 + nsamp * flen[mtid[wav]])
    is_str = mkind == _STR
    complete[is_str] = mbl[is_str] >= vpos[is_str] + 8

    planned = -1  # the packet after which vitaldb's early stop of packed files comes
    stop_offset = _stop_offset(st, names)
    if stop_offset > 0:
        contrib = np.where(ptype == 1, 5 + plen, 0)
        if seeking is not None:
            contrib = np.where(seeking, seek[tid], contrib)
        if visited is not None:
            contrib[~visited] = 0
        consumed = np.cumsum(contrib)
        check = np.ones(m, dtype=bool)  # unmatched records and other packets get there
        check[~recok & (ptype == 1)] = False
        check[mi] = complete
        if visited is not None:
            check &= visited
        hit = np.flatnonzero(check & (consumed >= stop_offset))
        if hit.size:
            if visited is None:
                visited = np.ones(m, dtype=bool)
            visited[hit[0] + 1 :] = False
            term_kind = _END
            planned = int(hit[0])

    # where and why vitaldb's loop stops
    last = planned if planned >= 0 else seek_end
    if last >= 0:
        if seeking is not None and seeking[last]:
            reach = int(P[last]) + int(seek[tid[last]])
            why = _skip_reason(int(P[last]), int(seek[tid[last]]), n) if reach > n else None
        else:
            reach = int(P[last]) + 5 + int(plen[last])
            why = _stop_reason(data, int(P[last]), st.packed, False) if reach > n else None
        if why:
            _stop(st, int(P[last]), why)
        else:
            _stop(st, min(reach, n), None)
    elif term_kind == _END:
        if int(P[-1]) + 5 + int(plen[-1]) > n:  # read as far as it goes
            _stop(st, int(P[-1]), _stop_reason(data, int(P[-1]), st.packed, False))
        else:
            _stop(st, n, None)
    else:  # a packet vitaldb stops at, or stray bytes at the end (vitaldb raises there)
        _stop(st, term_pos, _stop_reason(data, term_pos, st.packed, hard_end))

    if visited is not None:
        keep = visited[mi]
        mi, mtid, mkind, vpos, mbl, complete = mi[keep], mtid[keep], mkind[keep], vpos[keep], mbl[keep], complete[keep]
        wav = np.flatnonzero(mkind == _WAV)
        nsamp = nsamp[keep[wav0]]
        special = special[visited[special]]

    # cmd packets: the ones vitaldb fails on, and the reset of the EVENT track
    event_from = -1
    for c in special.tolist():
        if ptype[c] != 6:
            continue  # unknown packet types are skipped
        start = int(P[c]) + 5
        payload = data[start : start + int(bl[c])]
        if payload[0] == 5:
            if len(payload) < 4 or len(payload) < 3 + 2 * _unpack_w(payload, 1)[0]:
                raise _Fallback
        elif payload[0] == 6:
            event_from = c

    # dtstart and dtend
    dts = H["dt"]
    mdt = dts[mi]
    st.dtstart = _fold_dtstart(st.dtstart, mdt)
    ends = [mdt]
    if wav.size:
        w_ok = complete[wav] & (rates[mtid[wav]] > 0)
        w = wav[w_ok]
        ends.append(mdt[w] + nsamp[w_ok] / rates[mtid[w]])
    st.dtend = _fold_dtend(st.dtend, np.concatenate(ends) if len(ends) > 1 else mdt)

    # the records of the requested numeric tracks, in file order
    if not outs:
        return
    mcls = cls[mi]
    sel = np.flatnonzero((mcls >= 2) & complete)
    if event_from >= 0 and "EVENT" in outs:
        ev = 2 + outs.index("EVENT")
        sel = sel[(mcls[sel] != ev) | (mi[sel] > event_from)]
    code = mcls[sel] - 2
    vo = P[mi[sel]] + 5 + vpos[sel]
    fmts = np.array([st.trks[nm].fmt for nm in outs])
    rec_fmt = fmts[code]
    used = sorted(set(fmts.tolist()))
    if len(used) == 1:
        vals = _view(data, _FMT_NP[used[0]])[vo].astype(np.float64)
    else:
        vals = np.empty(sel.size, dtype=np.float64)
        for f in used:
            sub = rec_fmt == f
            vals[sub] = _view(data, _FMT_NP[f])[vo[sub]]
    times = mdt[sel]
    if len(outs) == 1:
        st.trks[outs[0]].fast = (times, vals)
        return
    order = np.argsort(code, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(code, minlength=len(outs)))])
    for i, nm in enumerate(outs):
        o = order[bounds[i] : bounds[i + 1]]
        st.trks[nm].fast = (times[o], vals[o])


def _fold_dtstart(s, dts: np.ndarray):
    """vitaldb: ``for dt in dts: if s == 0 or (dt > 0 and dt < s): s = dt``."""
    if dts.size == 0:
        return s
    if s == 0:
        nz = np.flatnonzero(dts != 0)  # NaN counts as non-zero
        if nz.size == 0:
            return float(dts[-1])
        s = float(dts[nz[0]])
        dts = dts[nz[0] + 1 :]
    if s > 0 and dts.size:
        low = dts[(dts > 0) & (dts < s)]
        if low.size:
            s = float(low.min())
    return s


def _fold_dtend(e, dts: np.ndarray):
    """vitaldb: ``for dt in dts: if dt > e: e = dt`` (a NaN never wins)."""
    big = dts[dts > e]
    return float(big.max()) if big.size else e


def _headers(data: bytes, P: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The packet types and the next 16 bytes (_REST items) of the packets at ``P``
    (zero-padded past the end of the data)."""
    n = len(data)
    last = n - _HDR_LEN
    if P.size == 0:
        return np.zeros(0, dtype=np.uint8), np.zeros(0, dtype=_REST)
    raw = np.dtype((np.void, _HDR_LEN))  # copying whole items is much faster than by field
    if P[-1] > last:
        cut = int(np.searchsorted(P, last, side="right"))
        base = max(0, n - 4 * _HDR_LEN)
        tail = np.ndarray((4 * _HDR_LEN,), raw, data[base:] + bytes(5 * _HDR_LEN), 0, (1,))
        out = np.concatenate([_view(data, raw)[P[:cut]], tail[P[cut:] - base]])
    else:
        out = _view(data, raw)[P]
    return out.view(_HDR)["type"], np.ndarray((P.size,), _REST, out, 1, (_HDR_LEN,))


def _step(data: bytes, p: int, packed: bool):
    """vitaldb's loop reading the packet header at ``p``: ``(plen, next)``, or ``(terminal, None)``
    where it stops there (``(_END|_BREAK|_ERROR, p)``; the packet at ``p`` is not read)."""
    rem = len(data) - p
    if rem <= 0:
        return (_END, p), None
    if rem < 5:
        return (_ERROR, p), None
    plen = _unpack_dw(data, p + 1)[0]
    if (not packed and plen > _MAX_PACKET) or plen == 0 or rem == 5:
        return (_BREAK, p), None
    return plen, p + 5 + plen


def _walk(data, p, packed, anchors=None, anchor_set=frozenset()):
    """Follow the packets from ``p`` in Python, jumping over runs of packets of equal length
    (checked with a strided numpy view).

    Returns ``(pieces, end)``: the positions of the packets read (a list of arrays and lists)
    and ``(kind, pos)`` of the terminal, or ``("land", pos)`` on reaching a position in
    ``anchor_set`` (``anchors``: the same, as a sorted array).
    """
    n = len(data)
    pieces: list = []
    single: list[int] = []
    while True:
        plen, nxt = _step(data, p, packed)
        if nxt is None:
            pieces.append(single)
            return pieces, plen
        single.append(p)
        if nxt < n - 5 and _unpack_dw(data, nxt + 1)[0] == plen:
            # a run of packets of this length: positions nxt + k * L while their len is plen
            L = 5 + plen
            kmax = (n - 6 - nxt) // L + 1  # run packets with data after their header
            r = 0
            probe = 16
            while r < kmax:
                k = min(probe, kmax - r)
                ok = np.ndarray((k,), "<u4", data, nxt + r * L + 1, (L,)) == plen
                if ok.all():
                    r += k
                    probe *= 8
                else:
                    r += int(np.argmin(ok))
                    break
            end = nxt + r * L
            if anchors is not None and anchors.size:
                lo = int(np.searchsorted(anchors, nxt))
                hi = int(np.searchsorted(anchors, end, side="right"))
                if hi > lo:
                    cand = anchors[lo:hi]
                    on = cand[(cand - nxt) % L == 0]
                    if on.size:
                        a = int(on[0])
                        pieces.append(single)
                        pieces.append(np.arange(nxt, a, L, dtype=np.int64))
                        return pieces, ("land", a)
            pieces.append(single)
            pieces.append(np.arange(nxt, end, L, dtype=np.int64))
            single = []
            nxt = end
        if nxt in anchor_set:
            pieces.append(single)
            return pieces, ("land", nxt)
        p = nxt


def _concat(pieces: list) -> np.ndarray:
    arrays = [np.asarray(p, dtype=np.int64).reshape(-1) for p in pieces]
    return np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int64)


def _chain_runs(data, p0, packed):
    """The chain of packets from ``p0``, walked in Python by runs (packed files: long runs)."""
    pieces, term = _walk(data, p0, packed)
    return _concat(pieces), term


# interleaved files: anchors are record starts at least _STRIDE bytes apart, found by the bytes
# 3-6 of a record (a length below 64 KiB, infolen 10); the regex skips _STRIDE bytes in O(1)
_STRIDE = 16384
_ANCHOR_RE = re.compile(b"\\x00\\x00\\x0a\\x00(?s:.{%d})" % (_STRIDE - 4))


def _anchors(data: bytes, p0: int, last: int) -> np.ndarray:
    """``p0`` and likely record starts spread over the data (a false one costs a wasted walker)."""
    found = np.fromiter((m.start() for m in _ANCHOR_RE.finditer(data, p0 + _STRIDE, last + 3)), dtype=np.int64)
    found -= 3
    found = found[np.frombuffer(data, np.uint8)[found] == 1]
    return np.concatenate([[p0], found]).astype(np.int64)


_MIN_WALKERS = 48  # below this many walkers numpy steps cost more than Python ones


def _chain_walkers(data, p0):
    """The chain of packets from ``p0`` (a file not flagged packed) by numpy walkers in
    lockstep, one from each anchor; a walker stops where it lands on another anchor, and the
    chain follows the landings from the walker at ``p0``.

    Packets that make vitaldb stop (length 0 or above 1 MB) are not looked for here: the caller
    cuts the chain at the first one. Returns ``(P, types, _REST items, terminal)`` in chain order.
    """
    n = len(data)
    last = n - _HDR_LEN  # a numpy walker needs the whole header in the data
    anchors = _anchors(data, p0, last)
    A = anchors.size
    ext = np.append(anchors, last + 1)  # the target after the last anchor: the end zone
    rest_at = np.ndarray((last + 1,), np.complex128, data, 1, (1,))  # the _REST bytes of a packet
    type_at = np.frombuffer(data, np.uint8)
    pos = anchors.copy()
    wid = np.arange(A, dtype=np.int64)
    tgt = ext[1:].copy()
    rec_pos: list[np.ndarray] = []
    rec_wid: list[np.ndarray] = []
    landed: list[tuple] = []  # (walkers, anchor indices, iteration)
    zoned: list[tuple] = []  # (walkers, next positions, iteration): finished in Python
    it = 0
    rec_rest: list[np.ndarray] = []
    rec_type: list[np.ndarray] = []
    while pos.size > _MIN_WALKERS:
        rest = rest_at[pos]
        nxt = pos + rest.view(_REST)["plen"]
        nxt += 5
        rec_pos.append(pos)
        rec_wid.append(wid)
        rec_rest.append(rest)
        rec_type.append(type_at[pos])
        it += 1
        ev = nxt >= tgt
        if not ev.any():
            pos = nxt
            continue
        e = np.flatnonzero(ev)
        ne = nxt[e]
        j = np.searchsorted(anchors, ne)
        hit = ext[j] == ne  # landed on an anchor (or exactly on the end zone: see below)
        stop = hit | (ne > last)
        if not stop.all():  # past an anchor that is not on its chain: aim at the next one
            miss = ~stop
            tgt[e[miss]] = ext[j[miss]]
            e, ne, j, hit = e[stop], ne[stop], j[stop], hit[stop]
        zone = ne > last
        if zone.any():
            zoned.append((wid[e[zone]], ne[zone], it))
            hit &= ~zone
        landed.append((wid[e[hit]], j[hit], it))
        keep = np.ones(pos.size, dtype=bool)
        keep[e] = False
        pos, wid, tgt = nxt[keep], wid[keep], tgt[keep]
    zoned.append((wid, pos, it))  # still walking: finished in Python if on the chain

    link = np.full(A, -1, dtype=np.int64)  # anchor landed on
    at = np.zeros(A, dtype=np.int64)  # pending walkers: the packet they have not read
    steps = np.zeros(A, dtype=np.int64)  # positions recorded per walker
    for ws, js, i in landed:
        link[ws] = js
        steps[ws] = i
    for ws, ps, i in zoned:
        at[ws] = ps
        steps[ws] = i

    # assemble the chain: from the first walker along the landings
    chain: list[int] = []
    extra: dict[int, np.ndarray] = {}
    anchor_set = set(anchors.tolist())
    link_l = link.tolist()
    w = 0
    while True:
        chain.append(w)
        nw = link_l[w]
        if nw >= 0:
            w = nw
            continue
        pieces, end = _walk(data, int(at[w]), False, anchors, anchor_set)
        extra[w] = _concat(pieces)
        if end[0] == "land":
            w = int(np.searchsorted(anchors, end[1]))
            continue
        term = end
        break
    chain_arr = np.array(chain, dtype=np.int64)
    sizes = steps[chain_arr] + np.array([extra[c].size if c in extra else 0 for c in chain], dtype=np.int64)
    offset = np.full(A, -1, dtype=np.int64)
    offset[chain_arr] = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    total = int(sizes.sum())
    P = np.empty(total, dtype=np.int64)
    T = np.empty(total, dtype=np.uint8)
    R = np.empty(total, dtype=np.complex128)
    all_on = len(chain) == A
    for i in range(len(rec_pos)):  # record i of a walker is packet offset[w] + i of the chain
        off = offset[rec_wid[i]]
        if all_on:
            dest = off + i
            P[dest] = rec_pos[i]
            T[dest] = rec_type[i]
            R[dest] = rec_rest[i]
        else:
            on = off >= 0
            dest = off[on] + i
            P[dest] = rec_pos[i][on]
            T[dest] = rec_type[i][on]
            R[dest] = rec_rest[i][on]
    R = R.view(_REST)
    for c, arr in extra.items():
        start = int(offset[c] + steps[c])
        P[start : start + arr.size] = arr
        T[start : start + arr.size], R[start : start + arr.size] = _headers(data, arr)
    return P, T, R, term
