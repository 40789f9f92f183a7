"""How many visible records of each lexicon family the index holds (for describeService).

Schemas, datasets and lenses of both families share their tables (``family`` tells them
apart); labels and lens verifications exist only in the peer family.
"""

from __future__ import annotations

from sqlalchemy import Connection, func, select

from .models import OWN_FAMILY, PEER_FAMILY, datasets, labels, lens_verifications, lenses, schemas

__all__ = ["family_counts"]


def family_counts(conn: Connection) -> dict[str, dict[str, int]]:
    """``{family: {kind: visible records}}`` for both families (zeros included)."""
    out: dict[str, dict[str, int]] = {
        OWN_FAMILY: {"schemas": 0, "datasets": 0, "lenses": 0},
        PEER_FAMILY: {
            "schemas": 0,
            "datasets": 0,
            "lenses": 0,
            "labels": 0,
            "lensVerifications": 0,
        },
    }
    for kind, table in (("schemas", schemas), ("datasets", datasets), ("lenses", lenses)):
        rows = conn.execute(
            select(table.c.family, func.count())
            .where(table.c.hidden.is_(False))
            .group_by(table.c.family)
        )
        for family, n in rows:
            out.setdefault(family, {})[kind] = int(n)
    for kind, table in (("labels", labels), ("lensVerifications", lens_verifications)):
        n = conn.execute(select(func.count()).select_from(table).where(table.c.hidden.is_(False)))
        out[PEER_FAMILY][kind] = int(n.scalar() or 0)
    return out
