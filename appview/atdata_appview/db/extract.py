"""Turn verified ``io.atdata.*`` records into the columns the index searches and sorts on.

The lexicons (``lexicons/io/atdata/{schema,dataset,lens}.json``) are the authority; ingest has
already validated each record against them. This module only picks fields out, tolerating
optional ones being absent, so a record that is valid but sparse still indexes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from atdata.records import DATASET, LENS, SCHEMA

__all__ = ["DATASET", "LENS", "SCHEMA"]


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
        created_at=_str(record.get("createdAt")),
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


def dataset_row(record: Mapping[str, Any]) -> DatasetRow:
    shards = _shards(record)
    tags_raw = record.get("tags")
    tags = (
        sorted({t.strip().lower() for t in tags_raw if isinstance(t, str) and t.strip()})
        if isinstance(tags_raw, list)
        else []
    )
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
        created_at=_str(record.get("createdAt")),
        shards=shards,
        lineage=lineage_edges(record),
    )


def lens_row(record: Mapping[str, Any]) -> LensRow:
    source, _ = _ref(record.get("source", record.get("sourceSchema")))
    target, _ = _ref(record.get("target", record.get("targetSchema")))
    return LensRow(
        name=_str(record.get("name")),
        description=_str(record.get("description")),
        source_schema=source,
        target_schema=target,
        created_at=_str(record.get("createdAt")),
    )
