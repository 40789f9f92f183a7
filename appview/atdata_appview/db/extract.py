"""Turn verified records of both families into the columns the index searches and sorts on.

The lexicons (``lexicons/io/atdata/*.json`` and ``lexicons/science/alt/dataset/*.json``) are
the authority; ingest has already validated each record against them. This module only picks
fields out, tolerating optional ones being absent, so a record that is valid but sparse still
indexes. A peer entry (``science.alt.dataset.entry``) becomes a dataset row like ours, its
storage (HTTP, S3, blobs or the legacy URL list) shard rows; a peer schema a schema row whose
field names come from its JSON Schema, in whichever of the three body forms it was written.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from atdata.errors import SchemaError
from atdata.peer import schema_body, storage_kind
from atdata.records import (
    DATASET,
    LENS,
    PEER_ENTRY,
    PEER_SCHEMA,
    SCHEMA,
)

__all__ = ["DATASET", "LENS", "PEER_ENTRY", "PEER_SCHEMA", "SCHEMA"]


def at_uri(did: str, collection: str, rkey: str) -> str:
    return f"at://{did}/{collection}/{rkey}"


def _ref(value: Any) -> tuple[str | None, str | None]:
    """(uri, cid) of a strong ref (``{"uri", "cid"}``) or a bare at-uri string."""
    if isinstance(value, str):
        return value, None
    if isinstance(value, Mapping):
        uri = value.get("uri")
        cid = value.get("cid")
        return (uri if isinstance(uri, str) else None, cid if isinstance(cid, str) else None)
    return None, None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _first_int(*values: Any) -> int | None:
    """The first value that is an integer (0 included)."""
    for value in values:
        if _int(value) is not None:
            return value
    return None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


#: Width of the ``created_at`` columns: an RFC 3339 datetime with more fractional digits than
#: that is valid but is stored as the time it was indexed rather than break the write.
MAX_CREATED = 40


def _created(record: Mapping[str, Any]) -> str | None:
    return _fits(record.get("createdAt"), MAX_CREATED)


def _fits(value: Any, width: int) -> str | None:
    """A string short enough for its column (a longer one names nothing we could match)."""
    return value if isinstance(value, str) and len(value) <= width else None


def _blob_cid(blob: Any) -> str | None:
    """CID of a blob ref in its JSON form (``{"$type": "blob", "ref": {"$link": ...}}``)."""
    if not isinstance(blob, Mapping):
        return None
    ref = blob.get("ref")
    if isinstance(ref, Mapping):
        return _str(ref.get("$link"))
    return _str(ref) or _str(blob.get("cid"))


@dataclass(slots=True)
class SchemaRow:
    name: str | None
    version: str | None
    description: str | None
    field_names: list[str]
    created_at: str | None


@dataclass(slots=True)
class ShardRow:
    position: int
    url: str | None
    blob_cid: str | None
    size: int | None
    sha256: str | None
    samples: int | None
    detail: dict[str, Any]


@dataclass(slots=True)
class LineageEdge:
    """One ``derivedFrom`` entry: this dataset was derived from ``source_uri``."""

    position: int
    source_uri: str
    source_cid: str | None
    relation: str
    lens_uri: str | None


@dataclass(slots=True)
class DatasetRow:
    name: str | None
    version: str | None
    description: str | None
    tags: list[str]
    license: str | None
    samples: int | None
    bytes: int | None
    schema_uri: str | None
    schema_cid: str | None
    created_at: str | None
    shards: list[ShardRow] = field(default_factory=list)
    lineage: list[LineageEdge] = field(default_factory=list)


@dataclass(slots=True)
class LensRow:
    name: str | None
    description: str | None
    source_schema: str | None
    target_schema: str | None
    created_at: str | None


def schema_row(record: Mapping[str, Any]) -> SchemaRow:
    fields = record.get("fields")
    names = [
        f["name"]
        for f in (fields if isinstance(fields, list) else [])
        if isinstance(f, Mapping) and isinstance(f.get("name"), str)
    ]
    return SchemaRow(
        name=_str(record.get("name")),
        version=_str(record.get("version")),
        description=_str(record.get("description")),
        field_names=names,
        created_at=_created(record),
    )


def _shards(record: Mapping[str, Any]) -> list[ShardRow]:
    raw = record.get("shards")
    storage = record.get("storage")
    bucket = storage.get("bucket") if isinstance(storage, Mapping) else None
    out: list[ShardRow] = []
    for i, shard in enumerate(raw if isinstance(raw, list) else []):
        if not isinstance(shard, Mapping):
            continue
        blob = shard.get("blob")
        url = _str(shard.get("url"))
        key = _str(shard.get("key"))
        if url is None and key is not None:
            url = f"s3://{bucket}/{key}" if isinstance(bucket, str) else key
        out.append(
            ShardRow(
                position=i,
                url=url,
                blob_cid=_blob_cid(blob),
                size=_first_int(
                    shard.get("bytes"),
                    shard.get("size"),
                    blob.get("size") if isinstance(blob, Mapping) else None,
                ),
                sha256=_str(shard.get("sha256")),
                samples=_first_int(shard.get("samples"), shard.get("sampleCount")),
                detail=dict(shard),
            )
        )
    return out


#: Longest URI an edge keeps (the column's width); a longer one names no dataset we index.
MAX_EDGE_URI = 512
MAX_RELATION = 64


def lineage_edges(record: Mapping[str, Any]) -> list[LineageEdge]:
    """The usable entries of a dataset record's ``derivedFrom`` (malformed ones skipped)."""
    raw = record.get("derivedFrom")
    out: list[LineageEdge] = []
    seen: set[str] = set()
    for i, entry in enumerate(raw if isinstance(raw, list) else []):
        if not isinstance(entry, Mapping):
            continue
        uri, cid = _ref(entry.get("dataset"))
        if not uri or not uri.startswith("at://") or len(uri) > MAX_EDGE_URI or uri in seen:
            continue
        seen.add(uri)
        relation = _str(entry.get("relation")) or "other"
        lens_uri, _ = _ref(entry.get("lens"))
        out.append(
            LineageEdge(
                position=i,
                source_uri=uri,
                source_cid=cid if cid is not None and len(cid) <= 128 else None,
                relation=relation[:MAX_RELATION],
                lens_uri=lens_uri
                if lens_uri is not None and len(lens_uri) <= MAX_EDGE_URI
                else None,
            )
        )
    return out


