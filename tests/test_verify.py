"""`verify` finds each kind of damage a dataset can have, and names the file and example."""

from __future__ import annotations

import json

import numpy as np
import pytest

from outputs import to_previous_format
from vitalflow.dataset.card import CARD_NAME
from vitalflow.dataset.tfrecord import TFRecordWriter, decode_example, encode_example, read_records
from vitalflow.dataset.verify import verify_output
from vitalflow.run.preprocess import RunOptions, preprocess
from vitalflow.spec import load_config


@pytest.fixture
def output(corpus, tmp_path):
    config, spec = load_config()
    result = preprocess(corpus, corpus / "clinical.csv", tmp_path / "out", config, spec, options=RunOptions(workers=1))
    assert result.verify.ok, result.verify.problems
    return tmp_path / "out"


def _part(output, split):
    card = json.loads((output / CARD_NAME).read_text())
    return output / card["files"][split][0]["path"]


def _rewrite(path, change) -> None:
    """Decode a part, let ``change`` edit its list of examples, write it back (same compression)."""
    examples = [decode_example(r) for r in read_records(path, compression="GZIP")]
    change(examples)
    with TFRecordWriter(path, compression="GZIP") as w:
        for ex in examples:
            w.write(encode_example(ex))


def _set(feature, index, value):
    def change(examples):
        examples[2][feature][index] = value
    return change


@pytest.mark.parametrize("change, message", [
    (_set("timeseries", 100, 1.5), "example 3: timeseries has values outside [-1, 1] or not finite"),
    (_set("target", 0, np.nan), "example 3: target has values outside [-1, 1] or not finite"),
    (_set("static", 5, -np.inf), "example 3: static has values outside [-1, 1] or not finite"),
    (_set("mask", 7, 0.5), "example 3: mask holds values other than 0 and 1"),
    (lambda exs: exs[2].pop("static"), "example 3: feature static missing"),
    (lambda exs: exs[2].update(window_start_s=np.float32(3)), "example 3: window_start_s is not int64"),
    (lambda exs: exs[2].update(subject_id=np.int64(3)), "example 3: subject_id is not string"),
    (lambda exs: exs[2].update(target=exs[2]["target"][:7]), "example 3: target has 7 values, schema says 8"),
    (lambda exs: exs.append(exs[0]), "appears twice"),
])
@pytest.mark.parametrize("workers", [1, 2])
def test_damaged_examples_are_named(output, change, message, workers):
    path = _part(output, "train")
    _rewrite(path, change)
    report = verify_output(output, workers=workers)
    assert not report.ok
    assert any(p.startswith(path.name) and message in p for p in report.problems), report.problems
    assert any("checksum differs" in p for p in report.problems)


def test_a_case_in_the_wrong_split_and_a_subject_in_two(output):
    moved = []
    _rewrite(_part(output, "validation"), lambda exs: moved.append(exs.pop(0)))
    _rewrite(_part(output, "train"), lambda exs: exs.append(moved[0]))
    problems = verify_output(output).problems
    case = int(moved[0]["case_id"][0])
    assert any(f"case {case} belongs to validation, found in train" in p for p in problems), problems
    assert any("subjects in both train and validation" in p for p in problems), problems


@pytest.mark.parametrize("workers", [1, 2])
def test_a_block_is_checked_against_its_ledger_record(output, workers):
    """The ledger records each case's block (byte range and examples); verify reads blocks on their
    own, so a block whose count is off is named with its case, even when the file's total is right."""
    path = _part(output, "train")
    ledger = sorted((output / "_ledger" / "h0").glob("commit-*.json"))
    for name in ledger:
        record = json.loads(name.read_text())
        blocks = record["parts"]["train"]["blocks"]
        offsets = [b["offset"] for b in blocks]
        assert offsets == [0] + [b["offset"] + b["bytes"] for b in blocks[:-1]]  # they tile the file
        assert sum(b["bytes"] for b in blocks) == path.stat().st_size
        blocks[0]["examples"] += 1
        blocks[1]["examples"] -= 1  # the file's total stays right
        name.write_text(json.dumps(record))
    case_a, case_b = blocks[0]["case_id"], blocks[1]["case_id"]
    problems = verify_output(output, workers=workers).problems
    assert any(f"the block of case {case_a} at byte 0 holds" in p for p in problems), problems
    assert any(f"the block of case {case_b} at byte {blocks[1]['offset']} holds" in p for p in problems), problems


