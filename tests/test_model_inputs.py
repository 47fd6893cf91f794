"""The tf.data reader (`vitalflow.model.inputs`): what it reads against plain TensorFlow, its seeded
order, how a shuffled batch mixes cases, and a feature the dataset lacks."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from typer.testing import CliRunner

from vitalflow.cli import app
from vitalflow.dataset.reference import open_dataset
from vitalflow.errors import OutputError
from vitalflow.model.inputs import numpy_batches, training_batches, window_batches

SPLIT = "train"
#: Written by hand from the spec (300 s x 16 features, 6 static, 8 targets), not from the card's schema.
FEATURES = {
    "timeseries": tf.io.FixedLenFeature([300 * 16], tf.float32),
    "static": tf.io.FixedLenFeature([6], tf.float32),
    "target": tf.io.FixedLenFeature([8], tf.float32),
    "mask": tf.io.FixedLenFeature([300 * 16], tf.float32),
    "case_id": tf.io.FixedLenFeature([1], tf.int64),
    "window_start_s": tf.io.FixedLenFeature([1], tf.int64),
    "subject_id": tf.io.FixedLenFeature([1], tf.string),
}
NAMES = ["timeseries", "static", "target", "mask", "case_id", "window_start_s"]


def _card(dataset_dir: Path) -> dict:
    return json.loads((dataset_dir / "preprocessing_metadata.json").read_text())


def plain_windows(dataset_dir: Path, split: str = SPLIT) -> list[dict[str, np.ndarray]]:
    """Every window of a split, read with TensorFlow alone, in file order (the card's part order)."""
    files = [str(dataset_dir / f["path"]) for f in _card(dataset_dir)["files"][split]]
    assert files, split
    out = []
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        ex = tf.io.parse_single_example(record, FEATURES)
        out.append({k: v.numpy() for k, v in ex.items()})
    return out


def _key(case_id, start) -> tuple[int, int]:
    return int(np.asarray(case_id).reshape(-1)[0]), int(np.asarray(start).reshape(-1)[0])


def reader_windows(batches) -> list[dict[str, np.ndarray]]:
    """The windows of `window_batches`' batches, one dict each."""
    out = []
    for batch in batches.as_numpy_iterator():
        n = len(batch["case_id"])
        out.extend({k: v[i] for k, v in batch.items()} for i in range(n))
    return out


def order(batches) -> list[tuple[int, int]]:
    return [_key(w["case_id"], w["window_start_s"]) for w in reader_windows(batches)]


@pytest.fixture(scope="module")
def plain(trainable_dataset):
    return plain_windows(trainable_dataset)


@pytest.fixture(scope="module")
def dataset(trainable_dataset):
    return open_dataset(str(trainable_dataset))


def test_shuffled_reader_reads_every_window_as_plain_tensorflow_does(trainable_dataset, dataset, plain):
    expected = {_key(w["case_id"], w["window_start_s"]): w for w in plain}
    assert len(expected) == len(plain) == _card(trainable_dataset)["splits"][SPLIT]["windows"]  # keys are unique
    got = reader_windows(window_batches(dataset, SPLIT, NAMES, batch_size=64, seed=0))
    keys = [_key(w["case_id"], w["window_start_s"]) for w in got]
    assert sorted(keys) == sorted(expected)  # the same multiset: nothing lost, nothing twice
    assert keys != [_key(w["case_id"], w["window_start_s"]) for w in plain]  # and it was shuffled
    for w in got:
        want = expected[_key(w["case_id"], w["window_start_s"])]
        assert w["timeseries"].shape == (300, 16) and w["mask"].shape == (300, 16)
        # time-major layout: [300, 16] row-major is the flat feature as written
        assert w["timeseries"].astype(np.float32).tobytes() == want["timeseries"].tobytes()
        assert w["mask"].astype(np.float32).tobytes() == want["mask"].tobytes()
        assert w["static"].tobytes() == want["static"].tobytes()
        assert w["target"].tobytes() == want["target"].tobytes()
    # training_batches: the same windows as (inputs, target)
    pairs = [(x, y) for x, y in training_batches(dataset, SPLIT, ["timeseries", "static"], batch_size=100,
                                                 seed=0).as_numpy_iterator()]
    assert all(set(x) == {"timeseries", "static"} for x, _ in pairs)
    assert sum(len(y) for _, y in pairs) == len(plain)
    first = got[:100]
    np.testing.assert_array_equal(pairs[0][1], np.stack([w["target"] for w in first]))
    np.testing.assert_array_equal(pairs[0][0]["timeseries"], np.stack([w["timeseries"] for w in first]))


def test_numpy_batches_read_in_the_datasets_own_order(dataset, plain):
    got = {k: [] for k in ("case_id", "window_start_s", "subject_id", "timeseries", "target")}
    sizes = []
    for batch in numpy_batches(dataset, SPLIT, list(got), batch_size=100):
        assert batch["case_id"].ndim == 1 and batch["window_start_s"].ndim == 1 and batch["subject_id"].ndim == 1
        sizes.append(len(batch["case_id"]))
        for k in got:
            got[k].extend(batch[k])
    assert sizes[:-1] == [100] * (len(sizes) - 1) and sum(sizes) == len(plain)
    assert [(int(c), int(s)) for c, s in zip(got["case_id"], got["window_start_s"])] == \
        [_key(w["case_id"], w["window_start_s"]) for w in plain]
    assert [str(s) for s in got["subject_id"]] == [w["subject_id"][0].decode() for w in plain]
    assert all(isinstance(s, str) for s in got["subject_id"])
    assert all(a.reshape(-1).tobytes() == w["timeseries"].tobytes() for a, w in zip(got["timeseries"], plain))
    assert all(a.tobytes() == w["target"].tobytes() for a, w in zip(got["target"], plain))


def test_the_order_depends_on_seed_and_epoch_alone(dataset):
    def run(seed, epoch):
        return order(window_batches(dataset, SPLIT, ["case_id", "window_start_s"], batch_size=64, seed=seed,
                                    epoch=epoch))

    first = run(0, 0)
    assert run(0, 0) == first  # again: the same order
    others = [run(0, 1), run(0, 2), run(1, 0)]
    for other in others:
        assert sorted(other) == sorted(first)
        assert other != first
        # not a rotation or a tiny perturbation: most positions differ
        assert sum(a != b for a, b in zip(other, first)) > len(first) // 2
    assert others[0] != others[1] != others[2]
    assert run(0, 1) == others[0]  # an epoch's order does not depend on the epochs read before it


def test_a_shuffled_batch_mixes_many_cases_the_unshuffled_one_few(trainable_dataset, dataset, plain):
    train_cases = {_key(w["case_id"], 0)[0] for w in plain}
    n_cases = len(train_cases)
    assert n_cases == _card(trainable_dataset)["splits"][SPLIT]["cases"] >= 3
    # The split (851 windows) fits in the default shuffle buffer (4096), so a batch of 64 is a
    # uniform sample of the split: a case with >= 1/(2 n) of the windows is missed with probability
    # <= (1 - 1/(2 n))^64, under 1 % for 7 cases; ask for all but two.
    smallest = min(Counter(_key(w["case_id"], 0)[0] for w in plain).values())
    assert smallest >= len(plain) / (2 * n_cases)
    bound = min(n_cases, max(3, n_cases - 2))
    for seed, epoch in ((0, 0), (0, 1), (3, 5)):
        batch = next(iter(window_batches(dataset, SPLIT, ["case_id"], batch_size=64, seed=seed, epoch=epoch)))
        ids = Counter(batch["case_id"].numpy().reshape(-1).tolist())
        assert sum(ids.values()) == 64
        assert len(ids) >= bound, (seed, epoch, ids)
        assert max(ids.values()) <= 32, ids  # no case fills half the batch
    unshuffled = next(iter(window_batches(dataset, SPLIT, ["case_id"], batch_size=64)))
    assert 1 <= len(set(unshuffled["case_id"].numpy().reshape(-1).tolist())) <= 2


@pytest.fixture(scope="module")
def maskless_dataset(corpus, tmp_path_factory):
    """The session corpus preprocessed with output.write_mask: false."""
    root = tmp_path_factory.mktemp("maskless")
    (root / "run.yaml").write_text("output: {write_mask: false}\n")
    result = CliRunner().invoke(app, ["preprocess", "--input", str(corpus), "--clinical", str(corpus / "clinical.csv"),
                                      "--output", str(root / "out"), "--config", str(root / "run.yaml"), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "mask" not in _card(root / "out")["example_schema"]
    return root / "out"


def test_a_feature_the_dataset_lacks_is_refused_naming_the_dataset(maskless_dataset):
    ds = open_dataset(str(maskless_dataset))
    split = next(s for s in ("train", "validation", "test") if ds.examples(s))
    with pytest.raises(OutputError, match=rf"{maskless_dataset}.*no mask.*write_mask: true"):
        window_batches(ds, split, ["timeseries", "mask"], batch_size=8, seed=0)
    with pytest.raises(OutputError, match=rf"{maskless_dataset}.*no mask"):
        training_batches(ds, split, ["timeseries", "static", "mask"], batch_size=8)
    with pytest.raises(OutputError, match=rf"{maskless_dataset}.*no mask"):
        next(numpy_batches(ds, split, ["mask", "case_id"]))
    # what it has, it reads
    batch = next(numpy_batches(ds, split, ["timeseries", "case_id"], batch_size=8))
    assert batch["timeseries"].shape == (8, 300, 16)


@pytest.mark.parametrize("seed", [None, 0, 5])
def test_the_parsed_window_cache_gives_the_same_windows_in_the_same_order(trainable_dataset, tmp_path, monkeypatch,
                                                                          seed):
    """The cache is an optimization only: with and without it, the same batches, byte for byte."""
    monkeypatch.setenv("VITALFLOW_CACHE", str(tmp_path / "cache"))
    dataset = open_dataset(str(trainable_dataset))
    names = ["timeseries", "static", "target", "case_id", "window_start_s"]
    kwargs = dict(batch_size=64, seed=seed, epoch=1)
    plain = reader_windows(window_batches(dataset, SPLIT, names, **kwargs))
    for attempt in range(2):  # the first builds the cache, the second reads it
        cached = reader_windows(window_batches(dataset, SPLIT, names, cache=True, **kwargs))
        assert len(cached) == len(plain)
        for a, b in zip(plain, cached):
            assert all(np.array_equal(a[k], b[k]) for k in names)
    built = sorted(p.name for p in (tmp_path / "cache" / "parsed").rglob("*") if p.is_file())
    parts = _card(trainable_dataset)["files"][SPLIT]
    assert built == sorted([f"{p['sha256']}.index" for p in parts] + [f"{p['sha256']}.data-00000-of-00001"
                                                                       for p in parts])


def test_a_cache_build_killed_midway_is_never_taken_for_complete(trainable_dataset, tmp_path, monkeypatch):
    """A build leaves only a temporary prefix until its index is renamed: a leftover (as a SIGKILL
    leaves it) is removed and the cache rebuilt."""
    from vitalflow.model.inputs import _cache_root, prepare_parsed_cache

    monkeypatch.setenv("VITALFLOW_CACHE", str(tmp_path / "cache"))
    dataset = open_dataset(str(trainable_dataset))
    names = ["timeseries", "static", "target"]
    root = _cache_root(dataset, names)
    root.mkdir(parents=True)
    sha = _card(trainable_dataset)["files"][SPLIT][0]["sha256"]
    (root / f".{sha}.999.data-00000-of-00001").write_bytes(b"half written")
    (root / f".{sha}.999.lockfile").write_bytes(b"")
    prefixes = prepare_parsed_cache(dataset, SPLIT, names)
    assert not list(root.glob(f".{sha}.*"))
    assert Path(f"{prefixes[0]}.index").exists()
    n = sum(len(b["target"]) for b in window_batches(dataset, SPLIT, names, batch_size=100, cache=True)
            .as_numpy_iterator())
    assert n == _card(trainable_dataset)["splits"][SPLIT]["windows"]


def test_decision_training_batches_pair_the_inputs_with_labels_and_their_mask(dataset):
    """task decisions: y = concat(labels, label_mask), the windows in the order of window_batches."""
    names = ["timeseries", "static", "labels", "label_mask"]
    windows = [{k: v[i] for k, v in b.items()} for b in window_batches(dataset, SPLIT, names, batch_size=100, seed=0)
               .as_numpy_iterator() for i in range(len(b["labels"]))]
    pairs = list(training_batches(dataset, SPLIT, ["timeseries", "static"], task="decisions", batch_size=100,
                                  seed=0).as_numpy_iterator())
    assert sum(len(y) for _, y in pairs) == len(windows)
    x, y = pairs[0]
    assert set(x) == {"timeseries", "static"} and y.shape == (100, 150)
    np.testing.assert_array_equal(y[:, :75], np.stack([w["labels"] for w in windows[:100]]))
    np.testing.assert_array_equal(y[:, 75:], np.stack([w["label_mask"] for w in windows[:100]]))
    np.testing.assert_array_equal(x["timeseries"], np.stack([w["timeseries"] for w in windows[:100]]))
