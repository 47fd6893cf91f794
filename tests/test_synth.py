"""Synthetic corpus: determinism, layouts, clinical-table quirks, VitalDB intervals and physiology.

Expectations come from SPEC.md ("VitalDB facts") and clinical knowledge, not from the generator's
internals: files are read back with the reference reader (`vitaldb`).
"""

from __future__ import annotations

import csv
import time
from collections import Counter

import numpy as np
import pytest
import vitaldb

from vitalflow.synth import synth_case, synth_corpus

CORPUS_CASES = 30
CORPUS_HOURS = 0.25
REQUIRED_COLUMNS = [
    "caseid", "subjectid", "casestart", "caseend", "anestart", "aneend", "opstart", "opend",
    "age", "sex", "height", "weight", "bmi", "asa",
]  # fmt: skip
# SPEC: device record intervals (s)
DEVICE_INTERVAL = {"Solar8000": 2.0, "Primus": 7.0, "BIS": 1.0, "Orchestra": 1.0}
NIBP = ("Solar8000/NIBP_SBP", "Solar8000/NIBP_DBP", "Solar8000/NIBP_MBP")
ETCO2 = ("Solar8000/ETCO2", "Primus/ETCO2")


@pytest.fixture(scope="module")
def corpus30(tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus")
    paths = synth_corpus(out, CORPUS_CASES, seed=0, hours=CORPUS_HOURS, waves=False)
    with open(out / "clinical.csv", newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        columns, rows = reader.fieldnames, list(reader)
    return out, paths, columns, rows


@pytest.fixture(scope="module")
def files(corpus30):
    _, paths, _, _ = corpus30
    return {int(p.stem): vitaldb.VitalFile(str(p)) for p in paths}


def _times(vf, name):
    return np.array([r["dt"] for r in vf.trks[name].recs]) - vf.dtstart


def _values(vf, name):
    return np.array([r["val"] for r in vf.trks[name].recs], dtype=np.float64)


# --------------------------------------------------------------------------- corpus files


def test_corpus_files_and_names(corpus30):
    out, paths, _, rows = corpus30
    assert [p.name for p in paths] == [f"{i:04d}.vital" for i in range(1, CORPUS_CASES + 1)]
    # beside each recording: the clinician's decision log and the oracle (decision-targets issue)
    beside = [f"{i:04d}.{x}" for i in range(1, CORPUS_CASES + 1) for x in ("decisions.csv", "oracle.npz")]
    assert sorted(p.name for p in out.iterdir()) == sorted([p.name for p in paths] + beside + ["clinical.csv"])
    assert [int(r["caseid"]) for r in rows] == list(range(1, CORPUS_CASES + 1))


def test_same_seed_same_bytes(tmp_path):
    a = synth_corpus(tmp_path / "a", 3, seed=5, hours=0.2, waves=False)
    b = synth_corpus(tmp_path / "b", 3, seed=5, hours=0.2, waves=False)
    for pa, pb in zip(a, b, strict=True):
        assert pa.read_bytes() == pb.read_bytes()
    assert (tmp_path / "a/clinical.csv").read_bytes() == (tmp_path / "b/clinical.csv").read_bytes()
    c = synth_corpus(tmp_path / "c", 1, seed=6, hours=0.2, waves=False)
    assert c[0].read_bytes() != a[0].read_bytes()


def test_case_does_not_depend_on_corpus_size(tmp_path):
    small = synth_corpus(tmp_path / "s", 2, seed=1, hours=0.2, waves=False)
    large = synth_corpus(tmp_path / "l", 4, seed=1, hours=0.2, waves=False)
    for ps, pl in zip(small, large[:2]):
        assert ps.read_bytes() == pl.read_bytes()
    rows_s = (tmp_path / "s/clinical.csv").read_text().splitlines()
    rows_l = (tmp_path / "l/clinical.csv").read_text().splitlines()
    assert rows_s == rows_l[:3]
    # and synth_case is pure
    t1, r1, s1, l1 = synth_case(2, seed=1, hours=0.2, waves=False)
    t2, r2, s2, l2 = synth_case(2, seed=1, hours=0.2, waves=False)
    assert (r1, s1, l1) == (r2, s2, l2) and [t.dtname for t in t1] == [t.dtname for t in t2]


def test_numeric_tracks_do_not_depend_on_waves():
    num, row_n, start_n, _ = synth_case(4, seed=0, hours=0.2, waves=False)
    wav, row_w, start_w, _ = synth_case(4, seed=0, hours=0.2, waves=True)
    assert row_n == row_w and start_n == start_w
    assert all(t.kind != "wave" for t in num)
    by_name = {t.dtname: t for t in wav}
    for t in num:
        assert np.array_equal(t.times, by_name[t.dtname].times)
    assert {t.kind for t in wav} >= {"wave", "num"}


def test_both_layouts_occur(corpus30, files):
    packed = {cid: vf.packed for cid, vf in files.items()}
    assert any(packed.values()) and not all(packed.values())
    assert {synth_case(i, seed=9, hours=0.2, waves=False)[3] for i in (1, 2)} == {"interleaved", "packed"}


def test_recording_length_matches_caseend(corpus30, files):
    _, _, _, rows = corpus30
    for row in rows:
        vf = files[int(row["caseid"])]
        assert int(row["casestart"]) == 0
        assert int(row["caseend"]) == pytest.approx(CORPUS_HOURS * 3600, abs=1)
        assert vf.dtend - vf.dtstart <= int(row["caseend"]) + 1
        assert vf.dtend - vf.dtstart >= int(row["caseend"]) - 120


# --------------------------------------------------------------------------- clinical table


def test_clinical_columns(corpus30):
    _, _, columns, _ = corpus30
    assert columns[:8] == REQUIRED_COLUMNS[:8]
    assert set(REQUIRED_COLUMNS) <= set(columns)
    assert {"department", "optype", "dx", "opname", "approach", "position", "ane_type", "emop"} <= set(columns)


def test_clinical_quirks_present(corpus30):
    _, _, _, rows = corpus30
    num = lambda r, k: float(r[k])  # noqa: E731
    assert any(num(r, "anestart") < 0 for r in rows), "anesthesia starting before the recording"
    assert any(num(r, "aneend") < num(r, "anestart") for r in rows), "aneend before anestart"
    assert any(num(r, "aneend") > num(r, "caseend") + 3600 for r in rows), "aneend far past caseend"
    assert any(r["asa"] == "" for r in rows), "missing ASA"
    assert any(r["asa"] == "6" for r in rows), "ASA 6"
    assert any(num(r, "height") < 100 and num(r, "weight") < 10 for r in rows), "infant"
    assert any(100 <= num(r, "height") < 150 and num(r, "age") < 16 for r in rows), "child 100-150 cm"
    per_subject = Counter(r["subjectid"] for r in rows)
    assert max(per_subject.values()) >= 2, "a subject with several cases"


def test_clinical_values_are_sane(corpus30):
    _, _, _, rows = corpus30
    for r in rows:
        h, w = float(r["height"]), float(r["weight"])
        assert h > 0 and w > 0
        assert float(r["bmi"]) == round(w / (h / 100) ** 2, 1)
        assert r["sex"] in ("F", "M")
        assert r["asa"] in ("", "1", "2", "3", "4", "5", "6")
        assert float(r["adm"]) < 0 < float(r["dis"])
        for k in ("opstart", "opend"):
            assert 0 <= float(r[k]) <= float(r["caseend"])
    # cases of one subject describe one person
    by_subject: dict[str, list] = {}
    for r in rows:
        by_subject.setdefault(r["subjectid"], []).append(r)
    for cases in by_subject.values():
        assert len({c["sex"] for c in cases}) == 1
        assert max(float(c["height"]) for c in cases) - min(float(c["height"]) for c in cases) < 10


def test_subjects_reach_fourteen_cases():
    rows = [synth_case(i, seed=0, hours=0.1, waves=False)[1] for i in range(181, 201)]
    assert max(Counter(r["subjectid"] for r in rows).values()) == 14


# --------------------------------------------------------------------------- signals read back


def test_device_intervals(files):
    seen = Counter()
    for vf in files.values():
        for name, trk in vf.trks.items():
            dev = name.split("/")[0]
            if dev not in DEVICE_INTERVAL or name in NIBP or len(trk.recs) < 10:
                continue
            gaps = np.diff(_times(vf, name))
            assert np.median(gaps) == pytest.approx(DEVICE_INTERVAL[dev], abs=0.05), name
            assert gaps.min() > 0.5 * DEVICE_INTERVAL[dev], name
            seen[dev] += 1
    assert set(seen) == set(DEVICE_INTERVAL)


def test_nibp_interval(files):
    """One cuff reading every 2.5-5 min; pooled over cases since a short case has few readings."""
    pooled = []
    for vf in files.values():
        if "Solar8000/NIBP_SBP" in vf.trks:
            gaps = np.diff(_times(vf, "Solar8000/NIBP_SBP"))
            assert gaps.size == 0 or gaps.min() >= 150 - 10
            pooled.extend(gaps.tolist())
    pooled = np.array(pooled)
    assert pooled.size >= 40
    assert 150 <= np.median(pooled) <= 300
    assert np.mean((pooled >= 150 - 10) & (pooled <= 300 + 10)) >= 0.8  # the rest: unplugged gaps


def test_waves_false_writes_no_wave_tracks(files):
    assert all(trk.type != 1 for vf in files.values() for trk in vf.trks.values())


@pytest.mark.parametrize("case_id", [1, 2, 4, 5, 7])
def test_physiology_around_induction_and_intubation(tmp_path, case_id):
    tracks, row, start, layout = synth_case(case_id, seed=3, hours=1.5, waves=False)
    from vitalflow.vital.write import write_vital

    path = tmp_path / f"{case_id}.vital"
    write_vital(path, tracks, start, layout=layout)
    vf = vitaldb.VitalFile(str(path))
    ane0, ane1 = float(row["anestart"]), float(row["aneend"])
    assert 0 < ane0 < ane1 <= float(row["caseend"])  # these case ids have sane times
    etco2 = [n for n in ETCO2 if n in vf.trks]
    assert etco2
    for name in etco2:
        t = _times(vf, name)
        assert t.min() >= ane0 + 120, f"{name} before intubation (>= 2 min after induction)"
        mid = (t > ane0 + 8 * 60) & (t < ane1 - 10 * 60)
        assert mid.sum() > 0.5 * (ane1 - ane0 - 18 * 60) / DEVICE_INTERVAL[name.split("/")[0]]
        assert 25 <= np.nanmedian(_values(vf, name)[mid]) <= 45  # mmHg
    for name in ("Primus/TV", "Solar8000/VENT_TV", "Primus/PEEP_MBAR", "Primus/RR_CO2"):
        if name in vf.trks:
            assert _times(vf, name).min() >= ane0 + 120, f"{name} before intubation"
    hr = "Solar8000/HR" if "Solar8000/HR" in vf.trks else "Solar8000/PLETH_HR"
    t, v = _times(vf, hr), _values(vf, hr)
    awake = (t < ane0 - 30) & (v > 20) & (v < 250)
    if awake.sum() > 10:
        assert 60 <= np.median(v[awake]) <= 100
    if "BIS/BIS" in vf.trks:
        t, v = _times(vf, "BIS/BIS"), _values(vf, "BIS/BIS")
        if (t < ane0 - 10).sum() > 10:
            assert np.nanmedian(v[t < ane0 - 10]) > 85
        during = (t > ane0 + 15 * 60) & (t < ane1 - 25 * 60)
        assert 35 <= np.nanmedian(v[during]) <= 62


def test_drug_units_match_clinical_doses():
    """Rates in mL/h convert (SPEC) to clinical doses: propofol 4-12 mg/kg/h, remi 0.02-0.5 ug/kg/min."""
    checked = Counter()
    for case_id in range(1, 41):
        tracks, row, _, _ = synth_case(case_id, seed=2, hours=1.0, waves=False)
        w = float(row["weight"])
        by = {t.dtname: t for t in tracks}
        for name, to_dose, lo, hi in (
            ("Orchestra/PPF20_RATE", lambda r: r * 20 / w, 3.5, 12.5),
            ("Orchestra/RFTN20_RATE", lambda r: r * 20 / 60 / w, 0.015, 0.55),
            ("Orchestra/RFTN50_RATE", lambda r: r * 50 / 60 / w, 0.015, 0.55),
        ):
            if name not in by:
                continue
            rate = by[name].values.astype(float)
            t = by[name].times
            maint = rate[(t > float(row["anestart"]) + 600) & (t < float(row["opend"]) - 600) & (rate > 0)]
            if maint.size > 60:
                assert lo <= np.median(to_dose(maint)) <= hi, (case_id, name)
                checked[name] += 1
            before = rate[t < float(row["anestart"]) - 60]
            assert np.all((before == 0) | np.isnan(before) | (before < 0)), (case_id, name, "pump running before induction")
    assert checked["Orchestra/PPF20_RATE"] >= 5 and checked["Orchestra/RFTN20_RATE"] + checked["Orchestra/RFTN50_RATE"] >= 5


def test_tidal_volume_per_ideal_body_weight():
    ratios = []
    for case_id in range(1, 31):
        tracks, row, _, _ = synth_case(case_id, seed=4, hours=1.0, waves=False)
        by = {t.dtname: t for t in tracks}
        h = float(row["height"])
        if "Primus/TV" not in by or h < 152.4:
            continue
        ibw = (50.0 if row["sex"] == "M" else 45.5) + 0.91 * (h - 152.4)
        ratios.append(np.nanmedian(by["Primus/TV"].values) / ibw)
    assert len(ratios) >= 10
    assert 5.5 <= min(ratios) and max(ratios) <= 8.6


def test_drug_and_track_shares_look_like_vitaldb():
    n = 200
    have = Counter()
    counts = []
    for case_id in range(1, n + 1):
        tracks, _, _, _ = synth_case(case_id, seed=11, hours=0.1, waves=False)
        names = {t.dtname for t in tracks}
        counts.append(len(names))
        have["ppf"] += "Orchestra/PPF20_RATE" in names
        have["rftn"] += bool(names & {"Orchestra/RFTN20_RATE", "Orchestra/RFTN50_RATE"})
        have["rftn50"] += "Orchestra/RFTN50_RATE" in names
        have["nepi"] += "Orchestra/NEPI_RATE" in names
        have["art"] += "Solar8000/ART_SBP" in names
        have["no_mbp"] += not any(x.endswith("_MBP") for x in names)
        have["event"] += "EVENT" in names
    share = {k: v / n for k, v in have.items()}
    assert 0.42 <= share["ppf"] <= 0.68
    assert 0.62 <= share["rftn"] <= 0.86
    assert 0.05 <= share["rftn50"] <= share["rftn"] / 2
    assert 0 < share["nepi"] <= 0.04
    assert 0.45 <= share["art"] <= 0.75
    assert 0.05 <= share["no_mbp"] <= 0.15
    assert share["event"] > 0.5
    assert 25 <= min(counts) and max(counts) <= 100


def test_artefacts_are_present(files):
    bad = Counter()
    for vf in files.values():
        for name in ("Solar8000/HR", "Solar8000/PLETH_SPO2", "Solar8000/ART_SBP", "BIS/BIS", "Primus/TV"):
            if name in vf.trks:
                v = _values(vf, name)
                bad["nan"] += int(np.isnan(v).sum())
                bad["zero"] += int((v == 0).sum())
                bad["absurd"] += int(((v > 300) | (v < 0)).sum())
    assert bad["nan"] > 0 and bad["zero"] > 0 and bad["absurd"] > 0


def test_string_event_track(files):
    events = [vf.trks["EVENT"] for vf in files.values() if "EVENT" in vf.trks]
    assert events
    vals = {r["val"] for trk in events for r in trk.recs}
    assert {"Intubation", "Incision"} <= vals


def test_hours_none_draws_realistic_lengths():
    lengths = [synth_case(i, seed=0, hours=None, waves=False)[1] for i in range(1, 13)]
    for row in lengths:
        total_min = float(row["caseend"]) / 60
        assert 90 + 20 - 1 <= total_min <= 240 + 60 + 1


@pytest.mark.parametrize("bad", [dict(case_id=0), dict(seed=-1), dict(hours=0.0), dict(hours="2")])
def test_bad_arguments(bad):
    args = dict(case_id=1, seed=0, hours=0.2, waves=False) | bad
    with pytest.raises(ValueError):
        synth_case(**args)


# --------------------------------------------------------------------------- waves and size


def test_three_hour_case_with_waves_size_and_content(tmp_path):
    from vitalflow.vital.write import write_vital

    tracks, row, start, layout = synth_case(2, seed=0, hours=3.0, waves=True)
    t0 = time.perf_counter()
    path = tmp_path / "0002.vital"
    write_vital(path, tracks, start, layout=layout)
    elapsed = time.perf_counter() - t0
    size_mb = path.stat().st_size / 1e6
    assert 15 <= size_mb <= 30, size_mb
    assert elapsed < 6, elapsed  # generous: shared CI machines
    vf = vitaldb.VitalFile(str(path), track_names=["SNUADC/ECG_II", "Primus/AWP", "BIS/EEG1_WAV", "SNUADC/ART"])
    rates = {name: trk.srate for name, trk in vf.trks.items()}
    assert rates.get("SNUADC/ECG_II") == 500.0
    assert rates.get("Primus/AWP", 62.5) == 62.5 and rates.get("BIS/EEG1_WAV", 128.0) == 128.0
    ecg = vf.trks["SNUADC/ECG_II"]
    assert ecg.fmt in (5, 6) and ecg.gain != 1.0  # integer ADC samples with a gain
    assert any(trk.fmt == 1 for trk in vf.trks.values())  # and some float waves
    assert "SNUADC/ART" not in vf.trks or min(r["dt"] for r in vf.trks["SNUADC/ART"].recs) - vf.dtstart > float(row["anestart"])
