"""What the ``science.alt.dataset`` network writes that its lexicons do not say, made checkable.

Records of that family are written by the PyPI ``atdata`` SDK (0.5-0.7) without lexicon
validation. Most of the difference is expressed in our lexicons for that family (``metadata``
as unknown, both ``atdataSchemaVersion`` spellings, the three schema-body layouts, placeholder
checksums, any blob MIME type). What a lexicon cannot say is handled here, on a copy, before
the record is validated (the record itself is stored as published):

- ``entry.metadata`` as raw bytes (msgpack; how DAG-CBOR gives bytes) becomes
  ``{"$bytes": base64}``; either bytes form is held to the 100,000-byte limit;
- the oldest entries list bare blobs in ``storageBlobs.blobs``: each is read as ``{blob}``;
- at-uri references whose record key is ``name@version`` (a form the network's documents
  show) are checked as if '@' were a record-key character;

and what a lexicon cannot check is checked here once the lexicon has passed the record: a
schema's ``version`` is semver, and its body (whichever layout) carries a JSON Schema with a
``properties`` object of objects. Failures raise the registry's path-naming error like any
other.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Mapping
from typing import Any

from ..records import PEER_ENTRY, PEER_NAMESPACE, PEER_SCHEMA, PEER_STORAGE_BLOBS

__all__ = ["PEER_METADATA_MAX_BYTES", "PeerInvalid", "check", "is_peer", "normalise"]

#: entry.metadata is declared as bytes of at most this many bytes.
PEER_METADATA_MAX_BYTES = 100_000
# the same pattern io.atdata's schema code checks versions with (atdata.packable.SEMVER)
_SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$"
)
_AT_REF = re.compile(r"^(at://[^/?#]+/[^/?#]+/)([^/?#]+)$")
# properties holding at-uris of other records, per collection
_URI_PROPS: dict[str, tuple[str, ...]] = {
    PEER_ENTRY: ("schemaRef", "metadataSchemaRef"),
    "science.alt.dataset.label": ("datasetUri",),
    "science.alt.dataset.lens": ("sourceSchema", "targetSchema"),
    "science.alt.dataset.lensVerification": ("lens",),
}


class PeerInvalid(Exception):
    """A path inside the record and why it is invalid (the registry turns it into
    a ``LexiconError``)."""

    def __init__(self, path: str, msg: str) -> None:
        super().__init__(f"{path}: {msg}")
        self.path, self.msg = path, msg


def is_peer(nsid: str) -> bool:
    """True for the record collections of the science.alt.dataset family."""
    return nsid.startswith(PEER_NAMESPACE)


def normalise(nsid: str, record: Mapping[str, Any]) -> Mapping[str, Any]:
    """``record`` as its lexicon can check it (a copy where anything changes); raises
    ``PeerInvalid`` for a bytes ``metadata`` that breaks its limits."""
    fix = _FIXES.get(nsid)
    out: Mapping[str, Any] = record
    if fix is not None or nsid in _URI_PROPS:
        changed = dict(record)
        if fix is not None:
            fix(changed)
        for prop in _URI_PROPS.get(nsid, ()):
            v = changed.get(prop)
            if isinstance(v, str) and (m := _AT_REF.match(v)) and "@" in m[2]:
                changed[prop] = m[1] + m[2].replace("@", ":")
        out = changed
    return out


def _entry(rec: dict[str, Any]) -> None:
    meta = rec.get("metadata")
    if isinstance(meta, bytes | bytearray | memoryview):
        raw = bytes(meta)
        _check_metadata_size(len(raw))
        rec["metadata"] = {"$bytes": base64.b64encode(raw).decode("ascii")}
    elif isinstance(meta, Mapping) and set(meta) == {"$bytes"}:
        b64 = meta["$bytes"]
        if not isinstance(b64, str):
            raise PeerInvalid("metadata.$bytes", "is not a base64 string")
        try:
            raw = base64.b64decode(b64 + "=" * (-len(b64) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise PeerInvalid("metadata.$bytes", "is not base64") from None
        _check_metadata_size(len(raw))
    elif meta is not None and not isinstance(meta, Mapping):
        raise PeerInvalid("metadata", f"expected an object or bytes, got {type(meta).__name__}")
    storage = rec.get("storage")
    if isinstance(storage, Mapping) and storage.get("$type") == PEER_STORAGE_BLOBS:
        blobs = storage.get("blobs")
        if isinstance(blobs, list) and any(_bare_blob(b) for b in blobs):
            rec["storage"] = {
                **storage,
                "blobs": [{"blob": b} if _bare_blob(b) else b for b in blobs],
            }


def _bare_blob(b: Any) -> bool:
    return isinstance(b, Mapping) and b.get("$type") == "blob"


def _check_metadata_size(n: int) -> None:
    if n > PEER_METADATA_MAX_BYTES:
        raise PeerInvalid("metadata", f"is {n} bytes, over {PEER_METADATA_MAX_BYTES}")


def check(nsid: str, record: Mapping[str, Any]) -> None:
    """What the lexicon cannot check, on a record it has passed: raises ``PeerInvalid``."""
    if nsid == PEER_SCHEMA:
        _check_schema(record)


def _check_schema(rec: Mapping[str, Any]) -> None:
    version = rec.get("version")
    if isinstance(version, str) and not _SEMVER.match(version):
        raise PeerInvalid("version", f"{version[:80]!r} is not a semantic version")
    inner = rec.get("schema")
    if not isinstance(inner, Mapping) or inner.get("$type") != f"{PEER_SCHEMA}#jsonSchemaFormat":
        return  # not an object: the lexicon says so; another union member: passes untouched
    layouts = [k for k in ("content", "schemaBody") if k in inner]
    if "properties" in inner:
        layouts.append("properties")
    if len(layouts) != 1:
        raise PeerInvalid(
            "schema",
            "holds no JSON Schema (neither 'properties', 'content' nor 'schemaBody')"
            if not layouts
            else f"holds more than one JSON Schema layout ({', '.join(layouts)})",
        )
    where = "schema" if layouts[0] == "properties" else f"schema.{layouts[0]}"
    body = inner if layouts[0] == "properties" else inner[layouts[0]]
    if not isinstance(body, Mapping):
        raise PeerInvalid(where, "is not a JSON Schema object")
    props = body.get("properties")
    if not isinstance(props, Mapping):
        raise PeerInvalid(f"{where}.properties", "is not an object of field schemas")
    for name, prop in props.items():
        if not isinstance(prop, Mapping):
            raise PeerInvalid(f"{where}.properties.{name}", "is not a JSON Schema object")
    required = body.get("required", [])
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        raise PeerInvalid(f"{where}.required", "is not a list of field names")


_FIXES: dict[str, Callable[[dict[str, Any]], None]] = {PEER_ENTRY: _entry}
