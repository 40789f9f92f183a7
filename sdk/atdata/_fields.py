"""Field specs of sample classes: what each annotation means, checked once at decoration time.

Every field annotation is turned into a :class:`FieldSpec` when a class is decorated, so that
building, encoding and decoding samples never inspects annotations again. This module also
builds the per-field converters used by :mod:`atdata.packable`:

- a *checker* (construction): coerces friendly inputs (numpy scalars, wire bytes for arrays)
  and raises :class:`SampleValueError` for values breaking the declared type, dtype or shape;
- a *decoder* (wire -> value): accepts exactly what the wire format produces and raises
  :class:`DecodeError` naming the field otherwise;
- an *encoder* (value -> wire) for the few kinds that need one (nested samples).
"""

from __future__ import annotations

import dataclasses
import enum
import sys
import types
import typing
from collections.abc import Callable
from typing import (
    Annotated,
    Any,
    ClassVar,
    Protocol,
    Self,
    TypeGuard,
    TypeVar,
    get_args,
    get_origin,
)

import numpy as np

from ._codec import Buffer, check_array_dtype, decode_array
from .errors import DecodeError, FieldTypeError, SampleValueError

__all__ = [
    "FieldKind",
    "FieldSpec",
    "PackableSample",
    "SampleType",
    "Shape",
    "is_sample_type",
    "parse_fields",
    "spec_from_annotation",
]

INT_MIN = -(2**63)
INT_MAX = 2**64 - 1  # msgpack carries unsigned 64-bit integers too


class FieldKind(enum.StrEnum):
    """The kinds of value a sample field can hold (also their names in schema records)."""

    ARRAY = "ndarray"
    STR = "str"
    BYTES = "bytes"
    INT = "int"
    FLOAT = "float"
    BOOL = "bool"
    LIST = "list"
    DICT = "dict"
    ANY = "any"
    SAMPLE = "sample"


_SCALARS: dict[Any, FieldKind] = {
    str: FieldKind.STR,
    bytes: FieldKind.BYTES,
    int: FieldKind.INT,
    float: FieldKind.FLOAT,
    bool: FieldKind.BOOL,
}


class Shape:
    """Declared array shape, for ``Annotated[NDArray[np.float32], Shape(224, 224, 3)]``.

    ``None`` marks a dimension whose size may vary from sample to sample.
    """

    __slots__ = ("dims",)

    def __init__(self, *dims: int | None) -> None:
        for d in dims:
            if d is not None and (type(d) is not int or d < 0):
                raise FieldTypeError(f"Shape dimensions must be ints >= 0 or None, got {d!r}")
        self.dims: tuple[int | None, ...] = dims

    def __repr__(self) -> str:
        return f"Shape({', '.join(repr(d) for d in self.dims)})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Shape) and other.dims == self.dims

    def __hash__(self) -> int:
        return hash(("Shape", self.dims))


@dataclasses.dataclass(frozen=True)
class FieldSpec:
    """What one field (or a list item / dict value) holds, resolved from its annotation."""

    name: str
    kind: FieldKind
    optional: bool = False
    dtype: np.dtype | None = None
    shape: tuple[int | None, ...] | None = None
    item: FieldSpec | None = None
    sample_type: type[PackableSample] | None = None
    annotation: Any = dataclasses.field(default=None, compare=False, repr=False)

    @property
    def is_array(self) -> bool:
        """True for NDArray fields, optional or not."""
        return self.kind is FieldKind.ARRAY


class SampleType(Protocol):
    """A class a dataset can decode samples into: ``@packable`` classes and ``DictSample``."""

    @classmethod
    def from_bytes(cls, b: Buffer, *, writable: bool | None = False) -> Self: ...
    @classmethod
    def from_data(cls, d: dict[str, Any]) -> Self: ...


def is_sample_type(t: object) -> TypeGuard[type[SampleType]]:
    """True for a class with ``from_bytes`` and ``from_data`` (see :class:`SampleType`)."""
    return isinstance(t, type) and hasattr(t, "from_bytes") and hasattr(t, "from_data")


