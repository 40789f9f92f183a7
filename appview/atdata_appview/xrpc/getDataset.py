"""io.atdata.getDataset: one dataset with record, schema, author, shards and lenses."""

from __future__ import annotations

from typing import Any

from ..db import queries
from ._base import Context, NotFound

NSID = "io.atdata.getDataset"


def did_uri(conn: Any, uri: str) -> str | None:
    """The URI with a handle authority (at://alice.example.com/...) replaced by the DID the
    index holds for it (None: unknown handle); the client checks that DID's document
    claims the handle."""
    authority, sep, rest = uri[len("at://") :].partition("/")
    if authority.startswith("did:"):
        return uri
    did = queries.resolve_author(conn, authority)
    return None if did is None else f"at://{did}{sep}{rest}"


def _lookup(conn: Any, uri: str) -> dict[str, Any] | None:
    resolved = did_uri(conn, uri)
    return None if resolved is None else queries.get_dataset(conn, resolved)


async def handle(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    found = await ctx.store.read(_lookup, params["uri"])
    if found is None:
        raise NotFound(f"no dataset {params['uri']} in this index")
    return found
