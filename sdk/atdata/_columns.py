"""Samples as Arrow columns and pandas rows: the one mapping Ray Data and Dask share.

Per field kind (see :class:`~atdata._fields.FieldKind`):

- ``NDArray``: a Ray Arrow tensor column, fixed-shape when the schema declares the dtype and
  every dimension, variable-shaped otherwise (its dtype and rank from the schema, or from the
  data when undeclared); in pandas, an object column of arrays;
- ``int``/``float``/``bool``/``str``/``bytes``: ``int64``/``float64``/``bool``/``string``/
  ``binary`` columns (nullable when optional);
- a nested sample: a struct column of its fields; ``list[X]``: a list column of ``X``;
  ``dict[str, X]``: a map column;
- ``Any``, untyped ``list``/``dict``: a binary column holding each value's msgpack.

The inverse (:func:`table_to_samples`, :func:`frame_to_samples`) backs ``T.from_arrow`` and
``T.from_pandas``. Arrow is imported only when a column is built; tensor columns need Ray.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from ._codec import SCAN_MIN_BYTES, _unpackb, pack, unpack, unpack_message
from ._fields import FieldKind, FieldSpec
from .errors import DecodeError, SampleValueError, require_extra

__all__ = [
    "frame_to_samples",
    "samples_to_frame",
    "samples_to_table",
    "table_to_samples",
]

_SCALAR_TYPES = {
    FieldKind.STR: "string",
    FieldKind.BYTES: "binary",
    FieldKind.INT: "int64",
    FieldKind.FLOAT: "float64",
    FieldKind.BOOL: "bool_",
}


def _pyarrow() -> Any:
    require_extra("pyarrow", "ray", "Arrow columns")
    import pyarrow as pa

    return pa


def _fields_of(cls: type) -> tuple[FieldSpec, ...]:
    from .packable import sample_fields

    return sample_fields(cls)


def _is_msgpack_kind(spec: FieldSpec) -> bool:
    return spec.kind is FieldKind.ANY or (
        spec.kind in (FieldKind.LIST, FieldKind.DICT) and spec.item is None
    )


# --- samples -> Arrow -----------------------------------------------------------------------


def samples_to_table(samples: Sequence[Any], cls: type) -> Any:
    """A ``pyarrow.Table`` with one column per field of ``cls`` and one row per sample."""
    pa = _pyarrow()
    specs = _fields_of(cls)
    columns = [to_arrow([getattr(s, spec.name) for s in samples], spec) for spec in specs]
    return pa.Table.from_arrays(columns, names=[spec.name for spec in specs])


def dicts_to_table(rows: Sequence[dict[str, Any]]) -> Any:
    """Schema-free samples (``DictSample``) as a table: columns inferred from the values."""
    pa = _pyarrow()
    names: dict[str, None] = {}
    for row in rows:
        names.update(dict.fromkeys(row))
    columns = []
    for name in names:
        values = [row.get(name) for row in rows]
        if any(isinstance(v, np.ndarray) for v in values):
            from ray.data.extensions import ArrowTensorArray

            cells = np.empty(len(values), dtype=object)
            for i, v in enumerate(values):
                cells[i] = v
            columns.append(ArrowTensorArray.from_numpy(cells, column_name=name))
            continue
        try:
            columns.append(pa.array(values))
        except (pa.ArrowException, TypeError, ValueError):
            columns.append(pa.array([None if v is None else pack(v) for v in values], pa.binary()))
    return pa.Table.from_arrays(columns, names=list(names))


def to_arrow(values: list[Any], spec: FieldSpec) -> Any:
    """One Arrow array for ``values`` of a field (None anywhere is a null)."""
    pa = _pyarrow()
    kind = spec.kind
    if kind in _SCALAR_TYPES:
        return pa.array(values, getattr(pa, _SCALAR_TYPES[kind])())
    if kind is FieldKind.ARRAY:
        return _tensor_column(values, spec)
    if _is_msgpack_kind(spec):
        return pa.array([None if v is None else pack(v) for v in values], pa.binary())
    nulls = [v is None for v in values]
    mask = pa.array(nulls, pa.bool_()) if any(nulls) else None
    if kind is FieldKind.SAMPLE:
        assert spec.sample_type is not None
        specs = _fields_of(spec.sample_type)
        children = [
            to_arrow([None if v is None else getattr(v, f.name) for v in values], f) for f in specs
        ]
        if not specs:
            return pa.nulls(len(values), pa.struct([]))
        return pa.StructArray.from_arrays(children, names=[f.name for f in specs], mask=mask)
    assert spec.item is not None
    offsets = [0]
    flat: list[Any] = []
    keys: list[str] = []
    for v in values:
        if v is not None:
            if kind is FieldKind.DICT:
                keys.extend(v.keys())
                flat.extend(v.values())
            else:
                flat.extend(v)
        offsets.append(len(flat))
    items = to_arrow(flat, spec.item)
    if kind is FieldKind.DICT:
        # MapArray takes nulls from null offsets: row i is null when offsets[i] is
        offs = pa.array(
            [None if i < len(nulls) and nulls[i] else o for i, o in enumerate(offsets)],
            pa.int32(),
        )
        return pa.MapArray.from_arrays(offs, pa.array(keys, pa.string()), items)
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), items, mask=mask)


def _native(dtype: np.dtype) -> np.dtype:
    return dtype.newbyteorder("=") if dtype.byteorder not in "=|" else dtype


def _tensor_column(values: list[Any], spec: FieldSpec) -> Any:
    """Ray's fixed-shape tensor column when the schema fixes dtype and shape, else ragged."""
    require_extra("ray", "ray", "NDArray fields as Arrow tensor columns")
    pa = _pyarrow()
    from ray.data.extensions import (
        ArrowTensorArray,
        ArrowVariableShapedTensorArray,
        ArrowVariableShapedTensorType,
    )

    present = [v for v in values if v is not None]
    dtype = _native(spec.dtype if spec.dtype is not None else _first_dtype(present, spec))
    nulls = len(present) < len(values)
    shape = spec.shape
    if spec.dtype is not None and shape is not None and None not in shape:
        dims = tuple(d for d in shape if d is not None)
        if nulls:
            stacked = np.zeros((len(values), *dims), dtype)
            for i, v in enumerate(values):
                if v is not None:
                    stacked[i] = v
        else:
            stacked = (
                np.stack(values).astype(dtype, copy=False)
                if values
                else np.empty((0, *dims), dtype)
            )
        column = ArrowTensorArray.from_numpy(stacked)
    else:
        ndim = len(shape) if shape is not None else (present[0].ndim if present else 1)
        if not values:
            kind = ArrowVariableShapedTensorType(pa.from_numpy_dtype(dtype), ndim)
            return pa.ExtensionArray.from_storage(kind, pa.array([], kind.storage_type))
        filler = np.zeros((0,) * ndim, dtype)
        rows = [filler if v is None else v for v in values]
        for v in rows:
            if v.ndim != ndim:
                raise SampleValueError(
                    f"field {spec.name!r}: arrays of rank {ndim} and {v.ndim} in one column; "
                    "an Arrow tensor column holds one rank (declare a Shape)"
                )
        if dtype.kind in "biuf":
            column = _ragged_numeric(rows, dtype, ndim)
        else:  # strings, complex, dates: Ray's own conversion
            ragged = np.empty(len(rows), dtype=object)
            for i, v in enumerate(rows):
                ragged[i] = np.ascontiguousarray(v, dtype)
            column = ArrowVariableShapedTensorArray.from_numpy(ragged)
    if nulls:
        import pyarrow.compute as pc

        storage = column.storage
        mask = pa.array([v is None for v in values], pa.bool_())
        if pa.types.is_struct(storage.type):  # ragged: null rows keep their empty shape
            children = [storage.field(i) for i in range(storage.type.num_fields)]
            storage = pa.StructArray.from_arrays(children, fields=list(storage.type), mask=mask)
        else:
            storage = pc.if_else(mask, pa.nulls(len(values), storage.type), storage)
        column = pa.ExtensionArray.from_storage(column.type, storage)
    return column