class PackableSample(SampleType, Protocol):
    """What ``@packable`` adds to a class: the type checker's view of a sample class.

    A decorated class keeps its own type (so its constructor stays checked); code that needs
    these members of an arbitrary sample class gets them through :func:`as_packable`.
    """

    __atdata_fields__: ClassVar[tuple[FieldSpec, ...]]
    __atdata_name__: ClassVar[str]
    __atdata_version__: ClassVar[str]
    __atdata_description__: ClassVar[str | None]

    @staticmethod
    def __atdata_encode__(obj: Any) -> dict[str, Any]: ...
    @staticmethod
    def __atdata_decode__(d: dict[str, Any], writable: bool) -> Any: ...
    @property
    def packed(self) -> bytes: ...
    @property
    def as_wds(self) -> dict[str, Any]: ...


def _is_packable(tp: Any) -> bool:
    return isinstance(tp, type) and hasattr(tp, "__atdata_fields__")


def _array_dtype(args: tuple[Any, ...], name: str, ann: Any) -> np.dtype | None:
    """The dtype of ``np.ndarray[shape, np.dtype[X]]`` / ``NDArray[X]``, None when generic."""
    if len(args) < 2:
        return None
    dt_arg = args[1]
    inner = get_args(dt_arg)
    scalar = inner[0] if inner else dt_arg
    if scalar is Any or isinstance(scalar, TypeVar):
        return None
    try:
        dt = np.dtype(scalar)
    except TypeError as exc:
        raise FieldTypeError(f"field {name!r}: annotation {ann!r} has no concrete dtype") from exc
    if not isinstance(scalar, type) or not issubclass(scalar, np.generic):
        raise FieldTypeError(f"field {name!r}: annotation {ann!r} has no concrete dtype")
    if dt.hasobject or dt.names is not None:
        raise FieldTypeError(f"field {name!r}: dtype {dt} cannot be stored")
    return dt


_ALIAS_TYPE: Any = getattr(typing, "TypeAliasType", None)


def _looks_like_a_sample(ann: Any) -> bool:
    """A dataclass or annotated class (not yet, or not, @packable): worth a pointed error."""
    if not isinstance(ann, type) or issubclass(ann, enum.Enum):
        return False
    return dataclasses.is_dataclass(ann) or bool(getattr(ann, "__annotations__", None))


def spec_from_annotation(name: str, ann: Any, *, _top: Any = None) -> FieldSpec:
    """Resolve one (already evaluated) annotation into a FieldSpec, or raise FieldTypeError."""
    top = ann if _top is None else _top

    def unsupported(why: str = "is not a supported field type") -> FieldTypeError:
        return FieldTypeError(f"field {name!r}: annotation {_fmt(top)} {why}")

    shape: tuple[int | None, ...] | None = None
    optional = False
    # Peel Annotated / Optional layers in any order.
    while True:
        origin = get_origin(ann)
        if _ALIAS_TYPE is not None:  # numpy >= 2.5 on Python >= 3.12: NDArray is a PEP 695 alias
            if isinstance(ann, _ALIAS_TYPE):
                ann = ann.__value__
                continue
            if isinstance(origin, _ALIAS_TYPE):
                ann = origin.__value__[get_args(ann)]
                continue
        if origin is Annotated:
            for meta in ann.__metadata__:
                if isinstance(meta, Shape):
                    if shape is not None:
                        raise unsupported("declares Shape twice")
                    shape = meta.dims
            ann = ann.__origin__
            continue
        if origin is typing.Union or origin is types.UnionType:
            args = [a for a in get_args(ann) if a is not type(None)]
            if len(args) != 1 or len(get_args(ann)) != 2:
                raise unsupported("is a union; only X | None is supported")
            optional = True
            ann = args[0]
            continue
        break

    dtype: np.dtype | None = None
    item: FieldSpec | None = None
    sample_type: type[PackableSample] | None = None
    if ann is Any:
        kind = FieldKind.ANY
    elif ann in _SCALARS:
        kind = _SCALARS[ann]
    elif ann is np.ndarray or origin is np.ndarray:
        kind = FieldKind.ARRAY
        dtype = _array_dtype(get_args(ann), name, top)
    elif ann is list or origin is list:
        params = get_args(ann)
        item = spec_from_annotation(f"{name}[]", params[0], _top=top) if params else None
        kind = FieldKind.LIST
    elif ann is dict or origin is dict:
        params = get_args(ann)
        if params and params[0] is not str:
            raise unsupported("has non-str keys; only dict[str, ...] is supported")
        item = spec_from_annotation(f"{name}{{}}", params[1], _top=top) if params else None
        kind = FieldKind.DICT
    elif _is_packable(ann):
        kind, sample_type = FieldKind.SAMPLE, ann
    elif _looks_like_a_sample(ann):
        raise unsupported(
            "is a class that is not @packable: decorate it with @atdata.packable first "
            "(a sample type cannot contain itself)"
        )
    else:
        raise unsupported()
    if shape is not None and kind is not FieldKind.ARRAY:
        raise unsupported("puts a Shape on a non-array type")
    return FieldSpec(
        name=name,
        kind=kind,
        optional=optional,
        dtype=dtype,
        shape=shape,
        item=item,
        sample_type=sample_type,
        annotation=top,
    )


