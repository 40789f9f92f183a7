"""Backfill: fetch whole repos that hold records we index (`io.atdata.*` and the peer
network's `science.alt.dataset.*`), verify them, index them.

Only repos with our records are fetched, never the whole network: a host that
implements `com.atproto.sync.listReposByCollection` (a relay) names them; a PDS
without it lists its own accounts with `listRepos`, and `describeRepo` tells
which of those have one of our collections. Each repo comes from its own PDS
(`getRepo`, resolved through its DID document), and is verified in full
(signature, every MST node hash) before a single record is indexed.

Requests are rate-limited per host, and a 429 pauses that host for its
`Retry-After` (or a backoff) before the request is retried.

A PDS address comes from a DID document, which its owner writes: before each request
to it (redirects included) the SDK's network guard (`atdata.atmosphere.netguard`) checks
it, with the same switch for devnets (`ATDATA_ALLOW_PRIVATE_NETWORK=1`). The hosts
enumerated for repos are the operator's own firehose hosts and are not checked. A repo
body is parsed as it streams in and abandoned past `max_repo_bytes` (default 256 MiB,
`ATDATA_APPVIEW_MAX_REPO_BYTES`): the repo is skipped, counted and logged.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
from atdata.atmosphere.netguard import check_url
from atdata.errors import ResolutionError, UnsafeURLError
from atdata.ratelimit import retry_after_seconds
from atdata.records import OWN_COLLECTIONS, PEER_COLLECTIONS

from .frames import INDEXED_PREFIXES, Car, CarError, CarReader, Prefixes
from .identity import Identity, IdentityResolver
from .indexer import IngestCounters
from .verify import VerifiedRepo, VerifyError, verify_repo

__all__ = [
    "DEFAULT_MAX_REPO_BYTES",
    "Backfiller",
    "HostRateLimiter",
    "RepoTooBigError",
    "http_base",
]

log = logging.getLogger(__name__)

#: The collections a repo is backfilled for: both families', asked one by one.
OUR_COLLECTIONS = OWN_COLLECTIONS + PEER_COLLECTIONS
#: Largest getRepo body fetched. Repos holding datasets are mostly records of a few KB
#: each (the shards are blobs, not in the repo); a PDS caps a single blob far lower.
DEFAULT_MAX_REPO_BYTES = 256 * 1024 * 1024
_REDIRECTS = (301, 302, 303, 307, 308)
_MAX_REDIRECTS = 5
_CHUNK = 1 << 20


class RepoTooBigError(ResolutionError):
    """A repo's CAR is larger than the configured cap; it is skipped, not indexed."""


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
        prefix: Prefixes = INDEXED_PREFIXES,
        max_retries: int = 5,
        allow_private: bool | None = None,
        max_repo_bytes: int = DEFAULT_MAX_REPO_BYTES,
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
        self.allow_private = allow_private  # None: ATDATA_ALLOW_PRIVATE_NETWORK decides
        self.max_repo_bytes = max_repo_bytes
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
            except RepoTooBigError as exc:
                self.counters.repos_too_big += 1
                self.counters.note("repo_too_big")
                log.warning("backfill of %s skipped: %s", did, exc)
            except UnsafeURLError as exc:
                self.counters.backfills_failed += 1
                self.counters.note("unsafe_pds")
                log.warning("backfill of %s refused: %s", did, exc)
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

    async def _get(
        self, base: str, nsid: str, params: dict[str, Any], *, guarded: bool = False
    ) -> aiohttp.ClientResponse:
        """GET an XRPC query with rate limiting and 429 handling; caller reads the body.

        `guarded`: `base` came from data we were given (a DID document), so the URL and
        every redirect pass the network guard first.
        """
        if self.session is None:
            self.session = aiohttp.ClientSession()
        host = urlsplit(base).netloc
        for attempt in range(self.max_retries + 1):
            await self.limiter.acquire(host)
            if guarded:
                resp = await self._get_guarded(f"{base}/xrpc/{nsid}", params)
            else:
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

    async def _get_guarded(self, url: str, params: dict[str, Any] | None) -> aiohttp.ClientResponse:
        """GET `url`, following redirects by hand so each hop passes `check_url`."""
        assert self.session is not None
        for _ in range(_MAX_REDIRECTS + 1):
            # check_url may resolve the host name (blocking): off the event loop
            await asyncio.to_thread(check_url, url, allow_private=self.allow_private)
            resp = await self.session.get(
                url, params=params, timeout=self.timeout, allow_redirects=False
            )
            location = resp.headers.get("Location")
            if resp.status not in _REDIRECTS or not location:
                return resp
            resp.release()
            url, params = urljoin(str(resp.url), location), None
        raise ResolutionError(f"{url}: more than {_MAX_REDIRECTS} redirects")

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
        car = await self._download_repo(ident.pds, did)
        try:
            repo = await asyncio.to_thread(verify_repo, did, car, ident.key, self.prefix)
        except VerifyError:
            ident = await self.resolver.resolve(did, fresh=True)  # the key may have rotated
            repo = await asyncio.to_thread(verify_repo, did, car, ident.key, self.prefix)
        return ident, repo

    async def _download_repo(self, pds: str, did: str) -> Car:
        """getRepo from `pds`, parsed while it streams; RepoTooBigError past the cap."""
        cap = self.max_repo_bytes
        resp = await self._get(pds, "com.atproto.sync.getRepo", {"did": did}, guarded=True)
        async with resp:
            if resp.status != 200:
                detail = (await resp.content.read(500)).decode(errors="replace")
                raise ResolutionError(f"getRepo {did}: HTTP {resp.status} {detail}")
            length = resp.content_length
            if length is not None and length > cap:
                raise RepoTooBigError(f"getRepo {did}: {length} bytes announced, cap is {cap}")
            reader = CarReader()
            got = 0
            async for chunk in resp.content.iter_chunked(_CHUNK):
                got += len(chunk)
                if got > cap:
                    resp.close()  # drop the connection rather than drain the rest
                    raise RepoTooBigError(f"getRepo {did}: body exceeds the cap of {cap} bytes")
                try:
                    await asyncio.to_thread(reader.feed, chunk)
                except CarError as exc:
                    raise VerifyError(f"repo {did}: bad CAR: {exc}") from exc
        try:
            return reader.finish()
        except CarError as exc:
            raise VerifyError(f"repo {did}: bad CAR: {exc}") from exc

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
