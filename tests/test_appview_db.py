"""The index's write side: migrations, the Store transaction API ingest uses, visibility."""

from __future__ import annotations

import pytest
from _fixtures.appview_index import (
    DATASET,
    LENS,
    SCHEMA,
    dataset_record,
    lens_record,
    run,
    schema_record,
)
from alembic.config import Config
from alembic.script import ScriptDirectory
from atdata_appview.db import BadCursor, SearchParams, Store, migrate, search_datasets
from atdata_appview.db import queries as q
from atdata_appview.db.engine import MIGRATIONS
from atdata_appview.db.extract import dataset_row, lens_row, schema_row
from atdata_appview.db.models import dataset_tags, datasets, shards
from atdata_appview.db.search import decode_cursor, encode_cursor
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, inspect, select, text

_SCRIPTS = Config()
_SCRIPTS.set_main_option("script_location", str(MIGRATIONS))
#: The newest migration: where `migrate` leaves every index.
HEAD = ScriptDirectory.from_config(_SCRIPTS).get_current_head()

A = "did:plc:alice"
B = "did:plc:bob"
SCHEMA_URI = f"at://{A}/{SCHEMA}/img"


def names(store: Store, **params: object) -> list[str]:
    page = run(store.read(search_datasets, SearchParams(**params)))
    return [d["name"] for d in page.datasets]


async def _seed(store: Store) -> None:
    async with store.transaction() as tx:
        tx.set_repo(A, handle="alice.test", pds="http://pds1")
        tx.set_repo(B, handle="bob.test", pds="http://pds2")
        tx.upsert_record(
            A,
            DATASET,
            "d1",
            "c1",
            dataset_record("mnist", tags=("vision",), schema=SCHEMA_URI),
            "r1",
        )
        tx.upsert_record(
            B, DATASET, "d2", "c2", dataset_record("librispeech", tags=("audio",)), "r1"
        )
        tx.save_cursor("ws://pds1", 7)


def test_migrations_create_the_schema_and_are_idempotent(store: Store) -> None:
    tables = set(inspect(store.engine).get_table_names())
    assert {"repos", "schemas", "datasets", "dataset_tags", "shards", "lenses", "cursors"} <= tables
    migrate(store.engine)  # a second run at head changes nothing
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == HEAD
    if store.dialect == "postgresql":
        cols = {c["name"] for c in inspect(store.engine).get_columns("datasets")}
        assert "search" in cols
    else:
        assert "datasets_fts" in tables


def test_upsert_indexes_columns_tags_shards_and_cursor(store: Store) -> None:
    run(_seed(store))
    assert run(store.load_cursor("ws://pds1")) == 7
    assert run(store.load_cursor("ws://elsewhere")) is None
    got = run(store.read(q.get_dataset, f"at://{A}/{DATASET}/d1"))
    assert got["name"] == "mnist" and got["handle"] == "alice.test"
    assert got["samples"] == 10 and got["bytes"] == 1000 and got["tags"] == ["vision"]
    assert got["shards"][0]["url"] == "https://data.example/mnist-000000.tar"
    assert got["record"]["totals"] == {"samples": 10, "bytes": 1000, "shards": 1}
    repo = run(store.get_repo(A))
    assert repo.rev == "r1" and repo.handle == "alice.test" and repo.active


def test_update_replaces_tags_shards_and_full_text(store: Store) -> None:
    run(_seed(store))

    async def update() -> None:
        async with store.transaction() as tx:
            rec = dataset_record("fashion", tags=("clothes",), shards=3, samples=30)
            tx.upsert_record(A, DATASET, "d1", "c1b", rec, "r2")

    run(update())
    assert names(store, q="mnist") == []
    assert names(store, q="fashion") == ["fashion"]
    assert names(store, tags=["vision"]) == []
    assert names(store, tags=["clothes"]) == ["fashion"]
    with store.engine.connect() as conn:
        ds_id = conn.execute(select(datasets.c.id).where(datasets.c.name == "fashion")).scalar()
        assert conn.execute(select(func.count()).where(shards.c.dataset_id == ds_id)).scalar() == 3
        assert conn.execute(select(func.count()).select_from(datasets)).scalar() == 2
    assert run(store.get_repo(A)).rev == "r2"


def test_delete_removes_record_everywhere(store: Store) -> None:
    run(_seed(store))

    async def delete() -> None:
        async with store.transaction() as tx:
            tx.delete_record(A, DATASET, "d1", "r3")
            tx.delete_record(A, DATASET, "never-existed")

    run(delete())
    assert names(store, q="mnist") == []
    assert run(store.read(q.get_dataset, f"at://{A}/{DATASET}/d1")) is None
    with store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(shards)).scalar() == 1
        assert conn.execute(select(func.count()).select_from(dataset_tags)).scalar() == 1


