"""Tests for vitalflow.dataset.tfrecord, using TensorFlow as an independent oracle."""

from __future__ import annotations

import gzip
import io
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from vitalflow.dataset.tfrecord import (
    CorruptRecordError,
    ExampleDecoder,
    TFRecordWriter,
    decode_example,
    detect_compression,
    encode_block,
    encode_example,
    encode_examples,
    frame_record,
    masked_crc32c,
    read_records,
)

tf = pytest.importorskip("tensorflow")

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
COMPRESSIONS = [None, "GZIP"]


# ---------------------------------------------------------------- helpers


def make_examples(n: int, seed: int = 0) -> list[dict]:
    """Realistic examples: two 4800-sample waveforms, small vectors, scalars."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        ecg = rng.standard_normal(4800).astype(np.float32)
        ecg[:3] = [np.nan, np.inf, -np.inf]
        out.append(
            {
                "ecg": ecg,
                "ppg": rng.standard_normal(4800).astype(np.float32) * 1e30,
                "vitals": rng.standard_normal(6).astype(np.float32),
                "demo": np.float64(rng.standard_normal(8)),  # float64 -> float32
                "case_id": i,
                "t0": [INT64_MIN, -1, INT64_MAX, 0][i % 4] - (i % 4 == 2) * i,
                "label": f"case-{i}-ñ".encode(),
            }
        )
    return out


FEATURE_SPEC = {
    "ecg": ("float", [4800]),
    "ppg": ("float", [4800]),
    "vitals": ("float", [6]),
    "demo": ("float", [8]),
    "case_id": ("int64", []),
    "t0": ("int64", []),
    "label": ("bytes", []),
}


def tf_parse_spec():
    dtypes = {"float": tf.float32, "int64": tf.int64, "bytes": tf.string}
    return {k: tf.io.FixedLenFeature(shape, dtypes[kind]) for k, (kind, shape) in FEATURE_SPEC.items()}


def expected_value(value):
    """What TF should hand back for one of our input values."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, int):
        return np.int64(value)
    return np.asarray(value, dtype=np.float32)


def assert_same(actual, expected, key=""):
    """Exact comparison; floats compared bit for bit (NaN-safe)."""
    if isinstance(expected, bytes):
        assert actual == expected, key
        return
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.dtype == expected.dtype, (key, actual.dtype, expected.dtype)
    assert actual.shape == expected.shape, (key, actual.shape, expected.shape)
    if actual.dtype == np.float32:
        np.testing.assert_array_equal(actual.view(np.uint32), expected.view(np.uint32), err_msg=key)
    else:
        np.testing.assert_array_equal(actual, expected, err_msg=key)


def tf_example(features: dict) -> "tf.train.Example":
    """Build the same Example with TensorFlow's own API."""
    feats = {}
    for key, value in features.items():
        if isinstance(value, (bytes, str)):
            value = [value]
        if isinstance(value, list) and all(isinstance(v, (bytes, str)) for v in value):
            feats[key] = tf.train.Feature(bytes_list=tf.train.BytesList(value=value))
        elif isinstance(value, float) or np.asarray(value).dtype.kind == "f":
            vals = np.asarray(value, np.float32).ravel().tolist()
            feats[key] = tf.train.Feature(float_list=tf.train.FloatList(value=vals))
        else:
            vals = np.asarray(value, np.int64).ravel().tolist()
            feats[key] = tf.train.Feature(int64_list=tf.train.Int64List(value=vals))
    return tf.train.Example(features=tf.train.Features(feature=feats))


def tf_to_python(example: "tf.train.Example") -> dict:
    """TF's view of an Example as {key: float32 array | int64 array | list[bytes]}."""
    out = {}
    for key, feat in example.features.feature.items():
        kind = feat.WhichOneof("kind")
        if kind == "float_list":
            out[key] = np.array(feat.float_list.value, dtype=np.float32)
        elif kind == "int64_list":
            out[key] = np.array(feat.int64_list.value, dtype=np.int64)
        elif kind == "bytes_list":
            out[key] = list(feat.bytes_list.value)
        else:
            out[key] = []
    return out


