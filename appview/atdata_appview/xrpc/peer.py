"""The ``science.alt.dataset.*`` queries the atdata 0.7 SDK calls on its AppView.

Served under their own NSIDs (``GET /xrpc/science.alt.dataset.<name>``), with the parameters
its lexicons declare (``lexicons/science/alt/dataset/``, checked like ours before a handler
runs) and the response shapes its client code reads, so a 0.7 user can point it at this
AppView unchanged. They answer from the same index as ``io.atdata.*``, over the peer
family's records only (the 0.7 SDK cannot read ours). Write procedures are not served:
publishing goes to the user's PDS.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..db import SearchParams
from ..db import peer_queries as pq
from ..db.models import PEER_FAMILY
from ..db.queries import Page
from ._base import REQUEST_HOST, Context, Handler, NotFound, XrpcError
from ._handles import did_for
from ._stats import PERIOD_DAYS

NAMESPACE = "science.alt.dataset"
#: Every collection the index follows of this family (describeService).
COLLECTIONS = (
    f"{NAMESPACE}.schema",
    f"{NAMESPACE}.entry",
    f"{NAMESPACE}.lens",
    f"{NAMESPACE}.label",
    f"{NAMESPACE}.lensVerification",
)


def _page(params: Mapping[str, Any]) -> Page:
    return Page(limit=params["limit"], cursor=params.get("cursor"))


async def _resolve_named(
    ctx: Context,
    params: Mapping[str, Any],
    read: Callable[..., Mapping[str, Any] | None],
    name: str,
    error: str,
    kind: str,
) -> Mapping[str, Any]:
    """A handle's record of name ``params[name]`` (and ``version``), read by ``read``, or the
    ``error`` the 0.7 SDK knows; a handle the index cannot vouch for matches nothing."""
    did = await did_for(ctx, params["handle"])
    found = None
    if did is not None:
        found = await ctx.store.read(read, did, params[name], params.get("version"))
    if found is None:
        version = f" version {params['version']}" if params.get("version") else ""
        raise XrpcError(
            404,
            error,
            f"no {kind} {params[name]!r}{version} of {params['handle']} in this index"
            + ("" if did else " (the handle is not one this index can vouch for)"),
        )
    return found


async def resolve_schema(ctx: Context, params: dict[str, Any]) -> Mapping[str, Any]:
    return await _resolve_named(
        ctx, params, pq.resolve_schema, "schemaId", "SchemaNotFound", "schema"
    )


async def resolve_label(ctx: Context, params: dict[str, Any]) -> Mapping[str, Any]:
    return await _resolve_named(ctx, params, pq.resolve_label, "name", "LabelNotFound", "label")


async def resolve_blobs(ctx: Context, params: dict[str, Any]) -> Mapping[str, Any]:
    return {"blobs": await ctx.store.read(pq.blob_urls, params["uris"])}


async def get_entry(ctx: Context, params: dict[str, Any]) -> Mapping[str, Any]:
    found = await ctx.store.read(pq.get_entry, params["uri"])
    if found is None:
        raise NotFound(f"no entry {params['uri']} in this index")
    ctx.stats.viewed([found["uri"]])
    return {"entry": found}


async def get_entries(ctx: Context, params: dict[str, Any]) -> Mapping[str, Any]:
    found = await ctx.store.read(pq.get_entries, params["uris"])
    ctx.stats.viewed(e["uri"] for e in found)
    return {"entries": found}


async def get_schema(ctx: Context, params: dict[str, Any]) -> Mapping[str, Any]:
    found = await ctx.store.read(pq.get_schema, params["uri"])
    if found is None:
        raise NotFound(f"no schema {params['uri']} in this index")
    return found


async def list_entries(ctx: Context, params: dict[str, Any]) -> Mapping[str, Any]:
    return await ctx.store.read(pq.list_entries, repo=params.get("repo"), page=_page(params))


async def list_schemas(ctx: Context, params: dict[str, Any]) -> Mapping[str, Any]:
    return await ctx.store.read(pq.list_schemas, repo=params.get("repo"), page=_page(params))


async def list_lenses(ctx: Context, params: dict[str, Any]) -> Mapping[str, Any]:
    return await ctx.store.read(
        pq.list_lenses,
        repo=params.get("repo"),
        source=params.get("sourceSchema"),
        target=params.get("targetSchema"),
        page=_page(params),
    )


async def search_datasets(ctx: Context, params: dict[str, Any]) -> Mapping[str, Any]:
    q = params.get("q") or None
    search = SearchParams(
        q=q,
        tags=list(dict.fromkeys(t.strip().lower() for t in params.get("tags", []) if t.strip())),
        schema=params.get("schemaRef"),
        author=params.get("repo"),
        sort="relevance" if q else "created",
        limit=params["limit"],
        cursor=params.get("cursor"),
        all_versions=True,
        family=PEER_FAMILY,
    )
    found = await ctx.store.read(pq.search_entries, search)
    ctx.stats.shown_in_search(e["uri"] for e in found["entries"])
    return found


async def describe_service(ctx: Context, params: dict[str, Any]) -> Mapping[str, Any]:
    out: dict[str, Any] = {
        "did": "did:web:" + REQUEST_HOST.get().replace(":", "%3A"),
        "availableCollections": list(COLLECTIONS),
        "recordCount": await ctx.store.read(pq.record_counts),
    }
    metrics = getattr(ctx.ingest, "metrics", None)
    ingest = metrics() if callable(metrics) else {}
    backlog = ingest.get("backlog")
    if isinstance(backlog, Mapping):  # as io.atdata.describeService says it
        out["backfillPending"] = int(backlog.get("backfill") or 0)
        out["resyncPending"] = int(backlog.get("resync") or 0)
        out["backlog"] = backlog
    return out


async def get_entry_stats(ctx: Context, params: dict[str, Any]) -> Mapping[str, Any]:
    period = params["period"]
    if period not in PERIOD_DAYS:
        raise XrpcError(
            400, "InvalidRequest", f"period must be one of {', '.join(PERIOD_DAYS)}, not {period!r}"
        )
    views, shown = ctx.stats.counts(params["uri"], period)
    return {"views": views, "searchAppearances": shown, "period": period}


METHODS: dict[str, Handler] = {
    f"{NAMESPACE}.resolveSchema": resolve_schema,
    f"{NAMESPACE}.resolveLabel": resolve_label,
    f"{NAMESPACE}.resolveBlobs": resolve_blobs,
    f"{NAMESPACE}.getEntry": get_entry,
    f"{NAMESPACE}.getEntries": get_entries,
    f"{NAMESPACE}.getSchema": get_schema,
    f"{NAMESPACE}.listEntries": list_entries,
    f"{NAMESPACE}.listSchemas": list_schemas,
    f"{NAMESPACE}.listLenses": list_lenses,
    f"{NAMESPACE}.searchLenses": list_lenses,
    f"{NAMESPACE}.searchDatasets": search_datasets,
    f"{NAMESPACE}.describeService": describe_service,
    f"{NAMESPACE}.getEntryStats": get_entry_stats,
}
