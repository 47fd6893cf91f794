"""The CLI, in-process, with its real output; every bad input of the issue; verify's detection."""

from __future__ import annotations

import csv
import json

import pytest
from typer.testing import CliRunner

from vitalflow.cli import app
from vitalflow.dataset import parts as parts_module
from vitalflow.dataset.card import CARD_NAME

runner = CliRunner()
COMMANDS = ["synth", "preprocess", "verify", "demo", "spec", "tune"]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def _edit_clinical(path, edits, drop=()):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    fields = list(rows[0])
    rows = [r for r in rows if int(r["caseid"]) not in drop]
    for r in rows:
        r.update(edits.get(int(r["caseid"]), {}))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command):
    result = invoke(command, "--help")
    assert result.exit_code == 0
    assert "Usage:" in result.output and len(result.output.splitlines()) > 4


def test_top_level_help_lists_every_command():
    result = invoke("--help")
    for command in COMMANDS:
        assert command in result.output


def test_synth_writes_cases_and_clinical_table(tmp_path):
    result = invoke("synth", tmp_path, "--cases", 3, "--hours", 0.3, "--no-waves", "--seed", 5)
    assert result.exit_code == 0, result.output
    # each recording has its decision log and the simulated clinician's probabilities (the oracle) beside it
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f"000{i}.{kind}" for i in (1, 2, 3) for kind in ("decisions.csv", "oracle.npz", "vital")] + ["clinical.csv"]
    with open(tmp_path / "clinical.csv") as f:
        assert [int(r["caseid"]) for r in csv.DictReader(f)] == [1, 2, 3]


def test_preprocess_then_verify(corpus, tmp_path):
    out = tmp_path / "out"
    result = invoke("preprocess", "--input", corpus, "--clinical", corpus / "clinical.csv", "--output", out,
                    "--cases", "1-3,0005")
    assert result.exit_code == 0, result.output
    assert "success:" in result.stdout and "verified" in result.stdout
    card = json.loads((out / CARD_NAME).read_text())
    assert [d["case_id"] for d in card["case_details"]] == [1, 2, 3, 5]
    assert not list(out.glob("*.incomplete"))
    result = invoke("verify", out)
    assert result.exit_code == 0 and "verified" in result.stdout


def test_rerun_resumes_and_other_settings_are_refused(corpus, tmp_path):
    args = ["preprocess", "--input", corpus, "--clinical", corpus / "clinical.csv", "--output", tmp_path, "--cases", "1-2"]
    assert invoke(*args).exit_code == 0
    first = json.loads((tmp_path / CARD_NAME).read_text())
    again = invoke(*args)  # resume is the default: nothing left to do, same dataset
    assert again.exit_code == 0, again.output
    second = json.loads((tmp_path / CARD_NAME).read_text())
    assert second["run"]["cases_processed"] == 0 and second["files"] == first["files"]
    other = invoke(*args[:-1], "1-3")
    assert other.exit_code == 1
    assert other.stderr.strip().splitlines()[-1].startswith("Error: ")
    assert "other inputs or settings: case selection" in other.stderr and "--overwrite" in other.stderr
    config = tmp_path.parent / "run.yaml"
    config.write_text("windows: {length_s: 300, step_s: 60, horizon_s: 30}\n")
    changed = invoke(*args, "--config", config)
    assert changed.exit_code == 1 and "other inputs or settings: config or spec" in changed.stderr
    assert invoke(*args, "--config", config, "--overwrite").exit_code == 0
    assert json.loads((tmp_path / CARD_NAME).read_text())["config"]["windows"]["step_s"] == 60


