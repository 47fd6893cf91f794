"""`.vital` writer: round trips through the reference reader (`vitaldb`) and a byte-level parser."""

from __future__ import annotations

import gzip
import os
import struct

import numpy as np
import pytest
import vitaldb
from hypothesis import given, settings
from hypothesis import strategies as st

from vitalflow.vital.write import TrackData, write_vital

START = 1_500_000_000.25  # unix time of t = 0 (a fraction, to catch float rounding)
INT_FMTS = {3: np.int8, 4: np.uint8, 5: np.int16, 6: np.uint16}  # fmts vitaldb can read back


# --------------------------------------------------------------------------- helpers


def _chunked(samples: np.ndarray, srate: float, t0: float = 0.0):
    """Split samples into 1 s chunks; returns (chunk start times, chunks)."""
    step = int(srate)
    chunks = [samples[i : i + step] for i in range(0, samples.size, step)]
    return t0 + np.arange(len(chunks)) * step / srate, chunks


def _tracks() -> list[TrackData]:
    rng = np.random.default_rng(7)
    t_hr = np.arange(0, 120, 2.0) + 0.013  # not a round number
    t_bis = np.arange(0, 120, 1.0)
    ecg = rng.integers(-2000, 2000, 500 * 30).astype(np.int16)
    awp = rng.normal(10, 3, int(62.5 * 30)).astype(np.float32)
    awp_t = np.arange(0, 30, 2.0)
    awp_chunks = np.split(awp, np.round(np.arange(1, 15) * 125).astype(int))
    return [
        TrackData("Solar8000", "HR", "num", t_hr, rng.normal(80, 5, t_hr.size), unit="/min"),
        TrackData("SNUADC", "ECG_II", "wave", *_chunked(ecg, 500.0, t0=3.0), unit="mV", srate=500.0, fmt=5, gain=0.002, offset=-0.5),
        TrackData("BIS", "BIS", "num", t_bis, np.where(t_bis < 60, 95.0, 45.0), fmt=2),
        TrackData("Primus", "AWP", "wave", awp_t, awp_chunks, unit="hPa", srate=62.5, fmt=1),
        TrackData("", "EVENT", "str", np.array([10.0, 20.5, 99.0]), ["Intubation", "Incision", "Ünïcode ✓"]),
        TrackData("Solar8000", "NIBP_SBP", "num", np.array([5.0, 185.0]), np.array([120, 250]), fmt=4),
    ]


def _read(path) -> vitaldb.VitalFile:
    vf = vitaldb.VitalFile(str(path))
    assert vf.trks, f"vitaldb read nothing from {path}"
    return vf


