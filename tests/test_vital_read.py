"""Reading numeric tracks of both layouts, and clear errors for broken files."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from vitalflow.errors import VitalReadError
from vitalflow.vital.read import read_vital
from vitalflow.vital.write import TrackData, write_vital

START = 1.6e9


def _tracks():
    t = np.arange(0.0, 600.0, 2.0)
    return [
        TrackData("Solar8000", "HR", "num", t, 70 + np.sin(t / 50) * 5, unit="/min"),
        TrackData("Primus", "ETCO2", "num", np.arange(100.0, 600.0, 7.0), np.full(72, 36.0), unit="mmHg"),
        TrackData("SNUADC", "ECG_II", "wave", np.arange(0.0, 10.0), [np.sin(np.arange(500) / 9.0) for _ in range(10)],
                  srate=500.0, fmt=1),
        TrackData("", "EVENT", "str", np.array([120.0]), ["Intubation"]),
    ]


@pytest.mark.parametrize("layout", ["interleaved", "packed"])
def test_reads_numeric_tracks_of_both_layouts(tmp_path, layout):
    path = tmp_path / "0001.vital"
    tracks = _tracks()
    write_vital(path, tracks, start=START, layout=layout)
    rec = read_vital(path, ["Solar8000/HR", "Primus/ETCO2", "SNUADC/ECG_II", "EVENT", "BIS/BIS"])
    assert rec.packed == (layout == "packed")
    assert set(rec.tracks) == {"Solar8000/HR", "Primus/ETCO2"}  # waves, strings and absent tracks are not numeric
    times, values = rec.tracks["Solar8000/HR"]
    np.testing.assert_allclose(times, tracks[0].times, atol=1e-6)
    np.testing.assert_allclose(values, tracks[0].values.astype(np.float32), rtol=1e-6)
    assert rec.start == pytest.approx(START)
    assert rec.duration_s == pytest.approx(598.0, abs=2.0)
    report = rec.report
    assert report.file_bytes == path.stat().st_size and report.inflated_bytes == len(gzip.decompress(path.read_bytes()))
    assert report.gzip_note is None and report.read_fraction == 1.0
    assert sorted(report.track_names) == ["EVENT", "Primus/ETCO2", "SNUADC/ECG_II", "Solar8000/HR"]
    if layout == "interleaved":
        assert report.stop_reason is None and report.read_bytes == report.inflated_bytes


def _valid_bytes(tmp_path):
    path = tmp_path / "valid.vital"
    write_vital(path, _tracks(), start=START)
    return path.read_bytes()


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda b: b"", "empty file"),
        (lambda b: b"caseid,age\n1,40\n", "not a .vital file (no gzip header)"),
        # changed: a file cut short failed ("truncated gzip stream"); it is read now as far as it
        # inflates, as vitaldb reads it (test_truncated_file_reads_what_inflates); cut before any
        # content it still fails
        (lambda b: b[:12], "no .vital content before the gzip data ends"),
        (lambda b: b[:20] + bytes(x ^ 0xFF for x in b[20:60]) + b[60:], "corrupt gzip data"),
        (lambda b: gzip.compress(b"hello, this is not a recording"), "no VITA signature"),
    ],
)
def test_broken_files_raise_clear_errors(tmp_path, make, reason):
    path = tmp_path / "0007.vital"
    path.write_bytes(make(_valid_bytes(tmp_path)))
    with pytest.raises(VitalReadError) as info:
        read_vital(path, ["Solar8000/HR"])
    assert reason in str(info.value) and "0007.vital" in str(info.value)


def test_truncated_file_reads_what_inflates(tmp_path):
    blob = _valid_bytes(tmp_path)
    path = tmp_path / "0009.vital"
    path.write_bytes(blob[: len(blob) // 2])
    rec = read_vital(path, ["Solar8000/HR"])
    assert rec.report.gzip_note == "the gzip stream is cut short (file truncated)"
    assert 0 < rec.report.inflated_bytes < len(gzip.decompress(blob))
    assert 0 < rec.tracks["Solar8000/HR"][0].size < 300


def test_crc_mismatch_is_corrupt(tmp_path):
    data = bytearray(_valid_bytes(tmp_path))
    data[-8] ^= 0x01  # the gzip trailer's CRC32
    path = tmp_path / "0008.vital"
    path.write_bytes(bytes(data))
    with pytest.raises(VitalReadError, match="corrupt gzip data"):
        read_vital(path, ["Solar8000/HR"])
