"""io.atdata.describeService: counts (also per lexicon family), followed hosts, their cursors
and lag, and the ingest's backlog (repos awaiting backfill or resync)."""

from __future__ import annotations

from typing import Any

import atdata

from ..db import queries
from ..db.census import family_counts
from ._base import Context

NSID = "io.atdata.describeService"


async def handle(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    counts: dict[str, Any] = dict(await ctx.store.read(queries.counts))
    counts["families"] = await ctx.store.read(family_counts)
    committed = await ctx.store.read(queries.cursor_rows)
    live: dict[str, Any] = {}
    followed: list[str] = []
    backlog: dict[str, Any] | None = None
    if ctx.ingest is not None:
        followed = list(getattr(ctx.ingest, "hosts", []))
        metrics = ctx.ingest.metrics() if hasattr(ctx.ingest, "metrics") else {}
        live = metrics.get("hosts", {})
        backlog = metrics.get("backlog")
    hosts = []
    for host in dict.fromkeys([*followed, *committed]):
        view: dict[str, Any] = {"host": host}
        if host in committed:
            view["cursor"] = committed[host]["seq"]
            view["updatedAt"] = committed[host]["updatedAt"]
        state = live.get(host)
        if state is not None:
            view["connected"] = bool(state.get("connected"))
            if state.get("lag_seconds") is not None:
                view["lagSeconds"] = round(state["lag_seconds"])
        hosts.append(view)
    out: dict[str, Any] = {"version": atdata.__version__, "counts": counts, "hosts": hosts}
    if backlog is not None:
        out["backlog"] = backlog
    return out