def _ragged_numeric(rows: list[np.ndarray], dtype: np.dtype, ndim: int) -> Any:
    """Ray's variable-shaped tensor column, built with whole-column numpy operations.

    The same storage ``ArrowVariableShapedTensorArray.from_numpy`` builds (a struct of the
    flattened values as a large list and each row's shape), without its per-row Python work.
    """
    n = len(rows)
    sizes = np.fromiter((v.size for v in rows), np.int64, n)
    flat = np.concatenate([v.reshape(-1) for v in rows]) if n else np.empty(0, dtype)
    shapes = np.fromiter((d for v in rows for d in v.shape), np.int64, n * ndim)
    return _ragged_storage(flat.astype(dtype, copy=False), sizes, shapes, dtype, ndim)


def _ragged_storage(
    flat: np.ndarray, sizes: np.ndarray, shapes: np.ndarray, dtype: np.dtype, ndim: int
) -> Any:
    """Ray's variable-shaped tensor column over ``flat`` (all rows' values, in order), the rows'
    ``sizes`` and their ``shapes`` (``ndim`` per row, flattened), without copying ``flat``."""
    pa = _pyarrow()
    from ray.data.extensions import ArrowVariableShapedTensorType

    n = len(sizes)
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(sizes, out=offsets[1:])
    value_type = pa.from_numpy_dtype(dtype)
    if dtype.kind == "b":  # Arrow booleans are bit-packed, least significant bit first
        buffer = pa.py_buffer(np.packbits(flat, bitorder="little"))
    else:
        buffer = pa.py_buffer(np.ascontiguousarray(flat))
    data = pa.LargeListArray.from_arrays(
        pa.array(offsets), pa.Array.from_buffers(value_type, int(offsets[-1]), [None, buffer])
    )
    shape_lists = pa.ListArray.from_arrays(
        pa.array(np.arange(n + 1, dtype=np.int32) * ndim), pa.array(shapes)
    )
    kind = ArrowVariableShapedTensorType(value_type, ndim)
    storage = pa.StructArray.from_arrays([data, shape_lists], fields=list(kind.storage_type))
    return pa.ExtensionArray.from_storage(kind, storage)