def _fmt(ann: Any) -> str:
    if isinstance(ann, type) and get_origin(ann) is None:
        return ann.__qualname__
    return repr(ann)


def parse_fields(cls: type, localns: dict[str, Any] | None = None) -> tuple[FieldSpec, ...]:
    """FieldSpecs of a dataclass, in declaration order (postponed annotations resolved)."""
    module = sys.modules.get(cls.__module__)
    globalns = dict(vars(module)) if module else {}
    local = dict(localns or {})
    local.setdefault(cls.__name__, cls)
    try:
        hints = typing.get_type_hints(cls, globalns=globalns, localns=local, include_extras=True)
    except Exception:
        hints = None
    specs = []
    for f in dataclasses.fields(cls):
        if hints is not None and f.name in hints:
            ann = hints[f.name]
        else:
            ann = f.type
            if isinstance(ann, str):
                try:
                    ann = eval(ann, globalns, local)  # annotations are code
                except Exception as exc:
                    raise FieldTypeError(
                        f"field {f.name!r}: cannot resolve annotation {f.type!r}: {exc}"
                    ) from exc
        specs.append(spec_from_annotation(f.name, ann))
    return tuple(specs)


# --- converters -------------------------------------------------------------------------

Checker = Callable[[Any], Any]
Decoder = Callable[[Any, bool], Any]


def _dtype_ok(dt: np.dtype, want: np.dtype) -> bool:
    """Same dtype up to byte order (a big-endian float32 is still a float32)."""
    return dt == want or (dt.byteorder in "<>" and dt.newbyteorder("=") == want)


def _shape_ok(shape: tuple[int, ...], want: tuple[int | None, ...]) -> bool:
    if len(shape) != len(want):
        return False
    return all(w is None or w == s for s, w in zip(shape, want, strict=True))


def _dtype_text(dt: np.dtype) -> str:
    """`float32`, `uint8`, ... (byte order does not matter here); the wire form otherwise."""
    return dt.name if dt.kind in "biufcmM" else dt.str


def _array_problem(spec: FieldSpec, arr: np.ndarray) -> str | None:
    if spec.dtype is not None and not _dtype_ok(arr.dtype, spec.dtype):
        return f"dtype {_dtype_text(arr.dtype)} is not the declared {_dtype_text(spec.dtype)}"
    if spec.shape is not None and not _shape_ok(arr.shape, spec.shape):
        want = "(" + ", ".join("?" if d is None else str(d) for d in spec.shape) + ")"
        return f"shape {arr.shape} does not match the declared {want}"
    return None


def _bad_value(spec: FieldSpec, what: str) -> SampleValueError:
    return SampleValueError(f"field {spec.name!r}: {what}")


def _tname(v: Any) -> str:
    return "None/nil (the field is not optional)" if v is None else type(v).__name__


def make_checker(spec: FieldSpec) -> Checker:
    """Construction-time check/coercion of a value for ``spec`` (raises SampleValueError)."""
    base = _make_base_checker(spec)
    if spec.kind is FieldKind.ANY:  # Any includes None
        return base
    if not spec.optional:

        def check_required(v: Any) -> Any:
            if v is None:
                raise _bad_value(spec, "is None but the field is not optional")
            return base(v)

        return check_required

    def check_optional(v: Any) -> Any:
        return None if v is None else base(v)

    return check_optional


