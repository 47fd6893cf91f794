"""A vitalflow dataset as a tf.data pipeline: parallel reads, batched parsing, seeded shuffling
across cases and parts, prefetch.

How shuffling mixes cases (README "Training"): a split's windows sit in part files that hold whole
cases in order, and the windows of one case overlap by 90 %, so reading the parts in order and
shuffling a buffer would fill each batch with near-copies of one case. Per epoch the pipeline

1. permutes the part files (seeded with ``seed`` and the epoch),
2. reads ``cycle`` parts at once, taking one window from each in turn (``interleave``), so
   consecutive windows come from ``cycle`` different parts, hence different cases,
3. shuffles a buffer of ``shuffle_buffer`` windows (seeded the same way),

so a batch draws from up to ``shuffle_buffer`` windows of at least ``cycle`` parts. Every step is
seeded from ``(seed, epoch)`` alone, so epoch ``e`` sees the same order whether or not the run was
interrupted before it (what resume relies on).

Parsing is batched (``tf.io.parse_example`` on a batch of serialized records, one call per batch
rather than one per window) and runs on ``AUTOTUNE`` threads with ``deterministic=True``, so the
order never depends on thread timing.

A dataset on S3 is first copied to a local cache, each part checked against the sha256 its card
records (TensorFlow 2.16+ reads no ``s3://`` paths itself; a local copy also lets every epoch read
at disk speed).

**Parsed windows are cached for training** (``cache=True``, `prepare_parsed_cache`): inflating the
GZIP parts and parsing the protos costs most of an epoch's input time and is the same every epoch,
so before the first epoch each part is read once into tf.data's own cache format (the parsed
tensors of the features the network reads, uncompressed: ~20 KB per window without the mask) in
``<cache>/parsed/<dataset fingerprint>/<features>/<part sha256>``; every epoch then reads those
files. The windows and their order are exactly those of the uncached pipeline (the cache holds
each part's windows in file order; interleave and shuffle act on the same sequence). A cache is
built under a temporary name and renamed, index last, so a killed build leaves no cache that looks
complete. README "Performance" has the figures.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import tensorflow as tf

from vitalflow.dataset.reference import Dataset
from vitalflow.errors import OutputError
from vitalflow.locations import cache_dir
from vitalflow.store import Store

#: The model's inputs, by example feature name ("mask" only when the network reads it). Training
#: also reads the truth (`TRUTH`): the parsed-window cache holds inputs and truth.
INPUTS = ("timeseries", "static", "mask")


#: Cached copies whose sha256 this process has checked: path -> (size, mtime_ns, inode, sha256).
_CHECKED: dict[str, tuple[int, int, int, str]] = {}


def _cached_copy_ok(target: Path, size: int, sha256: str) -> bool:
    """The cached copy at ``target`` has the card's size and sha256 (hashed once per process and
    file version: a damaged copy of the same size is not trusted)."""
    try:
        st = target.stat()
    except FileNotFoundError:
        return False
    if st.st_size != size:
        return False
    stamp = (st.st_size, st.st_mtime_ns, st.st_ino, sha256)
    if _CHECKED.get(str(target)) == stamp:
        return True
    digest = hashlib.sha256()
    with open(target, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != sha256:
        return False
    _CHECKED[str(target)] = stamp
    return True


def local_files(dataset: Dataset, split: str) -> list[str]:
    """The local paths of a split's parts: the files themselves, or verified copies of S3 objects."""
    entries = dataset.parts[split]
    store = Store(dataset.uri)
    if store.is_local:
        return [str(store.local_path(f.path)) for f in entries]
    root = cache_dir() / "datasets" / dataset.fingerprint.replace(":", "-")
    paths = []
    for f in entries:
        target = root / f.path
        if not _cached_copy_ok(target, f.bytes, f.sha256):
            target.parent.mkdir(parents=True, exist_ok=True)
            data = store.read_bytes(f.path)
            if hashlib.sha256(data).hexdigest() != f.sha256:
                raise OutputError(f"{f.uri}: its content differs from what the card records (sha256): "
                                  f"run `vitalflow verify {dataset.uri}`")
            fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(temp, target)
        paths.append(str(target))
    return paths


def features_to_read(dataset: Dataset, names: Sequence[str]) -> dict[str, tf.io.FixedLenFeature]:
    """The parse spec of ``names`` (a name the dataset lacks is an error naming the dataset)."""
    schema = dataset.example_schema
    missing = [n for n in names if n not in schema.root]
    if missing:
        raise OutputError(f"{dataset.uri}: the examples have no {', '.join(missing)} (written with "
                          f"{', '.join(schema)}); for the mask, preprocess with output.write_mask: true")
    spec = schema.tf_features(tf)
    return {n: spec[n] for n in names}


