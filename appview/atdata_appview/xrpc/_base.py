"""What every XRPC method shares: parameter validation against its lexicon and error bodies."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from atdata.errors import LexiconError
from atdata.lexicon import validate_params

from ..db import BadCursor, Store
from ..db.queries import Page
from ..identity import IdentityResolver
from ._stats import EntryStats

log = logging.getLogger(__name__)


class XrpcError(Exception):
    """An XRPC failure with its HTTP status and the ``{"error", "message"}`` body."""

    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.status, self.error, self.message = status, error, message


class NotFound(XrpcError):
    def __init__(self, message: str) -> None:
        super().__init__(404, "NotFound", message)


@dataclass(slots=True)
class Context:
    """What a handler may use: the store (queries), the ingest service (if any), an identity
    resolver of its own when there is no ingest to borrow one from, and usage counts."""

    store: Store
    ingest: Any | None
    plc_url: str | None = None
    identity: IdentityResolver | None = None
    stats: EntryStats = field(default_factory=lambda: EntryStats())


#: The Host header of the request being answered (for answers that name this service).
REQUEST_HOST: ContextVar[str] = ContextVar("xrpc_request_host", default="localhost")


CONTEXT = web.AppKey("xrpc_context", Context)

Handler = Callable[[Context, dict[str, Any]], Awaitable[Mapping[str, Any]]]


def forwarding(query: Callable[..., Mapping[str, Any]], *filters: str) -> Handler:
    """A handler for a paged list query: the named filters, ``limit`` and ``cursor`` as given.

    The lexicon has already checked the parameters, and an absent filter passes as ``None``.
    """

    async def handle(ctx: Context, params: dict[str, Any]) -> Mapping[str, Any]:
        named = {name: params.get(name) for name in filters}
        page = Page(limit=params.get("limit", 50), cursor=params.get("cursor"))
        return await ctx.store.read(query, **named, page=page)

    return handle


def error_response(status: int, error: str, message: str) -> web.Response:
    return web.json_response({"error": error, "message": message}, status=status)


def query_params(request: web.Request) -> dict[str, str | list[str]]:
    """URL query as the lexicon validator takes it: repeated keys become lists."""
    out: dict[str, str | list[str]] = {}
    for key in request.query:
        if key in out:
            continue
        values = request.query.getall(key)
        out[key] = values if len(values) > 1 else values[0]
    return out


def make_route(nsid: str, handler: Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def route(request: web.Request) -> web.Response:
        REQUEST_HOST.set(request.host)
        try:
            params = validate_params(nsid, query_params(request))
            body = await handler(request.app[CONTEXT], params)
        except LexiconError as exc:
            return error_response(400, "InvalidRequest", str(exc))
        except BadCursor as exc:
            return error_response(400, "BadCursor", str(exc))
        except XrpcError as exc:
            return error_response(exc.status, exc.error, exc.message)
        return web.json_response(body, dumps=_dumps)

    route.__name__ = f"xrpc_{nsid.rsplit('.', 1)[-1]}"
    return route


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
