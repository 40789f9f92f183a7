"""io.atdata.listSchemas: indexed schemas, newest first, by name and/or author."""

from __future__ import annotations

from typing import Any

from ..db import queries
from ._base import Context

NSID = "io.atdata.listSchemas"


async def handle(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    return await ctx.store.read(
        queries.list_schemas,
        name=params.get("name"),
        author=params.get("author"),
        limit=params.get("limit", 50),
        cursor=params.get("cursor"),
    )
