"""io.atdata.findLensPath: the shortest chain of lenses from one schema to another."""

from __future__ import annotations

from typing import Any

from ..db import queries
from ._base import Context

NSID = "io.atdata.findLensPath"


async def handle(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    path = await ctx.store.read(queries.find_lens_path, params["source"], params["target"])
    return {"found": path is not None, "path": path or []}
