"""Typed write ops: what the ingest path asks of the index, one small class per kind.

The indexer queues these, a `Transaction` buffers them (adding the repo rows records
need), and the writer thread applies them in order with one `match`; no op is a tagged
tuple or a method name looked up at run time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypedDict

__all__ = [
    "DeleteRecord",
    "PurgeRepo",
    "RepoChanges",
    "SaveCursor",
    "SetRepo",
    "UpsertRecord",
    "WriteOp",
]


class RepoChanges(TypedDict, total=False):
    """The repo columns a `SetRepo` changes; a column not given keeps its value."""

    handle: str | None
    pds: str | None
    rev: str | None
    status: str
    resync: bool


@dataclass(slots=True)
class UpsertRecord:
    """Create or replace a record; `rev` (the commit's, if given) also advances the repo."""

    did: str
    collection: str
    rkey: str
    cid: str
    record: dict[str, Any]
    rev: str | None = None


@dataclass(slots=True)
class DeleteRecord:
    did: str
    collection: str
    rkey: str
    rev: str | None = None


@dataclass(slots=True)
class SetRepo:
    """Create a repo row or change some of its columns (a status other than active hides
    the repo's records)."""

    did: str
    changes: RepoChanges


@dataclass(slots=True)
class PurgeRepo:
    """Delete a repo and every record of it (account deleted, or before a full resync)."""

    did: str


@dataclass(slots=True)
class SaveCursor:
    """The firehose seq of `host` that the ops before it in the same transaction cover."""

    host: str
    seq: int


WriteOp = UpsertRecord | DeleteRecord | SetRepo | PurgeRepo | SaveCursor
