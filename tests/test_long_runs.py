"""Runs that survive anything: SIGKILL at random moments, SIGTERM, locks, leftovers, retries, merge.

These tests run the real command in subprocesses and kill it for real.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vitalflow.cli import app
from vitalflow.dataset.card import CARD_NAME
from outputs import CASES, dataset

runner = CliRunner()


def _args(corpus: Path, out: Path, *extra) -> list[str]:
    return ["preprocess", "--input", str(corpus), "--clinical", str(corpus / "clinical.csv"), "--output", str(out),
            "--workers", "2", *map(str, extra)]


def _spawn(corpus, out, *extra) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "vitalflow", *_args(corpus, out, "--quiet", *extra)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _commits(out: Path) -> int:
    return len(list((out / "_ledger" / "h0").glob("commit-*.json")))


def _wait_for_commits(out: Path, n: int, proc: subprocess.Popen, timeout: float = 60.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        if _commits(out) >= n:
            return True
        time.sleep(0.01)
    return False


def test_sigkill_at_random_moments_then_resume_equals_uninterrupted(big_corpus, clean_run, tmp_path):
    out = tmp_path / "out"
    rnd = random.Random(20261122)
    kills, attempts = 0, 0
    while attempts < 120:
        attempts += 1
        before = _commits(out) if out.exists() else 0
        proc = _spawn(big_corpus, out, "--commit-every", rnd.choice([1, 1, 2]), "--workers", 1)
        if rnd.random() < 0.6:  # a random moment after the run has made progress: inside the case loop
            _wait_for_commits(out, before + 1, proc)
            time.sleep(rnd.uniform(0.0, 0.1))
        else:  # any moment at all: start-up, plan, leftover cleanup, commits
            time.sleep(rnd.uniform(0.0, 1.5))
        if proc.poll() is None:
            proc.kill()
            proc.wait()
            kills += 1
            continue
        proc.communicate()
        assert proc.returncode == 0, f"attempt {attempts} exited {proc.returncode}"
        if kills >= 20:
            break
        print(f"finished after {kills} kills; starting over")
        shutil.rmtree(out)  # finished before 20 kills: start over, keeping the kill count
    print(f"crash test: {kills} kills in {attempts} attempts")
    assert kills >= 20, f"only {kills} kills in {attempts} attempts"
    card = json.loads((out / CARD_NAME).read_text())
    assert card["status"] == "complete" and card["cases"]["done"] == CASES
    assert dataset(out) == clean_run
    assert runner.invoke(app, ["verify", str(out)]).exit_code == 0


def test_sigterm_stops_within_limit_card_partial_and_resume_completes(big_corpus, clean_run, tmp_path):
    out = tmp_path / "out"
    proc = _spawn(big_corpus, out, "--commit-every", 2, "--workers", 1)
    assert _wait_for_commits(out, 1, proc), "no commit before the run ended"
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    elapsed = time.monotonic() - sent
    assert elapsed < 30, f"took {elapsed:.1f} s to stop"
    assert proc.returncode == 75, stderr
    assert "stopped by SIGTERM" in stderr and "Resume with:" in stderr
    resume_cmd = stderr.split("Resume with:")[1].strip().splitlines()[0]
    assert f"--output {out}" in resume_cmd
    card = json.loads((out / CARD_NAME).read_text())
    assert card["status"] == "partial" and 0 < card["cases"]["done"] < CASES
    assert card["run"]["stopped_by"] == "SIGTERM"
    verify = runner.invoke(app, ["verify", str(out)])
    assert verify.exit_code == 4 and "partial" in verify.stderr

    result = runner.invoke(app, _args(big_corpus, out, "--quiet"))
    assert result.exit_code == 0, result.output
    assert dataset(out) == clean_run


def test_second_signal_exits_at_once_and_ledger_stays_consistent(big_corpus, clean_run, tmp_path):
    out = tmp_path / "out"
    proc = _spawn(big_corpus, out, "--commit-every", 1)
    assert _wait_for_commits(out, 2, proc)
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=30)
    assert proc.returncode in (75, 128 + signal.SIGINT)
    result = runner.invoke(app, _args(big_corpus, out, "--quiet"))
    assert result.exit_code == 0, result.output
    assert dataset(out) == clean_run


def test_second_run_into_the_same_output_is_locked_out(big_corpus, tmp_path):
    out = tmp_path / "out"
    proc = _spawn(big_corpus, out, "--commit-every", 1, "--workers", 1)
    try:
        assert _wait_for_commits(out, 1, proc)
        result = runner.invoke(app, _args(big_corpus, out, "--quiet"))
        assert result.exit_code == 1
        assert "is being written by another run" in result.stderr and f"pid {proc.pid}" in result.stderr
    finally:
        proc.kill()
        proc.wait()
    assert runner.invoke(app, _args(big_corpus, out, "--quiet")).exit_code == 0  # the kernel freed the lock


def test_unrecorded_parts_are_reported_by_verify_and_removed_on_resume(big_corpus, clean_run, tmp_path):
    out = tmp_path / "out"
    assert runner.invoke(app, _args(big_corpus, out, "--quiet", "--commit-every", 4)).exit_code == 0
    last = sorted((out / "_ledger" / "h0").glob("commit-*.json"))[-1]
    orphaned = [p["path"] for p in json.loads(last.read_text())["parts"].values()]
    last.unlink()  # as if killed after publishing the parts, before recording them
    verify = runner.invoke(app, ["verify", str(out)])
    assert verify.exit_code == 4
    assert all(f"{name}: a part file no commit record names" in verify.stderr for name in orphaned)
    result = runner.invoke(app, _args(big_corpus, out, "--commit-every", 4))
    assert result.exit_code == 0, result.output
    assert "removed" in result.stderr and orphaned[0] in result.stderr
    assert dataset(out) == clean_run


def test_failed_cases_stay_failed_unless_retried(big_corpus, tmp_path):
    corpus = tmp_path / "in"
    shutil.copytree(big_corpus, corpus)
    good = (corpus / "0003.vital").read_bytes()
    (corpus / "0003.vital").write_bytes(good[:100])
    config = tmp_path / "run.yaml"
    config.write_text("min_success_rate: 0.5\n")
    args = _args(corpus, tmp_path / "out", "--quiet", "--config", config)
    first = runner.invoke(app, args)
    assert first.exit_code == 0 and "failed  case 3 (read)" in first.stderr
    (corpus / "0003.vital").write_bytes(good)
    again = runner.invoke(app, args)
    card = json.loads((tmp_path / "out" / CARD_NAME).read_text())
    assert again.exit_code == 0 and [f["case_id"] for f in card["failed"]] == [3]
    assert card["run"]["cases_processed"] == 0
    retried = runner.invoke(app, [*args, "--retry-failed"])
    card = json.loads((tmp_path / "out" / CARD_NAME).read_text())
    assert retried.exit_code == 0 and card["failed"] == [] and card["run"]["cases_processed"] == 1
    assert runner.invoke(app, ["verify", str(tmp_path / "out")]).exit_code == 0


def test_merge_writes_single_split_files_tensorflow_reads(big_corpus, tmp_path):
    tf = pytest.importorskip("tensorflow")
    out = tmp_path / "out"
    result = runner.invoke(app, _args(big_corpus, out, "--quiet", "--merge", "--commit-every", 5))
    assert result.exit_code == 0, result.output
    card = json.loads((out / CARD_NAME).read_text())
    for split, info in card["splits"].items():
        assert card["merged"][split]["path"] == f"{split}.tfrecord.gz"
        ds = tf.data.TFRecordDataset(str(out / f"{split}.tfrecord.gz"), compression_type="GZIP")
        assert sum(1 for _ in ds) == info["windows"]
    data = bytearray((out / "train.tfrecord.gz").read_bytes())
    data[100] ^= 0xFF
    (out / "train.tfrecord.gz").write_bytes(bytes(data))
    verify = runner.invoke(app, ["verify", str(out)])
    assert verify.exit_code == 4 and "train.tfrecord" in verify.stderr


def test_progress_lines_when_not_a_terminal(big_corpus, tmp_path):
    result = runner.invoke(app, _args(big_corpus, tmp_path / "a", "--cases", "1-4", "--progress-interval", 0.1))
    assert "progress: 0/4 cases" in result.stderr and "progress: 4/4 cases (100.0%)" in result.stderr
    result = runner.invoke(app, _args(big_corpus, tmp_path / "b", "--cases", "1-4", "--log-format", "json"))
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    final = [line for line in lines if "progress" in line][-1]["progress"]
    assert final["done"] == final["total"] == 4 and final["windows"] > 0 and "eta_s" in final
    quiet = runner.invoke(app, _args(big_corpus, tmp_path / "c", "--cases", "1-4", "--quiet"))
    assert "progress" not in quiet.stderr and quiet.exit_code == 0
