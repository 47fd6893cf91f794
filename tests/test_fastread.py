"""The fast reader against the `vitaldb` library: same start, duration, layout flag, tracks,
times and values (bitwise), or the same error, on synthetic cases of both layouts, hand-built
files with every packet kind vitaldb knows (and some it does not), files cut short at random
points, and random files from Hypothesis. Where vitaldb's packet loop raises (it prints the error
and keeps what it read), the reader returns the same partial result and says so in its report;
the fast path and the sequential port give the same report.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import random
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vitaldb  # the oracle: imported by the tests only

from vitalflow.errors import VitalReadError
from vitalflow.spec import load_spec
from vitalflow.vital import fastread
from vitalflow.vital.fastread import read_numeric_tracks
from vitalflow.synth import synth_case
from vitalflow.vital.write import TrackData, write_vital

START = 1.6e9
SPEC_TRACKS = list(load_spec().tracks)
# VITALFLOW_FUZZ_EXAMPLES=2000 for a longer run
FUZZ = settings(
    max_examples=int(os.environ.get("VITALFLOW_FUZZ_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# --------------------------------------------------------------------------- the oracle


def check_gzip_stream(path) -> None:
    """The gzip check the vitaldb-based read_vital made first (stdlib zlib, 1 MB chunks)."""
    with open(path, "rb") as f:
        head = f.read(2)
        if not head:
            raise VitalReadError(f"{path}: empty file")
        if head != b"\x1f\x8b":
            raise VitalReadError(f"{path}: not a .vital file (no gzip header)")
        f.seek(0)
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        first = b""
        try:
            while chunk := f.read(1 << 20):
                out = inflater.decompress(chunk)
                if len(first) < 4:
                    first += out[:4]
                while inflater.eof and inflater.unused_data:
                    rest = inflater.unused_data
                    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
                    inflater.decompress(rest)
        except zlib.error as exc:
            raise VitalReadError(f"{path}: corrupt gzip data ({exc})") from exc
    if not inflater.eof:
        raise VitalReadError(f"{path}: truncated gzip stream (the file ends before the gzip end marker)")
    if first[:4] != b"VITA":
        raise VitalReadError(f"{path}: not a .vital file (no VITA signature after decompression)")


@contextlib.contextmanager
def _vitaldb_int32_fixed():
    """vitaldb with value formats 7/8 read as 4-byte integers (its table has the native
    'l'/'L', 8 bytes here): the one deliberate difference of the fast reader."""
    table = vitaldb.utils.FMT_TYPE_LEN
    saved = table[7], table[8]
    table[7], table[8] = ("<i", 4), ("<I", 4)
    try:
        yield
    finally:
        table[7], table[8] = saved


def oracle(path, names, int32_fixed=True):
    """What vitaldb reads: ``(start, duration, packed, tracks, printed)`` (``printed``: the error
    its packet loop printed, having kept what it read so far; "" if none), or VitalReadError
    with the message of its exception (``int32_fixed``: see _vitaldb_int32_fixed)."""
    check_gzip_stream(path)
    wanted = list(dict.fromkeys(names))
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed), _vitaldb_int32_fixed() if int32_fixed else contextlib.nullcontext():
            vf = vitaldb.VitalFile(str(path), track_names=wanted)
    except Exception as exc:  # the library raises bare exceptions on malformed headers
        raise VitalReadError(f"{path}: malformed .vital content ({type(exc).__name__}: {exc})") from exc
    message = printed.getvalue().strip()
    assert not message or message.startswith("Error in reading file: "), message
    start, tracks = vitaldb_tracks(vf, wanted)
    return start, max(0.0, float(vf.dtend) - start), bool(vf.packed), tracks, message


def vitaldb_tracks(vf, wanted) -> tuple[float, dict]:
    """``(start, {name: (seconds from start, values)})`` of the numeric tracks ``vf`` read."""
    start = float(vf.dtstart)
    tracks = {}
    for name in wanted:
        trk = vf.trks.get(name)
        if trk is None or trk.type != 2 or not trk.recs:
            continue
        times = np.fromiter((r["dt"] for r in trk.recs), dtype=np.float64, count=len(trk.recs)) - start
        values = np.fromiter((r["val"] for r in trk.recs), dtype=np.float64, count=len(trk.recs))
        tracks[name] = (times, values)
    return start, tracks


def ours(path, names):
    """read_numeric_tracks as the oracle's tuple, and the report."""
    got = read_numeric_tracks(path, names)
    report = got.report
    reason = report.stop_reason or ""
    raised = reason.startswith("vitaldb's reading error: ") or reason.endswith(("stray bytes at the end",
                                                                                 "stray byte at the end"))
    assert 0 <= report.read_bytes <= report.inflated_bytes and 0 <= report.read_fraction <= 1
    assert report.stop_reason is not None or report.read_fraction == 1.0
    return got.start, got.duration_s, got.packed, got.tracks, raised, report


