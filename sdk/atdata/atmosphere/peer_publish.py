"""Publishing in the ``science.alt.dataset`` family (the records of the atdata 0.7 network).

`Client.publish_schema(..., family="science.alt.dataset")` and `Client.publish_dataset(...,
family="science.alt.dataset")` use this, for authors who want both networks to see a
dataset: the schema in the JSON Schema form the 0.7 SDK writes and reads, the dataset as an
entry whose shards carry their real sha256, and a label naming its version (their way of
saying "version 1.1.0 of mnist"). The record shapes come from `atdata.peer`; this module
holds the publishing rules: which families exist, and refusing, before anything is written,
what that family cannot hold (a card, lineage, splits) rather than dropping it silently.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import peer
from ..errors import SchemaError
from ..records import PEER_NAMESPACE, PEER_SCHEMA, SCHEMA
from .shards import PublishError

__all__ = [
    "FAMILIES",
    "OWN_FAMILY",
    "PEER_FAMILY",
    "check_family",
    "not_a_peer_schema",
    "peer_schema_record",
    "peer_storage_of",
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

    `given` maps each option's name to its value; None and empty values are not given.
    Called before any request, so nothing is written when one is refused.
    """
    named = sorted(name for name, value in given.items() if value is not None and value != ""
                   and not (isinstance(value, Mapping | list | tuple) and not value))  # fmt: skip
    if named:
        them = "it" if len(named) == 1 else "them"
        raise PublishError(
            f"family={PEER_FAMILY!r} cannot hold {', '.join(named)}: its entries have no field "
            f"for {them}; nothing was published (drop {them}, or publish with the default "
            f"family {OWN_FAMILY!r})"
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


def peer_schema_record(own: Mapping[str, Any]) -> dict[str, Any]:
    """An ``io.atdata.schema`` value as a ``science.alt.dataset.schema`` value (the flattened
    JSON Schema form the 0.7 SDK writes), or a `PublishError` naming what it cannot hold."""
    try:
        return peer.peer_schema(own)
    except SchemaError as e:
        raise PublishError(
            f"schema {own.get('name')}: {e} (a {PEER_SCHEMA} describes flat fields only)"
        ) from None


def peer_storage_of(
    kind: str, where: Mapping[str, Any], entries: list[dict[str, Any]]
) -> peer.PeerStorage:
    """Shard entries as `Client._locations` makes them (`where`: its storage object, for the
    S3 bucket and endpoint) -> the peer entry's storage; each shard carries the sha256 of
    its whole tar file, the digest the 0.7 SDK writes and checks."""
    shards = tuple(
        peer.PeerShard(
            url=e.get("url"),
            blob=e.get("blob"),
            key=e.get("key"),
            algorithm="sha256",
            digest=e["sha256"],
        )
        for e in entries
    )
    if kind == "s3":
        return peer.PeerStorage(
            "s3",
            shards,
            bucket=where["bucket"],
            endpoint=where.get("endpoint"),
            region=where.get("region"),
        )
    if kind not in ("blobs", "http"):
        raise PublishError(f"no {PEER_FAMILY} storage for {kind!r}")
    return peer.PeerStorage("blobs" if kind == "blobs" else "http", shards)