def _first_dtype(present: list[np.ndarray], spec: FieldSpec) -> np.dtype:
    dtypes = {v.dtype for v in present}
    if len(dtypes) > 1:
        raise SampleValueError(
            f"field {spec.name!r}: arrays of dtypes {sorted(map(str, dtypes))} in one column; "
            "declare the dtype (NDArray[np.float32]) to store them as one tensor column"
        )
    return dtypes.pop() if dtypes else np.dtype(np.float64)


# --- Arrow -> samples -----------------------------------------------------------------------


def _chunks(column: Any) -> list[Any]:
    return list(column.chunks) if hasattr(column, "chunks") else [column]


def _build_samples(
    cls: type, n: int, names: Sequence[str], values_of: Callable[[FieldSpec], list[Any]], via: str
) -> list[Any]:
    """``n`` samples of ``cls`` from named columns (``values_of`` reads one): a field with no
    column is None in every row when it is optional (or Any) and an error otherwise."""
    specs = _fields_of(cls)
    columns: list[list[Any]] = []
    for spec in specs:
        if spec.name in names:
            columns.append(values_of(spec))
        elif spec.optional or spec.kind is FieldKind.ANY:
            columns.append([None] * n)
        else:
            raise SampleValueError(
                f"{cls.__name__}.{via}: no column for field {spec.name!r} "
                f"(columns: {', '.join(map(str, names))})"
            )
    keys = [spec.name for spec in specs]
    return [cls(**dict(zip(keys, row, strict=True))) for row in zip(*columns, strict=True)]


def table_to_samples(table: Any, cls: type) -> list[Any]:
    """Samples of ``cls`` from a ``pyarrow.Table``/``RecordBatch`` (extra columns ignored)."""

    def values_of(spec: FieldSpec) -> list[Any]:
        values: list[Any] = []
        for chunk in _chunks(table.column(spec.name)):
            values.extend(from_arrow(chunk, spec))
        return values

    return _build_samples(cls, table.num_rows, table.schema.names, values_of, "from_arrow")


