"""Regression tests for CLI defects: the resume command, --log-format, flags in --help, --verbose
after a subcommand, failed cases printed once, reruns with nothing to do, runs without windows,
the summary of a stopped run, one-line errors."""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vitalflow.cli import app
from vitalflow.dataset.card import CARD_NAME
from vitalflow.runtime.progress import BarReporter, LogReporter, Tally

runner = CliRunner()
COMMANDS = ["synth", "preprocess", "verify", "demo", "spec", "launch", "jobs"]
NO_WINDOWS = ("Error: no windows were written: every case was excluded or failed "
              "(see the card's 'excluded' and 'failed' lists)")


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def _io(corpus: Path, out: Path) -> list:
    return ["--input", corpus, "--clinical", corpus / "clinical.csv", "--output", out]


def _commits(out: Path) -> int:
    return len(list((out / "_ledger" / "h0").glob("commit-*.json")))


def _pairs(args: list[str]) -> set[tuple[str, str]]:
    return set(zip(args, args[1:]))


# 1. the resume command keeps every option given (except --overwrite), quoted


def test_resume_command_after_sigint_keeps_every_option_and_completes_the_merge(big_corpus, tmp_path):
    out = tmp_path / "out dir"  # a space: the printed command must quote it
    argv = [sys.executable, "-m", "vitalflow", "--verbose", "preprocess", *map(str, _io(big_corpus, out)),
            "--merge", "--workers", "1", "--commit-every", "2", "--quiet", "--log-format", "json", "--overwrite"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    end = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < end and (not out.exists() or _commits(out) < 1):
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 75, stderr
    [line] = [ln for ln in stderr.splitlines() if "Resume with:" in ln]
    assert line.startswith("Error: stopped by SIGINT")  # one line: the command is on it
    resume = shlex.split(line.split("Resume with:", 1)[1])
    assert resume[:2] == ["vitalflow", "preprocess"]
    assert {("--input", str(big_corpus)), ("--output", str(out)), ("--workers", "1"), ("--commit-every", "2"),
            ("--log-format", "json")} <= _pairs(resume)
    assert {"--merge", "--quiet", "--verbose"} <= set(resume)
    assert "--overwrite" not in resume  # resuming must not delete

    result = runner.invoke(app, resume[1:])
    assert result.exit_code == 0, result.output
    card = json.loads((out / CARD_NAME).read_text())
    assert card["status"] == "complete" and card["run"]["cases_processed"] > 0
    for split in card["splits"]:
        assert card["merged"][split]["path"] == f"{split}.tfrecord.gz"
        assert (out / f"{split}.tfrecord.gz").is_file()


def test_low_success_message_prints_the_same_command_with_retry_failed(corpus_copy, tmp_path):
    (corpus_copy / "0002.vital").write_bytes(b"")
    result = invoke("preprocess", *_io(corpus_copy, tmp_path / "o"), "--cases", "1-4", "--workers", 1,
                    "--commit-every", 3, "--merge", "--progress-interval", 5)
    assert result.exit_code == 3, result.output
    [line] = [ln for ln in result.stderr.splitlines() if ln.startswith("Error: only")]
    command = shlex.split(line.split("rerun with --retry-failed:", 1)[1])
    assert command[:2] == ["vitalflow", "preprocess"] and command.count("--retry-failed") == 1
    assert {("--cases", "1-4"), ("--workers", "1"), ("--commit-every", "3"),
            ("--progress-interval", "5.0")} <= _pairs(command)
    assert "--merge" in command


# 2. --log-format takes text or json only


def test_unknown_log_format_is_a_usage_error(corpus, tmp_path):
    result = invoke("preprocess", *_io(corpus, tmp_path / "out"), "--log-format", "xml")
    assert result.exit_code == 2
    assert "--log-format" in result.stderr and "xml" in result.stderr
    assert not (tmp_path / "out").exists()


# 3. flags render as flags in --help


@pytest.mark.parametrize("command", [[], *([c] for c in COMMANDS)])
def test_help_shows_flags_without_a_bool_metavar(command):
    result = invoke(*command, "--help")
    assert result.exit_code == 0, result.output
    assert "--help" in result.output and "<bool>" not in result.output


# 4. --verbose/-v after every subcommand


@pytest.mark.parametrize("flag", ["--verbose", "-v"])
def test_verbose_after_the_subcommand(corpus, tmp_path, flag):
    config = tmp_path / "run.yaml"
    config.write_text("spec: nope.yaml\n")
    args = ["preprocess", *_io(corpus, tmp_path / "out"), "--config", config]
    plain = invoke(*args)
    assert plain.exit_code == 1 and "Traceback" not in plain.stderr
    for argv in ([*args, flag], [flag, *args]):
        result = invoke(*argv)
        assert result.exit_code == 1 and "Traceback" in result.stderr, argv
        assert result.stderr.strip().splitlines()[-1].startswith("Error: ")
    result = invoke("verify", tmp_path / "nowhere", flag)
    assert result.exit_code == 1 and "Traceback" in result.stderr


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_takes_verbose(command):
    result = invoke(command, "--help")
    assert re.search(r"--verbose\s+-v\s", result.output), result.output


# 5. each failed case is printed once


def test_each_failed_case_is_printed_once(corpus_copy, tmp_path):
    (corpus_copy / "0003.vital").write_bytes(b"")
    config = tmp_path / "run.yaml"
    config.write_text("min_success_rate: 0.5\n")
    result = invoke("preprocess", *_io(corpus_copy, tmp_path / "out"), "--cases", "1-4", "--config", config,
                    "--workers", 1)
    assert result.exit_code == 0, result.output
    assert "failed  case 3 (read)" in result.stderr
    text = result.stdout + result.stderr
    assert len(re.findall(r"\bcase 3\b", text)) == 1, text


# 6. a rerun with nothing to do says so


def test_rerun_of_a_complete_output_says_already_complete_and_still_verifies(corpus, tmp_path):
    out = tmp_path / "out"
    args = ["preprocess", *_io(corpus, out), "--cases", "1-2", "--progress-interval", 0.1]
    assert invoke(*args).exit_code == 0
    card = json.loads((out / CARD_NAME).read_text())
    windows = sum(s["windows"] for s in card["splits"].values())
    again = invoke(*args)
    assert again.exit_code == 0, again.output
    assert again.stdout.strip() == f"already complete: {out} holds 2 cases ({windows} windows); nothing to do"
    assert "progress" not in again.stderr and "cases/s" not in again.output
    split = max(card["splits"], key=lambda s: card["splits"][s]["windows"])
    path = out / card["files"][split][0]["path"]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    damaged = invoke(*args)  # nothing to do, but the output is still verified
    assert damaged.exit_code == 4 and "verification" in damaged.stderr


def test_reporters_print_nothing_when_there_is_nothing_to_do(caplog):
    from rich.console import Console

    tally = Tally(total=3, done=3, windows=10, done_at_start=3)
    with caplog.at_level("INFO", logger="vitalflow.progress"):
        reporter = LogReporter(0.0)
        reporter.start(tally)
        reporter.update()
        reporter.close()
    assert caplog.records == []
    buffer = io.StringIO()
    bar = BarReporter(Console(file=buffer, force_terminal=True))
    bar.start(tally)
    bar.update()
    bar.close()
    assert buffer.getvalue() == ""


# 7. a dataset without windows is never a success


def test_run_in_which_every_case_is_excluded_is_an_error(tmp_path):
    from vitalflow.synth import synth_corpus

    synth_corpus(tmp_path / "in", 3, seed=1, hours=0.1, waves=False)  # each shorter than a window
    result = invoke("preprocess", *_io(tmp_path / "in", tmp_path / "out"), "--workers", 1)
    assert result.exit_code == 3, result.output
    assert result.stderr.strip().splitlines()[-1] == NO_WINDOWS
    assert "success:" not in result.stdout
    card = json.loads((tmp_path / "out" / CARD_NAME).read_text())
    assert card["cases"]["excluded"] == 3


# 8. a stopped run's summary says how many cases are done


def test_summary_of_a_stopped_run_says_how_many_cases_are_done(corpus, tmp_path, monkeypatch):
    real_add = Tally.add

    def add(self, windows, failed):  # a SIGTERM after the second case
        real_add(self, windows, failed)
        if self.done - self.done_at_start == 2:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(Tally, "add", add)
    result = invoke("preprocess", *_io(corpus, tmp_path / "out"), "--workers", 1, "--commit-every", 1, "--quiet")
    assert result.exit_code == 75, result.output
    card = json.loads((tmp_path / "out" / CARD_NAME).read_text())
    done, selected = card["cases"]["done"], card["cases"]["selected"]
    assert card["status"] == "partial" and done < selected
    assert f"cases: {done} of {selected} cases done" in result.stdout
    assert "success rate so far 100.0% of those" in result.stdout
    assert "(success rate 100.0%)" not in result.stdout


# 9. every Error: line is one line


def test_invalid_yaml_config_is_one_error_line(corpus, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("windows: [1, 2\n")
    result = invoke("preprocess", *_io(corpus, tmp_path / "out"), "--config", config)
    assert result.exit_code == 1
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("Error: config")


def test_os_errors_are_one_plain_line(corpus, tmp_path):
    (tmp_path / "afile").write_text("")
    result = invoke("preprocess", *_io(corpus, tmp_path / "afile" / "out"), "--quiet")
    assert result.exit_code == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("Error: ") and str(tmp_path / "afile") in line and "[Errno" not in line