def _bits(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64).reshape(-1).view(np.int64)


def _outcome(fn, *args):
    try:
        return fn(*args)
    except VitalReadError as exc:
        return ("error", str(exc))


def assert_same(path, names, sequential_too=True):
    """Both readers give the same result (or the same error); the sequential port alone too, with
    the same report as the fast path."""
    want = _outcome(oracle, path, names)
    got = _outcome(ours, path, names)
    _compare(got, want)
    if sequential_too:
        with _no_fast_path():
            seq = _outcome(ours, path, names)
        _compare(seq, want)
        if got[0] != "error":
            assert seq[5] == got[5]
    return want


def _compare(got, want):
    if want[0] == "error" or got[0] == "error":
        assert got == want
        return
    start, duration, packed, tracks, raised = got[:5]
    w_start, w_duration, w_packed, w_tracks, w_raised = want[:5]
    assert raised == bool(w_raised), (got[5:], w_raised)
    assert _bits(start) == _bits(w_start), (start, w_start)
    assert _bits(duration) == _bits(w_duration), (duration, w_duration)
    assert packed == w_packed
    assert list(tracks) == list(w_tracks)
    for name, (times, values) in w_tracks.items():
        g_times, g_values = tracks[name]
        assert g_times.dtype == np.float64 and g_values.dtype == np.float64
        np.testing.assert_array_equal(_bits(g_times), _bits(times), err_msg=f"{name} times")
        np.testing.assert_array_equal(g_values, values, err_msg=f"{name} values")  # NaNs equal
        np.testing.assert_array_equal(_bits(g_values), _bits(values), err_msg=f"{name} value bits")


@contextlib.contextmanager
def _no_fast_path():
    def refuse(*args, **kwargs):
        raise fastread._Fallback

    saved = fastread._parse_fast
    fastread._parse_fast = refuse
    try:
        yield
    finally:
        fastread._parse_fast = saved


@contextlib.contextmanager
def _dense_walkers(stride: int = 96, min_walkers: int = 0, false_anchors: int = 0):
    """Anchors every few packets and numpy walkers down to the last one (small files); with
    ``false_anchors``, that many more anchors at random bytes of value 1 (mostly not packets)."""
    import re

    saved = fastread._ANCHOR_RE, fastread._MIN_WALKERS, fastread._anchors
    fastread._ANCHOR_RE = re.compile(b"\\x00\\x00\\x0a\\x00(?s:.{%d})" % stride)
    fastread._MIN_WALKERS = min_walkers
    if false_anchors:
        real = fastread._anchors

        def anchors(data, p0, last):
            ones = np.flatnonzero(np.frombuffer(data, np.uint8)[p0 + 1 : last + 1] == 1) + p0 + 1
            pick = np.random.default_rng(len(data)).choice(ones, min(false_anchors, ones.size), replace=False)
            return np.unique(np.concatenate([real(data, p0, last), pick]))

        fastread._anchors = anchors
    try:
        yield
    finally:
        fastread._ANCHOR_RE, fastread._MIN_WALKERS, fastread._anchors = saved


# --------------------------------------------------------------------------- raw files