def from_arrow(arr: Any, spec: FieldSpec) -> list[Any]:
    """The Python values (arrays as ndarrays, nested samples built) of one Arrow array."""
    kind = spec.kind
    if kind is FieldKind.ARRAY:
        return _tensor_values(arr, spec)
    if kind in _SCALAR_TYPES:
        return arr.to_pylist()
    if _is_msgpack_kind(spec):
        return [None if v is None else unpack(v) for v in arr.to_pylist()]
    valid = arr.is_valid().to_pylist() if arr.null_count else None
    if kind is FieldKind.SAMPLE:
        st = spec.sample_type
        assert st is not None
        specs = _fields_of(st)
        children = []
        for i, f in enumerate(specs):
            child = arr.field(i)
            if len(child) != len(arr):  # older pyarrow: the unsliced child
                child = child.slice(arr.offset, len(arr))
            children.append(from_arrow(child, f))
        names = [f.name for f in specs]
        built: list[Any] = []
        for i, row in enumerate(zip(*children, strict=True)):
            null = valid is not None and not valid[i]
            built.append(None if null else st(**dict(zip(names, row, strict=True))))
        return built
    assert spec.item is not None
    offsets = np.asarray(arr.offsets)
    start, stop = int(offsets[0]), int(offsets[-1])
    if kind is FieldKind.DICT:
        keys = arr.keys.slice(start, stop - start).to_pylist()
        items = from_arrow(arr.items.slice(start, stop - start), spec.item)
    else:
        items = from_arrow(arr.values.slice(start, stop - start), spec.item)
    rows: list[Any] = []
    for i in range(len(arr)):
        if valid is not None and not valid[i]:
            rows.append(None)
            continue
        a, b = int(offsets[i]) - start, int(offsets[i + 1]) - start
        if kind is FieldKind.DICT:
            rows.append(dict(zip(keys[a:b], items[a:b], strict=True)))
        else:
            rows.append(items[a:b])
    return rows


def _tensor_values(arr: Any, spec: FieldSpec) -> list[Any]:
    """Rows of a tensor column (Ray's, Arrow's canonical one, or nested lists) as ndarrays."""
    pa = _pyarrow()
    n = len(arr)
    if not isinstance(arr, pa.ExtensionArray):  # plain nested lists
        return [None if v is None else np.asarray(v, dtype=spec.dtype) for v in arr.to_pylist()]
    if arr.null_count:
        valid = np.flatnonzero(np.asarray(arr.is_valid()))
        dense = _tensor_values(arr.take(pa.array(valid)), spec) if len(valid) else []
        out: list[Any] = [None] * n
        for i, v in zip(valid, dense, strict=True):
            out[int(i)] = v
        return out
    if n == 0:
        return []
    if hasattr(arr, "to_numpy_ndarray"):  # Arrow's canonical fixed_shape_tensor
        return list(arr.to_numpy_ndarray())
    rows = arr.to_numpy(zero_copy_only=False)
    return list(rows)


# --- pandas ---------------------------------------------------------------------------------

_PANDAS_DTYPES = {FieldKind.INT: "int64", FieldKind.FLOAT: "float64", FieldKind.BOOL: "bool"}


def pandas_dtype(spec: FieldSpec) -> str:
    """The column dtype of a field in a frame: numeric when required, object otherwise."""
    if not spec.optional and spec.kind in _PANDAS_DTYPES:
        return _PANDAS_DTYPES[spec.kind]
    return "object"


def samples_to_frame(samples: Iterable[Any], cls: type) -> Any:
    """A pandas DataFrame, one row per sample; arrays, lists, dicts and samples as objects."""
    require_extra("pandas", "dask", "samples as a pandas DataFrame")
    import pandas as pd

    specs = _fields_of(cls)
    rows = list(samples)
    data = {}
    for spec in specs:
        values = np.empty(len(rows), dtype=object)
        for i, s in enumerate(rows):
            values[i] = getattr(s, spec.name)
        data[spec.name] = pd.Series(values, dtype=pandas_dtype(spec))
    return pd.DataFrame(data)


def dicts_to_frame(rows: Sequence[dict[str, Any]]) -> Any:
    """Schema-free samples as a frame (one object column per key seen)."""
    import pandas as pd

    names: dict[str, None] = {}
    for row in rows:
        names.update(dict.fromkeys(row))
    data = {}
    for name in names:
        values = np.empty(len(rows), dtype=object)
        for i, row in enumerate(rows):
            values[i] = row.get(name)
        data[name] = pd.Series(values, dtype=object)
    return pd.DataFrame(data)


