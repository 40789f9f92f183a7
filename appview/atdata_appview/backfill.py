"""Backfill: fetch whole repos that hold `io.atdata.*` records, verify them, index them.

Only repos with our records are fetched, never the whole network: a host that
implements `com.atproto.sync.listReposByCollection` (a relay) names them; a PDS
without it lists its own accounts with `listRepos`, and `describeRepo` tells
which of those have one of our collections. Each repo comes from its own PDS
(`getRepo`, resolved through its DID document), and is verified in full
(signature, every MST node hash) before a single record is indexed.

Requests are rate-limited per host, and a 429 pauses that host for its
`Retry-After` (or a backoff) before the request is retried.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from atdata.errors import ResolutionError
from atdata.ratelimit import retry_after_seconds
from atdata.records import OWN_COLLECTIONS

from .frames import ATDATA_PREFIX
from .identity import Identity, IdentityResolver
from .indexer import IngestCounters
from .verify import VerifiedRepo, VerifyError, verify_repo

__all__ = ["Backfiller", "HostRateLimiter", "http_base"]

log = logging.getLogger(__name__)

OUR_COLLECTIONS = OWN_COLLECTIONS


def http_base(host: str) -> str:
    """`ws://h:p[/...]` or `http://h:p` -> `http://h:p` (wss -> https)."""
    parts = urlsplit(host if "://" in host else f"wss://{host}")
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    return f"{scheme}://{parts.netloc}"


class HostRateLimiter:
    """A token bucket per host, plus a pause per host after a 429."""

    def __init__(self, rate: float = 20.0, burst: int = 10) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens: dict[str, float] = {}
        self._stamp: dict[str, float] = {}
        self._paused_until: dict[str, float] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def acquire(self, host: str) -> None:
        lock = self._locks.setdefault(host, asyncio.Lock())
        async with lock:
            while True:
                now = time.monotonic()
                pause = self._paused_until.get(host, 0.0) - now
                if pause > 0:
                    await asyncio.sleep(pause)
                    continue
                tokens = min(
                    self.burst,
                    self._tokens.get(host, self.burst)
                    + (now - self._stamp.get(host, now)) * self.rate,
                )
                self._stamp[host] = now
                if tokens >= 1:
                    self._tokens[host] = tokens - 1
                    return
                self._tokens[host] = tokens
                await asyncio.sleep((1 - tokens) / self.rate)

    def pause(self, host: str, seconds: float) -> None:
        until = time.monotonic() + seconds
        self._paused_until[host] = max(self._paused_until.get(host, 0.0), until)


class Backfiller:
    """A queue of DIDs to fetch whole; results go to `on_done(did, repo | None, ident)`."""

    def __init__(
        self,
        resolver: IdentityResolver,
        counters: IngestCounters,
        on_done: Callable[[str, VerifiedRepo | None, Identity | None], Awaitable[None]],
        *,
        session: aiohttp.ClientSession | None = None,
        limiter: HostRateLimiter | None = None,
        workers: int = 2,
        timeout: float = 60.0,
        prefix: str = ATDATA_PREFIX,
        max_retries: int = 5,
    ) -> None:
        self.resolver = resolver
        self.counters = counters
        self.on_done = on_done
        self.session = session
        self.limiter = limiter or HostRateLimiter()
        self.workers = workers
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.prefix = prefix
        self.max_retries = max_retries
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        self.active: set[str] = set()  # queued or running: live events of these are held
        self.last_attempt: dict[str, float] = {}

    def enqueue(self, did: str) -> bool:
        if did in self.active:
            return False
        self.active.add(did)
        self.last_attempt[did] = time.monotonic()
        self.queue.put_nowait(did)
        return True

    @property
    def queued(self) -> int:
        return len(self.active)

    async def run(self) -> None:
        """Run the workers until cancelled."""
        await asyncio.gather(*(self._worker() for _ in range(self.workers)))

    async def _worker(self) -> None:
        while True:
            did = await self.queue.get()
            repo: VerifiedRepo | None = None
            ident: Identity | None = None
            try:
                ident, repo = await self.fetch(did)
                self.counters.backfills_done += 1
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure: log, count, keep the resync mark
                self.counters.backfills_failed += 1
                self.counters.note("backfill_failed")
                log.warning("backfill of %s failed: %s", did, exc)
            try:
                await self.on_done(did, repo, ident)
            finally:
                self.active.discard(did)
                self.queue.task_done()

    # -- HTTP --------------------------------------------------------------------------------

    async def _get(self, base: str, nsid: str, params: dict[str, Any]) -> aiohttp.ClientResponse:
        """GET an XRPC query with rate limiting and 429 handling; caller reads the body."""
        if self.session is None:
            self.session = aiohttp.ClientSession()
        host = urlsplit(base).netloc
        for attempt in range(self.max_retries + 1):
            await self.limiter.acquire(host)
            resp = await self.session.get(
                f"{base}/xrpc/{nsid}", params=params, timeout=self.timeout
            )
            if resp.status != 429:
                return resp
            asked = retry_after_seconds(resp.headers, resp.status) or 0.0
            resp.release()
            wait = max(asked, min(60.0, 0.5 * 2**attempt) * (0.5 + random.random()))
            log.info("%s: 429 from %s, pausing %.1fs", nsid, host, wait)
            self.limiter.pause(host, wait)
        raise ResolutionError(
            f"{nsid} on {host}: still rate-limited after {self.max_retries} retries"
        )

    async def _json(self, base: str, nsid: str, params: dict[str, Any]) -> tuple[int, Any]:
        resp = await self._get(base, nsid, params)
        async with resp:
            try:
                body = await resp.json(content_type=None)
            except ValueError:
                body = None
            return resp.status, body

    async def fetch(self, did: str) -> tuple[Identity, VerifiedRepo]:
        """Resolve `did`, download its repo from its own PDS and verify it whole."""
        ident = await self.resolver.resolve(did)
        if not ident.pds:
            raise ResolutionError(f"{did} names no PDS")
        resp = await self._get(ident.pds, "com.atproto.sync.getRepo", {"did": did})
        async with resp:
            if resp.status != 200:
                raise ResolutionError(f"getRepo {did}: HTTP {resp.status} {await resp.text()}")
            car = await resp.read()
        try:
            repo = await asyncio.to_thread(verify_repo, did, car, ident.key, self.prefix)
        except VerifyError:
            ident = await self.resolver.resolve(did, fresh=True)  # the key may have rotated
            repo = await asyncio.to_thread(verify_repo, did, car, ident.key, self.prefix)
        return ident, repo

    async def enumerate(self, host: str, collections: Iterable[str] = OUR_COLLECTIONS) -> set[str]:
        """DIDs on `host` holding any of `collections` (listReposByCollection, else listRepos)."""
        base = http_base(host)
        found: set[str] = set()
        supported = True
        for collection in collections:
            cursor: str | None = None
            while True:
                params = {"collection": collection, "limit": 1000}
                if cursor:
                    params["cursor"] = cursor
                status, body = await self._json(
                    base, "com.atproto.sync.listReposByCollection", params
                )
                if status != 200 or not isinstance(body, dict):
                    supported = False
                    break
                found.update(
                    r["did"] for r in body.get("repos", []) if isinstance(r, dict) and "did" in r
                )
                cursor = body.get("cursor")
                if not cursor:
                    break
            if not supported:
                break
        if supported:
            return found
        log.info("%s has no listReposByCollection; using listRepos + describeRepo", host)
        cursor = None
        candidates: list[str] = []
        while True:
            params = {"limit": 1000}
            if cursor:
                params["cursor"] = cursor
            status, body = await self._json(base, "com.atproto.sync.listRepos", params)
            if status != 200 or not isinstance(body, dict):
                raise ResolutionError(f"listRepos on {host}: HTTP {status}")
            for r in body.get("repos", []):
                if isinstance(r, dict) and r.get("active", True) and "did" in r:
                    candidates.append(r["did"])
            cursor = body.get("cursor")
            if not cursor or not body.get("repos"):
                break
        wanted = set(collections)
        for did in candidates:
            status, body = await self._json(base, "com.atproto.repo.describeRepo", {"repo": did})
            if (
                status == 200
                and isinstance(body, dict)
                and wanted & set(body.get("collections", []))
            ):
                found.add(did)
        return found

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None
