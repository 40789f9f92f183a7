"""Records of the ``science.alt.dataset`` network <-> the shapes atdata's own code works with.

The PyPI ``atdata`` SDK (0.5-0.7) publishes datasets as ``science.alt.dataset.*`` records: a
schema is a JSON Schema document, an entry points at WebDataset shards through one of four
storage kinds. Rather than teach every consumer (sample type builder, AppView index, loader,
web page) a second format, this module translates at the edge:

- ``own_schema(value)``: a peer schema record (any of the three body layouts in circulation)
  -> an ``io.atdata.schema``-shaped value, which ``type_from_schema`` turns into a sample type
  whose msgpack keys are the peer's field names, so a peer-written sample decodes;
- ``entry_storage(value)`` -> ``PeerStorage`` (where each shard is, and its checksum), and
  ``own_dataset(value, did)``: an entry as a dataset view (shards in our shard shape);
- the reverse for publishing in the peer's format: ``peer_schema``, ``peer_storage``,
  ``peer_entry``, ``peer_label``.

Everything here is pure (no network, no clock except a default ``createdAt``). Errors:
``SchemaError`` naming the field for a schema that cannot be mapped, ``LexiconError`` naming
the path for an entry whose storage is malformed.
"""

from __future__ import annotations

import datetime as _dt
import itertools
import keyword
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

import braceexpand

from .errors import LexiconError, SchemaError
from .lexicon import grapheme_length
from .packable import SEMVER
from .records import (
    PEER_ENTRY,
    PEER_LABEL,
    PEER_SCHEMA,
    PEER_STORAGE_BLOBS,
    PEER_STORAGE_EXTERNAL,
    PEER_STORAGE_HTTP,
    PEER_STORAGE_S3,
    SCHEMA,
)
from .schema import storable_dtype

__all__ = [
    "JSON_SCHEMA_DRAFT_07",
    "NDARRAY_SHIM_REF",
    "PeerShard",
    "PeerStorage",
    "StorageKind",
    "entry_storage",
    "storage_kind",
    "MAX_EXPANDED_URLS",
    "expand_braces",
    "is_placeholder_checksum",
    "own_dataset",
    "own_schema",
    "peer_entry",
    "peer_label",
    "peer_schema",
    "peer_storage",
    "schema_body",
]

#: The JSON Schema dialect the peer's schema bodies declare.
JSON_SCHEMA_DRAFT_07 = "http://json-schema.org/draft-07/schema#"
#: The ``$ref`` the 0.7 SDK writes for an NDArray field (it recognises any ``$ref`` containing
#: "ndarray", which also covers the newer ``https://json-schema.alt.science/...`` prefix).
NDARRAY_SHIM_REF = "https://alt.science/schemas/atdata-ndarray-bytes/1.0.0#/$defs/ndarray"
_JSON_SCHEMA_FORMAT = f"{PEER_SCHEMA}#jsonSchemaFormat"

# Array formats other than ndarray that the peer names by a shim `$ref`: the 0.7 SDK reads
# them into `bytes` fields (its own decoding happens later, by format), so they travel as bytes.
_BYTES_SHIMS = ("sparse", "structured", "safetensors", "arrow", "tensor", "dataframe")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NAME_BAD = re.compile(r"[^A-Za-z0-9_.\-]")
# io.atdata.schema's limits, which the result of own_schema keeps
_MAX_DESCRIPTION_GRAPHEMES = 3000
_MAX_FIELDS = 1024
_MAX_FIELD_NAME = 128
_MAX_DIMS = 64
_MAX_DIM = 2**53 - 1
_MAX_LIST_DEPTH = 32  # lists of lists...: deeper is refused, not a RecursionError
_EPOCH = "1970-01-01T00:00:00.000Z"


