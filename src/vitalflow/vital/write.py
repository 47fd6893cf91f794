"""Write `.vital` files in the two layouts found in the wild.

A `.vital` file is one gzip stream (little-endian throughout)::

    b"VITA"  uint32 version (3)  uint16 header_len  header
    header = int16 dgmt, uint32 inst_id, uint32 prog_ver, float64 dtstart, float64 dtend
             [+ uint8 packed flag]
    packets = uint8 type, uint32 len, payload     (9 devinfo, 0 trkinfo, 1 rec, 6 cmd)

Two layouts, both read by the `vitaldb` library (`VitalFile.load_vital`):

``"interleaved"``
    What Vital Recorder writes: header of 26 bytes, devinfo and trkinfo packets, then rec packets
    in time order across all tracks (ties broken by track id). Numeric and string records carry
    one value each; waves come in chunks (about 1 s). The `vitaldb` reader stops at the first
    packet above 1 MB in such files, so larger wave chunks are refused.
``"packed"``
    What `vitaldb.VitalFile.to_vital(packed=True)` writes: header of 27 bytes with packed flag 1,
    trkinfo with the byte length of each track's records and the track's dtstart/dtend, the
    records of one track together (numeric and string tracks first, waves last), each wave track
    merged into one record (gaps filled with the format's missing value, see `FMT_MISSING`), and a
    cmd packet (5) with the display order of the tracks (the order given by the caller).

Record times in the file are ``start + times`` (unix seconds). The gzip stream is written with
mtime 0 and no file name, so equal input gives equal bytes. Files appear atomically: they are
written to ``<path>.tmp-<pid>`` and renamed.

>>> import tempfile, os
>>> d = tempfile.mkdtemp()
>>> hr = TrackData("Solar8000", "HR", "num", np.array([0.0, 2.0]), np.array([80.0, 81.0]))
>>> write_vital(os.path.join(d, "1.vital"), [hr], start=1.5e9)
>>> sorted(os.listdir(d))
['1.vital']
"""

from __future__ import annotations

import gzip
import os
import struct
from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["TrackData", "write_vital", "FMT_DTYPES", "FMT_MISSING", "LAYOUTS"]

LAYOUTS = ("interleaved", "packed")

#: vital format code -> numpy dtype of one stored value
FMT_DTYPES: dict[int, np.dtype] = {
    1: np.dtype("<f4"),
    2: np.dtype("<f8"),
    3: np.dtype("i1"),
    4: np.dtype("u1"),
    5: np.dtype("<i2"),
    6: np.dtype("<u2"),
    7: np.dtype("<i4"),
    8: np.dtype("<u4"),
}

#: value written into the gaps of a packed wave record (same as `vitaldb`'s FMT_NAN)
FMT_MISSING: dict[int, float] = {
    1: float("nan"),
    2: float("nan"),
    3: -128,
    4: 255,
    5: -32768,
    6: 65535,
    7: -(2**31),
    8: 2**32 - 1,
}

_KIND_CODE = {"wave": 1, "num": 2, "str": 5}

# dgmt = UTC - local time in minutes; VitalDB was recorded in Seoul (KST, UTC+9).
_DGMT_KST = -540
_COLOR_WHITE = 0xFFFFFFFF
# The vitaldb reader drops everything from the first packet above this size in non-packed files.
_MAX_INTERLEAVED_PACKET = 1_000_000

_SMALL_RECORD = 64  # bytes; blocks of records of one size up to this are gathered with numpy
_REC_HEAD = [("ptype", "u1"), ("plen", "<u4"), ("infolen", "<u2"), ("dt", "<f8"), ("tid", "<u2")]
_REC_HEAD_LEN = 17  # bytes of the fields above: 1 + 4 + 2 + 8 + 2
_WAVE_HEAD = np.dtype(_REC_HEAD + [("nsamp", "<u4")])