def _reshaper(dataset: Dataset):
    shapes = {n: f.reshape for n, f in dataset.example_schema.items() if f.reshape}

    def reshape(batch: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        return {n: tf.reshape(v, [-1, *shapes[n]]) if n in shapes else v for n, v in batch.items()}

    return reshape


_CACHE_DATA = ".data-00000-of-00001"  # tf.data's cache files: <prefix>.index and its data shard


def _parsed_part(path, compression: str, parse_spec: dict, reshape) -> tf.data.Dataset:
    """One part's windows as parsed ``{name: tensor}`` elements, in file order."""
    return tf.data.TFRecordDataset(path, compression_type=compression).batch(256).map(
        lambda serialized: reshape(tf.io.parse_example(serialized, parse_spec))).unbatch()


def _cache_root(dataset: Dataset, names: Sequence[str]) -> Path:
    features = hashlib.sha256(",".join(sorted(names)).encode()).hexdigest()[:12]
    return cache_dir() / "parsed" / dataset.fingerprint.replace(":", "-") / features


def prepare_parsed_cache(dataset: Dataset, split: str, names: Sequence[str]) -> list[str]:
    """Build (once) the parsed-window cache of each of a split's parts; their cache prefixes."""
    files = local_files(dataset, split)
    parse_spec, reshape = features_to_read(dataset, names), _reshaper(dataset)
    compression = "GZIP" if dataset.compression == "GZIP" else ""
    root = _cache_root(dataset, names)
    root.mkdir(parents=True, exist_ok=True)
    prefixes = []
    for entry, path in zip(dataset.parts[split], files, strict=True):
        prefix = root / entry.sha256
        if not Path(f"{prefix}.index").exists():
            for leftover in root.glob(f".{entry.sha256}.*"):
                leftover.unlink()
            temp = root / f".{entry.sha256}.{os.getpid()}"
            for _ in _parsed_part(path, compression, parse_spec, reshape).cache(str(temp)).batch(4096):
                pass
            Path(f"{temp}.lockfile").unlink(missing_ok=True)
            os.replace(f"{temp}{_CACHE_DATA}", f"{prefix}{_CACHE_DATA}")
            os.replace(f"{temp}.index", f"{prefix}.index")  # last: an index means a complete cache
        prefixes.append(str(prefix))
    return prefixes


def window_batches(dataset: Dataset, split: str, names: Sequence[str], *, batch_size: int,
                   seed: int | None = None, epoch: int = 0, shuffle_buffer: int = 4096,
                   cycle: int = 8, repeat: bool = False, cache: bool = False) -> tf.data.Dataset:
    """Batches of ``{name: tensor}`` of a split; shuffled across cases and parts when ``seed`` is
    given (see the module docstring), else in the dataset's order. ``cache``: read the parsed
    windows from (and first build) the parsed-window cache: the same windows in the same order."""
    files = local_files(dataset, split)
    if not files:
        raise OutputError(f"{dataset.uri}: the {split} split has no windows")
    parse_spec = features_to_read(dataset, names)
    compression = "GZIP" if dataset.compression == "GZIP" else ""
    reshape = _reshaper(dataset)
    options = tf.data.Options()
    options.deterministic = True
    sources = prepare_parsed_cache(dataset, split, names) if cache else None
    if seed is None:
        order = np.arange(len(files))
    else:
        epoch_seed = int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0] & 0x7FFFFFFF)
        order = np.random.default_rng(epoch_seed).permutation(len(files))
    if sources is not None:
        parts = tf.data.Dataset.from_tensor_slices(([files[i] for i in order], [sources[i] for i in order]))
        windows = parts.interleave(
            lambda f, prefix: _parsed_part(f, compression, parse_spec, reshape).cache(prefix),
            cycle_length=min(cycle, len(files)) if seed is not None else 1, block_length=1,
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        if seed is not None:
            windows = windows.shuffle(shuffle_buffer, seed=epoch_seed, reshuffle_each_iteration=False)
        batches = (windows.repeat() if repeat else windows).batch(batch_size)
        return batches.prefetch(tf.data.AUTOTUNE).with_options(options)
    if seed is None:
        records = tf.data.TFRecordDataset(files, compression_type=compression, num_parallel_reads=None)
    else:
        names_ds = tf.data.Dataset.from_tensor_slices([files[i] for i in order])
        records = names_ds.interleave(
            lambda f: tf.data.TFRecordDataset(f, compression_type=compression),
            cycle_length=min(cycle, len(files)), block_length=1, num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True)
        records = records.shuffle(shuffle_buffer, seed=epoch_seed, reshuffle_each_iteration=False)
    if repeat:
        records = records.repeat()
    batches = records.batch(batch_size).map(
        lambda serialized: reshape(tf.io.parse_example(serialized, parse_spec)),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return batches.prefetch(tf.data.AUTOTUNE).with_options(options)


#: What the network is trained on, per ``TrainConfig.task``: the example features that make ``y``
#: (concatenated in this order: the decision loss reads ``concat(labels, label_mask)``).
TRUTH = {"values": ("target",), "decisions": ("labels", "label_mask")}


def training_batches(dataset: Dataset, split: str, inputs: Sequence[str], task: str = "values",
                     **kwargs) -> tf.data.Dataset:
    """``(inputs dict, y)`` batches for Keras' ``fit``/``evaluate``: ``y`` is ``target`` (task
    ``values``) or ``concat(labels, label_mask)`` (task ``decisions``)."""
    truth = TRUTH[task]

    def pair(b):
        y = b[truth[0]] if len(truth) == 1 else tf.concat([b[n] for n in truth], axis=-1)
        return {n: b[n] for n in inputs}, y

    return window_batches(dataset, split, [*inputs, *truth], **kwargs).map(pair)


def numpy_batches(dataset: Dataset, split: str, names: Sequence[str], batch_size: int = 256
                  ) -> Iterator[dict[str, np.ndarray]]:
    """A split's windows in the dataset's order as numpy batches (``case_id`` and
    ``window_start_s`` flattened to 1-D, ``subject_id`` as str)."""
    for batch in window_batches(dataset, split, names, batch_size=batch_size).as_numpy_iterator():
        out = {}
        for name, value in batch.items():
            if name in ("case_id", "window_start_s", "subject_id"):
                value = value.reshape(-1)
                if name == "subject_id":
                    value = np.array([v.decode() for v in value])
            out[name] = value
        yield out
