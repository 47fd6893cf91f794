"""A dataset as training sees it: its fingerprint (a content hash that ignores how the run was
executed) and `open_dataset`, which hands out only complete, verified outputs."""

from __future__ import annotations

import json
import os
import shutil
import signal

import pytest
from typer.testing import CliRunner

from outputs import to_previous_format
from vitalflow.cli import app
from vitalflow.dataset.card import CARD_NAME
from vitalflow.dataset.ledger import Ledger
from vitalflow.dataset.reference import Dataset, open_dataset
from vitalflow.dataset.verify import verify_output
from vitalflow.errors import OutputError
from vitalflow.run.preprocess import RunOptions, preprocess
from vitalflow.spec import load_config
from vitalflow.spec.model import SPLITS, Config, Output
from vitalflow.synth import synth_case
from vitalflow.synth.clinical import write_csv
from vitalflow.vital.write import write_vital


def run(inp, out, options=RunOptions(workers=1), config=None):
    default_config, spec = load_config()
    return preprocess(inp, inp / "clinical.csv", out, config or default_config, spec, options=options)


def card_of(out) -> dict:
    return json.loads((out / CARD_NAME).read_text())


def blocks_by_case(out) -> dict[int, str]:
    records = [json.loads(f.read_text()) for f in (out / "_ledger" / "h0").glob("commit-*.json")]
    return {b["case_id"]: b["sha256"] for r in records for p in r["parts"].values() for b in p["blocks"]}


def verify_cli(out):
    result = CliRunner().invoke(app, ["verify", str(out), "--workers", "1"])
    assert result.exit_code == 0, result.output
    return result


# --- fingerprint --------------------------------------------------------------------------------
def test_the_fingerprint_ignores_workers_and_commit_size(corpus, tmp_path):
    runs = {
        "1 worker, commits of 16": RunOptions(workers=1),
        "2 workers, commits of 1": RunOptions(workers=2, commit_every=1),
        "2 workers, commits of 16": RunOptions(workers=2, commit_every=16),
    }
    prints = {}
    for i, (what, options) in enumerate(runs.items()):
        result = run(corpus, tmp_path / f"out{i}", options)
        assert result.verify.ok, result.verify.problems
        prints[what] = card_of(tmp_path / f"out{i}")["fingerprint"]
        assert prints[what] == result.card.fingerprint
    assert len(set(prints.values())) == 1, prints
    assert list(prints.values())[0].startswith("sha256:")
    parts = {len(list((tmp_path / f"out{i}").glob("train-*"))) for i in range(3)}
    assert len(parts) > 1  # the layouts really differ