@dataclass(frozen=True)
class TrackData:
    """One track to write.

    ``times`` are seconds from the recording start: one per record for ``num`` and ``str``
    tracks, the start of each chunk for ``wave`` tracks. ``values`` are stored values (for waves
    a reader applies ``gain`` and ``offset`` to integer formats): a 1-D array for ``num``, a list
    of 1-D arrays (one per chunk) for ``wave``, a list of strings for ``str``.
    """

    device: str
    name: str
    kind: str
    times: np.ndarray
    values: object
    unit: str = ""
    srate: float = 0.0
    fmt: int = 1
    gain: float = 1.0
    offset: float = 0.0

    def __post_init__(self) -> None:
        where = f"track {self.dtname!r}"
        if not self.name or "/" in self.name:
            raise ValueError(f"{where}: name must be non-empty and contain no '/'")
        if "/" in self.device:
            raise ValueError(f"{where}: device must contain no '/'")
        if self.kind not in _KIND_CODE:
            raise ValueError(f"{where}: kind must be one of {sorted(_KIND_CODE)}, got {self.kind!r}")
        if self.fmt not in FMT_DTYPES:
            raise ValueError(f"{where}: unknown fmt {self.fmt!r} (valid: {sorted(FMT_DTYPES)})")
        times = np.asarray(self.times)
        if times.ndim != 1:
            raise ValueError(f"{where}: times must be 1-D, got shape {times.shape}")
        if not np.all(np.isfinite(times)):
            raise ValueError(f"{where}: times must be finite")
        n_values = len(self.values) if not isinstance(self.values, np.ndarray) else self.values.shape[0]
        if isinstance(self.values, np.ndarray) and self.values.ndim != 1 and self.kind != "wave":
            raise ValueError(f"{where}: values must be 1-D, got shape {self.values.shape}")
        if n_values != times.shape[0]:
            raise ValueError(
                f"{where}: {times.shape[0]} times but {n_values} values "
                f"({'chunks' if self.kind == 'wave' else 'records'})"
            )
        if self.kind == "wave":
            if not (np.isfinite(self.srate) and self.srate > 0):
                raise ValueError(f"{where}: a wave track needs srate > 0, got {self.srate!r}")
            for i, chunk in enumerate(self.values):
                if np.ndim(chunk) != 1:
                    raise ValueError(f"{where}: wave chunk {i} must be 1-D, got shape {np.shape(chunk)}")
        elif self.kind == "str":
            if not all(isinstance(v, str) for v in self.values):
                raise ValueError(f"{where}: str track values must all be str")

    @property
    def dtname(self) -> str:
        """``Device/NAME`` as `vitaldb` names the track (``NAME`` when there is no device)."""
        return f"{self.device}/{self.name}" if self.device else self.name