def _packets(path):
    """Independent minimal parser: (header fields, [(type, payload)])."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    assert data[:4] == b"VITA"
    version, hlen = struct.unpack_from("<IH", data, 4)
    header = data[10 : 10 + hlen]
    dgmt, inst, prog, dtstart, dtend = struct.unpack_from("<hIIdd", header)
    packed = hlen >= 27 and header[26] == 1
    pos, out = 10 + hlen, []
    while pos < len(data):
        ptype, plen = struct.unpack_from("<BI", data, pos)
        out.append((ptype, data[pos + 5 : pos + 5 + plen]))
        pos += 5 + plen
    assert pos == len(data)
    return {"version": version, "hlen": hlen, "dtstart": dtstart, "dtend": dtend, "packed": packed}, out


def _rec_dt_tid(payload: bytes) -> tuple[float, int]:
    _infolen, dt, tid = struct.unpack_from("<HdH", payload)
    return dt, tid


def _dense(vf: vitaldb.VitalFile, name: str, missing=None) -> tuple[float, np.ndarray]:
    """A wave's samples on one timeline starting at its first record (NaN where nothing)."""
    trk = vf.trks[name]
    t0 = trk.recs[0]["dt"]
    end = max(r["dt"] + len(r["val"]) / trk.srate for r in trk.recs)
    out = np.full(int(round((end - t0) * trk.srate)), np.nan)
    for r in trk.recs:
        i = int(round((r["dt"] - t0) * trk.srate))
        vals = np.asarray(r["val"], dtype=np.float64)
        if missing is not None:
            vals = np.where(vals == missing, np.nan, vals)
        out[i : i + len(vals)] = vals
    return t0, out


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("layout", ["interleaved", "packed"])
def test_numeric_and_string_tracks_round_trip_exactly(tmp_path, layout):
    tracks = _tracks()
    path = tmp_path / "a.vital"
    write_vital(path, tracks, START, layout=layout)
    vf = _read(path)

    assert set(vf.trks) == {"Solar8000/HR", "SNUADC/ECG_II", "BIS/BIS", "Primus/AWP", "EVENT", "Solar8000/NIBP_SBP"}
    assert vf.dtstart == START
    hr = tracks[0]
    recs = vf.trks["Solar8000/HR"].recs
    assert [r["dt"] for r in recs] == (START + hr.times).tolist()  # exact float64 times
    assert [r["val"] for r in recs] == hr.values.astype(np.float32).tolist()  # stored as float32
    assert vf.trks["Solar8000/HR"].unit == "/min"
    bis = vf.trks["BIS/BIS"]
    assert bis.fmt == 2 and [r["val"] for r in bis.recs] == tracks[2].values.tolist()
    nibp = vf.trks["Solar8000/NIBP_SBP"]
    assert nibp.fmt == 4 and [r["val"] for r in nibp.recs] == [120, 250]
    ev = vf.trks["EVENT"]
    assert ev.dname == "" and ev.type == 5
    assert [(r["dt"] - START, r["val"]) for r in ev.recs] == [(10.0, "Intubation"), (20.5, "Incision"), (99.0, "Ünïcode ✓")]


def test_interleaved_wave_chunks_come_back_one_to_one(tmp_path):
    tracks = _tracks()
    write_vital(tmp_path / "a.vital", tracks, START, layout="interleaved")
    vf = _read(tmp_path / "a.vital")
    ecg, src = vf.trks["SNUADC/ECG_II"], tracks[1]
    assert (ecg.fmt, ecg.srate, ecg.gain, ecg.offset, ecg.unit) == (5, 500.0, 0.002, -0.5, "mV")
    assert [r["dt"] for r in ecg.recs] == (START + src.times).tolist()
    for rec, chunk in zip(ecg.recs, src.values, strict=True):
        assert rec["val"].dtype == np.int16 and np.array_equal(rec["val"], chunk)  # raw, no gain applied
    awp = vf.trks["Primus/AWP"]
    assert [len(r["val"]) for r in awp.recs] == [len(c) for c in tracks[3].values]
    # the reader applies gain/offset for integer waves only when densifying
    dense = vf.get_track_samples("SNUADC/ECG_II", 1 / 500)
    i0 = int(round(3.0 * 500))
    np.testing.assert_allclose(dense[i0 : i0 + 10], src.values[0][:10] * 0.002 - 0.5, rtol=1e-6)


def test_packed_waves_are_one_record_each_and_stored_last(tmp_path):
    tracks = _tracks()
    path = tmp_path / "p.vital"
    write_vital(path, tracks, START, layout="packed")
    vf = _read(path)
    assert vf.packed
    for name, src in (("SNUADC/ECG_II", tracks[1]), ("Primus/AWP", tracks[3])):
        (rec,) = vf.trks[name].recs
        assert rec["dt"] == START + src.times[0]
        assert np.array_equal(rec["val"], np.concatenate(src.values))
    assert vf.order == [t.dtname for t in tracks]  # display order kept by the cmd packet

    header, packets = _packets(path)
    assert header["hlen"] == 27 and header["packed"] and header["version"] == 3
    types = [p[0] for p in packets]
    assert types[-1] == 6 and packets[-1][1][0] == 5  # track order command last
    # trkinfo: reclen equals the bytes of that track's rec packets; waves have the last tids
    infos = {}
    for ptype, payload in packets:
        if ptype == 0:
            tid, kind = struct.unpack_from("<HB", payload)
            infos[tid] = kind
    rec_tids = [_rec_dt_tid(p)[1] for t, p in packets if t == 1]
    wave_tids = {tid for tid, kind in infos.items() if kind == 1}
    assert set(rec_tids[-2:]) == wave_tids and max(infos) in wave_tids
    assert rec_tids == sorted(rec_tids)  # one track's records together