def _make_base_checker(spec: FieldSpec) -> Checker:
    kind = spec.kind
    if kind is FieldKind.ARRAY:

        def check_array(v: Any) -> Any:
            if type(v) is not np.ndarray:
                if isinstance(v, bytes | bytearray | memoryview):
                    try:
                        v = decode_array(v)
                    except DecodeError as exc:
                        raise _bad_value(spec, exc.reason) from exc
                elif isinstance(v, np.ndarray | np.generic):
                    v = np.asarray(v)
                else:
                    raise _bad_value(spec, f"expected a numpy.ndarray, got {_tname(v)}")
            try:
                check_array_dtype(v.dtype)
            except SampleValueError as exc:
                raise _bad_value(spec, str(exc)) from exc
            problem = _array_problem(spec, v)
            if problem:
                raise _bad_value(spec, problem)
            return v

        return check_array
    if kind is FieldKind.STR:

        def check_str(v: Any) -> Any:
            if isinstance(v, str):
                return str(v)
            raise _bad_value(spec, f"expected str, got {_tname(v)}")

        return check_str
    if kind is FieldKind.BYTES:

        def check_bytes(v: Any) -> Any:
            if isinstance(v, bytes | bytearray | memoryview):
                return bytes(v)
            raise _bad_value(spec, f"expected bytes, got {_tname(v)}")

        return check_bytes
    if kind is FieldKind.INT:

        def check_int(v: Any) -> Any:
            if isinstance(v, bool | np.bool_) or not isinstance(v, int | np.integer):
                raise _bad_value(spec, f"expected int, got {_tname(v)}")
            v = int(v)
            if not INT_MIN <= v <= INT_MAX:
                raise _bad_value(spec, f"int {v} is outside the storable range [-2**63, 2**64-1]")
            return v

        return check_int
    if kind is FieldKind.FLOAT:

        def check_float(v: Any) -> Any:
            if isinstance(v, bool | np.bool_) or not isinstance(
                v, float | int | np.floating | np.integer
            ):
                raise _bad_value(spec, f"expected float, got {_tname(v)}")
            return float(v)

        return check_float
    if kind is FieldKind.BOOL:

        def check_bool(v: Any) -> Any:
            if isinstance(v, bool | np.bool_):
                return bool(v)
            raise _bad_value(spec, f"expected bool, got {_tname(v)}")

        return check_bool
    if kind is FieldKind.LIST:
        item = make_checker(spec.item) if spec.item is not None else None

        def check_list(v: Any) -> Any:
            if not isinstance(v, list | tuple):
                raise _bad_value(spec, f"expected list, got {_tname(v)}")
            if item is None:
                return list(v)
            out = []
            for i, x in enumerate(v):
                try:
                    out.append(item(x))
                except SampleValueError as exc:
                    raise _bad_value(spec, f"item {i}: {exc}") from exc
            return out

        return check_list
    if kind is FieldKind.DICT:
        value = make_checker(spec.item) if spec.item is not None else None

        def check_dict(v: Any) -> Any:
            if not isinstance(v, dict):
                raise _bad_value(spec, f"expected dict, got {_tname(v)}")
            for k in v:
                if not isinstance(k, str):
                    raise _bad_value(spec, f"dict key {k!r} is not a str")
            if value is None:
                return v
            out = {}
            for k, x in v.items():
                try:
                    out[k] = value(x)
                except SampleValueError as exc:
                    raise _bad_value(spec, f"key {k!r}: {exc}") from exc
            return out

        return check_dict
    if kind is FieldKind.SAMPLE:
        st = spec.sample_type
        assert st is not None

        def check_sample(v: Any) -> Any:
            if isinstance(v, st):
                return v
            if isinstance(v, dict):
                try:
                    return st.from_data(v)
                except DecodeError as exc:
                    raise _bad_value(spec, str(exc)) from exc
            raise _bad_value(spec, f"expected {st.__name__}, got {_tname(v)}")

        return check_sample
    return lambda v: v  # ANY


def _bad_wire(spec: FieldSpec, what: str) -> DecodeError:
    return DecodeError(what, field=spec.name)


def make_decoder(spec: FieldSpec) -> Decoder:
    """Wire value -> field value for ``spec`` (raises DecodeError naming the field)."""
    base = make_base_decoder(spec)
    if spec.kind is FieldKind.ANY:  # Any includes None
        return base

    def decode(v: Any, writable: bool) -> Any:
        if v is None:
            if spec.optional:
                return None
            raise _bad_wire(spec, "value is nil but the field is not optional")
        return base(v, writable)

    return decode


