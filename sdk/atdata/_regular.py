"""Regular shards as Arrow blocks with whole-shard numpy operations, no per-sample Python.

A *regular* shard is what ``write_samples`` writes for fixed-size samples: one ``.msgpack``
member per sample, every header the same but for the name and checksum, every message the
same size and the same bytes but for the array's payload and fixed-width numbers (ints,
floats, bools). Such a shard is a 2-D array (a row per sample, at a fixed stride), so its
checks and its columns are numpy operations over all rows at once. Anything else (other
members, varying sizes or layouts, strings that vary, a bad checksum) is read the usual way,
which then says what is wrong: these checks accept only shards the tar reader reads the same.
"""

from __future__ import annotations

import contextlib
import mmap
from collections.abc import Iterator
from typing import Any

import numpy as np

from ._codec import _unpackb
from ._columns import _EXACT_TYPES, _SCALAR_TYPES, _ArrayColumn, _fields_of, _pyarrow
from ._fields import FieldKind, FieldSpec
from ._tar import _REGULAR, BLOCK

__all__ = ["regular_plan"]

_EXT = b".msgpack"
# msgpack's fixed-width numbers: type byte -> big-endian dtype of the bytes after it
_INTS = {0xCC: ">u1", 0xCD: ">u2", 0xCE: ">u4", 0xD0: ">i1", 0xD1: ">i2", 0xD2: ">i4"}
_INTS[0xD3] = ">i8"
_FLOATS = {0xCA: ">f4", 0xCB: ">f8"}