def _pstr(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<I", len(b)) + b


def packet(ptype: int, payload: bytes) -> bytes:
    return struct.pack("<BI", ptype, len(payload)) + payload


def header(dtstart=START, dtend=START + 10.0, packed=None, headerlen=None) -> bytes:
    h = struct.pack("<hIIdd", -540, 0, 0, dtstart, dtend)
    if packed is not None:
        h += bytes([packed])
    if headerlen is not None:
        h = (h + bytes(64))[:headerlen]
    return b"VITA" + struct.pack("<IH", 3, len(h)) + h


def devinfo(did: int, devtype: str, name: str = "", port: str | None = "") -> bytes:
    payload = struct.pack("<I", did) + _pstr(devtype) + _pstr(name)
    if port is not None:
        payload += _pstr(port)
    return packet(9, payload)


def trkinfo(tid, ttype, fmt, name, did=0, srate=0.0, gain=1.0, offset=0.0, reclen=None, cut=None) -> bytes:
    payload = struct.pack("<HBB", tid, ttype, fmt) + _pstr(name) + _pstr("")
    payload += struct.pack("<ffIfddBI", 0, 0, 0xFFFFFFFF, srate, gain, offset, 0, did)
    if reclen is not None:
        payload += struct.pack("<Idd", reclen, 0.0, 0.0)
    if cut is not None:
        payload = payload[:cut]
    return packet(0, payload)


def rec(tid: int, dt: float, value: bytes, infolen: int = 10) -> bytes:
    head = struct.pack("<HdH", infolen, dt, tid)
    return packet(1, head + bytes(max(0, infolen - 10)) + value)


def wave_rec(tid: int, dt: float, samples: np.ndarray) -> bytes:
    return rec(tid, dt, struct.pack("<I", len(samples)) + samples.tobytes())


def cmd_order(tids) -> bytes:
    return packet(6, struct.pack("<BH", 5, len(tids)) + np.asarray(tids, dtype="<u2").tobytes())


def write_raw(path: Path, *parts: bytes) -> Path:
    path.write_bytes(gzip.compress(b"".join(parts), mtime=0))
    return path


def f32(x: float) -> bytes:
    return struct.pack("<f", x)


# --------------------------------------------------------------------------- synthetic cases


@pytest.mark.parametrize(
    "case_id, seed, hours, waves",
    [(1, 0, 0.25, True), (2, 0, 0.25, True), (3, 1, 0.15, False), (4, 1, 0.15, False),
     (5, 2, 0.4, True), (6, 2, 0.3, True), (13, 3, 0.2, True), (14, 3, 0.2, False)],
)
@pytest.mark.parametrize("layout", ["own", "interleaved", "packed"])
def test_synthetic_cases(tmp_path, case_id, seed, hours, waves, layout):
    tracks, _row, start, own = synth_case(case_id, seed=seed, hours=hours, waves=waves)
    path = tmp_path / f"{case_id:04d}.vital"
    write_vital(path, tracks, start, layout=own if layout == "own" else layout)
    names = [t.dtname for t in tracks]
    assert_same(path, SPEC_TRACKS)
    assert_same(path, SPEC_TRACKS + names[:3] + ["EVENT", "Nope/HR"], sequential_too=False)
    assert_same(path, ["HR", "Solar8000/*", "BIS/BIS"], sequential_too=False)  # suffix/device matching
    assert_same(path, [], sequential_too=False)  # no name: vitaldb matches every track
    with _dense_walkers():
        assert_same(path, SPEC_TRACKS, sequential_too=False)
    with _dense_walkers(stride=400, false_anchors=300):
        assert_same(path, SPEC_TRACKS, sequential_too=False)


def test_synthetic_corpus_files_take_the_fast_path(tmp_path, monkeypatch):
    for case_id in (1, 2):
        tracks, _row, start, layout = synth_case(case_id, seed=4, hours=0.3, waves=True)
        path = tmp_path / f"{case_id}.vital"
        write_vital(path, tracks, start, layout=layout)
        with monkeypatch.context() as m:
            m.setattr(fastread, "_parse_sequential", _only_header_part(fastread._parse_sequential))
            got = ours(path, SPEC_TRACKS)
        _compare(got, oracle(path, SPEC_TRACKS))
        assert got[3]
        assert got[5].stop_reason is None and got[5].read_bytes > 0


def _only_header_part(real):
    def wrapper(data, pos, st, names, stop_at_rec, hard_end=False):
        assert stop_at_rec, "the fast path fell back to the sequential parser"
        return real(data, pos, st, names, stop_at_rec, hard_end)

    return wrapper


# --------------------------------------------------------------------------- hand-built files


def _num(device, name, times, values, **kw):
    return TrackData(device, name, "num", np.asarray(times, dtype=float), np.asarray(values), **kw)


@pytest.mark.parametrize("layout", ["interleaved", "packed"])
def test_gain_offset_and_integer_formats(tmp_path, layout):
    rng = np.random.default_rng(3)
    t = np.sort(rng.uniform(0, 900, 400))
    tracks = [
        _num("Dev", "GAINED", t, rng.normal(50, 20, t.size), gain=0.5, offset=-3.0),
        _num("Dev", "I8", t, rng.integers(-128, 128, t.size), fmt=3, gain=2.0),
        _num("Dev", "U8", t, rng.integers(0, 256, t.size), fmt=4, offset=1.0),
        _num("Dev", "I16", t, rng.integers(-32768, 32768, t.size), fmt=5),
        _num("Dev", "U16", t, rng.integers(0, 65536, t.size), fmt=6),
        _num("Dev", "F64", t, rng.normal(0, 1e6, t.size), fmt=2),
        TrackData("SNUADC", "ECG", "wave", np.arange(0.0, 20.0), [rng.integers(-900, 900, 100) for _ in range(20)],
                  srate=100.0, fmt=5, gain=0.01),
        TrackData("", "EVENT", "str", np.array([5.0, 50.0]), ["start", "x" * 300]),
        TrackData("Dev", "NOTE", "str", t[:50], [f"n{i}" for i in range(50)]),
    ]
    path = tmp_path / "g.vital"
    write_vital(path, tracks, start=START, layout=layout)
    names = [tr.dtname for tr in tracks]
    want = assert_same(path, names)
    assert set(want[3]) == {"Dev/GAINED", "Dev/I8", "Dev/U8", "Dev/I16", "Dev/U16", "Dev/F64"}
    np.testing.assert_array_equal(want[3]["Dev/I8"][1], tracks[1].values)  # stored values: no gain
    assert_same(path, ["Dev/I16"])
    assert_same(path, ["SNUADC/ECG", "Dev/U8"])
    with _dense_walkers(stride=40):
        assert_same(path, names, sequential_too=False)


def test_int32_formats_where_vitaldb_reads_them(tmp_path):
    # vitaldb reads fmt 7/8 with the platform's 'l'/'L' (8 bytes): records that carry the
    # value's sign extension after it read right there, and must read the same here
    vals7 = [-5, 7, -(2**31), 2**31 - 1, 0]
    vals8 = [0, 1, 2**32 - 1, 12345]
    parts = [header(), devinfo(1, "Dev", "Dev"), trkinfo(1, 2, 7, "I32", did=1), trkinfo(2, 2, 8, "U32", did=1)]
    for i, v in enumerate(vals7):
        parts.append(rec(1, START + i, struct.pack("<q", v)))
    for i, v in enumerate(vals8):
        parts.append(rec(2, START + i + 0.5, struct.pack("<Q", v)))
    path = write_raw(tmp_path / "i32.vital", *parts)
    _compare(_outcome(ours, path, ["Dev/I32", "Dev/U32"]),
             oracle(path, ["Dev/I32", "Dev/U32"], int32_fixed=False))
    want = assert_same(path, ["Dev/I32", "Dev/U32"])
    np.testing.assert_array_equal(want[3]["Dev/I32"][1], vals7)
    np.testing.assert_array_equal(want[3]["Dev/U32"][1], vals8)


@pytest.mark.parametrize("layout", ["interleaved", "packed"])
def test_int32_formats_deliberate_difference(tmp_path, layout):
    """Records of 4-byte values (as every writer makes them) make vitaldb fail on 64-bit Linux;
    they are read as int32/uint32 here."""
    t = np.arange(0.0, 100.0, 5.0)
    i32 = np.arange(t.size, dtype=np.int64) * 100_000_000 - 10**9
    u32 = np.arange(t.size, dtype=np.int64) * 200_000_000
    tracks = [_num("Dev", "I32", t, i32, fmt=7), _num("Dev", "U32", t, u32, fmt=8), _num("Dev", "HR", t, t)]
    path = tmp_path / "i32.vital"
    write_vital(path, tracks, start=START, layout=layout)
    # vitaldb's packet loop raises at the first such record (and keeps what it read before)
    assert "unpack_from requires a buffer of at least" in oracle(path, ["Dev/I32"], int32_fixed=False)[4]
    assert_same(path, ["Dev/I32", "Dev/U32", "Dev/HR"])  # vitaldb with the 4-byte formats: the same
    for sequential in (False, True):
        with _no_fast_path() if sequential else contextlib.nullcontext():
            got = read_numeric_tracks(path, ["Dev/I32", "Dev/U32", "Dev/HR"]).tracks
        np.testing.assert_array_equal(got["Dev/I32"][1], i32)
        np.testing.assert_array_equal(got["Dev/U32"][1], u32)
        np.testing.assert_array_equal(got["Dev/I32"][0], t)
    assert_same(path, ["Dev/HR"])  # not reading the int32 tracks: vitaldb skips them unharmed


def test_track_without_devinfo_unknown_tids_and_unknown_packets(tmp_path):
    parts = [
        header(),
        packet(42, b"future packet before the tracks"),
        devinfo(1, "Solar8000", ""),  # no name: the devtype names the device
        devinfo(2, "", "Named", port=None),
        trkinfo(1, 2, 1, "HR", did=1),
        trkinfo(2, 2, 1, "ORPHAN", did=7),  # device id without devinfo: the bare name
        trkinfo(3, 2, 1, "BARE", did=0),
        trkinfo(4, 2, 1, "SPO2", did=2),
        trkinfo(5, 2, 99, "BADFMT", did=1),  # unknown format: vitaldb ignores the track
        trkinfo(6, 5, 0, "EVENT"),
    ]
    rng = random.Random(1)
    for i in range(300):
        tid = rng.choice([1, 2, 3, 4, 5, 6, 9, 300])  # 9 and 300: no trkinfo
        dt = START + i * 0.7
        if tid == 6:
            parts.append(rec(6, dt, struct.pack("<I", 0) + _pstr("evt")))
        else:
            parts.append(rec(tid, dt, f32(rng.uniform(0, 100))))
        if i % 37 == 0:
            parts.append(packet(rng.choice([2, 3, 7, 200]), bytes(rng.randrange(1, 40))))  # unknown types
    path = write_raw(tmp_path / "misc.vital", *parts)
    names = ["Solar8000/HR", "ORPHAN", "BARE", "Named/SPO2", "Solar8000/BADFMT", "EVENT", "Dev7/ORPHAN"]
    want = assert_same(path, names)
    assert set(want[3]) == {"Solar8000/HR", "ORPHAN", "BARE", "Named/SPO2"}
    assert_same(path, ["HR"])
    with _dense_walkers(stride=30):
        assert_same(path, names, sequential_too=False)


def test_short_records_and_odd_infolen(tmp_path):
    parts = [header(dtstart=0.0, dtend=0.0), trkinfo(1, 2, 1, "A"), trkinfo(2, 2, 2, "B"),
             trkinfo(3, 1, 5, "W", srate=50.0)]
    for i in range(200):
        dt = START - 100 + i if i % 5 else 0.0  # zero times: vitaldb's dtstart rule
        parts.append(rec(1, dt, f32(i), infolen=10 + (i % 3)))
        parts.append(rec(2, dt + 0.1, struct.pack("<d", i)[: 8 if i % 4 else 5]))  # some cut short
        parts.append(packet(1, struct.pack("<Hd", 10, dt)[: i % 11 + 1]))  # records shorter than 12 bytes
        if i % 10 == 0:
            parts.append(wave_rec(3, dt, np.arange(i % 7 * 10, dtype="<i2")))
            parts.append(packet(1, struct.pack("<HdHI", 10, dt + 1, 3, 1000) + bytes(10)))  # wave cut short
    path = write_raw(tmp_path / "short.vital", *parts)
    for names in (["A", "B"], ["A", "B", "W"], ["B"], []):
        assert_same(path, names)
        with _dense_walkers(stride=20):
            assert_same(path, names, sequential_too=False)


def test_cmd_packets_event_reset_and_order(tmp_path):
    parts = [header(), trkinfo(1, 2, 1, "EVENT"), trkinfo(2, 2, 1, "HR")]
    for i in range(100):
        parts.append(rec(1, START + i, f32(i)))
        parts.append(rec(2, START + i, f32(-i)))
        if i == 40:
            parts.append(packet(6, bytes([6])))  # reset events
        if i == 60:
            parts.append(cmd_order([2, 1, 7]))
    path = write_raw(tmp_path / "cmd.vital", *parts)
    want = assert_same(path, ["EVENT", "HR"])
    assert want[3]["EVENT"][0].size == 59
    with _dense_walkers(stride=20):
        assert_same(path, ["EVENT", "HR"], sequential_too=False)
    # a cmd packet too short for its track order: vitaldb fails
    short_order = packet(6, struct.pack("<BH", 5, 9) + b"\x01\x00")
    bad = write_raw(tmp_path / "cmd-bad.vital", *parts[:50], short_order, *parts[50:])
    assert_same(bad, ["HR"])
    # changed: vitaldb prints the error and keeps what it read before the packet; so does the
    # reader now (it raised VitalReadError "... Error in reading file: buffer is too small ...")
    got = read_numeric_tracks(bad, ["HR"])
    assert got.report.stop_reason.startswith("vitaldb's reading error: buffer is too small")
    assert got.report.read_bytes == len(b"".join(parts[:50]))
    assert got.tracks["HR"][0].size == 23  # the records before it


def test_raw_device_packets_and_redefined_tracks(tmp_path):
    raw = struct.pack("<d", START) + _pstr("COM1") + bytes([1]) + struct.pack("<I", 3) + b"abc"
    parts = [header(), packet(10, raw), trkinfo(1, 2, 1, "HR"), trkinfo(2, 2, 1, "HR")]
    for i in range(50):
        parts.append(rec(1 + i % 2, START + i, f32(i)))
        if i == 20:
            parts.append(trkinfo(3, 2, 2, "HR"))  # redefined mid-file: records so far are dropped
            parts.append(packet(10, raw))
        if i == 30:
            parts.append(trkinfo(1, 2, 1, "OTHER"))  # tid 1 now names a track not asked for
    path = write_raw(tmp_path / "redef.vital", *parts)
    assert_same(path, ["HR"])
    assert_same(path, ["HR", "OTHER"])
    # a raw packet too short for its fields: vitaldb fails (UnboundLocalError and all)
    for cut in (4, 8, 10, 13, 14, 17):
        bad = write_raw(tmp_path / f"raw{cut}.vital", header(), trkinfo(1, 2, 1, "HR"), rec(1, START, f32(1)),
                        packet(10, raw[:cut]), rec(1, START + 1, f32(2)))
        assert_same(bad, ["HR"])


@pytest.mark.parametrize("packed", [0, 1])
def test_stopping_packets(tmp_path, packed):
    base = [header(packed=packed), trkinfo(1, 2, 1, "HR"), trkinfo(2, 1, 1, "W", srate=100.0)]
    recs = [rec(1, START + i, f32(i)) for i in range(30)]
    big = wave_rec(2, START + 5, np.zeros(260_000, dtype="<f4"))  # > 1 MB: vitaldb stops in non-packed files
    for i, extra in enumerate([packet(1, b""), big, packet(77, b""), b"\x01\x02", b"\x01", b"\x01\x05\x00\x00\x00"]):
        path = write_raw(tmp_path / f"stop{i}.vital", *base, *recs[:10], extra, *recs[10:])
        assert_same(path, ["HR", "W"])
        assert_same(path, ["HR"])
        end = write_raw(tmp_path / f"end{i}.vital", *base, *recs, extra)
        assert_same(end, ["HR"])


@pytest.mark.parametrize("headerlen", [0, 1, 2, 10, 25, 26, 27, 30])
def test_header_lengths(tmp_path, headerlen):
    parts = [header(packed=1, headerlen=headerlen), trkinfo(1, 2, 1, "HR")]
    parts += [rec(1, START + i, f32(i)) for i in range(20)]
    assert_same(write_raw(tmp_path / "h.vital", *parts), ["HR"])
    for cut in (4, 6, 8, 9, 10, 12):
        assert_same(write_raw(tmp_path / f"h{cut}.vital", b"".join(parts)[:cut]), ["HR"])


def test_packed_skips_and_early_stop(tmp_path):
    """Packed files: vitaldb skips unwanted tracks by their trkinfo's byte count and stops
    after the last wanted block -- also when those counts are wrong."""
    rng = random.Random(5)
    blocks = {tid: [rec(tid, START + i * tid, f32(i)) for i in range(40 + tid)] for tid in (1, 2, 3, 4)}
    sizes = {tid: sum(map(len, b)) for tid, b in blocks.items()}
    for trial in range(30):
        reclens = {tid: rng.choice([sizes[tid], sizes[tid], 0, sizes[tid] + rng.randrange(-60, 60), 21, 10**9])
                   for tid in blocks}
        parts = [header(packed=1)] + [trkinfo(tid, 2, 1, f"T{tid}", reclen=reclens[tid]) for tid in blocks]
        parts += [r for tid in blocks for r in blocks[tid]] + [cmd_order([1, 2, 3, 4])]
        path = write_raw(tmp_path / f"p{trial}.vital", *parts)
        for names in (["T1"], ["T2"], ["T3", "T1"], ["T4"], ["T1", "T2", "T3", "T4"], []):
            assert_same(path, names, sequential_too=trial < 5)


# --------------------------------------------------------------------------- truncated files


@pytest.mark.parametrize("case_id, waves", [(1, True), (2, True), (3, False), (4, False)])
def test_cut_at_random_points(tmp_path, case_id, waves):
    tracks, _row, start, layout = synth_case(case_id, seed=7, hours=0.1, waves=waves)
    src = tmp_path / "full.vital"
    write_vital(src, tracks, start, layout=layout)
    data = gzip.decompress(src.read_bytes())
    rng = random.Random(case_id)
    cuts = sorted({rng.randrange(0, len(data)) for _ in range(25)} | {0, 4, 9, 10, 30, 200, len(data) - 1})
    for k, cut in enumerate(cuts):
        path = write_raw(tmp_path / f"cut{k}.vital", data[:cut])
        assert_same(path, SPEC_TRACKS, sequential_too=k % 5 == 0)


# --------------------------------------------------------------------------- Hypothesis

_NAMES = ["HR", "SPO2", "EVENT", "X"]


@st.composite
def numeric_files(draw):
    n_tracks = draw(st.integers(1, 4))
    tracks = []
    for i in range(n_tracks):
        fmt = draw(st.sampled_from([1, 2, 3, 4, 5, 6]))
        n = draw(st.integers(0, 60))
        times = draw(st.lists(st.floats(-1e4, 1e5, allow_nan=False), min_size=n, max_size=n))
        dtype = fastread._FMT_NP[fmt]
        if dtype.kind == "f":
            values = draw(st.lists(st.floats(width=32 if fmt == 1 else 64), min_size=n, max_size=n))
        else:
            info = np.iinfo(dtype)
            values = draw(st.lists(st.integers(int(info.min), int(info.max)), min_size=n, max_size=n))
        device = draw(st.sampled_from(["", "Solar8000", "Primus"]))
        tracks.append(TrackData(device, f"{_NAMES[i]}", "num", np.array(times, dtype=float),
                                np.array(values, dtype=dtype), fmt=fmt))
    layout = draw(st.sampled_from(["interleaved", "packed"]))
    start = draw(st.sampled_from([0.0, START, -5.0]))
    asked = draw(st.lists(st.sampled_from([t.dtname for t in tracks] + ["HR", "Nope/X", "Primus/*"]), max_size=4))
    return tracks, layout, start, asked


@FUZZ
@given(numeric_files())
def test_random_numeric_tracks(tmp_path, spec):
    tracks, layout, start, asked = spec
    dtnames = [t.dtname for t in tracks]
    if len(set(dtnames)) != len(dtnames):
        return
    path = tmp_path / "r.vital"
    write_vital(path, tracks, start=start, layout=layout)
    assert_same(path, asked)
    with _dense_walkers(stride=8):
        assert_same(path, asked, sequential_too=False)
    with _dense_walkers(stride=30, false_anchors=20):
        assert_same(path, asked, sequential_too=False)


@st.composite
def random_packets(draw):
    """Byte streams from packets of every kind, with random lengths, ids and cut-off fields."""
    parts = [header(dtstart=draw(st.sampled_from([0.0, START, float("nan"), -1.0])),
                    dtend=draw(st.sampled_from([0.0, START + 50])),
                    packed=draw(st.sampled_from([None, 0, 1])))]
    tids = st.integers(0, 5)
    dts = st.sampled_from([0.0, -0.0, START, START + 1, START - 1, float("nan"), 1.0, -3.0, float("inf")])
    for _ in range(draw(st.integers(0, 40))):
        kind = draw(st.sampled_from(["rec"] * 6 + ["num"] * 6 + ["trk", "dev", "cmd", "raw", "other", "wave"]))
        if kind in ("rec", "num"):
            tid = draw(tids)
            value = draw(st.binary(max_size=10))
            infolen = draw(st.sampled_from([10, 10, 10, 0, 12, 300]))
            parts.append(rec(tid, draw(dts), value, infolen=infolen))
        elif kind == "wave":
            n = draw(st.integers(0, 20))
            parts.append(wave_rec(draw(tids), draw(dts), np.arange(n, dtype="<i2"))[: draw(st.integers(5, 60))])
        elif kind == "trk":
            parts.append(trkinfo(draw(tids), draw(st.sampled_from([1, 2, 2, 5, 3])), draw(st.integers(0, 9)),
                                 draw(st.sampled_from(_NAMES)), did=draw(st.integers(0, 3)),
                                 srate=draw(st.sampled_from([0.0, 100.0, float("nan")])),
                                 reclen=draw(st.sampled_from([None, 0, 21, 50, 10**6])),
                                 cut=draw(st.sampled_from([None, None, 3, 8, 12, 20, 40, 70]))))
        elif kind == "dev":
            parts.append(devinfo(draw(st.integers(0, 3)), draw(st.sampled_from(["", "Solar8000"])),
                                 draw(st.sampled_from(["", "Primus"])), port=draw(st.sampled_from([None, "", "COM"]))))
        elif kind == "cmd":
            parts.append(packet(6, draw(st.binary(min_size=1, max_size=8))))
        elif kind == "raw":
            parts.append(packet(10, draw(st.binary(max_size=30))))
        else:
            parts.append(packet(draw(st.sampled_from([2, 3, 4, 7, 8, 11, 255])), draw(st.binary(max_size=12))))
    data = b"".join(parts)
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    choices = ["HR", "SPO2", "EVENT", "X", "Solar8000/HR", "Primus/SPO2", "Solar8000/*", ""]
    asked = draw(st.lists(st.sampled_from(choices), max_size=3))
    return data, asked


@FUZZ
@given(random_packets())
def test_random_packet_streams(tmp_path, spec):
    data, asked = spec
    path = write_raw(tmp_path / "p.vital", data)
    assert_same(path, asked)
    with _dense_walkers(stride=8, false_anchors=10):
        assert_same(path, asked, sequential_too=False)


@FUZZ
@given(st.data())
def test_flipped_bytes(tmp_path, data):
    """A valid small file with some bytes changed after the header part."""
    layout = data.draw(st.sampled_from(["interleaved", "packed"]))
    key = ("flip", layout)
    if key not in _CACHE:
        tracks, _row, start, _ = synth_case(3, seed=9, hours=0.1, waves=True)
        small = [t for t in tracks if t.kind != "wave"][:8] + [t for t in tracks if t.kind == "wave"][:1]
        path = tmp_path / "src.vital"
        write_vital(path, small, start, layout=layout)
        raw = gzip.decompress(path.read_bytes())
        _CACHE[key] = (raw, [t.dtname for t in small])
    raw, names = _CACHE[key]
    buf = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(len(buf) // 50, len(buf) - 1))
        buf[i] = data.draw(st.integers(0, 255))
    path = write_raw(tmp_path / "f.vital", bytes(buf))
    asked = data.draw(st.lists(st.sampled_from(names + [""]), min_size=0, max_size=4))
    assert_same(path, asked, sequential_too=False)
    with _dense_walkers(stride=200, false_anchors=50):
        assert_same(path, asked, sequential_too=False)


_CACHE: dict = {}


# --------------------------------------------------------------------------- gzip-level errors


def _valid_gzip(tmp_path) -> bytes:
    path = tmp_path / "valid.vital"
    write_vital(path, [_num("Solar8000", "HR", np.arange(0.0, 600.0, 2.0), np.full(300, 70.0))], start=START)
    return path.read_bytes()


def _made_gzip(tmp_path, monkeypatch, inflater, make):
    """``make`` applied to a valid file's bytes, written as 0007.vital, read with ``inflater``."""
    if inflater == "zlib":
        monkeypatch.setattr(fastread, "_INFLATERS", [("zlib", zlib)])
    blob = make(_valid_gzip(tmp_path))
    path = tmp_path / "0007.vital"
    path.write_bytes(blob)
    return blob, path


@pytest.mark.parametrize("inflater", ["default", "zlib"])
@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda b: b"", "empty file"),
        (lambda b: b"\x1f", "not a .vital file (no gzip header)"),
        (lambda b: b"caseid,age\n1,40\n", "not a .vital file (no gzip header)"),
        (lambda b: b[:12], "no .vital content before the gzip data ends (the gzip stream is cut short"),
        (lambda b: b[:20] + bytes(x ^ 0xFF for x in b[20:60]) + b[60:], "corrupt gzip data"),
        (lambda b: b[:-8] + bytes([b[-8] ^ 1]) + b[-7:], "corrupt gzip data"),  # a damaged first member
        (lambda b: b[:3] + b"\xe0" + b[4:], "corrupt gzip data"),  # reserved flag bits
        (lambda b: gzip.compress(b"hello, this is not a recording"),
         "not a .vital file (no VITA signature after decompression)"),
        # changed: a stream cut short, a zero byte or garbage after the stream failed ("truncated
        # gzip stream", "corrupt gzip data"); they are read now as vitaldb reads them
        # (test_gzip_problems_read_as_vitaldb_reads_them)
    ],
)
def test_broken_gzip(tmp_path, monkeypatch, inflater, make, reason):
    blob, path = _made_gzip(tmp_path, monkeypatch, inflater, make)
    for source, label in ((path, str(path)), (blob, "<bytes>")):
        with pytest.raises(VitalReadError) as info:
            read_numeric_tracks(source, ["Solar8000/HR"])
        message = str(info.value)
        assert message.startswith(f"{label}: ") and reason in message


