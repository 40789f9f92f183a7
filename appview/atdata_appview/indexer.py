"""Apply verified ops to the index in batches, each batch one transaction with its cursors.

Every host's consumer and the backfill worker feed one `Indexer`, so writes reach
the database in the order they were decided, whatever their source. The pending
batch is plain data; `flush` replays it into a `Store` transaction together with
the latest seq of each host, so the committed cursor never runs ahead of (or
behind) the writes it covers.

The indexer also keeps, in memory, the repos the index holds and their last rev:
that answers "is this commit newer?" and "is the chain intact?" for every commit
on the wire without a database read.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from atdata.errors import LexiconError
from atdata.lexicon import default_lexicons

from .db.models import COLLECTION_TABLES
from .db.ops import DeleteRecord, PurgeRepo, SaveCursor, SetRepo, UpsertRecord, WriteOp
from .db.store import RepoInfo
from .identity import Identity
from .verify import VerifiedCommit, VerifiedOp, VerifiedRepo

__all__ = ["Indexer", "IngestCounters", "RecordValidator", "default_validator"]

log = logging.getLogger(__name__)

RecordValidator = Callable[[str, dict[str, Any]], None]


def default_validator() -> RecordValidator:
    """`atdata.lexicon.validate_record` (raises LexiconError naming the bad path)."""
    return default_lexicons().validate_record  # loaded now, not on the first record


@dataclass
class IngestCounters:
    """Counters for /metrics and describeService; all monotonic except the gauges."""

    frames: int = 0
    garbage_frames: int = 0
    error_frames: int = 0
    commits: int = 0
    commits_kept: int = 0
    commits_stale: int = 0
    commits_refused: int = 0
    records_indexed: int = 0
    records_deleted: int = 0
    invalid_records: int = 0
    identity_events: int = 0
    account_events: int = 0
    resyncs: int = 0
    backfills_done: int = 0
    backfills_failed: int = 0
    repos_too_big: int = 0  # backfills skipped: getRepo body over the cap
    held_events: int = 0
    batches: int = 0
    reasons: dict[str, int] = field(default_factory=dict)  # refusal/invalid reasons, coarse

    def as_dict(self) -> dict[str, Any]:
        return {k: (dict(v) if isinstance(v, dict) else v) for k, v in self.__dict__.items()}

    def note(self, reason: str) -> None:
        self.reasons[reason] = self.reasons.get(reason, 0) + 1


@dataclass(slots=True)
class _Batch:
    ops: list[WriteOp] = field(default_factory=list)
    cursors: dict[str, int] = field(default_factory=dict)
    revs: dict[str, str] = field(default_factory=dict)  # one rev update per repo per batch
    upserts: int = 0
    deletes: int = 0
    started: float = field(default_factory=time.monotonic)


class Indexer:
    """Turns verified events into batched Store writes; tracks repo revs in memory."""

    def __init__(
        self,
        store: Any,
        counters: IngestCounters,
        *,
        validator: RecordValidator | None = None,
        batch_size: int = 1000,
        batch_interval: float = 0.25,
        max_pending: int = 20_000,
    ) -> None:
        self.store = store
        self.counters = counters
        self.validator = validator
        self.batch_size = batch_size
        self.batch_interval = batch_interval
        self.max_pending = max_pending
        #: did -> last rev applied (None: known repo, rev unknown). Only repos we index.
        self.revs: dict[str, str | None] = {}
        self.resync: set[str] = set()
        self._batch = _Batch()
        self._flush_lock = asyncio.Lock()
        self._room = asyncio.Event()
        self._room.set()

    def load(self, held: Iterable[RepoInfo]) -> None:
        """Start from the repos the index holds (their revs and resync marks)."""
        for info in held:
            self.revs[info.did] = info.rev
            if info.resync:
                self.resync.add(info.did)

    # -- decisions on the wire (no I/O) ------------------------------------------------------

    def is_stale(self, did: str, rev: str) -> bool:
        last = self.revs.get(did)
        return last is not None and rev <= last

    def chain_broken(self, did: str, since: str | None) -> bool:
        """A commit of a tracked repo whose `since` is not the rev we hold: we missed one."""
        last = self.revs.get(did)
        return last is not None and since is not None and since != last

    # -- pending batch -----------------------------------------------------------------------

    def cursor(self, host: str, seq: int) -> None:
        self._batch.cursors[host] = seq

    def note_rev(self, did: str, rev: str) -> None:
        """A commit of a tracked repo that touches none of our collections."""
        self.revs[did] = rev
        self._batch.revs[did] = rev

    def apply_commit(self, commit: VerifiedCommit, ident: Identity | None = None) -> int:
        """Queue a verified commit's ops (after lexicon validation); returns ops kept."""
        did = commit.did
        kept = 0
        ops = self._batch.ops
        if did not in self.revs and ident is not None:
            ops.append(SetRepo(did, {"handle": ident.handle, "pds": ident.pds}))
        for op in commit.ops:
            if op.action == "delete":
                ops.append(DeleteRecord(did, op.collection, op.rkey))
                self._batch.deletes += 1
                kept += 1
                continue
            if not self._valid(did, op):
                continue
            assert op.cid is not None and op.record is not None
            ops.append(UpsertRecord(did, op.collection, op.rkey, op.cid, op.record))
            self._batch.upserts += 1
            kept += 1
        self._batch.revs[did] = commit.rev
        self.revs[did] = commit.rev
        return kept

    def apply_repo(self, repo: VerifiedRepo, ident: Identity | None, status: str = "active") -> int:
        """Replace everything we hold of a repo by a verified full copy (backfill/resync)."""
        did = repo.did
        ops = self._batch.ops
        self._batch.revs.pop(did, None)
        ops.append(PurgeRepo(did))
        ops.append(
            SetRepo(
                did,
                {
                    "handle": ident.handle if ident else None,
                    "pds": ident.pds if ident else None,
                    "rev": repo.rev,
                    "status": status,
                    "resync": False,
                },
            )
        )
        kept = 0
        for op in repo.records:
            if self._valid(did, op):
                assert op.cid is not None and op.record is not None
                ops.append(UpsertRecord(did, op.collection, op.rkey, op.cid, op.record))
                self._batch.upserts += 1
                kept += 1
        self.revs[did] = repo.rev
        self.resync.discard(did)
        return kept

    def mark_resync(self, did: str) -> None:
        """The repo must be fetched whole again (broken chain, #sync, first sight)."""
        self.resync.add(did)
        self._batch.ops.append(SetRepo(did, {"resync": True}))
        self.revs.setdefault(did, None)
        self.counters.resyncs += 1

    def set_status(self, did: str, status: str) -> None:
        self._batch.ops.append(SetRepo(did, {"status": status}))

    def set_identity(self, did: str, handle: str | None, pds: str | None) -> None:
        self._batch.ops.append(SetRepo(did, {"handle": handle, "pds": pds}))

    def purge(self, did: str) -> None:
        self._batch.revs.pop(did, None)
        self._batch.ops.append(PurgeRepo(did))
        self.revs.pop(did, None)
        self.resync.discard(did)

    def _valid(self, did: str, op: VerifiedOp) -> bool:
        """Whether to index the record: of a collection we index (another collection under
        a followed namespace, e.g. one the peer network adds later, is passed over without
        counting) and valid against its lexicon (counted and logged with the reason if not)."""
        if op.collection not in COLLECTION_TABLES:
            log.debug("record of unindexed collection %s skipped", op.collection)
            return False
        if self.validator is None:
            return True
        assert op.record is not None
        try:
            if op.record.get("$type") != op.collection:
                raise LexiconError(f"$type {op.record.get('$type')!r} is not {op.collection}")
            self.validator(op.collection, op.record)
        except LexiconError as exc:
            self.counters.invalid_records += 1
            self.counters.note("invalid_record")
            log.warning(
                "invalid record at://%s/%s/%s skipped: %s", did, op.collection, op.rkey, exc
            )
            return False
        return True

    # -- flushing ----------------------------------------------------------------------------

    def full(self) -> bool:
        return len(self._batch.ops) >= self.batch_size

    async def wait_room(self) -> None:
        """Back-pressure: stop taking frames while a full batch waits for the database."""
        if len(self._batch.ops) >= self.max_pending:
            self._room.clear()
            await self.flush()
        await self._room.wait()

    async def flush(self) -> None:
        """Commit the pending batch and the cursors it covers in one transaction."""
        async with self._flush_lock:
            batch, self._batch = self._batch, _Batch()
            self._room.set()
            if not batch.ops and not batch.cursors and not batch.revs:
                return
            async with self.store.transaction() as tx:
                for op in batch.ops:
                    tx.add(op)
                for did, rev in batch.revs.items():
                    tx.add(SetRepo(did, {"rev": rev}))
                for host, seq in batch.cursors.items():
                    tx.add(SaveCursor(host, seq))
            self.counters.records_indexed += batch.upserts
            self.counters.records_deleted += batch.deletes
            self.counters.batches += 1
