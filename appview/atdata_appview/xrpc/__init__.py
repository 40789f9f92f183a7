"""XRPC query methods, one module each, served as ``GET /xrpc/<nsid>``."""

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
    searchDatasets,
)
from ._base import CONTEXT, Context, NotFound, XrpcError, error_response, make_route

METHODS = {
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
}

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
