"""The redesign of issue 12 changes no output: a fixed corpus gives, example for example, the
dataset that the code before it wrote (the last commit of issue 11, recorded in
``tests/golden/dataset-digest.json``). A deliberate change of the output must update that file
and say why in the commit (issue 13 did: the synthetic world became a closed loop, so the fixed
corpus itself changed; the digest was regenerated with `dataset_digest` on the same fixture)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from outputs import dataset
from vitalflow.run.preprocess import RunOptions, preprocess
from vitalflow.spec import load_config

GOLDEN = Path(__file__).parent / "golden" / "dataset-digest.json"


def dataset_digest(out: Path) -> dict:
    """Per split, the number of examples and a sha256 over every decoded example in (case, window
    start) order: independent of part layout, compression and worker count."""
    by_split: dict[str, hashlib._Hash] = {}
    counts: dict[str, int] = {}
    for (case, start), (split, ex) in sorted(dataset(out).items()):
        h = by_split.setdefault(split, hashlib.sha256())
        h.update(f"{case}:{start}".encode())
        for name in sorted(ex):
            h.update(name.encode())
            h.update(ex[name] if isinstance(ex[name], bytes) else repr(ex[name]).encode())
        counts[split] = counts.get(split, 0) + 1
    return {s: {"examples": counts[s], "sha256": by_split[s].hexdigest()} for s in sorted(by_split)}


def test_the_output_of_a_fixed_corpus_is_unchanged(corpus, tmp_path):
    config, spec = load_config()
    preprocess(corpus, corpus / "clinical.csv", tmp_path / "out", config, spec, options=RunOptions(workers=2))
    assert dataset_digest(tmp_path / "out") == json.loads(GOLDEN.read_text())["splits"]