def make_base_decoder(spec: FieldSpec) -> Decoder:
    """Like :func:`make_decoder` for a value known not to be nil (nil is refused)."""
    kind = spec.kind
    if kind is FieldKind.ARRAY:
        declared = spec.dtype is not None or spec.shape is not None

        def dec_array(v: Any, w: bool) -> Any:
            t = type(v)
            if t is memoryview or t is bytes:
                try:
                    v = decode_array(v, w)
                except DecodeError as exc:
                    raise _bad_wire(spec, exc.reason) from None
            elif t is np.ndarray:
                if w and not v.flags.writeable:
                    v = v.copy()
            else:
                raise _bad_wire(spec, f"expected array bytes, got {_tname(v)}")
            if declared:
                problem = _array_problem(spec, v)
                if problem:
                    raise _bad_wire(spec, problem)
            return v

        return dec_array
    if kind is FieldKind.STR:
        return _exact(spec, str)
    if kind is FieldKind.INT:
        return _exact(spec, int)
    if kind is FieldKind.BOOL:
        return _exact(spec, bool)
    if kind is FieldKind.FLOAT:

        def dec_float(v: Any, w: bool) -> Any:
            t = type(v)
            if t is float:
                return v
            if t is int:  # msgpack writers store integral floats as ints
                return float(v)
            raise _bad_wire(spec, f"expected float, got {_tname(v)}")

        return dec_float
    if kind is FieldKind.BYTES:

        def dec_bytes(v: Any, w: bool) -> Any:
            t = type(v)
            if t is bytes:
                return v
            if t is memoryview or t is bytearray:
                return bytes(v)
            raise _bad_wire(spec, f"expected bytes, got {_tname(v)}")

        return dec_bytes
    if kind is FieldKind.LIST:
        item = make_decoder(spec.item) if spec.item is not None else None

        def dec_list(v: Any, w: bool) -> Any:
            if type(v) is not list:
                raise _bad_wire(spec, f"expected list, got {_tname(v)}")
            if item is None:
                return v
            return [item(x, w) for x in v]

        return dec_list
    if kind is FieldKind.DICT:
        value = make_decoder(spec.item) if spec.item is not None else None

        def dec_dict(v: Any, w: bool) -> Any:
            if type(v) is not dict:
                raise _bad_wire(spec, f"expected map, got {_tname(v)}")
            for k in v:
                if type(k) is not str:
                    raise _bad_wire(spec, f"map key {k!r} is not a string")
            if value is None:
                return v
            return {k: value(x, w) for k, x in v.items()}

        return dec_dict
    if kind is FieldKind.SAMPLE:
        st = spec.sample_type
        assert st is not None

        def dec_sample(v: Any, w: bool) -> Any:
            if type(v) is dict:
                try:
                    return st.__atdata_decode__(v, w)
                except DecodeError as exc:
                    inner = f"{spec.name}.{exc.field}" if exc.field else spec.name
                    raise DecodeError(exc.reason, field=inner) from None
            if isinstance(v, st):
                return v
            raise _bad_wire(spec, f"expected a map for {st.__name__}, got {_tname(v)}")

        return dec_sample

    def dec_any(v: Any, w: bool) -> Any:
        return bytes(v) if type(v) is memoryview else v

    return dec_any


def _exact(spec: FieldSpec, t: type) -> Decoder:
    def dec_exact(v: Any, w: bool) -> Any:
        if type(v) is t:
            return v
        raise _bad_wire(spec, f"expected {t.__name__}, got {_tname(v)}")

    return dec_exact


Encoder = Callable[[Any], Any]


def make_encoder(spec: FieldSpec) -> Encoder | None:
    """Field value -> wire value, or None when the value goes to msgpack as it is.

    Arrays need no encoder here: :func:`atdata._codec.pack_sample` encodes them where they sit.
    """
    if spec.kind is FieldKind.SAMPLE:
        st = spec.sample_type
        assert st is not None

        def enc_sample(v: Any) -> Any:
            return None if v is None else st.__atdata_encode__(v)

        return enc_sample
    if spec.kind in (FieldKind.LIST, FieldKind.DICT) and spec.item is not None:
        inner = make_encoder(spec.item)
        if inner is None:
            return None
        if spec.kind is FieldKind.LIST:
            return lambda v: None if v is None else [inner(x) for x in v]
        return lambda v: None if v is None else {k: inner(x) for k, x in v.items()}
    return None