def write_vital(
    path: str | os.PathLike,
    tracks: Sequence[TrackData],
    start: float,
    layout: str = "interleaved",
    compresslevel: int = 1,
) -> None:
    """Write ``tracks`` to ``path`` as a `.vital` file; ``start`` is the unix time of t = 0.

    Raises ValueError for an unknown layout, a bad compresslevel, duplicate track names, values a
    track's fmt cannot hold, or (interleaved) a wave chunk too large for one packet.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r} (valid: {', '.join(LAYOUTS)})")
    if not isinstance(compresslevel, int) or not 0 <= compresslevel <= 9:
        raise ValueError(f"compresslevel must be an int in 0..9, got {compresslevel!r}")
    start = float(start)
    if not np.isfinite(start):
        raise ValueError(f"start must be finite, got {start!r}")
    tracks = list(tracks)
    for trk in tracks:
        if not isinstance(trk, TrackData):
            raise ValueError(f"tracks must be TrackData, got {type(trk).__name__}")
    names = [t.dtname for t in tracks]
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        raise ValueError(f"duplicate track names: {dups}")
    if len(tracks) > 65535:
        raise ValueError(f"at most 65535 tracks fit in a .vital file, got {len(tracks)}")

    packed = layout == "packed"
    data = _encode(tracks, start, packed)
    path = os.fspath(path)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as raw, gzip.GzipFile(
            filename="", mode="wb", fileobj=raw, compresslevel=compresslevel, mtime=0
        ) as gz:
            for piece in data:
                gz.write(piece)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


# --------------------------------------------------------------------------- encoding


@dataclass
class _Block:
    """The encoded records of one track: concatenated packets and where each starts."""

    dts: np.ndarray  # record times (unix), one per record
    blob: np.ndarray  # uint8, the packets back to back
    offsets: np.ndarray  # int64, len(dts) + 1
    dtend: float  # end of the last record (wave: last sample + 1/srate)


def _encode(tracks: list[TrackData], start: float, packed: bool) -> list:
    """All bytes of the file (uncompressed) as a list of bytes-like pieces."""
    display = list(range(len(tracks)))
    if packed:  # numeric/string tracks first, heavy waves last (as vitaldb's to_vital)
        order = [i for i in display if tracks[i].kind != "wave"] + [
            i for i in display if tracks[i].kind == "wave"
        ]
    else:
        order = display
    tid_of = {i: k + 1 for k, i in enumerate(order)}

    dids: dict[str, int] = {}
    for trk in tracks:
        if trk.device and trk.device not in dids:
            dids[trk.device] = len(dids) + 1

    blocks = {i: _encode_records(tracks[i], tid_of[i], start, packed) for i in order}
    dtend = max([b.dtend for b in blocks.values() if len(b.dts)], default=start)

    out: list = [b"VITA", struct.pack("<IH", 3, 27 if packed else 26)]
    out.append(struct.pack("<hIIdd", _DGMT_KST, 0, 0, start, max(dtend, start)))
    if packed:
        out.append(b"\x01")
    for dev, did in dids.items():
        payload = struct.pack("<I", did) + _pstr(dev) + _pstr(dev) + _pstr("")
        out.append(_packet(9, payload))
    for i in order:
        out.append(_packet(0, _trkinfo(tracks[i], tid_of[i], dids, blocks[i], packed)))

    if packed:
        for i in order:
            out.append(blocks[i].blob)
        tids = np.array([tid_of[i] for i in display], dtype="<u2")
        out.append(_packet(6, struct.pack("<BH", 5, len(tids)) + tids.tobytes()))
    else:
        out.extend(_interleave([blocks[i] for i in order]))
    return out


def _trkinfo(trk: TrackData, tid: int, dids: dict[str, int], block: _Block, packed: bool) -> bytes:
    info = (
        struct.pack("<HBB", tid, _KIND_CODE[trk.kind], trk.fmt)
        + _pstr(trk.name)
        + _pstr(trk.unit)
        + struct.pack(
            "<ffIfddBI",
            0.0,  # mindisp
            0.0,  # maxdisp
            _COLOR_WHITE,
            float(trk.srate),
            float(trk.gain),
            float(trk.offset),
            0,  # montype
            dids.get(trk.device, 0),
        )
    )
    if packed:
        n = len(block.dts)
        trk_start = float(block.dts[0]) if n else 0.0
        trk_end = block.dtend if n else 0.0
        info += struct.pack("<Idd", block.blob.nbytes, trk_start, trk_end)
    return info


def _encode_records(trk: TrackData, tid: int, start: float, packed: bool) -> _Block:
    times = np.asarray(trk.times, dtype=np.float64)
    order = np.argsort(times, kind="stable")
    if trk.kind == "num":
        return _num_block(trk, tid, start + times[order], _checked(trk, trk.values, "values")[order])
    if trk.kind == "str":
        return _str_block(tid, start + times[order], [trk.values[k] for k in order])
    lengths = np.array([np.shape(trk.values[k])[0] for k in order], dtype=np.int64)
    samples = [np.asarray(trk.values[k]) for k in order]
    flat = _checked(trk, np.concatenate(samples) if samples else np.zeros(0), "samples")
    dts = start + times[order]
    if packed and len(lengths) > 1:
        dts, lengths, flat = _merge_chunks(dts, lengths, flat, trk)
    block = _wave_block(tid, dts, lengths, flat, trk.srate)
    if not packed and len(lengths):
        biggest = int(np.diff(block.offsets).max()) - 5
        if biggest > _MAX_INTERLEAVED_PACKET:
            raise ValueError(
                f"track {trk.dtname!r}: a wave chunk of {biggest} bytes is too large for the "
                f"interleaved layout (vitaldb stops reading at packets > {_MAX_INTERLEAVED_PACKET} "
                "bytes); use chunks of about 1 s"
            )
    return block


def _checked(trk: TrackData, values: object, what: str) -> np.ndarray:
    """``values`` as the track's stored dtype; refuse values the format cannot hold."""
    dtype = FMT_DTYPES[trk.fmt]
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"track {trk.dtname!r}: {what} must be 1-D, got shape {arr.shape}")
    if arr.dtype == dtype:
        return arr
    if dtype.kind == "f":
        if arr.dtype.kind not in "biuf":
            raise ValueError(f"track {trk.dtname!r}: {what} must be numeric, got dtype {arr.dtype}")
        return arr.astype(dtype)
    info = np.iinfo(dtype)
    if arr.size == 0:
        return arr.astype(dtype)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.array_equal(arr, np.round(arr)):
            raise ValueError(
                f"track {trk.dtname!r}: {what} must be whole finite numbers for integer fmt {trk.fmt}"
            )
    elif arr.dtype.kind not in "biu":
        raise ValueError(f"track {trk.dtname!r}: {what} must be numeric, got dtype {arr.dtype}")
    lo, hi = arr.min(), arr.max()
    if lo < info.min or hi > info.max:
        raise ValueError(
            f"track {trk.dtname!r}: {what} range {lo}..{hi} does not fit fmt {trk.fmt} "
            f"({info.min}..{info.max})"
        )
    return arr.astype(dtype)


