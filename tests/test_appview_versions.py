"""Dataset versions in the index: one newest record per (author, name), kept at write time;
search collapses to it (with the number of versions) unless allVersions; getDataset lists them.
On SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from _fixtures.appview_index import DATASET, dataset_record, run
from atdata_appview.db import SearchParams, Store, migrate, search_datasets
from atdata_appview.db import queries as q
from atdata_appview.db.models import datasets
from sqlalchemy import select, text

A = "did:plc:alice"
B = "did:plc:bob"


def versioned(name: str, version: str | None, created: str, **kw: Any) -> dict[str, Any]:
    rec = dataset_record(name, created=created, **kw)
    if version is not None:
        rec["version"] = version
    return rec


def uri(did: str, rkey: str) -> str:
    return f"at://{did}/{DATASET}/{rkey}"


def search(store: Store, **kw: Any) -> list[dict[str, Any]]:
    return list(run(store.read(search_datasets, SearchParams(**kw))).datasets)


def newest_flags(store: Store) -> dict[str, bool]:
    with store.engine.connect() as conn:
        return {r.uri: bool(r.newest) for r in conn.execute(select(datasets))}


def test_out_of_order_versions_keep_the_highest_as_newest(store: Store) -> None:
    async def seed() -> None:
        async with store.transaction() as tx:
            tx.set_repo(A, handle="alice.test")
            tx.upsert_record(
                A, DATASET, "v1", "c1", versioned("mnist", "1.0.0", "2026-01-01T00:00:00Z")
            )
            tx.upsert_record(
                A, DATASET, "v3", "c3", versioned("mnist", "1.2.0", "2026-01-03T00:00:00Z")
            )
        async with store.transaction() as tx:  # published later, lower version (allow_older)
            tx.upsert_record(
                A,
                DATASET,
                "v2",
                "c2",
                versioned("mnist", "1.1.0", "2026-01-05T00:00:00Z", samples=77),
            )
            tx.upsert_record(
                B, DATASET, "b1", "cb", versioned("mnist", "0.1.0", "2026-01-02T00:00:00Z")
            )

    run(seed())
    assert newest_flags(store) == {
        uri(A, "v1"): False, uri(A, "v2"): False, uri(A, "v3"): True, uri(B, "b1"): True,
    }  # fmt: skip
    got = search(store, q="mnist")
    assert sorted((d["uri"], d["version"], d["versions"]) for d in got) == [
        (uri(A, "v3"), "1.2.0", 3),
        (uri(B, "b1"), "0.1.0", 1),
    ]
    every = search(store, q="mnist", all_versions=True)
    assert {d["uri"] for d in every} == {uri(A, r) for r in ("v1", "v2", "v3")} | {uri(B, "b1")}
    assert {d["uri"]: d["newest"] for d in every}[uri(A, "v2")] is False
    # browse (no text), author + exact name: the versions of one dataset
    assert [d["uri"] for d in search(store, sort="created")] == [uri(A, "v3"), uri(B, "b1")]
    mine = search(store, author=A, name="mnist", all_versions=True, sort="created")
    assert [d["version"] for d in mine] == ["1.1.0", "1.2.0", "1.0.0"]

    view = run(store.read(q.get_dataset, uri(A, "v2")))
    assert view["version"] == "1.1.0" and view["newest"] is False
    assert [(v["version"], v["newest"]) for v in view["versions"]] == [
        ("1.2.0", True), ("1.1.0", False), ("1.0.0", False),
    ]  # fmt: skip
    assert view["versions"][1] == {
        "uri": uri(A, "v2"), "cid": "c2", "version": "1.1.0",
        "createdAt": "2026-01-05T00:00:00Z", "samples": 77, "newest": False,
    }  # fmt: skip


def test_ties_go_to_the_newest_created_at_and_missing_versions_read_0_0_0(store: Store) -> None:
    async def seed() -> None:
        async with store.transaction() as tx:
            tx.upsert_record(A, DATASET, "old", "c1", versioned("x", None, "2026-01-01T00:00:00Z"))
            tx.upsert_record(
                A, DATASET, "new", "c2", versioned("x", "0.0.0", "2026-03-01T00:00:00Z")
            )
            tx.upsert_record(
                A, DATASET, "bad", "c3", versioned("x", "not-semver", "2026-02-01T00:00:00Z")
            )

    run(seed())
    (only,) = search(store, q="x")
    assert only["uri"] == uri(A, "new") and only["versions"] == 3
    assert run(store.read(q.get_dataset, uri(A, "old")))["version"] == "0.0.0"


def test_deleting_or_renaming_the_newest_promotes_the_next(store: Store) -> None:
    async def seed() -> None:
        async with store.transaction() as tx:
            tx.upsert_record(
                A, DATASET, "a", "c1", versioned("cifar", "1.0.0", "2026-01-01T00:00:00Z")
            )
            tx.upsert_record(
                A, DATASET, "b", "c2", versioned("cifar", "2.0.0", "2026-01-02T00:00:00Z")
            )
            tx.upsert_record(
                A, DATASET, "c", "c3", versioned("cifar", "3.0.0", "2026-01-03T00:00:00Z")
            )

    run(seed())

    async def delete_newest() -> None:
        async with store.transaction() as tx:
            tx.delete_record(A, DATASET, "c")

    run(delete_newest())
    assert [d["uri"] for d in search(store, q="cifar")] == [uri(A, "b")]

    async def rename() -> None:  # the record updated under another name leaves "cifar"
        async with store.transaction() as tx:
            tx.upsert_record(
                A, DATASET, "b", "c4", versioned("other", "2.0.0", "2026-01-02T00:00:00Z")
            )

    run(rename())
    assert [d["uri"] for d in search(store, q="cifar")] == [uri(A, "a")]
    assert newest_flags(store) == {uri(A, "a"): True, uri(A, "b"): True}


def test_migration_marks_the_newest_of_records_indexed_before_versions(store: Store) -> None:
    """Upgrading an index from 0001: versions come from the stored records, one newest."""

    async def seed() -> None:
        async with store.transaction() as tx:
            tx.upsert_record(A, DATASET, "a", "c1", versioned("m", "2.0.0", "2026-01-01T00:00:00Z"))
            tx.upsert_record(A, DATASET, "b", "c2", versioned("m", "1.0.0", "2026-01-02T00:00:00Z"))

    run(seed())
    with store.engine.begin() as conn:  # back to what revision 0001 left (0003 made lineage,
        # 0004 the peer family's tables and columns)
        conn.execute(text("DROP TABLE labels"))
        conn.execute(text("DROP TABLE lens_verifications"))
        for table in ("schemas", "datasets", "lenses"):
            conn.execute(text(f"ALTER TABLE {table} DROP COLUMN family"))
        conn.execute(text("DROP TABLE dataset_lineage"))
        conn.execute(text("DROP INDEX ix_datasets_did_name"))
        conn.execute(text("ALTER TABLE datasets DROP COLUMN newest"))
        conn.execute(text("ALTER TABLE datasets DROP COLUMN version"))
        conn.execute(text("UPDATE alembic_version SET version_num = '0001'"))
    migrate(store.engine)
    assert newest_flags(store) == {uri(A, "a"): True, uri(A, "b"): False}
    with store.engine.connect() as conn:
        assert (
            conn.execute(text("SELECT version FROM datasets WHERE rkey = 'b'")).scalar() == "1.0.0"
        )
