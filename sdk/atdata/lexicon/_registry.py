"""A set of loaded lexicons, and validation of records and XRPC params against them.

Values are checked in their JSON form (the form records take over XRPC): blobs as
`{"$type": "blob", "ref": {"$link": cid}, "mimeType", "size"}`, cid-links as `{"$link": cid}`,
bytes as `{"$bytes": base64}` (raw `bytes` are accepted too). Floats are refused anywhere,
because the atproto data model has none. Errors name the path inside the value. Records of
the peer network's family (`science.alt.dataset.*`) also get the tolerance and the checks of
`_peer`: what its SDK writes beyond its lexicons.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ..errors import LexiconError
from ..records import OWN_NAMESPACE
from . import _peer
from ._document import absolute_ref, check_document, iter_refs
from ._formats import check_format, grapheme_length

__all__ = ["Lexicons", "OWN_NAMESPACE"]

_INT_RE = re.compile(r"^-?(0|[1-9][0-9]*)$")
# XRPC integers are 64-bit signed (atproto data model); a longer digit string is refused
# before int() parses it (Python refuses 4,301+ digits with a ValueError of its own).
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_INT64_DIGITS = 19

# Facts of the standard `com.atproto.repo.strongRef` lexicon (a uri + cid pair), which our
# records reference; carried here so validation needs no network and no copy of atproto's tree.
STRONG_REF = {
    "lexicon": 1,
    "id": "com.atproto.repo.strongRef",
    "description": "A URI with a content-hash fingerprint.",
    "defs": {
        "main": {
            "type": "object",
            "required": ["uri", "cid"],
            "properties": {
                "uri": {"type": "string", "format": "at-uri"},
                "cid": {"type": "string", "format": "cid"},
            },
        }
    },
}
BUILTIN = (STRONG_REF,)


def _check_param_value(p: Mapping[str, Any], value: Any, path: str) -> None:
    """What a query parameter may not hold though a record may: integers outside 64 bits,
    and NUL characters in strings (databases refuse them: PostgreSQL text cannot hold one)."""
    values = value if p["type"] == "array" and isinstance(value, list) else [value]
    for i, v in enumerate(values):
        where = f"{path}[{i}]" if p["type"] == "array" else path
        if isinstance(v, int) and not isinstance(v, bool) and not INT64_MIN <= v <= INT64_MAX:
            raise _Invalid(where, "is out of the 64-bit integer range")
        if isinstance(v, str) and "\x00" in v:
            raise _Invalid(where, "contains a NUL character")


class _Invalid(Exception):
    def __init__(self, path: str, msg: str) -> None:
        self.path, self.msg = path, msg


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


class Lexicons:
    """Loaded lexicon documents keyed by NSID; validates records and XRPC parameters."""

    def __init__(self, docs: Iterable[Mapping[str, Any]] = (), *, builtins: bool = True) -> None:
        self.docs: dict[str, dict[str, Any]] = {}
        self._ref_cache: dict[tuple[str, str], tuple[str, str, dict[str, Any]]] = {}
        for doc in list(BUILTIN if builtins else ()) + [dict(d) for d in docs]:
            self.add(doc, _defer_refs=True)
        self._check_refs()

    # -- loading -------------------------------------------------------------------------
    def add(self, doc: Mapping[str, Any], *, _defer_refs: bool = False) -> None:
        """Check `doc` against the Lexicon spec and add it (replacing a builtin of that id)."""
        self._ref_cache.clear()
        doc = dict(doc)
        own = str(doc.get("id")).startswith(OWN_NAMESPACE)
        check_document(doc, require_max_length=own)
        lex_id: str = doc["id"]  # a valid NSID: checked
        if lex_id in self.docs and not any(b["id"] == lex_id for b in BUILTIN):
            raise LexiconError(f"lexicon {lex_id} is defined twice")
        self.docs[lex_id] = doc
        if not _defer_refs:
            self._check_refs()

    @classmethod
    def from_dir(cls, root: str | Path) -> Lexicons:
        """Load every `*.json` below `root`; a file's path must match its id (a/b/c.json = a.b.c)."""
        root = Path(root)
        if not root.is_dir():
            raise LexiconError(f"lexicon directory {root} does not exist")
        docs = []
        for path in sorted(root.rglob("*.json")):
            try:
                doc = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                raise LexiconError(f"{path}: not readable JSON: {e}") from e
            rel = path.relative_to(root).with_suffix("")
            expect = ".".join(rel.parts)
            if isinstance(doc, dict) and doc.get("id") != expect:
                raise LexiconError(f"{path}: id {doc.get('id')!r} does not match its path {expect}")
            docs.append(doc)
        return cls(docs)

    def _check_refs(self) -> None:
        for lex_id, doc in self.docs.items():
            for ref, path in iter_refs(lex_id, doc["defs"], "defs"):
                if self._lookup(ref) is None:
                    raise LexiconError(f"lexicon {lex_id}: {path}: unresolved ref {ref!r}")

    # -- lookup --------------------------------------------------------------------------
    def __contains__(self, nsid: object) -> bool:
        return nsid in self.docs

    def __iter__(self) -> Iterator[str]:
        return iter(self.docs)

    def _lookup(self, ref: str) -> tuple[str, dict[str, Any]] | None:
        nsid, _, frag = ref.partition("#")
        doc = self.docs.get(nsid)
        if doc is None:
            return None
        d = doc["defs"].get(frag or "main")
        return None if d is None else (nsid, d)

    def _loaded(self, ref: str) -> tuple[str, dict[str, Any]]:
        """A def that loading has checked is there (every ref and union member is)."""
        found = self._lookup(ref)
        if found is None:
            raise LexiconError(f"no lexicon def {ref!r} is loaded")
        return found

    def get_def(self, ref: str) -> dict[str, Any]:
        """The def named by `nsid` or `nsid#name`; `LexiconError` when unknown."""
        found = self._lookup(absolute_ref("", ref) if not ref.startswith("#") else ref)
        if found is None:
            raise LexiconError(f"no lexicon def {ref!r} is loaded")
        return found[1]

    # -- validation entry points ---------------------------------------------------------
    def _raise(self, nsid: str, e: _Invalid) -> None:
        where = e.path or "(record)"
        err = LexiconError(f"{nsid}: {where}: {e.msg}")
        err.nsid, err.path = nsid, e.path
        raise err from None

    def validate_record(self, nsid: str, record: Any) -> None:
        """Raise `LexiconError` naming the path (e.g. `fields[2].dtype`) if `record` is invalid."""
        d = self.get_def(nsid)
        if d["type"] != "record":
            raise LexiconError(f"{nsid} is a {d['type']}, not a record type")
        try:
            if not isinstance(record, Mapping):
                raise _Invalid("", "a record must be an object")
            t = record.get("$type", nsid)
            if t != nsid:
                raise _Invalid("$type", f"is {t!r}, expected {nsid!r}")
            peer = _peer.is_peer(nsid)  # what that network writes beyond its lexicons
            try:
                if peer:
                    record = _peer.normalise(nsid, record)
                self._value(nsid, d["record"], record, "")
                if peer:
                    _peer.check(nsid, record)
            except _peer.PeerInvalid as e:
                raise _Invalid(e.path, e.msg) from None
            except RecursionError:  # a recursive def (a list of lists...) nested past the stack
                raise _Invalid("", "is nested too deeply") from None
        except _Invalid as e:
            self._raise(nsid, e)

    def validate(self, ref: str, value: Any) -> None:
        """Validate `value` against any def (`nsid#name`), e.g. a manifest object."""
        lex_id = ref.partition("#")[0]
        d = self.get_def(ref)
        if d["type"] == "record":
            d = d["record"]
        try:
            self._value(lex_id, d, value, "")
        except _Invalid as e:
            self._raise(ref, e)

    def validate_params(self, nsid: str, params: Mapping[str, str | list[str]]) -> dict[str, Any]:
        """Coerce XRPC query params (strings from a URL) to their types; check and default them."""
        d = self.get_def(nsid)
        if d["type"] not in ("query", "procedure", "subscription"):
            raise LexiconError(f"{nsid} is a {d['type']}, not an XRPC method")
        schema = d.get("parameters", {"type": "params", "properties": {}})
        props = schema["properties"]
        out: dict[str, Any] = {}
        try:
            for name in params:
                if name not in props:
                    raise _Invalid(name, "unknown parameter")
            for name, p in props.items():
                if name not in params:
                    if "default" in p:
                        out[name] = p["default"]
                    elif name in schema.get("required", []):
                        raise _Invalid(name, "required parameter is missing")
                    continue
                raw = params[name]
                if p["type"] == "array":
                    values = list(raw) if isinstance(raw, list | tuple) else [raw]
                    out[name] = [
                        self._coerce(p["items"], v, f"{name}[{i}]") for i, v in enumerate(values)
                    ]
                else:
                    if isinstance(raw, list | tuple):
                        if len(raw) != 1:
                            raise _Invalid(name, "given more than once")
                        raw = raw[0]
                    out[name] = self._coerce(p, raw, name)
                self._value(nsid, p, out[name], name)
                _check_param_value(p, out[name], name)
        except _Invalid as e:
            self._raise(nsid, e)
        return out

    @staticmethod
    def _coerce(p: Mapping[str, Any], raw: Any, path: str) -> Any:
        t = p["type"]
        if not isinstance(raw, str):
            return raw  # already typed (e.g. a Python caller); checked by _value
        if t == "integer":
            if len(raw) > 64 or not _INT_RE.fullmatch(raw):
                shown = raw if len(raw) <= 40 else raw[:40] + "..."
                raise _Invalid(path, f"{shown!r} is not an integer")
            if len(raw.lstrip("-")) > _INT64_DIGITS:
                raise _Invalid(path, "is out of the 64-bit integer range")
            return int(raw)
        if t == "boolean":
            if raw not in ("true", "false"):
                raise _Invalid(path, f"{raw!r} is not true or false")
            return raw == "true"
        return raw

    # -- the recursive checker -----------------------------------------------------------
    def _value(self, lex_id: str, d: Mapping[str, Any], v: Any, path: str) -> None:
        t = d["type"]
        check = getattr(self, "_v_" + t.replace("-", "_"), None)
        if check is None:
            raise _Invalid(path, f"type {t} cannot hold a data value")
        check(lex_id, d, v, path)

    def _v_null(self, lex_id: str, d: Mapping[str, Any], v: Any, path: str) -> None:
        if v is not None:
            raise _Invalid(path, "must be null")

    def _v_boolean(self, lex_id: str, d: Mapping[str, Any], v: Any, path: str) -> None:
        if not isinstance(v, bool):
            raise _Invalid(path, f"expected a boolean, got {type(v).__name__}")
        if "const" in d and v != d["const"]:
            raise _Invalid(path, f"must be {d['const']!r}")

    def _v_integer(self, lex_id: str, d: Mapping[str, Any], v: Any, path: str) -> None:
        if type(v) is not int:
            raise _Invalid(path, f"expected an integer, got {type(v).__name__}")
        if "minimum" in d and v < d["minimum"]:
            raise _Invalid(path, f"{v} is below the minimum {d['minimum']}")
        if "maximum" in d and v > d["maximum"]:
            raise _Invalid(path, f"{v} is above the maximum {d['maximum']}")
        if "enum" in d and v not in d["enum"]:
            raise _Invalid(path, f"{v} is not one of {d['enum']}")
        if "const" in d and v != d["const"]:
            raise _Invalid(path, f"must be {d['const']}")

    def _v_string(self, lex_id: str, d: Mapping[str, Any], v: Any, path: str) -> None:
        if not isinstance(v, str):
            raise _Invalid(path, f"expected a string, got {type(v).__name__}")
        n = len(v.encode("utf-8"))
        if "maxLength" in d and n > d["maxLength"]:
            raise _Invalid(path, f"is {n} bytes long, over maxLength {d['maxLength']}")
        if "minLength" in d and n < d["minLength"]:
            raise _Invalid(path, f"is {n} bytes long, under minLength {d['minLength']}")
        # graphemes <= code points: count them only when that bound cannot decide
        if ("maxGraphemes" in d and len(v) > d["maxGraphemes"]) or "minGraphemes" in d:
            g = grapheme_length(v)
            if "maxGraphemes" in d and g > d["maxGraphemes"]:
                raise _Invalid(path, f"has {g} graphemes, over maxGraphemes {d['maxGraphemes']}")
            if "minGraphemes" in d and g < d["minGraphemes"]:
                raise _Invalid(path, f"has {g} graphemes, under minGraphemes {d['minGraphemes']}")
        if "enum" in d and v not in d["enum"]:
            raise _Invalid(path, f"{v!r} is not one of {d['enum']}")
        if "const" in d and v != d["const"]:
            raise _Invalid(path, f"must be {d['const']!r}")
        if "format" in d and (why := check_format(d["format"], v)):
            raise _Invalid(path, f"{v[:80]!r}: {why} (format {d['format']})")

    def _v_bytes(self, lex_id: str, d: Mapping[str, Any], v: Any, path: str) -> None:
        if isinstance(v, Mapping) and set(v) == {"$bytes"} and isinstance(v["$bytes"], str):
            try:
                raw = base64.b64decode(v["$bytes"] + "=" * (-len(v["$bytes"]) % 4), validate=True)
            except (binascii.Error, ValueError):
                raise _Invalid(path, "$bytes is not base64") from None
        elif isinstance(v, bytes | bytearray | memoryview):
            raw = bytes(v)
        else:
            raise _Invalid(path, "expected bytes ({'$bytes': base64})")
        if "maxLength" in d and len(raw) > d["maxLength"]:
            raise _Invalid(path, f"is {len(raw)} bytes, over maxLength {d['maxLength']}")
        if "minLength" in d and len(raw) < d["minLength"]:
            raise _Invalid(path, f"is {len(raw)} bytes, under minLength {d['minLength']}")

    def _v_cid_link(self, lex_id: str, d: Mapping[str, Any], v: Any, path: str) -> None:
        if not (isinstance(v, Mapping) and set(v) == {"$link"} and isinstance(v["$link"], str)):
            raise _Invalid(path, "expected a cid-link ({'$link': cid})")
        if why := check_format("cid", v["$link"]):
            raise _Invalid(_join(path, "$link"), why)

    def _v_blob(self, lex_id: str, d: Mapping[str, Any], v: Any, path: str) -> None:
        if not isinstance(v, Mapping):
            raise _Invalid(path, "expected a blob object")
        if v.get("$type") != "blob":
            raise _Invalid(_join(path, "$type"), "a blob needs $type 'blob'")
        ref = v.get("ref")
        if not (isinstance(ref, Mapping) and isinstance(ref.get("$link"), str)):
            raise _Invalid(_join(path, "ref"), "a blob needs ref {'$link': cid}")
        if why := check_format("cid", ref["$link"]):
            raise _Invalid(_join(path, "ref.$link"), why)
        mime, size = v.get("mimeType"), v.get("size")
        if not isinstance(mime, str) or not mime:
            raise _Invalid(_join(path, "mimeType"), "a blob needs a mimeType")
        if type(size) is not int or size < 0:
            raise _Invalid(_join(path, "size"), "a blob needs a non-negative integer size")
        if "maxSize" in d and size > d["maxSize"]:
            raise _Invalid(_join(path, "size"), f"{size} is over maxSize {d['maxSize']}")
        if "accept" in d and not any(_mime_ok(mime, a) for a in d["accept"]):
            raise _Invalid(_join(path, "mimeType"), f"{mime!r} is not in accept {d['accept']}")

    def _v_array(self, lex_id: str, d: Mapping[str, Any], v: Any, path: str) -> None:
        if not isinstance(v, list | tuple):
            raise _Invalid(path, f"expected an array, got {type(v).__name__}")
        if "maxLength" in d and len(v) > d["maxLength"]:
            raise _Invalid(path, f"has {len(v)} items, over maxLength {d['maxLength']}")
        if "minLength" in d and len(v) < d["minLength"]:
            raise _Invalid(path, f"has {len(v)} items, under minLength {d['minLength']}")
        for i, item in enumerate(v):
            self._value(lex_id, d["items"], item, f"{path}[{i}]")

    def _v_object(self, lex_id: str, d: Mapping[str, Any], v: Any, path: str) -> None:
        if not isinstance(v, Mapping):
            raise _Invalid(path, f"expected an object, got {type(v).__name__}")
        props = d.get("properties", {})
        nullable = set(d.get("nullable", ()))
        for name in d.get("required", ()):
            if name not in v:
                raise _Invalid(_join(path, name), "required property is missing")
        for name, item in v.items():
            if not isinstance(name, str):
                raise _Invalid(path, f"object key {name!r} is not a string")
            sub = _join(path, name)
            if name not in props:
                _no_floats(item, sub)  # open for extension, but still the data model
                continue
            if item is None:
                if name in nullable or props[name]["type"] == "null":
                    continue
                raise _Invalid(sub, "is null but not nullable")
            self._value(lex_id, props[name], item, sub)

    _v_params = _v_object

    def _v_ref(self, lex_id: str, d: Mapping[str, Any], v: Any, path: str) -> None:
        key = (lex_id, d["ref"])
        hit = self._ref_cache.get(key)  # refs resolve the same way every time: cache them
        if hit is None:
            ref = absolute_ref(lex_id, d["ref"])
            target_lex, target = self._loaded(ref)
            if target["type"] == "record":
                target = target["record"]
            hit = self._ref_cache[key] = (ref, target_lex, target)
        ref, target_lex, target = hit
        if target["type"] == "token":
            raise _Invalid(path, f"ref {ref} is a token, not a data type")
        self._value(target_lex, target, v, path)

    def _v_union(self, lex_id: str, d: Mapping[str, Any], v: Any, path: str) -> None:
        if not isinstance(v, Mapping):
            raise _Invalid(path, "a union value must be an object with $type")
        t = v.get("$type")
        if not isinstance(t, str) or not t:
            raise _Invalid(_join(path, "$type"), "a union value needs a $type")
        refs = [absolute_ref(lex_id, r) for r in d["refs"]]
        t_abs = absolute_ref("", t)
        if t_abs not in refs:
            if d.get("closed"):
                raise _Invalid(_join(path, "$type"), f"{t!r} is not one of {refs}")
            _no_floats(v, path)  # open union: an unknown member passes untouched
            return
        target_lex, target = self._loaded(t_abs)
        if target["type"] == "record":
            target = target["record"]
        self._value(target_lex, target, v, path)

    def _v_unknown(self, lex_id: str, d: Mapping[str, Any], v: Any, path: str) -> None:
        if not isinstance(v, Mapping):
            raise _Invalid(path, "an unknown-typed value must be an object")
        _no_floats(v, path)

    def _v_token(self, lex_id: str, d: Mapping[str, Any], v: Any, path: str) -> None:
        raise _Invalid(path, "a token has no data values")


def _mime_ok(mime: str, pattern: str) -> bool:
    if pattern == "*/*":
        return True
    if pattern.endswith("/*"):
        return mime.split("/", 1)[0] == pattern[:-2]
    return mime == pattern


def _no_floats(v: Any, path: str) -> None:
    """Refuse a float anywhere inside `v` (depth-first, so the first one is named). Iterative:
    what an unknown-typed property holds may nest deeper than Python's recursion limit."""
    stack = [(v, path)]
    while stack:
        v, path = stack.pop()
        if isinstance(v, float):
            raise _Invalid(path, "floats are not allowed in atproto records (use a string or int)")
        if isinstance(v, Mapping):
            stack.extend(reversed([(item, _join(path, str(k))) for k, item in v.items()]))
        elif isinstance(v, list | tuple):
            stack.extend(reversed([(item, f"{path}[{i}]") for i, item in enumerate(v)]))