def test_bad_inputs_fail_their_case_and_the_run_goes_on(corpus_copy, tmp_path):
    valid = (corpus_copy / "0001.vital").read_bytes()
    (corpus_copy / "0002.vital").write_bytes(valid[: len(valid) // 3])  # truncated gzip
    (corpus_copy / "0003.vital").write_bytes(b"")  # empty
    (corpus_copy / "0004.vital").write_text("caseid,weight\n4,70\n")  # not a .vital file
    data = bytearray((corpus_copy / "0005.vital").read_bytes())
    data[40:80] = bytes(b ^ 0x5A for b in data[40:80])  # corrupt gzip
    (corpus_copy / "0005.vital").write_bytes(bytes(data))
    _edit_clinical(corpus_copy / "clinical.csv",
                   {6: {"weight": "0"}, 7: {"height": "-170"}, 8: {"aneend": "garbage"}}, drop=[1])
    out = tmp_path / "out"
    result = invoke("preprocess", "--input", corpus_copy, "--clinical", corpus_copy / "clinical.csv",
                    "--output", out, "--cases", "1-8,0099")
    # 2 of 9 succeed: 2 (a truncated gzip stream is read as far as it goes, as vitaldb does) and 8;
    # 99 has no file, which counts as not succeeded
    assert result.exit_code == 3, result.output
    assert "Error: only 22.2% of cases succeeded" in result.stderr
    assert "1 selected case id(s) have no file" in result.stderr and ": 99" in result.stderr
    card = json.loads((out / CARD_NAME).read_text())
    assert card["inputs"]["without_file"] == {"count": 1, "ids": "99"} and card["cases"]["without_file"] == 1
    failed = {f["case_id"]: f for f in card["failed"]}
    expected = {
        1: ("clinical", "case 1: no row in the clinical table"),
        3: ("read", "0003.vital: empty file"),
        4: ("read", "0004.vital: not a .vital file"),
        5: ("read", "0005.vital: corrupt gzip data"),
        6: ("transform", "case 6: weight 0 kg is missing or not positive"),
        7: ("transform", "case 7: height -170 cm is not positive"),
    }
    assert set(failed) == set(expected)
    for case, (stage, text) in expected.items():
        assert failed[case]["stage"] == stage and text in failed[case]["error"], failed[case]
        assert f"case {case}" in result.stderr
    details = {d["case_id"]: d for d in card["case_details"]}
    assert details[8]["status"] == "ok" and "whole recording used" in details[8]["crop_note"]
    assert details[2]["status"] != "failed" and "cut short" in details[2]["read"]["gzip_note"]
    assert invoke("verify", out).exit_code == 0  # what was written is complete and valid


def test_min_success_rate_is_configurable(corpus_copy, tmp_path):
    (corpus_copy / "0002.vital").write_bytes(b"")
    config = tmp_path / "run.yaml"
    config.write_text("min_success_rate: 0.5\n")
    result = invoke("preprocess", "--input", corpus_copy, "--clinical", corpus_copy / "clinical.csv",
                    "--output", tmp_path / "out", "--cases", "1-4", "--config", config)
    assert result.exit_code == 0, result.output
    assert "failed  case 2 (read)" in result.stderr


def test_spec_with_unknown_key_is_one_clear_line(corpus, tmp_path):
    spec = tmp_path / "spec.yaml"
    from vitalflow.spec.model import BUILTIN_DIR

    spec.write_text((BUILTIN_DIR / "master_poc.yaml").read_text().replace("\nversion: 2", "\nversion: 2\nflavour: x"))
    config = tmp_path / "run.yaml"
    config.write_text(f"spec: {spec}\n")
    result = invoke("preprocess", "--input", corpus, "--clinical", corpus / "clinical.csv",
                    "--output", tmp_path / "out", "--config", config)
    assert result.exit_code == 1
    assert result.stderr.strip() == f"Error: spec {spec}: flavour: unknown key"
    assert not (tmp_path / "out").exists()  # failed before any I/O on the output
    verbose = runner.invoke(app, ["--verbose", "preprocess", "--input", str(corpus), "--clinical",
                                  str(corpus / "clinical.csv"), "--output", str(tmp_path / "out"),
                                  "--config", str(config)])
    assert "Traceback" in verbose.stderr and verbose.exit_code == 1


@pytest.mark.parametrize("selection, message", [("5-1", "runs backwards"), ("a-b", "not a case id"),
                                                ("1-", "not a case id"), ("", "empty")])
def test_bad_case_selection(corpus, tmp_path, selection, message):
    result = invoke("preprocess", "--input", corpus, "--clinical", corpus / "clinical.csv",
                    "--output", tmp_path / "out", "--cases", selection)
    assert result.exit_code == 1 and message in result.stderr and result.stderr.startswith("Error: ")


def test_missing_clinical_table(corpus, tmp_path):
    result = invoke("preprocess", "--input", corpus, "--clinical", tmp_path / "nope.csv", "--output", tmp_path / "o")
    assert result.exit_code == 1 and "clinical table not found" in result.stderr


def test_crash_while_writing_leaves_only_committed_parts_and_resume_completes(corpus, tmp_path, monkeypatch):
    from vitalflow.dataset.tfrecord import decode_example, read_records

    calls = {"n": 0}
    real_add = parts_module.PartWriter.add

    def failing_add(self, split, case_id, block, examples):  # while the 5th case's block is appended
        calls["n"] += 1
        if calls["n"] == 5:
            raise OSError(28, "No space left on device")
        return real_add(self, split, case_id, block, examples)

    monkeypatch.setattr(parts_module.PartWriter, "add", failing_add)
    out = tmp_path / "out"
    args = ["preprocess", "--input", corpus, "--clinical", corpus / "clinical.csv", "--output", out, "--commit-every", 1]
    result = invoke(*args)
    assert result.exit_code == 1 and "No space left on device" in result.stderr
    records = [json.loads(p.read_text()) for p in sorted((out / "_ledger" / "h0").glob("commit-*.json"))]
    committed = {p["path"] for r in records for p in r["parts"].values()}
    assert committed and not (out / CARD_NAME).exists()
    assert {p.name for p in out.glob("*.tfrecord*")} == committed  # nothing half-written under a final name
    for r in records:  # each committed part holds exactly the windows its record lists
        for split, part in r["parts"].items():
            n = sum(1 for _ in read_records(out / part["path"], compression="GZIP"))
            assert n == part["examples"] == sum(c["windows"] for c in r["cases"] if c["split"] == split)
    monkeypatch.setattr(parts_module.PartWriter, "add", real_add)
    resumed = invoke(*args)
    assert resumed.exit_code == 0, resumed.output
    card = json.loads((out / CARD_NAME).read_text())
    keys = set()
    for split, parts in card["files"].items():
        for part in parts:
            for record in read_records(out / part["path"], compression="GZIP"):
                ex = decode_example(record)
                keys.add((int(ex["case_id"][0]), int(ex["window_start_s"][0])))
    assert len(keys) == sum(s["windows"] for s in card["splits"].values())  # none twice, none lost


def _run(corpus, out):
    assert invoke("preprocess", "--input", corpus, "--clinical", corpus / "clinical.csv",
                  "--output", out, "--cases", "1-4").exit_code == 0


def test_verify_detects_a_flipped_byte(corpus, tmp_path):
    _run(corpus, tmp_path)
    card = json.loads((tmp_path / CARD_NAME).read_text())
    split = max(card["splits"], key=lambda s: card["splits"][s]["windows"])
    path = tmp_path / card["files"][split][0]["path"]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    result = invoke("verify", tmp_path)
    assert result.exit_code == 4
    assert "checksum differs" in result.stderr and "unreadable" in result.stderr


def test_verify_detects_a_truncated_file_and_a_missing_card(corpus, tmp_path):
    _run(corpus, tmp_path)
    card = json.loads((tmp_path / CARD_NAME).read_text())
    path = tmp_path / card["files"]["train"][0]["path"]
    path.write_bytes(path.read_bytes()[:-100])
    result = invoke("verify", tmp_path)
    assert result.exit_code == 4 and "unreadable" in result.stderr
    (tmp_path / CARD_NAME).unlink()
    result = invoke("verify", tmp_path)
    assert result.exit_code == 1 and "no preprocessing_metadata.json" in result.stderr


def test_demo_runs_end_to_end(tmp_path):
    """README's first command: synthesize, preprocess, verify, train, evaluate, print the tables."""
    result = invoke("demo", tmp_path / "demo")
    assert result.exit_code == 0, result.output
    assert "success:" in result.stdout and "train" in result.stdout
    assert (tmp_path / "demo" / "output" / CARD_NAME).exists()
    assert (tmp_path / "demo" / "model" / "model_card.json").exists()
    assert (tmp_path / "demo" / "model" / "evaluation" / "test" / "report.html").exists()
    # the decision model's event tables, against the rule protocol, XGBoost and the oracle
    for label in ("AUPRC", "AUROC", "rules", "XGBoost", "oracle", "gap closed", "hypnotic/300", "oxygen/600"):
        assert label in result.stdout


def test_a_demo_too_small_to_train_says_why(tmp_path):
    result = invoke("demo", tmp_path / "demo", "--cases", 4)
    assert result.exit_code == 0, result.output
    assert "success:" in result.stdout and "not training:" in result.stdout and "--cases 12" in result.stdout
    assert not (tmp_path / "demo" / "model").exists()


def test_nan_inf_negative_rates_are_dropped_counted_and_the_case_kept(tmp_path):
    import numpy as np

    from vitalflow.vital.write import TrackData, write_vital

    rates = np.full(400, 14.0)  # mL/h of propofol 20 mg/mL
    rates[[100, 200, 300]] = [np.nan, np.inf, -5.0]
    t = np.arange(400.0)
    write_vital(tmp_path / "0001.vital", [
        TrackData("Solar8000", "HR", "num", t[::2], np.full(200, 72.0)),
        TrackData("Solar8000", "PLETH_SPO2", "num", t[::2], np.full(200, 98.0)),  # 2 of 8 inputs: enough
        TrackData("Orchestra", "PPF20_RATE", "num", t, rates),
    ], start=1.6e9, layout="packed")
    (tmp_path / "clinical.csv").write_text(
        "caseid,subjectid,anestart,aneend,age,sex,height,weight,bmi,asa\n1,11,0,400,50,M,175,70,22.9,2\n")
    out = tmp_path / "out"
    result = invoke("preprocess", "--input", tmp_path, "--clinical", tmp_path / "clinical.csv", "--output", out)
    assert result.exit_code == 0, result.output
    card = json.loads((out / CARD_NAME).read_text())
    assert card["cases"]["failed"] == 0
    assert card["feature_stats"]["Propofol_INF"]["implausible"] == 2  # inf and -5; NaN is simply missing
    assert card["case_details"][0]["implausible_seconds"] == {"Propofol_INF": 2}