def test_failed_transaction_writes_nothing_not_even_its_cursor(store: Store) -> None:
    run(_seed(store))

    async def boom() -> None:
        async with store.transaction() as tx:
            tx.upsert_record(A, DATASET, "d9", "c9", dataset_record("lost"), "r9")
            tx.save_cursor("ws://pds1", 99)
            raise RuntimeError("crash before commit")

    with pytest.raises(RuntimeError):
        run(boom())
    assert run(store.load_cursor("ws://pds1")) == 7
    assert names(store, q="lost") == []
    assert run(store.get_repo(A)).rev == "r1"


def test_cursor_commits_with_its_writes_across_store_restarts(index_url: str) -> None:
    first = Store(index_url)

    async def write() -> None:
        async with first.transaction() as tx:
            for i in range(50):
                tx.upsert_record(A, DATASET, f"k{i}", "c", dataset_record(f"set{i}"), f"r{i:03d}")
            tx.save_cursor("ws://pds1", 50)

    run(write())
    first.close()
    second = Store(index_url)
    try:
        assert run(second.load_cursor("ws://pds1")) == 50
        assert run(second.load_cursors()) == {"ws://pds1": 50}
        assert len(names(second, limit=100)) == 50
        assert run(second.get_repo(A)).rev == "r049"
    finally:
        second.close()


def test_hidden_repos_vanish_from_every_query_and_come_back(store: Store) -> None:
    run(_seed(store))

    async def setup() -> None:
        async with store.transaction() as tx:
            tx.upsert_record(A, SCHEMA, "img", "cs", schema_record("Img", fields=("pixels",)))
            tx.upsert_record(A, LENS, "l1", "cl", lens_record("l", SCHEMA_URI, "at://x/s/t"))

    run(setup())

    def visible() -> tuple[list[str], object, object, object]:
        return (
            names(store, limit=100),
            run(store.read(q.get_dataset, f"at://{A}/{DATASET}/d1")),
            run(store.read(q.get_schema, SCHEMA_URI)),
            run(store.read(q.list_lenses))["lenses"],
        )

    async def status(value: str) -> None:
        async with store.transaction() as tx:
            tx.set_repo(A, status=value)
            assert tx.get_repo(A).status == value  # the transaction sees its own change

    for hiding in ("deactivated", "takendown", "suspended"):
        run(status(hiding))
        listed, ds, schema, lenses = visible()
        assert listed == ["librispeech"] and ds is None and schema is None and lenses == []
        assert names(store, tags=["vision"]) == []
        page = run(store.read(search_datasets, SearchParams()))
        assert "vision" not in page.facets["tags"]
        run(status("active"))
        listed, ds, schema, lenses = visible()
        assert sorted(listed) == ["librispeech", "mnist"] and ds is not None
        assert schema is not None and len(lenses) == 1
    counts = run(store.read(q.counts))
    assert counts["datasets"] == 2 and counts["hiddenRepos"] == 0


def test_records_of_an_already_hidden_repo_are_indexed_hidden(store: Store) -> None:
    async def go() -> None:
        async with store.transaction() as tx:
            tx.set_repo(A, status="takendown")
            tx.upsert_record(A, DATASET, "d1", "c", dataset_record("secret"), "r1")

    run(go())
    assert names(store, q="secret") == []
    assert run(store.get_repo(A)).status == "takendown"


def test_purge_deletes_the_repo_and_all_its_records(store: Store) -> None:
    run(_seed(store))

    async def purge() -> None:
        async with store.transaction() as tx:
            tx.upsert_record(A, SCHEMA, "img", "cs", schema_record("Img"))
            tx.purge_repo(A)
            assert tx.get_repo(A) is None

    run(purge())
    assert run(store.get_repo(A)) is None
    assert names(store, limit=100) == ["librispeech"]
    assert run(store.read(q.counts))["schemas"] == 0
    with store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(shards)).scalar() == 1


def test_schema_field_names_are_searchable_whichever_record_comes_first(store: Store) -> None:
    async def dataset_first() -> None:
        async with store.transaction() as tx:
            tx.upsert_record(A, DATASET, "d1", "c", dataset_record("digits", schema=SCHEMA_URI))
        async with store.transaction() as tx:
            tx.upsert_record(A, SCHEMA, "img", "cs", schema_record("Img", fields=("grayscale",)))

    run(dataset_first())
    assert names(store, q="grayscale") == ["digits"]

    async def schema_changes() -> None:
        async with store.transaction() as tx:
            tx.upsert_record(A, SCHEMA, "img", "cs2", schema_record("Img", fields=("rgb",)))

    run(schema_changes())
    assert names(store, q="grayscale") == []
    assert names(store, q="rgb") == ["digits"]


def test_unindexed_collections_are_ignored(store: Store) -> None:
    async def go() -> None:
        async with store.transaction() as tx:
            tx.upsert_record(A, "app.bsky.feed.post", "p1", "c", {"text": "hi"}, "r1")
            tx.delete_record(A, "app.bsky.feed.post", "p1")
            assert len(tx) == 0

    run(go())
    assert run(store.read(q.counts))["repos"] == 0


