"""The Store's batched writer: ops in one transaction leave exactly the index that the same
ops leave one transaction each.

The writer collects the child rows of new datasets (record JSON, tags, shards, full-text) and
writes them with one statement per batch; this checks that no order of creates, updates,
deletes, schema changes, status changes and purges within a batch can tell the difference.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from _fixtures.appview_index import (
    DATASET,
    LENS,
    SCHEMA,
    dataset_record,
    lens_record,
    schema_record,
)
from atdata_appview.db import Store
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

DIDS = ("did:plc:alice", "did:plc:bob")
SCHEMA_URIS = tuple(f"at://{DIDS[0]}/{SCHEMA}/s{i}" for i in (1, 2))
WORDS = ("mnist", "speech", "galaxy", "retina")

_did = st.sampled_from(DIDS)
_op = st.one_of(
    st.tuples(
        st.just("dataset"),
        _did,
        st.sampled_from(("d1", "d2")),
        st.sampled_from(WORDS),
        st.lists(st.sampled_from(("vision", "audio", "Big Data", "x")), max_size=3),
        st.integers(0, 3),
        st.sampled_from(SCHEMA_URIS),
    ),
    st.tuples(
        st.just("delete"),
        _did,
        st.sampled_from(((DATASET, "d1"), (DATASET, "d2"), (SCHEMA, "s1"), (LENS, "l1"))),
    ),
    st.tuples(
        st.just("schema"),
        st.sampled_from(("s1", "s2")),
        st.lists(st.sampled_from(("pixels", "label", "rgb")), min_size=1, max_size=2, unique=True),
    ),
    st.tuples(st.just("lens"), _did, st.sampled_from(("l1", "l2"))),
    st.tuples(st.just("status"), _did, st.sampled_from(("active", "deactivated", "takendown"))),
    st.tuples(st.just("purge"), _did),
)

_NEW_D1 = ("dataset", DIDS[0], "d1", "mnist", ["vision", "x"], 1, SCHEMA_URIS[0])


def _apply(tx: Any, op: tuple[Any, ...], rev: str) -> None:
    kind = op[0]
    if kind == "dataset":
        _, did, rkey, name, tags, nshards, schema = op
        rec = dataset_record(
            name, tags=tuple(tags), shards=nshards, samples=nshards * 5, schema=schema
        )
        tx.upsert_record(did, DATASET, rkey, f"c-{rev}", rec, rev)
    elif kind == "delete":
        tx.delete_record(op[1], *op[2], rev)
    elif kind == "schema":
        tx.upsert_record(
            DIDS[0], SCHEMA, op[1], f"c-{rev}", schema_record("S", fields=tuple(op[2])), rev
        )
    elif kind == "lens":
        tx.upsert_record(op[1], LENS, op[2], f"c-{rev}", lens_record("l", *SCHEMA_URIS), rev)
    elif kind == "status":
        tx.set_repo(op[1], status=op[2])
    else:
        tx.purge_repo(op[1])


async def _write(store: Store, ops: list[tuple[Any, ...]], one_batch: bool) -> None:
    revs = [f"r{i:04d}" for i in range(len(ops))]
    if one_batch:
        async with store.transaction() as tx:
            for op, rev in zip(ops, revs, strict=True):
                _apply(tx, op, rev)
            tx.save_cursor("ws://host", len(ops))
        return
    for i, (op, rev) in enumerate(zip(ops, revs, strict=True)):
        async with store.transaction() as tx:
            _apply(tx, op, rev)
            tx.save_cursor("ws://host", i + 1)


def _snapshot(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    """Every indexed row, keyed by URI rather than row id, without write timestamps."""
    queries = {
        "repos": "SELECT did, handle, pds, rev, status, resync FROM repos",
        "datasets": "SELECT uri, did, rkey, cid, name, description, tags, license, samples,"
        " bytes, schema_uri, schema_cid, created_at, hidden FROM datasets",
        "records": "SELECT d.uri, r.record FROM dataset_records r JOIN datasets d ON d.id = r.dataset_id",
        "orphan_records": "SELECT count(*) FROM dataset_records WHERE dataset_id NOT IN (SELECT id FROM datasets)",
        "tags": "SELECT d.uri, t.tag, t.hidden, t.created_at, t.samples FROM dataset_tags t"
        " JOIN datasets d ON d.id = t.dataset_id",
        "orphan_tags": "SELECT count(*) FROM dataset_tags WHERE dataset_id NOT IN (SELECT id FROM datasets)",
        "shards": "SELECT d.uri, s.position, s.url, s.blob_cid, s.size, s.sha256, s.samples, s.detail"
        " FROM shards s JOIN datasets d ON d.id = s.dataset_id",
        "schemas": "SELECT uri, did, cid, name, version, field_names, hidden, record FROM schemas",
        "lenses": "SELECT uri, did, cid, source_schema, target_schema, hidden, record FROM lenses",
        "cursors": "SELECT host, seq FROM cursors",
    }
    if store.dialect == "postgresql":
        queries["fts"] = "SELECT uri, search::text FROM datasets"
    else:
        queries["fts"] = (
            "SELECT d.uri, f.name, f.description, f.tags, f.fields FROM datasets_fts f"
            " LEFT JOIN datasets d ON d.id = f.rowid"
        )
    out = {}
    with store.engine.connect() as conn:
        for name, sql in queries.items():
            out[name] = sorted(tuple(str(v) for v in row) for row in conn.execute(text(sql)))
    return out


def _wipe(store: Store) -> None:
    tables = [
        "dataset_tags",
        "shards",
        "dataset_records",
        "datasets",
        "schemas",
        "lenses",
        "repos",
        "cursors",
    ]
    if store.dialect != "postgresql":
        tables.append("datasets_fts")
    with store.engine.begin() as conn:
        for table in tables:
            conn.execute(text(f"DELETE FROM {table}"))
    store._repo_cache.clear()


@pytest.fixture
def two_stores(
    index_url: str, request: pytest.FixtureRequest, tmp_path: Any
) -> Iterator[tuple[Store, Store]]:
    """Two empty indexes on the same backend."""
    if index_url.startswith("sqlite"):
        second = f"sqlite:///{tmp_path / 'second.sqlite'}"
        stores = (Store(index_url), Store(second))
        yield stores
        for s in stores:
            s.close()
        return
    from _fixtures.services import fresh_database

    with fresh_database(request.getfixturevalue("postgres_cluster")) as second:
        stores = (Store(index_url), Store(second))
        yield stores
        for s in stores:
            s.close()


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=st.lists(_op, min_size=1, max_size=14))
@example(ops=[_NEW_D1, ("dataset", DIDS[0], "d1", "speech", ["audio"], 2, SCHEMA_URIS[1])])
@example(ops=[_NEW_D1, ("delete", DIDS[0], (DATASET, "d1")), _NEW_D1])
@example(ops=[_NEW_D1, ("status", DIDS[0], "deactivated"), ("status", DIDS[0], "active")])
@example(ops=[_NEW_D1, ("schema", "s1", ["rgb"]), ("delete", DIDS[0], (SCHEMA, "s1")), _NEW_D1])
@example(ops=[("schema", "s1", ["pixels"]), ("purge", DIDS[0]), _NEW_D1, ("purge", DIDS[0])])
def test_one_batch_equals_one_transaction_per_op(
    two_stores: tuple[Store, Store], ops: list[tuple[Any, ...]]
) -> None:
    batched, single = two_stores
    for s in two_stores:
        _wipe(s)
    asyncio.run(_write(batched, ops, one_batch=True))
    asyncio.run(_write(single, ops, one_batch=False))
    assert _snapshot(batched) == _snapshot(single)


def test_a_batch_of_new_datasets_indexes_every_child_row(two_stores: tuple[Store, Store]) -> None:
    """Many new datasets in one batch (the ingest hot path) are all searchable with their tags
    and shards, and a later update in the same batch replaces what the earlier one wrote."""
    store = two_stores[0]

    async def go() -> None:
        async with store.transaction() as tx:
            for i in range(50):
                rec = dataset_record(f"set{i}", tags=("bulk", f"t{i % 3}"), shards=2, samples=4)
                tx.upsert_record(DIDS[i % 2], DATASET, f"d{i}", "c", rec, f"r{i:03d}")
            rec = dataset_record("renamed", tags=("solo",), shards=1, samples=1)
            tx.upsert_record(DIDS[0], DATASET, "d0", "c2", rec, "r999")

    asyncio.run(go())
    snap = _snapshot(store)
    assert len(snap["datasets"]) == 50 and len(snap["records"]) == 50
    assert len(snap["shards"]) == 49 * 2 + 1 and len(snap["fts"]) == 50
    assert len(snap["tags"]) == 49 * 2 + 1
    d0 = f"at://{DIDS[0]}/{DATASET}/d0"
    assert [t[1] for t in snap["tags"] if t[0] == d0] == ["solo"]