class _Plan:
    """A regular shard's rows (a strided view of the mapping) and how to read each field."""

    def __init__(
        self,
        messages: np.ndarray,
        specs: tuple[FieldSpec, ...],
        array: _ArrayColumn,
        payload: tuple[int, int],
        readers: list[Any],
    ) -> None:
        self.messages, self.specs, self.array = messages, specs, array
        self.payload, self.readers = payload, readers

    def blocks(self, rows_per_block: int | None) -> Iterator[Any]:
        """The shard's rows as tables of ``rows_per_block`` rows (or about 64 MB)."""
        pa = _pyarrow()
        n = len(self.messages)
        size = 64 + self.messages.shape[1]
        limit = rows_per_block or max(1, min(4096, (64 << 20) // size))
        lo, hi = self.payload
        names = [spec.name for spec in self.specs]
        for start in range(0, n, limit):
            rows = self.messages[start : start + limit]
            columns = []
            for spec, reader in zip(self.specs, self.readers, strict=True):
                if reader is None:  # the array: its payloads copied once, into its buffer
                    column = self.array
                    column.buffer = np.ascontiguousarray(rows[:, lo:hi]).reshape(-1)
                    column.rows = len(rows)
                    columns.append(column.array())
                else:
                    columns.append(reader(rows, spec))
            yield pa.Table.from_arrays(columns, names=names)

    def release(self) -> None:
        """Drop the views of the mapping (so that it can be closed)."""
        self.messages = np.empty((0, 0), np.uint8)
        del self.readers[:]


def regular_plan(mapped: mmap.mmap, cls: type) -> _Plan | None:
    """How to read this mapped shard as blocks of ``cls`` (None: not regular, see the module)."""
    data = np.frombuffer(mapped, np.uint8)
    first = data[:BLOCK].tobytes()
    if len(data) < 2 * BLOCK or first[156:157] not in _REGULAR or first[345]:
        return None
    end_name = first.find(0, 0, 100)
    try:
        size = int(first[124:135], 8)
    except ValueError:
        return None
    if end_name < len(_EXT) + 1 or first[end_name - len(_EXT) : end_name] != _EXT or size <= 0:
        return None
    stride = BLOCK + -(-size // BLOCK) * BLOCK
    n = (len(data) - BLOCK) // stride
    if n == 0 or data[n * stride :].any():  # the end-of-archive blocks: nothing else after
        return None
    table = data[: n * stride].reshape(n, stride)
    if not _headers_ok(table[:, :BLOCK], first, end_name):
        return None
    return _layout(table[:, BLOCK : BLOCK + size], cls)


def _headers_ok(headers: np.ndarray, first: bytes, end_name: int) -> bool:
    """Every header the first's but for the key and checksum, keys free of dots and NULs (so
    each names one sample, ``<key>.msgpack``), neighbours' keys distinct, checksums right."""
    one = np.frombuffer(first, np.uint8)
    key = end_name - len(_EXT)
    if not (headers[:, key:end_name] == one[key:end_name]).all():
        return False
    if not (headers[:, end_name] == 0).all() or not (headers[:, 154:] == one[154:]).all():
        return False
    if not (headers[:, 100:148] == one[100:148]).all():
        return False
    keys = headers[:, :key]
    if (keys == 0).any() or (keys == ord(".")).any():
        return False
    if len(keys) > 1 and not (keys[1:] != keys[:-1]).any(axis=1).all():
        return False
    digits = headers[:, 148:154].astype(np.int64) - ord("0")
    if first[154:156] != b"\0 " or ((digits < 0) | (digits > 7)).any():
        return False
    want = digits @ (8 ** np.arange(5, -1, -1, dtype=np.int64))
    got = headers.sum(axis=1, dtype=np.int64) - headers[:, 148:156].sum(axis=1, dtype=np.int64)
    return bool((got + 8 * ord(" ") == want).all())


def _layout(messages: np.ndarray, cls: type) -> _Plan | None:
    """How each field of the first message is laid out, and the rows checked against it."""
    import msgpack

    specs = _fields_of(cls)
    arrays = [spec for spec in specs if spec.kind is FieldKind.ARRAY]
    if len(arrays) != 1:
        return None
    message = messages[0].tobytes()
    try:
        decoded = _unpackb(message)
        unpacker = msgpack.Unpacker(max_buffer_size=len(message))
        unpacker.feed(message)
        count = unpacker.read_map_header()
        spans: dict[Any, tuple[int, int]] = {}
        for _ in range(count):
            k = unpacker.unpack()
            start = unpacker.tell()
            unpacker.skip()
            spans[k] = (start, unpacker.tell())
    except Exception:  # msgpack raises several types: the usual way says what is wrong
        return None
    if (
        type(decoded) is not dict
        or unpacker.tell() != len(message)
        or len(spans) != count
        or set(spans) != {spec.name for spec in specs}
    ):
        return None
    column = _ArrayColumn(arrays[0], 1)
    wire = decoded[arrays[0].name]  # the bin's bytes: the last of its value's span
    a, b = spans[arrays[0].name]
    if type(wire) is not bytes or b - a <= len(wire) or not column.take(wire):
        return None
    payload = (b - column.payload, b)
    varies = np.zeros(messages.shape[1], bool)
    for lo, hi in ((0, payload[0]), (payload[1], messages.shape[1])):
        varies[lo:hi] = (messages[:, lo:hi] != messages[0, lo:hi]).any(axis=0)
    readers: list[Any] = []
    for spec in specs:
        if spec.kind is FieldKind.ARRAY:
            readers.append(None)
            continue
        value = decoded[spec.name]
        allowed = _EXACT_TYPES[spec.kind] + ((type(None),) if spec.optional else ())
        if type(value) not in allowed:
            return None
        lo, hi = spans[spec.name]
        reader = _reader(messages, spec, lo, hi, value) if varies[lo:hi].any() else None
        if reader is None:
            if varies[lo:hi].any():
                return None
            reader = _constant(value)
        varies[lo:hi] = False
        readers.append(reader)
    if varies.any():  # bytes outside every value (keys, the array's headers) differ
        return None
    return _Plan(messages, specs, column, payload, readers)


def _constant(value: Any) -> Any:
    def read(rows: np.ndarray, spec: FieldSpec) -> Any:
        pa = _pyarrow()
        return pa.array([value] * len(rows), getattr(pa, _SCALAR_TYPES[spec.kind])())

    return read


def _reader(messages: np.ndarray, spec: FieldSpec, lo: int, hi: int, value: Any) -> Any:
    """A column reader for a field whose value varies across rows, where every row holds a
    fixed-width number of the same kind (None: not so)."""
    kind = spec.kind
    head = messages[:, lo]
    if hi - lo == 1:
        if kind is FieldKind.INT and ((head < 0x80) | (head >= 0xE0)).all():
            return _numbers(lo, hi, "i1", np.int64)  # positive and negative fixints
        if kind is FieldKind.BOOL and ((head == 0xC2) | (head == 0xC3)).all():
            return _numbers(lo, hi, "u1", np.bool_, 0xC3)
        return None
    if not (head == head[0]).all():
        return None
    table = _INTS if kind is FieldKind.INT else _FLOATS if kind is FieldKind.FLOAT else {}
    dtype = table.get(int(head[0]))
    if dtype is None or np.dtype(dtype).itemsize != hi - lo - 1:
        return None
    return _numbers(lo + 1, hi, dtype, np.int64 if kind is FieldKind.INT else np.float64)


def _numbers(lo: int, hi: int, dtype: str, to: Any, true: int | None = None) -> Any:
    def read(rows: np.ndarray, spec: FieldSpec) -> Any:
        pa = _pyarrow()
        raw = np.ascontiguousarray(rows[:, lo:hi]).view(dtype).reshape(-1)
        values = raw == true if true is not None else raw.astype(to)
        return pa.array(values, getattr(pa, _SCALAR_TYPES[spec.kind])())

    return read


def close_quietly(mapped: mmap.mmap) -> None:
    """Close a mapping (left to the collector where views of it still live)."""
    with contextlib.suppress(BufferError):
        mapped.close()
