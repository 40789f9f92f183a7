"""The index's side of the peer family (``science.alt.dataset.*``): migration 0004 and the
rows its records become. On SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from _fixtures.appview_index import lens_record, schema_record
from atdata_appview.db import make_engine, migrate
from atdata_appview.db.models import COLLECTION_FAMILY, COLLECTION_TABLES
from sqlalchemy import inspect, text

A = "did:plc:alice"


def _insert(conn: Any, table: str, rkey: str, **cols: Any) -> None:
    values = {"uri": f"at://{A}/x/{rkey}", "did": A, "rkey": rkey, "cid": f"c{rkey}", **cols}
    names = ", ".join(values)
    params = ", ".join(f":{k}" for k in values)
    conn.execute(text(f"INSERT INTO {table} ({names}) VALUES ({params})"), values)


def test_migration_0004_marks_existing_rows_ours_and_adds_label_tables(index_url: str) -> None:
    """An index from 0003 keeps its rows, all of family io.atdata; the new tables exist
    with the lookups they need indexed; downgrading to 0003 and back works."""
    import json

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
    for own, peer in (("schema", "schema"), ("dataset", "entry"), ("lens", "lens")):
        assert (
            COLLECTION_TABLES[f"io.atdata.{own}"]
            is COLLECTION_TABLES[f"science.alt.dataset.{peer}"]
        )
