"""A threaded HTTP server on a free local port for the length of a `with` block: the one
way tests serve files or scripted answers over real HTTP (no mocked transport). An aiohttp
application (a relay in front of the real AppView) gets the same from :func:`serving_app`."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiohttp import web


class QuietFiles(http.server.SimpleHTTPRequestHandler):
    """Serves a directory without logging every request to stderr."""

    def log_message(self, *args: Any) -> None:
        pass


class LocalServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


@contextlib.contextmanager
def serving(handler: Any, host: str = "127.0.0.1", **attrs: Any) -> Iterator[LocalServer]:
    """Serve `handler` in a background thread; `attrs` are set on the server (handlers read
    them as `self.server.<name>`). Shut down and closed when the block ends."""
    server = LocalServer((host, 0), handler)
    for name, value in attrs.items():
        setattr(server, name, value)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@contextlib.contextmanager
def file_server(root: Path) -> Iterator[str]:
    """The files under `root` over HTTP; yields the base URL."""
    with serving(functools.partial(QuietFiles, directory=str(root))) as server:
        yield server.url


@contextlib.contextmanager
def serving_app(app: web.Application, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve an aiohttp `app` from its own event loop in a background thread; yields the base
    URL. Stopped and cleaned up when the block ends."""
    from aiohttp import web

    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, host, 0).start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{runner.addresses[0][1]}"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.run_until_complete(runner.cleanup())
        loop.close()