def _num_block(trk: TrackData, tid: int, dts: np.ndarray, vals: np.ndarray) -> _Block:
    vdt = FMT_DTYPES[trk.fmt]
    rec = np.empty(len(dts), dtype=np.dtype(_REC_HEAD + [("val", vdt)]))
    rec["ptype"] = 1
    rec["plen"] = 12 + vdt.itemsize
    rec["infolen"] = 10
    rec["dt"] = dts
    rec["tid"] = tid
    rec["val"] = vals
    size = rec.dtype.itemsize
    offsets = np.arange(len(dts) + 1, dtype=np.int64) * size
    return _Block(dts, rec.view(np.uint8), offsets, float(dts[-1]) if len(dts) else 0.0)


def _str_block(tid: int, dts: np.ndarray, vals: list[str]) -> _Block:
    pieces = []
    for dt, s in zip(dts, vals):
        payload = struct.pack("<HdHI", 10, dt, tid, 0) + _pstr(s)
        pieces.append(_packet(1, payload))
    offsets = np.zeros(len(pieces) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(p) for p in pieces])
    blob = np.frombuffer(b"".join(pieces), dtype=np.uint8)
    return _Block(dts, blob, offsets, float(dts[-1]) if len(dts) else 0.0)


def _wave_block(tid: int, dts: np.ndarray, lengths: np.ndarray, flat: np.ndarray, srate: float) -> _Block:
    n = len(lengths)
    sizes = _WAVE_HEAD.itemsize + lengths * flat.dtype.itemsize
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    head = np.empty(n, dtype=_WAVE_HEAD)
    head["ptype"] = 1
    head["plen"] = sizes - 5
    head["infolen"] = 10
    head["dt"] = dts
    head["tid"] = tid
    head["nsamp"] = lengths
    blob = np.empty(int(offsets[-1]), dtype=np.uint8)
    head_idx = (offsets[:-1, None] + np.arange(_WAVE_HEAD.itemsize)).ravel()
    blob[head_idx] = head.view(np.uint8)
    if n:
        is_data = np.ones(blob.size, dtype=bool)
        is_data[head_idx] = False
        blob[is_data] = flat.view(np.uint8)
    dtend = float(np.max(dts + lengths / srate)) if n else 0.0
    return _Block(dts, blob, offsets, dtend)


