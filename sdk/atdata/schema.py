"""Sample types <-> ``io.atdata.schema`` records (lexicon ``lexicons/io/atdata/schema.json``).

``schema_of(T)`` describes a packable class as a record; ``type_from_schema(record)`` builds a
packable class from one at run time, so a dataset can be read without its author's code. The
round trip is exact: ``schema_of(type_from_schema(r))`` gives back ``r``'s name, version,
description, fields and nested types.

Records cannot hold floats or nulls in arrays, so a declared shape is a list of integers with
-1 for a dimension that varies; nested sample types are defined inline in ``types`` and named
from their fields.
"""

from __future__ import annotations

import datetime as _dt
import json
import keyword
import re
import threading
from collections.abc import Mapping
from typing import Annotated, Any, Optional

import numpy as np
from numpy.typing import NDArray

from ._fields import FieldKind, FieldSpec, Shape
from .display import type_text
from .errors import SchemaError
from .packable import (
    NAME,
    SEMVER,
    PackableSample,
    _add_members,
    as_packable,
    is_packable,
    packable,
    sample_fields,
)
from .records import SCHEMA as SCHEMA_NSID

__all__ = [
    "SCHEMA_NSID",
    "schema_differences",
    "schema_matches",
    "schema_of",
    "type_from_schema",
]

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_KINDS = {k.value: k for k in FieldKind}
_SCALAR_TYPES: dict[FieldKind, type] = {
    FieldKind.STR: str,
    FieldKind.BYTES: bytes,
    FieldKind.INT: int,
    FieldKind.FLOAT: float,
    FieldKind.BOOL: bool,
}