def _tags(record: Mapping[str, Any]) -> list[str]:
    raw = record.get("tags")
    if not isinstance(raw, list):
        return []
    return sorted({t.strip().lower() for t in raw if isinstance(t, str) and t.strip()})


def dataset_row(record: Mapping[str, Any]) -> DatasetRow:
    shards = _shards(record)
    tags = _tags(record)
    schema_uri, schema_cid = _ref(record.get("schema"))
    totals = record.get("totals")
    totals = totals if isinstance(totals, Mapping) else {}
    samples = _int(totals.get("samples"))
    if samples is None:
        samples = _int(record.get("samples"))
    if samples is None and shards and all(s.samples is not None for s in shards):
        samples = sum(s.samples or 0 for s in shards)
    size = _int(totals.get("bytes"))
    if size is None:
        size = _int(record.get("bytes"))
    if size is None and shards and all(s.size is not None for s in shards):
        size = sum(s.size or 0 for s in shards)
    license_ = record.get("license")
    if isinstance(license_, Mapping):  # a license object, e.g. {"id": "CC-BY-4.0", ...}
        license_ = license_.get("id") or license_.get("spdx") or license_.get("name")
    return DatasetRow(
        name=_str(record.get("name")),
        version=_str(record.get("version")),
        description=_str(record.get("description")),
        tags=tags,
        license=_str(license_),
        samples=samples,
        bytes=size,
        schema_uri=schema_uri,
        schema_cid=schema_cid,
        created_at=_created(record),
        shards=shards,
        lineage=lineage_edges(record),
    )


@dataclass(slots=True)
class LabelRow:
    name: str | None
    version: str | None
    dataset_uri: str | None
    description: str | None
    created_at: str | None


@dataclass(slots=True)
class LensVerificationRow:
    lens_uri: str | None
    lens_cid: str | None
    method: str | None
    created_at: str | None


def label_row(record: Mapping[str, Any]) -> LabelRow:
    """A ``science.alt.dataset.label``: its entry's URI is kept even if that entry is not
    (or not yet) indexed."""
    return LabelRow(
        name=_fits(record.get("name"), 512),
        version=_fits(record.get("version"), 128),
        dataset_uri=_fits(record.get("datasetUri"), MAX_EDGE_URI),
        description=_str(record.get("description")),
        created_at=_created(record),
    )


def lens_verification_row(record: Mapping[str, Any]) -> LensVerificationRow:
    lens_uri, lens_cid = _ref(record.get("lens"))
    return LensVerificationRow(
        lens_uri=_fits(lens_uri, MAX_EDGE_URI),
        lens_cid=_fits(_str(record.get("lensCommit")) or lens_cid, 128),
        method=_fits(record.get("verificationMethod"), 64),
        created_at=_created(record),
    )


