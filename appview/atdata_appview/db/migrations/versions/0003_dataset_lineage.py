"""Dataset lineage: ``dataset_lineage`` holds one row per ``derivedFrom`` entry.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dataset_lineage",
        sa.Column(
            "dataset_id",
            sa.Integer,
            sa.ForeignKey("datasets.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("source_uri", sa.String(512), nullable=False),
        sa.Column("source_cid", sa.String(128)),
        sa.Column("relation", sa.String(64)),
        sa.Column("lens_uri", sa.String(512)),
    )
    op.create_index("ix_dataset_lineage_source_uri", "dataset_lineage", ["source_uri"])
    _backfill()


def _backfill() -> None:
    """Edges of records indexed before this revision (only records that mention them)."""
    from atdata_appview.db.extract import lineage_edges

    bind = op.get_bind()
    rows = bind.execute(
        sa.text(
            "SELECT dataset_id, record FROM dataset_records"
            " WHERE CAST(record AS TEXT) LIKE '%derivedFrom%'"
        )
    )
    edges: list[dict[str, Any]] = []
    for dataset_id, raw in rows:
        record = json.loads(raw) if isinstance(raw, str) else raw
        if not isinstance(record, dict):
            continue
        for e in lineage_edges(record):
            edges.append(
                {
                    "dataset_id": dataset_id,
                    "position": e.position,
                    "source_uri": e.source_uri,
                    "source_cid": e.source_cid,
                    "relation": e.relation,
                    "lens_uri": e.lens_uri,
                }
            )
    if edges:
        bind.execute(
            sa.text(
                "INSERT INTO dataset_lineage"
                " (dataset_id, position, source_uri, source_cid, relation, lens_uri)"
                " VALUES (:dataset_id, :position, :source_uri, :source_cid, :relation, :lens_uri)"
            ),
            edges,
        )


def downgrade() -> None:
    op.drop_index("ix_dataset_lineage_source_uri", "dataset_lineage")
    op.drop_table("dataset_lineage")
