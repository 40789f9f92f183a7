"""Records of the peer network (``science.alt.dataset.*``) shaped as the atdata 0.7 SDK writes
them: each schema-body form, each storage kind, labels, lenses and lens verifications. Plain
dicts, for writing to a PDS or straight into an index."""

from __future__ import annotations

from typing import Any

NS = "science.alt.dataset"
PEER_SCHEMA = f"{NS}.schema"
PEER_ENTRY = f"{NS}.entry"
PEER_LENS = f"{NS}.lens"
PEER_LABEL = f"{NS}.label"
PEER_LENS_VERIFICATION = f"{NS}.lensVerification"
#: As the 0.7 SDK writes datetimes (`datetime.isoformat()`, `+00:00`, not `Z`).
CREATED = "2026-03-01T12:00:00.123456+00:00"
NDARRAY_REF = "https://alt.science/schemas/atdata-ndarray-bytes/1.0.0#/$defs/ndarray"
SHA = "cd" * 32

SCHEMA_FORMS = ("flat", "envelope", "legacy")
STORAGE_KINDS = ("http", "s3", "blobs", "external")


def json_schema(fields: dict[str, Any]) -> dict[str, Any]:
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": fields,
        "required": list(fields),
    }


#: A sample type with an NDArray, a string, an int and a float (field order kept).
FIELDS: dict[str, Any] = {
    "image": {"$ref": NDARRAY_REF},
    "label": {"type": "string"},
    "index": {"type": "integer"},
    "score": {"type": "number"},
}


def schema_record(
    name: str = "peer.Sample",
    version: str = "1.0.0",
    form: str = "flat",
    fields: dict[str, Any] | None = None,
    created: str = CREATED,
) -> dict[str, Any]:
    """A schema record in one of the three body forms."""
    doc = json_schema(FIELDS if fields is None else fields)
    record: dict[str, Any] = {
        "$type": PEER_SCHEMA,
        "name": name,
        "version": version,
        "schemaType": "jsonSchema",
        "createdAt": created,
    }
    fmt = f"{PEER_SCHEMA}#jsonSchemaFormat"
    if form == "flat":  # what the 0.5-0.7 SDK writes
        record["schema"] = {"$type": fmt, **doc, "arrayFormatVersions": {"ndarrayBytes": "1.0.0"}}
        record["atdataSchemaVersion"] = 1
    elif form == "envelope":  # the lexicon repository since v0.4.0b1
        record["schema"] = {"$type": fmt, "draft": "draft-07", "content": doc}
        record["$atdataSchemaVersion"] = 1
    elif form == "legacy":
        record["schema"] = {"$type": fmt, "schemaBody": doc}
    else:
        raise ValueError(form)
    return record


def storage(kind: str, *, shards: int = 2, blobs: list[dict[str, Any]] | None = None) -> dict:
    """A storage union member of `kind`; `blobs` are blob refs returned by uploadBlob."""
    checksum = {"algorithm": "sha256", "digest": SHA}
    if kind == "http":
        return {
            "$type": f"{NS}.storageHttp",
            "shards": [
                {"url": f"https://data.example/peer-{i:06d}.tar", "checksum": checksum}
                for i in range(shards)
            ],
        }
    if kind == "s3":
        return {
            "$type": f"{NS}.storageS3",
            "bucket": "peer-bucket",
            "region": "eu-west-1",
            "endpoint": "https://s3.example",
            "shards": [
                {"key": f"sets/peer-{i:06d}.tar", "checksum": {"algorithm": "none", "digest": ""}}
                for i in range(shards)
            ],
        }
    if kind == "blobs":
        refs = blobs or [
            {
                "$type": "blob",
                "ref": {"$link": "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"},
                "mimeType": "application/x-tar",
                "size": 10240 + i,
            }
            for i in range(shards)
        ]
        return {
            "$type": f"{NS}.storageBlobs",
            "blobs": [{"blob": ref, "checksum": checksum} for ref in refs],
        }
    if kind == "external":
        return {
            "$type": f"{NS}.storageExternal",
            "urls": ["https://data.example/legacy-{000000..000003}.tar"],
        }
    raise ValueError(kind)


def entry_record(
    name: str,
    schema_uri: str,
    kind: str = "http",
    *,
    description: str = "",
    tags: tuple[str, ...] = (),
    samples: int | None = 20,
    blobs: list[dict[str, Any]] | None = None,
    created: str = CREATED,
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "$type": PEER_ENTRY,
        "name": name,
        "schemaRef": schema_uri,
        "storage": storage(kind, blobs=blobs),
        "createdAt": created,
        "metadata": {"split": "train"},  # the SDK writes an object (the lexicon says bytes)
    }
    if description:
        record["description"] = description
    if tags:
        record["tags"] = list(tags)
    if samples is not None:
        record["size"] = {"samples": samples, "bytes": 20480, "shards": 2}
    return record


def label_record(
    name: str, entry_uri: str, version: str | None = "1.0.0", created: str = CREATED
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "$type": PEER_LABEL,
        "name": name,
        "datasetUri": entry_uri,
        "createdAt": created,
    }
    if version is not None:
        record["version"] = version
    return record


def lens_record(name: str, source: str, target: str, created: str = CREATED) -> dict[str, Any]:
    code = {"repository": "https://example.org/lenses", "commit": "a" * 40}
    return {
        "$type": PEER_LENS,
        "name": name,
        "sourceSchema": source,
        "targetSchema": target,
        "getterCode": {**code, "path": "lenses.peer:get"},
        "putterCode": {**code, "path": "lenses.peer:put"},
        "createdAt": created,
    }


def lens_verification_record(lens_uri: str, lens_cid: str, created: str = CREATED) -> dict:
    return {
        "$type": PEER_LENS_VERIFICATION,
        "lens": lens_uri,
        "lensCommit": lens_cid,
        "verificationMethod": "codeReview",
        "createdAt": created,
    }
