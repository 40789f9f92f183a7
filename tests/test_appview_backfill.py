"""Backfill fetches what DID documents point at: through the network guard, size-capped.

The PDS here is a small aiohttp server of our own: a private address named by a DID document
and a repo body larger than any real test PDS would hold are faults a devnet cannot produce.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import libipld
import pytest
from aiohttp import web
from atdata_appview.backfill import Backfiller, HostRateLimiter
from atdata_appview.frames import make_cid
from atdata_appview.identity import IdentityResolver, parse_did_document
from atdata_appview.indexer import IngestCounters

DID = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"


def did_doc(pds: str) -> dict[str, Any]:
    return {
        "id": DID,
        "alsoKnownAs": ["at://someone.test"],
        "service": [
            {"id": "#atproto_pds", "type": "AtprotoPersonalDataServer", "serviceEndpoint": pds}
        ],
    }


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    return bytes(out) + bytes([value])


class FakePds:
    """getRepo answering with `total` bytes in 1 MiB chunks (a CAR header, then one section
    that claims all the rest); counts what it managed to send."""

    def __init__(self, total: int, *, announce: bool = False) -> None:
        self.total = total
        self.announce = announce
        self.requests = 0
        self.sent = 0
        self.finished = asyncio.Event()
        self.runner: web.AppRunner | None = None

    async def get_repo(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        resp = web.StreamResponse(headers={"Content-Type": "application/vnd.ipld.car"})
        if self.announce:
            resp.content_length = self.total
        await resp.prepare(request)
        header = libipld.encode_dag_cbor({"version": 1, "roots": [make_cid(b"root")]})
        start = bytes([len(header)]) + header + _varint(self.total)
        chunk = b"\0" * (1 << 20)
        try:
            await resp.write(start)
            self.sent += len(start)
            while self.sent < self.total:
                await resp.write(chunk)
                self.sent += len(chunk)
        except (ConnectionError, RuntimeError):
            pass  # the client hung up: what we want
        finally:
            self.finished.set()
        return resp

    async def start(self, host: str = "127.0.0.1") -> int:
        app = web.Application()
        app.router.add_get("/xrpc/com.atproto.sync.getRepo", self.get_repo)
        self.runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self.runner.setup()
        site = web.TCPSite(self.runner, host, 0)
        await site.start()
        return site._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


async def backfill_once(
    pds_url: str, **options: Any
) -> tuple[IngestCounters, list[tuple[str, Any, Any]]]:
    """Queue DID (whose document names `pds_url`) on a Backfiller; return after it is done."""
    resolver = IdentityResolver("http://127.0.0.1:9")
    resolver.preload(parse_did_document(DID, did_doc(pds_url)))
    counters = IngestCounters()
    done: list[tuple[str, Any, Any]] = []

    async def on_done(did: str, repo: Any, ident: Any) -> None:
        done.append((did, repo, ident))

    bf = Backfiller(resolver, counters, on_done, limiter=HostRateLimiter(rate=50), **options)
    task = asyncio.create_task(bf.run())
    try:
        bf.enqueue(DID)
        deadline = time.monotonic() + 20
        while not done and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await bf.close()
        await resolver.close()
    assert done, "backfill did not finish"
    return counters, done


def test_did_document_naming_a_private_address_is_refused(monkeypatch, caplog):
    monkeypatch.delenv("ATDATA_ALLOW_PRIVATE_NETWORK", raising=False)
    pds = FakePds(1 << 20)

    async def go() -> tuple[IngestCounters, list[Any]]:
        port = await pds.start("127.0.0.2")
        try:
            return await backfill_once(f"http://127.0.0.2:{port}")
        finally:
            await pds.stop()

    counters, done = asyncio.run(go())
    assert pds.requests == 0  # nothing was sent to the address the document named
    assert done[0][1] is None and counters.backfills_failed == 1
    assert counters.reasons.get("unsafe_pds") == 1
    assert any(
        "127.0.0.2" in r.getMessage() and "refused" in r.getMessage() for r in caplog.records
    )


def test_the_devnet_switch_lets_backfill_reach_a_private_pds(monkeypatch):
    monkeypatch.setenv("ATDATA_ALLOW_PRIVATE_NETWORK", "1")
    pds = FakePds(1 << 20)

    async def go() -> IngestCounters:
        port = await pds.start()
        try:
            return (await backfill_once(f"http://127.0.0.1:{port}"))[0]
        finally:
            await pds.stop()

    counters = asyncio.run(go())
    assert pds.requests == 1  # reached; its CAR is cut short, so the backfill fails there
    assert counters.backfills_failed == 1 and "unsafe_pds" not in counters.reasons


@pytest.mark.parametrize("announce", [False, True], ids=["streamed", "content-length"])
def test_repo_over_the_cap_is_skipped_without_reading_it_all(announce, caplog):
    total = 256 << 20  # far more than the cap; stopped long before it is all sent
    pds = FakePds(total, announce=announce)

    async def go() -> tuple[IngestCounters, list[Any]]:
        port = await pds.start()
        try:
            result = await backfill_once(
                f"http://127.0.0.1:{port}", allow_private=True, max_repo_bytes=4 << 20
            )
            await asyncio.wait_for(pds.finished.wait(), 10)
            return result
        finally:
            await pds.stop()

    counters, done = asyncio.run(go())
    assert done[0][1] is None  # skipped: nothing to index
    assert counters.repos_too_big == 1 and counters.reasons == {"repo_too_big": 1}
    assert counters.backfills_failed == 0 and counters.backfills_done == 0
    assert pds.sent < 64 << 20  # the client hung up: most of the body was never sent
    assert any("cap" in r.getMessage() for r in caplog.records if r.levelname == "WARNING")
