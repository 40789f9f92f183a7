"""One handler per firehose event type: what each kind of event does to the index.

As in Bluesky's indigo `tap`, the transport is apart (`firehose.FirehoseConnection`
yields raw frames; `IngestService` decodes them and keeps cursors) and each event type
has one handler. Handlers decide with the indexer's in-memory view of the repos (no
database read on this path), ask the `ResyncPolicy` when a repo must be fetched whole,
and queue typed ops on the `Indexer`. The end of a whole-repo fetch is handled here too
(`RepoFetchedHandler`): it indexes the repo and replays the events held meanwhile.

`replay=True` marks a held event coming back after its repo's fetch: it was counted
when it first arrived.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

from atdata.errors import ResolutionError

from .firehose import HostState
from .frames import (
    AccountEvent,
    CommitEvent,
    ErrorFrame,
    Event,
    IdentityEvent,
    InfoEvent,
    SkippedCommit,
    SyncEvent,
)
from .identity import Identity, IdentityResolver
from .indexer import Indexer, IngestCounters
from .resync import ResyncPolicy
from .verify import VerifiedRepo, VerifyError, verify_commit

__all__ = [
    "AccountHandler",
    "CommitHandler",
    "ErrorHandler",
    "EventRouter",
    "HandlerDeps",
    "IdentityHandler",
    "InfoHandler",
    "RepoFetchedHandler",
    "SkippedCommitHandler",
    "SyncHandler",
]

log = logging.getLogger(__name__)

Handler = Callable[[str, Any, bool], Awaitable[None]]


@dataclass(slots=True)
class HandlerDeps:
    """What the handlers share: the index's view, counters, identities, resync policy, and
    a way to start background work the service keeps track of."""

    indexer: Indexer
    counters: IngestCounters
    resolver: IdentityResolver
    resync: ResyncPolicy
    spawn: Callable[[Coroutine[Any, Any, None]], None]
    wake_flusher: Callable[[], None]


class CommitHandler:
    """`#commit` touching our collections: verify, then queue its ops (or wait for a fetch)."""

    def __init__(self, deps: HandlerDeps) -> None:
        self.deps = deps

    async def __call__(self, host: str, event: CommitEvent, replay: bool) -> None:
        d = self.deps
        ix, did = d.indexer, event.repo
        if not replay:
            d.counters.commits += 1
            d.counters.commits_kept += 1
        if d.resync.hold(did, host, event):
            return
        if ix.is_stale(did, event.rev):
            d.counters.commits_stale += 1
            return
        why = d.resync.reason_to_fetch(event)
        if why is not None:
            d.resync.request(did, why)
            d.resync.hold(did, host, event)
            return
        try:
            verified = await verify_commit(event, d.resolver.resolve)
        except VerifyError as exc:
            d.counters.commits_refused += 1
            d.counters.note("signature" if "signature" in str(exc) else "verify")
            log.warning("commit %s of %s (seq %s) refused: %s", event.rev, did, event.seq, exc)
            return
        except ResolutionError as exc:
            # No key to check against (directory down?): not proof of forgery, so the repo
            # is fetched whole once it resolves again rather than silently missing this commit.
            d.counters.commits_refused += 1
            d.counters.note("unresolved")
            log.warning("commit %s of %s: cannot resolve its key (%s); resync", event.rev, did, exc)
            if d.resync.enabled and did in ix.revs:
                d.resync.request(did, "key unavailable")
            return
        ix.apply_commit(verified, d.resolver.cached(did))


class SkippedCommitHandler:
    """`#commit` touching none of our collections: only its rev matters (chain tracking)."""

    def __init__(self, deps: HandlerDeps) -> None:
        self.deps = deps

    async def __call__(self, host: str, event: SkippedCommit, replay: bool) -> None:
        d = self.deps
        ix, did = d.indexer, event.repo
        if not replay:
            d.counters.commits += 1
        if did not in ix.revs or d.resync.hold(did, host, event):
            return
        if ix.is_stale(did, event.rev):
            return
        if ix.chain_broken(did, event.since) and did not in ix.resync:
            d.resync.request(did, "broken chain")
        ix.note_rev(did, event.rev)


class IdentityHandler:
    """`#identity`: forget the cached DID document; re-resolve the repos we index."""

    def __init__(self, deps: HandlerDeps) -> None:
        self.deps = deps

    async def __call__(self, host: str, event: IdentityEvent, replay: bool) -> None:
        d = self.deps
        if not replay:
            d.counters.identity_events += 1
        d.resolver.invalidate(event.did)
        if event.did in d.indexer.revs:
            d.spawn(self._refresh(event.did))

    async def _refresh(self, did: str) -> None:
        d = self.deps
        try:
            ident = await d.resolver.resolve(did, fresh=True)
        except ResolutionError as exc:
            log.warning("re-resolving %s failed: %s", did, exc)
            return
        if did in d.indexer.revs:
            d.indexer.set_identity(did, ident.handle, ident.pds)


class AccountHandler:
    """`#account`: active shows the repo's records, deleted purges them, any other status
    hides them."""

    def __init__(self, deps: HandlerDeps) -> None:
        self.deps = deps

    async def __call__(self, host: str, event: AccountEvent, replay: bool) -> None:
        d = self.deps
        ix, did = d.indexer, event.did
        if not replay:
            d.counters.account_events += 1
        if did not in ix.revs and not d.resync.holding(did):
            return
        if d.resync.hold(did, host, event):
            return
        if event.active:
            ix.set_status(did, "active")
        elif event.status == "deleted":
            ix.purge(did)
        else:
            ix.set_status(did, event.status or "deactivated")


class SyncHandler:
    """`#sync`: the host says the repo's state changed wholesale; fetch it whole."""

    def __init__(self, deps: HandlerDeps) -> None:
        self.deps = deps

    async def __call__(self, host: str, event: SyncEvent, replay: bool) -> None:
        d = self.deps
        ix, did = d.indexer, event.did
        if did not in ix.revs or ix.is_stale(did, event.rev):
            return
        if d.resync.hold(did, host, event):
            return
        d.resync.request(did, "#sync")