def test_get_repo_reads_through_cache_and_database(store: Store) -> None:
    async def go() -> None:
        async with store.transaction() as tx:
            assert tx.get_repo(A) is None
            tx.set_repo(A, handle="alice.test")
            tx.set_repo(A, pds="http://pds1")  # only the given fields change
            assert tx.get_repo(A).handle == "alice.test"

    run(go())
    fresh = Store(store.url)  # empty cache: reads the database
    try:
        info = run(fresh.get_repo(A))
        assert (info.handle, info.pds, info.status) == ("alice.test", "http://pds1", "active")
    finally:
        fresh.close()


def test_warmed_store_never_reads_the_database_to_look_up_a_repo(store: Store) -> None:
    """Ingest's warm-up: after `warm()` every repo lookup (a transaction's included, which
    runs on the event loop) is answered from memory, for known and unknown repos alike."""
    run(_seed(store))
    warm = Store(store.url)
    try:
        infos = run(warm.warm())
        assert {(i.did, i.handle, i.rev) for i in infos} == {
            (A, "alice.test", "r1"),
            (B, "bob.test", "r1"),
        }

        def no_reads(*args: object, **kwargs: object) -> object:
            raise AssertionError("a repo lookup read the database")

        warm.read_sync = no_reads
        warm.read = no_reads
        new = "did:plc:newcomer0000000000000000"

        async def go() -> None:
            async with warm.transaction() as tx:
                assert tx.get_repo(new) is None
                tx.upsert_record(new, DATASET, "n1", "cn", dataset_record("fresh"), "r5")
                tx.upsert_record(A, DATASET, "d9", "c9", dataset_record("more"), "r2")
                tx.purge_repo(B)
            assert (await warm.get_repo(new)).rev == "r5"
            assert (await warm.get_repo(A)).handle == "alice.test"
            assert await warm.get_repo(B) is None

        run(go())
    finally:
        warm.close()
    assert set(names(store, limit=10)) == {"mnist", "fresh", "more"}


def test_record_extraction_follows_the_lexicons() -> None:
    rec = dataset_record("x", tags=("Vision", " vision ", "Audio"), samples=7, shards=1)
    rec["storage"] = {"$type": "io.atdata.dataset#s3Storage", "bucket": "bkt"}
    rec["shards"] = [{"key": "p/x-0.tar", "samples": 7, "bytes": 5, "sha256": "0" * 64}]
    row = dataset_row(rec)
    assert row.tags == ["audio", "vision"] and row.samples == 7 and row.bytes == 1000
    assert row.shards[0].url == "s3://bkt/p/x-0.tar" and row.shards[0].size == 5
    blob = {
        "$type": "blob",
        "ref": {"$link": "bafkblob"},
        "mimeType": "application/x-tar",
        "size": 9,
    }
    rec["shards"] = [{"blob": blob, "samples": 1, "bytes": 9, "sha256": "0" * 64}]
    assert dataset_row(rec).shards[0].blob_cid == "bafkblob"
    del rec["totals"]
    assert dataset_row(rec).samples == 1  # summed from the shards
    assert schema_row(schema_record("S", fields=("a", "b"))).field_names == ["a", "b"]
    lr = lens_row(lens_record("l", "at://a/s/1", "at://a/s/2"))
    assert (lr.source_schema, lr.target_schema) == ("at://a/s/1", "at://a/s/2")


_INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
#: What each sort order's cursor carries (anything else is refused before the database).
_CURSOR_KEYS = {
    "created": st.text(max_size=64).filter(lambda s: "\x00" not in s),
    "samples": _INT64,
    "relevance": st.lists(_INT64, min_size=2, max_size=2),
}


@given(data=st.data(), row_id=st.integers(min_value=0, max_value=2**62))
def test_cursor_round_trips(data: st.DataObject, row_id: int) -> None:
    sort = data.draw(st.sampled_from(sorted(_CURSOR_KEYS)))
    key = data.draw(_CURSOR_KEYS[sort])
    assert decode_cursor(encode_cursor(sort, key, row_id), sort) == (key, row_id)
    other = "created" if sort != "created" else "samples"
    with pytest.raises(BadCursor):
        decode_cursor(encode_cursor(sort, key, row_id), other)


@given(
    sort=st.sampled_from(sorted(_CURSOR_KEYS)),
    key=st.one_of(st.none(), st.booleans(), st.floats(), st.dictionaries(st.text(), st.text())),
    row_id=st.one_of(st.booleans(), st.integers(min_value=2**63), st.text(), st.none()),
)
def test_cursors_with_keys_of_the_wrong_type_are_bad_cursors(
    sort: str, key: object, row_id: object
) -> None:
    with pytest.raises(BadCursor):
        decode_cursor(encode_cursor(sort, key, row_id), sort)


@given(st.text(max_size=64))
def test_garbage_cursors_raise_bad_cursor_only(raw: str) -> None:
    try:
        _key, row_id = decode_cursor(raw, "created")
    except BadCursor:
        return
    assert isinstance(row_id, int)  # only a well-formed cursor of this sort decodes