def test_the_fingerprint_changes_with_one_value_of_one_recording(tmp_path):
    """Two corpora that differ in one heart rate value of case 2: the fingerprints differ, and so
    does the block hash of case 2, and of no other case."""
    for name, change in (("a", 0.0), ("b", 1.0)):
        root = tmp_path / name
        root.mkdir()
        rows = []
        for case in (1, 2, 3):
            tracks, row, start, layout = synth_case(case, seed=5, hours=0.7, waves=False)
            if case == 2:
                hr = next(t for t in tracks if t.dtname == "Solar8000/HR")
                hr.values[len(hr.values) // 2] += change
            write_vital(root / f"{case:04d}.vital", tracks, start, layout=layout)
            rows.append(row)
        write_csv(root / "clinical.csv", rows)
        assert run(root, tmp_path / f"out-{name}").verify.ok
    a, b = card_of(tmp_path / "out-a"), card_of(tmp_path / "out-b")
    assert a["fingerprint"] != b["fingerprint"]
    before, after = blocks_by_case(tmp_path / "out-a"), blocks_by_case(tmp_path / "out-b")
    assert [c for c in before if before[c] != after[c]] == [2]


def test_the_fingerprint_names_the_config(corpus, tmp_path):
    a = run(corpus, tmp_path / "a").card
    b = run(corpus, tmp_path / "b", config=Config(output=Output(compression="none"))).card
    assert a.fingerprint != b.fingerprint and a.config_hash != b.config_hash


def test_a_case_block_is_the_same_bytes_in_every_run(corpus, tmp_path):
    """The fingerprint rests on this: a case's block (one gzip member, header mtime 0) does not
    depend on the run, the worker or the time."""
    run(corpus, tmp_path / "a", RunOptions(workers=1))
    run(corpus, tmp_path / "b", RunOptions(workers=2, commit_every=1))
    assert blocks_by_case(tmp_path / "a") == blocks_by_case(tmp_path / "b")


# --- open_dataset -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def verified(corpus, tmp_path_factory):
    """A complete output that `vitalflow verify` verified. Do not modify: copy it (`copy`)."""
    out = tmp_path_factory.mktemp("verified") / "out"
    assert run(corpus, out).verify.ok
    verify_cli(out)
    return out


@pytest.fixture
def copy(verified, tmp_path):
    shutil.copytree(verified, tmp_path / "out")
    return tmp_path / "out"


def test_a_verified_output_opens_with_its_parts_fingerprint_and_schema(verified):
    card = card_of(verified)
    assert card["verification"]["ok"] and card["verification"]["problems"] == 0
    assert card["verification"]["fingerprint"] == card["fingerprint"]
    dataset = open_dataset(str(verified))
    assert isinstance(dataset, Dataset)
    assert dataset.fingerprint == card["fingerprint"]
    assert dataset.example_schema.model_dump(mode="json") == card["example_schema"]
    assert set(dataset.parts) == set(SPLITS)
    for split in SPLITS:
        assert [f.path for f in dataset.parts[split]] == [p["path"] for p in card["files"][split]]
        assert dataset.files(split) == [str(verified / p["path"]) for p in card["files"][split]]
        assert dataset.examples(split) == card["splits"][split]["windows"]
    with pytest.raises(Exception):  # frozen: what training holds does not change under it
        dataset.fingerprint = "x"


def test_a_run_records_its_own_verification_and_opens(corpus, tmp_path):
    """A run verifies its output before it says success, and records that: no separate verify."""
    result = run(corpus, tmp_path / "out")
    card = card_of(tmp_path / "out")
    assert result.verify.ok and card["verification"]["ok"] and card["verification"]["fingerprint"] == card["fingerprint"]
    assert open_dataset(str(tmp_path / "out")).fingerprint == card["fingerprint"]


def test_open_refuses_a_folder_without_a_card(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(OutputError, match=f"{tmp_path / 'empty'}: no {CARD_NAME}"):
        open_dataset(str(tmp_path / "empty"))


def test_open_refuses_an_output_never_verified(copy):
    """A card that records no verification (as a run writes it before verifying, or an earlier
    vitalflow wrote it) is refused until `vitalflow verify` records one."""
    card = card_of(copy)
    card["verification"] = None
    (copy / CARD_NAME).write_text(json.dumps(card))
    with pytest.raises(OutputError, match=r"was not verified: run `vitalflow verify "):
        open_dataset(str(copy))
    verify_cli(copy)
    assert open_dataset(str(copy)).fingerprint == card["fingerprint"]


def test_open_refuses_a_partial_run(corpus, tmp_path, monkeypatch):
    real_record = Ledger.record

    def record(self, seq, *args):  # a SIGTERM once the first commit is recorded (a second would exit)
        commit = real_record(self, seq, *args)
        if seq == 0:
            os.kill(os.getpid(), signal.SIGTERM)
        return commit

    monkeypatch.setattr(Ledger, "record", record)
    out = tmp_path / "out"
    assert run(corpus, out, RunOptions(workers=1, commit_every=1)).card.status == "partial"
    CliRunner().invoke(app, ["verify", str(out), "--workers", "1"])  # records a failed verification
    with pytest.raises(OutputError, match=r"the run is partial \(\d+ of 8 cases not done\): resume it"):
        open_dataset(str(out))


def test_open_refuses_an_output_that_failed_verification(copy):
    part = copy / card_of(copy)["files"]["train"][0]["path"]
    part.write_bytes(part.read_bytes()[:-10])
    result = CliRunner().invoke(app, ["verify", str(copy), "--workers", "1"])
    assert result.exit_code != 0
    assert card_of(copy)["verification"]["ok"] is False
    with pytest.raises(OutputError, match=r"failed verification on .* \(\d+ problems\): run `vitalflow verify"):
        open_dataset(str(copy))


def test_open_refuses_a_card_changed_since_it_was_verified(copy):
    card = card_of(copy)
    card["fingerprint"] = "sha256:" + "0" * 64
    (copy / CARD_NAME).write_text(json.dumps(card))
    with pytest.raises(OutputError, match="the card changed since it was verified"):
        open_dataset(str(copy))


def test_open_refuses_an_output_of_the_previous_format(copy):
    """It verifies, but its ledger hashed no blocks: it has no fingerprint to train on."""
    to_previous_format(copy)
    verify_cli(copy)
    with pytest.raises(OutputError, match="no fingerprint .* rerun preprocess with --overwrite"):
        open_dataset(str(copy))


def test_verify_merge_resets_and_records_verification(copy):
    verify_cli(copy)
    result = CliRunner().invoke(app, ["verify", str(copy), "--merge", "--workers", "1"])
    assert result.exit_code == 0, result.output
    card = card_of(copy)
    assert card["verification"]["ok"] and set(card["merged"]) == set(SPLITS)
    dataset = open_dataset(str(copy))
    assert {s: f.examples for s, f in dataset.merged.items()} == {s: dataset.examples(s) for s in SPLITS}


def test_open_refuses_the_host_cards_of_an_output_not_combined(corpus, tmp_path):
    config, spec = load_config()
    for i in range(2):
        result = preprocess(corpus, corpus / "clinical.csv", tmp_path / "out", config, spec,
                            options=RunOptions(workers=1, host_index=i, host_count=2))
        assert result.verify.ok
    with pytest.raises(OutputError, match=r"only the cards of hosts h0, h1: run `vitalflow verify"):
        open_dataset(str(tmp_path / "out"))
    verify_cli(tmp_path / "out")
    single = run(corpus, tmp_path / "single").card
    assert open_dataset(str(tmp_path / "out")).fingerprint == single.fingerprint  # hosts change nothing


def test_verify_output_does_not_write_the_verification(copy):
    """`verify_output` only reads (for a single host); recording is the caller's (`card.verified`)."""
    before = (copy / CARD_NAME).read_bytes()
    assert verify_output(str(copy)).ok
    assert (copy / CARD_NAME).read_bytes() == before
