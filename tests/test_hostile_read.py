"""Hostile .vital files: decompression bombs, gzip data that does not end cleanly, packets that
stop the reading, implausible times, files without the wanted tracks, random mutations.

Where vitaldb reads a file, the reader gives vitaldb's start, duration, layout flag and records
bit for bit (``vitaldb.VitalFile``, with value formats 7/8 as 4-byte integers, the one deliberate
difference in the packet reading) and a report of how much it read; everything else is a
one-line `VitalReadError` naming the file.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import math
import os
import random
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vitaldb  # the oracle: imported by the tests only

from test_fastread import (
    SPEC_TRACKS, START, _no_fast_path, _vitaldb_int32_fixed, cmd_order, devinfo, f32, header, packet, rec, trkinfo,
    vitaldb_tracks, write_raw,
)
from vitalflow.errors import VitalReadError
from vitalflow.vital import fastread
from vitalflow.vital.fastread import EARLIEST_START, LATEST_START, MAX_INFLATED_BYTES, read_numeric_tracks
from vitalflow.vital.read import ReadReport, Recording, read_vital
from vitalflow.synth import synth_case
from vitalflow.vital.write import TrackData, write_vital

ROOT = Path(__file__).resolve().parents[1]
FUZZ = settings(
    max_examples=int(os.environ.get("VITALFLOW_FUZZ_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# --------------------------------------------------------------------------- the oracle


def vitaldb_reads(path, names):
    """What ``vitaldb.VitalFile`` holds after reading ``path`` -- ``(start, end, packed, tracks)``
    -- whatever it printed (an error of its packet loop, of gzip past the content), or
    ``("error", message)`` where it raises."""
    wanted = list(dict.fromkeys(names))
    try:
        with contextlib.redirect_stdout(io.StringIO()), _vitaldb_int32_fixed():
            vf = vitaldb.VitalFile(str(path), track_names=wanted)
    except Exception as exc:
        return ("error", f"{type(exc).__name__}: {exc}")
    start, tracks = vitaldb_tracks(vf, wanted)
    return start, float(vf.dtend), bool(vf.packed), tracks


def _bits(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64).reshape(-1).view(np.int64)


def assert_reads_as_vitaldb(path, names, sequential_too=True, **kwargs):
    """The reader's result equals vitaldb's bit for bit (or both fail), and the sequential port
    gives the same result and report as the fast path; returns it (None if failed)."""
    want = vitaldb_reads(path, names)
    try:
        got = read_numeric_tracks(path, names, **kwargs)
    except VitalReadError as exc:
        assert want[0] == "error", f"the reader failed ({exc}) where vitaldb reads the file"
        assert str(exc).startswith(f"{path}: ") and "\n" not in str(exc)
        return None
    if sequential_too:
        with _no_fast_path():
            seq = read_numeric_tracks(path, names, **kwargs)
        assert seq.report == got.report
        assert _bits(seq.start) == _bits(got.start) and _bits(seq.end) == _bits(got.end)
        assert list(seq.tracks) == list(got.tracks)
        for name, (times, values) in got.tracks.items():
            np.testing.assert_array_equal(_bits(seq.tracks[name][0]), _bits(times))
            np.testing.assert_array_equal(_bits(seq.tracks[name][1]), _bits(values))
    assert want[0] != "error", f"vitaldb fails ({want[1]}), the reader gives {got.report}"
    start, end, packed, tracks = want
    assert _bits(got.start) == _bits(start) and _bits(got.end) == _bits(end)
    assert _bits(got.duration_s) == _bits(max(0.0, end - start))
    assert got.packed == packed
    assert list(got.tracks) == list(tracks)
    for name, (times, values) in tracks.items():
        np.testing.assert_array_equal(_bits(got.tracks[name][0]), _bits(times), err_msg=f"{name} times")
        np.testing.assert_array_equal(_bits(got.tracks[name][1]), _bits(values), err_msg=f"{name} values")
    _check_report(got.report, path)
    return got


def _check_report(report: ReadReport, path=None):
    assert 0 <= report.read_bytes <= report.inflated_bytes
    if path is not None and not isinstance(path, (bytes, bytearray)):
        assert report.file_bytes == Path(path).stat().st_size
    if report.stop_reason is None:
        assert report.read_fraction == 1.0
    else:
        assert "\n" not in report.stop_reason and report.read_fraction == report.read_bytes / report.inflated_bytes
    assert report.gzip_note is None or "\n" not in report.gzip_note
    assert len(set(report.track_names)) == len(report.track_names)


# --------------------------------------------------------------------------- files


def _tracks():
    t = np.arange(0.0, 600.0, 2.0)
    return [
        TrackData("Solar8000", "HR", "num", t, 70 + np.sin(t / 50) * 5),
        TrackData("Primus", "ETCO2", "num", np.arange(100.0, 600.0, 7.0), np.full(72, 36.0)),
        TrackData("SNUADC", "ECG_II", "wave", np.arange(0.0, 10.0), [np.sin(np.arange(500) / 9.0) for _ in range(10)],
                  srate=500.0, fmt=1),
    ]


NAMES = ["Solar8000/HR", "Primus/ETCO2", "SNUADC/ECG_II"]


def _content(tmp_path, layout) -> bytes:
    path = tmp_path / f"src-{layout}.vital"
    write_vital(path, _tracks(), start=START, layout=layout)
    return gzip.decompress(path.read_bytes())


def _gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def _deflate_piece(data: bytes) -> bytes:
    co = zlib.compressobj(9, zlib.DEFLATED, -15)
    return co.compress(data) + co.flush(zlib.Z_FULL_FLUSH)  # byte-aligned, no back references


def zeros_member(prefix: bytes, chunks: int, chunk: int = 1 << 24) -> bytes:
    """One gzip member of ``prefix`` and ``chunks * chunk`` zero bytes, built in milliseconds from
    one compressed chunk repeated (the CRC is right only for small members)."""
    body = _deflate_piece(prefix) + _deflate_piece(bytes(chunk)) * chunks + b"\x03\x00"
    size = len(prefix) + chunks * chunk
    crc = zlib.crc32(prefix + bytes(chunks * chunk)) if size < (64 << 20) else 0
    return b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff" + body + struct.pack("<II", crc, size & 0xFFFFFFFF)


VITA_HEAD = header()  # a Vital header: the bombs look like recordings


# --------------------------------------------------------------------------- 1. decompression bombs


_BOMB_CHILD = r"""
import json, sys, time, zlib
from vitalflow.errors import VitalReadError
from vitalflow.vital import fastread
from vitalflow.vital.read import read_vital
if sys.argv[2] == "zlib":
    fastread._INFLATERS = [("zlib", zlib)]
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
before = hwm()
t = time.perf_counter()
try:
    read_vital(sys.argv[1], ["Solar8000/HR"], max_inflated_bytes=64_000_000)
    message = None
