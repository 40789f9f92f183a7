"""The aiohttp application: store + ingest + XRPC + health + metrics + the web page.

``create_app`` wires parts that already exist (tests pass their own store and ingest);
``serve`` builds them from `Settings` and runs until interrupted: in one process, or with
``workers > 1`` as one ingesting process and N serving processes (`workers`).
"""

from __future__ import annotations

import asyncio
import contextlib
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
from .ingest import IngestService
from .server import Limits, run_app
from .web import add_routes as add_web_routes
from .xrpc import CONTEXT, Context, add_routes

if TYPE_CHECKING:
    from .workers import IngestSnapshot

log = logging.getLogger(__name__)

STORE = web.AppKey("store", Store)
INGEST: web.AppKey[IngestService | IngestSnapshot | None] = web.AppKey("ingest")
METRICS = web.AppKey("metrics", metrics.AppMetrics)
COUNTS = web.AppKey("counts_cache", dict)
COUNTS_TTL = 5.0


def create_app(
    store: Store,
    ingest: IngestService | IngestSnapshot | None = None,
    *,
    run_ingest: bool = False,
    metrics_dir: str | None = None,
    plc_url: str | None = None,
) -> web.Application:
    """An app serving ``store``. With ``run_ingest`` the app starts ``ingest.run()`` on
    startup and stops it on cleanup (otherwise the caller owns the ingest lifecycle).
    ``metrics_dir``: prometheus_client's multiprocess folder when several processes serve.
    ``plc_url``: where queries check DID documents when there is no ingest to ask
    (default ``ATDATA_PLC_URL``)."""
    app_metrics = metrics.AppMetrics(metrics_dir)
    app = web.Application(middlewares=[_request_metrics(app_metrics)])
    app[STORE] = store
    app[INGEST] = ingest
    app[CONTEXT] = Context(store=store, ingest=ingest, plc_url=plc_url)
    app[METRICS] = app_metrics
    app[COUNTS] = {"stamp": -COUNTS_TTL, "value": {}}  # mutated in place (app is frozen)
    app.router.add_get("/_health", _health)
    app.router.add_get("/metrics", _metrics)
    add_routes(app)
    add_web_routes(app)
    if run_ingest and ingest is not None:
        app.cleanup_ctx.append(_ingest_lifecycle)
    return app


def _request_metrics(app_metrics: metrics.AppMetrics) -> Any:
    """Middleware counting each answer by route (the pattern, not the path) and status."""

    @web.middleware
    async def count(request: web.Request, handler: Any) -> web.StreamResponse:
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            resource = request.match_info.route.resource
            route = resource.canonical if resource is not None else "unmatched"
            app_metrics.observe(route, status, time.perf_counter() - started)

    return count


async def _ingest_lifecycle(app: web.Application) -> Any:
    ingest = app[INGEST]
    assert isinstance(ingest, IngestService)  # this context runs only with the service
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
    # A serving process of several reads the ingesting process's store counters from its
    # snapshot (`workers.IngestSnapshot`); a single process has them in its own store.
    stats = getattr(ingest, "store_stats", None) or request.app[STORE].stats
    body = request.app[METRICS].render(
        counts=await _counts(request.app),
        store_stats=stats,
        ingest=ingest.metrics() if ingest is not None and hasattr(ingest, "metrics") else None,
    )
    return web.Response(body=body, headers={"Content-Type": metrics.CONTENT_TYPE})


def make_ingest(settings: Settings, store: Store) -> IngestService:
    """The ingest service ``settings`` describe, writing to ``store`` (one per database)."""
    return IngestService(
        store,
        settings.firehose,
        settings.plc,
        connect_timeout=settings.connect_timeout,
        max_repo_bytes=settings.max_repo_bytes,
    )


def build(settings: Settings, *, follow: bool = True) -> web.Application:
    """Store (migrated) + ingest following ``settings.firehose`` + the app around them."""
    store = Store(settings.db)
    ingest = make_ingest(settings, store) if follow else None
    app = create_app(store, ingest, run_ingest=follow, plc_url=settings.plc)

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
        sock.listen(1024)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def limits(settings: Settings) -> Limits:
    """The connection limits of one serving process (the cap is shared by the processes)."""
    return Limits(
        header_timeout=settings.header_timeout,
        keepalive_timeout=settings.keepalive_timeout,
        max_connections=max(1, -(-settings.max_connections // settings.workers)),
    )


def serve(settings: Settings | None = None, *, follow: bool = True) -> None:
    """Run the AppView until interrupted (the `atdata appview serve` command).

    Raises OSError (e.g. address already in use) when settings.host:port cannot be bound.
    """
    settings = settings or Settings.load()
    sock = listen(settings.host, settings.port)
    log.info(
        "AppView on http://%s:%d, db %s, following %s, %d serving process%s",
        settings.host,
        sock.getsockname()[1],
        settings.db or "(embedded SQLite)",
        ", ".join(settings.firehose) if follow else "nothing",
        settings.workers,
        "" if settings.workers == 1 else "es",
    )
    try:
        if settings.workers == 1:
            run_app(build(settings, follow=follow), sock, limits(settings))
        else:
            from .workers import run_workers  # (imports this module: loaded on demand)

            run_workers(settings, sock, follow=follow)
    finally:
        sock.close()
