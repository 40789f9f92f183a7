"""Croissant 1.1 metadata (JSON-LD) for a published dataset.

Croissant (mlcommons.org/croissant) is the metadata format that dataset tools read: Hugging
Face serves it for its datasets, and loaders such as `mlcroissant` or TFDS take it as input.
One function builds the document from what defines a dataset here (the dataset record, its
schema record and its author's identity), so `atdata export croissant` and the AppView's
`croissant.json` write the same thing. The `@context` is inline: a reader never has to fetch
it. An entry of the `science.alt.dataset` network is read as our records first
(`peer_croissant_document`), so it is described by the same code.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import numpy as np

from .records import DATASET, Record

__all__ = [
    "CROISSANT_CONTEXT",
    "CROISSANT_VERSION",
    "Author",
    "croissant_document",
    "peer_croissant_document",
]

CROISSANT_VERSION = "http://mlcommons.org/croissant/1.1"

#: The Croissant 1.1 JSON-LD context (as the specification gives it), plus `prov` for lineage.
CROISSANT_CONTEXT: dict[str, Any] = {
    "@language": "en",
    "@vocab": "https://schema.org/",
    "arrayShape": "cr:arrayShape",
    "citeAs": "cr:citeAs",
    "column": "cr:column",
    "conformsTo": "dct:conformsTo",
    "containedIn": "cr:containedIn",
    "cr": "http://mlcommons.org/croissant/",
    "rai": "http://mlcommons.org/croissant/RAI/",
    "data": {"@id": "cr:data", "@type": "@json"},
    "dataType": {"@id": "cr:dataType", "@type": "@vocab"},
    "dct": "http://purl.org/dc/terms/",
    "equivalentProperty": "cr:equivalentProperty",
    "examples": {"@id": "cr:examples", "@type": "@json"},
    "extract": "cr:extract",
    "field": "cr:field",
    "fileProperty": "cr:fileProperty",
    "fileObject": "cr:fileObject",
    "fileSet": "cr:fileSet",
    "format": "cr:format",
    "includes": "cr:includes",
    "isArray": "cr:isArray",
    "isLiveDataset": "cr:isLiveDataset",
    "jsonPath": "cr:jsonPath",
    "key": "cr:key",
    "md5": "cr:md5",
    "parentField": "cr:parentField",
    "path": "cr:path",
    "prov": "http://www.w3.org/ns/prov#",
    "recordSet": "cr:recordSet",
    "references": "cr:references",
    "regex": "cr:regex",
    "repeated": "cr:repeated",
    "replace": "cr:replace",
    "samplingRate": "cr:samplingRate",
    "sc": "https://schema.org/",
    "separator": "cr:separator",
    "source": "cr:source",
    "subField": "cr:subField",
    "transform": "cr:transform",
}

# Croissant names the well-known splits; other names stay plain text.
_SPLIT_URLS = {
    "train": "cr:TrainingSplit",
    "validation": "cr:ValidationSplit",
    "test": "cr:TestSplit",
}
_SCALAR_TYPES = {
    "str": "sc:Text",
    "int": "sc:Integer",
    "float": "sc:Float",
    "bool": "sc:Boolean",
    "bytes": "sc:Text",
    "any": "sc:Text",
    "dict": "sc:Text",
}
_DTYPE_TYPES = {
    "f2": "cr:Float16",
    "f4": "cr:Float32",
    "f8": "cr:Float64",
    "i1": "cr:Int8",
    "i2": "cr:Int16",
    "i4": "cr:Int32",
    "i8": "cr:Int64",
    "u1": "cr:UInt8",
    "u2": "cr:UInt16",
    "u4": "cr:UInt32",
    "u8": "cr:UInt64",
    "b1": "sc:Boolean",
}
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]")


@dataclass(frozen=True)
class Author:
    """Who published the dataset: DID, handle (None when unknown) and PDS endpoint."""

    did: str
    handle: str | None = None
    pds: str | None = None


def _spdx_urls(license_expr: str) -> list[str]:
    """One spdx.org URL per license identifier of an SPDX expression."""
    ids = re.findall(r"[A-Za-z0-9][A-Za-z0-9.\-]*\+?", license_expr)
    return [
        f"https://spdx.org/licenses/{i.rstrip('+')}.html"
        for i in ids
        if i not in ("AND", "OR", "WITH")
    ]


def _content_url(record: Mapping[str, Any], shard: Mapping[str, Any], author: Author) -> str:
    storage = record.get("storage") or {}
    kind = str(storage.get("$type", ""))
    if kind == f"{DATASET}#blobStorage":
        link = shard["blob"]["ref"]["$link"]
        pds = (author.pds or "").rstrip("/")
        return f"{pds}/xrpc/com.atproto.sync.getBlob?" + urlencode({"did": author.did, "cid": link})
    if kind == f"{DATASET}#s3Storage":
        key = quote(str(shard["key"]))
        if storage.get("endpoint"):
            return f"{str(storage['endpoint']).rstrip('/')}/{storage['bucket']}/{key}"
        return f"s3://{storage['bucket']}/{key}"
    return str(shard["url"])


def _dtype_type(dtype: str | None) -> str:
    if not dtype:
        return "sc:Float"
    try:
        dt = np.dtype(dtype)
    except TypeError:
        return "sc:Text"
    return _DTYPE_TYPES.get(f"{dt.kind}{dt.itemsize}", "sc:Text")


def _shape(shape: Sequence[int] | None) -> str | None:
    if shape is None:
        return None
    return ",".join(str(int(d)) for d in shape) if shape else None


class _Fields:
    """Croissant fields for schema fields (nested sample types become sub-fields)."""

    def __init__(self, schema: Mapping[str, Any], record: Mapping[str, Any]) -> None:
        self.types = {
            str(t.get("name")): t for t in schema.get("types") or [] if isinstance(t, Mapping)
        }
        self.observed = {
            str(a.get("field")): a for a in record.get("arrays") or [] if isinstance(a, Mapping)
        }

    def field(self, prefix: str, path: str, f: Mapping[str, Any], depth: int = 0) -> dict[str, Any]:
        name = str(f.get("name"))
        fid = f"{prefix}/{_ID_UNSAFE.sub('_', name)}"
        t: Mapping[str, Any] = f.get("type") or {}
        kind = str(t.get("kind", "any"))
        out: dict[str, Any] = {"@type": "cr:Field", "@id": fid, "name": name}
        notes = [f"atdata kind {kind}"]
        if t.get("optional"):
            notes.append("may be null")
        json_path = f"{path}.{name}"
        if kind == "ndarray":
            seen = self.observed.get(name) if depth == 0 else None
            dtype = t.get("dtype") or (seen or {}).get("dtype")
            out["dataType"] = _dtype_type(dtype)
            out["isArray"] = True
            shape = _shape(t.get("shape") if "shape" in t else (seen or {}).get("shape"))
            if shape:
                out["arrayShape"] = shape
            notes.append(f"dtype {dtype or 'any'}")
        elif kind == "list":
            item: Mapping[str, Any] = t.get("item") or {}
            item_kind = str(item.get("kind", "any"))
            out["dataType"] = _SCALAR_TYPES.get(item_kind, "sc:Text")
            out["isArray"] = True
            out["arrayShape"] = "-1"
            notes.append(f"items of kind {item_kind}")
        elif kind == "sample" and str(t.get("sample")) in self.types and depth < 8:
            nested = self.types[str(t.get("sample"))]
            out["dataType"] = "sc:Thing"
            out["subField"] = [
                self.field(fid, json_path, sub, depth + 1)
                for sub in nested.get("fields") or []
                if isinstance(sub, Mapping)
            ]
            notes.append(f"a nested {nested.get('name')}")
        else:
            out["dataType"] = _SCALAR_TYPES.get(kind, "sc:Text")
        out["description"] = "; ".join(notes)
        out["source"] = {"fileSet": {"@id": "sample-files"}, "extract": {"jsonPath": json_path}}
        return out


def _cite_as(record: Mapping[str, Any], author: Author, uri: str, url: str, version: str) -> str:
    name = str(record.get("name", "dataset"))
    key = _ID_UNSAFE.sub("_", f"{author.handle or author.did}_{name}_{version}")
    year = str(record.get("createdAt", ""))[:4]
    return (
        f"@misc{{{key},\n  title = {{{name} (version {version})}},\n"
        f"  author = {{{author.handle or author.did}}},\n  year = {{{year}}},\n"
        f"  howpublished = {{\\url{{{url}}}}},\n  note = {{{uri}}}\n}}"
    )


def _file_object(
    i: int, shard: Mapping[str, Any], record: Mapping[str, Any], author: Author
) -> dict[str, Any]:
    """One shard as a `cr:FileObject`; its size, sample count and sha256 when known (a peer
    entry's shard may have none of them)."""
    out: dict[str, Any] = {
        "@type": "cr:FileObject",
        "@id": f"shard-{i:06d}",
        "name": f"shard-{i:06d}.tar",
        "description": f"{shard['samples']} samples"
        if shard.get("samples") is not None
        else "a tar shard of samples",
        "contentUrl": _content_url(record, shard, author),
    }
    if shard.get("bytes") is not None:
        out["contentSize"] = f"{int(shard['bytes'])} B"
    if shard.get("sha256"):
        out["sha256"] = str(shard["sha256"])
    out["encodingFormat"] = "application/x-tar"
    return out


def peer_croissant_document(
    entry: Record,
    schema: Record,
    author: Author,
    *,
    version: str | None = None,
    page_url: str | None = None,
) -> dict[str, Any]:
    """The Croissant document of a `science.alt.dataset.entry` and its schema record.

    Both are read as our records (`atdata.peer.own_dataset`/`own_schema`) and described by
    `croissant_document`. `version` is a label's (an entry has none). A shard gets a sha256
    only when the record gives one (the `none` placeholder gives none), a size only for a
    blob; S3 shards are addressed through the storage's endpoint (else `s3://`).
    """
    from .peer import own_dataset, own_schema

    view = own_dataset(entry.value, author.did)
    where = view["storage"]
    shards = []
    for s in view["shards"]:
        shard: dict[str, Any] = {"sha256": s.get("sha256")}
        if "blob" in s:
            pds = (author.pds or "").rstrip("/")
            query = urlencode({"did": author.did, "cid": s["cid"]})
            shard["url"] = f"{pds}/xrpc/com.atproto.sync.getBlob?{query}"
            size = s["blob"].get("size")
            shard["bytes"] = size if type(size) is int and size >= 0 else None
        elif "key" in s and where.get("endpoint"):
            shard["url"] = (
                f"{str(where['endpoint']).rstrip('/')}/{where['bucket']}/{quote(s['key'])}"
            )
        else:
            shard["url"] = s["url"]
        shards.append(shard)
    record = {
        key: view[key]
        for key in ("name", "description", "license", "tags", "createdAt")
        if view.get(key)
    }
    if version:
        record["version"] = version
    return croissant_document(
        Record(entry.uri, entry.cid, record),
        Record(schema.uri, schema.cid, own_schema(schema.value)),
        author,
        shards=shards,
        page_url=page_url,
    )


def croissant_document(
    dataset: Record,
    schema: Record,
    author: Author,
    *,
    shards: Sequence[Mapping[str, Any]] | None = None,
    page_url: str | None = None,
) -> dict[str, Any]:
    """The Croissant 1.1 JSON-LD document of `dataset` (a dataset record) and its `schema`.

    `shards` is the shard list when the record keeps it in a manifest blob (else the
    record's own). `page_url` is the dataset's web page (an AppView's); without one the
    at:// URI stands in. One `cr:FileObject` per shard, splits as a `cr:Split` record set,
    one record set of samples with a field per schema field, and `prov:wasDerivedFrom` from
    the record's `derivedFrom` lineage when it has one.
    """
    record = dataset.value
    entries = list(shards if shards is not None else record.get("shards") or [])
    version = str(record.get("version") or "0.0.0")
    url = page_url or dataset.uri
    name = str(record.get("name", ""))
    creator: dict[str, Any] = {
        "@type": "sc:Person",
        "name": author.handle or author.did,
        "identifier": author.did,
    }
    if author.handle:
        creator["alternateName"] = f"@{author.handle}"
    doc: dict[str, Any] = {
        "@context": copy.deepcopy(CROISSANT_CONTEXT),  # readers may edit theirs
        "@type": "sc:Dataset",
        "conformsTo": CROISSANT_VERSION,
        "name": name,
        "description": str(record.get("description") or f"{name}, an atdata dataset"),
        "url": url,
        "identifier": dataset.uri,
        "version": version,
        "creator": creator,
        "citeAs": _cite_as(record, author, dataset.uri, url, version),
    }
    if record.get("license"):
        doc["license"] = _spdx_urls(str(record["license"]))
    if record.get("createdAt"):
        doc["datePublished"] = str(record["createdAt"])
        doc["dateCreated"] = str(record["createdAt"])
    if record.get("tags"):
        doc["keywords"] = [str(t) for t in record["tags"]]
    derived = [
        d for d in record.get("derivedFrom") or [] if isinstance(d, Mapping) and d.get("dataset")
    ]
    if derived:
        doc["prov:wasDerivedFrom"] = [
            {"@id": str(d["dataset"].get("uri")), "sc:description": str(d.get("relation", ""))}
            for d in derived
        ]

    files = [_file_object(i, e, record, author) for i, e in enumerate(entries)]
    files.append(
        {
            "@type": "cr:FileSet",
            "@id": "sample-files",
            "name": "sample-files",
            "description": "One msgpack map per sample (WebDataset member <key>.msgpack)",
            "containedIn": [{"@id": f["@id"]} for f in files],
            "encodingFormat": "application/msgpack",
            "includes": "*.msgpack",
        }
    )
    doc["distribution"] = files

    fields = _Fields(schema.value, record)
    sample_fields = [
        fields.field("samples", "$", f)
        for f in schema.value.get("fields") or []
        if isinstance(f, Mapping)
    ]
    record_sets: list[dict[str, Any]] = []
    splits = [s for s in record.get("splits") or [] if isinstance(s, Mapping) and s.get("name")]
    if splits:
        record_sets.append(
            {
                "@type": "cr:RecordSet",
                "@id": "splits",
                "name": "splits",
                "dataType": "cr:Split",
                "key": {"@id": "splits/name"},
                "field": [
                    {
                        "@type": "cr:Field",
                        "@id": "splits/name",
                        "name": "name",
                        "dataType": "sc:Text",
                    },
                    {"@type": "cr:Field", "@id": "splits/url", "name": "url", "dataType": "sc:URL"},
                ],
                "data": [
                    {
                        "splits/name": str(s["name"]),
                        "splits/url": _SPLIT_URLS.get(str(s["name"]), str(s["name"])),
                    }
                    for s in splits
                ],
            }
        )
        sample_fields.append(
            {
                "@type": "cr:Field",
                "@id": "samples/split",
                "name": "split",
                "description": "The split of the shard holding the sample",
                "dataType": "sc:Text",
                "references": {"field": {"@id": "splits/name"}},
                "source": {
                    "fileSet": {"@id": "sample-files"},
                    "extract": {"fileProperty": "fullpath"},
                },
            }
        )
    schema_v = schema.value
    record_sets.append(
        {
            "@type": "cr:RecordSet",
            "@id": "samples",
            "name": "samples",
            "description": (
                f"Samples of type {schema_v.get('name')} {schema_v.get('version')} "
                f"(schema {schema.uri})"
            ),
            "field": sample_fields,
        }
    )
    doc["recordSet"] = record_sets
    return doc
