"""io.atdata.getDataset: one dataset with record, schema, author, shards and lenses."""

from __future__ import annotations

from typing import Any

from ..db import queries
from ._base import Context, NotFound

NSID = "io.atdata.getDataset"


async def handle(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    found = await ctx.store.read(queries.get_dataset, params["uri"])
    if found is None:
        raise NotFound(f"no dataset {params['uri']} in this index")
    return found
