"""XRPC query methods, served as ``GET /xrpc/<nsid>``: ours (``io.atdata.*``), one module
each, and the peer network's (``science.alt.dataset.*``, module `peer`) that the atdata 0.7 SDK
calls. Each NSID is its own route, so /metrics counts requests per method."""

from __future__ import annotations

from aiohttp import web

from . import (
    describeService,
    findLensPath,
    getDataset,
    getLineage,
    getSchema,
    listLenses,
    listSchemas,
    peer,
    searchDatasets,
)
from ._base import CONTEXT, Context, Handler, NotFound, XrpcError, error_response, make_route
from ._handles import close as close_identity

METHODS: dict[str, Handler] = {
    m.NSID: m.handle
    for m in (
        searchDatasets,
        getDataset,
        getLineage,
        listSchemas,
        getSchema,
        listLenses,
        findLensPath,
        describeService,
    )
} | peer.METHODS

__all__ = ["CONTEXT", "METHODS", "Context", "NotFound", "XrpcError", "add_routes"]


def add_routes(app: web.Application) -> None:
    """Register every method, plus a JSON 501 for unknown ones (XRPC clients expect it)."""
    for nsid, handler in METHODS.items():
        app.router.add_get(f"/xrpc/{nsid}", make_route(nsid, handler))

    async def unknown(request: web.Request) -> web.Response:
        return error_response(
            501,
            "MethodNotImplemented",
            f"{request.match_info['nsid'] or '(no method)'} is not served here",
        )

    app.router.add_route("*", "/xrpc/{nsid:.*}", unknown)

    async def close_resolver(app: web.Application) -> None:
        await close_identity(app.get(CONTEXT))

    app.on_cleanup.append(close_resolver)
