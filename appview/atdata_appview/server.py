"""How the AppView holds HTTP connections: timeouts, a connection cap, JSON error bodies.

aiohttp keeps a connection whose headers trickle in for as long as its keep-alive allows and
takes every connection offered; a few hundred slow clients then hold the process's file
descriptors. `Runner` serves an app with three limits (`Limits`): the request line and headers
must arrive within ``header_timeout`` of their first byte, an idle connection closes after
``keepalive_timeout``, and past ``max_connections`` a new connection is answered 503 and
closed. Requests aiohttp cannot parse (a request line over 8,190 bytes, a bad header) are
answered with the XRPC error body ``{"error", "message"}`` rather than text/plain.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import socket
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

log = logging.getLogger(__name__)

__all__ = ["Limits", "Runner", "run_app"]


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-process connection limits (seconds, connections)."""

    header_timeout: float = 10.0
    keepalive_timeout: float = 75.0
    max_connections: int = 1024


def _error_bytes(status: int, error: str, message: str) -> bytes:
    body = json.dumps({"error": error, "message": message}).encode()
    head = (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


class _Connection(RequestHandler):
    """aiohttp's connection handler with a header deadline, the cap and JSON error bodies."""

    def __init__(self, manager: web.Server, limits: Limits, **kwargs: Any) -> None:
        super().__init__(manager, keepalive_timeout=limits.keepalive_timeout, **kwargs)
        self._limits = limits
        self._header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        manager = self._manager
        if manager is not None and len(manager.connections) > self._limits.max_connections:
            log.warning("refusing a connection: %d open", len(manager.connections) - 1)
            message = f"over {self._limits.max_connections} connections; retry later"
            assert isinstance(transport, asyncio.WriteTransport)
            transport.write(_error_bytes(503, "Overloaded", message))
            self.force_close()

    def data_received(self, data: bytes) -> None:
        waiting_for_head = not self._request_in_progress and not self._messages
        if waiting_for_head and self._header_deadline is None and data:
            self._header_deadline = self._loop.call_later(
                self._limits.header_timeout, self._headers_too_slow
            )
        super().data_received(data)
        if self._header_deadline is not None and (self._messages or self._request_in_progress):
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        if self.transport is None or self._messages or self._request_in_progress:
            return
        log.info("closing a connection: headers not received in %ss", self._limits.header_timeout)
        transport = self.transport
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(_error_bytes(408, "RequestTimeout", "request headers took too long"))
        self.force_close()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None
        super().connection_lost(exc)

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        super().handle_error(request, status, exc, message)  # logs; raises if already sent
        if status >= 500:
            error, text = "InternalServerError", HTTPStatus(status).phrase
        else:
            error, text = "InvalidRequest", _parse_error_text(exc, message, status)
        resp = web.json_response({"error": error, "message": text}, status=status)
        resp.force_close()
        return resp


def _parse_error_text(exc: BaseException | None, message: str | None, status: int) -> str:
    """What aiohttp's parser said, without the repr noise of its exception classes."""
    detail = getattr(exc, "message", None) or message or HTTPStatus(status).phrase
    return f"malformed HTTP request: {detail}"[:500]


class _Server(web.Server):
    """aiohttp's Server making `_Connection` handlers (state set up by aiohttp's runner)."""

    limits: Limits

    def __call__(self) -> RequestHandler:
        return _Connection(self, self.limits, loop=self._loop, **self._kwargs)


class Runner(web.AppRunner):
    """An `AppRunner` whose connections obey ``limits``."""

    def __init__(self, app: web.Application, limits: Limits, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.limits = limits

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _Server  # same state; only the connection handler class differs
        assert isinstance(server, _Server)
        server.limits = self.limits
        return server


async def serve_until_signalled(
    app: web.Application, sock: socket.socket, limits: Limits, *, access_log: bool = True
) -> None:
    """Serve ``app`` on the listening ``sock`` until SIGINT or SIGTERM, then clean up."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    kwargs: dict[str, Any] = {} if access_log else {"access_log": None}
    runner = Runner(app, limits, **kwargs)
    await runner.setup()
    try:
        await web.SockSite(runner, sock).start()
        await stop.wait()
    finally:
        await runner.cleanup()


def run_app(
    app: web.Application, sock: socket.socket, limits: Limits, *, access_log: bool = True
) -> None:
    """Blocking `serve_until_signalled` in a fresh event loop."""
    asyncio.run(serve_until_signalled(app, sock, limits, access_log=access_log))
