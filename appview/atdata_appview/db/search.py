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


#: Relevance tiers: all words in the name; all in name, tags or schema field names; anywhere.
TIERS = 3
_FTS5_TIER_COLUMNS = ("{name}", "{name tags fields}", "")
_PG_TIER_WEIGHTS = (":A", ":ABC", "")


def _fts5_tiers(tokens: list[str], tags: list[str]) -> list[str]:
    """FTS5 expressions matching exactly the rows of each relevance tier."""
    words_expr = " AND ".join(_fts5_phrase([t]) for t in tokens)
    # Tags also narrow the full-text match (exactness comes from the EXISTS filter).
    tag_expr = " AND ".join(f"tags : {_fts5_phrase(words(tag))}" for tag in tags if words(tag))
    cumulative = []
    for cols in _FTS5_TIER_COLUMNS:
        e = f"{cols} : ({words_expr})" if cols else f"({words_expr})"
        cumulative.append(f"{e} AND {tag_expr}" if tag_expr else e)
    return [cumulative[0]] + [
        f"({cumulative[k]}) NOT ({cumulative[k - 1]})" for k in range(1, TIERS)
    ]


def _pg_tiers(tokens: list[str]) -> list[str]:
    """to_tsquery texts matching exactly the rows of each relevance tier (by lexeme weight:
    A = name, B = tags, C = schema field names, D = description)."""
    cumulative = ["(" + " & ".join(f"{t}{w}" for t in tokens) + ")" for w in _PG_TIER_WEIGHTS]
    return [cumulative[0]] + [f"{cumulative[k]} & !{cumulative[k - 1]}" for k in range(1, TIERS)]


_FTS_SOURCE = "datasets_fts JOIN datasets d ON d.id = datasets_fts.rowid"


def _text_source(qb: _Query, p: SearchParams, pg: bool) -> tuple[str, str]:
    """(FROM, WHERE) for every dataset matching all the words (and, on FTS5, the tags)."""
    tokens = words(p.q)
    if pg:
        query = "(" + " & ".join(tokens) + ")"
        return "datasets d", f"d.search @@ to_tsquery('english', {qb.bind(query)})"
    expr = " AND ".join(_fts5_phrase([t]) for t in tokens)
    tag_part = [f"tags : {_fts5_phrase(words(t))}" for t in p.tags if words(t)]
    expr = " AND ".join([f"({expr})", *tag_part])
    return _FTS_SOURCE, f"datasets_fts MATCH {qb.bind(expr)}"


def _tier_source(qb: _Query, p: SearchParams, pg: bool, tier: int) -> tuple[str, str]:
    """(FROM, WHERE) for exactly the datasets of one relevance tier."""
    tokens = words(p.q)
    if pg:
        query = _pg_tiers(tokens)[tier]
        return "datasets d", f"d.search @@ to_tsquery('english', {qb.bind(query)})"
    return _FTS_SOURCE, f"datasets_fts MATCH {qb.bind(_fts5_tiers(tokens, p.tags)[tier])}"


def search_datasets(conn: Connection, p: SearchParams) -> SearchPage:
    """One page of matches, newest-first within relevance tiers (or by created / samples).

    Relevance needs no per-row scoring: each tier is one index-ordered query that stops after
    a page, so latency does not grow with the number of matches (bm25 / ts_rank would score
    every match: seconds for common words at 1M datasets).
    """
    pg = conn.dialect.name == "postgresql"
    limit = max(1, min(p.limit, MAX_LIMIT))
    has_text = bool(words(p.q))
    if has_text and p.sort == "relevance":
        ids, cursor = _relevance_page(conn, p, pg, limit)
    else:
        ids, cursor = _sorted_page(conn, p, pg, limit, has_text)
    return SearchPage(datasets=_hydrate(conn, ids), cursor=cursor, facets=_facets(conn, p, pg))


