"""A threaded HTTP server on a free local port for the length of a `with` block: the one
way tests serve files or scripted answers over real HTTP (no mocked transport)."""

from __future__ import annotations

import contextlib
import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any


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