def lens_row(record: Mapping[str, Any]) -> LensRow:
    source, _ = _ref(record.get("source", record.get("sourceSchema")))
    target, _ = _ref(record.get("target", record.get("targetSchema")))
    return LensRow(
        name=_str(record.get("name")),
        description=_str(record.get("description")),
        source_schema=source,
        target_schema=target,
        created_at=_created(record),
    )


# -- the peer family (science.alt.dataset.*) ------------------------------------------------------


def peer_field_names(record: Mapping[str, Any]) -> list[str]:
    """Field names of a peer schema: the properties of its JSON Schema, in whichever of the
    three body layouts it was written (`atdata.peer.schema_body`); none when it has none."""
    try:
        properties = schema_body(record)["properties"]
    except SchemaError:
        return []
    return [name for name in properties if isinstance(name, str)]


def peer_schema_row(record: Mapping[str, Any]) -> SchemaRow:
    return SchemaRow(
        name=_fits(record.get("name"), 512),
        version=_fits(record.get("version"), 64),
        description=_str(record.get("description")),
        field_names=peer_field_names(record),
        created_at=_created(record),
    )


def _checksum_sha256(shard: Mapping[str, Any]) -> str | None:
    """The digest of a shard's checksum when its algorithm is sha256 (placeholders such as
    ``{"algorithm": "none"}`` and other algorithms give none; ``detail`` keeps them)."""
    checksum = shard.get("checksum")
    if not isinstance(checksum, Mapping) or checksum.get("algorithm") != "sha256":
        return None
    digest = checksum.get("digest")
    if isinstance(digest, str) and len(digest) == 64:
        return digest.lower()
    return None


def _peer_shard(position: int, shard: Mapping[str, Any], url: str | None) -> ShardRow:
    blob = shard.get("blob")
    return ShardRow(
        position=position,
        url=url,
        blob_cid=_blob_cid(blob),
        size=_int(blob.get("size")) if isinstance(blob, Mapping) else None,
        sha256=_checksum_sha256(shard),
        samples=None,
        detail=dict(shard),
    )


def peer_shards(storage: Any) -> list[ShardRow]:
    """Shard rows of a peer entry's ``storage``, whichever of the four kinds it is."""
    if not isinstance(storage, Mapping):
        return []
    kind = storage_kind(storage)
    out: list[ShardRow] = []
    if kind == "external":  # legacy: a list of URLs (brace patterns kept as written)
        urls = storage.get("urls")
        for i, listed in enumerate(urls if isinstance(urls, list) else []):
            if isinstance(listed, str):
                out.append(
                    ShardRow(
                        position=i,
                        url=listed,
                        blob_cid=None,
                        size=None,
                        sha256=None,
                        samples=None,
                        detail={"url": listed},
                    )
                )
        return out
    items = storage.get("blobs" if kind == "blobs" else "shards")
    bucket = _str(storage.get("bucket"))
    for i, shard in enumerate(items if isinstance(items, list) else []):
        if not isinstance(shard, Mapping):
            continue
        url: str | None = None
        if kind == "http":
            url = _str(shard.get("url"))
        elif kind == "s3":
            key = _str(shard.get("key"))
            url = f"s3://{bucket}/{key}" if bucket and key else key
        out.append(_peer_shard(i, shard, url))
    return out


def peer_entry_row(record: Mapping[str, Any]) -> DatasetRow:
    """A ``science.alt.dataset.entry`` as a dataset row: no version (labels name versions),
    the schema by its ``schemaRef`` URI, totals from ``size`` when given."""
    shards = peer_shards(record.get("storage"))
    size = record.get("size")
    size = size if isinstance(size, Mapping) else {}
    total_bytes = _int(size.get("bytes"))
    if total_bytes is None and shards and all(s.size is not None for s in shards):
        total_bytes = sum(s.size or 0 for s in shards)
    return DatasetRow(
        name=_fits(record.get("name"), 512),
        version=None,
        description=_str(record.get("description")),
        tags=[t for t in _tags(record) if len(t) <= 128],
        license=_fits(record.get("license"), 128),
        samples=_int(size.get("samples")),
        bytes=total_bytes,
        schema_uri=_fits(record.get("schemaRef"), MAX_EDGE_URI),
        schema_cid=None,
        created_at=_created(record),
        shards=shards,
    )


def dataset_row_of(collection: str, record: Mapping[str, Any]) -> DatasetRow:
    """The dataset row of an ``io.atdata.dataset`` or a ``science.alt.dataset.entry``."""
    return peer_entry_row(record) if collection == PEER_ENTRY else dataset_row(record)


def schema_row_of(collection: str, record: Mapping[str, Any]) -> SchemaRow:
    return peer_schema_row(record) if collection == PEER_SCHEMA else schema_row(record)
