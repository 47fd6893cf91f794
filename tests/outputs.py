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