def _plain(v: Any, spec: FieldSpec) -> Any:
    """A frame cell as a field value: NA as None, numpy scalars and tensor cells unwrapped."""
    import pandas as pd

    if v is None or v is pd.NA or v is pd.NaT:
        return None
    if spec.kind is FieldKind.ARRAY:
        return np.asarray(v, dtype=spec.dtype)
    if isinstance(v, float) and v != v and spec.kind is not FieldKind.FLOAT:
        return None  # pandas' missing-value float in an object or upcast column
    if isinstance(v, np.generic):
        return v.item()
    if spec.kind in (FieldKind.LIST, FieldKind.DICT) and isinstance(v, bytes):
        return unpack(v)  # an untyped list/dict from an Arrow (msgpack) column
    if spec.kind is FieldKind.LIST and isinstance(v, np.ndarray):
        return list(v)
    if spec.kind is FieldKind.DICT and isinstance(v, list | np.ndarray):
        return dict(v)  # an Arrow map column in pandas: (key, value) pairs
    return v


def frame_to_samples(df: Any, cls: type) -> list[Any]:
    """Samples of ``cls`` from a pandas DataFrame (extra columns ignored)."""

    def values_of(spec: FieldSpec) -> list[Any]:
        return [_plain(v, spec) for v in df[spec.name].tolist()]

    return _build_samples(cls, len(df), list(df.columns), values_of, "from_pandas")


# --- sample messages -> Arrow, without sample objects -----------------------------------------

_EXACT_TYPES: dict[FieldKind, tuple[type, ...]] = {
    FieldKind.INT: (int,),
    FieldKind.FLOAT: (float, int),  # integral floats may be stored as ints
    FieldKind.BOOL: (bool,),
    FieldKind.STR: (str,),
    FieldKind.BYTES: (bytes,),
}


def message_columns_apply(cls: type) -> bool:
    """Whether :class:`MessageColumns` can build ``cls``'s blocks: every field an array or a
    scalar, and no ``__post_init__`` of the user's (it could change what a sample holds)."""
    hook = getattr(cls, "__post_init__", None)
    if hook is None or getattr(hook, "_atdata_user", True) is not None:
        return False
    return all(
        spec.kind in _EXACT_TYPES or (spec.kind is FieldKind.ARRAY and not spec.optional)
        for spec in _fields_of(cls)
    )


class _ScalarColumn:
    """A scalar field's values, taken when of the exact type decoding would return."""

    def __init__(self, spec: FieldSpec) -> None:
        self.spec = spec
        self.allowed = _EXACT_TYPES[spec.kind] + ((type(None),) if spec.optional else ())
        self.values: list[Any] = []

    def take(self, v: Any) -> bool:
        if type(v) in self.allowed:
            self.values.append(v)
            return True
        return False

    def truncate(self, n: int) -> None:
        del self.values[n:]

    def array(self) -> Any:
        pa = _pyarrow()
        values = self.values
        if self.spec.kind is FieldKind.BYTES:  # views of a large message, as decoding gives
            values = [v if type(v) is not memoryview else bytes(v) for v in values]
        return pa.array(values, getattr(pa, _SCALAR_TYPES[self.spec.kind])())


