"""io.atdata.getSchema: one schema with its record and its other versions."""

from __future__ import annotations

from typing import Any

from ..db import queries
from ._base import Context, NotFound

NSID = "io.atdata.getSchema"


async def handle(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    found = await ctx.store.read(queries.get_schema, params["uri"])
    if found is None:
        raise NotFound(f"no schema {params['uri']} in this index")
    return found
