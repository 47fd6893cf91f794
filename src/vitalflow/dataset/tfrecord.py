"""TFRecord files and ``tf.train.Example`` protobufs, without TensorFlow.

Everything here is pure Python + numpy + ``google_crc32c``:

* :func:`encode_example` / :func:`decode_example` hand-write and parse the
  ``tf.train.Example`` wire format::

      Example  { Features features = 1; }
      Features { map<string, Feature> feature = 1; }   # entry: key = 1, value = 2
      Feature  { oneof kind { BytesList bytes_list = 1;
                              FloatList float_list = 2;
                              Int64List int64_list = 3; } }
      BytesList { repeated bytes value = 1; }
      FloatList { repeated float value = 1 [packed = true]; }
      Int64List { repeated int64 value = 1 [packed = true]; }

* :func:`frame_record`, :class:`TFRecordWriter` and :func:`read_records` handle
  the TFRecord framing (``uint64 length | uint32 masked_crc32c(length) | data |
  uint32 masked_crc32c(data)``, little endian), optionally inside a gzip stream.

>>> import io
>>> buf = io.BytesIO()
>>> with TFRecordWriter(buf) as w:
...     w.write(encode_example({"x": np.array([0.5, 2.0], np.float32), "id": 7}))
>>> [decode_example(r) for r in read_records(io.BytesIO(buf.getvalue()))]
[{'id': array([7]), 'x': array([0.5, 2. ], dtype=float32)}]
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from collections.abc import Iterator, Mapping
from typing import BinaryIO, Union

import google_crc32c
import numpy as np
from isal import igzip, isal_zlib

from vitalflow.errors import CorruptRecordError

__all__ = [
    "CorruptRecordError",
    "ExampleDecoder",
    "TFRecordWriter",
    "decode_example",
    "detect_compression",
    "encode_block",
    "encode_example",
    "encode_examples",
    "frame_record",
    "masked_crc32c",
    "read_records",
]

FeatureValue = Union[np.ndarray, bytes, str, list, int, float]
PathOrFile = Union[str, os.PathLike, BinaryIO]

_MASK64 = (1 << 64) - 1
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_GZIP_MAGIC = b"\x1f\x8b"
#: ISA-L igzip level (0-3): level 1 costs a few % of a run and makes files ~12x smaller (bench/run.py)
GZIP_LEVEL = 1
_HEADER_LEN = 12  # uint64 length + uint32 masked crc
_READ_CHUNK = 1 << 24  # never ask the OS for more than this at once

# Wire-format tags: (field_number << 3) | wire_type.
_TAG_LEN1 = b"\x0a"  # field 1, length-delimited
_TAG_LEN2 = b"\x12"  # field 2, length-delimited
_KIND_TAG = {"bytes": b"\x0a", "float": b"\x12", "int64": b"\x1a"}
_SMALL_VARINTS = [bytes([i]) for i in range(128)]
_VARINT_SHIFTS = np.arange(0, 70, 7, dtype=np.uint64)  # 10 groups of 7 bits
_VARINT_GROUPS = np.arange(10)


# --------------------------------------------------------------------------
# CRC and framing
# --------------------------------------------------------------------------


def masked_crc32c(data: bytes) -> int:
    """CRC32-C of ``data``, masked the way TFRecord stores it.

    >>> hex(masked_crc32c(b""))
    '0xa282ead8'
    >>> hex(masked_crc32c(b"abc"))
    '0x21f1576e'
    """
    if not isinstance(data, bytes):
        data = bytes(data)  # google_crc32c only takes read-only bytes
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _frame_pieces(data: bytes) -> tuple[bytes, bytes, bytes, bytes]:
    header = _U64.pack(len(data))
    return header, _U32.pack(masked_crc32c(header)), data, _U32.pack(masked_crc32c(data))


def frame_record(data: bytes) -> bytes:
    """Wrap one payload in TFRecord framing.

    >>> frame_record(b"hi").hex()
    '020000000000000078270b34686913d60856'
    """
    if not isinstance(data, bytes):
        data = bytes(data)
    return b"".join(_frame_pieces(data))


def encode_block(payloads: list[bytes], compression: str | None = None) -> bytes:
    """Payloads framed as TFRecords and, for ``"GZIP"``, compressed as one gzip member.

    Blocks of the same compression concatenate into a valid TFRecord file: a gzip file may hold
    several members (readers, TensorFlow's included, read them as one stream). This lets workers
    frame and compress a case's records in parallel, and a writer only append bytes.

    >>> import io
    >>> blocks = encode_block([b"a"], "GZIP") + encode_block([b"b", b"c"], "GZIP")
    >>> list(read_records(io.BytesIO(blocks), compression="GZIP"))
    [b'a', b'b', b'c']
    """
    framed = b"".join([piece for data in payloads for piece in _frame_pieces(data)])
    if not framed or _normalize_compression(compression) is None:
        return framed  # no empty gzip member: TensorFlow stops reading a file at one
    return igzip.compress(framed, compresslevel=GZIP_LEVEL, mtime=0)


# --------------------------------------------------------------------------
# Example encoding
# --------------------------------------------------------------------------


def _varint(value: int) -> bytes:
    """Protobuf varint; negative ints are written as 64-bit two's complement.

    >>> _varint(300).hex(), _varint(-1).hex()
    ('ac02', 'ffffffffffffffffff01')
    """
    if 0 <= value < 128:
        return _SMALL_VARINTS[value]
    value &= _MASK64
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _varints(values: np.ndarray) -> bytes:
    """Concatenated varints of a uint64 array (vectorized for long arrays)."""
    if values.size <= 16:
        return b"".join([_varint(v) for v in values.tolist()])
    groups = ((values[:, None] >> _VARINT_SHIFTS) & np.uint64(0x7F)).astype(np.uint8)
    nonzero = groups != 0
    # bytes needed = 1 + index of the highest non-zero 7-bit group (at least 1)
    nbytes = np.where(nonzero.any(axis=1), 10 - np.argmax(nonzero[:, ::-1], axis=1), 1)
    more = _VARINT_GROUPS < (nbytes[:, None] - 1)
    groups |= more.astype(np.uint8) << 7
    return groups[_VARINT_GROUPS < nbytes[:, None]].tobytes()


def _len_field(tag: bytes, payload: bytes) -> bytes:
    return tag + _varint(len(payload)) + payload


def _int64_payload(values: np.ndarray) -> tuple[str, bytes]:
    if values.dtype == np.uint64 and values.size and values.max() > _INT64_MAX:
        raise ValueError("uint64 value does not fit in int64")
    packed = _varints(values.astype(np.int64, copy=False).ravel().view(np.uint64))
    return "int64", _len_field(_TAG_LEN1, packed) if packed else b""


def _float_payload(values: np.ndarray) -> tuple[str, bytes]:
    if values.dtype == np.float32:
        raw = values.astype("<f4", copy=False).tobytes()
    else:
        with np.errstate(over="ignore"):  # float64 beyond float32 range -> inf, as TF does
            raw = values.astype("<f4").tobytes()
    return "float", _len_field(_TAG_LEN1, raw) if raw else b""


def _bytes_payload(items) -> tuple[str, bytes]:
    parts = []
    for item in items:
        if isinstance(item, str):
            item = item.encode("utf-8")
        elif isinstance(item, (bytearray, memoryview, np.bytes_)):
            item = bytes(item)
        elif not isinstance(item, bytes):
            raise TypeError(f"bytes_list items must be bytes or str, got {type(item).__name__}")
        parts.append(_len_field(_TAG_LEN1, item))
    return "bytes", b"".join(parts)


def _feature_payload(value: FeatureValue) -> tuple[str, bytes]:
    """(kind, serialized XxxList message) for one feature value."""
    if isinstance(value, (bytes, bytearray, memoryview, str)):
        return _bytes_payload([value])
    if isinstance(value, (bool, int)):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise ValueError(f"int {value} does not fit in int64")
        return "int64", _len_field(_TAG_LEN1, _varint(int(value)))
    if isinstance(value, float):
        return _float_payload(np.array([value]))
    if isinstance(value, (list, tuple)) and (
        not value or any(isinstance(v, (bytes, bytearray, memoryview, str)) for v in value)
    ):
        return _bytes_payload(value)  # includes the empty list
    arr = np.asarray(value)
    kind = arr.dtype.kind
    if kind == "f":
        return _float_payload(arr)
    if kind in "iub":
        return _int64_payload(arr)
    if kind in "SUO":
        return _bytes_payload(arr.ravel().tolist())
    raise TypeError(f"unsupported feature dtype {arr.dtype}")


def _entry(key: str, value: FeatureValue) -> bytes:
    """One serialized ``Features.feature`` map item (tag included)."""
    if not isinstance(key, str):
        raise TypeError(f"feature keys must be str, got {type(key).__name__}")
    try:
        kind, payload = _feature_payload(value)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"feature {key!r}: {exc}") from None
    feature = _len_field(_KIND_TAG[kind], payload)
    return _len_field(_TAG_LEN1, _len_field(_TAG_LEN1, key.encode("utf-8")) + _len_field(_TAG_LEN2, feature))


def encode_example(features: Mapping[str, FeatureValue]) -> bytes:
    """Serialize a ``tf.train.Example`` (keys sorted, so output is deterministic).

    Floating arrays/floats become ``float_list`` (float32); integer/bool arrays
    and ints become ``int64_list``; ``bytes``, ``str`` and lists of them become
    ``bytes_list`` (an empty list is an empty ``bytes_list``). Arrays are
    flattened in C order.

    >>> encode_example({"a": 1}).hex()
    '0a0c0a0a0a016112051a030a0101'
    >>> encode_example({"f": np.array([1.0], np.float32), "s": b"x"}).hex()
    '0a1b0a0d0a0166120812060a040000803f0a0a0a017312050a030a0178'
    """
    return _len_field(_TAG_LEN1, b"".join([_entry(key, features[key]) for key in sorted(features)]))


def _int_entries(key: str, values: np.ndarray) -> list[bytes]:
    """The map items of a one-int feature for each value: a prefix per varint length + the varint."""
    if values.dtype == np.uint64 and values.size and values.max() > _INT64_MAX:
        raise ValueError(f"feature {key!r}: uint64 value does not fit in int64")
    prefixes: dict[int, bytes] = {}
    out = []
    for value in values.astype(np.int64).tolist():
        varint = _varint(value)
        prefix = prefixes.get(len(varint))
        if prefix is None:
            prefix = prefixes[len(varint)] = _entry(key, np.array([value], dtype=np.int64))[: -len(varint)]
        out.append(prefix + varint)
    return out


def encode_examples(rows: Mapping[str, np.ndarray], same: Mapping[str, FeatureValue]) -> list[bytes]:
    """Serialize one Example per row: row ``i`` holds ``rows[k][i]`` for every ``k`` in ``rows``
    and every feature of ``same``. Equal to, and much faster than::

        [encode_example({**same, **{k: v[i] for k, v in rows.items()}}) for i in range(n)]

    Floating rows share one prefix and are sliced from one buffer; other rows go through
    :func:`encode_example`'s per-value path.

    >>> encode_examples({"f": np.array([[1.0], [2.0]], np.float32)}, {"s": b"x"}) == [
    ...     encode_example({"f": np.float32(v), "s": b"x"}) for v in (1.0, 2.0)]
    True
    """
    if not rows:
        raise ValueError("encode_examples needs at least one per-row feature")
    if set(rows) & set(same):
        raise ValueError(f"features both per row and the same for all: {sorted(set(rows) & set(same))}")
    n = len(next(iter(rows.values())))
    columns: list = []  # per key: one bytes for all rows, or a list of n items
    for key in sorted({*rows, *same}):
        if key in same:
            columns.append(_entry(key, same[key]))
            continue
        values = np.asarray(rows[key])
        if len(values) != n:
            raise ValueError(f"feature {key!r}: {len(values)} rows, expected {n}")
        if values.dtype.kind in "iu" and values[0].size == 1:  # one int per row: entries differ only
            columns.append(_int_entries(key, values.reshape(n)))  # in the varint and its length
            continue
        if values.dtype.kind != "f" or values[0].size == 0:
            columns.append([_entry(key, v) for v in values])
            continue
        with np.errstate(over="ignore"):  # float64 beyond float32 range -> inf, as TF does
            flat = values.reshape(n, -1).astype("<f4", copy=False)
        width = flat.shape[1] * 4
        prefix = _entry(key, flat[0])[:-width]  # everything before the float bytes: the same in every row
        raw = memoryview(np.ascontiguousarray(flat)).cast("B")  # no copy: joined straight from the array
        columns.append(prefix)
        columns.append([raw[i * width : (i + 1) * width] for i in range(n)])
    out = []
    for i in range(n):
        pieces = [c if isinstance(c, bytes) else c[i] for c in columns]
        out.append(b"".join([_TAG_LEN1, _varint(sum(map(len, pieces))), *pieces]))
    return out


# --------------------------------------------------------------------------
# Example decoding
# --------------------------------------------------------------------------


def _read_varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    for i in range(pos, min(end, pos + 10)):
        byte = buf[i]
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result & _MASK64, i + 1
        shift += 7
    if end - pos >= 10:
        raise ValueError(f"malformed Example: varint longer than 10 bytes at byte {pos}")
    raise ValueError(f"malformed Example: truncated varint at byte {pos}")


def _fields(buf: bytes, pos: int, end: int) -> list[tuple[int, int, object]]:
    """The (field number, wire type, value) of each field in buf[pos:end].

    The value is an int for varints and a (start, end) span otherwise. One-byte varints (tags and
    short lengths, nearly all of them) are read inline: this is the decoder's inner loop.
    """
    out = []
    while pos < end:
        start = pos
        key = buf[pos]
        if key < 0x80:
            pos += 1
        else:
            key, pos = _read_varint(buf, pos, end)
        field, wire = key >> 3, key & 7
        if not 0 < field < (1 << 29):
            raise ValueError(f"malformed Example: invalid field number {field} at byte {start}")
        if wire == 2:
            if pos < end and buf[pos] < 0x80:
                size = buf[pos]
                pos += 1
            else:
                size, pos = _read_varint(buf, pos, end)
        elif wire == 0:
            value, pos = _read_varint(buf, pos, end)
            out.append((field, wire, value))
            continue
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
        else:
            raise ValueError(f"malformed Example: unsupported wire type {wire} at byte {start}")
        if size > end - pos:
            raise ValueError(
                f"malformed Example: field {field} at byte {start} needs {size} bytes, "
                f"only {end - pos} remain"
            )
        out.append((field, wire, (pos, pos + size)))
        pos += size
    return out


def _decode_varints(raw: bytes) -> np.ndarray:
    """Packed varints -> int64 array (vectorized for long inputs)."""
    if len(raw) <= 32:
        out, pos = [], 0
        while pos < len(raw):
            value, pos = _read_varint(raw, pos, len(raw))
            out.append(value)
        return np.array(out, dtype=np.uint64).view(np.int64)
    a = np.frombuffer(raw, dtype=np.uint8)
    if a[-1] & 0x80:
        raise ValueError("malformed Example: truncated varint in packed int64 list")
    ends = np.flatnonzero(a < 0x80)
    starts = np.concatenate(([0], ends[:-1] + 1))
    lengths = ends - starts + 1
    if lengths.max() > 10:
        raise ValueError("malformed Example: varint longer than 10 bytes in int64 list")
    position = np.arange(a.size) - np.repeat(starts, lengths)
    parts = (a & 0x7F).astype(np.uint64) << (7 * position).astype(np.uint64)
    return np.bitwise_or.reduceat(parts, starts).view(np.int64)


def _wrong_wire(what: str, wire: int) -> ValueError:
    return ValueError(f"malformed Example: {what} has wire type {wire}")


# The parse yields a layout: feature name -> (kind, leaves). A leaf is the (start, end) span of a
# value's bytes (a packed list, one bytes value, one fixed32 float), or the int of an unpacked varint.
Layout = dict[str, tuple[int, list]]


def _list_leaves(buf: bytes, kind: int, start: int, end: int) -> list:
    """Leaves of one BytesList (1) / FloatList (2) / Int64List (3)."""
    leaves: list = []
    for field, wire, value in _fields(buf, start, end):
        if field != 1:
            continue  # unknown field: skipped, as protobuf does
        if kind == 1:
            if wire != 2:
                raise _wrong_wire("bytes_list value", wire)
        elif kind == 2:
            if wire not in (2, 5):
                raise _wrong_wire("float_list value", wire)
            if (value[1] - value[0]) % 4:
                raise ValueError("malformed Example: packed float_list length is not a multiple of 4")
        elif wire not in (0, 2):
            raise _wrong_wire("int64_list value", wire)
        leaves.append(value)
    return leaves


def _feature_leaves(buf: bytes, start: int, end: int) -> tuple[int, list]:
    kind, leaves = 0, []
    for field, wire, value in _fields(buf, start, end):
        if field not in (1, 2, 3):
            continue
        if wire != 2:
            raise _wrong_wire(f"Feature field {field}", wire)
        if field != kind:  # oneof: a different kind replaces, the same kind merges
            kind, leaves = field, []
        leaves += _list_leaves(buf, field, *value)
    return kind, leaves


def _layout(data: bytes) -> Layout:
    layout: Layout = {}
    for field, wire, span in _fields(data, 0, len(data)):
        if field != 1:
            continue
        if wire != 2:
            raise _wrong_wire("Example.features", wire)
        for f_field, f_wire, entry in _fields(data, *span):
            if f_field != 1:
                continue
            if f_wire != 2:
                raise _wrong_wire("Features.feature", f_wire)
            key, value = b"", (0, [])
            for e_field, e_wire, e_span in _fields(data, *entry):
                if e_field in (1, 2) and e_wire != 2:
                    raise _wrong_wire("feature map entry", e_wire)
                if e_field == 1:
                    key = data[e_span[0] : e_span[1]]
                elif e_field == 2:
                    value = _feature_leaves(data, *e_span)
            try:
                name = key.decode("utf-8")
            except UnicodeDecodeError:
                raise ValueError(f"malformed Example: feature key {key!r} is not UTF-8") from None
            layout[name] = value  # a repeated key: the last entry wins, as in protobuf maps
    return dict(sorted(layout.items()))


def _value(data: bytes, kind: int, leaves: list) -> np.ndarray | list[bytes]:
    if kind == 1:
        return [data[a:b] for a, b in leaves]
    if kind == 2:
        if len(leaves) == 1:
            a, b = leaves[0]
            return np.frombuffer(data, dtype="<f4", count=(b - a) // 4, offset=a).astype(np.float32)
        return np.frombuffer(b"".join([data[a:b] for a, b in leaves]), dtype="<f4").astype(np.float32)
    if kind == 3:
        chunks = [np.array([v], dtype=np.uint64).view(np.int64) if isinstance(v, int) else
                  _decode_varints(data[v[0] : v[1]]) for v in leaves]
        return np.concatenate(chunks) if chunks else np.empty(0, dtype=np.int64)
    return []  # a Feature with no kind set


def _values(data: bytes, layout: Layout) -> dict[str, np.ndarray | list[bytes]]:
    return {name: _value(data, kind, leaves) for name, (kind, leaves) in layout.items()}


def decode_example(data: bytes) -> dict[str, np.ndarray | list[bytes]]:
    """Parse a serialized ``tf.train.Example``.

    ``float_list`` -> float32 array, ``int64_list`` -> int64 array,
    ``bytes_list`` -> list of bytes (a Feature with no kind set -> ``[]``).
    Packed and unpacked repeated fields are both accepted; unknown fields are
    skipped. Malformed input raises ``ValueError``.

    >>> decode_example(encode_example({"c": -1, "b": [b"hi"], "a": np.float32(1.5)}))
    {'a': array([1.5], dtype=float32), 'b': [b'hi'], 'c': array([-1])}
    >>> decode_example(b"\\x0a\\x05\\x0a")
    Traceback (most recent call last):
    ...
    ValueError: malformed Example: field 1 at byte 0 needs 5 bytes, only 1 remain
    """
    if not isinstance(data, bytes):
        data = bytes(data)
    return _values(data, _layout(data))


class ExampleDecoder:
    """:func:`decode_example` for a stream of Examples from one writer, several times faster.

    A writer's Examples differ only inside their values: every tag, length and key byte is the
    same. The first Example of each length is parsed in full, and its layout kept along with the
    bytes between its values. A later Example of that length whose bytes between values are the
    same takes the same path through the parser (which never branches on value bytes), so its
    values are read straight from the kept spans; any other Example is parsed in full.

    >>> d = ExampleDecoder()
    >>> [d.decode(encode_example({"x": np.float32(v), "s": b"ab"})) for v in (1, 2)][1]
    {'s': [b'ab'], 'x': array([2.], dtype=float32)}
    """

    MAX_LAYOUTS = 16

    def __init__(self) -> None:
        self._known: dict[int, tuple[list[tuple[int, int, bytes]], Layout]] = {}

    def decode(self, data: bytes) -> dict[str, np.ndarray | list[bytes]]:
        if not isinstance(data, bytes):
            data = bytes(data)
        known = self._known.get(len(data))
        if known is not None and all(data[a:b] == gap for a, b, gap in known[0]):
            return _values(data, known[1])
        layout = _layout(data)
        if len(self._known) < self.MAX_LAYOUTS:
            self._known[len(data)] = (_gaps(data, layout), layout)
        return _values(data, layout)


def _gaps(data: bytes, layout: Layout) -> list[tuple[int, int, bytes]]:
    """The (start, end, bytes) of everything between the value spans of a layout."""
    spans = sorted(leaf for _, leaves in layout.values() for leaf in leaves if not isinstance(leaf, int))
    gaps, pos = [], 0
    for a, b in spans:
        gaps.append((pos, a, data[pos:a]))
        pos = b
    gaps.append((pos, len(data), data[pos:]))
    return gaps


# --------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------


def _normalize_compression(compression: str | None) -> str | None:
    if compression is None or compression == "" or compression == "none":
        return None
    if isinstance(compression, str) and compression.upper() == "GZIP":
        return "GZIP"
    raise ValueError(f"unsupported compression {compression!r}: expected None, 'none' or 'GZIP'")


class TFRecordWriter:
    """Write TFRecord payloads to a path or a binary file object.

    ``compression`` is None (or ``"none"``) or ``"GZIP"``. A path is opened (and closed) by the
    writer; a caller's file object is flushed but left open. ``records``
    counts payloads written and ``bytes_written`` the framed, *uncompressed*
    bytes (payloads + 16 bytes of framing each).

    >>> import io
    >>> buf = io.BytesIO()
    >>> with TFRecordWriter(buf, compression="GZIP") as w:
    ...     w.write(b"abc")
    >>> w.records, w.bytes_written, buf.getvalue()[:2] == b"\\x1f\\x8b"
    (1, 19, True)
    """

    def __init__(self, path_or_file: PathOrFile, compression: str | None = None) -> None:
        self.compression = _normalize_compression(compression)
        self._owns_file = isinstance(path_or_file, (str, os.PathLike))
        self._raw: BinaryIO = open(path_or_file, "wb") if self._owns_file else path_or_file
        self._out: BinaryIO = self._raw
        if self.compression == "GZIP":
            self._out = igzip.IGzipFile(filename="", mode="wb", fileobj=self._raw, compresslevel=GZIP_LEVEL, mtime=0)
        self.records = 0
        self.bytes_written = 0
        self.closed = False

    def write(self, data: bytes) -> None:
        """Append one record."""
        if self.closed:
            raise ValueError("write to a closed TFRecordWriter")
        framed = frame_record(data)
        self._out.write(framed)
        self.records += 1
        self.bytes_written += len(framed)

    def flush(self) -> None:
        self._out.flush()
        if self._out is not self._raw:
            self._raw.flush()

    def close(self) -> None:
        """Finish the gzip stream (if any), flush, and close an owned file."""
        if self.closed:
            return
        self.closed = True
        if self._out is not self._raw:
            self._out.close()  # writes the gzip trailer; leaves _raw open
        if self._owns_file:
            self._raw.close()
        else:
            self._raw.flush()

    def __enter__(self) -> TFRecordWriter:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _read_exact(f: BinaryIO, size: int) -> bytes:
    """Read ``size`` bytes or up to EOF, in bounded chunks (a corrupt length
    must not make us allocate petabytes, and raw streams may return short)."""
    parts = []
    while size > 0:
        part = f.read(min(size, _READ_CHUNK))
        if not part:
            break
        parts.append(part)
        size -= len(part)
    return parts[0] if len(parts) == 1 else b"".join(parts)


_GZIP_ERRORS = (EOFError, zlib.error, gzip.BadGzipFile, isal_zlib.error)


def _iter_framed(f: BinaryIO, name: str, verify: bool) -> Iterator[bytes]:
    offset = index = 0
    while True:
        where = f"{name}: record {index} at byte offset {offset}"
        try:
            header = _read_exact(f, _HEADER_LEN)
            if not header:
                return
            if len(header) < _HEADER_LEN:
                raise CorruptRecordError(f"{where}: truncated header ({len(header)} of 12 bytes)")
            (length,) = _U64.unpack_from(header)
            if verify and masked_crc32c(header[:8]) != _U32.unpack_from(header, 8)[0]:
                raise CorruptRecordError(f"{where}: length CRC mismatch")
            body = _read_exact(f, length + 4)
        except _GZIP_ERRORS as exc:
            raise CorruptRecordError(f"{where}: truncated or corrupt gzip stream: {exc}") from exc
        if len(body) < length + 4:
            raise CorruptRecordError(
                f"{where}: truncated record (needs {length + 4} bytes after the header, "
                f"{len(body)} remain)"
            )
        data = body[:length]
        if verify and masked_crc32c(data) != _U32.unpack_from(body, length)[0]:
            raise CorruptRecordError(f"{where}: data CRC mismatch")
        yield data
        offset += _HEADER_LEN + length + 4
        index += 1


def read_records(
    path_or_file: PathOrFile, compression: str | None = None, verify: bool = True
) -> Iterator[bytes]:
    """Yield the payloads of a TFRecord file, checking both CRCs.

    Raises :class:`CorruptRecordError` naming the file, record index and byte
    offset (in the decompressed stream for GZIP) on a CRC mismatch, a truncated
    record, or a truncated/corrupt gzip stream. ``verify=False`` skips the CRC
    checks but still detects truncation.

    >>> import io
    >>> list(read_records(io.BytesIO(frame_record(b"a") + frame_record(b""))))
    [b'a', b'']
    >>> try:
    ...     list(read_records(io.BytesIO(frame_record(b"abc")[:-1])))
    ... except CorruptRecordError as exc:
    ...     print(exc)
    <stream>: record 0 at byte offset 0: truncated record (needs 7 bytes after the header, 6 remain)
    """
    compression = _normalize_compression(compression)
    owns = isinstance(path_or_file, (str, os.PathLike))
    raw = open(path_or_file, "rb") if owns else path_or_file
    name = os.fspath(path_or_file) if owns else str(getattr(raw, "name", "<stream>"))
    try:
        if compression is None:
            yield from _iter_framed(raw, name, verify)
        else:
            with igzip.IGzipFile(fileobj=raw, mode="rb") as gz:  # every member, like TensorFlow
                yield from _iter_framed(gz, name, verify)
    finally:
        if owns:
            raw.close()


def detect_compression(path_or_bytes: str | os.PathLike | bytes) -> str | None:
    """``"GZIP"`` if the file (or its first bytes) is a gzip stream, else None.

    A leading valid TFRecord header wins over the gzip magic, since an
    uncompressed record length can happen to start with ``1f 8b``.

    >>> detect_compression(gzip.compress(frame_record(b"x")))
    'GZIP'
    >>> detect_compression(frame_record(b"x")) is None
    True
    """
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        head = bytes(path_or_bytes[:_HEADER_LEN])
    else:
        with open(path_or_bytes, "rb") as f:
            head = f.read(_HEADER_LEN)
    if len(head) == _HEADER_LEN and masked_crc32c(head[:8]) == _U32.unpack_from(head, 8)[0]:
        return None
    return "GZIP" if head[:2] == _GZIP_MAGIC else None
