"""Dataset search: full text (SQLite FTS5 / PostgreSQL tsvector), filters, facets, keyset paging.

One function builds the SQL for both dialects; the differences are confined to the full-text
match and score expressions. Scores are normalised so that *lower is better* on both
(FTS5's bm25 is already negative-is-better; PostgreSQL's rank is negated), which lets one
keyset cursor rule serve every sort order.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, text

SORTS = ("relevance", "created", "samples")
FACET_WINDOW = 1000
FACET_TAGS = 25
MAX_LIMIT = 100

# bm25 column weights: name, description, tags, schema field names.
_BM25 = "bm25(datasets_fts, 10.0, 1.0, 5.0, 3.0)"
_WORD = re.compile(r"\w+", re.UNICODE)


class BadCursor(ValueError):
    """The cursor was not produced by this service for this sort order."""


@dataclass(slots=True)
class SearchParams:
    q: str | None = None
    tags: list[str] = field(default_factory=list)
    schema: str | None = None
    author: str | None = None
    license: str | None = None
    min_samples: int | None = None
    max_samples: int | None = None
    sort: str = "relevance"
    limit: int = 25
    cursor: str | None = None


@dataclass(slots=True)
class SearchPage:
    datasets: list[dict[str, Any]]
    cursor: str | None
    facets: dict[str, dict[str, int]]


def words(q: str | None) -> list[str]:
    return _WORD.findall(q.lower()) if q else []


def encode_cursor(sort: str, key: Any, row_id: int) -> str:
    raw = json.dumps([sort, key, row_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, sort: str) -> tuple[Any, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        got_sort, key, row_id = json.loads(raw)
    except (ValueError, TypeError) as exc:
        raise BadCursor("cursor is not valid") from exc
    if got_sort != sort or not isinstance(row_id, int):
        raise BadCursor("cursor belongs to a different sort order")
    return key, row_id


def _fts5_phrase(tokens: list[str]) -> str:
    return '"' + " ".join(tokens) + '"'


class _Query:
    """Accumulates WHERE clauses and bound parameters."""

    def __init__(self) -> None:
        self.where: list[str] = []
        self.params: dict[str, Any] = {}

    def bind(self, value: Any) -> str:
        name = f"p{len(self.params)}"
        self.params[name] = value
        return f":{name}"


def _filters(qb: _Query, p: SearchParams, pg: bool) -> None:
    qb.where.append("d.hidden = false" if pg else "d.hidden = 0")
    for tag in p.tags:
        qb.where.append(
            "EXISTS (SELECT 1 FROM dataset_tags t WHERE t.dataset_id = d.id"
            f" AND t.tag = {qb.bind(tag)})"
        )
    if p.schema:
        qb.where.append(f"d.schema_uri = {qb.bind(p.schema)}")
    if p.author:
        if p.author.startswith("did:"):
            qb.where.append(f"d.did = {qb.bind(p.author)}")
        else:
            qb.where.append(
                f"d.did IN (SELECT did FROM repos WHERE handle = {qb.bind(p.author.lower())})"
            )
    if p.license:
        qb.where.append(f"d.license = {qb.bind(p.license)}")
    if p.min_samples is not None:
        qb.where.append(f"d.samples >= {qb.bind(p.min_samples)}")
    if p.max_samples is not None:
        qb.where.append(f"d.samples <= {qb.bind(p.max_samples)}")


def _match_source(qb: _Query, p: SearchParams, pg: bool) -> tuple[str, str | None]:
    """FROM clause and score expression (None: no full-text part)."""
    tokens = words(p.q)
    if not tokens:
        return "datasets d", None
    if pg:
        qb.where.append(f"d.search @@ plainto_tsquery('english', {qb.bind(' '.join(tokens))})")
        score = f"-CAST(ts_rank(d.search, plainto_tsquery('english', {qb.bind(' '.join(tokens))})) AS float8)"
        return "datasets d", score
    expr = " AND ".join(_fts5_phrase([t]) for t in tokens)
    # Tags also narrow the full-text match (exactness comes from the EXISTS filter).
    for tag in p.tags:
        tag_tokens = words(tag)
        if tag_tokens:
            expr += f" AND tags : {_fts5_phrase(tag_tokens)}"
    qb.where.append(f"datasets_fts MATCH {qb.bind(expr)}")
    return "datasets_fts JOIN datasets d ON d.id = datasets_fts.rowid", _BM25


def _order(p: SearchParams, score: str | None) -> tuple[str, str, bool]:
    """(key expression, SQL direction, keyset ascends) for the requested sort."""
    if p.sort == "relevance" and score is not None:
        return score, "ASC", True
    if p.sort == "samples":
        return "COALESCE(d.samples, -1)", "DESC", False
    return "d.created_at", "DESC", False


def search_datasets(conn: Connection, p: SearchParams) -> SearchPage:
    pg = conn.dialect.name == "postgresql"
    limit = max(1, min(p.limit, MAX_LIMIT))
    qb = _Query()
    source, score = _match_source(qb, p, pg)
    _filters(qb, p, pg)
    base_where = list(qb.where)
    key_expr, direction, ascending = _order(p, score)
    sort_name = (
        "relevance" if key_expr == score else ("samples" if p.sort == "samples" else "created")
    )

    # Tag browsing without text: drive the scan from the (tag, hidden, created/samples) index.
    tag_driven = score is None and p.tags
    if tag_driven:
        sort_col = "samples" if sort_name == "samples" else "created_at"
        first = p.tags[0]
        source = "dataset_tags dt JOIN datasets d ON d.id = dt.dataset_id"
        qb.where.append(f"dt.tag = {qb.bind(first)}")
        qb.where.append("dt.hidden = false" if pg else "dt.hidden = 0")
        key_expr = f"COALESCE(dt.{sort_col}, -1)" if sort_col == "samples" else f"dt.{sort_col}"
        id_expr = "dt.dataset_id"
    else:
        id_expr = "d.id"

    after = decode_cursor(p.cursor, sort_name) if p.cursor else None
    if sort_name == "relevance" and not pg:
        # bm25() may only be evaluated in the FTS query itself: rank inside, page outside.
        sql = (
            f"SELECT id, score FROM (SELECT d.id AS id, {score} AS score FROM {source}"
            f" WHERE {' AND '.join(qb.where)}) m"
        )
        if after is not None:
            k, i = qb.bind(after[0]), qb.bind(after[1])
            sql += f" WHERE (score > {k} OR (score = {k} AND id > {i}))"
        sql += f" ORDER BY score ASC, id ASC LIMIT {limit + 1}"
    else:
        where = list(qb.where)
        if after is not None:
            cmp = ">" if ascending else "<"
            k, i = qb.bind(after[0]), qb.bind(after[1])
            where.append(f"({key_expr} {cmp} {k} OR ({key_expr} = {k} AND {id_expr} {cmp} {i}))")
        sql = (
            f"SELECT {id_expr} AS id, {key_expr} AS score FROM {source}"
            f" WHERE {' AND '.join(where)}"
            f" ORDER BY {key_expr} {direction}, {id_expr} {direction} LIMIT {limit + 1}"
        )
    rows = conn.execute(text(sql), qb.params).all()
    more = len(rows) > limit
    rows = rows[:limit]
    items = _hydrate(conn, [r.id for r in rows])
    cursor = None
    if more and rows:
        last = rows[-1]
        cursor = encode_cursor(sort_name, _json_key(last.score), last.id)

    facets = _facets(conn, source if not tag_driven else "datasets d", base_where, qb.params)
    return SearchPage(datasets=items, cursor=cursor, facets=facets)


def _json_key(value: Any) -> Any:
    if isinstance(value, int | float | str) or value is None:
        return value
    return float(value)  # Decimal / numpy scalars from drivers


def _facets(
    conn: Connection, source: str, where: list[str], params: dict[str, Any]
) -> dict[str, dict[str, int]]:
    window = (
        f"SELECT d.id AS id, d.license AS license FROM {source}"
        f" WHERE {' AND '.join(where)} LIMIT {FACET_WINDOW}"
    )
    tags = conn.execute(
        text(
            f"SELECT t.tag, COUNT(*) AS n FROM dataset_tags t JOIN ({window}) w ON w.id = t.dataset_id"
            f" GROUP BY t.tag ORDER BY n DESC, t.tag ASC LIMIT {FACET_TAGS}"
        ),
        params,
    ).all()
    licenses = conn.execute(
        text(
            f"SELECT w.license, COUNT(*) AS n FROM ({window}) w WHERE w.license IS NOT NULL"
            " GROUP BY w.license ORDER BY n DESC, w.license ASC"
        ),
        params,
    ).all()
    return {
        "tags": {r.tag: r.n for r in tags},
        "licenses": {r.license: r.n for r in licenses},
    }


_HYDRATE = (
    "SELECT d.id, d.uri, d.cid, d.did, r.handle, d.name, d.description, d.tags, d.license,"
    " d.samples, d.bytes, d.schema_uri, s.name AS schema_name, s.version AS schema_version,"
    " d.created_at FROM datasets d LEFT JOIN repos r ON r.did = d.did"
    " LEFT JOIN schemas s ON s.uri = d.schema_uri WHERE d.id IN ({ids})"
)


def _hydrate(conn: Connection, ids: list[int]) -> list[dict[str, Any]]:
    if not ids:
        return []
    rows = conn.execute(text(_HYDRATE.format(ids=",".join(str(int(i)) for i in ids)))).all()
    by_id = {r.id: r for r in rows}
    out = []
    for i in ids:
        r = by_id.get(i)
        if r is None:
            continue
        tags = r.tags if isinstance(r.tags, list) else json.loads(r.tags or "[]")
        out.append(
            _drop_none(
                {
                    "uri": r.uri,
                    "cid": r.cid,
                    "did": r.did,
                    "handle": r.handle,
                    "name": r.name,
                    "description": r.description,
                    "tags": tags,
                    "license": r.license,
                    "samples": r.samples,
                    "bytes": r.bytes,
                    "schema": (
                        {"uri": r.schema_uri, "name": r.schema_name, "version": r.schema_version}
                        if r.schema_uri
                        else None
                    ),
                    "createdAt": r.created_at,
                }
            )
        )
    return out


def _drop_none(view: dict[str, Any]) -> dict[str, Any]:
    """XRPC views omit absent optional fields rather than sending null."""
    return {k: v for k, v in view.items() if v is not None}
