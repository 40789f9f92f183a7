"""io.atdata.describeService: counts, followed hosts, their cursors and lag."""

from __future__ import annotations

from typing import Any

import atdata

from ..db import queries
from ._base import Context

NSID = "io.atdata.describeService"


async def handle(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    counts = await ctx.store.read(queries.counts)
    committed = await ctx.store.read(queries.cursor_rows)
    live: dict[str, Any] = {}
    followed: list[str] = []
    if ctx.ingest is not None:
        followed = list(getattr(ctx.ingest, "hosts", []))
        live = ctx.ingest.metrics().get("hosts", {}) if hasattr(ctx.ingest, "metrics") else {}
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
    return {"version": atdata.__version__, "counts": counts, "hosts": hosts}