def assert_decoded_equal(ours: dict, theirs: dict) -> None:
    assert sorted(ours) == sorted(theirs)
    for key in theirs:
        if isinstance(theirs[key], list):
            assert ours[key] == theirs[key], key
        else:
            assert_same(ours[key], theirs[key], key)


def write_ours(path, examples, compression):
    with TFRecordWriter(path, compression=compression) as writer:
        for ex in examples:
            writer.write(encode_example(ex))
    return writer


# ---------------------------------------------------------------- TF reads ours


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_tensorflow_reads_our_files(tmp_path, compression):
    examples = make_examples(12)
    path = tmp_path / "ours.tfrecord"
    writer = write_ours(path, examples, compression)
    assert writer.records == 12

    ds = tf.data.TFRecordDataset(str(path), compression_type=compression or "")
    spec = tf_parse_spec()
    parsed = [tf.io.parse_single_example(r, spec) for r in ds]
    assert len(parsed) == len(examples)
    for got, ex in zip(parsed, examples):
        for key in FEATURE_SPEC:
            assert_same(got[key].numpy(), expected_value(ex[key]), key)


def assert_matches_tensorflow(features: dict) -> None:
    """Our bytes parse to the Example TF builds, and each feature serializes
    byte-identically. (Whole-message bytes are not compared: upb's
    "deterministic" map order is not sorted order for some string keys, see
    protocolbuffers/protobuf#26621.)"""
    ours = encode_example(features)
    assert tf.train.Example.FromString(ours) == tf_example(features)
    for key, value in features.items():
        single = {key: value}
        assert encode_example(single) == tf_example(single).SerializeToString(), key


def test_our_bytes_equal_tensorflow_serialization():
    for ex in make_examples(4):
        assert_matches_tensorflow(ex)


def test_framing_matches_tensorflow_writer(tmp_path):
    payloads = [b"", b"x", encode_example(make_examples(1)[0])]
    path = str(tmp_path / "tf.tfrecord")
    with tf.io.TFRecordWriter(path) as w:
        for p in payloads:
            w.write(p)
    with open(path, "rb") as f:
        assert f.read() == b"".join(frame_record(p) for p in payloads)


# ---------------------------------------------------------------- we read TF's


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_we_read_tensorflow_files(tmp_path, compression):
    examples = make_examples(6, seed=1)
    path = str(tmp_path / "tf.tfrecord")
    with tf.io.TFRecordWriter(path, options=tf.io.TFRecordOptions(compression_type=compression or "")) as w:
        for ex in examples:
            w.write(tf_example(ex).SerializeToString())

    assert detect_compression(path) == compression
    records = list(read_records(path, compression=compression))
    assert len(records) == len(examples)
    for rec, ex in zip(records, examples):
        decoded = decode_example(rec)
        assert sorted(decoded) == sorted(ex)
        for key, value in ex.items():
            if isinstance(value, bytes):
                assert decoded[key] == [value]
            else:
                assert_same(decoded[key], np.atleast_1d(expected_value(value)), key)


def test_decode_accepts_unpacked_repeated_fields():
    # Feature{float_list{value: 1.5, value: -2 (unpacked, wire type 5)}}
    floats_body = b"\x0d" + np.float32(1.5).tobytes() + b"\x0d" + np.float32(-2).tobytes()
    floats = b"\x12" + bytes([len(floats_body)]) + floats_body
    # Feature{int64_list{value: -1 (unpacked varint), value: 300}}
    ints_body = b"\x08" + b"\xff" * 9 + b"\x01" + b"\x08\xac\x02"
    ints = b"\x1a" + bytes([len(ints_body)]) + ints_body
    # mixed: packed chunk then an unpacked value in the same list
    mixed_body = b"\x0a\x02\x05\x06" + b"\x08\x07"
    mixed = b"\x1a" + bytes([len(mixed_body)]) + mixed_body

    def entry(key, feature):
        body = b"\x0a" + bytes([len(key)]) + key + b"\x12" + bytes([len(feature)]) + feature
        return b"\x0a" + bytes([len(body)]) + body

    features = entry(b"f", floats) + entry(b"i", ints) + entry(b"m", mixed)
    data = b"\x0a" + bytes([len(features)]) + features

    ours = decode_example(data)
    assert_decoded_equal(ours, tf_to_python(tf.train.Example.FromString(data)))
    assert ours["f"].tolist() == [1.5, -2.0]
    assert ours["i"].tolist() == [-1, 300]
    assert ours["m"].tolist() == [5, 6, 7]


