"""Dataset search: full text (SQLite FTS5 / PostgreSQL tsvector), filters, facets, keyset paging.

One function builds the SQL for both dialects; the differences are confined to the full-text
match (FTS5 MATCH vs tsvector @@ tsquery) and to how the newest matches are found. Relevance
is the same on both: tiers (every word in the name; in name, tags or schema field names;
elsewhere), newest first within a tier, ranked WINDOW matches at a time. No per-match score
is computed (bm25 / ts_rank cost seconds for common words at 1M datasets), so a page costs
an index scan of about one window. Cursors are keyset positions, stable under paging.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, bindparam, text

SORTS = ("relevance", "created", "samples")
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


def tag_token(tag: str) -> str:
    """One FTS5 token standing for a whole tag: a tag filter then intersects one doclist
    instead of checking the ``tags`` column's positions (slow for tags that are also common
    words). Collisions ("a-b" vs "ab") are harmless: the exact tag is checked in SQL too."""
    return "zztag" + "".join(ch for ch in tag.lower() if ch.isalnum())


def fts_tags_text(tags: list[str]) -> str:
    """The ``tags`` column of the FTS5 row: the tag words (searchable) and the tag tokens."""
    return " ".join([*tags, *(tag_token(t) for t in tags)])


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


def _filters(qb: _Query, p: SearchParams, pg: bool, *, driving_tag: bool = False) -> None:
    """WHERE clauses of the filters; ``driving_tag``: the first tag is already the scan's
    own condition (a redundant self-join misleads PostgreSQL's planner into hash joins)."""
    qb.where.append("d.hidden = false" if pg else "d.hidden = 0")
    for tag in p.tags[1:] if driving_tag else p.tags:
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


#: Matches ranked together: relevance orders each window of this many matches (newest
#: first) by tier; facets count the first window.
WINDOW = 300
#: PostgreSQL: ids scanned by the first probe for the newest matches (then x8 per probe).
PG_FIRST_SPAN = 4 * WINDOW
#: PostgreSQL: a query expected to match fewer datasets than this scans its GIN bitmap whole.
PG_UNBOUNDED_BELOW = 5_000
_FTS_SOURCE = "datasets_fts JOIN datasets d ON d.id = datasets_fts.rowid"


def _fts5_words(tokens: list[str]) -> str:
    return " AND ".join(_fts5_phrase([t]) for t in tokens)


def _text_source(qb: _Query, p: SearchParams, pg: bool) -> tuple[str, str, str]:
    """(FROM, WHERE, id expression in index order) for datasets matching every word."""
    tokens = words(p.q)
    # Tags also narrow the full-text match (exactness comes from the EXISTS filter).
    tag_tokens = [tag_token(t) for t in p.tags if tag_token(t) != "zztag"]
    if pg:
        query = " & ".join([*tokens, *tag_tokens])
        return "datasets d", f"d.search @@ to_tsquery('english', {qb.bind(query)})", "d.id"
    tag_part = [_fts5_phrase([t]) for t in tag_tokens]
    expr = " AND ".join([f"({_fts5_words(tokens)})", *tag_part])
    return _FTS_SOURCE, f"datasets_fts MATCH {qb.bind(expr)}", "datasets_fts.rowid"


def search_datasets(conn: Connection, p: SearchParams) -> SearchPage:
    """One page of matches: by relevance (tiers within windows of newest matches), by
    creation time or by sample count; facets over the first window of matches.

    Relevance: tier 0 = every word in the name, 1 = every word in name, tags or schema field
    names, 2 = elsewhere. bm25 / ts_rank would score every match (seconds for common words at
    1M datasets); ranking the newest WINDOW matches at a time keeps a page at index-scan cost
    and is exact whenever a query has at most WINDOW matches.
    """
    pg = conn.dialect.name == "postgresql"
    limit = max(1, min(p.limit, MAX_LIMIT))
    has_text = bool(words(p.q))
    first_window: list[int] | None = None
    if has_text and p.sort == "relevance":
        ids, cursor, first_window = _relevance_page(conn, p, pg, limit)
    else:
        ids, cursor = _sorted_page(conn, p, pg, limit, has_text)
    if first_window is None:
        first_window = _first_window(conn, p, pg)
    return SearchPage(
        datasets=_hydrate(conn, ids), cursor=cursor, facets=_facets(conn, first_window)
    )


def _norm(word: str) -> str:
    """Crude suffix folding for tiering (plural/verb forms), the same on both sides."""
    for suffix, repl, min_len in (("ies", "y", 5), ("sses", "ss", 5), ("ing", "", 6),
                                  ("ed", "", 5), ("es", "", 5), ("s", "", 4)):  # fmt: skip
        if len(word) >= min_len and word.endswith(suffix) and not word.endswith("ss"):
            return word[: -len(suffix)] + repl
    return word


def _terms(*texts: str) -> set[str]:
    return {_norm(w) for t in texts for w in _WORD.findall(t.lower().replace("_", " "))}


def _tier(wanted: set[str], name: str | None, tags: list[str], fields: list[str]) -> int:
    """0: every word in the name; 1: in name, tags or schema field names; 2: elsewhere."""
    in_name = _terms(name or "")
    if wanted <= in_name:
        return 0
    if wanted <= in_name | _terms(*tags, *fields):
        return 1
    return 2


def _newest_matches(
    conn: Connection, p: SearchParams, pg: bool, below: int | None, columns: str
) -> list[Any]:
    """The WINDOW newest matches (id <= ``below``), newest first.

    FTS5 walks its doclists in rowid order and stops early. A GIN index cannot return
    matches in id order, so on PostgreSQL the scan probes growing ranges of the newest ids
    (each probe costs about its range, not the number of matches of a common word)."""
    qb = _Query()
    source, match, order = _text_source(qb, p, pg)
    qb.where.append(match)
    _filters(qb, p, pg)
    if below is not None:
        qb.where.append(f"{order} <= {qb.bind(below)}")
    tail = f" ORDER BY {order} DESC LIMIT {WINDOW}"
    if not pg:
        sql = f"SELECT {columns} FROM {source} WHERE {' AND '.join(qb.where)}{tail}"
        return conn.execute(text(sql), qb.params).all()
    top = (
        below if below is not None else conn.execute(text("SELECT max(id) FROM datasets")).scalar()
    )
    if top is None:
        return []
    span = PG_FIRST_SPAN
    while True:
        low = top - span
        where = [*qb.where, f"d.id > {qb.bind(low)}"] if low > 0 else qb.where
        sql = f"SELECT {columns} FROM {source} WHERE {' AND '.join(where)}{tail}"
        rows = conn.execute(text(sql), qb.params).all()
        if len(rows) >= WINDOW or low <= 0:
            return rows
        # Size the next probe from the density seen; a sparse query goes unbounded at once
        # (its GIN bitmap is small, and the planner knows it).
        expected = len(rows) / span * top
        if expected <= PG_UNBOUNDED_BELOW:
            span = top
        else:
            span = min(top, int(span * 2 * WINDOW / max(len(rows), 1)))


def _window(
    conn: Connection, p: SearchParams, pg: bool, below: int | None
) -> list[tuple[int, int]]:
    """(id, tier) of the WINDOW newest matches with id <= ``below``, newest first."""
    rows = _newest_matches(
        conn, p, pg, below, "d.id AS id, d.name AS name, d.tags AS tags, d.schema_uri AS schema_uri"
    )
    fields = _schema_fields(conn, {r.schema_uri for r in rows if r.schema_uri})
    wanted = _terms(p.q or "")
    return [
        (r.id, _tier(wanted, r.name, _json_list(r.tags), fields.get(r.schema_uri, [])))
        for r in rows
    ]


def _json_list(value: Any) -> list[str]:
    if isinstance(value, str):
        value = json.loads(value)
    return [v for v in value or [] if isinstance(v, str)]


def _schema_fields(conn: Connection, uris: set[str]) -> dict[str, list[str]]:
    if not uris:
        return {}
    rows = conn.execute(
        text("SELECT uri, field_names FROM schemas WHERE uri IN :uris").bindparams(
            bindparam("uris", expanding=True)
        ),
        {"uris": sorted(uris)},
    )
    return {r.uri: _json_list(r.field_names) for r in rows}


def _relevance_page(
    conn: Connection, p: SearchParams, pg: bool, limit: int
) -> tuple[list[int], str | None, list[int] | None]:
    below: int | None = None
    after: tuple[int, int] | None = None
    if p.cursor:
        key, last_id = decode_cursor(p.cursor, "relevance")
        if not (isinstance(key, list) and len(key) == 2 and all(isinstance(k, int) for k in key)):
            raise BadCursor("cursor is not valid")
        below, after = key[0], (key[1], last_id)
    first: list[int] | None = None
    page: list[tuple[int, int, int]] = []  # (window start, tier, id)
    while True:
        window = _window(conn, p, pg, below)
        if first is None and below is None:
            first = [i for i, _ in window]
        ranked = sorted(window, key=lambda it: (it[1], -it[0]))
        if after is not None:
            ranked = [it for it in ranked if (it[1], -it[0]) > (after[0], -after[1])]
            after = None
        start = below if below is not None else (window[0][0] if window else 0)
        page += [(start, tier, i) for i, tier in ranked[: limit + 1 - len(page)]]
        if len(page) > limit or len(window) < WINDOW:
            break
        below = min(i for i, _ in window) - 1
    more = len(page) > limit
    page = page[:limit]
    cursor = encode_cursor("relevance", [page[-1][0], page[-1][1]], page[-1][2]) if more else None
    return [i for _, _, i in page], cursor, first


def _first_window(conn: Connection, p: SearchParams, pg: bool) -> list[int]:
    """Ids of the first WINDOW matches, newest first (what facets count)."""
    if words(p.q):
        return [r.id for r in _newest_matches(conn, p, pg, None, "d.id AS id")]
    qb = _Query()
    if p.tags:
        source = "dataset_tags dt JOIN datasets d ON d.id = dt.dataset_id"
        qb.where.append(f"dt.tag = {qb.bind(p.tags[0])}")
        qb.where.append("dt.hidden = false" if pg else "dt.hidden = 0")
        order = "dt.created_at DESC, dt.dataset_id"
    else:
        source, order = "datasets d", "d.created_at DESC, d.id"
    _filters(qb, p, pg, driving_tag=bool(p.tags))
    sql = (
        f"SELECT d.id AS id FROM {source} WHERE {' AND '.join(qb.where)}"
        f" ORDER BY {order} DESC LIMIT {WINDOW}"
    )
    return [r.id for r in conn.execute(text(sql), qb.params)]


def _sorted_page(
    conn: Connection, p: SearchParams, pg: bool, limit: int, has_text: bool
) -> tuple[list[int], str | None]:
    sort_name = "samples" if p.sort == "samples" else "created"
    qb = _Query()
    if has_text:
        source, match, _order = _text_source(qb, p, pg)
        qb.where.append(match)
        _filters(qb, p, pg)
        key_expr = "COALESCE(d.samples, -1)" if sort_name == "samples" else "d.created_at"
        id_expr = "d.id"
    elif p.tags:
        # Tag browsing: drive the scan from the (tag, hidden, created/samples) index.
        source = "dataset_tags dt JOIN datasets d ON d.id = dt.dataset_id"
        qb.where.append(f"dt.tag = {qb.bind(p.tags[0])}")
        qb.where.append("dt.hidden = false" if pg else "dt.hidden = 0")
        _filters(qb, p, pg, driving_tag=True)
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


def _facets(conn: Connection, ids: list[int]) -> dict[str, dict[str, int]]:
    """Tag and license counts over the given matches (the first window)."""
    if not ids:
        return {"tags": {}, "licenses": {}}
    if conn.dialect.name == "postgresql":  # one array parameter: no 500-literal plan
        in_ids, params = "= ANY(:ids)", {"ids": list(ids)}
    else:
        in_ids, params = "IN (" + ",".join(str(int(i)) for i in ids) + ")", {}
    tags = conn.execute(
        text(
            f"SELECT tag, COUNT(*) AS n FROM dataset_tags WHERE dataset_id {in_ids}"
            f" GROUP BY tag ORDER BY n DESC, tag ASC LIMIT {FACET_TAGS}"
        ),
        params,
    ).all()
    licenses = conn.execute(
        text(
            f"SELECT license, COUNT(*) AS n FROM datasets WHERE id {in_ids}"
            " AND license IS NOT NULL GROUP BY license ORDER BY n DESC, license ASC"
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
