"""io.atdata.listLenses: lenses by source and/or target schema."""

from __future__ import annotations

from typing import Any

from ..db import queries
from ._base import Context

NSID = "io.atdata.listLenses"


async def handle(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    return await ctx.store.read(
        queries.list_lenses,
        source=params.get("source"),
        target=params.get("target"),
        limit=params.get("limit", 50),
        cursor=params.get("cursor"),
    )