@pytest.mark.parametrize("inflater", ["default", "zlib"])
@pytest.mark.parametrize(
    "make, note",
    [
        (lambda b: b[: len(b) // 2], "the gzip stream is cut short (file truncated)"),
        (lambda b: b + b"\x00", "1 byte of zero padding after the gzip data"),
        (lambda b: b + b"garbage after the stream", "24 stray bytes after the gzip data ignored"),
    ],
)
def test_gzip_problems_read_as_vitaldb_reads_them(tmp_path, monkeypatch, inflater, make, note):
    blob, path = _made_gzip(tmp_path, monkeypatch, inflater, make)
    got = read_numeric_tracks(path, ["Solar8000/HR"])
    assert got.report.gzip_note == note and got.report.file_bytes == len(blob)
    with contextlib.redirect_stdout(io.StringIO()), _vitaldb_int32_fixed():
        vf = vitaldb.VitalFile(str(path), track_names=["Solar8000/HR"])
    recs = vf.trks["Solar8000/HR"].recs if "Solar8000/HR" in vf.trks else []
    assert got.tracks.get("Solar8000/HR", ((),))[0].size == len(recs) and got.start == vf.dtstart


def test_concatenated_gzip_members(tmp_path):
    data = gzip.decompress(_valid_gzip(tmp_path))
    cut = len(data) // 3
    path = tmp_path / "multi.vital"
    path.write_bytes(gzip.compress(data[:cut], mtime=0) + gzip.compress(data[cut:], mtime=0))
    assert_same(path, ["Solar8000/HR"])
    got = read_numeric_tracks(path.read_bytes(), ["Solar8000/HR"])
    assert got.tracks["Solar8000/HR"][0].size == 300 and got.report.gzip_note is None


def test_bytes_and_path_give_the_same(tmp_path):
    tracks, _row, start, layout = synth_case(2, seed=1, hours=0.1, waves=False)
    path = tmp_path / "b.vital"
    write_vital(path, tracks, start, layout=layout)
    from_bytes, from_path = ours(path.read_bytes(), SPEC_TRACKS), ours(str(path), SPEC_TRACKS)
    _compare(from_bytes, from_path)
    assert from_bytes[5] == from_path[5]


def test_one_name_as_a_string_and_zero_times(tmp_path):
    parts = [header(dtstart=0.0, dtend=0.0), trkinfo(1, 2, 1, "HR")]
    parts += [rec(1, -0.0 if i % 2 else 0.0, f32(i)) for i in range(30)]
    path = write_raw(tmp_path / "z.vital", *parts)
    assert_same(path, ["HR"])
    _compare(ours(path, "HR"), ours(path, ["HR"]))


def test_inflater_is_the_fastest_installed():
    assert fastread.INFLATER in {"isal", "zlib-ng", "zlib"}
    assert fastread._INFLATERS[-1][0] == "zlib"