def _now() -> str:
    now = _dt.datetime.now(_dt.UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


# --- type -> record -----------------------------------------------------------------------


def schema_of(sample_type: type, *, created_at: str | None = None) -> dict[str, Any]:
    """The ``io.atdata.schema`` record describing a packable class."""
    if not is_packable(sample_type):
        raise TypeError(f"{sample_type!r} is not a @packable sample class")
    nested: dict[str, tuple[type, dict[str, Any]]] = {}
    record: dict[str, Any] = {"$type": SCHEMA_NSID}
    record.update(_type_entry(sample_type, nested))
    if nested:
        record["types"] = [entry for _, entry in nested.values()]
    record["createdAt"] = created_at or _now()
    return record


def _type_entry(klass: type, nested: dict[str, tuple[type, dict[str, Any]]]) -> dict[str, Any]:
    cls = as_packable(klass)
    entry: dict[str, Any] = {"name": cls.__atdata_name__, "version": cls.__atdata_version__}
    if cls.__atdata_description__:
        entry["description"] = cls.__atdata_description__
    entry["fields"] = [{"name": s.name, "type": _field_type(s, nested)} for s in sample_fields(cls)]
    return entry


def _field_type(spec: FieldSpec, nested: dict[str, tuple[type, dict[str, Any]]]) -> dict[str, Any]:
    t: dict[str, Any] = {"kind": spec.kind.value}
    if spec.optional:
        t["optional"] = True
    if spec.dtype is not None:
        t["dtype"] = spec.dtype.str
    if spec.shape is not None:
        t["shape"] = [-1 if d is None else d for d in spec.shape]
    if spec.item is not None:
        t["item"] = _field_type(spec.item, nested)
    if spec.sample_type is not None:
        st = spec.sample_type
        name = as_packable(st).__atdata_name__
        if name not in nested:
            entry = _type_entry(st, nested)
            nested.setdefault(name, (st, entry))
        elif nested[name][0] is not st and _type_entry(st, {}) != _type_entry(nested[name][0], {}):
            raise SchemaError(f"two different nested sample types are both named {name!r}")
        t["sample"] = name
    return t


# --- record -> type -----------------------------------------------------------------------


def type_from_schema(record: Mapping[str, Any]) -> type[PackableSample]:
    """Build a packable class from an ``io.atdata.schema`` record (raises SchemaError).

    The same record content always gives the same class (cached), and instances of generated
    classes pickle by value (schema + message), since their class cannot be imported by name.
    """
    if not isinstance(record, Mapping):
        raise SchemaError(f"a schema record is a mapping, not {type(record).__name__}")
    try:
        key = json.dumps(
            {k: v for k, v in record.items() if k not in ("$type", "createdAt")}, sort_keys=True
        )
    except (TypeError, ValueError) as exc:
        raise SchemaError(f"schema record is not plain JSON data: {exc}") from exc
    cls = _GENERATED.get(key)
    if cls is None:
        cls = _type_from_schema(record)
        _add_members(cls, __reduce__=_reduce_generated, __atdata_schema_key__=key)
        with _GENERATED_LOCK:
            cls = _GENERATED.setdefault(key, cls)
    return cls


_GENERATED: dict[str, type[PackableSample]] = {}
_GENERATED_LOCK = threading.Lock()


def _reduce_generated(self: Any) -> tuple[Any, ...]:
    return (_rebuild_generated, (type(self).__atdata_schema_key__, self.packed))


def _rebuild_generated(key: str, packed: bytes) -> Any:
    return type_from_schema(json.loads(key)).from_bytes(packed, writable=True)


def _type_from_schema(record: Mapping[str, Any]) -> type[PackableSample]:
    types = record.get("types", [])
    if not isinstance(types, list):
        raise SchemaError("schema 'types' must be a list")
    defs: dict[str, Mapping[str, Any]] = {}
    for i, t in enumerate(types):
        if not isinstance(t, Mapping) or not isinstance(t.get("name"), str):
            raise SchemaError(f"types[{i}] needs a name")
        if t["name"] in defs:
            raise SchemaError(f"types[{i}]: nested type {t['name']!r} is defined twice")
        defs[t["name"]] = t
    return _Builder(defs).build(record, (), "")


class _Builder:
    """Builds a sample class from a schema record: ``defs`` are its nested types by name,
    ``built`` the classes made of them so far (each nested type is built once)."""

    def __init__(self, defs: dict[str, Mapping[str, Any]]) -> None:
        self.defs = defs
        self.built: dict[str, type] = {}

    def build(self, entry: Mapping[str, Any], stack: tuple[str, ...], where: str) -> type:
        name, version = entry.get("name"), entry.get("version")
        if not isinstance(name, str) or not NAME.match(name):
            raise SchemaError(f"{where}name {name!r} is not a valid sample type name")
        if not isinstance(version, str) or not SEMVER.match(version):
            raise SchemaError(f"{where}version {version!r} is not a semantic version")
        fields = entry.get("fields")
        if not isinstance(fields, list) or not fields:
            raise SchemaError(f"{where}fields must be a non-empty list")
        annotations: dict[str, Any] = {}
        for i, f in enumerate(fields):
            at = f"{where}fields[{i}]"
            if not isinstance(f, Mapping):
                raise SchemaError(f"{at} must be an object")
            fname = f.get("name")
            if (
                not isinstance(fname, str)
                or not _IDENT.match(fname)
                or keyword.iskeyword(fname)
                or fname.startswith("__")
            ):
                raise SchemaError(f"{at}.name {fname!r} is not a usable field name")
            if fname in annotations:
                raise SchemaError(f"{at}.name {fname!r} appears twice")
            annotations[fname] = self.annotation(f.get("type"), (*stack, name), f"{at}.type")
        description = entry.get("description")
        ns: dict[str, Any] = {
            "__annotations__": annotations,
            "__module__": __name__,
            "__qualname__": _class_name(name),
        }
        if isinstance(description, str) and description:
            ns["__doc__"] = description
        cls = type(_class_name(name), (), ns)
        return packable(cls, name=name, version=version)

    def annotation(self, t: Any, stack: tuple[str, ...], at: str) -> Any:
        if not isinstance(t, Mapping):
            raise SchemaError(f"{at} must be an object")
        kind_name = t.get("kind")
        kind = _KINDS.get(kind_name) if isinstance(kind_name, str) else None
        if kind is None:
            raise SchemaError(f"{at}.kind {t.get('kind')!r} is not a known field kind")
        extra = {"dtype", "shape"} if kind is FieldKind.ARRAY else set()
        extra |= {"item"} if kind in (FieldKind.LIST, FieldKind.DICT) else set()
        extra |= {"sample"} if kind is FieldKind.SAMPLE else set()
        for key in ("dtype", "shape", "item", "sample"):
            if key in t and key not in extra:
                raise SchemaError(f"{at}.{key} does not apply to kind {kind.value!r}")
        optional = t.get("optional", False)
        if not isinstance(optional, bool):
            raise SchemaError(f"{at}.optional must be a boolean")

        ann: Any
        if kind is FieldKind.ARRAY:
            ann = NDArray
            if "dtype" in t:
                ann = _subscript(NDArray, storable_dtype(t["dtype"], f"{at}.dtype").type)
            if "shape" in t:
                ann = Annotated[ann, Shape(*_shape(t["shape"], f"{at}.shape"))]
        elif kind is FieldKind.LIST:
            ann = (
                _subscript(list, self.annotation(t["item"], stack, f"{at}.item"))
                if "item" in t
                else list
            )
        elif kind is FieldKind.DICT:
            if "item" in t:
                ann = _subscript(dict, str, self.annotation(t["item"], stack, f"{at}.item"))
            else:
                ann = dict
        elif kind is FieldKind.SAMPLE:
            ann = self.nested(t.get("sample"), stack, at)
        elif kind is FieldKind.ANY:
            ann = Any
        else:
            ann = _SCALAR_TYPES[kind]
        return Optional[ann] if optional else ann  # noqa: UP045 - Annotated needs Optional[]

    def nested(self, name: Any, stack: tuple[str, ...], at: str) -> type:
        if not isinstance(name, str) or name not in self.defs:
            raise SchemaError(f"{at}.sample {name!r} names no type listed in 'types'")
        if name in self.built:
            return self.built[name]
        if name in stack:
            raise SchemaError(f"{at}: nested type {name!r} contains itself")
        cls = self.build(self.defs[name], stack, f"types[{name!r}].")
        self.built[name] = cls
        return cls


def _class_name(name: str) -> str:
    ident = re.sub(r"[^A-Za-z0-9_]", "_", name)
    return ident if _IDENT.match(ident) else f"_{ident}"


def _subscript(generic: Any, *args: Any) -> Any:
    """``generic[args]``, for type arguments known only at run time."""
    return generic[args if len(args) > 1 else args[0]]


def storable_dtype(value: Any, at: str) -> np.dtype:
    """The numpy dtype a schema's dtype string names, if arrays of it can be stored (no
    objects, records or sub-arrays); a `SchemaError` naming `at` otherwise."""
    if not isinstance(value, str):
        raise SchemaError(f"{at} must be a numpy dtype string")
    try:
        dt = np.dtype(value)
    except Exception as exc:  # numpy parses some strings with ast: even SyntaxError
        raise SchemaError(f"{at} {value!r} is not a numpy dtype") from exc
    if dt.hasobject or dt.names is not None or dt.subdtype is not None:
        raise SchemaError(f"{at} {value!r} is not a storable array dtype")
    return dt


def _shape(value: Any, at: str) -> list[int | None]:
    if not isinstance(value, list):
        raise SchemaError(f"{at} must be a list of integers")
    dims: list[int | None] = []
    for d in value:
        if type(d) is not int or d < -1:
            raise SchemaError(f"{at}: dimension {d!r} is not an integer >= -1")
        dims.append(None if d == -1 else d)
    return dims


# --- matching -----------------------------------------------------------------------------


def _structure(entry: Mapping[str, Any], nested: Mapping[str, Any]) -> Any:
    """Fields with nested types expanded in place: what decides wire compatibility."""

    def expand(t: Any, seen: tuple[str, ...]) -> Any:
        if not isinstance(t, Mapping):
            return t
        out = {k: v for k, v in t.items() if k not in ("item", "sample")}
        if "item" in t:
            out["item"] = expand(t["item"], seen)
        if "sample" in t:
            name = t["sample"]
            sub = nested.get(name) if isinstance(name, str) else None
            if sub is None or name in seen:
                out["sample"] = name
            else:
                out["sample"] = [
                    (f.get("name"), expand(f.get("type"), (*seen, name)))
                    for f in sub.get("fields", [])
                    if isinstance(f, Mapping)
                ]
        return out

    fields = entry.get("fields")
    if not isinstance(fields, list):
        return None
    return [(f.get("name"), expand(f.get("type"), ())) for f in fields if isinstance(f, Mapping)]


def _nested_types(record: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """The nested sample types a schema record declares, by name (malformed entries left out)."""
    return {
        t["name"]: t
        for t in record.get("types", []) or []
        if isinstance(t, Mapping) and isinstance(t.get("name"), str)
    }


def schema_matches(
    sample_type: type, record: Mapping[str, Any], *, check_name: bool = False
) -> bool:
    """True when ``sample_type`` reads and writes exactly the samples ``record`` describes.

    Field names, order and types (nested types expanded) must be equal; the name and version
    are compared too when ``check_name`` is true.
    """
    if not is_packable(sample_type) or not isinstance(record, Mapping):
        return False
    ours = schema_of(sample_type, created_at="-")
    if check_name and (
        ours["name"] != record.get("name") or ours["version"] != record.get("version")
    ):
        return False
    theirs_nested = _nested_types(record)
    ours_nested = {t["name"]: t for t in ours.get("types", [])}
    return _structure(ours, ours_nested) == _structure(record, theirs_nested)


def schema_differences(sample_type: type, record: Mapping[str, Any]) -> list[str]:
    """What keeps `sample_type` from reading the samples `record` describes, one line per field.

    Empty exactly when `schema_matches(sample_type, record)`: the lines name fields that are
    missing, extra or of another type (nested types compared expanded), or else the order.
    """
    if not is_packable(sample_type):
        return [f"{getattr(sample_type, '__name__', sample_type)!r} is not a packable class"]
    if not isinstance(record, Mapping):
        return ["the schema record is not an object"]
    ours = schema_of(sample_type, created_at="-")
    theirs_nested = _nested_types(record)
    ours_nested = {t["name"]: t for t in ours.get("types", [])}
    ours_s, theirs_s = _structure(ours, ours_nested), _structure(record, theirs_nested)
    if theirs_s is None:
        return ["the schema record lists no fields"]
    if ours_s == theirs_s:
        return []
    raw_ours = {f["name"]: f.get("type") for f in ours["fields"]}
    raw_theirs = {
        f.get("name"): f.get("type") for f in record.get("fields", []) if isinstance(f, Mapping)
    }
    mine, other = dict(ours_s), dict(theirs_s)
    lines: list[str] = []
    for name, structure in theirs_s:
        if name not in mine:
            lines.append(f"field {name!r} ({type_text(raw_theirs.get(name))}) is missing")
        elif mine[name] != structure:
            a, b = type_text(raw_ours.get(name)), type_text(raw_theirs.get(name))
            detail = f"{a} here, {b} in the schema" if a != b else "nested fields differ"
            lines.append(f"field {name!r}: {detail}")
    lines += [f"field {name!r} is not in the schema" for name, _ in ours_s if name not in other]
    if not lines:
        lines.append(
            "the fields are in another order: schema "
            + ", ".join(str(n) for n, _ in theirs_s)
            + "; here "
            + ", ".join(str(n) for n, _ in ours_s)
        )
    return lines
