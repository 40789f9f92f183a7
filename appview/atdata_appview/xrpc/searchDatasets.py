"""io.atdata.searchDatasets: full-text search with filters, facets and a keyset cursor."""

from __future__ import annotations

from typing import Any

from ..db import SearchParams, search_datasets
from ._base import Context

NSID = "io.atdata.searchDatasets"


async def handle(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    p = SearchParams(
        q=params.get("q"),
        tags=list(dict.fromkeys(t.strip().lower() for t in params.get("tag", []))),
        schema=params.get("schema"),
        author=params.get("author"),
        license=params.get("license"),
        min_samples=params.get("minSamples"),
        max_samples=params.get("maxSamples"),
        sort=params.get("sort", "relevance"),
        limit=params.get("limit", 25),
        cursor=params.get("cursor"),
        name=params.get("name"),
        all_versions=params.get("allVersions", False),
        family=params.get("family"),
    )
    page = await ctx.store.read(search_datasets, p)
    out: dict[str, Any] = {"datasets": page.datasets, "facets": page.facets}
    if page.cursor:
        out["cursor"] = page.cursor
    return out
