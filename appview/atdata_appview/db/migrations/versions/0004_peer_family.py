"""The peer network's records: ``family`` on schemas/datasets/lenses, ``labels`` and
``lens_verifications`` (``science.alt.dataset.*`` records indexed next to ours).

Rows indexed before this revision are all ours: the column's server default says so.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

FAMILY_TABLES = ("schemas", "datasets", "lenses")


def _record_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("uri", sa.String(512), nullable=False, unique=True),
        sa.Column("did", sa.String(255), nullable=False),
        sa.Column("rkey", sa.String(512), nullable=False),
        sa.Column("cid", sa.String(128), nullable=False),
    ]


def _tail_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("created_at", sa.String(40)),
        sa.Column("indexed_at", sa.String(40)),
        sa.Column("hidden", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("record", sa.JSON, nullable=False),
    ]


def upgrade() -> None:
    for table in FAMILY_TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(
                sa.Column("family", sa.String(32), nullable=False, server_default="io.atdata")
            )
    op.create_table(
        "labels",
        *_record_columns(),
        sa.Column("name", sa.String(512)),
        sa.Column("version", sa.String(128)),
        sa.Column("dataset_uri", sa.String(512)),
        sa.Column("description", sa.Text),
        *_tail_columns(),
    )
    op.create_index("ix_labels_did", "labels", ["did"])
    op.create_index("ix_labels_dataset_uri", "labels", ["dataset_uri"])
    op.create_index("ix_labels_did_name_created", "labels", ["did", "name", "created_at"])
    op.create_table(
        "lens_verifications",
        *_record_columns(),
        sa.Column("lens_uri", sa.String(512)),
        sa.Column("lens_cid", sa.String(128)),
        sa.Column("method", sa.String(64)),
        *_tail_columns(),
    )
    op.create_index("ix_lens_verifications_did", "lens_verifications", ["did"])
    op.create_index("ix_lens_verifications_lens_uri", "lens_verifications", ["lens_uri"])


def downgrade() -> None:
    op.drop_table("lens_verifications")
    op.drop_table("labels")
    for table in FAMILY_TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("family")
