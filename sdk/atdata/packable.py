"""``@atdata.packable``: typed sample classes stored as one msgpack map per sample.

Decoration resolves every annotation once (see :mod:`atdata._fields`) and compiles per-class
encode/decode functions, so the per-sample path does no annotation work: decoding a sample is
one message parse plus one inlined expression per field.

Wire format (atdata 0.7 compatible): a msgpack map from field name to value in declaration
order, every field present (None as nil); NDArray fields as array bins (see
:mod:`atdata._codec`); nested packable samples as nested maps.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import re
import sys
import uuid
from collections.abc import Callable
from typing import Any, TypeVar, cast, dataclass_transform, overload

import msgpack
import numpy as np

from ._codec import (
    ALIGN_MIN_BYTES,
    decode_array,
    encode_array,
    msgpack_default,
    pack_aligned,
    unpack_message,
)
from ._fields import (
    FieldKind,
    FieldSpec,
    PackableSample,
    make_base_decoder,
    make_checker,
    make_decoder,
    make_encoder,
    parse_fields,
)
from .errors import DecodeError, FieldTypeError, SampleValueError, SchemaError

__all__ = ["PackableSample", "as_packable", "is_packable", "packable", "sample_fields"]

T = TypeVar("T", bound=type)

SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$"
)
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,127}$")

_MISSING = dataclasses.MISSING
_set = object.__setattr__
_new = object.__new__


def is_packable(cls_or_obj: object) -> bool:
    """True for a class made by ``@packable`` or an instance of one."""
    cls = cls_or_obj if isinstance(cls_or_obj, type) else type(cls_or_obj)
    return "__atdata_fields__" in getattr(cls, "__dict__", {})


def as_packable(cls_or_obj: object) -> type[PackableSample]:
    """The packable class of ``cls_or_obj`` (a class or an instance); TypeError otherwise."""
    if not is_packable(cls_or_obj):
        raise TypeError(f"{cls_or_obj!r} is not a @packable sample class")
    return cast(
        "type[PackableSample]", cls_or_obj if isinstance(cls_or_obj, type) else type(cls_or_obj)
    )


def sample_fields(cls_or_obj: object) -> tuple[FieldSpec, ...]:
    """The FieldSpecs of a packable class (or instance), in declaration order."""
    return as_packable(cls_or_obj).__atdata_fields__


def _add_members(target: object, **members: object) -> None:
    """Attributes set at run time (a class made packable, a function's own attributes)."""
    for name, value in members.items():
        setattr(target, name, value)


@overload
def packable(cls: T, *, name: str | None = None, version: str = "1.0.0") -> T: ...
@overload
def packable(
    cls: None = None, *, name: str | None = None, version: str = "1.0.0"
) -> Callable[[T], T]: ...


@dataclass_transform()
def packable(
    cls: T | None = None, *, name: str | None = None, version: str = "1.0.0"
) -> T | Callable[[T], T]:
    """Make ``cls`` a dataclass sample with ``packed``, ``from_bytes``, ``as_wds``, ``from_data``.

    Works on plain classes and on existing dataclasses. ``name`` (default: the class name) and
    ``version`` (semantic version) identify the sample's schema. Unsupported annotations raise
    :class:`FieldTypeError` naming the field.
    """
    caller = sys._getframe(1)
    localns = dict(caller.f_locals) if caller.f_code.co_name != "<module>" else {}
    if cls is None:
        return lambda c: _make_packable(c, name, version, localns)
    return _make_packable(cls, name, version, localns)


# `atdata.packable.is_packable(...)`: the package attribute `atdata.packable` is this function.
_add_members(packable, is_packable=is_packable, sample_fields=sample_fields)


def _make_packable(cls: T, name: str | None, version: str, localns: dict[str, Any]) -> T:
    if not isinstance(cls, type):
        raise TypeError(f"@packable applies to classes, not {cls!r}")
    sname = cls.__name__ if name is None else name
    if not NAME.match(sname):
        raise SchemaError(f"invalid sample type name {sname!r}")
    if not isinstance(version, str) or not SEMVER.match(version):
        raise SchemaError(f"version {version!r} of {sname} is not a semantic version (1.2.3)")

    doc = cls.__dict__.get("__doc__")  # before dataclass() invents one from the signature
    user_hook = _user_post_init(cls)
    holder: list[Callable[[Any], None]] = []

    def __post_init__(self: Any) -> None:
        holder[0](self)

    _add_members(__post_init__, _atdata_user=user_hook)
    if "__dataclass_fields__" in cls.__dict__:
        had_hook = hasattr(cls, "__post_init__")
        _add_members(cls, __post_init__=__post_init__)
        if not had_hook:  # the generated __init__ does not call __post_init__: wrap it
            init = inspect.getattr_static(cls, "__init__")

            @functools.wraps(init)
            def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
                init(self, *args, **kwargs)
                holder[0](self)

            _add_members(cls, __init__=__init__)
    else:
        _add_members(cls, __post_init__=__post_init__)
        dataclasses.dataclass(cls)  # in place

    specs = parse_fields(cls, localns)
    if not specs:  # the schema lexicon needs at least one field
        raise FieldTypeError(
            f"{cls.__name__} has no fields: a sample type needs at least one annotated field"
        )
    _add_members(
        cls,
        __atdata_fields__=specs,
        __atdata_name__=sname,
        __atdata_version__=version,
        __atdata_description__=inspect.cleandoc(doc) if doc else None,
    )
    holder.append(_compile_check(specs, user_hook))
    encode, pack = _compile_encode(cls, specs)
    decode, from_bytes = _compile_decode(cls, specs, user_hook)
    _add_members(
        cls, __atdata_encode__=staticmethod(encode), __atdata_decode__=staticmethod(decode)
    )

    def from_data(kls: type, d: dict[str, Any]) -> Any:
        """Build a sample from an unpacked message dict (wire values or native ones)."""
        if type(d) is not dict:
            raise DecodeError(f"expected a dict of fields, got {type(d).__name__}")
        return decode(d, False)

    def packed(self: Any) -> bytes:
        """The sample's msgpack message."""
        return pack(self)

    def as_wds(self: Any) -> dict[str, Any]:
        """``{"__key__": <fresh unique key>, "msgpack": <message>}`` for a WebDataset writer."""
        return {"__key__": uuid.uuid4().hex, "msgpack": pack(self)}

    _add_members(
        cls,
        from_bytes=classmethod(from_bytes),
        from_data=classmethod(from_data),
        from_arrow=classmethod(_from_arrow),
        from_pandas=classmethod(_from_pandas),
        packed=property(packed),
        as_wds=property(as_wds),
    )
    return cls


def _from_arrow(cls: type, table: Any) -> list[Any]:
    """Samples from a ``pyarrow.Table`` or ``RecordBatch`` (e.g. a Ray Data batch), one per row.

    The inverse of the column mapping of ``Dataset.to_ray()`` (see :mod:`atdata._columns`).
    """
    from ._columns import table_to_samples

    return table_to_samples(table, cls)


def _from_pandas(cls: type, df: Any) -> list[Any]:
    """Samples from a pandas DataFrame (e.g. a ``to_dask()`` partition), one per row."""
    from ._columns import frame_to_samples

    return frame_to_samples(df, cls)


def _user_post_init(cls: type) -> Callable[[Any], None] | None:
    """The class's own ``__post_init__`` (or an inherited user one), to run after checks."""
    hook = getattr(cls, "__post_init__", None)
    if hook is None:
        return None
    if hasattr(hook, "_atdata_user"):  # ours, inherited from a packable base
        return hook._atdata_user
    return hook


def _compile_check(
    specs: tuple[FieldSpec, ...], user_hook: Callable[[Any], None] | None
) -> Callable[[Any], None]:
    """The construction check: coerce/validate every field, then run the user's hook."""
    fast = {FieldKind.STR: str, FieldKind.FLOAT: float, FieldKind.BOOL: bool}
    checks = tuple(
        (s.name, fast.get(s.kind) if not s.optional else None, make_checker(s)) for s in specs
    )

    def check(self: Any) -> None:
        for name, exact, fn in checks:
            v = getattr(self, name)
            if type(v) is not exact:
                nv = fn(v)
                if nv is not v:
                    _set(self, name, nv)
        if user_hook is not None:
            user_hook(self)

    return check


def _compile(src: str, env: dict[str, Any], fn: str) -> Callable[..., Any]:
    ns: dict[str, Any] = {}
    # A module name for the functions: without one, pickling a class by value (cloudpickle,
    # a class from __main__ sent to Ray or Dask workers) searches every imported module for
    # each of them (~4 ms a function, per task).
    env.setdefault("__name__", __name__)
    exec(compile(src, f"<atdata {fn}>", "exec"), env, ns)  # generated from specs
    return ns[fn]


def _compile_encode(
    cls: type, specs: tuple[FieldSpec, ...]
) -> tuple[Callable[[Any], dict[str, Any]], Callable[[Any], bytes]]:
    """``encode(obj) -> {field: wire value}`` and ``pack(obj) -> message bytes``.

    ``pack`` encodes small top-level arrays itself and hands the map to msgpack in one call;
    only when a large multi-byte array is present does it take the aligning writer.
    """
    env: dict[str, Any] = {
        "_nd": np.ndarray,
        "_enc": encode_array,
        "_AMIN": ALIGN_MIN_BYTES,
        "_aligned": pack_aligned,
        "_packb": msgpack.packb,
        "_default": msgpack_default,
        "_pack_error": _pack_error,
    }
    items, pre, pack_items = [], ["    big = False"], []
    for i, s in enumerate(specs):
        enc = make_encoder(s)
        value = f"obj.{s.name}" if enc is None else f"_e{i}(obj.{s.name})"
        if enc is not None:
            env[f"_e{i}"] = enc
        items.append(f"{s.name!r}: {value}")
        if s.is_array:
            pre += [f"    a{i} = {value}", f"    if type(a{i}) is _nd:"]
            pre += [f"        if a{i}.nbytes >= _AMIN and a{i}.dtype.alignment > 1:"]
            pre += ["            big = True", "        else:", f"            a{i} = _enc(a{i})"]
            pack_items.append(f"{s.name!r}: a{i}")
        else:
            pack_items.append(items[-1])
    encode = _compile(f"def encode(obj):\n    return {{{', '.join(items)}}}\n", env, "encode")
    src = "\n".join(
        [
            "def pack(obj):",
            *pre,
            f"    d = {{{', '.join(pack_items)}}}",
            "    try:",
            "        if big:",
            "            return _aligned(d)",
            "        return _packb(d, default=_default)",
            "    except (TypeError, ValueError, OverflowError) as exc:",
            "        _pack_error(d, exc)",
        ]
    )
    return encode, _compile(src + "\n", env, "pack")


def _pack_error(d: dict[str, Any], exc: Exception) -> None:
    """Re-raise a msgpack failure as a SampleValueError naming the field at fault."""
    for name, v in d.items():
        try:
            msgpack.packb(v, default=msgpack_default)
        except (TypeError, ValueError, OverflowError) as field_exc:
            raise SampleValueError(f"field {name!r}: cannot be stored: {field_exc}") from exc
    raise exc


def _compile_decode(
    cls: type, specs: tuple[FieldSpec, ...], user_hook: Callable[[Any], None] | None
) -> tuple[Callable[[dict[str, Any], bool], Any], Callable[..., Any]]:
    """``decode(message dict, writable) -> sample`` and ``from_bytes(cls, b, *, writable)``.

    Both bypass ``__init__``: each field's value is checked by one inlined expression (an exact
    type test for scalars, a direct call of the field's decoder otherwise). Messages with
    missing or unknown fields take the slow path, which applies defaults or raises.
    """
    names = tuple(s.name for s in specs)
    has_dict = cls.__dictoffset__ != 0
    exact = {FieldKind.STR: "str", FieldKind.INT: "int", FieldKind.BOOL: "bool"}
    exact[FieldKind.FLOAT] = "float"
    env: dict[str, Any] = {
        "_new": _new,
        "_set": _set,
        "_cls": cls,
        "_hook": user_hook,
        "_slow": None,
        "_unpack": unpack_message,
    }
    fetch, safe, fast = [], [], []
    for i, s in enumerate(specs):
        fetch.append(f"        f{i} = m[{s.name!r}]")
        if s.kind is FieldKind.ANY:
            env[f"_d{i}"] = make_decoder(s)
            safe.append(f"_d{i}(f{i}, w)")
            fast.append(safe[-1])
            continue
        env[f"_d{i}"] = make_base_decoder(s)  # refuses nil itself
        t = exact.get(s.kind)
        v = f"f{i} if type(f{i}) is {t} else _d{i}(f{i}, w)" if t else f"_d{i}(f{i}, w)"
        safe.append(f"None if f{i} is None else {v}" if s.optional else v)
        if s.is_array and s.dtype is None and s.shape is None:
            # Straight to the codec; a failure re-runs the named decoders to say which field.
            v = f"_da(f{i}, w) if type(f{i}) is bytes else _d{i}(f{i}, w)"
        fast.append(f"None if f{i} is None else {v}" if s.optional else v)
    env["_da"] = decode_array
    env["_DecodeError"] = DecodeError

    def body(values: list[str], named: bool) -> list[str]:
        out = [f"    if len(m) != {len(specs)}:", "        return _slow(m, w)", "    try:"]
        out += [
            *fetch,
            "    except KeyError:",
            "        return _slow(m, w)",
            "    obj = _new(_cls)",
        ]
        ind = "    " if named else "        "
        if not named:
            out.append("    try:")
        if has_dict:
            items = ", ".join(f"{n!r}: {v}" for n, v in zip(names, values, strict=True))
            out.append(f"{ind}_set(obj, '__dict__', {{{items}}})")
        else:
            out += [f"{ind}_set(obj, {n!r}, {v})" for n, v in zip(names, values, strict=True)]
        if not named:
            out += ["    except _DecodeError as exc:", "        if exc.field is None:"]
            out += ["            _named(m, w)", "        raise"]
        if user_hook is not None:
            out.append("    _hook(obj)")
        out.append("    return obj")
        return out

    env["_named"] = _compile(
        "\n".join(["def named(m, w):", *body(safe, True)]) + "\n", env, "named"
    )
    decode = _compile("\n".join(["def decode(m, w):", *body(fast, False)]) + "\n", env, "decode")
    head = ["def from_bytes(kls, b, *, writable=False):", "    m = _unpack(b)", "    w = writable"]
    from_bytes = _compile("\n".join([*head, *body(fast, False)]) + "\n", env, "from_bytes")
    from_bytes.__doc__ = (
        "Decode one sample message; arrays are read-only views unless ``writable`` (copies"
        " where unaligned; ``writable=None``: views even then, for callers that copy them)."
    )

    fields = {f.name: f for f in dataclasses.fields(cls)}

    def slow(m: dict[str, Any], w: bool) -> Any:
        """Missing fields take their defaults (or fail); unknown fields fail."""
        for k in m:
            if k not in fields:
                raise DecodeError(f"unknown field for {cls.__name__}", field=str(k))
        full: dict[str, Any] = {}
        for name in names:
            if name in m:
                full[name] = m[name]
                continue
            f = fields[name]
            if f.default is not _MISSING:
                full[name] = f.default
            elif f.default_factory is not _MISSING:
                full[name] = f.default_factory()
            else:
                raise DecodeError(f"missing field of {cls.__name__}", field=name)
        return decode(full, w)

    env["_slow"] = slow
    return decode, from_bytes
