"""Resync policy: when a repo must be fetched whole, and what waits for it meanwhile.

A repo is fetched whole (backfill) the first time one of its commits touches our
collections, when its chain breaks (a commit's `since` is not the rev we hold), when a
commit is too big to carry its blocks, on `#sync`, and again when a resync mark is older
than `RESYNC_RETRY_SECONDS`. While a repo is queued or fetching, its live events are held
and replayed, in order, once the fetch ends. The handlers ask; this module decides.
"""

from __future__ import annotations

import logging
import time

from .backfill import Backfiller
from .frames import CommitEvent, Event
from .indexer import Indexer, IngestCounters

__all__ = ["RESYNC_RETRY_SECONDS", "HeldEvent", "ResyncPolicy"]

log = logging.getLogger(__name__)

RESYNC_RETRY_SECONDS = 60.0

HeldEvent = tuple[str, Event]  # (host, event) of a repo being fetched


class ResyncPolicy:
    """Resync decisions and held events for every repo; `enabled=False` never fetches."""

    def __init__(
        self, indexer: Indexer, counters: IngestCounters, backfiller: Backfiller, *, enabled: bool
    ) -> None:
        self.indexer = indexer
        self.counters = counters
        self.backfiller = backfiller
        self.enabled = enabled
        self._held: dict[str, list[HeldEvent]] = {}

    # -- held events -------------------------------------------------------------------------

    def holding(self, did: str) -> bool:
        """True while `did` is queued or being fetched (its live events must wait)."""
        return did in self.backfiller.active

    def hold(self, did: str, host: str, event: Event) -> bool:
        """Keep `event` for replay after the fetch of `did`; False when nothing is fetching."""
        if not self.holding(did):
            return False
        self._held.setdefault(did, []).append((host, event))
        self.counters.held_events += 1
        return True

    @property
    def held_events(self) -> int:
        """Events waiting, now, for their repo's fetch to end."""
        return sum(len(events) for events in self._held.values())

    def awaiting(self) -> tuple[int, int]:
        """Repos waiting for a whole fetch (queued or fetching, or marked for resync), as
        (backfill, resync): a backfill is the first whole fetch of a repo whose revision the
        index has never applied; a resync fetches again a repo it holds at a known revision."""
        dids = self.backfiller.active | self.indexer.resync
        backfill = sum(1 for did in dids if self.indexer.revs.get(did) is None)
        return backfill, len(dids) - backfill

    def release(self, did: str) -> list[HeldEvent]:
        """The fetch of `did` ended: its held events, in arrival order, to replay now."""
        self.backfiller.active.discard(did)
        return self._held.pop(did, [])

    # -- decisions ---------------------------------------------------------------------------

    def reason_to_fetch(self, event: CommitEvent) -> str | None:
        """Why this commit of ours must wait for a whole-repo fetch (None: apply it)."""
        if not self.enabled:
            return None
        ix, did = self.indexer, event.repo
        first_sight = did not in ix.revs
        broken = ix.chain_broken(did, event.since) and did not in ix.resync
        if broken:
            self.counters.note("broken_chain")
        if first_sight:
            return "first sight"
        if event.too_big:
            return "too big"
        if broken:
            return "broken chain"
        last = self.backfiller.last_attempt.get(did, 0.0)
        if did in ix.resync and time.monotonic() - last > RESYNC_RETRY_SECONDS:
            return "retry"
        return None

    def request(self, did: str, why: str) -> None:
        """Mark `did` for a whole fetch (the mark survives restarts) and queue it."""
        log.info("resync %s (%s)", did, why)
        self.indexer.mark_resync(did)
        if self.enabled:
            self.backfiller.enqueue(did)

    async def enumerate(self, hosts: list[str]) -> None:
        """Queue every repo the hosts list as holding our records that the index lacks (or
        holds marked for resync): the start-up backfill."""
        for host in hosts:
            try:
                dids = await self.backfiller.enumerate(host)
            except Exception as exc:  # a host without the listing endpoints: keep following
                log.warning("cannot enumerate repos on %s: %s", host, exc)
                continue
            for did in sorted(dids):
                if did not in self.indexer.revs or did in self.indexer.resync:
                    self.request(did, f"listed by {host}")
