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
from typing import Any, TypeVar, overload

from ._codec import pack_sample, unpack_message
from ._fields import FieldKind, FieldSpec, make_checker, make_decoder, make_encoder, parse_fields
from .errors import DecodeError, SchemaError

__all__ = ["is_packable", "packable", "sample_fields"]

T = TypeVar("T", bound=type)

SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$"
)
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,127}$")

_MISSING = dataclasses.MISSING
_set = object.__setattr__
_new = object.__new__


def is_packable(cls_or_obj: Any) -> bool:
    """True for a class made by ``@packable`` or an instance of one."""
    cls = cls_or_obj if isinstance(cls_or_obj, type) else type(cls_or_obj)
    return "__atdata_fields__" in getattr(cls, "__dict__", {})


def sample_fields(cls_or_obj: Any) -> tuple[FieldSpec, ...]:
    """The FieldSpecs of a packable class (or instance), in declaration order."""
    if not is_packable(cls_or_obj):
        raise TypeError(f"{cls_or_obj!r} is not a @packable sample class")
    cls = cls_or_obj if isinstance(cls_or_obj, type) else type(cls_or_obj)
    return cls.__atdata_fields__


@overload
def packable(cls: T, *, name: str | None = None, version: str = "1.0.0") -> T: ...
@overload
def packable(
    cls: None = None, *, name: str | None = None, version: str = "1.0.0"
) -> Callable[[T], T]: ...


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


packable.is_packable = is_packable  # type: ignore[attr-defined]
packable.sample_fields = sample_fields  # type: ignore[attr-defined]


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

    __post_init__._atdata_user = user_hook  # type: ignore[attr-defined]
    if "__dataclass_fields__" in cls.__dict__:
        had_hook = hasattr(cls, "__post_init__")
        cls.__post_init__ = __post_init__  # type: ignore[attr-defined]
        if not had_hook:  # the generated __init__ does not call __post_init__: wrap it
            init = cls.__init__

            @functools.wraps(init)
            def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
                init(self, *args, **kwargs)
                holder[0](self)

            cls.__init__ = __init__  # type: ignore[misc]
    else:
        cls.__post_init__ = __post_init__  # type: ignore[attr-defined]
        cls = dataclasses.dataclass(cls)

    specs = parse_fields(cls, localns)
    cls.__atdata_fields__ = specs  # type: ignore[attr-defined]
    cls.__atdata_name__ = sname  # type: ignore[attr-defined]
    cls.__atdata_version__ = version  # type: ignore[attr-defined]
    cls.__atdata_description__ = inspect.cleandoc(doc) if doc else None  # type: ignore[attr-defined]
    holder.append(_compile_check(specs, user_hook))
    encode = _compile_encode(cls, specs)
    decode = _compile_decode(cls, specs, user_hook)
    cls.__atdata_encode__ = staticmethod(encode)  # type: ignore[attr-defined]
    cls.__atdata_decode__ = staticmethod(decode)  # type: ignore[attr-defined]

    def from_bytes(kls: type, b: bytes | bytearray | memoryview, *, writable: bool = False) -> Any:
        """Decode one sample message; arrays are read-only views unless ``writable``."""
        return decode(unpack_message(b), writable)

    def from_data(kls: type, d: dict[str, Any]) -> Any:
        """Build a sample from an unpacked message dict (wire values or native ones)."""
        if type(d) is not dict:
            raise DecodeError(f"expected a dict of fields, got {type(d).__name__}")
        return decode(d, False)

    def packed(self: Any) -> bytes:
        """The sample's msgpack message."""
        return pack_sample(encode(self))

    def as_wds(self: Any) -> dict[str, Any]:
        """``{"__key__": <fresh unique key>, "msgpack": <message>}`` for a WebDataset writer."""
        return {"__key__": uuid.uuid4().hex, "msgpack": pack_sample(encode(self))}

    cls.from_bytes = classmethod(from_bytes)  # type: ignore[attr-defined]
    cls.from_data = classmethod(from_data)  # type: ignore[attr-defined]
    cls.packed = property(packed)  # type: ignore[attr-defined]
    cls.as_wds = property(as_wds)  # type: ignore[attr-defined]
    return cls


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
    exec(compile(src, f"<atdata {fn}>", "exec"), env, ns)  # noqa: S102 - generated from specs
    return ns[fn]


def _compile_encode(cls: type, specs: tuple[FieldSpec, ...]) -> Callable[[Any], dict[str, Any]]:
    """``obj -> {field: wire value}`` in declaration order (arrays left for pack_sample)."""
    env: dict[str, Any] = {}
    items = []
    for i, s in enumerate(specs):
        enc = make_encoder(s)
        if enc is None:
            items.append(f"{s.name!r}: obj.{s.name}")
        else:
            env[f"_e{i}"] = enc
            items.append(f"{s.name!r}: _e{i}(obj.{s.name})")
    src = f"def encode(obj):\n    return {{{', '.join(items)}}}\n"
    return _compile(src, env, "encode")


def _compile_decode(
    cls: type, specs: tuple[FieldSpec, ...], user_hook: Callable[[Any], None] | None
) -> Callable[[dict[str, Any], bool], Any]:
    """``(message dict, writable) -> sample``, bypassing __init__ (values checked inline)."""
    decoders = [make_decoder(s) for s in specs]
    names = tuple(s.name for s in specs)
    has_dict = cls.__dictoffset__ != 0
    exact = {FieldKind.STR: "str", FieldKind.INT: "int", FieldKind.BOOL: "bool"}
    env: dict[str, Any] = {
        "_new": _new,
        "_set": _set,
        "_cls": cls,
        "_hook": user_hook,
        "_slow": None,
    }
    fetch, values = [], []
    for i, s in enumerate(specs):
        env[f"_d{i}"] = decoders[i]
        fetch.append(f"        f{i} = m[{s.name!r}]")
        t = exact.get(s.kind) if not s.optional else None
        if t is None and s.kind is FieldKind.FLOAT and not s.optional:
            t = "float"
        values.append(f"f{i} if type(f{i}) is {t} else _d{i}(f{i}, w)" if t else f"_d{i}(f{i}, w)")
    lines = ["def decode(m, w):", "    try:", *fetch, "    except KeyError:"]
    lines += ["        return _slow(m, w)", f"    if len(m) != {len(specs)}:"]
    lines += ["        return _slow(m, w)", "    obj = _new(_cls)"]
    if has_dict:
        body = ", ".join(f"{n!r}: {v}" for n, v in zip(names, values, strict=True))
        lines.append(f"    _set(obj, '__dict__', {{{body}}})")
    else:
        lines += [f"    _set(obj, {n!r}, {v})" for n, v in zip(names, values, strict=True)]
    if user_hook is not None:
        lines.append("    _hook(obj)")
    lines.append("    return obj")
    fast = _compile("\n".join(lines) + "\n", env, "decode")

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
        return fast(full, w)

    env["_slow"] = slow
    return fast