# ---------------------------------------------------------------- properties

keys = st.text(min_size=0, max_size=12)
float_arrays = hnp.arrays(
    np.float32, st.integers(0, 80), elements=st.floats(width=32, allow_nan=True, allow_infinity=True)
)
int_arrays = hnp.arrays(np.int64, st.integers(0, 80), elements=st.integers(INT64_MIN, INT64_MAX))
small_int_arrays = hnp.arrays(np.int64, st.integers(17, 80), elements=st.integers(-200, 200))
bytes_lists = st.lists(st.binary(max_size=40), max_size=6)
values = st.one_of(float_arrays, int_arrays, small_int_arrays, bytes_lists)
feature_dicts = st.dictionaries(keys, values, max_size=6)


def normalized(value):
    if isinstance(value, list):
        return value
    return value.astype(np.float32 if value.dtype.kind == "f" else np.int64)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(feature_dicts)
def test_roundtrip_property(features):
    decoded = decode_example(encode_example(features))
    assert_decoded_equal(decoded, {k: normalized(v) for k, v in features.items()})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(feature_dicts)
def test_encoding_matches_tensorflow_property(features):
    assert_matches_tensorflow(features)
    ours = encode_example(features)
    assert_decoded_equal(decode_example(ours), tf_to_python(tf.train.Example.FromString(ours)))


def _row_arrays(n: int):
    """Per-row features of n rows: float32/float64/int64 arrays of shape (n, ...)."""
    shapes = st.tuples(st.just(n), st.integers(0, 40)) | st.tuples(st.just(n), st.integers(1, 4), st.integers(1, 4))
    return st.dictionaries(keys, st.one_of(
        hnp.arrays(np.float32, shapes, elements=st.floats(width=32, allow_nan=True, allow_infinity=True)),
        hnp.arrays(np.float64, shapes, elements=st.floats(-1e40, 1e40)),  # beyond float32: inf, as TF
        hnp.arrays(np.int64, shapes, elements=st.integers(INT64_MIN, INT64_MAX)),
    ), min_size=1, max_size=4)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, 5).flatmap(lambda n: st.tuples(st.just(n), _row_arrays(n))), feature_dicts)
def test_encode_examples_equals_encode_example_per_row(n_rows, same):
    """The batched encoder (what runs write) against the per-example one (itself checked against
    TensorFlow's serialization above), byte for byte."""
    n, rows = n_rows
    same = {k: v for k, v in same.items() if k not in rows}
    expected = [encode_example({**same, **{k: v[i] for k, v in rows.items()}}) for i in range(n)]
    assert encode_examples(rows, same) == expected


def _decoded_or_error(decode, data):
    try:
        return decode(data)
    except ValueError as exc:
        return f"ValueError: {exc}"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(feature_dicts, st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 255)), max_size=30))
def test_example_decoder_equals_decode_example(features, flips):
    """The layout-reusing decoder (what verify runs) against the full parse, on a stream of one
    writer's Examples and of copies with a byte changed anywhere: in a value or in the structure."""
    data = encode_example(features)
    stream = [data, data]
    for pos, xor in flips:
        damaged = bytearray(data)
        if damaged:
            damaged[pos % len(damaged)] ^= xor
        stream.append(bytes(damaged))
    decoder = ExampleDecoder()
    for item in stream:
        ours, full = _decoded_or_error(decoder.decode, item), _decoded_or_error(decode_example, item)
        if isinstance(full, str):
            assert ours == full
        else:
            assert_decoded_equal(ours, full)