class InfoHandler:
    """`#info` (e.g. OutdatedCursor) and unknown message types: logged only."""

    async def __call__(self, host: str, event: InfoEvent, replay: bool) -> None:
        log.info("firehose %s info %s: %s", host, event.name, event.message)


class ErrorHandler:
    """An error frame: logged; the host closes the socket after it, and `FutureCursor` (the
    host does not know our cursor: it was reset) makes us follow it live from now on."""

    def __init__(self, hosts: Mapping[str, HostState]) -> None:
        self.hosts = hosts

    async def __call__(self, host: str, event: ErrorFrame, replay: bool) -> None:
        log.warning("firehose %s sent error %s: %s", host, event.error, event.message)
        state = self.hosts.get(host)
        if state is None:
            return
        if event.error == "FutureCursor":
            state.seq = None
        if state.connection is not None:
            await state.connection.reconnect()


class RepoFetchedHandler:
    """A whole-repo fetch ended: index the verified copy, then replay what was held."""

    def __init__(self, deps: HandlerDeps, router: EventRouter) -> None:
        self.deps = deps
        self.router = router

    async def __call__(self, did: str, repo: VerifiedRepo | None, ident: Identity | None) -> None:
        d = self.deps
        if repo is not None:
            d.indexer.apply_repo(repo, ident)
        for host, event in d.resync.release(did):
            try:
                if isinstance(event, CommitEvent) and repo is None:
                    # Could not fetch the repo: apply what we can verify, chain unchecked.
                    if not d.indexer.is_stale(did, event.rev):
                        verified = await verify_commit(event, d.resolver.resolve)
                        d.indexer.apply_commit(verified, ident)
                    continue
                await self.router.route(host, event, replay=True)
            except (VerifyError, ResolutionError) as exc:
                d.counters.commits_refused += 1
                log.warning("held event of %s refused: %s", did, exc)
        d.wake_flusher()


class EventRouter:
    """Routes each decoded event, by its type, to its one handler."""

    def __init__(self, deps: HandlerDeps, hosts: Mapping[str, HostState]) -> None:
        self.routes: dict[type, Handler] = {
            CommitEvent: CommitHandler(deps),
            SkippedCommit: SkippedCommitHandler(deps),
            IdentityEvent: IdentityHandler(deps),
            AccountEvent: AccountHandler(deps),
            SyncEvent: SyncHandler(deps),
            InfoEvent: InfoHandler(),
            ErrorFrame: ErrorHandler(hosts),
        }
        self.repo_fetched = RepoFetchedHandler(deps, self)

    async def route(self, host: str, event: Event, *, replay: bool = False) -> None:
        handler = self.routes.get(type(event))
        if handler is not None:
            await handler(host, event, replay)
