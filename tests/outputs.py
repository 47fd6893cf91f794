"""Reading whole outputs back for comparisons between runs."""

from __future__ import annotations

import json
from pathlib import Path

from vitalflow.dataset.card import CARD_NAME
from vitalflow.dataset.tfrecord import decode_example, read_records

CASES = 32  # cases of the shared "big" corpus


def dataset(out: Path) -> dict:
    """Every example of an output, decoded, keyed by (case, window start). Fails on duplicates."""
    card = json.loads((Path(out) / CARD_NAME).read_text())
    examples = {}
    for split, parts in card["files"].items():
        for part in parts:
            gzip = "GZIP" if part["path"].endswith(".gz") else None
            for record in read_records(Path(out) / part["path"], compression=gzip):
                ex = decode_example(record)
                key = (int(ex["case_id"][0]), int(ex["window_start_s"][0]))
                assert key not in examples, f"{key} written twice"
                examples[key] = (split, {k: v.tobytes() if hasattr(v, "tobytes") else v for k, v in ex.items()})
    return examples


def to_previous_format(out: Path) -> None:
    """Rewrite an output's ledger records and card as format 1 wrote them: records without a format
    key and with blocks as ``[case, offset, bytes, examples]``; a card without fingerprint,
    verification and the schema's meanings."""
    for name in (Path(out) / "_ledger" / "h0").glob("commit-*.json"):
        record = json.loads(name.read_text())
        del record["format"]
        for part in record["parts"].values():
            part["blocks"] = [[b["case_id"], b["offset"], b["bytes"], b["examples"]] for b in part["blocks"]]
        name.write_text(json.dumps(record))
    card = json.loads((Path(out) / CARD_NAME).read_text())
    card["format"] = "vitalflow-dataset/1"
    del card["fingerprint"], card["verification"]
    for feature in card["example_schema"].values():
        feature.pop("meaning", None)
    card["example_schema"]["mask"].pop("reshape")
    (Path(out) / CARD_NAME).write_text(json.dumps(card))
