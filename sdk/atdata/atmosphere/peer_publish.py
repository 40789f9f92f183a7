"""Publishing in the ``science.alt.dataset`` family (the records of the atdata 0.7 network).

`Client.publish_schema(..., family="science.alt.dataset")` and `Client.publish_dataset(...,
family="science.alt.dataset")` come here, for authors who want both networks to see a
dataset: the schema in the JSON Schema form the 0.7 SDK writes and reads, the dataset as an
entry whose shards carry their real sha256, and a label naming its version (their way of
saying "version 1.1.0 of mnist"). What that family cannot hold (a card, lineage, splits) is
refused before anything is written, naming the options, rather than silently dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..records import (
    PEER_ENTRY,
    PEER_LABEL,
    PEER_NAMESPACE,
    PEER_SCHEMA,
    PEER_STORAGE_BLOBS,
    PEER_STORAGE_HTTP,
    PEER_STORAGE_S3,
    SCHEMA,
)
from .shards import PublishError

__all__ = [
    "FAMILIES",
    "OWN_FAMILY",
    "PEER_FAMILY",
    "check_family",
    "peer_entry_storage",
    "refuse_unheld",
]

OWN_FAMILY = "io.atdata"
PEER_FAMILY = PEER_NAMESPACE.rstrip(".")
#: The record families the SDK publishes in.
FAMILIES = (OWN_FAMILY, PEER_FAMILY)


def check_family(family: str) -> str:
    """`family` if we publish in it; a `PublishError` listing the families otherwise."""
    if family not in FAMILIES:
        raise PublishError(f"family must be one of {', '.join(FAMILIES)}; got {family!r}")
    return family


def refuse_unheld(**given: Any) -> None:
    """Refuse publishing options a ``science.alt.dataset`` entry has no field for.

    `given` maps each option's name to its value; a value that is not None and not empty is
    given. Called before any request, so nothing is written when one is refused.
    """
    named = [name for name, value in given.items() if value is not None and value != {}]
    named = [
        name for name in named if not (isinstance(given[name], list | tuple) and not given[name])
    ]
    if named:
        raise PublishError(
            f"family={PEER_FAMILY!r} cannot hold {', '.join(named)}: its entries have no field "
            f"for {'it' if len(named) == 1 else 'them'}; nothing was published (drop "
            f"{'it' if len(named) == 1 else 'them'}, or publish with the default family "
            f"{OWN_FAMILY!r})"
        )


def not_a_peer_schema(uri: str, value: Mapping[str, Any]) -> PublishError:
    """The error for a schema ref that is not a ``science.alt.dataset.schema`` record."""
    kind = value.get("$type")
    hint = (
        f"; an {SCHEMA} record serves io.atdata datasets: pass the sample class instead, and "
        f"its {PEER_SCHEMA} record is published (or reused)"
        if kind == SCHEMA
        else ""
    )
    return PublishError(
        f"{uri} is a {kind or 'record without $type'}, not a {PEER_SCHEMA} record{hint}"
    )


NDARRAY_SHIM = "https://alt.science/schemas/atdata-ndarray-bytes/1.0.0#/$defs/ndarray"
_SCALAR_JSON: dict[str, dict[str, Any]] = {
    "str": {"type": "string"},
    "int": {"type": "integer"},
    "float": {"type": "number"},
    "bool": {"type": "boolean"},
    "bytes": {"type": "string", "format": "byte", "contentEncoding": "base64"},
    "dict": {"type": "object"},
    "any": {},
}


def _json_type(t: Mapping[str, Any], where: str) -> dict[str, Any]:
    kind = t.get("kind")
    if kind == "ndarray":
        return {"$ref": NDARRAY_SHIM}
    if kind == "list":
        item = t.get("item")
        return {"type": "array", **({"items": _json_type(item, where)} if item else {})}
    if isinstance(kind, str) and kind in _SCALAR_JSON:
        return dict(_SCALAR_JSON[kind])
    raise PublishError(
        f"field {where} is a {kind!r}, which a {PEER_SCHEMA} (JSON Schema of flat fields) "
        "cannot describe: nested sample types are not part of that family"
    )


def peer_schema_record(own: Mapping[str, Any]) -> dict[str, Any]:
    """An ``io.atdata.schema`` value as a ``science.alt.dataset.schema`` value, in the
    flattened JSON Schema form the 0.5-0.7 SDK writes (and the only one it reads fields from).
    """
    properties: dict[str, Any] = {}
    required: list[str] = []
    for f in own.get("fields", []):
        t = f.get("type", {})
        prop = _json_type(t, f"{own.get('name')}.{f.get('name')}")
        if f.get("description"):
            prop["description"] = f["description"]
        properties[f["name"]] = prop
        if not t.get("optional"):
            required.append(f["name"])
    body: dict[str, Any] = {
        "$type": f"{PEER_SCHEMA}#jsonSchemaFormat",
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": properties,
    }
    if required:
        body["required"] = required
    if any(p.get("$ref") == NDARRAY_SHIM for p in properties.values()):
        body["arrayFormatVersions"] = {"ndarrayBytes": "1.0.0"}
    record: dict[str, Any] = {
        "name": own["name"],
        "version": own["version"],
        "schemaType": "jsonSchema",
        "schema": body,
        "atdataSchemaVersion": 1,
        "createdAt": own["createdAt"],
    }
    if own.get("description"):
        record["description"] = own["description"]
    return record


def peer_entry_storage(
    kind: str, storage_obj: Mapping[str, Any], entries: list[dict[str, Any]]
) -> dict[str, Any]:
    """Our shard entries (from `Client._locations`) as a peer entry's ``storage`` member.

    Every shard carries ``{"algorithm": "sha256", "digest": <hex>}``: the checksum of the
    whole tar file, the same digest the 0.7 SDK writes for blobs."""

    def checksum(e: Mapping[str, Any]) -> dict[str, str]:
        return {"algorithm": "sha256", "digest": e["sha256"]}

    if kind == "blobs":
        return {
            "$type": PEER_STORAGE_BLOBS,
            "blobs": [{"blob": e["blob"], "checksum": checksum(e)} for e in entries],
        }
    if kind == "http":
        return {
            "$type": PEER_STORAGE_HTTP,
            "shards": [{"url": e["url"], "checksum": checksum(e)} for e in entries],
        }
    if kind == "s3":
        out: dict[str, Any] = {"$type": PEER_STORAGE_S3, "bucket": storage_obj["bucket"]}
        for field in ("region", "endpoint"):
            if storage_obj.get(field):
                out[field] = storage_obj[field]
        out["shards"] = [{"key": e["key"], "checksum": checksum(e)} for e in entries]
        return out
    raise PublishError(f"no {PEER_FAMILY} storage for {kind!r}")  # pragma: no cover


def peer_entry_record(
    *,
    name: str,
    schema_uri: str,
    storage: dict[str, Any],
    totals: Mapping[str, int],
    created_at: str,
    description: str | None,
    tags: list[str],
    license: str | None,
) -> dict[str, Any]:
    """A ``science.alt.dataset.entry`` record value (without ``$type``)."""
    record: dict[str, Any] = {
        "name": name,
        "schemaRef": schema_uri,
        "storage": storage,
        "size": dict(totals),
        "createdAt": created_at,
    }
    if description is not None:
        record["description"] = description
    if tags:
        record["tags"] = list(tags)
    if license is not None:
        record["license"] = license
    return record


def peer_label_record(
    *, name: str, entry_uri: str, version: str, created_at: str, description: str | None = None
) -> dict[str, Any]:
    """A ``science.alt.dataset.label`` record value naming `entry_uri` as `name`@`version`."""
    record: dict[str, Any] = {
        "name": name,
        "datasetUri": entry_uri,
        "version": version,
        "createdAt": created_at,
    }
    if description is not None:
        record["description"] = description
    return record


__all__ += [
    "PEER_ENTRY",
    "PEER_LABEL",
    "not_a_peer_schema",
    "peer_entry_record",
    "peer_label_record",
]
