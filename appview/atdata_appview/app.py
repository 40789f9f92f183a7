"""The aiohttp application: store + ingest + XRPC + health + metrics (+ the web page).

``create_app`` wires parts that already exist (tests pass their own store and ingest);
``serve`` builds them from `Settings` and runs until interrupted.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import socket
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web
from sqlalchemy import text

from . import metrics
from .config import Settings
from .db import Store
from .db import queries as q
from .xrpc import CONTEXT, Context, add_routes

if TYPE_CHECKING:
    from .ingest import IngestService

log = logging.getLogger(__name__)

STORE = web.AppKey("store", Store)
INGEST: web.AppKey[IngestService | None] = web.AppKey("ingest")
FRAME_RATE = web.AppKey("frame_rate", metrics.FrameRate)
COUNTS = web.AppKey("counts_cache", dict)
COUNTS_TTL = 5.0


def create_app(
    store: Store, ingest: IngestService | None = None, *, run_ingest: bool = False
) -> web.Application:
    """An app serving ``store``. With ``run_ingest`` the app starts ``ingest.run()`` on
    startup and stops it on cleanup (otherwise the caller owns the ingest lifecycle)."""
    app = web.Application()
    app[STORE] = store
    app[INGEST] = ingest
    app[CONTEXT] = Context(store=store, ingest=ingest)
    app[FRAME_RATE] = metrics.FrameRate()
    app[COUNTS] = {"stamp": -COUNTS_TTL, "value": {}}  # mutated in place (app is frozen)
    app.router.add_get("/_health", _health)
    app.router.add_get("/metrics", _metrics)
    add_routes(app)
    _add_web_page(app)
    if run_ingest and ingest is not None:
        app.cleanup_ctx.append(_ingest_lifecycle)
    return app


def _add_web_page(app: web.Application) -> None:
    """Mount the server-rendered page when its module is present (it reads the same queries)."""
    try:
        page = importlib.import_module(f"{__package__}.web")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__package__}.web":
            raise
        return
    page.add_routes(app)


async def _ingest_lifecycle(app: web.Application) -> Any:
    ingest = app[INGEST]
    assert ingest is not None  # this context runs only with an ingest
    task = asyncio.get_running_loop().create_task(ingest.run(), name="appview-ingest")

    def done(t: asyncio.Task[Any]) -> None:
        if not t.cancelled() and t.exception() is not None:
            log.error("ingest stopped with an error", exc_info=t.exception())

    task.add_done_callback(done)
    yield
    await ingest.stop()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await asyncio.wait_for(task, timeout=15)


async def _health(request: web.Request) -> web.Response:
    store = request.app[STORE]

    def ping(conn: Any) -> int:
        return conn.execute(text("SELECT 1")).scalar_one()

    try:
        await store.read(ping)
    except Exception as exc:  # any database failure means unhealthy
        return web.json_response({"status": "error", "message": f"database: {exc}"}, status=503)
    return web.json_response({"status": "ok"})


async def _counts(app: web.Application) -> dict[str, int]:
    cache = app[COUNTS]
    if time.monotonic() - cache["stamp"] > COUNTS_TTL:
        cache["value"] = await app[STORE].read(q.counts)
        cache["stamp"] = time.monotonic()
    return cache["value"]


async def _metrics(request: web.Request) -> web.Response:
    ingest = request.app[INGEST]
    body = metrics.render(
        counts=await _counts(request.app),
        store_stats=request.app[STORE].stats,
        ingest=ingest.metrics() if ingest is not None and hasattr(ingest, "metrics") else None,
        frame_rate=request.app[FRAME_RATE],
    )
    return web.Response(body=body.encode(), headers={"Content-Type": metrics.CONTENT_TYPE})


def build(settings: Settings, *, follow: bool = True) -> web.Application:
    """Store (migrated) + ingest following ``settings.firehose`` + the app around them."""
    from .ingest import IngestService

    store = Store(settings.db)
    ingest = None
    if follow:
        ingest = IngestService(
            store,
            settings.firehose,
            settings.plc,
            connect_timeout=settings.connect_timeout,
            max_repo_bytes=settings.max_repo_bytes,
        )
    app = create_app(store, ingest, run_ingest=follow)

    async def close_store(_app: web.Application) -> None:
        await store.aclose()

    app.on_cleanup.append(close_store)
    return app


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (the first address `host` resolves to).

    Bound before anything else starts, so a taken port fails at once (OSError) without
    touching the database or the firehose, and "AppView on ..." is logged only once listening.
    """
    family, kind, proto, _name, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp does on POSIX
        sock.bind(address)
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def serve(settings: Settings | None = None, *, follow: bool = True) -> None:
    """Run the AppView until interrupted (the `atdata appview serve` command).

    Raises OSError (e.g. address already in use) when settings.host:port cannot be bound.
    """
    settings = settings or Settings.load()
    sock = listen(settings.host, settings.port)
    log.info(
        "AppView on http://%s:%d, db %s, following %s",
        settings.host,
        sock.getsockname()[1],
        settings.db or "(embedded SQLite)",
        ", ".join(settings.firehose) if follow else "nothing",
    )
    try:
        web.run_app(build(settings, follow=follow), sock=sock, print=None)
    finally:
        sock.close()
