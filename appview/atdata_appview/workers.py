"""`atdata appview serve --workers N`: one ingesting process and N serving processes.

Python runs one request at a time per process, so one process tops out at one core. Here the
parent binds the listening socket, migrates the database, forks N serving processes that
accept on that same socket (the kernel hands each connection to one of them) and then runs
the ingest itself. All share the database (SQLite in WAL mode lets readers run beside the one
writer; PostgreSQL anyway). What only the ingesting process knows (firehose hosts, lag,
counters) reaches the serving processes through a JSON snapshot it rewrites every second;
their own request metrics are prometheus_client multiprocess files in the same folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Sequence
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from aiohttp import web

from .app import create_app, limits, make_ingest
from .config import Settings
from .db import Store
from .db.engine import default_db_url, make_engine, migrate
from .ingest import IngestService
from .server import run_app

log = logging.getLogger(__name__)

__all__ = ["IngestSnapshot", "run_workers"]

SNAPSHOT = "ingest.json"
SNAPSHOT_EVERY = 1.0


class IngestSnapshot:
    """What a serving process knows of the ingest: the last snapshot the ingesting process
    wrote (the same shape as `IngestService.metrics()`), read at most every half second."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._read_at = -1.0
        self._data: dict[str, Any] = {}

    def _load(self) -> dict[str, Any]:
        now = time.monotonic()
        if now - self._read_at >= 0.5:
            self._read_at = now
            with contextlib.suppress(OSError, ValueError):
                self._data = json.loads(self.path.read_text())
        return self._data

    @property
    def hosts(self) -> list[str]:
        return list(self._load().get("followed", []))

    @property
    def store_stats(self) -> dict[str, int]:
        return dict(self._load().get("store_stats", {}))

    def metrics(self) -> dict[str, Any]:
        return dict(self._load().get("metrics", {}))


def _write_snapshot(path: Path, ingest: IngestService | None, store: Store) -> None:
    data = {
        "followed": list(ingest.hosts) if ingest is not None else [],
        "metrics": ingest.metrics() if ingest is not None else {},
        "store_stats": store.stats,
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, default=str))
    tmp.replace(path)


def _serve_process(settings: Settings, sock: socket.socket, state_dir: str) -> None:
    """A serving process: the app over its own store connections, no ingest."""
    store = Store(settings.db, run_migrations=False)
    app = create_app(
        store,
        IngestSnapshot(Path(state_dir) / SNAPSHOT),
        metrics_dir=state_dir,
        plc_url=settings.plc,
    )

    async def close_store(_app: web.Application) -> None:
        await store.aclose()

    app.on_cleanup.append(close_store)
    run_app(app, sock, limits(settings))


async def _ingest_process(
    settings: Settings, follow: bool, state_dir: str, children: Sequence[BaseProcess]
) -> None:
    """The parent after forking: ingest (when following), snapshots, and watching the
    serving processes; returns on SIGINT/SIGTERM or when a serving process dies."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    store = Store(settings.db, run_migrations=False)
    ingest = make_ingest(settings, store) if follow else None
    task = loop.create_task(ingest.run(), name="appview-ingest") if ingest else None
    snapshot = Path(state_dir) / SNAPSHOT
    try:
        while not stop.is_set():
            _write_snapshot(snapshot, ingest, store)
            dead = [p for p in children if p.exitcode is not None]
            if dead:
                log.error(
                    "serving process %s exited (%s): stopping", dead[0].name, dead[0].exitcode
                )
                break
            if task is not None and task.done():
                log.error("ingest stopped: stopping", exc_info=task.exception())
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), SNAPSHOT_EVERY)
    finally:
        if ingest is not None and task is not None:
            await ingest.stop()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, timeout=15)
        await store.aclose()


def run_workers(settings: Settings, sock: socket.socket, *, follow: bool = True) -> None:
    """Serve with ``settings.workers`` forked serving processes; ingest in this one."""
    engine = make_engine(settings.db or default_db_url())
    try:
        migrate(engine)  # once, before anyone reads
    finally:
        engine.dispose()
    state_dir = tempfile.mkdtemp(prefix="atdata-appview-")
    Path(state_dir, SNAPSHOT).write_text("{}")
    context = multiprocessing.get_context("fork")  # inherit the bound socket; nothing runs yet
    children = [
        context.Process(
            target=_serve_process,
            args=(settings, sock, state_dir),
            name=f"atdata-appview-serve-{i}",
            daemon=True,
        )
        for i in range(settings.workers)
    ]
    try:
        for child in children:
            child.start()
        asyncio.run(_ingest_process(settings, follow, state_dir, children))
    finally:
        for child in children:
            if child.exitcode is None and child.pid is not None:
                os.kill(child.pid, signal.SIGTERM)
        for child in children:
            child.join(20)
            if child.exitcode is None:
                child.kill()
        shutil.rmtree(state_dir, ignore_errors=True)