def _relevance_page(
    conn: Connection, p: SearchParams, pg: bool, limit: int
) -> tuple[list[int], str | None]:
    start_tier, last_id = decode_cursor(p.cursor, "relevance") if p.cursor else (0, None)
    if not isinstance(start_tier, int) or not 0 <= start_tier < TIERS:
        raise BadCursor("cursor is not valid")
    found: list[tuple[int, int]] = []
    for tier in range(start_tier, TIERS):
        qb = _Query()
        source, match = _tier_source(qb, p, pg, tier)
        qb.where.append(match)
        _filters(qb, p, pg)
        order = "d.id" if pg else "datasets_fts.rowid"
        if tier == start_tier and last_id is not None:
            qb.where.append(f"{order} < {qb.bind(last_id)}")
        need = limit + 1 - len(found)
        sql = (
            f"SELECT d.id AS id FROM {source} WHERE {' AND '.join(qb.where)}"
            f" ORDER BY {order} DESC LIMIT {need}"
        )
        found += [(tier, r.id) for r in conn.execute(text(sql), qb.params)]
        if len(found) > limit:
            break
    page = found[:limit]
    cursor = encode_cursor("relevance", *page[-1]) if len(found) > limit else None
    return [i for _, i in page], cursor


def _sorted_page(
    conn: Connection, p: SearchParams, pg: bool, limit: int, has_text: bool
) -> tuple[list[int], str | None]:
    sort_name = "samples" if p.sort == "samples" else "created"
    qb = _Query()
    if has_text:
        source, match = _text_source(qb, p, pg)
        qb.where.append(match)
        _filters(qb, p, pg)
        key_expr = "COALESCE(d.samples, -1)" if sort_name == "samples" else "d.created_at"
        id_expr = "d.id"
    elif p.tags:
        # Tag browsing: drive the scan from the (tag, hidden, created/samples) index.
        source = "dataset_tags dt JOIN datasets d ON d.id = dt.dataset_id"
        qb.where.append(f"dt.tag = {qb.bind(p.tags[0])}")
        qb.where.append("dt.hidden = false" if pg else "dt.hidden = 0")
        _filters(qb, p, pg)
        key_expr = "COALESCE(dt.samples, -1)" if sort_name == "samples" else "dt.created_at"
        id_expr = "dt.dataset_id"
    else:
        source = "datasets d"
        _filters(qb, p, pg)
        key_expr = "COALESCE(d.samples, -1)" if sort_name == "samples" else "d.created_at"
        id_expr = "d.id"
    if p.cursor:
        key, last_id = decode_cursor(p.cursor, sort_name)
        k, i = qb.bind(key), qb.bind(last_id)
        qb.where.append(f"({key_expr} < {k} OR ({key_expr} = {k} AND {id_expr} < {i}))")
    sql = (
        f"SELECT {id_expr} AS id, {key_expr} AS k FROM {source} WHERE {' AND '.join(qb.where)}"
        f" ORDER BY {key_expr} DESC, {id_expr} DESC LIMIT {limit + 1}"
    )
    rows = conn.execute(text(sql), qb.params).all()
    page = rows[:limit]
    cursor = encode_cursor(sort_name, page[-1].k, page[-1].id) if len(rows) > limit else None
    return [r.id for r in page], cursor


def _json_key(value: Any) -> Any:
    if isinstance(value, int | float | str) or value is None:
        return value
    return float(value)  # Decimal / numpy scalars from drivers


def _facets(conn: Connection, p: SearchParams, pg: bool) -> dict[str, dict[str, int]]:
    """Tag and license counts over the first FACET_WINDOW matches (in index order)."""
    qb = _Query()
    if words(p.q):
        source, match = _text_source(qb, p, pg)
        qb.where.append(match)
    elif p.tags:
        source = "dataset_tags dt JOIN datasets d ON d.id = dt.dataset_id"
        qb.where.append(f"dt.tag = {qb.bind(p.tags[0])}")
        qb.where.append("dt.hidden = false" if pg else "dt.hidden = 0")
    else:
        source = "datasets d"
    _filters(qb, p, pg)
    window = (
        f"SELECT d.id AS id, d.license AS license FROM {source}"
        f" WHERE {' AND '.join(qb.where)} LIMIT {FACET_WINDOW}"
    )
    tags = conn.execute(
        text(
            f"SELECT t.tag, COUNT(*) AS n FROM dataset_tags t JOIN ({window}) w"
            f" ON w.id = t.dataset_id GROUP BY t.tag ORDER BY n DESC, t.tag ASC LIMIT {FACET_TAGS}"
        ),
        qb.params,
    ).all()
    licenses = conn.execute(
        text(
            f"SELECT w.license, COUNT(*) AS n FROM ({window}) w WHERE w.license IS NOT NULL"
            " GROUP BY w.license ORDER BY n DESC, w.license ASC"
        ),
        qb.params,
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