def test_interleaved_records_are_in_time_order(tmp_path):
    path = tmp_path / "i.vital"
    write_vital(path, _tracks(), START, layout="interleaved")
    header, packets = _packets(path)
    assert header["hlen"] == 26 and not header["packed"]
    assert header["dtstart"] == START
    types = [p[0] for p in packets]
    first_rec = types.index(1)
    assert set(types[:first_rec]) == {9, 0} and set(types[first_rec:]) == {1}
    keys = [_rec_dt_tid(p) for t, p in packets if t == 1]
    assert keys == sorted(keys)  # by time, ties by track id
    assert max(len(p) for _, p in packets) < 1_000_000


def test_header_dtend_covers_the_last_wave_sample(tmp_path):
    tracks = _tracks()
    write_vital(tmp_path / "a.vital", tracks, START)
    header, _ = _packets(tmp_path / "a.vital")
    assert header["dtend"] == pytest.approx(START + 119.013)  # HR's last record is the latest
    short = [tracks[1]]  # ECG: chunks from 3 s, 30 s of samples
    write_vital(tmp_path / "b.vital", short, START)
    header, _ = _packets(tmp_path / "b.vital")
    assert header["dtend"] == pytest.approx(START + 33.0)


def test_both_layouts_read_back_identical(tmp_path):
    tracks = _tracks()
    write_vital(tmp_path / "i.vital", tracks, START, layout="interleaved")
    write_vital(tmp_path / "p.vital", tracks, START, layout="packed")
    a, b = _read(tmp_path / "i.vital"), _read(tmp_path / "p.vital")
    assert set(a.trks) == set(b.trks)
    assert a.dtstart == b.dtstart and a.dtend == b.dtend
    for name, ta in a.trks.items():
        tb = b.trks[name]
        assert (ta.type, ta.fmt, ta.unit, ta.srate, ta.gain, ta.offset, ta.dname) == (
            tb.type, tb.fmt, tb.unit, tb.srate, tb.gain, tb.offset, tb.dname)  # fmt: skip
        if ta.type == 1:
            ta0, da = _dense(a, name)
            tb0, db = _dense(b, name)
            assert ta0 == tb0
            np.testing.assert_array_equal(da, db)
        else:
            assert [(r["dt"], r["val"]) for r in ta.recs] == [(r["dt"], r["val"]) for r in tb.recs]


def test_packed_wave_gaps_are_filled_with_the_fmt_missing_value(tmp_path):
    samples = np.arange(1000, dtype=np.int16)
    times, chunks = _chunked(samples, 100.0)
    keep = [0, 1, 2, 5, 6, 7, 8, 9]  # chunks 3 and 4 (3 s .. 5 s) missing
    trk = TrackData("SNUADC", "ART", "wave", times[keep], [chunks[i] for i in keep], srate=100.0, fmt=5)
    write_vital(tmp_path / "p.vital", [trk], START, layout="packed")
    write_vital(tmp_path / "i.vital", [trk], START, layout="interleaved")
    (rec,) = _read(tmp_path / "p.vital").trks["SNUADC/ART"].recs
    assert rec["val"].size == 1000
    assert np.all(rec["val"][300:500] == -32768)
    assert np.array_equal(rec["val"][500:], samples[500:])
    _, dense_i = _dense(_read(tmp_path / "i.vital"), "SNUADC/ART")
    _, dense_p = _dense(_read(tmp_path / "p.vital"), "SNUADC/ART", missing=-32768)
    np.testing.assert_array_equal(dense_i, dense_p)


