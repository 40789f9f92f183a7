"""The index's side of the peer family (``science.alt.dataset.*``): migration 0004 and the
rows its records become. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
from typing import Any

from _fixtures import peer_records as peer
from _fixtures.appview_index import DATASET, dataset_record, lens_record, run, schema_record
from _fixtures.peer_records import (
    PEER_ENTRY,
    PEER_LABEL,
    PEER_LENS,
    PEER_LENS_VERIFICATION,
    PEER_SCHEMA,
)
from atdata_appview.db import SearchParams, Store, make_engine, migrate, search_datasets
from atdata_appview.db.models import (
    COLLECTION_FAMILY,
    COLLECTION_TABLES,
    dataset_records,
    datasets,
    labels,
    lens_verifications,
    lenses,
    schemas,
    shards,
)
from sqlalchemy import inspect, select, text

A = "did:plc:alice"


def _insert(conn: Any, table: str, rkey: str, **cols: Any) -> None:
    values = {"uri": f"at://{A}/x/{rkey}", "did": A, "rkey": rkey, "cid": f"c{rkey}", **cols}
    names = ", ".join(values)
    params = ", ".join(f":{k}" for k in values)
    conn.execute(text(f"INSERT INTO {table} ({names}) VALUES ({params})"), values)


def test_migration_0004_marks_existing_rows_ours_and_adds_label_tables(index_url: str) -> None:
    """An index from 0003 keeps its rows, all of family io.atdata; the new tables exist
    with the lookups they need indexed; downgrading to 0003 and back works."""
    engine = make_engine(index_url)
    try:
        migrate(engine, "0003")
        with engine.begin() as conn:
            _insert(
                conn, "schemas", "s", name="s", hidden=False, record=json.dumps(schema_record("s"))
            )
            _insert(conn, "datasets", "d", name="d", hidden=False, newest=True)
            _insert(
                conn,
                "lenses",
                "l",
                name="l",
                hidden=False,
                record=json.dumps(lens_record("l", "at://a/b/c", "at://a/b/d")),
            )
        migrate(engine)
        with engine.connect() as conn:
            for table in ("schemas", "datasets", "lenses"):
                assert conn.execute(text(f"SELECT family FROM {table}")).scalars().all() == [
                    "io.atdata"
                ]
        inspector = inspect(engine)
        tables = set(inspector.get_table_names())
        assert {"labels", "lens_verifications"} <= tables
        label_indexes = {tuple(ix["column_names"]) for ix in inspector.get_indexes("labels")}
        assert {("did",), ("dataset_uri",), ("did", "name", "created_at")} <= label_indexes
        verification_indexes = {
            tuple(ix["column_names"]) for ix in inspector.get_indexes("lens_verifications")
        }
        assert {("did",), ("lens_uri",)} <= verification_indexes
        with engine.begin() as conn:  # a new row without a family is ours too
            _insert(conn, "datasets", "d2", name="d2", hidden=False, newest=True)
            got = conn.execute(text("SELECT family FROM datasets WHERE rkey = 'd2'")).scalar()
            assert got == "io.atdata"
        _downgrade(engine, "0003")
        assert "labels" not in set(inspect(engine).get_table_names())
        assert "family" not in {c["name"] for c in inspect(engine).get_columns("datasets")}
        migrate(engine)
        assert "family" in {c["name"] for c in inspect(engine).get_columns("datasets")}
    finally:
        engine.dispose()


def _downgrade(engine: Any, revision: str) -> None:
    from alembic import command
    from alembic.config import Config
    from atdata_appview.db.engine import MIGRATIONS

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)


def test_both_families_map_to_tables_and_a_family() -> None:
    from atdata.records import OWN_COLLECTIONS, PEER_COLLECTIONS

    assert set(COLLECTION_TABLES) == set(OWN_COLLECTIONS) | set(PEER_COLLECTIONS)
    assert {COLLECTION_FAMILY[c] for c in OWN_COLLECTIONS} == {"io.atdata"}
    assert {COLLECTION_FAMILY[c] for c in PEER_COLLECTIONS} == {"science.alt.dataset"}
    for own, theirs in (("schema", "schema"), ("dataset", "entry"), ("lens", "lens")):
        assert (
            COLLECTION_TABLES[f"io.atdata.{own}"]
            is COLLECTION_TABLES[f"science.alt.dataset.{theirs}"]
        )


# -- peer records into rows ------------------------------------------------------------------

P = "did:plc:peer"


def peer_uri(collection: str, rkey: str, did: str = P) -> str:
    return f"at://{did}/{collection}/{rkey}"


def _rows(store: Store, table: Any, **where: Any) -> list[Any]:
    stmt = select(table)
    for column, value in where.items():
        stmt = stmt.where(table.c[column] == value)
    with store.engine.connect() as conn:
        return list(conn.execute(stmt))


def _seed_peer(store: Store) -> dict[str, str]:
    """One schema per body form, one entry per storage kind, a label, a lens, a check."""
    uris: dict[str, str] = {}

    async def go() -> None:
        async with store.transaction() as tx:
            tx.set_repo(P, handle="peer.test")
            for form in peer.SCHEMA_FORMS:
                tx.upsert_record(
                    P, PEER_SCHEMA, f"s-{form}", f"cs{form}", peer.schema_record(form=form)
                )
                uris[form] = peer_uri(PEER_SCHEMA, f"s-{form}")
            for kind in peer.STORAGE_KINDS:
                rec = peer.entry_record(
                    f"peer-{kind}", uris["flat"], kind, description=f"{kind} shards", tags=("Peer",)
                )
                tx.upsert_record(P, PEER_ENTRY, f"e-{kind}", f"ce{kind}", rec)
                uris[kind] = peer_uri(PEER_ENTRY, f"e-{kind}")
            gone = peer_uri(PEER_ENTRY, "never-indexed")
            tx.upsert_record(P, PEER_LABEL, "l1", "cl1", peer.label_record("peer-http", gone))
            lens = peer.lens_record("peer-lens", uris["flat"], uris["envelope"])
            tx.upsert_record(P, PEER_LENS, "lens1", "clens", lens)
            uris["lens"] = peer_uri(PEER_LENS, "lens1")
            check = peer.lens_verification_record(uris["lens"], "clens")
            tx.upsert_record(P, PEER_LENS_VERIFICATION, "v1", "cv1", check)

    run(go())
    return uris


def test_peer_records_become_rows_of_the_shared_tables(store: Store) -> None:
    uris = _seed_peer(store)
    schema_rows = {r.rkey: r for r in _rows(store, schemas)}
    assert {r.family for r in schema_rows.values()} == {"science.alt.dataset"}
    for form in peer.SCHEMA_FORMS:  # field names from the JSON Schema, whatever its form
        row = schema_rows[f"s-{form}"]
        assert row.field_names == ["image", "label", "index", "score"], form
        assert (row.name, row.version) == ("peer.Sample", "1.0.0")
        assert row.created_at == peer.CREATED
    entries = {r.rkey: r for r in _rows(store, datasets)}
    assert {r.family for r in entries.values()} == {"science.alt.dataset"}
    http = entries["e-http"]
    assert (http.name, http.version, http.schema_uri) == ("peer-http", None, uris["flat"])
    assert (http.samples, http.bytes, http.tags) == (20, 20480, ["peer"])
    with store.engine.connect() as conn:
        stored = conn.execute(
            select(dataset_records.c.record).where(dataset_records.c.dataset_id == http.id)
        ).scalar()
    record = json.loads(stored) if isinstance(stored, str) else stored
    assert record == peer.entry_record(
        "peer-http", uris["flat"], "http", description="http shards", tags=("Peer",)
    )  # kept exactly as published

    def shard_rows(rkey: str) -> list[tuple[Any, ...]]:
        rows = _rows(store, shards, dataset_id=entries[rkey].id)
        return [(s.position, s.url, s.blob_cid, s.size, s.sha256) for s in rows]

    assert shard_rows("e-http") == [
        (0, "https://data.example/peer-000000.tar", None, None, peer.SHA),
        (1, "https://data.example/peer-000001.tar", None, None, peer.SHA),
    ]
    assert shard_rows("e-s3") == [  # a placeholder checksum is no sha256
        (0, "s3://peer-bucket/sets/peer-000000.tar", None, None, None),
        (1, "s3://peer-bucket/sets/peer-000001.tar", None, None, None),
    ]
    blob_cid = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
    assert shard_rows("e-blobs") == [
        (0, None, blob_cid, 10240, peer.SHA),
        (1, None, blob_cid, 10241, peer.SHA),
    ]
    assert shard_rows("e-external") == [
        (0, "https://data.example/legacy-{000000..000003}.tar", None, None, None)
    ]
    s3_detail = _rows(store, shards, dataset_id=entries["e-s3"].id)[0].detail
    s3_detail = json.loads(s3_detail) if isinstance(s3_detail, str) else s3_detail
    assert s3_detail["checksum"] == {"algorithm": "none", "digest": ""}

    (label,) = _rows(store, labels)
    assert (label.name, label.version, label.did) == ("peer-http", "1.0.0", P)
    assert label.dataset_uri == peer_uri(PEER_ENTRY, "never-indexed")  # kept, not indexed
    (lens,) = _rows(store, lenses)
    assert (lens.family, lens.source_schema, lens.target_schema) == (
        "science.alt.dataset",
        uris["flat"],
        uris["envelope"],
    )
    (check,) = _rows(store, lens_verifications)
    assert (check.lens_uri, check.lens_cid, check.method) == (uris["lens"], "clens", "codeReview")
    # one search covers both families: by name, and by a field name of the entry's schema
    page = run(store.read(search_datasets, SearchParams(q="score")))
    assert {d["name"] for d in page.datasets} == {f"peer-{k}" for k in peer.STORAGE_KINDS}


def test_peer_updates_deletes_hiding_and_purge(store: Store) -> None:
    uris = _seed_peer(store)
    entry_id = next(r.id for r in _rows(store, datasets) if r.rkey == "e-http")

    async def change() -> None:
        async with store.transaction() as tx:
            rec = peer.entry_record("peer-http-2", uris["envelope"], "s3", samples=None)
            tx.upsert_record(P, PEER_ENTRY, "e-http", "ce2", rec)
            tx.upsert_record(
                P, PEER_LABEL, "l1", "cl2", peer.label_record("peer-http", uris["http"], "2.0.0")
            )
            tx.delete_record(P, PEER_ENTRY, "e-blobs")
            tx.delete_record(P, PEER_LENS_VERIFICATION, "v1")
            tx.delete_record(P, PEER_SCHEMA, "s-legacy")

    run(change())
    (updated,) = _rows(store, datasets, rkey="e-http")
    assert (updated.name, updated.cid, updated.schema_uri, updated.samples) == (
        "peer-http-2",
        "ce2",
        uris["envelope"],
        None,
    )
    assert [s.url for s in _rows(store, shards, dataset_id=entry_id)] == [
        "s3://peer-bucket/sets/peer-000000.tar",
        "s3://peer-bucket/sets/peer-000001.tar",
    ]
    assert not _rows(store, datasets, rkey="e-blobs")
    with store.engine.connect() as conn:  # its shards went with it
        left = conn.execute(select(shards.c.dataset_id).distinct()).scalars().all()
    assert set(left) == {r.id for r in _rows(store, datasets)}
    (label,) = _rows(store, labels)
    assert (label.version, label.dataset_uri, label.cid) == ("2.0.0", uris["http"], "cl2")
    assert not _rows(store, lens_verifications)
    assert {r.rkey for r in _rows(store, schemas)} == {"s-flat", "s-envelope"}

    async def hide() -> None:
        async with store.transaction() as tx:
            tx.set_repo(P, status="takendown")

    run(hide())
    for table in (schemas, datasets, lenses, labels):
        assert {bool(r.hidden) for r in _rows(store, table)} == {True}, table.name

    async def purge() -> None:
        async with store.transaction() as tx:
            tx.purge_repo(P)

    run(purge())
    for table in (schemas, datasets, lenses, labels, lens_verifications, shards):
        assert not _rows(store, table), table.name


def test_a_created_at_longer_than_its_column_is_indexed_at_the_time_of_indexing(
    store: Store,
) -> None:
    """A valid RFC 3339 datetime with many fractional digits (our lexicon allows 64
    characters) used to overflow the 40-character column and fail the whole batch on
    PostgreSQL."""
    long_time = "2026-01-01T00:00:00." + "1" * 30 + "Z"
    rec = dataset_record("long-time", created=long_time)

    async def go() -> None:
        async with store.transaction() as tx:
            tx.upsert_record(A, DATASET, "lt", "c1", rec)
            tx.upsert_record(
                P, PEER_LABEL, "lt", "c2", peer.label_record("x", "at://a/b/c", created=long_time)
            )

    run(go())
    (row,) = _rows(store, datasets, rkey="lt")
    assert row.created_at is not None and len(row.created_at) <= 40
    assert row.family == "io.atdata"


def test_families_version_apart(store: Store) -> None:
    """Our dataset and a peer entry of the same author and name are not versions of one
    another: each is the newest of its family. Peer entries of one name version among
    themselves (no version field: the newest createdAt wins)."""

    async def go() -> None:
        async with store.transaction() as tx:
            ours = dataset_record("mnist")
            ours["version"] = "2.0.0"
            tx.upsert_record(P, DATASET, "ours", "c1", ours)
            tx.upsert_record(
                P,
                PEER_ENTRY,
                "old",
                "c2",
                peer.entry_record("mnist", "at://s", created="2026-01-01T00:00:00+00:00"),
            )
            tx.upsert_record(
                P,
                PEER_ENTRY,
                "new",
                "c3",
                peer.entry_record("mnist", "at://s", created="2026-02-01T00:00:00+00:00"),
            )

    run(go())
    assert {r.rkey: bool(r.newest) for r in _rows(store, datasets)} == {
        "ours": True,
        "old": False,
        "new": True,
    }

    async def drop() -> None:
        async with store.transaction() as tx:
            tx.delete_record(P, PEER_ENTRY, "new")

    run(drop())
    assert {r.rkey: bool(r.newest) for r in _rows(store, datasets)} == {"ours": True, "old": True}
