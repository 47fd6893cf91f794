"""End to end: vitalflow's TFRecords, read by TensorFlow, equal an independent reference."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

from reference import clinical_rows, reference_case
from vitalflow.run.preprocess import preprocess
from vitalflow.spec import load_config
from vitalflow.spec.model import Config, Output

tf = pytest.importorskip("tensorflow")


def _tf_examples(output_dir, card):
    features = card.example_schema.tf_features(tf)
    compression = "GZIP" if card.compression == "GZIP" else ""
    by_split = {}
    for split, parts in card.files.items():
        ds = tf.data.TFRecordDataset([str(output_dir / p.path) for p in parts], compression_type=compression)
        by_split[split] = [
            {k: v.numpy() for k, v in tf.io.parse_single_example(r, features).items()} for r in ds
        ]
    return by_split


@pytest.mark.parametrize("compression", ["none", "GZIP"])
def test_golden_end_to_end_against_reference(corpus, tmp_path, compression):
    _, spec = load_config()
    config = Config(output=Output(compression=compression))
    result = preprocess(corpus, corpus / "clinical.csv", tmp_path / "out", config, spec)
    assert result.verify.ok, result.verify.problems
    card = result.card
    assert card.cases.failed == 0

    rows = clinical_rows(corpus / "clinical.csv")
    got = defaultdict(dict)
    split_of_case = {}
    for split, examples in _tf_examples(tmp_path / "out", card).items():
        for ex in examples:
            case = int(ex["case_id"][0])
            got[case][int(ex["window_start_s"][0])] = ex
            assert split_of_case.setdefault(case, split) == split
            assert ex["subject_id"][0].decode() == rows[case]["subjectid"]

    total = 0
    for case, row in rows.items():
        expected = reference_case(corpus / f"{case:04d}.vital", row)
        assert sorted(got[case]) == [e["window_start_s"] for e in expected], f"case {case}: window starts"
        for e in expected:
            ex = got[case][e["window_start_s"]]
            for name in ("timeseries", "mask", "target", "static"):
                np.testing.assert_allclose(ex[name], np.float32(e[name]), atol=2e-6,
                                           err_msg=f"case {case} window {e['window_start_s']} {name}")
        total += len(expected)
    assert total == sum(s.windows for s in card.splits.values()) > 0


def test_split_is_subject_disjoint_and_counts_match_card(corpus, tmp_path):
    _, spec = load_config()
    result = preprocess(corpus, corpus / "clinical.csv", tmp_path / "out", Config(), spec)
    card = result.card
    subjects = {s: set() for s in card.splits}
    for d in card.case_details:
        subjects[d["split"]].add(d["subject_id"])
    assert not (subjects["train"] & subjects["validation"]) and not (subjects["train"] & subjects["test"])
    assert not (subjects["validation"] & subjects["test"])
    assert result.verify.examples == {s: v.windows for s, v in card.splits.items()}


@pytest.mark.parametrize("compression", ["none", "GZIP"])
def test_the_readme_snippet_reads_the_output(corpus, tmp_path, compression):
    """README's TensorFlow code (`tensorflow_snippet`, which test_docs finds in README) runs on an
    output and yields batches of the schema's shapes."""
    from vitalflow.dataset.schema import tensorflow_snippet

    _, spec = load_config()
    config = Config(output=Output(compression=compression))
    result = preprocess(corpus, corpus / "clinical.csv", tmp_path / "out", config, spec)
    schema = result.card.example_schema
    namespace: dict = {}
    exec(tensorflow_snippet(schema, compression, output=str(tmp_path / "out")), namespace)
    (series, static), target = next(iter(namespace["train"]))
    assert series.shape[1:] == schema["timeseries"].reshape
    assert static.shape[1:] == schema["static"].shape and target.shape[1:] == schema["target"].shape
    assert sum(len(t) for _, t in namespace["train"]) == result.card.splits["train"].windows