def _merge_chunks(dts: np.ndarray, lengths: np.ndarray, flat: np.ndarray, trk: TrackData):
    """One dense record from all chunks, gaps filled with the fmt's missing value (as vitaldb)."""
    srate = float(trk.srate)
    t0 = float(dts[0])
    n = int(round((float(np.max(dts + lengths / srate)) - t0) * srate))
    first = np.round((dts - t0) * srate).astype(np.int64)  # where each chunk lands
    packed_first = np.concatenate([[0], np.cumsum(lengths)[:-1]])  # where it is in `flat`
    if n == flat.size and np.array_equal(first, packed_first):
        return dts[:1], np.array([n]), flat  # contiguous already
    merged = np.full(n, FMT_MISSING[trk.fmt], dtype=flat.dtype)
    pos = np.repeat(first - packed_first, lengths) + np.arange(flat.size)
    keep = (pos >= 0) & (pos < n)
    merged[pos[keep]] = flat[keep]
    return dts[:1], np.array([n]), merged


def _interleave(blocks: list[_Block]) -> list:
    """Rec packets of all blocks in time order (ties: track order), as one byte array.

    Numeric blocks hold records of one fixed size; those are gathered with numpy (as void items)
    and copied in runs. Other records (strings, wave chunks) are copied one slice each.
    """
    if not blocks:
        return []
    counts = np.array([len(b.dts) for b in blocks], dtype=np.int64)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    order = np.argsort(np.concatenate([b.dts for b in blocks]), kind="stable")  # ties: track order
    blk = np.repeat(np.arange(len(blocks)), counts)[order]  # block of each sorted record
    idx = order - first[blk]  # its index inside the block
    sizes = np.concatenate([np.diff(b.offsets) for b in blocks])[order]
    dst = np.zeros(sizes.size, dtype=np.int64)
    np.cumsum(sizes[:-1], out=dst[1:])
    out = np.empty(int(sizes.sum()), dtype=np.uint8)

    rec_size = np.array([_uniform_size(b) for b in blocks], dtype=np.int64)  # 0: not uniform
    size_of = rec_size[blk]
    for size in np.unique(rec_size[rec_size > 0]).tolist():
        members = np.flatnonzero(rec_size == size)
        items = np.concatenate([blocks[k].blob.view(f"V{size}") for k in members.tolist()])
        row_base = np.zeros(len(blocks), dtype=np.int64)
        row_base[members] = np.concatenate([[0], np.cumsum(counts[members])[:-1]])
        sel = np.flatnonzero(size_of == size)  # sorted positions of these records
        stream = items[row_base[blk[sel]] + idx[sel]].view(np.uint8)
        cut = np.flatnonzero(np.diff(sel) != 1) + 1
        if (cut.size + 1) * 32 < sel.size:  # long runs: copy run by run
            lo = np.concatenate([[0], cut]).tolist()
            hi = np.concatenate([cut, [sel.size]]).tolist()
            for r0, r1, d in zip(lo, hi, dst[sel[lo]].tolist()):
                out[d : d + (r1 - r0) * size] = stream[r0 * size : r1 * size]
        else:
            out[(dst[sel, None] + np.arange(size)).ravel()] = stream
    rest = np.flatnonzero(size_of == 0)
    blobs = [b.blob for b in blocks]
    offsets = [b.offsets for b in blocks]
    for k, i, d, n in zip(blk[rest].tolist(), idx[rest].tolist(), dst[rest].tolist(), sizes[rest].tolist()):
        s = int(offsets[k][i])
        out[d : d + n] = blobs[k][s : s + n]
    return [out]


def _uniform_size(block: _Block) -> int:
    """Record size if all records of the block are that small fixed size, else 0."""
    if len(block.dts) == 0:
        return 0
    sizes = np.diff(block.offsets)
    size = int(sizes[0])
    return size if size <= _SMALL_RECORD and bool(np.all(sizes == size)) else 0


def _pstr(s: str) -> bytes:
    b = s.encode("utf-8")
    return struct.pack("<I", len(b)) + b


def _packet(ptype: int, payload: bytes) -> bytes:
    return struct.pack("<BI", ptype, len(payload)) + payload
