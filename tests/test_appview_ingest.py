"""IngestService against the real devnet (both PDS firehoses), and against a firehose of
our own making for garbage and forged input only."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from typing import Any

import httpx
import pytest
from _fixtures.ingest import (
    FakeFirehose,
    dataset_record,
    delete_record,
    encode_frame,
    following,
    forged_commit,
    frame_parts,
    put_record,
    running,
    wait_for,
    ws_url,
)
from _fixtures.peer_records import PEER_ENTRY, entry_record
from atdata.devnet import activate_account, deactivate_account, delete_account, update_handle
from atdata_appview.db.models import datasets, repos, shards
from atdata_appview.db.store import Store
from atdata_appview.ingest import IngestService
from sqlalchemy import func, select

DS = "io.atdata.dataset"
PEER_SCHEMA_URI = "at://did:plc:peerschemaauthor000000000/science.alt.dataset.schema/3kschema"


def rows(store: Store) -> Any:
    """{uri: (cid, name, hidden)} of every dataset row in the index."""

    def q(conn: Any) -> dict[str, tuple[str, str, bool]]:
        out = conn.execute(
            select(datasets.c.uri, datasets.c.cid, datasets.c.name, datasets.c.hidden)
        )
        return {r.uri: (r.cid, r.name, bool(r.hidden)) for r in out}

    return store.read(q)


def repo_row(store: Store, did: str) -> Any:
    def q(conn: Any) -> Any:
        return conn.execute(select(repos).where(repos.c.did == did)).first()

    return store.read(q)


def pds_records(pds_url: str, did: str, collection: str = DS) -> dict[str, str]:
    """{uri: cid} of the account's records of `collection` (io.atdata.dataset), as its PDS
    holds them."""
    out: dict[str, str] = {}
    cursor = None
    while True:
        params = {"repo": did, "collection": collection, "limit": 100}
        if cursor:
            params["cursor"] = cursor
        body = httpx.get(f"{pds_url}/xrpc/com.atproto.repo.listRecords", params=params).json()
        out.update({r["uri"]: r["cid"] for r in body["records"]})
        cursor = body.get("cursor")
        if not cursor or not body["records"]:
            return out


async def started(svc: IngestService) -> asyncio.Task[Any]:
    task = asyncio.create_task(svc.run())
    await wait_for(lambda: all(h["connected"] for h in svc.metrics()["hosts"].values()), 15)
    return task


async def finish(svc: IngestService, task: asyncio.Task[Any]) -> None:
    await svc.stop()
    await asyncio.wait_for(task, 30)


@pytest.mark.devnet
def test_live_ingest_follows_both_pdses(devnet, make_account, tmp_path):
    a = make_account(0)
    b = make_account(1)
    ca, cb = a.client(), b.client()
    # written before the AppView starts: found by the start-up backfill (listRepos + describeRepo)
    early = put_record(ca, a.did, DS, dataset_record("early-bird"))

    async def go() -> None:
        store = Store(f"sqlite:///{tmp_path / 'index.sqlite'}")
        svc = IngestService(
            store, [ws_url(p.url) for p in devnet.pds], devnet.plc_url, batch_interval=0.1
        )
        task = await started(svc)
        try:
            await wait_for(lambda: _has(store, early.uri), 15)
            # live creates on both PDSes show up within seconds
            t0 = time.monotonic()
            ra = put_record(ca, a.did, DS, dataset_record("mnist-a", tags=("digits",)))
            rb = put_record(cb, b.did, DS, dataset_record("cifar-b", tags=("vision",)))
            await wait_for(lambda: _has(store, ra.uri, rb.uri), 10)
            assert time.monotonic() - t0 < 5.0
            assert svc.metrics()["held_events"] >= 1  # b's first commit waited for its backfill
            # update and delete propagate
            rkey = ra.uri.rsplit("/", 1)[1]
            put_record(ca, a.did, DS, dataset_record("mnist-a-v2"), rkey=rkey)
            await wait_for(lambda: _name_is(store, ra.uri, "mnist-a-v2"), 10)
            delete_record(cb, b.did, DS, rb.uri.rsplit("/", 1)[1])
            await wait_for(lambda: _gone(store, rb.uri), 10)
            # handle change re-resolves the DID
            new_handle = a.handle.replace(a.handle.split(".")[0], a.handle.split(".")[0] + "x")
            update_handle(a, new_handle)
            await wait_for(lambda: _handle_is(store, a.did, new_handle), 10)
            # deactivation hides, activation shows, deletion purges
            deactivate_account(a)
            await wait_for(lambda: _hidden(store, ra.uri, True), 10)
            assert (await repo_row(store, a.did)).status == "deactivated"
            activate_account(a)
            await wait_for(lambda: _hidden(store, ra.uri, False), 10)
            delete_account(a.pds_url, a.did, devnet.admin_password)
            await wait_for(lambda: _gone(store, ra.uri, early.uri), 10)
            assert await repo_row(store, a.did) is None
            m = svc.metrics()
            assert m["records_indexed"] >= 3 and m["garbage_frames"] == 0
            assert m["commits_refused"] == 0
            assert all(h["seq"] for h in m["hosts"].values())
        finally:
            await finish(svc, task)
            cursors = await store.load_cursors()
            store.close()
        assert set(cursors) == {ws_url(p.url) for p in devnet.pds}

    asyncio.run(go())


async def _has(store: Store, *uris: str) -> bool:
    got = await rows(store)
    return all(u in got for u in uris)


async def _gone(store: Store, *uris: str) -> bool:
    got = await rows(store)
    return not any(u in got for u in uris)


async def _name_is(store: Store, uri: str, name: str) -> bool:
    got = await rows(store)
    return uri in got and got[uri][1] == name


async def _hidden(store: Store, uri: str, hidden: bool) -> bool:
    got = await rows(store)
    return uri in got and got[uri][2] is hidden


async def _handle_is(store: Store, did: str, handle: str) -> bool:
    row = await repo_row(store, did)
    return row is not None and row.handle == handle


# -- crash and resume ------------------------------------------------------------------------

RUNNER = textwrap.dedent(
    """
    import asyncio, logging, sys
    from atdata_appview.db.store import Store
    from atdata_appview.ingest import IngestService
    logging.basicConfig(level=logging.INFO)
    db, plc, *hosts = sys.argv[1:]
    async def main():
        store = Store(db)
        svc = IngestService(store, hosts, plc, batch_interval=0.05)
        await svc.start()
        print("READY", flush=True)
        await svc.run()
    asyncio.run(main())
    """
)


@pytest.mark.devnet
def test_sigkill_mid_stream_then_restart_loses_and_doubles_nothing(devnet, make_account, tmp_path):
    accounts = [make_account(0), make_account(1)]
    clients = [acc.client() for acc in accounts]
    db = f"sqlite:///{tmp_path / 'index.sqlite'}"
    hosts = [ws_url(p.url) for p in devnet.pds]
    Store(db).close()  # migrate once up front
    proc = subprocess.Popen(
        [sys.executable, "-c", RUNNER, db, devnet.plc_url, *hosts],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ},
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"READY"
        time.sleep(1.0)  # let both sockets connect
        for i in range(24):  # writes of both families keep flowing while the process dies
            acc, client = accounts[i % 2], clients[i % 2]
            if i % 3 == 2:  # a science.alt.dataset.entry: a dataset row with 2 shard rows
                put_record(client, acc.did, PEER_ENTRY, entry_record(f"crash-{i}", PEER_SCHEMA_URI))
            else:
                put_record(client, acc.did, DS, dataset_record(f"crash-{i}"))
            if i == 6:  # make sure the process got going (committed some state) first
                asyncio.run(wait_for(lambda: _committed(db), 30))
            if i == 12:
                proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    # some later writes: updates and deletes after the crash
    first = next(iter(pds_records(accounts[0].pds_url, accounts[0].did)))
    put_record(
        clients[0],
        accounts[0].did,
        DS,
        dataset_record("crash-updated"),
        rkey=first.rsplit("/", 1)[1],
    )
    second = sorted(pds_records(accounts[1].pds_url, accounts[1].did))[-1]
    delete_record(clients[1], accounts[1].did, DS, second.rsplit("/", 1)[1])

    async def go() -> None:
        store = Store(db)
        before = await store.load_cursors()
        svc = IngestService(store, hosts, devnet.plc_url, batch_interval=0.05)
        task = await started(svc)
        try:
            want: dict[str, str] = {}
            peer_entries: dict[str, str] = {}
            for acc in accounts:
                want.update(pds_records(acc.pds_url, acc.did))
                peer_entries.update(pds_records(acc.pds_url, acc.did, PEER_ENTRY))
            want.update(peer_entries)

            async def equal() -> bool:
                got = await rows(store)
                mine = {
                    u: v[0] for u, v in got.items() if u.split("/")[2] in {a.did for a in accounts}
                }
                return mine == want

            await wait_for(equal, 20)

            # nothing doubled: one shard row per dataset row of these accounts
            def counts(conn: Any) -> tuple[int, int]:
                dids = [a.did for a in accounts]
                n_ds = conn.execute(
                    select(func.count()).select_from(datasets).where(datasets.c.did.in_(dids))
                ).scalar()
                n_sh = conn.execute(
                    select(func.count())
                    .select_from(shards.join(datasets, shards.c.dataset_id == datasets.c.id))
                    .where(datasets.c.did.in_(dids))
                ).scalar()
                return n_ds, n_sh

            n_ds, n_sh = await store.read(counts)
            assert len(peer_entries) == 8
            assert n_ds == len(want) and n_sh == len(want) + len(peer_entries)  # 1 or 2 each
            assert svc.metrics()["commits_refused"] == 0
        finally:
            await finish(svc, task)
            store.close()
        assert before, "the killed process had committed cursors"

    asyncio.run(go())


async def _committed(db: str) -> bool:
    store = Store(db, run_migrations=False)
    try:
        return bool(await store.load_cursors()) and bool(await rows(store))
    finally:
        store.close()


# -- a firehose of our own making: garbage, forged, stale ---------------------------------------


def _bump(frame: bytes, seq: int) -> bytes:
    header, body = frame_parts(frame)
    body["seq"] = seq
    return encode_frame(header, body)


@pytest.mark.devnet
def test_garbage_forged_and_invalid_input_is_counted_and_skipped(real_frames, index_url, caplog):
    mine = real_frames.of_repo()
    last_seq = frame_parts(mine[-1])[1]["seq"]
    beta = real_frames.commit("create", "io.atdata.dataset/3kbeta00000aa")

    forged = forged_commit(beta, last_seq + 2)  # newer than anything: only the signature stops it

    async def go() -> None:
        fake = FakeFirehose()
        host = await fake.start()
        fake.add(mine[0])
        fake.add(b"\x00\x01garbage")  # not CBOR
        fake.add(encode_frame({"op": 1, "t": "#commit"}, {"seq": "nope"}))  # CBOR, wrong shape
        for f in mine[1:]:
            fake.add(f)
        fake.add(_bump(beta, last_seq + 1))  # replayed: rev not newer -> ignored
        fake.add(forged)
        store = Store(index_url)
        svc = IngestService(store, [host], real_frames.plc_url, backfill=False, batch_interval=0.05)
        try:
            async with running(svc):
                await wait_for(lambda: svc.metrics()["hosts"][host]["seq"] == last_seq + 2, 20)
                await svc.drain()
                got = await rows(store)
                uris = {u for u in got if real_frames.did in u}
                base = f"at://{real_frames.did}/{DS}/"
                # alpha created, updated, deleted; beta kept; the invalid record never indexed
                assert uris == {base + "3kbeta00000aa"}
                m = svc.metrics()
                assert m["garbage_frames"] == 2
                assert m["invalid_records"] == 1
                assert m["commits_refused"] == 1
                assert m["commits_stale"] == 1
                assert await store.load_cursor(host) == last_seq + 2
                logged = [
                    r.getMessage() for r in caplog.records if "invalid record" in r.getMessage()
                ]
                assert len(logged) == 1 and "3kbad000000aa" in logged[0] and "totals" in logged[0]
        finally:
            store.close()
            await fake.stop()

    asyncio.run(go())


@pytest.mark.devnet
def test_reconnects_and_resumes_from_cursor(real_frames, tmp_path):
    mine = real_frames.of_repo()
    seqs = [frame_parts(f)[1]["seq"] for f in mine]

    async def go() -> None:
        fake = FakeFirehose()
        host = await fake.start()
        for f in mine[:3]:
            fake.add(f)
        store = Store(f"sqlite:///{tmp_path / 'i.sqlite'}")
        svc = IngestService(store, [host], real_frames.plc_url, backfill=False, batch_interval=0.05)
        task = asyncio.create_task(svc.run())
        try:
            await wait_for(lambda: svc.metrics()["hosts"][host]["seq"] == seqs[2], 15)
            await fake.stop()  # the host goes away ...
            await wait_for(lambda: not svc.metrics()["hosts"][host]["connected"], 10)
            fake2 = FakeFirehose()
            fake2.url = host
            for f in mine:
                fake2.add(f)
            port = int(host.rsplit(":", 1)[1])
            from aiohttp import web

            app = web.Application()
            app.router.add_get("/xrpc/com.atproto.sync.subscribeRepos", fake2._handler)
            runner = web.AppRunner(app)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()  # ... and comes back
            try:
                await wait_for(lambda: svc.metrics()["hosts"][host]["seq"] == seqs[-1], 30)
                assert fake2.cursors and fake2.cursors[0] == str(seqs[2])  # resumed, no replay
                assert svc.metrics()["hosts"][host]["reconnects"] >= 1
            finally:
                await finish(svc, task)
                await runner.cleanup()
        finally:
            if not task.done():
                await finish(svc, task)
            store.close()

    asyncio.run(go())


# -- broken chain -> resync; backfill politeness -------------------------------------------------


@pytest.mark.devnet
def test_broken_chain_marks_resync_and_backfills_from_the_pds(real_frames, tmp_path):
    commits = [
        f
        for f in real_frames.of_repo()
        if frame_parts(f)[0]["t"] == "#commit" and frame_parts(f)[1]["ops"]
    ]
    known_rev = frame_parts(commits[0])[1]["rev"]  # we pretend to hold the repo at commit 0
    gap = commits[2:]  # commit 1 never reaches us: commit 2's `since` is not our rev

    async def go() -> None:
        fake = FakeFirehose()
        host = await fake.start()
        for f in gap:
            fake.add(f)
        store = Store(f"sqlite:///{tmp_path / 'i.sqlite'}")
        async with store.transaction() as tx:
            tx.set_repo(real_frames.did, rev=known_rev)
        svc = IngestService(
            store, [host], real_frames.plc_url, backfill_at_start=False, batch_interval=0.05
        )
        try:
            async with running(svc):
                want = {
                    u: c
                    for u, c in pds_records(real_frames.pds_url, real_frames.did).items()
                    if not u.endswith("3kbad000000aa")  # lexicon-invalid: never indexed
                }

                async def equal() -> bool:
                    got = await rows(store)
                    return {u: v[0] for u, v in got.items() if real_frames.did in u} == want

                await wait_for(equal, 20)
                m = svc.metrics()
                assert m["resyncs"] >= 1 and m["backfills_done"] >= 1
                assert m["reasons"].get("broken_chain", 0) >= 1
                row = await repo_row(store, real_frames.did)
                assert not row.resync and row.rev >= frame_parts(gap[-1])[1]["rev"]
        finally:
            store.close()
            await fake.stop()

    asyncio.run(go())


def test_backfill_enumeration_honours_429_and_falls_back_to_list_repos():
    from aiohttp import web
    from atdata_appview.backfill import Backfiller, HostRateLimiter
    from atdata_appview.identity import IdentityResolver
    from atdata_appview.indexer import IngestCounters

    calls: list[str] = []

    async def list_by_collection(request: web.Request) -> web.Response:
        calls.append("byCollection")
        return web.json_response({"error": "MethodNotImplemented"}, status=501)

    async def list_repos(request: web.Request) -> web.Response:
        calls.append("listRepos")
        if calls.count("listRepos") == 1:
            return web.json_response(
                {"error": "RateLimitExceeded"}, status=429, headers={"Retry-After": "1"}
            )
        return web.json_response({"repos": [{"did": "did:plc:ours"}, {"did": "did:plc:theirs"}]})

    async def describe(request: web.Request) -> web.Response:
        did = request.query["repo"]
        cols = (
            ["io.atdata.dataset", "app.bsky.feed.post"]
            if did == "did:plc:ours"
            else ["app.bsky.feed.post"]
        )
        return web.json_response({"did": did, "collections": cols})

    async def go() -> None:
        app = web.Application()
        app.router.add_get("/xrpc/com.atproto.sync.listReposByCollection", list_by_collection)
        app.router.add_get("/xrpc/com.atproto.sync.listRepos", list_repos)
        app.router.add_get("/xrpc/com.atproto.repo.describeRepo", describe)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]

        async def done(*_: Any) -> None:
            return None

        bf = Backfiller(
            IdentityResolver("http://127.0.0.1:9"),
            IngestCounters(),
            done,
            limiter=HostRateLimiter(rate=50),
        )
        try:
            t0 = time.monotonic()
            found = await bf.enumerate(f"ws://127.0.0.1:{port}")
            waited = time.monotonic() - t0
        finally:
            await bf.close()
            await runner.cleanup()
        assert found == {"did:plc:ours"}  # only repos holding our collections
        assert calls.count("listRepos") == 2 and waited >= 1.0  # paused for Retry-After
        assert calls[0] == "byCollection"

    asyncio.run(go())


def test_rate_limiter_spaces_requests_per_host():
    from atdata_appview.backfill import HostRateLimiter

    async def go() -> tuple[float, float]:
        lim = HostRateLimiter(rate=20.0, burst=1)
        t0 = time.monotonic()
        for _ in range(6):
            await lim.acquire("a")
        one_host = time.monotonic() - t0
        t0 = time.monotonic()
        await lim.acquire("b")  # another host has its own bucket
        return one_host, time.monotonic() - t0

    one_host, other = asyncio.run(go())
    assert one_host >= 5 / 20.0 * 0.9
    assert other < 0.05


def test_stalled_socket_is_detected_and_reconnected():
    """A host that accepts the socket but never answers pings (a fault a real PDS cannot be
    made to produce on demand) is dropped by the heartbeat and dialled again."""
    from aiohttp import web
    from atdata_appview.firehose import FirehoseConnection

    sockets: list[web.WebSocketResponse] = []
    cursors: list[str | None] = []

    async def silent(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=False)  # never reads, so never pongs
        await ws.prepare(request)
        sockets.append(ws)
        cursors.append(request.query.get("cursor"))
        await asyncio.sleep(30)
        return ws

    async def go() -> FirehoseConnection:
        app = web.Application()
        app.router.add_get("/xrpc/com.atproto.sync.subscribeRepos", silent)
        runner = web.AppRunner(app, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        conn = FirehoseConnection(
            f"ws://127.0.0.1:{port}", lambda: 41, heartbeat=0.3, backoff_base=0.05
        )
        try:
            async with following(conn):
                await wait_for(lambda: conn.connects >= 3, 10, 0.05)
        finally:
            for ws in sockets:
                await ws.close()
            await runner.cleanup()
        return conn

    conn = asyncio.run(go())
    assert conn.failures >= 2 and conn.last_error
    assert cursors[:3] == ["41", "41", "41"]  # every reconnect resumes from the cursor


def test_host_that_never_answers_the_handshake_times_out_and_backs_off(caplog):
    """A host that accepts TCP and then says nothing (a fault a real PDS cannot be made to
    produce) fails the connect within `connect_timeout`, is logged, and is dialled again."""
    import logging

    from atdata_appview.firehose import FirehoseConnection

    accepted: list[asyncio.StreamWriter] = []

    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # read nothing, answer nothing, keep the socket open

    async def go() -> tuple[FirehoseConnection, float]:
        server = await asyncio.start_server(mute, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        conn = FirehoseConnection(
            f"ws://127.0.0.1:{port}", lambda: None, connect_timeout=0.3, backoff_base=0.05
        )
        t0 = time.monotonic()
        try:
            async with following(conn):
                await wait_for(lambda: conn.failures >= 2, 10, 0.05)
                took = time.monotonic() - t0
        finally:
            for w in accepted:
                w.close()
            server.close()
            await server.wait_closed()
        return conn, took

    with caplog.at_level(logging.WARNING, logger="atdata_appview.firehose"):
        conn, took = asyncio.run(go())
    assert took < 5.0 and conn.connects == 0 and len(accepted) >= 2
    assert "handshake within 0.3s" in (conn.last_error or "")
    logged = [r.getMessage() for r in caplog.records if "cannot connect" in r.getMessage()]
    assert logged and "handshake" in logged[0]


def test_future_cursor_error_frame_makes_ingest_follow_the_host_live(tmp_path, caplog):
    """A host that does not know our cursor (it was reset) says FutureCursor and closes:
    the error is logged and counted, and the next connection asks for no cursor."""

    async def go() -> tuple[list[str | None], dict[str, Any]]:
        fake = FakeFirehose()
        host = await fake.start()
        # an error frame carries no seq; this one rides on a seq above ours so the fake sends it
        fake.add(encode_frame({"op": -1}, {"error": "FutureCursor", "seq": 10**9}))
        store = Store(f"sqlite:///{tmp_path / 'i.sqlite'}")
        async with store.transaction() as tx:
            tx.save_cursor(host, 500)
        svc = IngestService(store, [host], "http://127.0.0.1:9", backfill=False)
        try:
            async with running(svc):
                await wait_for(lambda: len(fake.cursors) >= 2, 15)
                return list(fake.cursors), svc.metrics()
        finally:
            store.close()
            await fake.stop()

    cursors, m = asyncio.run(go())
    assert cursors[:2] == ["500", None]
    assert m["error_frames"] >= 1 and m["garbage_frames"] == 0
    assert any("FutureCursor" in r.getMessage() for r in caplog.records)


def test_sync_and_account_events_route_to_their_handlers(tmp_path):
    """#sync of a repo we index marks it for a whole fetch (unless not newer than ours);
    #account hides, shows and purges; events of repos we do not index change nothing."""
    did, other = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa", "did:plc:bbbbbbbbbbbbbbbbbbbbbbbb"

    def sync(seq: int, repo: str, rev: str) -> bytes:
        return encode_frame({"op": 1, "t": "#sync"}, {"seq": seq, "did": repo, "rev": rev})

    def account(seq: int, repo: str, active: bool, status: str | None = None) -> bytes:
        body: dict[str, Any] = {"seq": seq, "did": repo, "active": active}
        if status:
            body["status"] = status
        return encode_frame({"op": 1, "t": "#account"}, body)

    async def go() -> list[Any]:
        store = Store(f"sqlite:///{tmp_path / 'i.sqlite'}")
        async with store.transaction() as tx:
            tx.upsert_record(did, DS, "d1", "c1", dataset_record("held"), "3kaaa")
        svc = IngestService(store, [], "http://127.0.0.1:9", backfill=False)
        await svc.start()
        seen = []
        try:
            frames = [
                sync(1, did, "3kaaa"),  # not newer than ours: nothing
                sync(2, other, "3kzzz"),  # not a repo we index: nothing
                account(3, did, False, "takendown"),
                account(4, other, False, "takendown"),
                sync(5, did, "3kbbb"),
                account(6, did, True),
                account(7, did, False, "deleted"),
            ]
            for frame in frames:
                await svc.handle_frame("ws://h", frame)
                await svc.drain()
                seen.append(await repo_row(store, did))
            assert await repo_row(store, other) is None
        finally:
            await svc.stop()
            await svc.run()
            store.close()
        return seen

    seen = asyncio.run(go())
    assert [(r.status, bool(r.resync)) for r in seen[:6]] == [
        ("active", False),
        ("active", False),
        ("takendown", False),
        ("takendown", False),
        ("takendown", True),
        ("active", True),
    ]
    assert seen[6] is None  # deleted: purged