class _ArrayColumn:
    """An array field's payloads, copied into one buffer: rows that carry the same wire
    header (dtype and shape) as the first, which was decoded and checked against the schema.

    The buffer holds ``capacity`` rows from the start (a growing one is copied as it grows).
    """

    def __init__(self, spec: FieldSpec, capacity: int) -> None:
        from ._fields import make_decoder

        self.spec = spec
        self.decode = make_decoder(spec)
        self.capacity = max(1, capacity)
        self.header = b""
        self.end = self.size = -1  # header length, wire value length (-1: no row yet)
        self.dtype = np.dtype(np.uint8)
        self.shape: tuple[int, ...] = ()
        self.rows = self.payload = 0
        self.buffer = np.empty(0, np.uint8)
        self.view = self.buffer.data

    def take(self, v: Any) -> bool:
        t = type(v)
        if t is not bytes and t is not memoryview:
            return False
        if (len(v) != self.size or v[: self.end] != self.header) and (
            self.size >= 0 or not self._first(v)
        ):
            return False
        if self.rows == self.capacity:
            self._grow()
        start = self.rows * self.payload
        self.view[start : start + self.payload] = memoryview(v)[self.end :]
        self.rows += 1
        return True

    def _first(self, v: Any) -> bool:
        """Take the layout of the first row; False where rows of it would not decode to
        plain numeric arrays in our wire format (the caller then decodes them)."""
        try:
            decoded = self.decode(v, False)  # checks it against the schema
            end = 2 + v[0] + 8 * v[1 + v[0]]  # our header: dtype string, rank, dimensions
        except (DecodeError, IndexError):
            return False
        dtype = decoded.dtype
        if (
            not dtype.isnative
            or dtype.kind not in "biuf"
            or len(v) != end + decoded.nbytes  # not our header (.npy bytes) or not one piece
        ):
            return False
        self.header, self.end, self.size = bytes(v[:end]), end, len(v)
        self.dtype, self.shape, self.payload = dtype, decoded.shape, decoded.nbytes
        self.buffer = np.empty(self.capacity * self.payload, np.uint8)
        self.view = self.buffer.data
        return True

    def _grow(self) -> None:
        self.capacity *= 2
        bigger = np.empty(self.capacity * self.payload, np.uint8)
        bigger[: self.buffer.size] = self.buffer
        self.buffer, self.view = bigger, bigger.data

    def truncate(self, n: int) -> None:
        self.rows = n

    def array(self) -> Any:
        spec, n = self.spec, self.rows
        flat = self.buffer[: n * self.payload].view(self.dtype)  # the column's buffer
        if spec.dtype is not None and spec.shape is not None and None not in spec.shape:
            from ray.data.extensions import ArrowTensorArray

            return ArrowTensorArray.from_numpy(flat.reshape(n, *self.shape))
        count = self.payload // self.dtype.itemsize
        sizes = np.full(n, count, np.int64)
        shapes = np.tile(np.asarray(self.shape, np.int64), n)
        return _ragged_storage(flat, sizes, shapes, self.dtype, len(self.shape))


class MessageColumns:
    """One Arrow block of ``cls`` samples, grown a sample message at a time, without sample
    objects or per-row arrays (for types :func:`message_columns_apply` accepts).

    :meth:`add` takes a message only when its values are exactly what decoding it would give
    (the same types; arrays with the block's first header, checked against the schema), so
    :meth:`table` equals :func:`samples_to_table` of the decoded samples; an array column's
    payloads are copied once, into the buffer the column uses. A message it refuses is for the
    caller to decode the usual way (which raises the error naming the sample, if it is bad).
    """

    def __init__(self, cls: type, capacity: int = 1024) -> None:
        self.specs = _fields_of(cls)
        self.names = [spec.name for spec in self.specs]
        self.capacity = capacity  # rows a block is expected to hold
        self.rows = 0
        self._reset()

    def _reset(self) -> None:
        self._columns: list[_ScalarColumn | _ArrayColumn] = [
            _ArrayColumn(spec, self.capacity)
            if spec.kind is FieldKind.ARRAY
            else _ScalarColumn(spec)
            for spec in self.specs
        ]
        self._takes = [
            (spec.name, c.take) for spec, c in zip(self.specs, self._columns, strict=True)
        ]
        self.rows = 0

    def add(self, message: Any) -> bool:
        """Append one message's values; False (and nothing appended) when it does not fit."""
        try:  # msgpack's own decoder for small messages (unpack_message's checks are below)
            d = _unpackb(message) if len(message) < SCAN_MIN_BYTES else unpack_message(message)
        except Exception:  # msgpack raises several types; decoding it again says what is wrong
            return False
        if type(d) is dict and len(d) == len(self._takes):
            try:
                for name, take in self._takes:
                    if not take(d[name]):
                        break
                else:
                    self.rows += 1
                    return True
            except KeyError:
                pass
        for column in self._columns:
            column.truncate(self.rows)
        return False

    def table(self) -> Any:
        """The block so far as a ``pyarrow.Table``; the builder starts a new block."""
        table = _pyarrow().Table.from_arrays([c.array() for c in self._columns], names=self.names)
        self._reset()
        return table
