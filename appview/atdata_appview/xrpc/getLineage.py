"""io.atdata.getLineage: the datasets one was derived from and those derived from it."""

from __future__ import annotations

from typing import Any

from ..db.lineage import get_lineage
from ._base import Context, NotFound
from .getDataset import did_uri

NSID = "io.atdata.getLineage"


def _lookup(conn: Any, uri: str, depth: int) -> dict[str, Any] | None:
    resolved = did_uri(conn, uri)
    return None if resolved is None else get_lineage(conn, resolved, depth)


async def handle(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    found = await ctx.store.read(_lookup, params["uri"], params.get("depth", 3))
    if found is None:
        raise NotFound(f"no dataset {params['uri']} in this index")
    return found
