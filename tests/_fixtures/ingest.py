"""Helpers for the AppView ingest tests: capture real frames, publish records, and a
firehose of our own making (only for the faults a real PDS cannot produce)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import aiohttp
import libipld
import pytest
from aiohttp import web
from atdata_appview.frames import encode_car, make_cid, parse_car

SUBSCRIBE = "/xrpc/com.atproto.sync.subscribeRepos"


def ws_url(http_url: str) -> str:
    return http_url.replace("http://", "ws://").replace("https://", "wss://")


async def capture_frames(
    pds_url: str,
    stop: Callable[[list[bytes]], bool],
    *,
    cursor: int | None = 0,
    timeout: float = 15.0,
) -> list[bytes]:
    """Raw binary frames from a real PDS firehose until `stop(frames)` is true."""
    url = ws_url(pds_url) + SUBSCRIBE + (f"?cursor={cursor}" if cursor is not None else "")
    frames: list[bytes] = []
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        while not stop(frames):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"firehose of {pds_url}: condition not met in {timeout}s")
            try:
                msg = await ws.receive(timeout=left)
            except TimeoutError:
                continue
            if msg.type == aiohttp.WSMsgType.BINARY:
                frames.append(msg.data)
            elif msg.type in (
                aiohttp.WSMsgType.CLOSE,
                aiohttp.WSMsgType.CLOSED,
                aiohttp.WSMsgType.ERROR,
            ):
                raise ConnectionError(f"firehose of {pds_url} closed")
    return frames


def frame_parts(frame: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    header, body = libipld.decode_dag_cbor_multi(frame)
    return header, body


def encode_frame(header: dict[str, Any], body: dict[str, Any]) -> bytes:
    return libipld.encode_dag_cbor(header) + libipld.encode_dag_cbor(body)


def commits_touching(frames: Sequence[bytes], did: str, prefix: str) -> list[bytes]:
    out = []
    for f in frames:
        header, body = frame_parts(f)
        if (
            header.get("t") == "#commit"
            and body.get("repo") == did
            and any(op["path"].startswith(prefix) for op in body["ops"])
        ):
            out.append(f)
    return out


def dataset_record(name: str, *, tags: Sequence[str] = ("test",), description: str = "") -> dict:
    """A dataset record that satisfies lexicons/io/atdata/dataset.json."""
    sha = hashlib.sha256(name.encode()).hexdigest()
    return {
        "$type": "io.atdata.dataset",
        "name": name,
        "description": description or f"{name} for ingest tests",
        "schema": {
            "uri": "at://did:plc:aaaaaaaaaaaaaaaaaaaaaaaa/io.atdata.schema/3kschemaaaaaa",
            "cid": libipld.encode_cid(make_cid(b"schema")),
        },
        "storage": {"$type": "io.atdata.dataset#httpStorage"},
        "shards": [
            {
                "url": f"https://data.example.org/{name}-0.tar",
                "samples": 10,
                "bytes": 1024,
                "sha256": sha,
            }
        ],
        "totals": {"samples": 10, "bytes": 1024, "shards": 1},
        "tags": list(tags),
        "license": "MIT",
        "createdAt": "2026-11-25T12:00:00.000Z",
    }


def put_record(
    client: Any, did: str, collection: str, record: dict, rkey: str | None = None
) -> Any:
    """createRecord (or putRecord with `rkey`) through an logged-in atproto Client."""
    from atproto import models

    if rkey is None:
        return client.com.atproto.repo.create_record(
            models.ComAtprotoRepoCreateRecord.Data(repo=did, collection=collection, record=record)
        )
    return client.com.atproto.repo.put_record(
        models.ComAtprotoRepoPutRecord.Data(
            repo=did, collection=collection, rkey=rkey, record=record
        )
    )


def delete_record(client: Any, did: str, collection: str, rkey: str) -> None:
    from atproto import models

    client.com.atproto.repo.delete_record(
        models.ComAtprotoRepoDeleteRecord.Data(repo=did, collection=collection, rkey=rkey)
    )


def rebuild_commit(
    frame: bytes,
    *,
    mutate_commit: Callable[[dict], None] | None = None,
    mutate_blocks: Callable[[dict[bytes, bytes], bytes], None] | None = None,
    mutate_body: Callable[[dict], None] | None = None,
) -> bytes:
    """Re-pack a real commit frame after tampering with its commit block, blocks or body."""
    header, body = frame_parts(frame)
    car = parse_car(body["blocks"])
    blocks = dict(car.blocks)
    root = body["commit"]
    if mutate_commit is not None:
        commit = libipld.decode_dag_cbor(blocks.pop(root))
        mutate_commit(commit)
        data = libipld.encode_dag_cbor(commit)
        root = make_cid(data)
        blocks = {root: data, **blocks}
    if mutate_blocks is not None:
        mutate_blocks(blocks, root)
    body["commit"] = root
    body["blocks"] = encode_car([root], blocks)
    if mutate_body is not None:
        mutate_body(body)
    return encode_frame(header, body)


def forged_commit(frame: bytes, seq: int) -> bytes:
    """A real commit frame re-packed at ``seq`` with a rev newer than anything and a zeroed
    signature: only the signature check stands between it and the index."""

    def forge_sig(commit: dict) -> None:
        commit["rev"] = "3zzzzzzzzzzzz"
        commit["sig"] = bytes(64)

    def newer(body: dict) -> None:
        body["rev"] = "3zzzzzzzzzzzz"
        body["seq"] = seq

    return rebuild_commit(frame, mutate_commit=forge_sig, mutate_body=newer)


class FakeFirehose:
    """A tiny subscribeRepos server replaying the frames we give it (seq-filtered by cursor)."""

    def __init__(self) -> None:
        self.frames: list[tuple[int, bytes]] = []
        self.connections = 0
        self.cursors: list[str | None] = []
        self._new = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._sockets: set[web.WebSocketResponse] = set()
        self.url = ""

    def add(self, frame: bytes) -> None:
        """Queue a frame; one without a seq (garbage) rides on the previous frame's seq."""
        try:
            _, body = frame_parts(frame)
            seq = body.get("seq") if isinstance(body, dict) else None
        except Exception:
            seq = None
        if not isinstance(seq, int):
            seq = self.frames[-1][0] if self.frames else 0
        self.frames.append((seq, frame))
        self._new.set()

    async def _handler(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._sockets.add(ws)
        self.connections += 1
        cursor = request.query.get("cursor")
        self.cursors.append(cursor)
        after = int(cursor) if cursor is not None else -1
        sent = 0
        while not ws.closed:
            while sent < len(self.frames):
                seq, data = self.frames[sent]
                sent += 1
                if seq > after:
                    await ws.send_bytes(data)
            self._new.clear()
            # reading lets the server see a close from the client; nothing else is expected
            with contextlib.suppress(TimeoutError):
                msg = await asyncio.wait_for(ws.receive(), timeout=0.2)
                if msg.type in (web.WSMsgType.CLOSE, web.WSMsgType.CLOSED, web.WSMsgType.ERROR):
                    break
        self._sockets.discard(ws)
        return ws

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get(SUBSCRIBE, self._handler)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"ws://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        for ws in list(self._sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
def sqlite_url(tmp_path: Any) -> str:
    return f"sqlite:///{tmp_path / 'index.sqlite'}"


async def wait_for(cond: Callable[[], Any], timeout: float = 10.0, interval: float = 0.1) -> Any:
    """Poll `cond` (sync or async) until it returns a truthy value."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def running(svc: Any) -> AsyncIterator[Any]:
    """Run an `IngestService` in a task for the block, then stop it and wait for the task (a
    failure of the service raises here)."""
    task = asyncio.create_task(svc.run())
    try:
        yield svc
    finally:
        await svc.stop()
        await asyncio.wait_for(task, 30)


@contextlib.asynccontextmanager
async def following(conn: Any) -> AsyncIterator[None]:
    """Read a `FirehoseConnection`'s frames in a task for the block (dropping them), then stop
    the connection and the task."""

    async def consume() -> None:
        async for _ in conn.frames():
            pass

    task = asyncio.create_task(consume())
    try:
        yield
    finally:
        await conn.stop()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class RealFrames:
    """Frames captured from a real devnet PDS for one account's known sequence of writes."""

    def __init__(self, account: Any, plc_url: str, frames: list[bytes]) -> None:
        self.account = account
        self.did = account.did
        self.pds_url = account.pds_url
        self.plc_url = plc_url
        self.frames = frames

    def of_repo(self) -> list[bytes]:
        return [
            f
            for f in self.frames
            if frame_parts(f)[1].get("repo", frame_parts(f)[1].get("did")) == self.did
        ]

    def commit(self, action: str, path: str) -> bytes:
        """The commit frame of this account with an op `action` on `path`."""
        for f in self.frames:
            header, body = frame_parts(f)
            if (
                header.get("t") == "#commit"
                and body.get("repo") == self.did
                and any(op["action"] == action and op["path"] == path for op in body["ops"])
            ):
                return f
        raise KeyError((action, path))


@pytest.fixture(scope="session")
def real_frames(devnet: Any) -> RealFrames:
    """An account on PDS 1 that created, updated and deleted io.atdata.dataset records, wrote
    one lexicon-invalid dataset (3kbad000000aa) and one record of another collection; all
    firehose frames up to its last commit (the delete of 3kalpha0000aa)."""
    import secrets

    from .services import new_account

    pds = devnet.pds[0]
    account = new_account(pds, f"fr{secrets.token_hex(4)}")
    client = account.client()
    put_record(
        client, account.did, "io.atdata.dataset", dataset_record("alpha"), rkey="3kalpha0000aa"
    )
    put_record(
        client,
        account.did,
        "com.example.post",
        {"$type": "com.example.post", "text": "hi"},
        rkey="3kpost00000aa",
    )
    put_record(
        client, account.did, "io.atdata.dataset", dataset_record("alpha-v2"), rkey="3kalpha0000aa"
    )
    put_record(
        client, account.did, "io.atdata.dataset", dataset_record("beta"), rkey="3kbeta00000aa"
    )
    bad = {k: v for k, v in dataset_record("bad").items() if k != "totals"}  # lexicon-invalid
    put_record(client, account.did, "io.atdata.dataset", bad, rkey="3kbad000000aa")
    delete_record(client, account.did, "io.atdata.dataset", "3kalpha0000aa")

    def done(frames: list[bytes]) -> bool:
        for f in reversed(frames):
            header, body = frame_parts(f)
            if header.get("t") == "#commit" and body.get("repo") == account.did:
                return any(op["action"] == "delete" for op in body["ops"])
        return False

    frames = asyncio.run(capture_frames(pds.url, done, cursor=0, timeout=30))
    return RealFrames(account, devnet.plc_url, frames)