def test_a_block_is_checked_against_its_sha256(output):
    """Each block's sha256 is in the ledger; a block whose bytes changed is named, with its case,
    even when its examples still decode (here: two bytes swapped inside one gzip member's data)."""
    path = _part(output, "train")
    record = json.loads(sorted((output / "_ledger" / "h0").glob("commit-*.json"))[0].read_text())
    block = record["parts"]["train"]["blocks"][1]
    assert len(block["sha256"]) == 64
    data = bytearray(path.read_bytes())
    at = block["offset"] + 20
    data[at], data[at + 1] = data[at + 1] ^ 1, data[at]
    path.write_bytes(bytes(data))
    problems = verify_output(output).problems
    assert any(f"{path.name}: bytes differ from the sha256 the ledger records (the block of case "
               f"{block['case_id']} at byte {block['offset']})" in p for p in problems), problems


def test_an_output_of_the_previous_formats_still_verifies(output):
    """Ledger records of format 1 (no format key, blocks as [case, offset, bytes, examples]) and a
    card of format 1 (no fingerprint, no verification) load and verify."""
    to_previous_format(output)
    report = verify_output(output)
    assert report.ok, report.problems


def test_a_card_whose_fingerprint_is_not_its_ledgers_fails(output):
    card = json.loads((output / CARD_NAME).read_text())
    card["fingerprint"] = "sha256:" + "0" * 64
    (output / CARD_NAME).write_text(json.dumps(card))
    assert any("the card's fingerprint sha256:000" in p for p in verify_output(output).problems)


def test_blocks_that_do_not_tile_the_file_are_reported_and_the_file_still_read(output):
    path = _part(output, "train")
    with open(path, "ab") as f:
        f.write(b"not a gzip member")
    problems = verify_output(output).problems
    assert any("the recorded blocks do not cover its" in p for p in problems), problems
    assert any("checksum differs" in p for p in problems) and any("unreadable" in p for p in problems), problems


def test_a_run_reads_its_blocks_back_while_it_goes_on(corpus, tmp_path, monkeypatch):
    """The workers check each committed block between cases; the final verify gets those checks
    (one per block the ledger records, each with the block's example count) and reads no block again."""
    from vitalflow.dataset import verify
    from vitalflow.run import preprocess as run_module

    seen = {}

    def spy(output, host=None, workers=1, checked=None):
        seen.update(checked)
        return verify.verify_output(output, host, workers, checked)

    read_again = []
    real_check_units = verify._check_units
    monkeypatch.setattr(run_module, "verify_output", spy)
    monkeypatch.setattr(verify, "_check_units", lambda store, units, card, workers, entries, checked: read_again.extend(
        u for u in units if u.key not in checked) or real_check_units(store, units, card, workers, entries, checked))
    config, spec = load_config()
    result = run_module.preprocess(corpus, corpus / "clinical.csv", tmp_path / "out", config, spec,
                                   options=RunOptions(workers=2, commit_every=3))
    assert result.verify.ok, result.verify.problems
    blocks = {(p["path"], b["offset"], b["bytes"]): b["examples"] for p in _ledger_parts(tmp_path / "out")
              for b in p["blocks"]}
    assert len(blocks) == result.card.cases.with_windows
    assert {k: c.count for k, c in seen.items()} == blocks
    assert read_again == []


def _ledger_parts(output):
    records = [json.loads(f.read_text()) for f in (output / "_ledger" / "h0").glob("commit-*.json")]
    return [p for r in records for p in r["parts"].values()]
