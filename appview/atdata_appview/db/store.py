"""The write side of the index: the `Store` the ingest path commits verified ops through.

Writes inside ``async with store.transaction() as tx`` are buffered in memory (the ``tx``
methods are plain calls, cheap enough for the hot path) and applied in one database
transaction on a dedicated writer thread when the block exits. The firehose cursor saved in
the same block is committed atomically with the ops it covers, so after a crash ingest resumes
exactly where the committed state ends. An exception inside the block discards everything.

Database work runs on threads (sync SQLAlchemy) rather than an async driver: measured, a
single writer thread batching a few hundred ops per commit is the fastest path into SQLite,
and the same code then serves PostgreSQL through psycopg. The writer's hot path runs SQL that
SQLAlchemy compiled once on the raw DBAPI cursor of the same transaction (see `_Statements`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any, TypeVar

from atdata.versions import newest
from sqlalchemy import Connection, Dialect, Engine, Table, bindparam, delete, select, text, update
from sqlalchemy.dialects import postgresql, sqlite

from . import extract
from .engine import default_db_url, make_engine, migrate
from .models import (
    COLLECTION_FAMILY,
    COLLECTION_TABLES,
    RECORD_TABLES,
    cursors,
    dataset_lineage,
    dataset_records,
    dataset_tags,
    datasets,
    labels,
    lens_verifications,
    lenses,
    repos,
    schemas,
    shards,
)
from .ops import DeleteRecord, PurgeRepo, RepoChanges, SaveCursor, SetRepo, UpsertRecord, WriteOp
from .search import fts_tags_text, words

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
        #: After `warm()`: the cache holds every repo, so a miss means "not in the index".
        self._cache_complete = False
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

    async def warm(self) -> list[RepoInfo]:
        """Read every repo of the index into the cache and return them (ingest's start-up).

        From then on the cache is complete: a repo it lacks is not in the index, so no
        transaction ever reads the database on the event loop to learn that. This holds
        while this Store is the index's only writer (the one ingesting process).
        """
        infos = await self.read(_load_repos)
        self._repo_cache = OrderedDict((info.did, info) for info in infos)
        self._cache_complete = True
        return infos

    async def get_repo(self, did: str) -> RepoInfo | None:
        """Async lookup that also fills the cache :meth:`Transaction.get_repo` reads."""
        if did in self._repo_cache or self._cache_complete:
            return self._repo_cache.get(did)
        info = await self.read(_load_repo, did)
        self._cache_repo(did, info)
        return info

    def _get_repo_blocking(self, did: str) -> RepoInfo | None:
        if did in self._repo_cache:
            self._repo_cache.move_to_end(did)
            return self._repo_cache[did]
        if self._cache_complete:
            return None
        info = self.read_sync(_load_repo, did)
        self._cache_repo(did, info)
        return info

    def _cache_repo(self, did: str, info: RepoInfo | None) -> None:
        if self._cache_complete:  # complete: every repo stays, an absent one is simply gone
            if info is None:
                self._repo_cache.pop(did, None)
            else:
                self._repo_cache[did] = info
            return
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

    def _commit(self, ops: list[WriteOp]) -> None:
        with self.engine.begin() as conn:
            writer = _Writer(conn, self.engine.dialect)
            try:
                for op in ops:
                    writer.apply(op)
                writer.finish()
            finally:
                writer.cur.close()
        self.stats["records_upserted"] += writer.upserted
        self.stats["records_deleted"] += writer.deleted
        self.stats["commits"] += 1


class Transaction:
    """Buffered writes of one atomic batch; see :meth:`Store.transaction`."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._ops: list[WriteOp] = []
        self._repos: dict[str, RepoInfo | None] = {}

    def __len__(self) -> int:
        return len(self._ops)

    def add(self, op: WriteOp) -> None:
        """Queue one op, with the repo row a record needs (records of unindexed collections
        are dropped here)."""
        match op:
            case UpsertRecord(did=did, collection=collection, rev=rev):
                if collection not in COLLECTION_TABLES:
                    log.debug("ignoring record of unindexed collection %s", collection)
                    return
                self._touch_repo(did, rev)
            case DeleteRecord(did=did, collection=collection, rev=rev):
                if collection not in COLLECTION_TABLES:
                    return
                if rev is not None:
                    self._touch_repo(did, rev)
            case SetRepo(did=did, changes=changes):
                current = self.get_repo(did) or RepoInfo(did)
                self._repos[did] = replace(current, **changes)
            case PurgeRepo(did=did):
                self._repos[did] = None
        self._ops.append(op)

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
        self.add(UpsertRecord(did, collection, rkey, cid, dict(record), rev))

    def delete_record(self, did: str, collection: str, rkey: str, rev: str | None = None) -> None:
        self.add(DeleteRecord(did, collection, rkey, rev))

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
        changes: RepoChanges = {}
        if handle is not _UNSET:
            changes["handle"] = handle
        if pds is not _UNSET:
            changes["pds"] = pds
        if rev is not _UNSET:
            changes["rev"] = rev
        if status is not _UNSET:
            changes["status"] = status
        if resync is not _UNSET:
            changes["resync"] = resync
        self.add(SetRepo(did, changes))

    def get_repo(self, did: str) -> RepoInfo | None:
        """The repo as this transaction would leave it (cached; a miss reads the database
        unless the store was warmed)."""
        if did in self._repos:
            return self._repos[did]
        return self._store._get_repo_blocking(did)

    def purge_repo(self, did: str) -> None:
        """Delete every record of the repo and the repo itself (account deleted)."""
        self.add(PurgeRepo(did))

    def save_cursor(self, host: str, seq: int) -> None:
        self.add(SaveCursor(host, int(seq)))

    def _touch_repo(self, did: str, rev: str | None) -> None:
        """Create the repo row if needed and advance its rev (records need their repo)."""
        current = self.get_repo(did)
        if current is None:
            self._repos[did] = RepoInfo(did, rev=rev)
        elif rev is not None and rev != current.rev:
            self._repos[did] = replace(current, rev=rev)
        else:
            return
        self._ops.append(SetRepo(did, {"rev": rev} if rev is not None else {}))


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

_dumps = json.dumps  # what SQLAlchemy's JSON type writes (the engines set no json_serializer)


def _raw_dialect(dialect: Dialect) -> Dialect:
    """A dialect that renders named parameters, so the SQL takes the same dicts on both
    drivers (pysqlite defaults to ``?``; psycopg already renders ``%(name)s``)."""
    if dialect.name == "sqlite":
        return sqlite.dialect(paramstyle="named")
    return dialect


class _Statements:
    """SQL built once per dialect and run on the raw DBAPI cursor.

    Per statement, SQLAlchemy's execute machinery costs several times the SQLite work itself
    (measured: ~5 statements per dataset at ~60 us overhead each), so the hot path compiles
    each statement to a string once and the writer only binds parameters, with one
    ``executemany`` per batch for the child rows (tags, shards, record JSON, full-text).
    JSON columns are serialised here exactly as SQLAlchemy's JSON type would.
    """

    def __init__(self, dialect: Dialect) -> None:
        self._raw = _raw_dialect(dialect)
        pg = dialect.name == "postgresql"
        self._ins = postgresql.insert if pg else sqlite.insert
        self._inserts: dict[tuple[Any, ...], str] = {}
        sql = self.sql
        self.del_tags = sql(
            delete(dataset_tags).where(dataset_tags.c.dataset_id == bindparam("id"))
        )
        self.del_shards = sql(delete(shards).where(shards.c.dataset_id == bindparam("id")))
        self.del_lineage = sql(
            delete(dataset_lineage).where(dataset_lineage.c.dataset_id == bindparam("id"))
        )
        self.repo_status = sql(select(repos.c.status).where(repos.c.did == bindparam("did")))
        self.schema_fields = sql(
            select(schemas.c.field_names).where(schemas.c.uri == bindparam("uri"))
        )
        self.dataset_ids = sql(
            select(datasets.c.id, datasets.c.did, datasets.c.name, datasets.c.family).where(
                datasets.c.uri == bindparam("uri")
            )
        )
        self.versions_of = sql(
            select(
                datasets.c.id, datasets.c.version, datasets.c.created_at, datasets.c.newest
            ).where(
                datasets.c.did == bindparam("did"),
                datasets.c.name == bindparam("name"),
                datasets.c.family == bindparam("family"),
            )
        )
        self.set_newest = sql(
            update(datasets)
            .where(datasets.c.id == bindparam("b_id"))
            .values(newest=bindparam("newest"))
        )
        self.delete_by_uri = {
            t.name: sql(delete(t).where(t.c.uri == bindparam("uri")))
            for t in RECORD_TABLES
            if t is not datasets
        }
        self.fts_pg = sql(_DATASET_FTS_PG) if pg else ""
        self.fts_del = "" if pg else sql(_DATASET_FTS_SQLITE_DEL)
        self.fts_ins = "" if pg else sql(_DATASET_FTS_SQLITE_INS)

    def sql(self, stmt: Any) -> str:
        return str(stmt.compile(dialect=self._raw))

    def insert(
        self,
        table: Table,
        keys: tuple[str, ...],
        on: str | None = None,
        *,
        update: bool | tuple[str, ...] = False,
    ) -> str:
        """``INSERT`` of exactly the columns ``keys`` (cached per column set; the raw path
        applies no Python-side column defaults, so the caller gives every column it needs).
        With ``on`` (a unique column): on conflict, update the columns ``update`` (True: all
        the others given) or do nothing; a table with an ``id`` returns it (no row: the
        insert did nothing)."""
        cache_key = (table.name, keys, on, update)
        if cache_key not in self._inserts:
            stmt: Any = self._ins(table).values({k: bindparam(k) for k in keys})
            if on is not None:
                if update:
                    cols = update if isinstance(update, tuple) else keys
                    stmt = stmt.on_conflict_do_update(
                        index_elements=[table.c[on]],
                        set_={k: stmt.excluded[k] for k in cols if k != on},
                    )
                else:
                    stmt = stmt.on_conflict_do_nothing(index_elements=[table.c[on]])
                if "id" in table.c:
                    stmt = stmt.returning(table.c.id)
            self._inserts[cache_key] = self.sql(stmt)
        return self._inserts[cache_key]


_STATEMENTS: dict[str, _Statements] = {}
_FAMILY_TABLES = (schemas, datasets, lenses)
#: The tables whose rows are a record's extracted fields alone, and how to extract them.
_PLAIN_ROWS: dict[Table, Callable[[Mapping[str, Any]], Any]] = {
    lenses: extract.lens_row,
    labels: extract.label_row,
    lens_verifications: extract.lens_verification_row,
}
_RECORD_KEYS = ("dataset_id", "record")
_REPO_DEFAULTS = {"status": ACTIVE, "resync": False}  # the columns' defaults for a new repo
_TAG_KEYS = ("dataset_id", "tag", "hidden", "created_at", "samples")
_SHARD_KEYS = ("dataset_id", "position", "url", "blob_cid", "size", "sha256", "samples", "detail")
_LINEAGE_KEYS = ("dataset_id", "position", "source_uri", "source_cid", "relation", "lens_uri")


class _Writer:
    """Applies buffered ops on one connection inside one transaction.

    Child rows of newly inserted datasets (record JSON, tags, shards, full-text) are
    collected and written with one ``executemany`` each; any op that could read or change
    them (an update of an existing dataset, a delete, a schema whose field names datasets
    search on, a status change, a purge) writes the collected rows first, so the ops keep
    their order.
    """

    def __init__(self, conn: Connection, dialect: Dialect) -> None:
        self.conn = conn
        self.cur = conn.connection.cursor()  # raw DBAPI cursor, same transaction
        self.pg = dialect.name == "postgresql"
        if dialect.name not in _STATEMENTS:
            _STATEMENTS[dialect.name] = _Statements(dialect)
        self.sql = _STATEMENTS[dialect.name]
        self.now = utcnow()
        self._hidden: dict[str, bool] = {}
        self._schema_fields: dict[str, list[str]] = {}
        self._repo_rows: dict[str, dict[str, Any]] = {}
        self._pending_rev = False
        self._records: list[dict[str, Any]] = []
        self._tags: list[dict[str, Any]] = []
        self._shards: list[dict[str, Any]] = []
        self._lineage: list[dict[str, Any]] = []
        self._fts: list[dict[str, Any]] = []
        #: (did, family, name) of every dataset written or deleted: their newest is settled at
        #: the end. Families version apart: a peer entry is no older version of our dataset.
        self._names: set[tuple[str, str, str]] = set()
        self.upserted = 0
        self.deleted = 0

    def _one(self, sql: str, params: dict[str, Any]) -> Any:
        """First column of the first row (None: no row)."""
        self.cur.execute(sql, params)
        row = self.cur.fetchone()
        return None if row is None else row[0]

    def flush(self) -> None:
        """Write the collected child rows of new datasets."""
        cur = self.cur
        if self._records:
            sql = self.sql.insert(dataset_records, _RECORD_KEYS, "dataset_id", update=True)
            cur.executemany(sql, self._records)
            self._records = []
        if self._tags:
            cur.executemany(self.sql.insert(dataset_tags, _TAG_KEYS), self._tags)
            self._tags = []
        if self._shards:
            cur.executemany(self.sql.insert(shards, _SHARD_KEYS), self._shards)
            self._shards = []
        if self._lineage:
            cur.executemany(self.sql.insert(dataset_lineage, _LINEAGE_KEYS), self._lineage)
            self._lineage = []
        if self._fts:
            cur.executemany(self.sql.fts_pg if self.pg else self.sql.fts_ins, self._fts)
            self._fts = []

    def apply(self, op: WriteOp) -> None:
        match op:
            case UpsertRecord():
                self.upsert(op.did, op.collection, op.rkey, op.cid, op.record)
            case SetRepo():
                self.repo(op.did, op.changes)
            case DeleteRecord():
                self.delete(op.did, op.collection, op.rkey)
            case PurgeRepo():
                self.purge(op.did)
            case SaveCursor():
                self.cursor(op.host, op.seq)

    # repos

    def repo(self, did: str, changes: RepoChanges) -> None:
        if not changes.keys() - {"rev"} and did in self._repo_rows:
            # A rev bump of a repo already written in this batch: one statement per batch.
            self._repo_rows[did].update(changes)
            self._pending_rev = True
            return
        if "status" in changes:
            self.flush()  # the rows about to be (un)hidden must be there
        values = {"did": did, **_REPO_DEFAULTS, **changes, "updated_at": self.now}
        set_ = (*changes, "updated_at")  # a known repo keeps the fields not given
        self.cur.execute(self.sql.insert(repos, tuple(values), "did", update=set_), values)
        self._repo_rows.setdefault(did, {}).update(changes)  # keeps a rev bump pending
        if "status" in changes:
            hidden = changes["status"] != ACTIVE
            self._hidden[did] = hidden
            for table in RECORD_TABLES:
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
        """Write what is still collected, the newest version of every name touched, and the
        final rev of every repo whose rev moved."""
        self.flush()
        self._settle_newest()
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

    def _settle_newest(self) -> None:
        """Mark the newest version of each (did, name) written or deleted in this batch (and
        only it): search then collapses versions by filtering one column."""
        changes: list[dict[str, Any]] = []
        for did, family, name in self._names:
            self.cur.execute(self.sql.versions_of, {"did": did, "name": name, "family": family})
            rows = self.cur.fetchall()
            best = newest(rows, lambda r: (r[1], r[2]))
            changes += [
                {"b_id": r[0], "newest": r is best} for r in rows if bool(r[3]) != (r is best)
            ]
        self._names.clear()
        if changes:
            self.cur.executemany(self.sql.set_newest, changes)

    def is_hidden(self, did: str) -> bool:
        if did not in self._hidden:
            status = self._one(self.sql.repo_status, {"did": did})
            self._hidden[did] = status is not None and status != ACTIVE
        return self._hidden[did]

    def purge(self, did: str) -> None:
        self.flush()
        ids = [r[0] for r in self.conn.execute(select(datasets.c.id).where(datasets.c.did == did))]
        self._drop_datasets(ids)
        self.deleted += len(ids)
        for table in RECORD_TABLES:
            if table is not datasets:
                self.deleted += self.conn.execute(delete(table).where(table.c.did == did)).rowcount
        self.conn.execute(delete(repos).where(repos.c.did == did))
        self._hidden.pop(did, None)
        self._repo_rows.pop(did, None)
        self._schema_fields.clear()  # its schemas are gone: datasets must not search on them

    def cursor(self, host: str, seq: int) -> None:
        values = {"host": host, "seq": seq, "updated_at": self.now}
        self.cur.execute(self.sql.insert(cursors, tuple(values), "host", update=True), values)

    # records

    def upsert(
        self, did: str, collection: str, rkey: str, cid: str, record: dict[str, Any]
    ) -> None:
        common = {
            "uri": extract.at_uri(did, collection, rkey),
            "did": did,
            "rkey": rkey,
            "cid": cid,
            "indexed_at": self.now,
            "hidden": self.is_hidden(did),
        }
        table = COLLECTION_TABLES[collection]
        if table in _FAMILY_TABLES:
            common["family"] = COLLECTION_FAMILY[collection]
        if table is datasets:
            self._upsert_dataset(common, record, extract.dataset_row_of(collection, record))
        elif table is schemas:
            self._upsert_schema(common, record, extract.schema_row_of(collection, record))
        else:  # a record row with no child rows: its extracted fields are its columns
            columns = asdict(_PLAIN_ROWS[table](record))
            created = columns.pop("created_at")
            common.update(columns)
            self._upsert_plain(table, common, record, created)
        self.upserted += 1

    def _upsert_plain(
        self, table: Table, common: dict[str, Any], record: dict[str, Any], created: str | None
    ) -> None:
        """A record row with no child rows: insert it, or replace it on the same URI."""
        common.update(record=_dumps(record), created_at=created or self.now)
        self._one(self.sql.insert(table, tuple(common), "uri", update=True), common)

    def _upsert_schema(
        self, common: dict[str, Any], record: dict[str, Any], row: extract.SchemaRow
    ) -> None:
        self.flush()  # datasets of this schema may be re-indexed below
        old = self._load_fields(common["uri"])
        common.update(
            record=_dumps(record),
            name=row.name,
            version=row.version,
            description=row.description,
            field_names=_dumps(row.field_names),
            created_at=row.created_at or self.now,
        )
        self._one(self.sql.insert(schemas, tuple(common), "uri", update=True), common)
        self._schema_fields[common["uri"]] = row.field_names
        if old != row.field_names:  # datasets of this schema search on its field names
            for ds in self.conn.execute(
                select(
                    datasets.c.id, datasets.c.name, datasets.c.description, datasets.c.tags
                ).where(datasets.c.schema_uri == common["uri"])
            ).all():
                self._index_text(ds.id, ds.name, ds.description, ds.tags or [], row.field_names)
            self.flush()

    def _load_fields(self, schema_uri: str) -> list[str] | None:
        raw = self._one(self.sql.schema_fields, {"uri": schema_uri})
        return json.loads(raw) if isinstance(raw, str) else raw  # psycopg decodes JSON itself

    def _fields_of(self, schema_uri: str | None) -> list[str]:
        if not schema_uri:
            return []
        if schema_uri not in self._schema_fields:
            self._schema_fields[schema_uri] = list(self._load_fields(schema_uri) or [])
        return self._schema_fields[schema_uri]

    def _upsert_dataset(
        self, common: dict[str, Any], record: dict[str, Any], row: extract.DatasetRow
    ) -> None:
        created = row.created_at or self.now
        common.update(
            name=row.name,
            version=row.version,
            newest=True,  # settled at the end of the batch (_settle_newest)
            description=row.description,
            tags=_dumps(row.tags),
            license=row.license,
            samples=row.samples,
            bytes=row.bytes,
            schema_uri=row.schema_uri,
            schema_cid=row.schema_cid,
            created_at=created,
        )
        keys = tuple(common)
        ds_id = self._one(self.sql.insert(datasets, keys, "uri"), common)
        new = ds_id is not None
        if not new:
            self.flush()  # collected rows may belong to this dataset
            self.cur.execute(self.sql.dataset_ids, {"uri": common["uri"]})
            for _, old_did, old_name, family in self.cur.fetchall():  # a rename leaves a name
                if old_name is not None:
                    self._names.add((old_did, family, old_name))
            ds_id = self._one(self.sql.insert(datasets, keys, "uri", update=True), common)
            self.cur.execute(self.sql.del_tags, {"id": ds_id})
            self.cur.execute(self.sql.del_shards, {"id": ds_id})
            self.cur.execute(self.sql.del_lineage, {"id": ds_id})
        if row.name is not None:
            self._names.add((common["did"], common["family"], row.name))
        self._records.append({"dataset_id": ds_id, "record": _dumps(record)})
        hidden = common["hidden"]
        self._tags.extend(
            {
                "dataset_id": ds_id,
                "tag": tag,
                "hidden": hidden,
                "created_at": created,
                "samples": row.samples,
            }
            for tag in row.tags
        )
        self._shards.extend(
            {
                "dataset_id": ds_id,
                "position": s.position,
                "url": s.url,
                "blob_cid": s.blob_cid,
                "size": s.size,
                "sha256": s.sha256,
                "samples": s.samples,
                "detail": _dumps(s.detail),
            }
            for s in row.shards
        )
        self._lineage.extend(
            {
                "dataset_id": ds_id,
                "position": e.position,
                "source_uri": e.source_uri,
                "source_cid": e.source_cid,
                "relation": e.relation,
                "lens_uri": e.lens_uri,
            }
            for e in row.lineage
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
        """Collect the dataset's full-text row (an old SQLite FTS row is dropped at once)."""
        if not new and not self.pg:
            self.cur.execute(self.sql.fts_del, {"id": ds_id})
        texts = {
            "name": name or "",
            "description": description or "",
            "tags": fts_tags_text(tags),
            "fields": " ".join(fields),
        }
        if self.pg:  # PostgreSQL's parser would read "digits-081821" as a word and "-081821"
            # (a signed integer): index the words that queries are split into instead
            texts = {column: " ".join(words(text)) for column, text in texts.items()}
        self._fts.append({"id": ds_id, **texts})

    def delete(self, did: str, collection: str, rkey: str) -> None:
        self.flush()
        uri = extract.at_uri(did, collection, rkey)
        table = COLLECTION_TABLES[collection]
        if table is datasets:
            self.cur.execute(self.sql.dataset_ids, {"uri": uri})
            found = self.cur.fetchall()
            ids = [r[0] for r in found]
            self._names.update((r[1], r[3], r[2]) for r in found if r[2] is not None)
            self._drop_datasets(ids)
            self.deleted += len(ids)
        else:
            self._schema_fields.pop(uri, None)
            self.cur.execute(self.sql.delete_by_uri[table.name], {"uri": uri})
            self.deleted += max(self.cur.rowcount, 0)

    def _drop_datasets(self, ids: list[int]) -> None:
        if not ids:
            return
        for table in (dataset_tags, shards, dataset_lineage, dataset_records):
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


def _load_repos(conn: Connection) -> list[RepoInfo]:
    rows = conn.execute(
        select(
            repos.c.did, repos.c.handle, repos.c.pds, repos.c.rev, repos.c.status, repos.c.resync
        )
    )
    return [RepoInfo(r.did, r.handle, r.pds, r.rev, r.status, bool(r.resync)) for r in rows]


def _load_repo(conn: Connection, did: str) -> RepoInfo | None:
    row = conn.execute(
        select(
            repos.c.did, repos.c.handle, repos.c.pds, repos.c.rev, repos.c.status, repos.c.resync
        ).where(repos.c.did == did)
    ).first()
    if row is None:
        return None
    return RepoInfo(row.did, row.handle, row.pds, row.rev, row.status, bool(row.resync))