except VitalReadError as exc:
    message = str(exc)
print(json.dumps({"seconds": time.perf_counter() - t, "growth": hwm() - before, "message": message}))
"""


@pytest.mark.parametrize("inflater", ["default", "zlib"])
def test_decompression_bomb_fails_fast_in_bounded_memory(tmp_path, inflater):
    path = tmp_path / "0042.vital"
    path.write_bytes(zeros_member(VITA_HEAD, 192))  # 3 MB inflating to 3 GiB
    assert path.stat().st_size < 4_000_000
    out = subprocess.run([sys.executable, "-c", _BOMB_CHILD, str(path), inflater], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["message"] == (
        f"{path}: inflates to more than 64 MB (the limit max_inflated_bytes=64000000); "
        "a decompression bomb or an unusually large recording"
    )
    assert result["seconds"] < 5
    assert result["growth"] < 400e6, result  # the limit and some working room, nowhere near 3 GiB


def test_bomb_of_many_members_counts_them_all(tmp_path):
    path = tmp_path / "many.vital"
    path.write_bytes(zeros_member(VITA_HEAD, 1, 1 << 20) + zeros_member(b"", 1, 1 << 20) * 40)  # 41 MB in all
    with pytest.raises(VitalReadError, match=r"many\.vital: inflates to more than 5 MB .*decompression bomb"):
        read_vital(path, ["HR"], max_inflated_bytes=5_000_000)
    report = read_numeric_tracks(path, ["HR"], max_inflated_bytes=50_000_000).report
    assert report.inflated_bytes == len(VITA_HEAD) + (41 << 20)


def test_limit_is_the_content_size(tmp_path, monkeypatch):
    data = _content(tmp_path, "interleaved")
    path = write_raw(tmp_path / "0001.vital", data)
    assert read_vital(path, NAMES, max_inflated_bytes=len(data)).report.inflated_bytes == len(data)
    assert len(data) < 1_000_000
    with pytest.raises(VitalReadError, match=f"0001.vital: inflates to more than {len(data) - 1} bytes "):
        read_vital(path, NAMES, max_inflated_bytes=len(data) - 1)
    monkeypatch.setattr(fastread, "MAX_INFLATED_BYTES", len(data) - 1)  # the default limit
    with pytest.raises(VitalReadError, match="decompression bomb"):
        read_vital(path, NAMES)
    with pytest.raises(VitalReadError, match="decompression bomb"):
        fastread.inflate(path)
    assert MAX_INFLATED_BYTES == 2_000_000_000


def test_file_larger_than_the_limit_is_not_read(tmp_path):
    path = tmp_path / "big.vital"
    path.write_bytes(_gz(b"VITA" + random.Random(1).randbytes(3 << 20)))  # incompressible: 3 MB
    with pytest.raises(VitalReadError, match=r"big\.vital: the file \(\d+ bytes\) is larger than its content may be"):
        read_vital(path, ["HR"], max_inflated_bytes=1_000_000)
    with pytest.raises(ValueError, match="max_inflated_bytes"):
        read_vital(path, ["HR"], max_inflated_bytes=0)


# --------------------------------------------------------------------------- 2. tolerated gzip problems


def _cuts(data: bytes, seed: int, k: int = 6) -> list[int]:
    rng = random.Random(seed)
    return sorted({len(data), len(data) - 3, 100, *(rng.randrange(20, len(data)) for _ in range(k))})


@pytest.mark.parametrize("layout", ["interleaved", "packed"])
@pytest.mark.parametrize("padding", [1, 512, 4096])
def test_zero_padding_after_the_gzip_data(tmp_path, layout, padding):
    data = _content(tmp_path, layout)
    for cut in _cuts(data, padding):
        path = tmp_path / f"pad{cut}.vital"
        path.write_bytes(_gz(data[:cut]) + bytes(padding))
        got = assert_reads_as_vitaldb(path, NAMES)
        assert got.report.gzip_note == f"{padding} byte{'s' * (padding > 1)} of zero padding after the gzip data"
        if cut == len(data):
            assert got.report.stop_reason is None and set(got.tracks) == set(NAMES[:2])


@pytest.mark.parametrize("layout", ["interleaved", "packed"])
@pytest.mark.parametrize("junk", [b"\x01", b"\x1f", b"garbage", bytes(9) + b"junk", b"\x1f\x8c\x08"])
def test_stray_bytes_after_the_gzip_data(tmp_path, layout, junk):
    data = _content(tmp_path, layout)
    for cut in _cuts(data, len(junk)):
        path = tmp_path / f"junk{cut}.vital"
        path.write_bytes(_gz(data[:cut]) + junk)
        got = assert_reads_as_vitaldb(path, NAMES)
        assert got.report.gzip_note == f"{len(junk)} stray byte{'s' * (len(junk) > 1)} after the gzip data ignored"
        assert set(got.tracks) == set(NAMES[:2]) or cut < len(data)


def _damaged_members(second: bytes) -> dict[str, bytes]:
    """A second gzip member damaged before it yields any content."""
    return {
        "compression method": second[:2] + b"\x09" + second[3:],
        "block type": second[:10] + b"\x07" + second[11:],  # BFINAL=1, BTYPE=11: invalid
        "garbage after the magic": b"\x1f\x8b" + b"\xff" * 30,
    }


@pytest.mark.parametrize("layout", ["interleaved", "packed"])
@pytest.mark.parametrize("damage", ["compression method", "block type", "garbage after the magic"])
def test_damaged_second_gzip_member(tmp_path, layout, damage):
    data = _content(tmp_path, layout)
    for cut in _cuts(data, 3):
        first = _gz(data[:cut])
        path = tmp_path / f"two{cut}.vital"
        path.write_bytes(first + _damaged_members(_gz(data[cut:]))[damage])
        got = assert_reads_as_vitaldb(path, NAMES)
        note = got.report.gzip_note
        assert note.startswith(f"gzip member 2 at byte {len(first)} is damaged (Error -3 while decompressing data")
        assert note.endswith("); it and what follows are ignored")


@pytest.mark.parametrize("layout", ["interleaved", "packed"])
def test_damaged_second_member_deliberate_differences(tmp_path, layout):
    """A member whose CRC does not match, with reserved header flags, or damaged after it has
    yielded content is not read at all (vitaldb keeps what it inflated, see the module doc): the
    result is vitaldb's on the first member alone (followed by junk: reads past it fail)."""
    data = _content(tmp_path, layout)
    cut = len(data) // 3
    first, second = _gz(data[:cut]), _gz(data[cut:])
    alone = tmp_path / "alone.vital"
    alone.write_bytes(first + b"\x01")
    want = assert_reads_as_vitaldb(alone, NAMES)
    damaged = {
        "crc": second[:-8] + bytes([second[-8] ^ 1]) + second[-7:],
        "flags": second[:3] + b"\xe0" + second[4:],
        "late damage": second[: len(second) // 2] + bytes(b ^ 0x55 for b in second[len(second) // 2:]),
    }
    for how, blob in damaged.items():
        path = tmp_path / f"{how}.vital"
        path.write_bytes(first + blob)
        got = read_numeric_tracks(path, NAMES)
        assert got.report.gzip_note.startswith(f"gzip member 2 at byte {len(first)} is damaged"), how
        assert got.report.inflated_bytes == cut
        assert list(got.tracks) == list(want.tracks) and got.start == want.start and got.end == want.end
        for name in want.tracks:
            np.testing.assert_array_equal(got.tracks[name][1], want.tracks[name][1])


@pytest.mark.parametrize("case_id, waves", [(1, True), (2, True), (3, False), (4, False)])
def test_gzip_stream_cut_at_random_points(tmp_path, case_id, waves):
    """(d) the file truncated: what inflates is read, as vitaldb reads it (a packet that runs past
    the end is not read at all)."""
    tracks, _row, start, layout = synth_case(case_id, seed=7, hours=0.1, waves=waves)
    src = tmp_path / "full.vital"
    write_vital(src, tracks, start, layout=layout)
    blob = src.read_bytes()
    rng = random.Random(case_id)
    cuts = sorted({rng.randrange(11, len(blob)) for _ in range(14)} | {12, 40, 200, len(blob) - 1, len(blob) - 8})
    for k, cut in enumerate(cuts):
        path = tmp_path / f"cut{cut}.vital"
        path.write_bytes(blob[:cut])
        got = assert_reads_as_vitaldb(path, SPEC_TRACKS, sequential_too=k % 4 == 0)
        if got is None:
            continue
        report = got.report
        assert report.gzip_note == "the gzip stream is cut short (file truncated)"
        full = len(gzip.decompress(blob))
        assert report.inflated_bytes <= full
        if report.inflated_bytes < full:  # the content ends inside a packet (or at its end)
            assert report.stop_reason is None or report.stop_reason.startswith(("the last packet is cut short",
                                                                              "a skip over"))


_ENDINGS = {  # how the gzip data of content[:cut] ends, and whether reads past the content fail
    "clean": (lambda gz: gz, False),
    "zero padding": (lambda gz: gz + bytes(7), False),
    "stray bytes": (lambda gz: gz + b"junk", True),
    "damaged member": (lambda gz: gz + b"\x1f\x8b\x09" + bytes(20), True),
    "member header cut": (lambda gz: gz + b"\x1f\x8b\x08", True),
    "trailer cut": (lambda gz: gz[:-5], True),
}


@pytest.mark.parametrize("packed", [0, 1])
def test_gzip_endings_at_every_offset_of_a_packet(tmp_path, packed):
    """The content cut at every byte of a few packets, its gzip data ending in each way: where
    reads past the content fail (gzip.GzipFile raises), vitaldb does not read a packet that runs
    past the end, else it reads what is there (records with bytes after their value, and the
    header's end time below the records' ones, make the difference show)."""
    pad = b"\x00" * 4  # bytes after each value
    parts = [header(dtstart=START, dtend=START, packed=packed), trkinfo(1, 2, 1, "HR"), trkinfo(2, 2, 2, "SPO2")]
    parts += [rec(1 + i % 2, START + i, (f32(i) if i % 2 == 0 else struct.pack("<d", i)) + pad) for i in range(12)]
    parts.append(trkinfo(3, 2, 1, "LATE") + rec(3, START + 50, f32(5.0) + pad))
    data = b"".join(parts)
    start = len(b"".join(parts[:-3]))
    seen = {True: 0, False: 0}
    for cut in list(range(start, len(data) + 1)):
        gz = _gz(data[:cut])
        for ending, (make, hard) in _ENDINGS.items():
            path = tmp_path / f"e{cut}-{ending.replace(' ', '-')}.vital"
            path.write_bytes(make(gz))
            got = assert_reads_as_vitaldb(path, ["HR", "SPO2", "LATE"])
            reason = got.report.stop_reason
            seen[reason is not None] += 1
            assert (got.report.gzip_note is not None) == (ending != "clean")
            assert reason is None or reason.startswith(("the last packet is cut short", "vitaldb's reading error: ")) \
                or reason.endswith(("stray bytes at the end", "stray byte at the end")) and not hard, reason
            assert reason is None or got.report.read_bytes < cut
    assert seen[True] and seen[False]


def test_gzip_stream_cut_inside_the_header(tmp_path):
    blob = _gz(header(packed=1) + trkinfo(1, 2, 1, "HR") + rec(1, START, f32(1.0)))
    for cut in range(11, 30):
        path = tmp_path / f"h{cut}.vital"
        path.write_bytes(blob[:cut])
        got = assert_reads_as_vitaldb(path, ["HR"])
        assert got is None  # vitaldb raises (EOFError) reading the header


def test_second_member_cut_short(tmp_path):
    data = _content(tmp_path, "packed")
    cut = len(data) // 2
    second = _gz(data[cut:])
    for k in (2, 5, 12, len(second) // 2, len(second) - 4):
        path = tmp_path / f"m{k}.vital"
        path.write_bytes(_gz(data[:cut]) + second[:k])
        got = assert_reads_as_vitaldb(path, NAMES)
        assert got.report.gzip_note == "the gzip stream is cut short (file truncated)"


# --------------------------------------------------------------------------- 3. where reading stops


def _records(n: int, tid: int = 1, t0: float = START):
    return [rec(tid, t0 + i, f32(i)) for i in range(n)]


@pytest.mark.parametrize("packed", [0, 1])
@pytest.mark.parametrize("plen", [0, 0xFFFFFFF0])
def test_a_packet_length_stops_reading(tmp_path, packed, plen):
    head = [header(packed=packed), trkinfo(1, 2, 1, "HR", reclen=0), trkinfo(2, 2, 1, "SPO2")]
    before = _records(300) + _records(100, tid=2)
    after = _records(300, t0=START + 300) + _records(100, tid=2, t0=START + 300)
    bad = struct.pack("<BI", 1, plen) + rec(1, START + 1000, f32(-1))[5:]  # a record whose length is broken
    at = len(b"".join(head + before))
    data = b"".join(head + before) + bad + b"".join(after)
    path = write_raw(tmp_path / "0005.vital", data)
    got = assert_reads_as_vitaldb(path, ["HR", "SPO2"])
    report = got.report
    assert report.read_bytes == at and report.inflated_bytes == len(data)
    assert report.read_fraction == pytest.approx(at / len(data)) and 0.4 < report.read_fraction < 0.6
    if plen == 0:
        assert report.stop_reason == f"packet of 0 bytes at byte {at}"
    elif packed:  # vitaldb reads the rest of the content as that packet
        assert report.stop_reason == f"packet at byte {at} claims 4294967280 bytes but only {len(data) - at - 5} remain"
    else:
        assert report.stop_reason == f"packet at byte {at} claims 4294967280 bytes (over 1 MB)"
    assert got.tracks["HR"][0].size in (300, 301)  # packed: the broken record is read (its value is there)
    rec_ = read_vital(path, ["HR", "SPO2"])
    assert rec_.report == report


def test_trkinfo_claiming_2gb_in_a_packed_file(tmp_path):
    head = [header(packed=1), trkinfo(1, 2, 1, "HR")]
    bad = trkinfo(2, 2, 1, "SPO2")
    bad = struct.pack("<BI", 0, 2**31) + bad[5:]
    at = len(b"".join(head))
    data = b"".join(head) + bad + trkinfo(3, 2, 1, "BT") + b"".join(_records(50))
    path = write_raw(tmp_path / "0006.vital", data)
    got = assert_reads_as_vitaldb(path, ["HR", "SPO2"])
    assert got.report.stop_reason == f"packet at byte {at} claims 2147483648 bytes but only {len(data) - at - 5} remain"
    assert got.report.read_bytes == at and got.tracks == {}
    assert got.report.track_names == ("HR", "SPO2")  # the bad trkinfo is read as far as it goes; BT is not


def test_planned_early_stop_of_packed_files_is_not_a_stop_reason(tmp_path):
    blocks = {tid: _records(40, tid=tid) for tid in (1, 2, 3)}
    head = [header(packed=1)] + [trkinfo(t, 2, 1, f"T{t}", reclen=sum(map(len, b))) for t, b in blocks.items()]
    data = b"".join(head + blocks[1] + blocks[2] + blocks[3])
    path = write_raw(tmp_path / "p.vital", data)
    got = assert_reads_as_vitaldb(path, ["T1"])
    report = got.report
    assert report.stop_reason is None and report.read_fraction == 1.0
    assert report.read_bytes == len(b"".join(head + blocks[1])) < report.inflated_bytes
    assert report.track_names == ("T1", "T2", "T3")


def test_stray_bytes_and_vitaldb_errors_end_the_read_with_a_reason(tmp_path):
    head = [header(), trkinfo(1, 2, 1, "HR")]
    body = b"".join(head + _records(20))
    got = assert_reads_as_vitaldb(write_raw(tmp_path / "s.vital", body + b"\x01\x02\x03"), ["HR"])
    assert got.report.stop_reason == "3 stray bytes at the end" and got.report.read_bytes == len(body)
    short_order = packet(6, struct.pack("<BH", 5, 9) + b"\x01\x00")
    got = assert_reads_as_vitaldb(write_raw(tmp_path / "c.vital", body + short_order + b"".join(_records(5))), ["HR"])
    assert got.report.stop_reason.startswith("vitaldb's reading error: ") and got.report.read_bytes == len(body)
    assert got.tracks["HR"][0].size == 20
    cut = body + rec(1, START + 99, f32(1.0))[:-2]
    got = assert_reads_as_vitaldb(write_raw(tmp_path / "l.vital", cut), ["HR"])
    assert got.report.stop_reason == f"the last packet is cut short (byte {len(body)}: 14 of 16 bytes)"


# --------------------------------------------------------------------------- 4. times


def _timed(tmp_path, dtstart=START, dtend=START + 10.0, times=None, name="0009.vital", names=("HR",)):
    times = [START + i for i in range(20)] if times is None else times
    parts = [header(dtstart=dtstart, dtend=dtend), trkinfo(1, 2, 1, "HR")] + [rec(1, t, f32(1.0)) for t in times]
    return write_raw(tmp_path / name, *parts)


@pytest.mark.parametrize("dtstart", [math.nan, -math.inf, -1e300, -1.7e308, 1.0, -5.0, 5e8, EARLIEST_START - 1])
def test_implausible_start_fails(tmp_path, dtstart):
    path = _timed(tmp_path, dtstart=dtstart, dtend=1.7e308)  # records at 1.6e9 do not move such a start
    assert_reads_as_vitaldb(path, ["HR"])  # vitaldb has no such rule
    with pytest.raises(VitalReadError) as info:
        read_vital(path, ["HR"])
    assert str(info.value) == (f"{path}: start time {float(dtstart)!r} is not a plausible recording time "
                               "(unix seconds from 1990-01-01 to 2100-01-01 UTC)")


@pytest.mark.parametrize("dtstart", [math.inf, 1e300, LATEST_START, 4.2e9])
def test_too_late_start_fails_unless_records_replace_it(tmp_path, dtstart):
    path = _timed(tmp_path, dtstart=dtstart, dtend=0.0, times=[])
    with pytest.raises(VitalReadError, match=r"start time .* is not a plausible recording time"):
        read_vital(path, ["HR"])
    # vitaldb's rule: an earlier positive record time of a wanted track replaces the start
    path = _timed(tmp_path, dtstart=dtstart, dtend=0.0, name="with-records.vital")
    recording = read_vital(path, ["HR"])
    assert recording.start == START and recording.duration_s == 19.0


def test_start_bounds(tmp_path):
    assert (EARLIEST_START, LATEST_START) == (631152000.0, 4102444800.0)  # 1990-01-01, 2100-01-01 UTC
    assert read_vital(_timed(tmp_path, dtstart=EARLIEST_START, dtend=0.0, times=[]), ["HR"]).start == EARLIEST_START


@pytest.mark.parametrize("dtend, times", [(math.inf, None), (math.nan, None), (START, [START, math.inf, START + 1])])
def test_end_without_a_finite_duration_fails(tmp_path, dtend, times):
    path = _timed(tmp_path, dtend=dtend, times=times)
    assert_reads_as_vitaldb(path, ["HR"])
    with pytest.raises(VitalReadError, match=r"0009\.vital: end time (inf|nan) gives no finite duration from the"):
        read_vital(path, ["HR"])


def test_absurd_record_times_are_kept(tmp_path):
    times = [START, math.nan, START + 1, -math.inf, 1e300, -1e300, 0.0, -0.0, START + 2, 1.7e308]
    path = _timed(tmp_path, times=times)
    got = assert_reads_as_vitaldb(path, ["HR"])
    recording = read_vital(path, ["HR"])
    assert recording.start == START and recording.duration_s == 1.7e308 - START
    np.testing.assert_array_equal(recording.tracks["HR"][0], got.tracks["HR"][0])
    assert np.isnan(recording.tracks["HR"][0][1]) and recording.tracks["HR"][0][3] == -math.inf


# --------------------------------------------------------------------------- 5. the tracks a file has


def test_track_names_lists_every_track_the_file_defines(tmp_path):
    parts = [header(), devinfo(3, "Intellivue", ""), trkinfo(1, 2, 1, "HR", did=3), trkinfo(2, 2, 1, "ABP_SYS", did=3),
             trkinfo(3, 1, 1, "ECG_II", did=3, srate=500.0), trkinfo(4, 2, 1, "EVENT"),
             trkinfo(5, 2, 9, "BADFMT", did=3), trkinfo(1, 2, 1, "HR", did=3)]
    # a redefinition (listed once); fmt 9 defines no track in vitaldb
    parts += [rec(1 + i % 2, START + i, f32(i)) for i in range(30)]
    path = write_raw(tmp_path / "0011.vital", *parts)
    recording = read_vital(path, SPEC_TRACKS)
    assert recording.tracks == {}
    assert recording.report.track_names == ("Intellivue/HR", "Intellivue/ABP_SYS", "Intellivue/ECG_II", "EVENT")
    assert recording.report.stop_reason is None and recording.start == START
    assert isinstance(recording, Recording)
    assert read_vital(path, ["Intellivue/HR"]).tracks["Intellivue/HR"][0].size == 15


# --------------------------------------------------------------------------- 6. random mutations


def _base_file(layout: str) -> tuple[bytes, list[int]]:
    """A small recording's content and the offsets of its packets."""
    parts = [header(packed=1 if layout == "packed" else 0), devinfo(1, "Solar8000"), trkinfo(1, 2, 1, "HR", did=1),
             trkinfo(2, 2, 2, "SPO2", did=1, reclen=0), trkinfo(3, 1, 5, "W", did=1, srate=100.0)]
    if layout == "packed":
        parts += _records(40, 1) + [rec(2, START + i, struct.pack("<d", 97.0)) for i in range(40)]
        parts += [rec(3, START + i, struct.pack("<I", 100) + bytes(200)) for i in range(5)] + [cmd_order([1, 2, 3])]
    else:
        for i in range(40):
            parts += [rec(1, START + i, f32(60 + i)), rec(2, START + i, struct.pack("<d", 97.0))]
            if i % 8 == 0:
                parts.append(rec(3, START + i, struct.pack("<I", 100) + bytes(200)))
    offsets = np.cumsum([0] + [len(p) for p in parts]).tolist()
    return b"".join(parts), offsets[1:-1]


_TIMES = st.sampled_from([math.nan, math.inf, -math.inf, 1e300, -1e300, 1.7976931348623157e308, -1.7976931348623157e308,
                          0.0, -0.0, 1.0, 5e-324, START, LATEST_START, EARLIEST_START])
_LENGTHS = st.sampled_from([0, 1, 4, 5, 11, 12, 100, 1_000_000, 1_000_001, 2**31, 0xFFFFFFF0, 0xFFFFFFFF])


@st.composite
def mutated_files(draw):
    layout = draw(st.sampled_from(["interleaved", "packed"]))
    data, offsets = _base_file(layout)
    buf = bytearray(data)
    for _ in range(draw(st.integers(0, 3))):  # header times: dtstart at 20, dtend at 28
        at = draw(st.sampled_from([20, 28]))
        buf[at : at + 8] = struct.pack("<d", draw(_TIMES))
    for _ in range(draw(st.integers(0, 3))):  # packet lengths
        at = draw(st.sampled_from(offsets)) + 1
        buf[at : at + 4] = struct.pack("<I", draw(_LENGTHS))
    for _ in range(draw(st.integers(0, 2))):  # record times
        at = draw(st.sampled_from(offsets)) + 7
        if at + 8 <= len(buf):
            buf[at : at + 8] = struct.pack("<d", draw(_TIMES))
    if draw(st.booleans()):
        buf = buf[: draw(st.integers(0, len(buf)))]
    blob = _gz(bytes(buf))
    tail = draw(st.sampled_from(["none", "zeros", "junk", "member", "cut", "flip"]))
    if tail == "zeros":
        blob += bytes(draw(st.integers(1, 100)))
    elif tail == "junk":
        blob += draw(st.binary(min_size=1, max_size=20))
    elif tail == "member":
        blob += _gz(draw(st.binary(max_size=30)))[: draw(st.integers(1, 60))]
    elif tail == "cut":
        blob = blob[: draw(st.integers(0, len(blob)))]
    elif tail == "flip":
        i = draw(st.integers(0, len(blob) - 1))
        blob = blob[:i] + bytes([blob[i] ^ draw(st.integers(1, 255))]) + blob[i + 1 :]
    limit = draw(st.sampled_from([None, None, 100, 5000]))
    names = draw(st.lists(st.sampled_from(["Solar8000/HR", "SPO2", "W", "Solar8000/*", "X"]), max_size=3))
    return blob, names, limit


@FUZZ
@given(mutated_files())
def test_random_mutations_raise_only_vital_read_errors(tmp_path, spec):
    blob, names, limit = spec
    path = tmp_path / "0013.vital"
    path.write_bytes(blob)
    try:
        recording = read_vital(path, names, max_inflated_bytes=limit)
    except VitalReadError as exc:
        message = str(exc)
        assert message.startswith(f"{path}: ") and "\n" not in message
        return
    assert EARLIEST_START <= recording.start < LATEST_START
    assert math.isfinite(recording.duration_s) and recording.duration_s >= 0
    _check_report(recording.report, path)
    for times, values in recording.tracks.values():
        assert times.dtype == np.float64 and values.dtype == np.float64 and times.size == values.size


# --------------------------------------------------------------------------- speed (not a target: a guard)


def test_bounded_inflate_is_not_slower(tmp_path):
    """The limit costs one bounded decompress call, not a chunked loop: on a normal file within a
    few percent of the unbounded call (a loose bound here: the machine is shared)."""
    data = _content(tmp_path, "packed") * 40
    blob = _gz(data)
    mod = fastread._INFLATERS[0][1]
    best = {"bounded": math.inf, "one-shot": math.inf}
    for _ in range(7):
        t = time.perf_counter()
        fastread._inflate_with(mod, blob)
        best["bounded"] = min(best["bounded"], time.perf_counter() - t)
        t = time.perf_counter()
        mod.decompressobj(31).decompress(blob)
        best["one-shot"] = min(best["one-shot"], time.perf_counter() - t)
    assert best["bounded"] < 1.5 * best["one-shot"] + 0.002, best


def test_memory_error_in_the_packet_loop_is_not_a_file_problem(tmp_path, monkeypatch):
    """vitaldb's loop keeps what it read when it fails; a MemoryError (the worker's memory limit)
    must not pass for such a failure of the file: it reaches the case, which fails as out of memory."""
    tracks, row, start, layout = synth_case(1, seed=0, hours=0.2, waves=False)
    write_vital(tmp_path / "0001.vital", tracks, start, layout="interleaved")

    def no_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(fastread, "_sequential_loop", no_memory)
    with pytest.raises(MemoryError):
        read_numeric_tracks(tmp_path / "0001.vital", SPEC_TRACKS)
