"""Checks that a lexicon *document* follows the Lexicon spec (before any record is checked).

The rules: `lexicon: 1`, an NSID `id`, a `defs` map; record/query/procedure/subscription only as
`main`; each type carries only the fields the spec gives it, with the right JSON types;
string formats are known; min <= max; `required` and `nullable` name declared properties;
params hold only boolean/integer/string/unknown and arrays of those; refs resolve (checked
by the registry once every document is loaded). Project rule on top: in our own namespace
every string declares a `maxLength`, so records stay bounded.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from ..errors import LexiconError
from ._formats import FORMATS, is_nsid

__all__ = ["check_document", "iter_refs"]

PRIMARY = {"record", "query", "procedure", "subscription"}
FIELD_TYPES = {
    "null",
    "boolean",
    "integer",
    "string",
    "bytes",
    "cid-link",
    "blob",
    "array",
    "object",
    "params",
    "token",
    "ref",
    "union",
    "unknown",
}
PARAM_TYPES = {"boolean", "integer", "string", "unknown", "array"}
PARAM_ITEM_TYPES = {"boolean", "integer", "string"}

# Allowed keys per type (beyond `type` and `description`) and their JSON types.
_INT = int
_KEYS: dict[str, dict[str, Any]] = {
    "null": {},
    "boolean": {"default": bool, "const": bool},
    "integer": {"minimum": _INT, "maximum": _INT, "enum": list, "default": _INT, "const": _INT},
    "string": {
        "format": str,
        "maxLength": _INT,
        "minLength": _INT,
        "maxGraphemes": _INT,
        "minGraphemes": _INT,
        "knownValues": list,
        "enum": list,
        "default": str,
        "const": str,
    },
    "bytes": {"minLength": _INT, "maxLength": _INT},
    "cid-link": {},
    "blob": {"accept": list, "maxSize": _INT},
    "array": {"items": dict, "minLength": _INT, "maxLength": _INT},
    "object": {"properties": dict, "required": list, "nullable": list},
    "params": {"properties": dict, "required": list},
    "token": {},
    "ref": {"ref": str},
    "union": {"refs": list, "closed": bool},
    "unknown": {},
    "record": {"key": str, "record": dict},
    "query": {"parameters": dict, "output": dict, "errors": list},
    "procedure": {"parameters": dict, "input": dict, "output": dict, "errors": list},
    "subscription": {"parameters": dict, "message": dict, "errors": list},
}
_REQUIRED_KEYS: dict[str, tuple[str, ...]] = {
    "array": ("items",),
    "object": ("properties",),
    "params": ("properties",),
}
_REQUIRED_KEYS |= {"ref": ("ref",), "union": ("refs",), "record": ("key", "record")}
_MIME = re.compile(r"^(\*/\*|[a-zA-Z0-9.+-]+/(\*|[a-zA-Z0-9.+-]+))$")
_FRAGMENT = re.compile(r"^[a-zA-Z][a-zA-Z0-9_]*$")


def _fail(lex_id: str, path: str, msg: str) -> LexiconError:
    err = LexiconError(f"lexicon {lex_id}: {path}: {msg}")
    err.nsid, err.path = lex_id, path
    return err


def check_document(doc: Any, *, require_max_length: bool = False) -> None:
    """Raise `LexiconError` (naming the def path) if `doc` breaks the Lexicon spec."""
    if not isinstance(doc, dict):
        raise LexiconError("lexicon document is not a JSON object")
    lex_id = doc.get("id")
    if not isinstance(lex_id, str) or not is_nsid(lex_id):
        raise LexiconError(f"lexicon id {lex_id!r} is not a valid NSID")
    if doc.get("lexicon") != 1 or isinstance(doc.get("lexicon"), bool):
        raise _fail(lex_id, "lexicon", "must be the integer 1")
    for key in doc:
        if key not in {"lexicon", "id", "revision", "description", "defs", "$type"}:
            raise _fail(lex_id, key, "unknown top-level field")
    if "revision" in doc and (type(doc["revision"]) is not int or doc["revision"] < 0):
        raise _fail(lex_id, "revision", "must be a non-negative integer")
    if "description" in doc and not isinstance(doc["description"], str):
        raise _fail(lex_id, "description", "must be a string")
    defs = doc.get("defs")
    if not isinstance(defs, dict) or not defs:
        raise _fail(lex_id, "defs", "must be a non-empty object")
    for name, d in defs.items():
        if not _FRAGMENT.fullmatch(name):
            raise _fail(lex_id, f"defs.{name}", "def name must be letters, digits or _")
        if not isinstance(d, dict) or not isinstance(d.get("type"), str):
            raise _fail(lex_id, f"defs.{name}", "def must be an object with a string type")
        if d["type"] in PRIMARY and name != "main":
            raise _fail(lex_id, f"defs.{name}", f"a {d['type']} def may only be `main`")
        _Checker(lex_id, require_max_length).check(d, f"defs.{name}", top=True)


class _Checker:
    def __init__(self, lex_id: str, require_max_length: bool) -> None:
        self.lex_id = lex_id
        self.require_max_length = require_max_length

    def fail(self, path: str, msg: str) -> LexiconError:
        return _fail(self.lex_id, path, msg)

    def check(self, d: Any, path: str, *, top: bool = False, in_params: bool = False) -> None:
        if not isinstance(d, dict):
            raise self.fail(path, "schema must be an object")
        t = d.get("type")
        if not isinstance(t, str):
            raise self.fail(path, "schema needs a string `type`")
        if t in PRIMARY and not top:
            raise self.fail(path, f"{t} is only allowed as a top-level main def")
        if t not in FIELD_TYPES and t not in PRIMARY:
            raise self.fail(path, f"unknown type {t!r}")
        if t == "token" and not top:
            raise self.fail(path, "token is only allowed as a named def")
        allowed = _KEYS[t]
        for key, value in d.items():
            if key in ("type", "description"):
                if key == "description" and not isinstance(value, str):
                    raise self.fail(f"{path}.description", "must be a string")
                continue
            if key not in allowed:
                raise self.fail(f"{path}.{key}", f"field not allowed on type {t}")
            want = allowed[key]
            if want is int and (type(value) is not int):
                raise self.fail(f"{path}.{key}", "must be an integer")
            if want is not int and not isinstance(value, want):
                raise self.fail(f"{path}.{key}", f"must be a {want.__name__}")
        for key in _REQUIRED_KEYS.get(t, ()):
            if key not in d:
                raise self.fail(path, f"type {t} needs `{key}`")
        getattr(self, "_" + t.replace("-", "_"), lambda d, path: None)(d, path)

    # -- per-type rules -------------------------------------------------------------------
    def _min_max(self, d: dict[str, Any], path: str, lo: str, hi: str) -> None:
        for key in (lo, hi):
            if key in d and key != "minimum" and key != "maximum" and d[key] < 0:
                raise self.fail(f"{path}.{key}", "must be >= 0")
        if lo in d and hi in d and d[lo] > d[hi]:
            raise self.fail(path, f"{lo} is greater than {hi}")

    def _integer(self, d: dict[str, Any], path: str) -> None:
        self._min_max(d, path, "minimum", "maximum")
        for key in ("enum",):
            if key in d and not all(type(v) is int for v in d[key]):
                raise self.fail(f"{path}.{key}", "values must be integers")

    def _string(self, d: dict[str, Any], path: str) -> None:
        self._min_max(d, path, "minLength", "maxLength")
        self._min_max(d, path, "minGraphemes", "maxGraphemes")
        fmt = d.get("format")
        if fmt is not None and fmt not in FORMATS:
            raise self.fail(f"{path}.format", f"unknown string format {fmt!r}")
        for key in ("enum", "knownValues"):
            if key in d and not all(isinstance(v, str) for v in d[key]):
                raise self.fail(f"{path}.{key}", "values must be strings")
        if self.require_max_length and "maxLength" not in d:
            raise self.fail(path, "every string in our lexicons needs a maxLength")

    def _bytes(self, d: dict[str, Any], path: str) -> None:
        self._min_max(d, path, "minLength", "maxLength")

    def _array(self, d: dict[str, Any], path: str, in_params: bool = False) -> None:
        self._min_max(d, path, "minLength", "maxLength")
        items = d["items"]
        if in_params and items.get("type") not in PARAM_ITEM_TYPES:
            raise self.fail(f"{path}.items", "params arrays hold only boolean/integer/string")
        self.check(items, f"{path}.items")

    def _blob(self, d: dict[str, Any], path: str) -> None:
        for i, m in enumerate(d.get("accept", [])):
            if not isinstance(m, str) or not _MIME.fullmatch(m):
                raise self.fail(f"{path}.accept[{i}]", "not a MIME type pattern")
        if d.get("maxSize", 0) < 0:
            raise self.fail(f"{path}.maxSize", "must be >= 0")

    def _props(self, d: dict[str, Any], path: str, *, params: bool) -> None:
        props = d["properties"]
        for name, p in props.items():
            ppath = f"{path}.properties.{name}"
            if params:
                if not isinstance(p, dict) or p.get("type") not in PARAM_TYPES:
                    raise self.fail(ppath, "params hold only boolean/integer/string/unknown/array")
                self.check(p, ppath)
                if p["type"] == "array":
                    self._array(p, ppath, in_params=True)
            else:
                self.check(p, ppath)
        for key in ("required", "nullable"):
            for i, name in enumerate(d.get(key, [])):
                if name not in props:
                    raise self.fail(f"{path}.{key}[{i}]", f"{name!r} is not a declared property")

    def _object(self, d: dict[str, Any], path: str) -> None:
        self._props(d, path, params=False)

    def _params(self, d: dict[str, Any], path: str) -> None:
        self._props(d, path, params=True)

    def _ref(self, d: dict[str, Any], path: str) -> None:
        self._check_ref(d["ref"], f"{path}.ref")

    def _union(self, d: dict[str, Any], path: str) -> None:
        for i, r in enumerate(d["refs"]):
            if not isinstance(r, str):
                raise self.fail(f"{path}.refs[{i}]", "must be a string")
            self._check_ref(r, f"{path}.refs[{i}]")

    def _check_ref(self, ref: str, path: str) -> None:
        nsid, _, frag = ref.partition("#")
        if nsid and not is_nsid(nsid):
            raise self.fail(path, f"{ref!r} is not `nsid`, `#def` or `nsid#def`")
        if (frag or ref.endswith("#")) and not _FRAGMENT.fullmatch(frag):
            raise self.fail(path, f"{ref!r} has an invalid fragment")
        if not nsid and not frag:
            raise self.fail(path, "empty ref")

    def _record(self, d: dict[str, Any], path: str) -> None:
        key = d["key"]
        if key not in ("tid", "nsid", "any") and not (
            key.startswith("literal:") and len(key) > len("literal:")
        ):
            raise self.fail(f"{path}.key", f"record key type {key!r} is not tid/nsid/any/literal:*")
        rec = d["record"]
        if rec.get("type") != "object":
            raise self.fail(f"{path}.record", "a record's schema must be an object")
        self.check(rec, f"{path}.record")

    def _body(self, body: Any, path: str, *, message: bool = False) -> None:
        if not isinstance(body, dict):
            raise self.fail(path, "must be an object")
        for key in body:
            if key not in ("description", "encoding", "schema"):
                raise self.fail(f"{path}.{key}", "field not allowed in a body")
        if not message and not isinstance(body.get("encoding"), str):
            raise self.fail(f"{path}.encoding", "a body needs an encoding (MIME type)")
        if "schema" in body:
            s = body["schema"]
            allowed = ("union",) if message else ("object", "ref", "union")
            if not isinstance(s, dict) or s.get("type") not in allowed:
                raise self.fail(f"{path}.schema", f"schema must be one of {allowed}")
            self.check(s, f"{path}.schema")

    def _xrpc(self, d: dict[str, Any], path: str) -> None:
        if "parameters" in d:
            p = d["parameters"]
            if p.get("type") != "params":
                raise self.fail(f"{path}.parameters", "must have type params")
            self.check(p, f"{path}.parameters")
        for i, e in enumerate(d.get("errors", [])):
            if not isinstance(e, dict) or not isinstance(e.get("name"), str):
                raise self.fail(f"{path}.errors[{i}]", "needs a string name")

    def _query(self, d: dict[str, Any], path: str) -> None:
        self._xrpc(d, path)
        if "output" in d:
            self._body(d["output"], f"{path}.output")

    def _procedure(self, d: dict[str, Any], path: str) -> None:
        self._query(d, path)
        if "input" in d:
            self._body(d["input"], f"{path}.input")

    def _subscription(self, d: dict[str, Any], path: str) -> None:
        self._xrpc(d, path)
        if "message" in d:
            self._body(d["message"], f"{path}.message", message=True)


def iter_refs(lex_id: str, node: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Yield (absolute ref, path) for every `ref` and union member below `node`."""
    if isinstance(node, dict):
        if node.get("type") == "ref" and isinstance(node.get("ref"), str):
            yield absolute_ref(lex_id, node["ref"]), f"{path}.ref"
        if node.get("type") == "union" and isinstance(node.get("refs"), list):
            for i, r in enumerate(node["refs"]):
                yield absolute_ref(lex_id, r), f"{path}.refs[{i}]"
        for k, v in node.items():
            yield from iter_refs(lex_id, v, f"{path}.{k}" if path else k)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from iter_refs(lex_id, v, f"{path}[{i}]")


def absolute_ref(lex_id: str, ref: str) -> str:
    """`#x` -> `lex_id#x`; `nsid#main` -> `nsid`; `nsid` stays as is."""
    if ref.startswith("#"):
        ref = lex_id + ref
    if ref.endswith("#main"):
        ref = ref[: -len("#main")]
    return ref