def test_encode_examples_parse_in_tensorflow():
    rows = {"x": np.arange(12, dtype=np.float32).reshape(3, 2, 2), "t": np.array([[0], [300], [70000]])}
    for i, data in enumerate(encode_examples(rows, {"id": [b"s"]})):
        assert tf.train.Example.FromString(data) == tf_example({"x": rows["x"][i], "t": rows["t"][i], "id": [b"s"]})


def test_encode_examples_refuses_mismatched_input():
    with pytest.raises(ValueError, match="at least one"):
        encode_examples({}, {"a": 1})
    with pytest.raises(ValueError, match="both per row"):
        encode_examples({"a": np.zeros((2, 1))}, {"a": 1})
    with pytest.raises(ValueError, match="'b': 3 rows, expected 2"):
        encode_examples({"a": np.zeros((2, 1)), "b": np.zeros((3, 1))}, {})


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_tensorflow_reads_concatenated_blocks(tmp_path, compression):
    """Parts are blocks appended one after another (for GZIP: one gzip member per block)."""
    examples = make_examples(7)
    payloads = [encode_example(ex) for ex in examples]
    path = tmp_path / "blocks.tfrecord"
    path.write_bytes(b"".join(encode_block(payloads[a:b], compression) for a, b in ((0, 3), (3, 3), (3, 7))))
    ds = tf.data.TFRecordDataset(str(path), compression_type=compression or "")
    assert [r.numpy() for r in ds] == payloads
    assert list(read_records(path, compression=compression)) == payloads


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_decode_garbage_raises_only_value_error(data):
    try:
        result = decode_example(data)
    except ValueError:
        return
    assert isinstance(result, dict)


