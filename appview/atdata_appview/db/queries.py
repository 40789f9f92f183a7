"""Lookups behind the XRPC methods and the web page (everything except dataset search).

All functions take a live connection and return plain JSON-ready dicts, so the XRPC layer and
the web page render the same data. Records of hidden repos are never returned.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from atdata.versions import DEFAULT_VERSION, newest_key
from sqlalchemy import Connection, func, select

from .models import cursors, dataset_records, dataset_tags, datasets, lenses, repos, schemas, shards
from .search import _drop_none, decode_cursor, encode_cursor

MAX_LENS_HOPS = 8


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _author(conn: Connection, did: str) -> dict[str, Any]:
    row = conn.execute(select(repos.c.handle, repos.c.pds).where(repos.c.did == did)).first()
    return {"did": did, "handle": row.handle if row else None, "pds": row.pds if row else None}


def _handles(conn: Connection, dids: set[str]) -> dict[str, str | None]:
    if not dids:
        return {}
    rows = conn.execute(select(repos.c.did, repos.c.handle).where(repos.c.did.in_(dids)))
    return {r.did: r.handle for r in rows}


def resolve_author(conn: Connection, author: str) -> str | None:
    """DID for a DID or a handle the index knows."""
    if author.startswith("did:"):
        return author
    return conn.execute(select(repos.c.did).where(repos.c.handle == author.lower())).scalar()


# -- schemas --------------------------------------------------------------------------------


def _record_view(r: Any, handle: str | None, **own: Any) -> dict[str, Any]:
    """What every listed record shows (identity, author, name, time), plus its kind's own."""
    common = {
        "uri": r.uri,
        "cid": r.cid,
        "did": r.did,
        "handle": handle,
        "name": r.name,
        "description": r.description,
        "createdAt": r.created_at,
    }
    return _drop_none(common | own)


def _schema_view(r: Any, handle: str | None) -> dict[str, Any]:
    return _record_view(r, handle, version=r.version, fields=_json(r.field_names) or [])


@dataclass(frozen=True)
class Page:
    """Which page of a newest-first list: its size, and the cursor the page before returned."""

    limit: int = 50
    cursor: str | None = None


FIRST_PAGE = Page()


def _visible_row(conn: Connection, table: Any, uri: str) -> Any:
    """The row indexed at ``uri``, or None when there is none or its repo is hidden."""
    return conn.execute(select(table).where(table.c.uri == uri, table.c.hidden.is_(False))).first()


def _newest_first_page(
    conn: Connection,
    stmt: Any,
    table: Any,
    page: Page,
    key: str,
    view: Callable[[Any, str | None], dict[str, Any]],
) -> dict[str, Any]:
    """One page of ``stmt`` over ``table``, newest first, with a keyset cursor
    (createdAt, id) so pages neither skip nor repeat rows while records arrive."""
    limit = page.limit
    if page.cursor:
        created, last_id = decode_cursor(page.cursor, "created")
        stmt = stmt.where(
            (table.c.created_at < created)
            | ((table.c.created_at == created) & (table.c.id < last_id))
        )
    rows = conn.execute(
        stmt.order_by(table.c.created_at.desc(), table.c.id.desc()).limit(limit + 1)
    ).all()
    more = len(rows) > limit
    rows = rows[:limit]
    handles = _handles(conn, {r.did for r in rows})
    out: dict[str, Any] = {key: [view(r, handles.get(r.did)) for r in rows]}
    if more:  # no cursor key on the last page: XRPC outputs omit absent fields
        out["cursor"] = encode_cursor("created", rows[-1].created_at, rows[-1].id)
    return out


def list_schemas(
    conn: Connection, *, name: str | None = None, author: str | None = None, page: Page = FIRST_PAGE
) -> dict[str, Any]:
    """Schemas newest first; ``name`` filters exactly, ``author`` is a DID or handle."""
    stmt = select(schemas).where(schemas.c.hidden.is_(False))
    if name:
        stmt = stmt.where(schemas.c.name == name)
    if author:
        stmt = stmt.where(schemas.c.did == resolve_author(conn, author))
    return _newest_first_page(conn, stmt, schemas, page, "schemas", _schema_view)


def get_schema(conn: Connection, uri: str) -> dict[str, Any] | None:
    """A schema with its record and the other versions its author published under its name."""
    r = _visible_row(conn, schemas, uri)
    if r is None:
        return None
    author = _author(conn, r.did)
    versions = conn.execute(
        select(schemas.c.uri, schemas.c.cid, schemas.c.version, schemas.c.created_at)
        .where(
            schemas.c.name == r.name,
            schemas.c.did == r.did,
            schemas.c.hidden.is_(False),
        )
        .order_by(schemas.c.created_at.desc(), schemas.c.id.desc())
    ).all()
    view = _schema_view(r, author["handle"])
    view["record"] = _json(r.record)
    view["author"] = author
    view["versions"] = [
        {"uri": v.uri, "cid": v.cid, "version": v.version, "createdAt": v.created_at}
        for v in versions
    ]
    return view


# -- lenses ---------------------------------------------------------------------------------


def _lens_view(r: Any, handle: str | None = None) -> dict[str, Any]:
    return _record_view(r, handle, source=r.source_schema, target=r.target_schema, family=r.family)


def list_lenses(
    conn: Connection,
    *,
    source: str | None = None,
    target: str | None = None,
    page: Page = FIRST_PAGE,
) -> dict[str, Any]:
    """Lenses newest first; ``source`` and ``target`` filter by schema at:// URI."""
    stmt = select(lenses).where(lenses.c.hidden.is_(False))
    if source:
        stmt = stmt.where(lenses.c.source_schema == source)
    if target:
        stmt = stmt.where(lenses.c.target_schema == target)
    return _newest_first_page(conn, stmt, lenses, page, "lenses", _lens_view)