def _now() -> str:
    now = _dt.datetime.now(_dt.UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


# --- schemas: peer -> ours ------------------------------------------------------------------


def schema_body(value: Mapping[str, Any]) -> Mapping[str, Any]:
    """The JSON Schema document inside a peer schema record, whichever layout carries it.

    Layouts: flattened (``schema.properties``; what the 0.5-0.7 SDK writes), enveloped
    (``schema.content``; the lexicon repository since v0.4.0b1) and legacy nested
    (``schema.schemaBody``). Raises ``SchemaError`` when none holds a ``properties`` object.
    """
    inner = value.get("schema")
    if not isinstance(inner, Mapping):
        raise SchemaError("peer schema record: 'schema' is not an object")
    fmt = inner.get("$type", _JSON_SCHEMA_FORMAT)
    if fmt != _JSON_SCHEMA_FORMAT:
        raise SchemaError(f"peer schema record: body format {fmt!r} is not a JSON Schema")
    for key, where in (("content", "schema.content"), ("schemaBody", "schema.schemaBody")):
        if key in inner:
            body = inner[key]
            if not isinstance(body, Mapping) or not isinstance(body.get("properties"), Mapping):
                raise SchemaError(f"peer schema record: {where} has no 'properties' object")
            return body
    if isinstance(inner.get("properties"), Mapping):
        return inner
    raise SchemaError(
        "peer schema record: 'schema' holds no JSON Schema "
        "(neither 'properties', 'content' nor 'schemaBody')"
    )


def own_schema(value: Mapping[str, Any]) -> dict[str, Any]:
    """A peer schema record value -> an ``io.atdata.schema``-shaped value.

    Field kinds: JSON Schema ``string`` -> str (``format: byte`` -> bytes), ``integer`` -> int,
    ``number`` -> float, ``boolean`` -> bool, ``array`` -> list (with its item type when
    given), an NDArray shim ``$ref`` (either URL generation; 1.1.0 ``dtype``/``shape``
    annotations kept) -> ndarray, other array-format shims -> bytes, anything else -> any.
    A field not in ``required`` is optional. The name is made a valid sample type name
    (other characters become '_'); the version must be semver. Field order: the required
    fields in the order of ``required``, then the optional ones in the order of
    ``properties`` (which, after a trip through a PDS, is DAG-CBOR key order, not the
    author's). Samples decode by field name, whatever the order.
    """
    if not isinstance(value, Mapping):
        raise SchemaError(f"a peer schema record is an object, not {type(value).__name__}")
    body = schema_body(value)
    props: Mapping[str, Any] = body["properties"]
    required = body.get("required", [])
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        raise SchemaError("peer schema record: 'required' is not a list of field names")
    if not props:
        raise SchemaError("peer schema record: the JSON Schema declares no fields")
    if len(props) > _MAX_FIELDS:
        raise SchemaError(f"peer schema record: {len(props)} fields, over {_MAX_FIELDS}")
    version = value.get("version")
    if not isinstance(version, str) or not SEMVER.match(version):
        raise SchemaError(f"peer schema record: version {version!r} is not a semantic version")
    fields = []
    # Declaration order: `required` is an array, so it keeps the order the author's class
    # declared; `properties` is a map, which a PDS returns in DAG-CBOR key order. Required
    # fields come first in their order, then the optional ones (last in a dataclass anyway,
    # where they have defaults).
    required_set = set(required)
    ordered = [r for r in dict.fromkeys(required) if r in props]
    ordered += [n for n in props if n not in required_set]
    for fname in ordered:
        prop = props[fname]
        if (
            not isinstance(fname, str)
            or len(fname) > _MAX_FIELD_NAME
            or not _IDENT.match(fname)
            or keyword.iskeyword(fname)
            or fname.startswith("__")
        ):
            raise SchemaError(f"peer schema field {fname!r}: not a usable field name")
        ftype = _own_field_type(prop, f"peer schema field {fname!r}")
        if fname not in required_set:
            ftype["optional"] = True
        fields.append({"name": fname, "type": ftype})
    out: dict[str, Any] = {
        "$type": SCHEMA,
        "name": _own_name(value.get("name")),
        "version": version,
    }
    description = value.get("description")
    if isinstance(description, str) and description:
        if grapheme_length(description) > _MAX_DESCRIPTION_GRAPHEMES:
            description = description[:_MAX_DESCRIPTION_GRAPHEMES]
        out["description"] = description
    out["fields"] = fields
    created = value.get("createdAt")
    out["createdAt"] = created if isinstance(created, str) and created else _EPOCH
    return out


def _own_name(name: Any) -> str:
    """A valid io.atdata sample type name from a peer's free-text schema name."""
    if not isinstance(name, str) or not name:
        return "PeerSample"
    cleaned = _NAME_BAD.sub("_", name)
    if not re.match(r"[A-Za-z_]", cleaned):
        cleaned = "_" + cleaned
    return cleaned[:128]


def _own_field_type(prop: Any, at: str, depth: int = 0) -> dict[str, Any]:
    if not isinstance(prop, Mapping):
        raise SchemaError(f"{at}: its JSON Schema is not an object")
    if depth > _MAX_LIST_DEPTH:
        raise SchemaError(f"{at}: arrays nested over {_MAX_LIST_DEPTH} deep")
    ref = prop.get("$ref")
    if isinstance(ref, str) and ref:
        low = ref.lower()
        if "ndarray" in low:
            return _own_ndarray(prop, at)
        if any(s in low for s in _BYTES_SHIMS):
            return {"kind": "bytes"}
        return {"kind": "any"}
    t = prop.get("type")
    if isinstance(t, list):  # ["integer", "null"]: the value may be nil
        kinds = [k for k in t if k != "null"]
        if len(kinds) != 1:
            return {"kind": "any", **({"optional": True} if "null" in t else {})}
        inner = _own_field_type({**prop, "type": kinds[0]}, at, depth)
        if "null" in t:
            inner["optional"] = True
        return inner
    if t == "string":
        if prop.get("format") == "byte" or prop.get("contentEncoding") == "base64":
            return {"kind": "bytes"}
        return {"kind": "str"}
    if t == "integer":
        return {"kind": "int"}
    if t == "number":
        return {"kind": "float"}
    if t == "boolean":
        return {"kind": "bool"}
    if t == "array":
        items = prop.get("items")
        if items is None:
            return {"kind": "list"}
        if not isinstance(items, Mapping):
            raise SchemaError(f"{at}: 'items' is not a single JSON Schema (tuples are not mapped)")
        return {"kind": "list", "item": _own_field_type(items, f"{at} items", depth + 1)}
    return {"kind": "any"}


def _own_ndarray(prop: Mapping[str, Any], at: str) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": "ndarray"}
    dtype = prop.get("dtype")
    if dtype is not None:
        out["dtype"] = storable_dtype(dtype, f"{at}: dtype").str
    shape = prop.get("shape")
    if shape is not None:
        if not isinstance(shape, list) or len(shape) > _MAX_DIMS:
            raise SchemaError(f"{at}: shape is not a list of at most {_MAX_DIMS} dimensions")
        dims = []
        for d in shape:
            if d is None:
                dims.append(-1)
            elif type(d) is int and -1 <= d <= _MAX_DIM:
                dims.append(d)
            else:
                raise SchemaError(f"{at}: shape dimension {d!r} is not an integer or null")
        out["shape"] = dims
    return out


# --- schemas: ours -> peer ------------------------------------------------------------------


def peer_schema(value: Mapping[str, Any], *, created_at: str | None = None) -> dict[str, Any]:
    """An ``io.atdata.schema`` value -> a ``science.alt.dataset.schema`` record value.

    The flattened layout with ``atdataSchemaVersion: 1``, which the 0.7 SDK reads back.
    Kinds it cannot hold (dict, nested sample, any, optional list items) raise
    ``SchemaError`` naming the field. ``own_schema`` of the result gives ``value`` back
    when its optional fields come after the required ones (the format keeps no other order).
    """
    fields = value.get("fields")
    if not isinstance(fields, list) or not fields:
        raise SchemaError("schema has no fields")
    props: dict[str, Any] = {}
    required: list[str] = []
    has_ndarray = False
    for i, f in enumerate(fields):
        if not isinstance(f, Mapping) or not isinstance(f.get("name"), str):
            raise SchemaError(f"fields[{i}] has no name")
        name: str = f["name"]
        t = f.get("type")
        if not isinstance(t, Mapping):
            raise SchemaError(f"field {name!r}: no type")
        props[name] = _peer_field_type(t, f"field {name!r}")
        has_ndarray = has_ndarray or t.get("kind") == "ndarray"
        if not t.get("optional", False):
            required.append(name)
    body: dict[str, Any] = {
        "$type": _JSON_SCHEMA_FORMAT,
        "$schema": JSON_SCHEMA_DRAFT_07,
        "type": "object",
        "properties": props,
    }
    if required:
        body["required"] = required
    if has_ndarray:
        body["arrayFormatVersions"] = {"ndarrayBytes": "1.0.0"}
    out: dict[str, Any] = {
        "$type": PEER_SCHEMA,
        "name": value.get("name"),
        "version": value.get("version"),
        "schemaType": "jsonSchema",
        "schema": body,
        "createdAt": created_at or value.get("createdAt") or _now(),
        "atdataSchemaVersion": 1,
    }
    if isinstance(value.get("description"), str) and value["description"]:
        out["description"] = value["description"]
    return out


def _peer_field_type(t: Mapping[str, Any], at: str, *, item: bool = False) -> dict[str, Any]:
    kind = t.get("kind")
    if item and t.get("optional", False):
        raise SchemaError(f"{at}: optional list items cannot be expressed in the peer's format")
    if kind == "ndarray":
        prop: dict[str, Any] = {"$ref": NDARRAY_SHIM_REF}
        if "dtype" in t:
            prop["dtype"] = t["dtype"]
        if "shape" in t:
            prop["shape"] = [None if d == -1 else d for d in t["shape"]]
        return prop
    scalar = {
        "str": {"type": "string"},
        "bytes": {"type": "string", "format": "byte", "contentEncoding": "base64"},
        "int": {"type": "integer"},
        "float": {"type": "number"},
        "bool": {"type": "boolean"},
    }
    if isinstance(kind, str) and kind in scalar:
        return dict(scalar[kind])
    if kind == "list":
        if "item" not in t:
            return {"type": "array"}
        return {"type": "array", "items": _peer_field_type(t["item"], f"{at} item", item=True)}
    raise SchemaError(f"{at}: kind {kind!r} cannot be expressed in the peer's format")


# --- storage --------------------------------------------------------------------------------

StorageKind: TypeAlias = Literal["blobs", "http", "s3", "external"]
_KIND_OF_TYPE: dict[str, StorageKind] = {
    PEER_STORAGE_BLOBS: "blobs",
    PEER_STORAGE_HTTP: "http",
    PEER_STORAGE_S3: "s3",
    PEER_STORAGE_EXTERNAL: "external",
}


def is_placeholder_checksum(checksum: Any) -> bool:
    """True for what the 0.7 SDK writes when it did not hash a shard (``algorithm: none``)."""
    return isinstance(checksum, Mapping) and checksum.get("algorithm") in ("none", "")


@dataclass(frozen=True)
class PeerShard:
    """One shard of a peer entry: where it is and what its bytes hash to.

    Exactly one of ``url`` (http/external), ``blob_cid`` (blobs: fetched from the entry
    author's PDS) or ``key`` (s3, in the storage's bucket) is set. ``algorithm``/``digest``
    are None when the record gives no checksum or the ``none`` placeholder (unverified).
    """

    url: str | None = None
    blob_cid: str | None = None
    blob: Mapping[str, Any] | None = None
    key: str | None = None
    algorithm: str | None = None
    digest: str | None = None

    @property
    def sha256(self) -> str | None:
        """The expected sha256 (lower-case hex) when the record gives one."""
        if self.algorithm == "sha256" and self.digest:
            return self.digest.lower()
        return None


@dataclass(frozen=True)
class PeerStorage:
    """Where a peer entry's shards are. ``bucket``/``endpoint``/``region``: s3 only
    (no endpoint: AWS)."""

    kind: StorageKind
    shards: tuple[PeerShard, ...]
    bucket: str | None = None
    endpoint: str | None = None
    region: str | None = None


def _bad(path: str, msg: str) -> LexiconError:
    err = LexiconError(f"{PEER_ENTRY}: {path}: {msg}")
    err.nsid, err.path = PEER_ENTRY, path
    return err


def _checksum(c: Any, path: str) -> tuple[str | None, str | None]:
    if c is None or is_placeholder_checksum(c):
        return None, None
    if not isinstance(c, Mapping):
        raise _bad(path, "a checksum is an object {algorithm, digest}")
    alg, digest = c.get("algorithm"), c.get("digest")
    if not isinstance(alg, str) or not isinstance(digest, str):
        raise _bad(path, "a checksum needs string 'algorithm' and 'digest'")
    if not digest:
        return None, None
    return alg.lower(), digest


def _str(v: Any, path: str, *, required: bool = True) -> str | None:
    if v is None and not required:
        return None
    if not isinstance(v, str) or not v:
        raise _bad(path, "expected a non-empty string")
    return v


def _list(v: Any, path: str) -> list[Any]:
    if not isinstance(v, list) or not v:
        raise _bad(path, "expected a non-empty array")
    return v


def _objects(storage: Mapping[str, Any], member: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(path, item) of each object of the storage's non-empty array `member`."""
    for i, item in enumerate(_list(storage.get(member), f"storage.{member}")):
        path = f"storage.{member}[{i}]"
        if not isinstance(item, Mapping):
            raise _bad(path, "expected an object")
        yield path, item


def _blob_cid(blob: Any, path: str) -> str:
    ref = blob.get("ref") if isinstance(blob, Mapping) else None
    if isinstance(ref, Mapping) and isinstance(ref.get("$link"), str) and ref["$link"]:
        return str(ref["$link"])
    if isinstance(ref, str) and ref:  # an untyped legacy blob: {"cid"} or a bare ref string
        return ref
    if isinstance(blob, Mapping) and isinstance(blob.get("cid"), str) and blob["cid"]:
        return str(blob["cid"])
    raise _bad(path, "a blob needs ref {'$link': cid}")


#: Most URLs one entry's brace notation may expand to: the record comes from the network, and
#: ``{0..999999999}`` would otherwise be a billion strings held in memory.
MAX_EXPANDED_URLS = 100_000

_NUMERIC_RANGE = re.compile(r"\{(-?\d+)\.\.(-?\d+)(?:\.\.-?\d+)?\}")


def expand_braces(url: str, limit: int = MAX_EXPANDED_URLS) -> list[str]:
    """``shard-{000..002}.tar`` -> three URLs (the legacy storageExternal notation).

    Raises ValueError past ``limit`` URLs, before building them (braceexpand builds each
    numeric range as a whole list, so a range's span is checked before it is expanded)."""
    if "{" not in url:
        return [url]
    for m in _NUMERIC_RANGE.finditer(url):
        span = abs(int(m.group(2)) - int(m.group(1))) + 1
        if span > limit:
            raise ValueError(f"the range {m.group(0)} names {span} URLs, over {limit}")
    urls = list(itertools.islice(braceexpand.braceexpand(url), limit + 1))
    if len(urls) > limit:
        raise ValueError(f"expands to more than {limit} URLs")
    return urls


def storage_kind(storage: Mapping[str, Any]) -> StorageKind | None:
    """Which member of the storage union ``storage`` is, by its ``$type``: matched on the
    member's name (``storageHttp``...), as the 0.7 SDK matches it, so a ``#``-qualified or
    differently prefixed type in circulation reads the same; None for anything else."""
    t = storage.get("$type")
    if not isinstance(t, str):
        return None
    for nsid, kind in _KIND_OF_TYPE.items():
        if nsid.rsplit(".", 1)[1] in t:
            return kind
    return None


def entry_storage(value: Mapping[str, Any]) -> PeerStorage:
    """Where the shards of a peer entry are (``value`` is the entry record value, or its
    ``storage`` member alone). Legacy storageExternal URLs are brace-expanded."""
    storage = value.get("storage", value)
    if not isinstance(storage, Mapping):
        raise _bad("storage", "expected an object")
    kind = storage_kind(storage)
    if kind is None:
        t = storage.get("$type")
        raise _bad("storage.$type", f"{t!r} is not a storage kind this SDK reads")
    shards: list[PeerShard] = []
    if kind == "blobs":
        for path, b in _objects(storage, "blobs"):
            # {blob, checksum?}; the oldest records list bare blobs
            blob = b.get("blob", b)
            if not isinstance(blob, Mapping):
                raise _bad(f"{path}.blob", "expected a blob object")
            alg, digest = _checksum(b.get("checksum"), f"{path}.checksum")
            cid = _blob_cid(blob, f"{path}.blob")
            shards.append(PeerShard(blob_cid=cid, blob=blob, algorithm=alg, digest=digest))
        return PeerStorage("blobs", tuple(shards))
    if kind == "http":
        for path, s in _objects(storage, "shards"):
            url = _str(s.get("url"), f"{path}.url")
            alg, digest = _checksum(s.get("checksum"), f"{path}.checksum")
            shards.append(PeerShard(url=url, algorithm=alg, digest=digest))
        return PeerStorage("http", tuple(shards))
    if kind == "s3":
        bucket = _str(storage.get("bucket"), "storage.bucket")
        endpoint = _str(storage.get("endpoint"), "storage.endpoint", required=False)
        region = _str(storage.get("region"), "storage.region", required=False)
        for path, s in _objects(storage, "shards"):
            key = _str(s.get("key"), f"{path}.key")
            alg, digest = _checksum(s.get("checksum"), f"{path}.checksum")
            shards.append(PeerShard(key=key, algorithm=alg, digest=digest))
        return PeerStorage("s3", tuple(shards), bucket=bucket, endpoint=endpoint, region=region)
    for i, u in enumerate(_list(storage.get("urls"), "storage.urls")):
        url = _str(u, f"storage.urls[{i}]")
        assert url is not None
        try:
            expanded = expand_braces(url, MAX_EXPANDED_URLS - len(shards))
        except Exception as exc:  # braceexpand raises its own error for unbalanced braces
            raise _bad(
                f"storage.urls[{i}]",
                f"brace notation does not expand (an entry names at most "
                f"{MAX_EXPANDED_URLS} URLs): {exc}",
            ) from exc
        shards.extend(PeerShard(url=x) for x in expanded)
    return PeerStorage("external", tuple(shards))


def peer_storage(storage: PeerStorage) -> dict[str, Any]:
    """A ``PeerStorage`` -> the entry's ``storage`` union member (the reverse of
    ``entry_storage``; external is written as storageHttp with placeholder checksums,
    since the legacy member is outside the entry's union)."""

    def checksum(s: PeerShard) -> dict[str, str]:
        if s.algorithm and s.digest:
            return {"algorithm": s.algorithm, "digest": s.digest}
        return {"algorithm": "none", "digest": ""}

    if storage.kind == "blobs":
        blobs = []
        for s in storage.shards:
            if s.blob is None:
                raise SchemaError("a blob shard needs its blob reference to be published")
            entry: dict[str, Any] = {"blob": dict(s.blob)}
            if s.algorithm and s.digest:
                entry["checksum"] = checksum(s)
            blobs.append(entry)
        return {"$type": PEER_STORAGE_BLOBS, "blobs": blobs}
    if storage.kind == "s3":
        out: dict[str, Any] = {"$type": PEER_STORAGE_S3, "bucket": storage.bucket}
        if storage.region:
            out["region"] = storage.region
        if storage.endpoint:
            out["endpoint"] = storage.endpoint
        out["shards"] = [{"key": s.key, "checksum": checksum(s)} for s in storage.shards]
        return out
    return {
        "$type": PEER_STORAGE_HTTP,
        "shards": [{"url": s.url, "checksum": checksum(s)} for s in storage.shards],
    }


# --- entries and labels ---------------------------------------------------------------------


def own_dataset(value: Mapping[str, Any], did: str) -> dict[str, Any]:
    """A peer entry as a dataset view: our field names, shards in our shard shape.

    Keys: ``did``, ``name``, ``schemaUri`` (the entry's schemaRef), ``description``/``tags``
    /``license`` when given, ``createdAt``, ``storage`` (``{"kind", "bucket"?, "endpoint"?,
    "region"?}``), ``shards`` and ``totals`` (``shards``, and ``samples``/``bytes`` when the
    record's ``size`` gives them). Each shard has a ``url`` (for s3: ``s3://bucket/key``, with
    ``key`` too) or a ``blob`` and its ``cid``; ``sha256`` only when the checksum is sha256,
    and ``checksum`` unless it is absent or the ``none`` placeholder.
    """
    storage = entry_storage(value)
    out: dict[str, Any] = {
        "did": did,
        "name": value.get("name"),
        "schemaUri": value.get("schemaRef"),
    }
    for key in ("description", "license"):
        if isinstance(value.get(key), str) and value[key]:
            out[key] = value[key]
    tags = value.get("tags")
    out["tags"] = [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else []
    out["createdAt"] = value.get("createdAt")
    where: dict[str, Any] = {"kind": storage.kind}
    for key in ("bucket", "endpoint", "region"):
        if getattr(storage, key):
            where[key] = getattr(storage, key)
    out["storage"] = where
    shards = []
    for s in storage.shards:
        shard: dict[str, Any] = {}
        if s.url is not None:
            shard["url"] = s.url
        if s.blob is not None:
            shard["blob"] = dict(s.blob)
            shard["cid"] = s.blob_cid
        if s.key is not None:
            shard["url"] = f"s3://{storage.bucket}/{s.key}"
            shard["key"] = s.key
        if s.sha256:
            shard["sha256"] = s.sha256
        if s.algorithm:
            shard["checksum"] = {"algorithm": s.algorithm, "digest": s.digest}
        shards.append(shard)
    out["shards"] = shards
    totals: dict[str, int] = {"shards": len(shards)}
    size = value.get("size")
    if isinstance(size, Mapping):
        for key in ("samples", "bytes"):
            n = size.get(key)
            if type(n) is int and n >= 0:
                totals[key] = n
    out["totals"] = totals
    return out


def peer_entry(
    *,
    name: str,
    schema_uri: str,
    storage: PeerStorage,
    description: str | None = None,
    tags: Sequence[str] = (),
    license: str | None = None,
    samples: int | None = None,
    size_bytes: int | None = None,
    metadata: Mapping[str, Any] | None = None,
    created_at: str | None = None,
) -> dict[str, Any]:
    """A ``science.alt.dataset.entry`` record value (as the 0.7 SDK writes one)."""
    out: dict[str, Any] = {
        "$type": PEER_ENTRY,
        "name": name,
        "schemaRef": schema_uri,
        "storage": peer_storage(storage),
        "createdAt": created_at or _now(),
    }
    if description:
        out["description"] = description
    if metadata is not None:
        out["metadata"] = dict(metadata)
    if tags:
        out["tags"] = list(tags)
    size: dict[str, int] = {"shards": len(storage.shards)} if storage.shards else {}
    if samples is not None:
        size["samples"] = samples
    if size_bytes is not None:
        size["bytes"] = size_bytes
    if size:
        out["size"] = size
    if license:
        out["license"] = license
    return out


def peer_label(
    *,
    name: str,
    dataset_uri: str,
    version: str | None = None,
    description: str | None = None,
    created_at: str | None = None,
) -> dict[str, Any]:
    """A ``science.alt.dataset.label`` record value naming an entry."""
    out: dict[str, Any] = {
        "$type": PEER_LABEL,
        "name": name,
        "datasetUri": dataset_uri,
        "createdAt": created_at or _now(),
    }
    if version is not None:
        out["version"] = version
    if description:
        out["description"] = description
    return out
