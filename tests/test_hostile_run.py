"""Hostile recordings and selections through a whole run: every bad file a named failure or a
truthful exclusion, no window made of defaults, bounded memory and time, nothing hangs.

Each test builds its inputs from the synthetic generator, then damages them the way the issue's
crafted files did; expectations are stated by hand (stages, reasons, counts), not read back from
what the code wrote.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

from outputs import dataset
from vitalflow.errors import CaseSelectionError, SpecError
from vitalflow.run.cases import parse_case_selection
from vitalflow.run.preprocess import RunOptions, preprocess
from vitalflow.spec import load_config
from vitalflow.spec.model import Config, Limits
from vitalflow.synth import synth_case
from vitalflow.synth.clinical import write_csv
from vitalflow.vital.write import TrackData, write_vital

HOURS = 0.7
QUIET = RunOptions(workers=1, overwrite=True)


def make_input(root: Path, n: int = 3, seed: int = 5) -> tuple[Path, dict[int, tuple]]:
    """``n`` sound synthetic cases (no waves) and their clinical table; returns the cases' parts."""
    root.mkdir(parents=True, exist_ok=True)
    cases, rows = {}, []
    for c in range(1, n + 1):
        tracks, row, start, layout = synth_case(c, seed=seed, hours=HOURS, waves=False)
        write_vital(root / f"{c:04d}.vital", tracks, start, layout=layout)
        cases[c] = (tracks, row, start, layout)
        rows.append(row)
    write_csv(root / "clinical.csv", rows)
    return root, cases


def run(inp: Path, out: Path, config: Config | None = None, cases: str | None = None, options=QUIET):
    config = config or Config()
    _, spec = load_config()
    sel = parse_case_selection(cases) if cases else None
    return preprocess(inp, inp / "clinical.csv", out, config, spec, cases=sel, options=options)


def outcome(card: dict, case_id: int) -> dict:
    return next(d for d in card["case_details"] if d["case_id"] == case_id)


def failure(card: dict, case_id: int) -> dict:
    return next(f for f in card["failed"] if f["case_id"] == case_id)