@pytest.mark.parametrize("fmt", sorted(INT_FMTS))
def test_integer_wave_and_numeric_formats(tmp_path, fmt):
    info = np.iinfo(INT_FMTS[fmt])
    samples = np.linspace(info.min, info.max, 300).round().astype(INT_FMTS[fmt])
    times, chunks = _chunked(samples, 100.0)
    wave = TrackData("SNUADC", "W", "wave", times, chunks, srate=100.0, fmt=fmt, gain=0.5, offset=2.0)
    num = TrackData("Dev", "N", "num", np.array([0.0, 1.0]), np.array([info.min, info.max]), fmt=fmt)
    for layout in ("interleaved", "packed"):
        write_vital(tmp_path / f"{layout}.vital", [wave, num], START, layout=layout)
        vf = _read(tmp_path / f"{layout}.vital")
        got = np.concatenate([r["val"] for r in vf.trks["SNUADC/W"].recs])
        assert np.array_equal(got, samples)
        assert [r["val"] for r in vf.trks["Dev/N"].recs] == [info.min, info.max]


@pytest.mark.parametrize("fmt,dtype", [(7, "<i4"), (8, "<u4"), (2, "<f8")])
def test_wide_formats_at_byte_level(tmp_path, fmt, dtype):
    # vitaldb reads fmt 7/8 with native 'l'/'L' (8 bytes on 64-bit Linux), so check the bytes directly
    values = np.array([0, 1, 2**31 - 1] if fmt != 2 else [0.1, -2.5, 1e300]).astype(dtype)
    path = tmp_path / "w.vital"
    write_vital(path, [TrackData("Dev", "N", "num", np.array([0.0, 1.0, 2.0]), values, fmt=fmt)], START)
    _, packets = _packets(path)
    recs = [p for t, p in packets if t == 1]
    size = np.dtype(dtype).itemsize
    assert all(len(p) == 12 + size for p in recs)
    got = [np.frombuffer(p[12:], dtype=dtype)[0] for p in recs]
    assert got == values.tolist()


def test_same_input_same_bytes_and_gzip_mtime_zero(tmp_path):
    tracks = _tracks()
    write_vital(tmp_path / "a.vital", tracks, START, layout="packed")
    write_vital(tmp_path / "b.vital", tracks, START, layout="packed")
    a, b = (tmp_path / "a.vital").read_bytes(), (tmp_path / "b.vital").read_bytes()
    assert a == b
    assert a[:3] == b"\x1f\x8b\x08" and struct.unpack_from("<I", a, 4)[0] == 0
    assert a[3] & 0x08 == 0  # no file name in the gzip header


def test_empty_and_recordless_tracks(tmp_path):
    empty = TrackData("Dev", "E", "num", np.zeros(0), np.zeros(0))
    hr = TrackData("Dev", "HR", "num", np.array([1.0]), np.array([60.0]))
    for layout in ("interleaved", "packed"):
        write_vital(tmp_path / f"{layout}.vital", [empty, hr], START, layout=layout)
        vf = _read(tmp_path / f"{layout}.vital")
        assert vf.trks["Dev/E"].recs == [] and len(vf.trks["Dev/HR"].recs) == 1


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.lists(st.floats(0, 1e5, allow_nan=False), min_size=0, max_size=30),
            st.lists(st.floats(-1e6, 1e6, allow_nan=False, width=32), min_size=30, max_size=30),
        ),
        min_size=1,
        max_size=4,
    ),
    st.sampled_from(["interleaved", "packed"]),
)
def test_property_numeric_tracks_round_trip(tmp_path_factory, spec, layout):
    tracks = []
    for k, (times, values) in enumerate(spec):
        times = np.array(times, dtype=np.float64)
        tracks.append(TrackData(f"D{k % 2}", f"T{k}", "num", times, np.array(values[: times.size])))
    path = tmp_path_factory.mktemp("prop") / "x.vital"
    write_vital(path, tracks, START, layout=layout)
    vf = vitaldb.VitalFile(str(path))
    for trk in tracks:
        order = np.argsort(trk.times, kind="stable")
        got = vf.trks[trk.dtname].recs
        assert [r["dt"] for r in got] == (START + trk.times[order]).tolist()
        assert [r["val"] for r in got] == trk.values[order].astype(np.float32).tolist()


