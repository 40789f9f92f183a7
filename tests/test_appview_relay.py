"""Following a relay: one socket carrying the commits of several PDSes. The relay names the
repos that hold our collections (listReposByCollection, asked per collection of both
families), but each repo is fetched from the PDS its DID document names, never from the
relay. The relay here is a small one of our own (the devnet has none) in front of the two
real devnet PDSes: it re-sequences their live firehoses into one stream."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import aiohttp
import httpx
import pytest
from _fixtures import peer_records as peer
from _fixtures.ingest import (
    SUBSCRIBE,
    FakeFirehose,
    dataset_record,
    encode_frame,
    frame_parts,
    put_record,
    running,
    wait_for,
    ws_url,
)
from aiohttp import web
from atdata_appview.db.models import datasets, labels, repos
from atdata_appview.db.store import Store
from atdata_appview.ingest import IngestService
from sqlalchemy import select

pytestmark = pytest.mark.devnet


class Relay(FakeFirehose):
    """Forwards the live firehoses of `pds_urls` as one stream with its own seq numbers, and
    answers listReposByCollection from the PDSes' own listings. Serves no repo: a getRepo
    asked of it is recorded and refused."""

    def __init__(self, pds_urls: list[str]) -> None:
        super().__init__()
        self.pds_urls = pds_urls
        self.asked: list[str] = []  # XRPC methods (and collections) asked of the relay
        self._seq = 0
        self._pumps: list[asyncio.Task[None]] = []

    async def _pump(self, pds_url: str, ready: asyncio.Event) -> None:
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(ws_url(pds_url) + SUBSCRIBE) as ws,
        ):
            ready.set()
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.BINARY:
                    continue
                header, body = frame_parts(msg.data)
                self._seq += 1
                body["seq"] = self._seq
                self.add(encode_frame(header, body))

    async def _by_collection(self, request: web.Request) -> web.Response:
        collection = request.query["collection"]
        self.asked.append(f"listReposByCollection {collection}")
        found = []
        async with httpx.AsyncClient() as client:
            for pds in self.pds_urls:
                listed = await client.get(f"{pds}/xrpc/com.atproto.sync.listRepos")
                for repo in listed.json()["repos"]:
                    described = await client.get(
                        f"{pds}/xrpc/com.atproto.repo.describeRepo", params={"repo": repo["did"]}
                    )
                    if collection in described.json().get("collections", []):
                        found.append({"did": repo["did"]})
        return web.json_response({"repos": found})

    async def _get_repo(self, request: web.Request) -> web.Response:
        self.asked.append("getRepo")
        return web.json_response({"error": "NotFound", "message": "a relay"}, status=404)

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get(SUBSCRIBE, self._handler)
        app.router.add_get("/xrpc/com.atproto.sync.listReposByCollection", self._by_collection)
        app.router.add_get("/xrpc/com.atproto.sync.getRepo", self._get_repo)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"ws://127.0.0.1:{port}"
        for pds in self.pds_urls:
            ready = asyncio.Event()
            self._pumps.append(asyncio.create_task(self._pump(pds, ready)))
            await asyncio.wait_for(ready.wait(), 10)
        return self.url

    async def stop(self) -> None:
        for task in self._pumps:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await super().stop()


def _rows(store: Store, table: Any) -> Any:
    def q(conn: Any) -> dict[str, Any]:
        return {r.uri: r for r in conn.execute(select(table))}

    return store.read(q)


def _repo(store: Store, did: str) -> Any:
    def q(conn: Any) -> Any:
        return conn.execute(select(repos).where(repos.c.did == did)).first()

    return store.read(q)


def test_following_a_relay_fetches_each_repo_from_the_pds_its_did_document_names(
    devnet, make_account, tmp_path
):
    a = make_account(0)
    b = make_account(1)
    ca, cb = a.client(), b.client()
    schema = put_record(ca, a.did, peer.PEER_SCHEMA, peer.schema_record())
    entry = put_record(ca, a.did, peer.PEER_ENTRY, peer.entry_record("relayed", schema.uri))
    ours = put_record(cb, b.did, "io.atdata.dataset", dataset_record("relayed-ours"))

    async def go() -> None:
        relay = Relay([p.url for p in devnet.pds])
        host = await relay.start()
        store = Store(f"sqlite:///{tmp_path / 'index.sqlite'}")
        svc = IngestService(store, [host], devnet.plc_url, batch_interval=0.05)
        try:
            async with running(svc):

                async def both() -> bool:
                    got = await _rows(store, datasets)
                    return entry.uri in got and ours.uri in got

                await wait_for(both, 30)  # the start-up backfill: listed by the relay
                for acc in (a, b):  # each repo came from its own PDS, as its DID document says
                    row = await _repo(store, acc.did)
                    assert row.pds == acc.pds_url, (row.pds, acc.pds_url)

                def asked() -> set[str]:
                    return {
                        x.split()[1] for x in relay.asked if x.startswith("listReposByCollection")
                    }

                # the listing goes on after the repos it found first are indexed: wait for its end
                await wait_for(lambda: {peer.PEER_ENTRY, "io.atdata.dataset"} <= asked(), 10)
                assert "getRepo" not in relay.asked
                # live commits of both PDSes arrive through the relay's one socket
                t0 = time.monotonic()
                label = put_record(
                    ca, a.did, peer.PEER_LABEL, peer.label_record("relayed", entry.uri)
                )
                more = put_record(cb, b.did, "io.atdata.dataset", dataset_record("relayed-live"))

                async def live() -> bool:
                    return label.uri in await _rows(store, labels) and more.uri in await _rows(
                        store, datasets
                    )

                await wait_for(live, 10)
                assert time.monotonic() - t0 < 5.0
                assert "getRepo" not in relay.asked
                # other accounts of the shared devnet, listed by the relay too, may still be
                # fetching: the index says when it has caught up
                await wait_for(lambda: svc.metrics()["backlog"]["caughtUp"], 30)
                assert svc.metrics()["commits_refused"] == 0
        finally:
            store.close()
            await relay.stop()

    asyncio.run(go())
