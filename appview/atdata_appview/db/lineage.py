"""Lineage queries: which datasets one was derived from, and which were derived from it.

Edges live in ``dataset_lineage`` (one row per ``derivedFrom`` entry, written with the dataset),
so both directions are index lookups: ancestors by the child's id, descendants by the source's
URI. The walk is breadth-first, one query per level and direction, so a lineage ``depth`` steps
deep costs ``2 * depth`` small queries whatever the PDSes the datasets live on. A dataset seen
twice (diamonds, cycles) is reported once, at its nearest depth.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from atdata.versions import DEFAULT_VERSION
from sqlalchemy import Connection, select

from .models import dataset_lineage, datasets, repos

__all__ = ["MAX_ITEMS", "get_lineage"]

#: Most datasets reported each way (a popular source can have many descendants).
MAX_ITEMS = 1000


def _nodes(conn: Connection, uris: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Visible indexed datasets by URI: id, uri, cid, name, handle, version."""
    wanted = list(dict.fromkeys(uris))
    if not wanted:
        return {}
    rows = conn.execute(
        select(
            datasets.c.id,
            datasets.c.uri,
            datasets.c.cid,
            datasets.c.name,
            datasets.c.version,
            repos.c.handle,
        )
        .select_from(datasets.outerjoin(repos, repos.c.did == datasets.c.did))
        .where(datasets.c.uri.in_(wanted), datasets.c.hidden.is_(False))
    ).all()
    return {
        r.uri: {
            "id": r.id,
            "uri": r.uri,
            "cid": r.cid,
            "name": r.name,
            "handle": r.handle,
            "version": r.version or DEFAULT_VERSION,  # a record without one reads as 0.0.0
        }
        for r in rows
    }


def _item(node: Mapping[str, Any] | None, **fields: Any) -> dict[str, Any]:
    out = {k: v for k, v in fields.items() if v is not None}
    out["indexed"] = node is not None
    if node is not None:
        for key in ("name", "handle", "version"):
            if node.get(key) is not None:
                out[key] = node[key]
    return out


def _ancestors(conn: Connection, start: Mapping[str, Any], depth: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    seen = {start["uri"]}
    frontier: dict[int, str] = {start["id"]: start["uri"]}
    for level in range(1, depth + 1):
        if not frontier or len(out) >= MAX_ITEMS:
            break
        edges = conn.execute(
            select(dataset_lineage)
            .where(dataset_lineage.c.dataset_id.in_(list(frontier)))
            .order_by(dataset_lineage.c.dataset_id, dataset_lineage.c.position)
        ).all()
        nodes = _nodes(conn, (e.source_uri for e in edges if e.source_uri not in seen))
        following: dict[int, str] = {}
        for e in edges:
            if e.source_uri in seen or len(out) >= MAX_ITEMS:
                continue
            node = nodes.get(e.source_uri)
            cid = e.source_cid or (node["cid"] if node else None)
            if cid is None:
                continue  # a bare URI naming nothing we hold: nothing to pin or show
            seen.add(e.source_uri)
            out.append(
                _item(
                    node,
                    uri=e.source_uri,
                    cid=cid,
                    relation=e.relation or "other",
                    depth=level,
                    of=frontier[e.dataset_id],
                    lens=e.lens_uri,
                )
            )
            if node is not None:
                following[node["id"]] = node["uri"]
        frontier = following
    return out


def _descendants(conn: Connection, start: Mapping[str, Any], depth: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    seen = {start["uri"]}
    frontier = [start["uri"]]
    for level in range(1, depth + 1):
        if not frontier or len(out) >= MAX_ITEMS:
            break
        rows = conn.execute(
            select(
                dataset_lineage.c.source_uri,
                dataset_lineage.c.relation,
                dataset_lineage.c.lens_uri,
                datasets.c.uri,
            )
            .select_from(
                dataset_lineage.join(datasets, datasets.c.id == dataset_lineage.c.dataset_id)
            )
            .where(dataset_lineage.c.source_uri.in_(frontier), datasets.c.hidden.is_(False))
            .order_by(datasets.c.created_at, datasets.c.id)
            .limit(MAX_ITEMS + 1)
        ).all()
        nodes = _nodes(conn, (r.uri for r in rows if r.uri not in seen))
        following: list[str] = []
        for r in rows:
            node = nodes.get(r.uri)
            if r.uri in seen or node is None or len(out) >= MAX_ITEMS:
                continue
            seen.add(r.uri)
            out.append(
                _item(
                    node,
                    uri=r.uri,
                    cid=node["cid"],
                    relation=r.relation or "other",
                    depth=level,
                    of=r.source_uri,
                    lens=r.lens_uri,
                )
            )
            following.append(r.uri)
        frontier = following
    return out


def get_lineage(conn: Connection, uri: str, depth: int = 3) -> dict[str, Any] | None:
    """``{"uri", "ancestors", "descendants"}`` of an indexed dataset, or None if not held."""
    start = conn.execute(
        select(datasets.c.id, datasets.c.uri).where(
            datasets.c.uri == uri, datasets.c.hidden.is_(False)
        )
    ).first()
    if start is None:
        return None
    node = {"id": start.id, "uri": start.uri}
    return {
        "uri": start.uri,
        "ancestors": _ancestors(conn, node, depth),
        "descendants": _descendants(conn, node, depth),
    }
