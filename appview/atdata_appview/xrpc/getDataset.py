"""io.atdata.getDataset: one dataset with record, schema, author, shards and lenses."""

from __future__ import annotations

from typing import Any

from ..db import queries
from ._base import Context, NotFound

NSID = "io.atdata.getDataset"


def _lookup(conn: Any, uri: str) -> dict[str, Any] | None:
    # A handle authority (at://alice.example.com/...) maps to the DID the index holds for it;
    # the client checks that DID's document claims the handle.
    authority, sep, rest = uri[len("at://") :].partition("/")
    if not authority.startswith("did:"):
        did = queries.resolve_author(conn, authority)
        if did is None:
            return None
        uri = f"at://{did}{sep}{rest}"
    return queries.get_dataset(conn, uri)


async def handle(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    found = await ctx.store.read(_lookup, params["uri"])
    if found is None:
        raise NotFound(f"no dataset {params['uri']} in this index")
    return found