def find_lens_path(conn: Connection, source: str, target: str) -> list[dict[str, Any]] | None:
    """Shortest chain of visible lenses from ``source`` to ``target`` schema (breadth first,
    one query per hop); ``[]`` when they are the same schema, ``None`` when none connects."""
    if source == target:
        return []
    parent: dict[str, Any] = {source: None}
    frontier = deque([source])
    for _ in range(MAX_LENS_HOPS):
        if not frontier:
            break
        rows = conn.execute(
            select(lenses)
            .where(lenses.c.source_schema.in_(list(frontier)), lenses.c.hidden.is_(False))
            .order_by(lenses.c.created_at.asc(), lenses.c.id.asc())
        ).all()
        frontier = deque()
        for r in rows:
            if r.target_schema is None or r.target_schema in parent:
                continue
            parent[r.target_schema] = r
            if r.target_schema == target:
                chain = []
                node = target
                while parent[node] is not None:
                    lens = parent[node]
                    chain.append(lens)
                    node = lens.source_schema
                handles = _handles(conn, {x.did for x in chain})
                return [_lens_view(x, handles.get(x.did)) for x in reversed(chain)]
            frontier.append(r.target_schema)
    return None


# -- datasets -------------------------------------------------------------------------------


def get_dataset(conn: Connection, uri: str) -> dict[str, Any] | None:
    """A dataset with its record, schema, author, shards and the lenses from/to its schema."""
    d = _visible_row(conn, datasets, uri)
    if d is None:
        return None
    author = _author(conn, d.did)
    schema = None
    lenses_from: list[dict[str, Any]] = []
    lenses_to: list[dict[str, Any]] = []
    if d.schema_uri:
        s = _visible_row(conn, schemas, d.schema_uri)
        if s is not None:
            schema = _schema_view(s, _author(conn, s.did)["handle"])
            schema["record"] = _json(s.record)
        else:
            schema = {"uri": d.schema_uri, "cid": d.schema_cid, "record": None}
        visible = lenses.c.hidden.is_(False)
        lenses_from = [
            _lens_view(r)
            for r in conn.execute(
                select(lenses).where(lenses.c.source_schema == d.schema_uri, visible)
            )
        ]
        lenses_to = [
            _lens_view(r)
            for r in conn.execute(
                select(lenses).where(lenses.c.target_schema == d.schema_uri, visible)
            )
        ]
    shard_rows = conn.execute(
        select(shards).where(shards.c.dataset_id == d.id).order_by(shards.c.position)
    ).all()
    return _drop_none(
        {
            "uri": d.uri,
            "cid": d.cid,
            "did": d.did,
            "family": d.family,
            "handle": author["handle"],
            "name": d.name,
            "description": d.description,
            "tags": _json(d.tags) or [],
            "license": d.license,
            "samples": d.samples,
            "bytes": d.bytes,
            "createdAt": d.created_at,
            "version": d.version or DEFAULT_VERSION,
            "newest": bool(d.newest),
            "versions": dataset_versions(conn, d.did, d.name) if d.name is not None else [],
            "record": _json(
                conn.execute(
                    select(dataset_records.c.record).where(dataset_records.c.dataset_id == d.id)
                ).scalar()
            ),
            "author": author,
            "schema": schema,
            "shards": [
                _drop_none(
                    {
                        "url": s.url,
                        "blob": s.blob_cid,
                        "size": s.size,
                        "sha256": s.sha256,
                        "samples": s.samples,
                    }
                )
                for s in shard_rows
            ],
            "lenses": {"from": lenses_from, "to": lenses_to},
        }
    )


def dataset_versions(conn: Connection, did: str, name: str) -> list[dict[str, Any]]:
    """Every visible version of the author's dataset ``name``, newest first."""
    found = conn.execute(
        select(
            datasets.c.uri,
            datasets.c.cid,
            datasets.c.version,
            datasets.c.created_at,
            datasets.c.samples,
            datasets.c.newest,
        ).where(datasets.c.did == did, datasets.c.name == name, datasets.c.hidden.is_(False))
    ).all()
    rows = sorted(found, key=lambda r: newest_key(r.version, r.created_at), reverse=True)
    return [
        _drop_none(
            {
                "uri": r.uri,
                "cid": r.cid,
                "version": r.version or DEFAULT_VERSION,
                "createdAt": r.created_at,
                "samples": r.samples,
                "newest": bool(r.newest),
            }
        )
        for r in rows
    ]


# -- service --------------------------------------------------------------------------------


def counts(conn: Connection) -> dict[str, int]:
    """Visible record counts (and all repos) for describeService and /metrics."""

    def n(stmt: Any) -> int:
        return int(conn.execute(stmt).scalar() or 0)

    return {
        "repos": n(select(func.count()).select_from(repos)),
        "hiddenRepos": n(select(func.count()).select_from(repos).where(repos.c.status != "active")),
        "schemas": n(select(func.count()).select_from(schemas).where(schemas.c.hidden.is_(False))),
        "datasets": n(
            select(func.count()).select_from(datasets).where(datasets.c.hidden.is_(False))
        ),
        "lenses": n(select(func.count()).select_from(lenses).where(lenses.c.hidden.is_(False))),
        "tags": n(select(func.count(func.distinct(dataset_tags.c.tag)))),
    }


def cursor_rows(conn: Connection) -> dict[str, dict[str, Any]]:
    return {
        r.host: {"seq": r.seq, "updatedAt": r.updated_at}
        for r in conn.execute(select(cursors.c.host, cursors.c.seq, cursors.c.updated_at))
    }
