"""The write side of the index: the `Store` the ingest path commits verified ops through.

Writes inside ``async with store.transaction() as tx`` are buffered in memory (the ``tx``
methods are plain calls, cheap enough for the hot path) and applied in one database
transaction on a dedicated writer thread when the block exits. The firehose cursor saved in
the same block is committed atomically with the ops it covers, so after a crash ingest resumes
exactly where the committed state ends. An exception inside the block discards everything.

Database work runs on threads (sync SQLAlchemy) rather than an async driver: measured, a
single writer thread batching a few hundred ops per commit is the fastest path into SQLite,
and the same code then serves PostgreSQL through psycopg.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, bindparam, delete, select, text, update
from sqlalchemy.dialects import postgresql, sqlite

from . import extract
from .engine import default_db_url, make_engine, migrate
from .models import (
    COLLECTION_TABLES,
    cursors,
    dataset_records,
    dataset_tags,
    datasets,
    lenses,
    repos,
    schemas,
    shards,
)
from .search import fts_tags_text

log = logging.getLogger(__name__)

T = TypeVar("T")
ACTIVE = "active"
_UNSET: Any = object()


def utcnow() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class RepoInfo:
    """What the index knows about a repo; ``status != "active"`` hides its records."""

    did: str
    handle: str | None = None
    pds: str | None = None
    rev: str | None = None
    status: str = ACTIVE
    resync: bool = False

    @property
    def active(self) -> bool:
        return self.status == ACTIVE


class Store:
    """The index database: migrations, buffered write transactions, threaded reads.

    ``Store(url)`` opens (and migrates) the database; ``url=None`` uses the embedded SQLite
    file. Call :meth:`close` when done.
    """

    def __init__(self, url: str | None = None, *, run_migrations: bool = True) -> None:
        self.url = url or default_db_url()
        self.engine: Engine = make_engine(self.url)
        self.dialect = self.engine.dialect.name
        if run_migrations:
            migrate(self.engine)
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="atdata-db-write")
        self._readers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="atdata-db-read")
        self._repo_cache: OrderedDict[str, RepoInfo | None] = OrderedDict()
        self._repo_cache_max = 100_000
        #: Counters for /metrics and describeService (records applied since start).
        self.stats: dict[str, int] = {"records_upserted": 0, "records_deleted": 0, "commits": 0}

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        self._writer.shutdown(wait=True)
        self._readers.shutdown(wait=True)
        self.engine.dispose()

    async def aclose(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.close)

    # -- reads -------------------------------------------------------------------------------

    async def read(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(conn, *args, **kwargs)`` on a reader thread with its own connection."""

        def run() -> T:
            with self.engine.connect() as conn:
                return fn(conn, *args, **kwargs)

        return await asyncio.get_running_loop().run_in_executor(self._readers, run)

    def read_sync(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        with self.engine.connect() as conn:
            return fn(conn, *args, **kwargs)

    async def load_cursor(self, host: str) -> int | None:
        """The last committed firehose seq for ``host`` (None: never followed)."""
        return await self.read(_load_cursor, host)

    async def load_cursors(self) -> dict[str, int]:
        return await self.read(_load_cursors)

    async def get_repo(self, did: str) -> RepoInfo | None:
        """Async lookup that also warms the cache :meth:`Transaction.get_repo` reads."""
        if did in self._repo_cache:
            return self._repo_cache[did]
        info = await self.read(_load_repo, did)
        self._cache_repo(did, info)
        return info

    def _get_repo_blocking(self, did: str) -> RepoInfo | None:
        if did in self._repo_cache:
            self._repo_cache.move_to_end(did)
            return self._repo_cache[did]
        info = self.read_sync(_load_repo, did)
        self._cache_repo(did, info)
        return info

    def _cache_repo(self, did: str, info: RepoInfo | None) -> None:
        self._repo_cache[did] = info
        self._repo_cache.move_to_end(did)
        while len(self._repo_cache) > self._repo_cache_max:
            self._repo_cache.popitem(last=False)

    # -- writes ------------------------------------------------------------------------------

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """Buffer writes; commit them (and any saved cursor) atomically when the block exits."""
        tx = Transaction(self)
        yield tx
        if not tx._ops:
            return
        # One writer thread: commits (and the cache updates after them) happen in block order.
        await asyncio.get_running_loop().run_in_executor(self._writer, self._commit, tx._ops)
        for did, info in tx._repos.items():
            self._cache_repo(did, info)

    def _commit(self, ops: list[tuple[Any, ...]]) -> None:
        with self.engine.begin() as conn:
            writer = _Writer(conn, self.dialect)
            for op in ops:
                getattr(writer, op[0])(*op[1:])
            writer.finish()
        self.stats["records_upserted"] += writer.upserted
        self.stats["records_deleted"] += writer.deleted
        self.stats["commits"] += 1


class Transaction:
    """Buffered writes of one atomic batch; see :meth:`Store.transaction`."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._ops: list[tuple[Any, ...]] = []
        self._repos: dict[str, RepoInfo | None] = {}

    def __len__(self) -> int:
        return len(self._ops)

    def upsert_record(
        self,
        did: str,
        collection: str,
        rkey: str,
        cid: str,
        record: Mapping[str, Any],
        rev: str | None = None,
    ) -> None:
        """Create or replace a record; ``rev`` (the commit's) also advances the repo's rev."""
        if collection not in COLLECTION_TABLES:
            log.debug("ignoring record of unindexed collection %s", collection)
            return
        self._touch_repo(did, rev)
        self._ops.append(("upsert", did, collection, rkey, cid, dict(record)))

    def delete_record(self, did: str, collection: str, rkey: str, rev: str | None = None) -> None:
        if collection not in COLLECTION_TABLES:
            return
        if rev is not None:
            self._touch_repo(did, rev)
        self._ops.append(("delete", did, collection, rkey))

    def set_repo(
        self,
        did: str,
        *,
        handle: str | None = _UNSET,
        pds: str | None = _UNSET,
        rev: str | None = _UNSET,
        status: str = _UNSET,
        resync: bool = _UNSET,
    ) -> None:
        """Create or update a repo; only the given fields change. A status other than
        ``active`` hides the repo's records from every query; ``active`` shows them again."""
        current = self.get_repo(did) or RepoInfo(did)
        changes = {
            k: v
            for k, v in (
                ("handle", handle),
                ("pds", pds),
                ("rev", rev),
                ("status", status),
                ("resync", resync),
            )
            if v is not _UNSET
        }
        self._repos[did] = replace(current, **changes)
        self._ops.append(("repo", did, changes))

    def get_repo(self, did: str) -> RepoInfo | None:
        """The repo as this transaction would leave it (cached; a miss reads the database)."""
        if did in self._repos:
            return self._repos[did]
        return self._store._get_repo_blocking(did)

    def purge_repo(self, did: str) -> None:
        """Delete every record of the repo and the repo itself (account deleted)."""
        self._repos[did] = None
        self._ops.append(("purge", did))

    def save_cursor(self, host: str, seq: int) -> None:
        self._ops.append(("cursor", host, int(seq)))

    def _touch_repo(self, did: str, rev: str | None) -> None:
        """Create the repo row if needed and advance its rev (records need their repo)."""
        current = self.get_repo(did)
        if current is None:
            self._repos[did] = RepoInfo(did, rev=rev)
        elif rev is not None and rev != current.rev:
            self._repos[did] = replace(current, rev=rev)
        else:
            return
        self._ops.append(("repo", did, {"rev": rev} if rev is not None else {}))


# -- database side (writer thread) -------------------------------------------------------------


_DATASET_FTS_PG = text(
    "UPDATE datasets SET search ="
    " setweight(to_tsvector('english', :name), 'A')"
    " || setweight(to_tsvector('english', :tags), 'B')"
    " || setweight(to_tsvector('english', :fields), 'C')"
    " || setweight(to_tsvector('english', :description), 'D')"
    " WHERE id = :id"
)
_DATASET_FTS_SQLITE_DEL = text("DELETE FROM datasets_fts WHERE rowid = :id")
_DATASET_FTS_SQLITE_INS = text(
    "INSERT INTO datasets_fts (rowid, name, description, tags, fields)"
    " VALUES (:id, :name, :description, :tags, :fields)"
)


class _Statements:
    """Statements built once per dialect: building Core constructs per row costs more than the
    SQLite work itself (measured ~5x), so the writer only binds parameters."""

    def __init__(self, dialect: str) -> None:
        ins = postgresql.insert if dialect == "postgresql" else sqlite.insert

        def upsert(table: Any, key: str, returning: Any = None) -> Any:
            stmt = ins(table)
            cols = [c.name for c in table.c if c.name not in (key, "id")]
            stmt = stmt.on_conflict_do_update(
                index_elements=[table.c[key]], set_={c: stmt.excluded[c] for c in cols}
            )
            return stmt.returning(returning) if returning is not None else stmt

        self.upsert = {t.name: upsert(t, "uri", t.c.id) for t in (datasets, schemas, lenses)}
        self.dataset_record = upsert(dataset_records, "dataset_id")
        # Most ingested records are new: try a plain insert first, which spares the deletes
        # of old tags/shards/full-text rows that only an update needs.
        self.insert_new = {
            t.name: ins(t).on_conflict_do_nothing(index_elements=[t.c.uri]).returning(t.c.id)
            for t in (datasets, schemas, lenses)
        }
        self.cursor = upsert(cursors, "host")
        self.repo_status = select(repos.c.status).where(repos.c.did == bindparam("did"))
        self.schema_fields = select(schemas.c.field_names).where(schemas.c.uri == bindparam("uri"))
        self.del_tags = delete(dataset_tags).where(dataset_tags.c.dataset_id == bindparam("id"))
        self.del_shards = delete(shards).where(shards.c.dataset_id == bindparam("id"))
        self.ins_tags = dataset_tags.insert()
        self.ins_shards = shards.insert()
        self.dataset_ids = select(datasets.c.id).where(datasets.c.uri == bindparam("uri"))
        self.delete_by_uri = {
            t.name: delete(t).where(t.c.uri == bindparam("uri")) for t in (schemas, lenses)
        }
        self.ins = ins


_STATEMENTS: dict[str, _Statements] = {}


class _Writer:
    """Applies buffered ops on one connection inside one transaction."""

    def __init__(self, conn: Connection, dialect: str) -> None:
        self.conn = conn
        self.pg = dialect == "postgresql"
        if dialect not in _STATEMENTS:
            _STATEMENTS[dialect] = _Statements(dialect)
        self.sql = _STATEMENTS[dialect]
        self.now = utcnow()
        self._hidden: dict[str, bool] = {}
        self._schema_fields: dict[str, list[str]] = {}
        self._repo_rows: dict[str, dict[str, Any]] = {}
        self._pending_rev = False
        self.upserted = 0
        self.deleted = 0

    # repos

    def repo(self, did: str, changes: dict[str, Any]) -> None:
        if not changes.keys() - {"rev"} and did in self._repo_rows:
            # A rev bump of a repo already written in this batch: one statement per batch.
            self._repo_rows[did].update(changes)
            self._pending_rev = True
            return
        values = {**changes, "updated_at": self.now}
        stmt = self.sql.ins(repos).values(did=did, **values)
        stmt = stmt.on_conflict_do_update(index_elements=[repos.c.did], set_=values)
        self.conn.execute(stmt)
        self._repo_rows[did] = dict(changes)
        if "status" in changes:
            hidden = changes["status"] != ACTIVE
            self._hidden[did] = hidden
            for table in (datasets, schemas, lenses):
                self.conn.execute(update(table).where(table.c.did == did).values(hidden=hidden))
            self.conn.execute(
                update(dataset_tags)
                .where(
                    dataset_tags.c.dataset_id.in_(
                        select(datasets.c.id).where(datasets.c.did == did)
                    )
                )
                .values(hidden=hidden)
            )

    def finish(self) -> None:
        """Write the final rev of every repo whose rev moved within the batch."""
        if not self._pending_rev:
            return
        revs = [
            {"b_did": did, "rev": row["rev"], "updated_at": self.now}
            for did, row in self._repo_rows.items()
            if "rev" in row
        ]
        if revs:
            self.conn.execute(
                update(repos)
                .where(repos.c.did == bindparam("b_did"))
                .values(rev=bindparam("rev"), updated_at=bindparam("updated_at")),
                revs,
            )

    def is_hidden(self, did: str) -> bool:
        if did not in self._hidden:
            status = self.conn.execute(self.sql.repo_status, {"did": did}).scalar()
            self._hidden[did] = status is not None and status != ACTIVE
        return self._hidden[did]

    def purge(self, did: str) -> None:
        ids = [r[0] for r in self.conn.execute(select(datasets.c.id).where(datasets.c.did == did))]
        self._drop_datasets(ids)
        self.deleted += len(ids)
        for table in (schemas, lenses):
            self.deleted += self.conn.execute(delete(table).where(table.c.did == did)).rowcount
        self.conn.execute(delete(repos).where(repos.c.did == did))
        self._hidden.pop(did, None)
        self._repo_rows.pop(did, None)

    def cursor(self, host: str, seq: int) -> None:
        self.conn.execute(self.sql.cursor, {"host": host, "seq": seq, "updated_at": self.now})

    # records

    def upsert(
        self, did: str, collection: str, rkey: str, cid: str, record: dict[str, Any]
    ) -> None:
        uri = extract.at_uri(did, collection, rkey)
        common = {
            "uri": uri,
            "did": did,
            "rkey": rkey,
            "cid": cid,
            "record": record,
            "indexed_at": self.now,
            "hidden": self.is_hidden(did),
        }
        if collection == extract.DATASET:
            self._upsert_dataset(common, extract.dataset_row(record))
        elif collection == extract.SCHEMA:
            self._upsert_schema(common, extract.schema_row(record))
        else:
            row = extract.lens_row(record)
            self._upsert_row(
                lenses,
                {
                    **common,
                    "name": row.name,
                    "description": row.description,
                    "source_schema": row.source_schema,
                    "target_schema": row.target_schema,
                    "created_at": row.created_at or self.now,
                },
            )
        self.upserted += 1

    def _upsert_row(self, table: Any, values: dict[str, Any]) -> int:
        return self.conn.execute(self.sql.upsert[table.name], values).scalar_one()

    def _insert_or_update(self, table: Any, values: dict[str, Any]) -> tuple[int, bool]:
        """(row id, whether the row is new)."""
        new_id = self.conn.execute(self.sql.insert_new[table.name], values).scalar()
        if new_id is not None:
            return new_id, True
        return self._upsert_row(table, values), False

    def _upsert_schema(self, common: dict[str, Any], row: extract.SchemaRow) -> None:
        old = self.conn.execute(self.sql.schema_fields, {"uri": common["uri"]}).scalar()
        self._upsert_row(
            schemas,
            {
                **common,
                "name": row.name,
                "version": row.version,
                "description": row.description,
                "field_names": row.field_names,
                "created_at": row.created_at or self.now,
            },
        )
        self._schema_fields[common["uri"]] = row.field_names
        if old != row.field_names:  # datasets of this schema search on its field names
            for ds in self.conn.execute(
                select(
                    datasets.c.id, datasets.c.name, datasets.c.description, datasets.c.tags
                ).where(datasets.c.schema_uri == common["uri"])
            ).all():
                self._index_text(ds.id, ds.name, ds.description, ds.tags or [], row.field_names)

    def _fields_of(self, schema_uri: str | None) -> list[str]:
        if not schema_uri:
            return []
        if schema_uri not in self._schema_fields:
            names = self.conn.execute(self.sql.schema_fields, {"uri": schema_uri}).scalar()
            self._schema_fields[schema_uri] = list(names or [])
        return self._schema_fields[schema_uri]

    def _upsert_dataset(self, common: dict[str, Any], row: extract.DatasetRow) -> None:
        created = row.created_at or self.now
        record = common.pop("record")
        ds_id, new = self._insert_or_update(
            datasets,
            {
                **common,
                "name": row.name,
                "description": row.description,
                "tags": row.tags,
                "license": row.license,
                "samples": row.samples,
                "bytes": row.bytes,
                "schema_uri": row.schema_uri,
                "schema_cid": row.schema_cid,
                "created_at": created,
            },
        )
        self.conn.execute(self.sql.dataset_record, {"dataset_id": ds_id, "record": record})
        if not new:
            self.conn.execute(self.sql.del_tags, {"id": ds_id})
            self.conn.execute(self.sql.del_shards, {"id": ds_id})
        if row.tags:
            self.conn.execute(
                self.sql.ins_tags,
                [
                    {
                        "dataset_id": ds_id,
                        "tag": tag,
                        "hidden": common["hidden"],
                        "created_at": created,
                        "samples": row.samples,
                    }
                    for tag in row.tags
                ],
            )
        if row.shards:
            self.conn.execute(
                self.sql.ins_shards,
                [
                    {
                        "dataset_id": ds_id,
                        "position": s.position,
                        "url": s.url,
                        "blob_cid": s.blob_cid,
                        "size": s.size,
                        "sha256": s.sha256,
                        "samples": s.samples,
                        "detail": s.detail,
                    }
                    for s in row.shards
                ],
            )
        self._index_text(
            ds_id, row.name, row.description, row.tags, self._fields_of(row.schema_uri), new=new
        )

    def _index_text(
        self,
        ds_id: int,
        name: str | None,
        description: str | None,
        tags: list[str],
        fields: list[str],
        *,
        new: bool = False,
    ) -> None:
        params = {
            "id": ds_id,
            "name": name or "",
            "description": description or "",
            "tags": fts_tags_text(tags),
            "fields": " ".join(fields),
        }
        if self.pg:
            self.conn.execute(_DATASET_FTS_PG, params)
        else:
            if not new:
                self.conn.execute(_DATASET_FTS_SQLITE_DEL, {"id": ds_id})
            self.conn.execute(_DATASET_FTS_SQLITE_INS, params)

    def delete(self, did: str, collection: str, rkey: str) -> None:
        uri = extract.at_uri(did, collection, rkey)
        table = COLLECTION_TABLES[collection]
        if table is datasets:
            ids = [r[0] for r in self.conn.execute(self.sql.dataset_ids, {"uri": uri})]
            self._drop_datasets(ids)
            self.deleted += len(ids)
        else:
            self.deleted += self.conn.execute(
                self.sql.delete_by_uri[table.name], {"uri": uri}
            ).rowcount

    def _drop_datasets(self, ids: list[int]) -> None:
        if not ids:
            return
        for table in (dataset_tags, shards, dataset_records):
            self.conn.execute(delete(table).where(table.c.dataset_id.in_(ids)))
        if not self.pg:
            self.conn.execute(
                text("DELETE FROM datasets_fts WHERE rowid IN :ids").bindparams(
                    bindparam("ids", expanding=True)
                ),
                {"ids": ids},
            )
        self.conn.execute(delete(datasets).where(datasets.c.id.in_(ids)))


# -- small reads -------------------------------------------------------------------------------


def _load_cursor(conn: Connection, host: str) -> int | None:
    return conn.execute(select(cursors.c.seq).where(cursors.c.host == host)).scalar()


def _load_cursors(conn: Connection) -> dict[str, int]:
    return {r.host: r.seq for r in conn.execute(select(cursors.c.host, cursors.c.seq))}


def _load_repo(conn: Connection, did: str) -> RepoInfo | None:
    row = conn.execute(
        select(
            repos.c.did, repos.c.handle, repos.c.pds, repos.c.rev, repos.c.status, repos.c.resync
        ).where(repos.c.did == did)
    ).first()
    if row is None:
        return None
    return RepoInfo(row.did, row.handle, row.pds, row.rev, row.status, bool(row.resync))
