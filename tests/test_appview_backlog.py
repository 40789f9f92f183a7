"""describeService tells an operator whether the index has caught up: repos awaiting a whole
fetch (backfill or resync) and the events held for them, and counts per lexicon family."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
from _fixtures.appview_index import ServedApp, run
from _fixtures.ingest import running, wait_for
from _fixtures.peer_records import PEER_LABEL, label_record
from atdata_appview.db import Store
from atdata_appview.ingest import IngestService

STUCK = "did:plc:stuckstuckstuckstuckstuc"
BROKEN = "did:plc:brokenbrokenbrokenbrokenb"  # held at a known revision, its chain broken
NOWHERE = "http://127.0.0.1:9"  # a PLC directory that refuses connections


def test_describe_service_reports_the_backlog_until_the_index_has_caught_up(
    store: Store, serve_store: Callable[..., ServedApp]
) -> None:
    async def seed() -> None:
        async with store.transaction() as tx:
            tx.set_repo(STUCK, resync=True)  # a resync left over from a previous run
            tx.upsert_record(STUCK, PEER_LABEL, "l1", "c1", label_record("x", "at://a/b/c"))
            tx.set_repo(BROKEN, rev="3kbrokenrev22", resync=True)

    run(seed())

    async def backlog_of(svc: IngestService) -> dict[str, Any]:
        async with running(svc):
            await wait_for(lambda: svc.metrics()["backfills_failed"] >= 2, 15)
            return svc.backlog()

    svc = IngestService(store, [], NOWHERE, batch_interval=0.05)
    backlog = asyncio.run(backlog_of(svc))
    # STUCK was never fetched whole (no revision applied): a backfill; BROKEN a resync
    assert backlog == {
        "repos": 2,
        "backfill": 1,
        "resync": 1,
        "heldEvents": 0,
        "listingRepos": False,
        "caughtUp": False,
    }
    app = serve_store(store, svc)
    described = httpx.get(f"{app.url}/xrpc/io.atdata.describeService").json()
    assert described["backlog"] == backlog
    families = described["counts"]["families"]
    assert families["science.alt.dataset"]["labels"] == 1
    assert families["io.atdata"] == {"schemas": 0, "datasets": 0, "lenses": 0}
    metrics = httpx.get(f"{app.url}/metrics").text
    assert "atdata_appview_backlog_repos 2.0" in metrics


def test_an_index_with_nothing_to_fetch_is_caught_up(store: Store) -> None:
    async def go() -> dict[str, Any]:
        svc = IngestService(store, [], NOWHERE, batch_interval=0.05)
        async with running(svc):
            await wait_for(lambda: not svc.backlog()["listingRepos"], 10)
            return svc.backlog()

    assert asyncio.run(go()) == {
        "repos": 0,
        "backfill": 0,
        "resync": 0,
        "heldEvents": 0,
        "listingRepos": False,
        "caughtUp": True,
    }