def set_clinical(inp: Path, case_id: int, **values) -> None:
    import csv

    with open(inp / "clinical.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        if int(r["caseid"]) == case_id:
            r.update({k: str(v) for k, v in values.items()})
    with open(inp / "clinical.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


# --- time span --------------------------------------------------------------------------------------
def _moved(tracks, by_s: float) -> list[TrackData]:
    """The tracks with the last record of Solar8000/HR moved ``by_s`` seconds later."""
    out = []
    for t in tracks:
        if t.dtname == "Solar8000/HR":
            times = np.array(t.times, dtype=float)
            times[-1] += by_s
            t = TrackData(t.device, t.name, t.kind, times, t.values, t.unit, t.srate, t.fmt, t.gain, t.offset)
        out.append(t)
    return out


@pytest.mark.parametrize("by_s", [1e7, 2 * 86400])
def test_a_record_moved_into_the_future_is_bounded_by_caseend(tmp_path, by_s):
    inp, cases = make_input(tmp_path / "in", 2)
    sound = run(inp, tmp_path / "sound").card
    tracks, row, start, layout = cases[2]
    write_vital(inp / "0002.vital", _moved(tracks, by_s), start, layout=layout)
    card = run(inp, tmp_path / "out").card
    d = outcome(card, 2)
    assert d["status"] == "ok"
    assert d["windows"] == outcome(sound, 2)["windows"]  # not 60x the windows
    assert d["read"]["records_after_end"] == 1
    assert card["read_damage"][0]["case_id"] == 2
    assert card["run"]["peak_rss_mb"]["largest_worker"] < inherited_rss_mb() + 500


def test_a_record_moved_far_without_caseend_is_a_named_read_failure(tmp_path):
    inp, cases = make_input(tmp_path / "in", 2)
    tracks, row, start, layout = cases[2]
    write_vital(inp / "0002.vital", _moved(tracks, 1e7), start, layout=layout)
    set_clinical(inp, 2, caseend="")
    card = run(inp, tmp_path / "out").card
    f = failure(card, 2)
    assert f["stage"] == "read"
    assert re.search(r"spans 277\d\.\d h", f["error"]) and "limits.max_recording_h 48 h" in f["error"]
    assert "\n" not in f["error"]
    assert outcome(card, 1)["status"] == "ok"  # the run goes on


def _with_header_times(path: Path, dtstart: float, dtend: float) -> None:
    """Rewrite the header's dtstart/dtend (header bytes 10..26, after VITA, version and length)."""
    data = bytearray(gzip.decompress(path.read_bytes()))
    struct.pack_into("<dd", data, 10 + 10, dtstart, dtend)
    path.write_bytes(gzip.compress(bytes(data), mtime=0))


@pytest.mark.parametrize("dtstart, dtend, caseend", [
    (float("nan"), 3600, "keep"),  # vitaldb keeps a NaN start: not a time
    (1.0, 3600, "keep"),  # a start near zero would make the grid 1.6e9 s long
    ("start", float("inf"), "keep"),  # no finite duration
    ("start", 1e300, ""),  # a finite but absurd end, and no caseend to bound it
])
def test_absurd_header_times_are_named_read_failures(tmp_path, dtstart, dtend, caseend):
    inp, cases = make_input(tmp_path / "in", 2)
    tracks, row, start, layout = cases[1]
    write_vital(inp / "0001.vital", tracks, start, layout="interleaved")
    _with_header_times(inp / "0001.vital", start if dtstart == "start" else dtstart,
                       dtend if dtend > 1e6 else start + dtend)
    if caseend != "keep":
        set_clinical(inp, 1, caseend=caseend)
    card = run(inp, tmp_path / "out").card
    f = failure(card, 1)
    assert f["stage"] == "read", f
    assert "0001.vital" in f["error"] and "\n" not in f["error"]
    assert outcome(card, 2)["status"] == "ok"


@pytest.mark.parametrize("dtstart", [float("inf"), 1e300])
def test_an_absurd_header_start_gives_way_to_the_records_as_in_vitaldb(tmp_path, dtstart):
    """vitaldb takes a record's time as the start when it is below the header's: the records
    repair an infinite or huge start, and the case is read as the sound one."""
    inp, cases = make_input(tmp_path / "in", 2)
    tracks, row, start, layout = cases[1]
    write_vital(inp / "0001.vital", tracks, start, layout="interleaved")
    sound = outcome(run(inp, tmp_path / "sound").card, 1)
    _with_header_times(inp / "0001.vital", dtstart, start + HOURS * 3600)
    d = outcome(run(inp, tmp_path / "out").card, 1)
    assert d["status"] == "ok" and d["windows"] == sound["windows"]


def test_an_absurd_header_end_is_bounded_by_caseend(tmp_path):
    inp, cases = make_input(tmp_path / "in", 1)
    tracks, row, start, layout = cases[1]
    write_vital(inp / "0001.vital", tracks, start, layout="interleaved")
    sound = outcome(run(inp, tmp_path / "sound").card, 1)
    _with_header_times(inp / "0001.vital", start, 1e300)
    d = outcome(run(inp, tmp_path / "out").card, 1)
    assert d["status"] == "ok" and d["windows"] == sound["windows"]
    assert d["read"]["records_after_end"] == 0 and "caseend" in d["read"]["span_note"]


# --- nothing usable ------------------------------------------------------------------------------
def _nan_tracks(tracks):
    return [TrackData(t.device, t.name, t.kind, t.times, np.full(len(t.times), np.nan), t.unit, t.srate, t.fmt)
            for t in tracks if t.kind == "num"]


def _intellivue(tracks):
    return [TrackData("Intellivue", t.name, t.kind, t.times, t.values, t.unit, t.srate, t.fmt)
            for t in tracks if t.kind == "num"]


@pytest.mark.parametrize("kind, reason", [
    ("header only", "none of the spec's tracks is in the recording (it defines no tracks)"),
    ("all NaN", "no plausible value in any of the spec's tracks"),
    ("Intellivue only", "none of the spec's tracks is in the recording (it has "),
])
def test_recordings_with_nothing_usable_are_excluded_with_the_true_reason(tmp_path, kind, reason):
    inp, cases = make_input(tmp_path / "in", 2)
    tracks, row, start, layout = cases[1]
    made = {"header only": [], "all NaN": _nan_tracks(tracks), "Intellivue only": _intellivue(tracks)}[kind]
    write_vital(inp / "0001.vital", made, start, layout=layout)
    if kind == "header only":  # a header that claims the whole case
        _with_header_times(inp / "0001.vital", start, start + HOURS * 3600)
    card = run(inp, tmp_path / "out").card
    d = outcome(card, 1)
    assert d["status"] == "excluded" and d["windows"] == 0
    assert reason in d["reason"]
    if kind == "Intellivue only":
        assert "Intellivue/HR" in d["reason"]


def test_no_window_is_made_of_defaults(tmp_path):
    """Half of a case's signals stop halfway: windows after that carry too little recorded data
    and are dropped; every window written has >= 25 % of its 8 input signals recorded."""
    inp, cases = make_input(tmp_path / "in", 1)
    tracks, row, start, layout = cases[1]
    cut = HOURS * 3600 / 2
    kept = [TrackData(t.device, t.name, t.kind, np.asarray(t.times)[np.asarray(t.times) < cut],
                      np.asarray(t.values)[np.asarray(t.times) < cut], t.unit, t.srate, t.fmt)
            if t.kind == "num" else t for t in tracks]
    write_vital(inp / "0001.vital", kept, start, layout=layout)
    result = run(inp, tmp_path / "out")
    d = outcome(result.card, 1)
    assert d["status"] == "ok" and d["windows_without_data"] > 0
    _, spec = load_config()
    inputs = [i for i, n in enumerate(spec.feature_names) if n not in spec.targets]
    examples = dataset(tmp_path / "out")
    assert len(examples) == d["windows"]
    for _, ex in examples.values():
        mask = np.frombuffer(ex["mask"], np.float32).reshape(300, 16)
        assert (mask[:, inputs].max(axis=0) > 0).sum() >= 2
        assert int(np.frombuffer(ex["window_start_s"], np.int64)[0]) + 300 <= cut + 300


# --- truncated reads -----------------------------------------------------------------------------
def _stop_packet_at(path: Path, fraction: float, claim: int) -> int:
    """Overwrite the length of the packet found near ``fraction`` of the content with ``claim``;
    returns that packet's offset."""
    data = bytearray(gzip.decompress(path.read_bytes()))
    pos = 10 + struct.unpack_from("<H", data, 8)[0]
    target = int(len(data) * fraction)
    while pos < target:
        pos += 5 + struct.unpack_from("<I", data, pos + 1)[0]
    struct.pack_into("<I", data, pos + 1, claim)
    path.write_bytes(gzip.compress(bytes(data), mtime=0))
    return pos


@pytest.mark.parametrize("claim", [0, 0xFFFFFFF0])
def test_a_read_that_stops_early_is_recorded_and_failed_below_the_threshold(tmp_path, claim):
    inp, cases = make_input(tmp_path / "in", 2)
    tracks, row, start, layout = cases[1]
    write_vital(inp / "0001.vital", tracks, start, layout="interleaved")
    full = run(inp, tmp_path / "full").card
    at = _stop_packet_at(inp / "0001.vital", 0.7, claim)
    card = run(inp, tmp_path / "late").card
    d = outcome(card, 1)
    assert d["status"] == "ok"
    assert d["read"]["read_bytes"] == at and d["read"]["stop_reason"]
    assert 0.65 < d["read"]["read_fraction"] < 0.75
    assert d["windows"] < outcome(full, 1)["windows"]  # only the part that was read
    write_vital(inp / "0001.vital", tracks, start, layout="interleaved")
    at = _stop_packet_at(inp / "0001.vital", 0.3, claim)
    f = failure(run(inp, tmp_path / "early").card, 1)
    assert f["stage"] == "read"
    assert f"reading stopped at byte {at} of" in f["error"] and "limits.min_read_fraction 50%" in f["error"]


# --- decompression bombs and memory -----------------------------------------------------------------
def _bomb(path: Path, inflated: int) -> None:
    """A valid .vital header followed by ``inflated`` bytes of zeros, in one gzip member."""
    header = b"VITA" + struct.pack("<I", 3) + struct.pack("<H", 26) + bytes(26)
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunks = [comp.compress(header)]
    block = bytes(1 << 24)
    for _ in range(inflated // len(block)):
        chunks.append(comp.compress(block))
    chunks.append(comp.flush())
    path.write_bytes(b"".join(chunks))


def test_a_decompression_bomb_fails_the_case_without_taking_the_memory(tmp_path):
    inp, _ = make_input(tmp_path / "in", 2)
    _bomb(inp / "0001.vital", 3 << 30)  # ~3 MB that inflates to 3 GiB
    assert (inp / "0001.vital").stat().st_size < 4e6
    card = run(inp, tmp_path / "out").card
    f = failure(card, 1)
    assert f["stage"] == "read" and "inflates to more than" in f["error"]
    assert card["run"]["peak_rss_mb"]["largest_worker"] < inherited_rss_mb() + 800


def test_a_case_past_the_memory_limit_fails_as_out_of_memory(tmp_path):
    """With the decompression cap lifted, the worker's address-space limit is what stops it."""
    inp, _ = make_input(tmp_path / "in", 2)
    _bomb(inp / "0001.vital", 3 << 30)
    config = Config(limits=Limits(max_inflated_mb=8192, max_inflation_ratio=1e6, worker_memory_mb=1024))
    card = run(inp, tmp_path / "out", config).card
    f = failure(card, 1)
    assert f["stage"] == "read" and "out of memory" in f["error"] and "1024 MB" in f["error"]
    assert outcome(card, 2)["status"] == "ok"
    assert card["run"]["peak_rss_mb"]["largest_worker"] < inherited_rss_mb() + 1100


def test_each_case_has_a_timeout(tmp_path):
    inp, _ = make_input(tmp_path / "in", 2)
    config = Config(limits=Limits(case_timeout_s=0.001))
    card = run(inp, tmp_path / "out", config).card
    assert {f["case_id"] for f in card["failed"]} == {1, 2}
    assert all("took longer than limits.case_timeout_s 0.001 s" in f["error"] for f in card["failed"])


# --- tolerance -----------------------------------------------------------------------------------
@pytest.mark.parametrize("tail, note", [(bytes(4096), "zero padding"), (b"\x13\x37junk", "stray bytes")])
def test_trailing_bytes_after_the_gzip_data_are_noted_not_fatal(tmp_path, tail, note):
    inp, _ = make_input(tmp_path / "in", 2)
    sound = run(inp, tmp_path / "sound").card
    with open(inp / "0001.vital", "ab") as f:
        f.write(tail)
    card = run(inp, tmp_path / "out").card
    d = outcome(card, 1)
    assert d["status"] == "ok" and d["windows"] == outcome(sound, 1)["windows"]
    assert note in d["read"]["gzip_note"]


# --- selections ----------------------------------------------------------------------------------
def test_a_huge_selection_is_checked_against_the_files_without_expanding_it(tmp_path):
    """In its own process (the card's main-process peak memory is then the run's): ~100 MB, not 13 GB."""
    inp, _ = make_input(tmp_path / "in", 2)
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "vitalflow", "preprocess", "--input", str(inp), "--clinical",
                           str(inp / "clinical.csv"), "--output", str(tmp_path / "out"), "--cases", "1-100000000",
                           "--quiet"], capture_output=True, text=True, timeout=120)
    assert time.perf_counter() - t < 60
    assert proc.returncode == 3, proc.stderr  # 2 of 100000000 succeeded
    assert "99999998 selected case id(s) have no file" in proc.stderr
    card = json.loads((tmp_path / "out" / "preprocessing_metadata.json").read_text())
    assert card["cases"]["selected"] == 100_000_000 and card["cases"]["without_file"] == 99_999_998
    assert card["inputs"]["without_file"]["ids"] == "3-100000000"
    assert card["cases"]["success_rate"] < 1e-6 and card["cases"]["with_windows"] == 2
    assert card["run"]["peak_rss_mb"]["main"] < 300
    assert (tmp_path / "out" / "_ledger" / "h0" / "run.json").stat().st_size < 100_000


def test_two_files_for_one_case_fail_it_naming_both(tmp_path):
    inp, _ = make_input(tmp_path / "in", 2)
    os.link(inp / "0002.vital", inp / "2.vital")
    card = run(inp, tmp_path / "out").card
    f = failure(card, 2)
    assert f["stage"] == "read" and "0002.vital and 2.vital" in f["error"]
    assert outcome(card, 1)["status"] == "ok"


def test_a_named_pipe_is_not_read(tmp_path):
    inp, _ = make_input(tmp_path / "in", 2)
    os.mkfifo(inp / "0130.vital")
    t = time.perf_counter()
    card = run(inp, tmp_path / "out").card
    assert time.perf_counter() - t < 60
    f = failure(card, 130)
    assert f["stage"] == "read" and "not a regular file" in f["error"]


@pytest.mark.parametrize("text", ["١٢", "1-٣", "１"])
def test_non_ascii_digits_are_not_case_ids(text):
    with pytest.raises(CaseSelectionError, match="ASCII digits only"):
        parse_case_selection(text)


# --- splits and identity -------------------------------------------------------------------------
def test_a_subjects_split_does_not_depend_on_the_selection(tmp_path):
    inp, _ = make_input(tmp_path / "in", 12)
    splits = {}
    for sel in ("1-3", "1-12", "2,5,11"):
        card = run(inp, tmp_path / sel.replace(",", "_"), cases=sel).card
        for d in card["case_details"]:
            assert splits.setdefault(d["subject_id"], d["split"]) == d["split"], (sel, d)


def test_an_output_refuses_other_inputs(tmp_path):
    inp, _ = make_input(tmp_path / "in", 2)
    other, _ = make_input(tmp_path / "other", 2)
    run(inp, tmp_path / "out")
    resume = RunOptions(workers=1)
    with pytest.raises(Exception, match=r"--input .*other \(the output was made from .*in\)"):
        run(other, tmp_path / "out", options=resume)
    set_clinical(inp, 1, age="33")
    with pytest.raises(Exception, match="clinical table"):
        run(inp, tmp_path / "out", options=resume)


def test_a_changed_recording_refuses_resume(tmp_path):
    inp, _ = make_input(tmp_path / "in", 2)
    run(inp, tmp_path / "out")
    assert run(inp, tmp_path / "out", options=RunOptions(workers=1)).card["status"] == "complete"
    st = (inp / "0002.vital").stat()
    os.utime(inp / "0002.vital", (st.st_atime, st.st_mtime + 10))
    with pytest.raises(Exception, match="1 recording.* changed.*0002.vital"):
        run(inp, tmp_path / "out", options=RunOptions(workers=1))


def test_a_spec_naming_an_unknown_clinical_column_is_refused_at_load(tmp_path):
    from vitalflow.spec.model import BUILTIN_DIR
    from vitalflow.spec import load_spec

    text = (BUILTIN_DIR / "master_poc.yaml").read_text()
    assert "column: asa" in text
    (tmp_path / "spec.yaml").write_text(text.replace("column: asa", "column: asa_class"))
    with pytest.raises(SpecError, match="static.5.column.*'asa_class' is not one vitalflow reads"):
        load_spec(str(tmp_path / "spec.yaml"))


# --- workers that die, tracebacks, empty splits -----------------------------------------------------
def test_a_worker_killed_by_the_kernel_is_reported_as_such(tmp_path, monkeypatch):
    """A worker that gets SIGKILL (what the OOM killer sends) while it holds case 1: the case fails at
    ``worker`` naming the signal, the run lists the death and the other case still succeeds. The
    patch is inherited by the forked workers."""
    import signal

    import vitalflow.run.preprocess_job as pre

    real = pre.preprocess_case

    def dies_on_case_1(tracks, duration_s, patient, *args, **kwargs):
        if patient.case_id == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(tracks, duration_s, patient, *args, **kwargs)

    monkeypatch.setattr(pre, "preprocess_case", dies_on_case_1)
    inp, _ = make_input(tmp_path / "in", 2)
    card = run(inp, tmp_path / "out").card
    f = failure(card, 1)
    assert f["stage"] == "worker" and "killed by SIGKILL" in f["error"], f
    assert card["run"]["worker_deaths"] and "SIGKILL" in card["run"]["worker_deaths"][0]["workers"][0]
    assert outcome(card, 2)["status"] == "ok"


def test_an_unexpected_error_is_one_line_without_a_traceback(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import vitalflow.run.preprocess_job as pre
    from vitalflow.cli import app

    def broken(*args, **kwargs):
        raise ValueError("first line\nsecond line")

    monkeypatch.setattr(pre, "preprocess_case", broken)
    inp, _ = make_input(tmp_path / "in", 1)
    args = ["preprocess", "--input", str(inp), "--clinical", str(inp / "clinical.csv"), "--quiet", "--workers", "1"]
    result = CliRunner().invoke(app, [*args, "--output", str(tmp_path / "out")])
    assert result.exit_code == 3
    assert "Traceback" not in result.stderr
    assert "  failed  case 1 (internal): ValueError: first line second line\n" in result.stderr
    verbose = CliRunner().invoke(app, [*args, "--output", str(tmp_path / "out2"), "--verbose"])
    assert "Traceback" in verbose.stderr  # with --verbose, the worker's log line carries it


def test_empty_splits_are_warnings_in_the_card_and_the_summary(tmp_path):
    import hashlib

    from typer.testing import CliRunner

    from vitalflow.cli import app

    inp, cases = make_input(tmp_path / "in", 2)
    subjects = {str(c[1]["subjectid"]) for c in cases.values()}
    expected_empty = set(["train", "validation", "test"])
    for s in subjects:  # the rule by hand
        u = int.from_bytes(hashlib.sha256(f"0:{s}".encode()).digest()[:8], "big") / 2**64
        expected_empty.discard("train" if u < 0.70 else "validation" if u < 0.85 else "test")
    assert expected_empty  # two subjects cannot fill three splits
    result = CliRunner().invoke(app, ["preprocess", "--input", str(inp), "--clinical", str(inp / "clinical.csv"),
                                      "--output", str(tmp_path / "out"), "--quiet"])
    assert result.exit_code == 0, result.output
    card = json.loads((tmp_path / "out" / "preprocessing_metadata.json").read_text())
    warned = {w.split()[1] for w in card["warnings"] if w.startswith("split ")}
    assert warned == expected_empty
    for split in expected_empty:
        assert f"warning: split {split} is empty" in result.stderr
    achieved = card["split_fractions"]["achieved_subjects"]
    assert sum(achieved.values()) == pytest.approx(1.0) and all(achieved[s] == 0 for s in expected_empty)


def test_the_library_takes_case_ids_as_a_list(tmp_path):
    inp, _ = make_input(tmp_path / "in", 3)
    config, spec = load_config()
    card = preprocess(inp, inp / "clinical.csv", tmp_path / "out", config, spec, cases=[3, 1, 9], options=QUIET).card
    assert sorted(d["case_id"] for d in card["case_details"]) == [1, 3] and card["inputs"]["selection"] == "1,3,9"
    assert card["cases"]["without_file"] == 1


def inherited_rss_mb() -> float:
    """This (test) process's resident memory: a forked worker starts with it mapped, so its RSS
    includes it (after the suite has loaded TensorFlow, hundreds of MB it never touches); the
    bounds above are on what a worker adds."""
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0