# --------------------------------------------------------------------------- atomicity and errors


def test_atomic_write_leaves_no_temporary_file(tmp_path):
    write_vital(tmp_path / "a.vital", _tracks(), START)
    assert sorted(os.listdir(tmp_path)) == ["a.vital"]


def test_failed_write_keeps_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "a.vital"
    write_vital(path, _tracks()[:1], START)
    before = path.read_bytes()

    def boom(self, data):
        raise OSError("disk full")

    monkeypatch.setattr(gzip.GzipFile, "write", boom)
    with pytest.raises(OSError, match="disk full"):
        write_vital(path, _tracks(), START)
    assert sorted(os.listdir(tmp_path)) == ["a.vital"]
    assert path.read_bytes() == before


def _num(**kw):
    base = dict(device="Dev", name="X", kind="num", times=np.array([0.0, 1.0]), values=np.array([1.0, 2.0]))
    base.update(kw)
    return TrackData(**base)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: _num(kind="waveform"), "kind"),
        (lambda: _num(fmt=9), "unknown fmt 9"),
        (lambda: _num(values=np.array([1.0])), "2 times but 1 values"),
        (lambda: _num(times=np.array([0.0, np.nan])), "finite"),
        (lambda: _num(name="A/B"), "name"),
        (lambda: _num(name=""), "name"),
        (lambda: _num(kind="wave", values=[np.zeros(3), np.zeros(3)]), "srate"),
        (lambda: _num(kind="str", values=["a", 2]), "str"),
    ],
)
def test_bad_track_raises(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize(
    "kwargs, tracks, match",
    [
        ({"layout": "zipped"}, [_num()], "unknown layout 'zipped'"),
        ({"compresslevel": 10}, [_num()], "compresslevel"),
        ({}, [_num(), _num()], "duplicate track names"),
        ({}, [_num(values=np.array([1.5, 2.0]), fmt=5)], "whole finite numbers"),
        ({}, [_num(values=np.array([1, 300]), fmt=3)], "does not fit fmt 3"),
        ({}, [_num(values=np.array([-1, 3]), fmt=6)], "does not fit fmt 6"),
        ({}, [_num(values=np.array(["a", "b"]))], "numeric"),
        ({"start": float("nan")}, [_num()], "start must be finite"),
    ],
)
def test_bad_arguments_raise_before_writing(tmp_path, kwargs, tracks, match):
    args = {"start": START, **kwargs}
    with pytest.raises(ValueError, match=match):
        write_vital(tmp_path / "x.vital", tracks, **args)
    assert os.listdir(tmp_path) == []


def test_oversized_wave_chunk_is_refused_for_interleaved_only(tmp_path):
    big = TrackData("SNUADC", "ECG", "wave", np.array([0.0]), [np.zeros(300_000, np.float32)], srate=500.0)
    with pytest.raises(ValueError, match="too large for the interleaved layout"):
        write_vital(tmp_path / "i.vital", [big], START, layout="interleaved")
    write_vital(tmp_path / "p.vital", [big], START, layout="packed")
    assert _read(tmp_path / "p.vital").trks["SNUADC/ECG"].recs[0]["val"].size == 300_000
