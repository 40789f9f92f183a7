"""Dataset versions: ``datasets.version`` and ``datasets.newest`` (one per did and name).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("datasets") as batch:
        batch.add_column(sa.Column("version", sa.String(128)))
        batch.add_column(sa.Column("newest", sa.Boolean, nullable=False, server_default="1"))
    op.create_index("ix_datasets_did_name", "datasets", ["did", "name"])
    _backfill()


def _backfill() -> None:
    """Versions of records indexed before this revision, and the newest of each name."""
    from atdata.versions import newest

    bind = op.get_bind()
    rows = bind.execute(
        sa.text(
            "SELECT d.id, d.did, d.name, d.created_at, r.record FROM datasets d"
            " JOIN dataset_records r ON r.dataset_id = d.id"
        )
    ).all()
    groups: dict[tuple[str, str], list[tuple[int, str | None, str | None]]] = {}
    for row in rows:
        record = row.record
        if isinstance(record, str):
            record = json.loads(record)
        version = record.get("version") if isinstance(record, dict) else None
        version = version if isinstance(version, str) else None
        if version is not None:
            bind.execute(
                sa.text("UPDATE datasets SET version = :v WHERE id = :id"),
                {"v": version, "id": row.id},
            )
        if row.name is not None:
            groups.setdefault((row.did, row.name), []).append((row.id, version, row.created_at))
    for members in groups.values():
        if len(members) < 2:
            continue
        best = newest(members, lambda m: (m[1], m[2]))
        for member in members:
            if best is not None and member[0] != best[0]:
                bind.execute(
                    sa.text("UPDATE datasets SET newest = :f WHERE id = :id"),
                    {"f": False, "id": member[0]},
                )


def downgrade() -> None:
    op.drop_index("ix_datasets_did_name", "datasets")
    op.drop_column("datasets", "newest")
    op.drop_column("datasets", "version")
