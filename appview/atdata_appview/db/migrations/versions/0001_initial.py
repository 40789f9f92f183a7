"""Initial index: repos, schemas, datasets (+ records, tags, shards, full text), lenses, cursors.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _record_columns() -> list[sa.Column[Any]]:
    """Columns every record table shares (identity, content hash, visibility, raw JSON)."""
    return [
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("uri", sa.String(512), nullable=False, unique=True),
        sa.Column("did", sa.String(255), nullable=False, index=True),
        sa.Column("rkey", sa.String(512), nullable=False),
        sa.Column("cid", sa.String(128), nullable=False),
    ]


def _tail_columns(*, record: bool = True) -> list[sa.Column[Any]]:
    cols: list[sa.Column[Any]] = [
        sa.Column("created_at", sa.String(40)),
        sa.Column("indexed_at", sa.String(40)),
        sa.Column("hidden", sa.Boolean, nullable=False, server_default=sa.false()),
    ]
    return [*cols, sa.Column("record", sa.JSON, nullable=False)] if record else cols


#: The full-text GIN index also holds the 1,024-id block of each row (btree_gin): a search
#: for the newest matches probes id ranges, and the index intersects words and range itself
#: (see PG_ID_BLOCK_BITS in db/search.py).
SEARCH_INDEX_DDL = "CREATE INDEX ix_datasets_search ON datasets USING gin (search, (id >> 10))"
PLAIN_SEARCH_INDEX_DDL = "CREATE INDEX ix_datasets_search ON datasets USING gin (search)"


def _btree_gin() -> bool:
    """Create the btree_gin extension (a trusted contrib module) if the server ships it and
    we may; without it the index holds the words only (correct, slower range probes)."""
    bind = op.get_bind()
    available = bind.exec_driver_sql(
        "SELECT 1 FROM pg_available_extensions WHERE name = 'btree_gin'"
    ).first()
    if available is None:
        return False
    try:
        with bind.begin_nested():
            bind.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS btree_gin")
    except sa.exc.DBAPIError:
        return False
    return True


def upgrade() -> None:
    op.create_table(
        "repos",
        sa.Column("did", sa.String(255), primary_key=True),
        sa.Column("handle", sa.String(255), index=True),
        sa.Column("pds", sa.String(512)),
        sa.Column("rev", sa.String(64)),
        sa.Column("status", sa.String(32), nullable=False, server_default="active"),
        sa.Column("resync", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("updated_at", sa.String(40)),
    )
    op.create_table(
        "schemas",
        *_record_columns(),
        sa.Column("name", sa.String(512)),
        sa.Column("version", sa.String(64)),
        sa.Column("description", sa.Text),
        sa.Column("field_names", sa.JSON),
        *_tail_columns(),
    )
    op.create_index("ix_schemas_name_version", "schemas", ["name", "version"])
    op.create_table(
        "datasets",
        *_record_columns(),
        sa.Column("name", sa.String(512)),
        sa.Column("description", sa.Text),
        sa.Column("tags", sa.JSON),
        sa.Column("license", sa.String(128)),
        sa.Column("samples", sa.BigInteger),
        sa.Column("bytes", sa.BigInteger),
        sa.Column("schema_uri", sa.String(512), index=True),
        sa.Column("schema_cid", sa.String(128)),
        *_tail_columns(record=False),
    )
    op.create_index("ix_datasets_browse_created", "datasets", ["hidden", "created_at", "id"])
    op.create_index("ix_datasets_browse_samples", "datasets", ["hidden", "samples", "id"])
    op.create_index("ix_datasets_license", "datasets", ["license"])
    op.create_table(
        "dataset_records",
        sa.Column(
            "dataset_id",
            sa.Integer,
            sa.ForeignKey("datasets.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("record", sa.JSON, nullable=False),
    )
    op.create_table(
        "dataset_tags",
        sa.Column(
            "dataset_id",
            sa.Integer,
            sa.ForeignKey("datasets.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("tag", sa.String(128), primary_key=True),
        sa.Column("hidden", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_at", sa.String(40)),
        sa.Column("samples", sa.BigInteger),
    )
    op.create_index(
        "ix_dataset_tags_created", "dataset_tags", ["tag", "hidden", "created_at", "dataset_id"]
    )
    op.create_index(
        "ix_dataset_tags_samples", "dataset_tags", ["tag", "hidden", "samples", "dataset_id"]
    )
    op.create_table(
        "shards",
        sa.Column(
            "dataset_id",
            sa.Integer,
            sa.ForeignKey("datasets.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("url", sa.Text),
        sa.Column("blob_cid", sa.String(128)),
        sa.Column("size", sa.BigInteger),
        sa.Column("sha256", sa.String(64)),
        sa.Column("samples", sa.BigInteger),
        sa.Column("detail", sa.JSON),
    )
    op.create_table(
        "lenses",
        *_record_columns(),
        sa.Column("name", sa.String(512)),
        sa.Column("description", sa.Text),
        sa.Column("source_schema", sa.String(512), index=True),
        sa.Column("target_schema", sa.String(512), index=True),
        *_tail_columns(),
    )
    op.create_table(
        "cursors",
        sa.Column("host", sa.String(512), primary_key=True),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.String(40)),
    )

    # Full text over name, description, tags and schema field names.
    if op.get_bind().dialect.name == "postgresql":
        op.add_column("datasets", sa.Column("search", sa.dialects.postgresql.TSVECTOR))
        op.execute(SEARCH_INDEX_DDL if _btree_gin() else PLAIN_SEARCH_INDEX_DDL)
    else:
        op.execute(
            "CREATE VIRTUAL TABLE datasets_fts USING fts5("
            "name, description, tags, fields, tokenize = 'porter unicode61')"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        op.execute("DROP TABLE IF EXISTS datasets_fts")
    for table in (
        "cursors",
        "lenses",
        "shards",
        "dataset_tags",
        "dataset_records",
        "datasets",
        "schemas",
        "repos",
    ):
        op.drop_table(table)