def test_every_strict_prefix_is_rejected():
    data = encode_example({"a": np.arange(40, dtype=np.int64) * -7, "b": [b"xy", b""], "c": 1.5})
    assert decode_example(b"") == {}
    for k in range(1, len(data)):
        with pytest.raises(ValueError, match="malformed Example"):
            decode_example(data[:k])
    # The oracle agrees that such a prefix is not a valid Example.
    with pytest.raises(Exception):
        tf.train.Example.FromString(data[: len(data) // 2])


@pytest.mark.parametrize(
    "data, message",
    [
        (b"\x0b", "wire type 3"),  # field 1, group start
        (b"\x08\x01", "Example.features has wire type 0"),
        (b"\x0a" + b"\xff" * 11, "longer than 10 bytes"),
        (b"\x0a\x05\x0a\x03\x0a\x01\xff", "not UTF-8"),
        (b"\x0a\x09\x0a\x07\x12\x05\x12\x03\x0a\x01\x00", "not a multiple of 4"),
        (b"\x0a\x06\x0a\x04\x12\x02\x18\x01", "Feature field 3 has wire type 0"),
        (b"\x00", "invalid field number 0"),
    ],
)
def test_malformed_messages(data, message):
    with pytest.raises(ValueError, match=message):
        decode_example(data)


def test_decode_merges_repeated_submessages_like_protobuf():
    def entry(key, feature):
        body = b"\x0a\x01" + key + b"\x12" + bytes([len(feature)]) + feature
        return b"\x0a" + bytes([len(body)]) + body

    one, two = np.float32(1).tobytes(), np.float32(2).tobytes()
    merged = b"\x12\x06\x0a\x04" + one + b"\x12\x06\x0a\x04" + two  # float_list twice
    replaced = b"\x12\x06\x0a\x04" + one + b"\x1a\x03\x0a\x01\x05"  # then int64_list
    features = entry(b"m", merged) + entry(b"r", replaced) + entry(b"d", b"\x1a\x00") + entry(b"d", merged)
    data = b"\x0a" + bytes([len(features)]) + features
    ours = decode_example(data)
    assert_decoded_equal(ours, tf_to_python(tf.train.Example.FromString(data)))
    assert ours["m"].tolist() == [1.0, 2.0]
    assert ours["r"].tolist() == [5]
    assert ours["d"].tolist() == [1.0, 2.0]  # a repeated map key: the last entry wins


@settings(max_examples=30, deadline=None)
@given(feature_dicts, st.randoms(use_true_random=False))
def test_encoding_is_deterministic_and_sorted(features, rnd):
    items = list(features.items())
    rnd.shuffle(items)
    data = encode_example(dict(items))
    assert data == encode_example(features)
    assert list(decode_example_in_wire_order(data)) == sorted(features)


def decode_example_in_wire_order(data: bytes) -> list[str]:
    """Keys in the order they appear on the wire, via TF's parser."""
    example = tf.train.Example.FromString(data)
    # ListFields/items order is not wire order; re-parse the entries manually.
    from vitalflow.dataset import tfrecord as t

    keys = []
    for _, _, span in t._fields(data, 0, len(data)):
        for _, _, entry in t._fields(data, *span):
            for field, _, e_span in t._fields(data, *entry):
                if field == 1:
                    keys.append(data[e_span[0] : e_span[1]].decode())
    assert sorted(keys) == sorted(example.features.feature.keys())
    return keys


def test_decode_skips_unknown_fields_and_empty_feature():
    # entry {key "k" value Feature{}}, plus unknown fields at several levels
    entry = b"\x0a\x01k" + b"\x12\x00" + b"\x18\x05"
    features = b"\x0a" + bytes([len(entry)]) + entry + b"\x15" + b"\x00" * 4
    data = b"\x0a" + bytes([len(features)]) + features + b"\x11" + b"\x00" * 8
    assert decode_example(data) == {"k": []}
    assert tf.train.Example.FromString(data).features.feature["k"].WhichOneof("kind") is None


# ---------------------------------------------------------------- encoder input handling


def test_encoder_input_types():
    decoded = decode_example(
        encode_example(
            {
                "s": "héllo",
                "b": bytearray(b"ab"),
                "lst": ["x", b"y"],
                "empty": [],
                "f": 2.5,
                "big": 1e300,
                "flag": True,
                "mat": np.arange(6, dtype=np.int16).reshape(2, 3),
                "u": np.array([2**63 - 1], dtype=np.uint64),
                "str_arr": np.array([b"p", b"q"]),
                "f64": np.array([1e300, 0.1]),
            }
        )
    )
    assert decoded["s"] == ["héllo".encode()]
    assert decoded["b"] == [b"ab"]
    assert decoded["lst"] == [b"x", b"y"]
    assert decoded["empty"] == []
    assert decoded["f"].tolist() == [2.5]
    assert decoded["big"].tolist() == [np.inf]
    assert decoded["flag"].tolist() == [1]
    assert decoded["mat"].tolist() == [0, 1, 2, 3, 4, 5]
    assert decoded["u"].tolist() == [2**63 - 1]
    assert decoded["str_arr"] == [b"p", b"q"]
    assert decoded["f64"].tolist() == [np.inf, np.float32(0.1)]


@pytest.mark.parametrize(
    "features, error, match",
    [
        ({"x": 2**63}, ValueError, "does not fit in int64"),
        ({"x": np.array([2**64 - 1], np.uint64)}, ValueError, "does not fit in int64"),
        ({"x": np.array([1j])}, TypeError, "unsupported feature dtype"),
        ({"x": [b"a", 1]}, TypeError, "feature 'x'"),
        ({"x": {"nested": 1}}, TypeError, "feature 'x'"),
        ({1: b"a"}, TypeError, "keys must be str"),
    ],
)
def test_encoder_rejects_bad_values(features, error, match):
    with pytest.raises(error, match=match):
        encode_example(features)


# ---------------------------------------------------------------- writer / reader


def test_writer_counts_and_file_ownership(tmp_path):
    buf = io.BytesIO()
    writer = TFRecordWriter(buf)
    writer.write(b"abc")
    writer.write(b"")
    writer.close()
    writer.close()  # idempotent
    assert (writer.records, writer.bytes_written) == (2, 3 + 2 * 16)
    assert not buf.closed  # caller's file object stays open
    assert list(read_records(io.BytesIO(buf.getvalue()))) == [b"abc", b""]
    with pytest.raises(ValueError, match="closed"):
        writer.write(b"more")

    path = tmp_path / "owned.tfrecord.gz"
    with TFRecordWriter(path, compression="gzip") as w:
        w.write(b"abc")
    assert w._raw.closed
    assert detect_compression(path) == "GZIP"
    assert gzip.decompress(path.read_bytes()) == frame_record(b"abc")
    assert list(read_records(path, compression="GZIP")) == [b"abc"]


@pytest.mark.parametrize("bad", ["ZLIB", "gz", 1])
def test_unsupported_compression_is_rejected(bad, tmp_path):
    with pytest.raises(ValueError, match="unsupported compression"):
        TFRecordWriter(io.BytesIO(), compression=bad)
    with pytest.raises(ValueError, match="unsupported compression"):
        list(read_records(io.BytesIO(b""), compression=bad))


def test_detect_compression_is_not_fooled_by_length_bytes():
    # A record of length 0x08_8b1f starts with 1f 8b 08, like a gzip header.
    record = frame_record(b"\x00" * 0x088B1F)
    assert record[:3] == b"\x1f\x8b\x08"
    assert detect_compression(record) is None
    assert detect_compression(gzip.compress(record)) == "GZIP"
    assert detect_compression(b"") is None


def test_masked_crc_known_value():
    # CRC-32C check value of "123456789" is 0xE3069283 (RFC 3720, B.4).
    crc = 0xE3069283
    assert masked_crc32c(b"123456789") == (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


# ---------------------------------------------------------------- corruption


def _offsets(payloads):
    offsets, pos = [], 0
    for p in payloads:
        offsets.append(pos)
        pos += 16 + len(p)
    return offsets


@pytest.fixture
def good_file(tmp_path):
    payloads = [encode_example(ex) for ex in make_examples(3)]
    path = tmp_path / "good.tfrecord"
    with TFRecordWriter(path) as w:
        for p in payloads:
            w.write(p)
    return path, payloads


def test_flipped_payload_byte_names_file_and_offset(good_file, tmp_path):
    path, payloads = good_file
    raw = bytearray(path.read_bytes())
    start = _offsets(payloads)[2]
    raw[start + 12 + 1000] ^= 0x01
    bad = tmp_path / "bad.tfrecord"
    bad.write_bytes(bytes(raw))

    reader = read_records(bad)
    assert next(reader) == payloads[0]
    assert next(reader) == payloads[1]
    with pytest.raises(CorruptRecordError, match=rf"bad\.tfrecord: record 2 at byte offset {start}: data CRC"):
        next(reader)
    # verify=False hands back the (corrupt) payload instead
    assert len(list(read_records(bad, verify=False))) == 3
    # The oracle sees the corruption too.
    with pytest.raises(tf.errors.DataLossError):
        list(tf.data.TFRecordDataset(str(bad)))


def test_flipped_length_byte(good_file, tmp_path):
    path, payloads = good_file
    raw = bytearray(path.read_bytes())
    start = _offsets(payloads)[1]
    raw[start + 1] ^= 0x40
    bad = tmp_path / "badlen.tfrecord"
    bad.write_bytes(bytes(raw))
    with pytest.raises(CorruptRecordError, match=rf"byte offset {start}: length CRC"):
        list(read_records(bad))


@pytest.mark.parametrize("cut", [5, 12 + 100, -1])
def test_truncated_file(good_file, tmp_path, cut):
    path, payloads = good_file
    raw = path.read_bytes()
    start = _offsets(payloads)[2]
    end = start + cut if cut > 0 else len(raw) + cut
    bad = tmp_path / "short.tfrecord"
    bad.write_bytes(raw[:end])
    with pytest.raises(CorruptRecordError, match=rf"short\.tfrecord: record 2 at byte offset {start}: truncated"):
        list(read_records(bad, verify=False))
    if cut > 12:  # TF silently treats a partial trailing header as EOF; we don't
        with pytest.raises(tf.errors.DataLossError):
            list(tf.data.TFRecordDataset(str(bad)))


@pytest.mark.parametrize("keep", [0.5, 0.98])
def test_truncated_gzip(tmp_path, keep):
    path = tmp_path / "data.tfrecord.gz"
    examples = make_examples(4)
    write_ours(path, examples, "GZIP")
    raw = path.read_bytes()
    bad = tmp_path / "cut.tfrecord.gz"
    bad.write_bytes(raw[: int(len(raw) * keep)])
    with pytest.raises(CorruptRecordError, match=r"cut\.tfrecord\.gz: record \d at byte offset \d+: truncated"):
        list(read_records(bad, compression="GZIP"))


def test_gzip_missing_trailer_only(tmp_path):
    path = tmp_path / "data.tfrecord.gz"
    write_ours(path, make_examples(2), "GZIP")
    bad = tmp_path / "notrailer.tfrecord.gz"
    bad.write_bytes(path.read_bytes()[:-8])  # all records intact, CRC32/ISIZE gone
    with pytest.raises(CorruptRecordError, match="gzip"):
        list(read_records(bad, compression="GZIP"))


def test_reading_plain_file_as_gzip(good_file):
    path, _ = good_file
    with pytest.raises(CorruptRecordError, match="gzip"):
        list(read_records(path, compression="GZIP"))


# --- the example schema: one definition for the encoder, verify, the card and TensorFlow ---------
@pytest.mark.parametrize("write_mask", [True, False])
def test_a_case_encodes_exactly_the_schema_and_tensorflow_parses_it_with_the_schema(write_mask):
    from vitalflow.dataset.examples import case_examples
    from vitalflow.dataset.schema import example_schema
    from vitalflow.spec import load_spec
    from vitalflow.spec.model import Config, Output, Windows
    from vitalflow.transform.case import preprocess_case
    from vitalflow.transform.patient import Patient

    spec = load_spec()
    config = Config(windows=Windows(length_s=4, step_s=3, horizon_s=2, min_observed_share=0),
                    output=Output(write_mask=write_mask))
    patient = Patient(case_id=5, subject_id="s5", sex="M", height=180.0, weight=80.0, anestart=2.0, aneend=14.0)
    tracks = {"Solar8000/HR": (np.array([1.0, 4.0, 6.0]), np.array([110.0, 80.0, 65.0]))}
    arrays = preprocess_case(tracks, 16.0, patient, spec, config.windows)
    schema = example_schema(spec, config)
    assert ("mask" in schema.root) == write_mask
    numpy = {"float32": np.float32, "int64": np.int64}
    examples = case_examples(arrays, "s5", write_mask, spec.decisions)
    assert len(examples) == arrays.n_windows == 3
    for data in examples:
        ex = decode_example(data)
        assert list(ex) == sorted(schema.root)  # the encoder writes the schema's features, no others
        for name, f in schema.items():
            assert len(ex[name]) == f.size
            assert isinstance(ex[name], list) if f.dtype == "string" else ex[name].dtype == numpy[f.dtype]
        parsed = tf.io.parse_single_example(data, schema.tf_features(tf))
        assert {k: v.shape.as_list() for k, v in parsed.items()} == {k: s for k, (s, _) in schema.parse_spec().items()}
        assert {k: v.dtype.name for k, v in parsed.items()} == {k: d for k, (_, d) in schema.parse_spec().items()}
