"""Fixtures for the AppView index tests: a migrated `Store` on SQLite and on PostgreSQL,
record builders that follow the io.atdata lexicons, and an AppView served on loopback."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest
from atdata_appview.db import Store

SCHEMA = "io.atdata.schema"
DATASET = "io.atdata.dataset"
LENS = "io.atdata.lens"
SHA = "ab" * 32


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coro)


def schema_record(name: str, version: str = "1.0.0", fields: tuple[str, ...] = ("x",)) -> dict:
    return {
        "$type": SCHEMA,
        "name": name,
        "version": version,
        "fields": [{"name": f, "type": {"kind": "str"}} for f in fields],
        "createdAt": "2026-01-01T00:00:00.000Z",
    }


def dataset_record(
    name: str,
    *,
    description: str = "",
    tags: tuple[str, ...] = (),
    license: str | None = "MIT",
    samples: int = 10,
    schema: str = "at://did:plc:nobody/io.atdata.schema/none",
    created: str = "2026-01-01T00:00:00.000Z",
    shards: int = 1,
) -> dict:
    per = samples // shards if shards else 0
    rec: dict[str, Any] = {
        "$type": DATASET,
        "name": name,
        "schema": {"uri": schema, "cid": "bafyreischema"},
        "storage": {"$type": "io.atdata.dataset#httpStorage"},
        "shards": [
            {
                "url": f"https://data.example/{name}-{i:06d}.tar",
                "samples": per,
                "bytes": 1000 + i,
                "sha256": SHA,
            }
            for i in range(shards)
        ],
        "totals": {
            "samples": samples,
            "bytes": sum(1000 + i for i in range(shards)),
            "shards": shards,
        },
        "tags": list(tags),
        "createdAt": created,
    }
    if description:
        rec["description"] = description
    if license:
        rec["license"] = license
    return rec


def lens_record(
    name: str, source: str, target: str, created: str = "2026-01-01T00:00:00.000Z"
) -> dict:
    return {
        "$type": LENS,
        "name": name,
        "source": {"uri": source, "cid": "bafysrc"},
        "target": {"uri": target, "cid": "bafytgt"},
        "code": {"entryPoint": "pkg.mod:lens", "sha256": SHA},
        "createdAt": created,
    }


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def index_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    """The index database URL: an SQLite file, then a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'index.sqlite'}"
    return request.getfixturevalue("pg_database")


@pytest.fixture
def store(index_url: str) -> Iterator[Store]:
    s = Store(index_url)
    yield s
    s.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServedApp:
    """An aiohttp app served from a background thread with its own event loop."""

    def __init__(self, make_app: Callable[[], Any], limits: Any = None) -> None:
        from atdata_appview.server import Limits

        self.limits = limits or Limits()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._make_app = make_app
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._error: BaseException | None = None

    def _run(self) -> None:
        from aiohttp import web
        from atdata_appview.server import Runner

        asyncio.set_event_loop(self._loop)

        async def start() -> web.AppRunner:
            runner = Runner(self._make_app(), self.limits)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", self.port).start()
            return runner

        try:
            self.runner = self._loop.run_until_complete(start())
        except BaseException as exc:  # surfaced by __enter__
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self.runner.cleanup())
        self._loop.close()

    def __enter__(self) -> ServedApp:
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)


@pytest.fixture
def serve_store() -> Callable[..., ServedApp]:
    """``serve_store(store, ingest=None)`` -> a running `ServedApp` (stopped after the test)."""
    from atdata_appview.app import create_app

    served: list[ServedApp] = []

    def start(store: Store, ingest: Any = None) -> ServedApp:
        app = ServedApp(lambda: create_app(store, ingest))
        served.append(app.__enter__())
        return app

    yield start
    for app in served:
        app.__exit__(None, None, None)
