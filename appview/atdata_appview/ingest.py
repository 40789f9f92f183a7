"""The ingest service: firehoses in, verified and validated ops out to the index.

Lifecycle: `start()` warms up (reads every repo the index holds and each host's cursor,
so no event ever waits on a database read), then starts one consumer per host, the
flusher and the backfill workers; `run()` until `stop()`.

Per frame: decode (libipld; commits that touch none of our collections are not looked
into), route the event by its type to its handler (`handlers`), then advance the host's
cursor. The handlers verify (signature, record CIDs, MST proofs), validate each record
against its lexicon, consult the resync policy (`resync`) and queue typed ops on the
shared `Indexer`, whose batches commit with the cursor of every host they cover.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine, Sequence
from typing import Any

import aiohttp

from .backfill import DEFAULT_MAX_REPO_BYTES, Backfiller, HostRateLimiter
from .firehose import DEFAULT_CONNECT_TIMEOUT, FirehoseConnection, HostState
from .frames import INDEXED_PREFIXES, ErrorFrame, Event, FrameError, Prefixes, decode_frame
from .handlers import EventRouter, HandlerDeps
from .identity import Identity, IdentityResolver
from .indexer import Indexer, IngestCounters, RecordValidator, default_validator
from .resync import ResyncPolicy
from .verify import VerifiedRepo

__all__ = ["HostState", "IngestService"]

log = logging.getLogger(__name__)


class IngestService:
    """Follow `hosts`, verify, index through `store`. `await run()`; `await stop()`."""

    def __init__(
        self,
        store: Any,
        hosts: Sequence[str],
        plc_url: str = "https://plc.directory",
        *,
        resolver: IdentityResolver | None = None,
        validator: RecordValidator | None | bool = True,
        backfill: bool = True,
        backfill_at_start: bool = True,
        batch_size: int = 1000,
        batch_interval: float = 0.25,
        heartbeat: float = 20.0,
        rate_limit: float = 20.0,
        prefix: Prefixes = INDEXED_PREFIXES,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        max_repo_bytes: int = DEFAULT_MAX_REPO_BYTES,
        allow_private: bool | None = None,
    ) -> None:
        self.store = store
        self.hosts = list(dict.fromkeys(hosts))
        self.prefix = prefix
        self.counters = IngestCounters()
        self.resolver = resolver or IdentityResolver(plc_url)
        if validator is True:
            validator = default_validator()
        elif validator is False:
            validator = None
        self.indexer = Indexer(
            store,
            self.counters,
            validator=validator,
            batch_size=batch_size,
            batch_interval=batch_interval,
        )
        self.backfill_at_start = backfill_at_start
        self.heartbeat = heartbeat
        self.connect_timeout = connect_timeout
        self.host_state = {h: HostState(h) for h in self.hosts}
        self._session: aiohttp.ClientSession | None = None
        self.backfiller = Backfiller(
            self.resolver,
            self.counters,
            self._repo_fetched,
            limiter=HostRateLimiter(rate_limit),
            prefix=prefix,
            allow_private=allow_private,  # None: ATDATA_ALLOW_PRIVATE_NETWORK decides
            max_repo_bytes=max_repo_bytes,
        )
        self.resync = ResyncPolicy(self.indexer, self.counters, self.backfiller, enabled=backfill)
        self.router = EventRouter(
            HandlerDeps(
                self.indexer,
                self.counters,
                self.resolver,
                self.resync,
                spawn=self._spawn,
                wake_flusher=self._kick_flusher,
            ),
            self.host_state,
        )
        self._tasks: list[asyncio.Task[Any]] = []  # every task we started
        self._essential: list[asyncio.Task[Any]] = []  # ones whose end means failure
        self._stopping = asyncio.Event()
        self._kick = asyncio.Event()
        self._started = asyncio.Event()
        self._enumerating: asyncio.Task[None] | None = None

    @property
    def backfill_enabled(self) -> bool:
        return self.resync.enabled

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Warm up, then start consumers, flusher and backfill; returns once running."""
        await self.warm_up()
        self._session = aiohttp.ClientSession()
        self.backfiller.session = self._session
        spawn = asyncio.get_running_loop().create_task
        self._essential.append(spawn(self._flusher(), name="ingest-flusher"))
        if self.backfill_enabled:
            self._essential.append(spawn(self.backfiller.run(), name="ingest-backfill"))
            for did in sorted(self.indexer.resync):
                self.backfiller.enqueue(did)
            if self.backfill_at_start:
                self._enumerating = spawn(
                    self.resync.enumerate(self.hosts), name="ingest-enumerate"
                )
                self._tasks.append(self._enumerating)
        for host in self.hosts:
            self._essential.append(spawn(self._consume(host), name=f"ingest-{host}"))
        self._tasks.extend(self._essential)
        self._started.set()

    async def warm_up(self) -> None:
        """Read what the index holds before the first event: every repo (into the store's
        cache and the indexer's revs) and each host's cursor. After this, deciding on an
        event never reads the database, so it never blocks the event loop."""
        self.indexer.load(await self.store.warm())
        for host, state in self.host_state.items():
            state.seq = await self.store.load_cursor(host)

    async def run(self) -> None:
        """Run until `stop()` (or until a consumer fails: the error propagates)."""
        if not self._started.is_set():
            await self.start()
        stopper = asyncio.ensure_future(self._stopping.wait())
        try:
            done, _ = await asyncio.wait(
                [stopper, *self._essential], return_when=asyncio.FIRST_COMPLETED
            )
            for task in done:
                if task is not stopper and not task.cancelled():
                    error = task.exception()
                    if error is not None:
                        raise error
        finally:
            stopper.cancel()
            await self._shutdown()

    async def stop(self) -> None:
        self._stopping.set()

    async def _shutdown(self) -> None:
        for state in self.host_state.values():
            if state.connection is not None:
                await state.connection.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        self._essential.clear()
        with contextlib.suppress(Exception):
            await self.indexer.flush()  # commit what was decided, with its cursors
        if self._session is not None:
            await self._session.close()
            self._session = None
            self.backfiller.session = None
        await self.resolver.close()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Background work a handler starts (cancelled at shutdown)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.append(task)
        task.add_done_callback(lambda t: self._tasks.remove(t) if t in self._tasks else None)

    # -- metrics -----------------------------------------------------------------------------

    def metrics(self) -> dict[str, Any]:
        """Counters plus per-host gauges (seq, lag seconds, connected, reconnects)."""
        hosts = {}
        for host, st in self.host_state.items():
            conn = st.connection
            hosts[host] = {
                "seq": st.seq,
                "lag_seconds": st.lag(),
                "connected": bool(conn and conn.connected),
                "reconnects": max(0, (conn.connects - 1)) if conn else 0,
                "last_error": conn.last_error if conn else None,
            }
        return {
            **self.counters.as_dict(),
            "backfill_queue": self.backfiller.queued,
            "backlog": self.backlog(),
            "hosts": hosts,
        }

    def backlog(self) -> dict[str, Any]:
        """What the index still waits for, so an operator can tell when it has caught up:
        repos awaiting a whole fetch (backfill or resync), the live events held for them,
        and whether the start-up listing of repos is still running. The hosts' cursors can
        reach the end of their streams while held records have not landed yet."""
        listing = self._enumerating is not None and not self._enumerating.done()
        backfill, resync = self.resync.awaiting()
        repos = backfill + resync
        held = self.resync.held_events
        return {
            "repos": repos,
            "backfill": backfill,
            "resync": resync,
            "heldEvents": held,
            "listingRepos": listing,
            "caughtUp": repos == 0 and held == 0 and not listing,
        }

    # -- frames in ---------------------------------------------------------------------------

    async def _consume(self, host: str) -> None:
        state = self.host_state[host]
        conn = FirehoseConnection(
            host,
            lambda: state.seq,
            session=self._session,
            heartbeat=self.heartbeat,
            connect_timeout=self.connect_timeout,
        )
        state.connection = conn
        async for data in conn.frames():
            event = self.decode(data)
            if event is not None:
                await self.handle(host, event)
            await self._pace()

    def decode(self, data: bytes) -> Event | None:
        """Decode one frame; garbage is counted and logged, never raised."""
        self.counters.frames += 1
        try:
            event = decode_frame(data, self.prefix)
        except FrameError as exc:
            self.counters.garbage_frames += 1
            self.counters.note("garbage_frame")
            log.warning("garbage frame skipped (%d bytes): %s", len(data), exc)
            return None
        if isinstance(event, ErrorFrame):
            self.counters.error_frames += 1
        return event

    async def handle_frame(self, host: str, data: bytes) -> None:
        """Feed one raw frame as if it came from `host` (benchmark and tests)."""
        event = self.decode(data)
        if event is not None:
            await self.handle(host, event)
        await self._pace()

    async def handle(self, host: str, event: Event) -> None:
        """Route one decoded event from `host` to its handler, then advance the cursor."""
        try:
            await self.router.route(host, event)
        finally:
            seq = getattr(event, "seq", None)
            if isinstance(seq, int):
                state = self.host_state.setdefault(host, HostState(host))
                if state.seq is None or seq > state.seq:
                    state.seq = seq
                    self.indexer.cursor(host, seq)
                t = getattr(event, "time", None)
                if t:
                    state.last_time = t

    async def _pace(self) -> None:
        """Let the flusher run once a batch is full (it overlaps the database write with
        decoding and verifying the next frames), and block when too much is pending."""
        if self.indexer.full():
            self._kick.set()
            await asyncio.sleep(0)
        await self.indexer.wait_room()

    # -- backfill results --------------------------------------------------------------------

    async def _repo_fetched(
        self, did: str, repo: VerifiedRepo | None, ident: Identity | None
    ) -> None:
        await self.router.repo_fetched(did, repo, ident)

    # -- flushing ----------------------------------------------------------------------------

    def _kick_flusher(self) -> None:
        self._kick.set()

    async def _flusher(self) -> None:
        ix = self.indexer
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), timeout=ix.batch_interval)
            self._kick.clear()
            await ix.flush()

    async def drain(self) -> None:
        """Flush everything pending now (tests, benchmark, shutdown)."""
        await self.indexer.flush()
