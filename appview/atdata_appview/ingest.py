"""The ingest service: firehoses in, verified and validated ops out to the index.

Per frame: decode (libipld), drop commits that touch none of our collections
without looking at their blocks, hold events of repos being backfilled, ignore
commits not newer than what we hold, verify the rest (signature, record CIDs,
MST proofs), validate each record against its lexicon, and queue the ops on the
shared `Indexer`, whose batches commit with the cursor of every host they cover.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import aiohttp
from atdata.errors import ResolutionError

from .backfill import DEFAULT_MAX_REPO_BYTES, Backfiller, HostRateLimiter
from .firehose import DEFAULT_CONNECT_TIMEOUT, FirehoseConnection
from .frames import (
    ATDATA_PREFIX,
    AccountEvent,
    CommitEvent,
    ErrorFrame,
    FrameError,
    IdentityEvent,
    InfoEvent,
    SkippedCommit,
    SyncEvent,
    decode_frame,
)
from .identity import Identity, IdentityResolver
from .indexer import HIDING_STATUSES, Indexer, IngestCounters, RecordValidator, default_validator
from .verify import VerifiedRepo, VerifyError, verify_commit

__all__ = ["HostState", "IngestService"]

log = logging.getLogger(__name__)

RESYNC_RETRY_SECONDS = 60.0


class HostState:
    """What we know of one followed host (for metrics and describeService)."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.seq: int | None = None  # last seq processed (committed or pending)
        self.last_time: str | None = None  # `time` of the last event processed
        self.connection: FirehoseConnection | None = None

    def lag(self) -> float | None:
        """Seconds between now and the last processed event's timestamp."""
        if not self.last_time:
            return None
        try:
            stamp = datetime.fromisoformat(self.last_time.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
        return max(0.0, time.time() - stamp)


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
        prefix: str = ATDATA_PREFIX,
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
        self.backfill_enabled = backfill
        self.backfill_at_start = backfill_at_start
        self.heartbeat = heartbeat
        self.connect_timeout = connect_timeout
        self.max_repo_bytes = max_repo_bytes
        self.allow_private = allow_private  # None: ATDATA_ALLOW_PRIVATE_NETWORK decides
        self.host_state = {h: HostState(h) for h in self.hosts}
        self._rate_limit = rate_limit
        self._session: aiohttp.ClientSession | None = None
        self.backfiller: Backfiller | None = None
        self._held: dict[str, list[tuple[str, Any]]] = {}
        self._tasks: list[asyncio.Task[Any]] = []  # every task we started
        self._essential: list[asyncio.Task[Any]] = []  # ones whose end means failure
        self._stopping = asyncio.Event()
        self._kick = asyncio.Event()
        self._started = asyncio.Event()

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Load state, start consumers, flusher and backfill; returns once running."""
        await self.indexer.load()
        for host, state in self.host_state.items():
            state.seq = await self.store.load_cursor(host)
        self._session = aiohttp.ClientSession()
        self.backfiller = Backfiller(
            self.resolver,
            self.counters,
            self._backfilled,
            session=self._session,
            limiter=HostRateLimiter(self._rate_limit),
            prefix=self.prefix,
            allow_private=self.allow_private,
            max_repo_bytes=self.max_repo_bytes,
        )
        spawn = asyncio.get_running_loop().create_task
        self._essential.append(spawn(self._flusher(), name="ingest-flusher"))
        if self.backfill_enabled:
            self._essential.append(spawn(self.backfiller.run(), name="ingest-backfill"))
            for did in sorted(self.indexer.resync):
                self.backfiller.enqueue(did)
            if self.backfill_at_start:
                self._tasks.append(spawn(self._enumerate_all(), name="ingest-enumerate"))
        for host in self.hosts:
            self._essential.append(spawn(self._consume(host), name=f"ingest-{host}"))
        self._tasks.extend(self._essential)
        self._started.set()

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
                if task is not stopper and not task.cancelled() and task.exception():
                    raise task.exception()  # type: ignore[misc]
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
        await self.resolver.close()

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
            "backfill_queue": self.backfiller.queued if self.backfiller else 0,
            "hosts": hosts,
        }

    # -- consumers ---------------------------------------------------------------------------

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
            if isinstance(event, ErrorFrame):
                await self._error_frame(host, event)
                continue
            if event is not None:
                await self.handle(host, event)
            await self._pace()

    async def _error_frame(self, host: str, event: ErrorFrame) -> None:
        log.warning("firehose %s sent error %s: %s", host, event.error, event.message)
        state = self.host_state[host]
        if event.error == "FutureCursor":
            # The host does not know our cursor (it was reset): follow it live from now on.
            state.seq = None
        if state.connection is not None:
            await state.connection.reconnect()

    def decode(self, data: bytes) -> Any:
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
        if event is not None and not isinstance(event, ErrorFrame):
            await self.handle(host, event)
        await self._pace()

    async def _pace(self) -> None:
        """Let the flusher run once a batch is full (it overlaps the database write with
        decoding and verifying the next frames), and block when too much is pending."""
        if self.indexer.full():
            self._kick.set()
            await asyncio.sleep(0)
        await self.indexer.wait_room()

    async def handle(self, host: str, event: Any) -> None:
        """Process one decoded event from `host`, then advance that host's cursor."""
        seq = getattr(event, "seq", None)
        try:
            await self._dispatch(host, event)
        finally:
            if isinstance(seq, int):
                state = self.host_state.setdefault(host, HostState(host))
                if state.seq is None or seq > state.seq:
                    state.seq = seq
                    self.indexer.cursor(host, seq)
                t = getattr(event, "time", None)
                if t:
                    state.last_time = t

    async def _dispatch(self, host: str, event: Any, *, replay: bool = False) -> None:
        """Act on one event; `replay` is a held event coming back (counted already)."""
        ix = self.indexer
        count = 0 if replay else 1
        if isinstance(event, SkippedCommit):
            self.counters.commits += count
            did = event.repo
            if did in ix.revs:
                if self._hold(did, host, event):
                    return
                if ix.is_stale(did, event.rev):
                    return
                if ix.chain_broken(did, event.since) and did not in ix.resync:
                    self._resync(did, "broken chain")
                ix.note_rev(did, event.rev)
            return
        if isinstance(event, CommitEvent):
            self.counters.commits += count
            self.counters.commits_kept += count
            await self._commit(host, event)
            return
        if isinstance(event, IdentityEvent):
            self.counters.identity_events += count
            self.resolver.invalidate(event.did)
            if event.did in ix.revs:
                self._spawn(self._refresh_identity(event.did))
            return
        if isinstance(event, AccountEvent):
            self.counters.account_events += count
            if event.did in ix.revs or self._holding(event.did):
                if self._hold(event.did, host, event):
                    return
                self._account(event)
            return
        if isinstance(event, SyncEvent):
            if event.did in ix.revs and not ix.is_stale(event.did, event.rev):
                if self._hold(event.did, host, event):
                    return
                self._resync(event.did, "#sync")
            return
        if isinstance(event, InfoEvent):
            log.info("firehose %s info %s: %s", host, event.name, event.message)

    async def _commit(self, host: str, event: CommitEvent) -> None:
        ix = self.indexer
        did = event.repo
        if self._hold(did, host, event):
            return
        if ix.is_stale(did, event.rev):
            self.counters.commits_stale += 1
            return
        bf = self.backfiller
        if self.backfill_enabled and bf is not None:
            first_sight = did not in ix.revs
            broken = ix.chain_broken(did, event.since) and did not in ix.resync
            retry = did in ix.resync and (
                time.monotonic() - bf.last_attempt.get(did, 0.0) > RESYNC_RETRY_SECONDS
            )
            if first_sight or broken or retry or event.too_big:
                if broken:
                    self.counters.note("broken_chain")
                why = (
                    "first sight" if first_sight else "too big" if event.too_big else "broken chain"
                )
                self._resync(did, why)
                self._hold(did, host, event)
                return
        try:
            verified = await verify_commit(event, self.resolver.resolve)
        except VerifyError as exc:
            self.counters.commits_refused += 1
            self.counters.note("signature" if "signature" in str(exc) else "verify")
            log.warning("commit %s of %s (seq %s) refused: %s", event.rev, did, event.seq, exc)
            return
        except ResolutionError as exc:
            # No key to check against (directory down?): not proof of forgery, so the repo
            # is fetched whole once it resolves again rather than silently missing this commit.
            self.counters.commits_refused += 1
            self.counters.note("unresolved")
            log.warning("commit %s of %s: cannot resolve its key (%s); resync", event.rev, did, exc)
            if self.backfill_enabled and did in ix.revs:
                self._resync(did, "key unavailable")
            return
        if did not in ix.revs:
            await self.store.get_repo(did)  # warm the store cache off the hot path
        ix.apply_commit(verified, self.resolver.cached(did))

    def _account(self, event: AccountEvent) -> None:
        ix = self.indexer
        if event.active:
            ix.set_status(event.did, "active")
        elif event.status == "deleted":
            ix.purge(event.did)
        elif event.status in HIDING_STATUSES or event.status:
            ix.set_status(event.did, event.status or "deactivated")
        else:
            ix.set_status(event.did, "deactivated")

    # -- backfill and held events ------------------------------------------------------------

    def _holding(self, did: str) -> bool:
        bf = self.backfiller
        return bf is not None and did in bf.active

    def _hold(self, did: str, host: str, event: Any) -> bool:
        if not self._holding(did):
            return False
        self._held.setdefault(did, []).append((host, event))
        self.counters.held_events += 1
        return True

    def _resync(self, did: str, why: str) -> None:
        log.info("resync %s (%s)", did, why)
        self.indexer.mark_resync(did)
        if self.backfill_enabled and self.backfiller is not None:
            self.backfiller.enqueue(did)

    async def _backfilled(
        self, did: str, repo: VerifiedRepo | None, ident: Identity | None
    ) -> None:
        """Backfill finished (or failed): index the repo, then replay its held events."""
        if repo is not None:
            await self.store.get_repo(did)
            self.indexer.apply_repo(repo, ident)
        held = self._held.pop(did, [])
        self.backfiller.active.discard(did) if self.backfiller else None
        for host, event in held:
            try:
                if isinstance(event, CommitEvent) and repo is None:
                    # Could not fetch the repo: apply what we can verify, chain unchecked.
                    if not self.indexer.is_stale(did, event.rev):
                        verified = await verify_commit(event, self.resolver.resolve)
                        self.indexer.apply_commit(verified, ident)
                    continue
                await self._dispatch(host, event, replay=True)
            except (VerifyError, ResolutionError) as exc:
                self.counters.commits_refused += 1
                log.warning("held event of %s refused: %s", did, exc)
        self._kick.set()

    async def _enumerate_all(self) -> None:
        assert self.backfiller is not None
        for host in self.hosts:
            try:
                dids = await self.backfiller.enumerate(host)
            except Exception as exc:
                log.warning("cannot enumerate repos on %s: %s", host, exc)
                continue
            for did in sorted(dids):
                if did not in self.indexer.revs or did in self.indexer.resync:
                    self._resync(did, f"listed by {host}")

    async def _refresh_identity(self, did: str) -> None:
        try:
            ident = await self.resolver.resolve(did, fresh=True)
        except ResolutionError as exc:
            log.warning("re-resolving %s failed: %s", did, exc)
            return
        if did in self.indexer.revs:
            self.indexer.set_identity(did, ident.handle, ident.pds)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.append(task)
        task.add_done_callback(lambda t: self._tasks.remove(t) if t in self._tasks else None)

    # -- flushing ----------------------------------------------------------------------------

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
