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
import functools
import json
import re
import time
import weakref
from collections import Counter
from dataclasses import dataclass, field, replace
from itertools import chain
from operator import attrgetter, itemgetter
from typing import Any

from atdata.versions import DEFAULT_VERSION
from sqlalchemy import Connection, bindparam, text

SORTS = ("relevance", "created", "samples")
FACET_TAGS = 25
MAX_LIMIT = 100

_WORD = re.compile(r"\w+", re.UNICODE)
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


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
    #: Exact dataset name (with ``author``: the versions of one dataset).
    name: str | None = None
    #: Every version of each dataset, not just the newest of each (author, name).
    all_versions: bool = False
    #: Only records of this lexicon family (``io.atdata`` or ``science.alt.dataset``).
    family: str | None = None


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


def _is_int64(value: Any) -> bool:
    return type(value) is int and INT64_MIN <= value <= INT64_MAX


def _valid_key(sort: str, key: Any) -> bool:
    """The key a cursor of ``sort`` carries: what `encode_cursor` wrote for that order."""
    if sort == "created":  # a createdAt text (String(40) column)
        return isinstance(key, str) and len(key) <= 64 and "\x00" not in key
    if sort == "samples":  # COALESCE(samples, -1)
        return _is_int64(key)
    if sort == "relevance":  # [window start id, tier]
        return isinstance(key, list) and len(key) == 2 and all(_is_int64(k) for k in key)
    return False


def decode_cursor(cursor: str, sort: str) -> tuple[Any, int]:
    """(key, id) of a cursor of ``sort``; `BadCursor` unless it has exactly the types this
    service writes (anything else must not reach the database)."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        got_sort, key, row_id = json.loads(raw)
    except (ValueError, TypeError) as exc:
        raise BadCursor("cursor is not valid") from exc
    if got_sort != sort:
        raise BadCursor("cursor belongs to a different sort order")
    if not _valid_key(sort, key) or not _is_int64(row_id):
        raise BadCursor("cursor is not valid")
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

    def bind(self, value: Any, name: str | None = None) -> str:
        name = name or f"p{len(self.params)}"
        self.params[name] = value
        return f":{name}"


def _filters(qb: _Query, p: SearchParams, pg: bool, *, driving_tag: bool = False) -> None:
    """WHERE clauses of the filters; ``driving_tag``: the first tag is already the scan's
    own condition (a redundant self-join misleads PostgreSQL's planner into hash joins)."""
    qb.where.append("d.hidden = false" if pg else "d.hidden = 0")
    if not p.all_versions:  # one result per (author, name): its newest version
        qb.where.append("d.newest = true" if pg else "d.newest = 1")
    if p.name is not None:
        qb.where.append(f"d.name = {qb.bind(p.name)}")
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
    if p.family:
        qb.where.append(f"d.family = {qb.bind(p.family)}")
    if p.min_samples is not None:
        qb.where.append(f"d.samples >= {qb.bind(p.min_samples)}")
    if p.max_samples is not None:
        qb.where.append(f"d.samples <= {qb.bind(p.max_samples)}")


#: Matches ranked together: relevance orders each window of this many matches (newest
#: first) by tier; facets count the first window.
WINDOW = 300
#: PostgreSQL: the smallest id range a probe for the newest matches scans.
PG_FIRST_SPAN = 4 * WINDOW
#: PostgreSQL: a query expected to match fewer datasets than this scans its GIN result whole
#: (reading that many heap rows costs less than intersecting a long id range in the index).
PG_UNBOUNDED_BELOW = 1_500
#: PostgreSQL: the GIN index holds ``id >> PG_ID_BLOCK_BITS`` next to the words (btree_gin;
#: migration 0001): a range of 1,024-id blocks is a few hundred index entries, where a range
#: of ids would be one entry per id.
PG_ID_BLOCK_BITS = 10
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
    first_window: list[Any] | None = None
    if has_text and p.sort == "relevance":
        ids, cursor, first_window = _relevance_page(conn, p, pg, limit)
    else:
        ids, cursor = _sorted_page(conn, p, pg, limit, has_text)
    if first_window is None:
        first_window = _first_window(conn, p, pg)
    return SearchPage(datasets=_hydrate(conn, ids), cursor=cursor, facets=_facets(first_window))


@functools.lru_cache(maxsize=1 << 16)
def _norm(word: str) -> str:
    """Crude suffix folding for tiering (plural/verb forms), the same on both sides."""
    for suffix, repl, min_len in (("ies", "y", 5), ("sses", "ss", 5), ("ing", "", 6),
                                  ("ed", "", 5), ("es", "", 5), ("s", "", 4)):  # fmt: skip
        if len(word) >= min_len and word.endswith(suffix) and not word.endswith("ss"):
            return word[: -len(suffix)] + repl
    return word


@functools.lru_cache(maxsize=1 << 14)
def _text_terms(text: str) -> frozenset[str]:
    """The folded words of one text (cached: names, tags and field names recur)."""
    return frozenset(_norm(w) for w in _WORD.findall(text.lower().replace("_", " ")))


def _terms(*texts: str) -> set[str]:
    return set().union(*(_text_terms(t) for t in texts))


@functools.lru_cache(maxsize=1 << 16)
def _texts_terms(texts: tuple[str, ...]) -> frozenset[str]:
    """The folded words of several texts (a row's tags, a schema's field names; cached)."""
    return frozenset().union(*(_text_terms(t) for t in texts))


def _newest_matches(
    conn: Connection, p: SearchParams, pg: bool, below: int | None, columns: str
) -> list[Any]:
    """The WINDOW newest matches (id <= ``below``), newest first.

    FTS5 walks its doclists in rowid order and stops early. A GIN index cannot return
    matches in id order, so PostgreSQL walks down disjoint id ranges instead (see
    ``_pg_newest_matches``)."""
    if pg:
        return _pg_newest_matches(conn, p, below, columns)
    qb = _Query()
    source, match, order = _text_source(qb, p, pg)
    qb.where.append(match)
    _filters(qb, p, pg)
    if below is not None:
        qb.where.append(f"{order} <= {qb.bind(below)}")
    sql = (
        f"SELECT {columns} FROM {source} WHERE {' AND '.join(qb.where)}"
        f" ORDER BY {order} DESC LIMIT {WINDOW}"
    )
    return list(conn.execute(text(sql), qb.params).all())


def _pg_estimate(conn: Connection, tsquery: str) -> float:
    """The planner's estimate of the datasets matching ``tsquery`` (from the tsvector
    statistics: close for independent words, a few ms cheaper than any count)."""
    plan = conn.execute(
        text(
            "EXPLAIN (FORMAT JSON) SELECT 1 FROM datasets d"
            " WHERE d.search @@ to_tsquery('english', :q)"
        ),
        {"q": tsquery},
    ).scalar_one()
    if isinstance(plan, str):
        plan = json.loads(plan)
    return float(plan[0]["Plan"]["Plan Rows"])


#: Planner estimates by (database, tsquery), kept ESTIMATE_TTL seconds: they only size the
#: first id range probed (any value finds the same matches) and move with ANALYZE, not with
#: each write, while asking costs a round trip and a planning per search.
ESTIMATE_TTL = 60.0
_estimates: weakref.WeakKeyDictionary[Any, dict[str, tuple[float, float]]] = (
    weakref.WeakKeyDictionary()
)


def _cached_estimate(conn: Connection, tsquery: str) -> float:
    held = _estimates.get(conn.engine)
    if held is None:
        held = _estimates.setdefault(conn.engine, {})
    now = time.monotonic()
    hit = held.get(tsquery)
    if hit is not None and hit[0] > now:
        return hit[1]
    if len(held) > 20_000:
        held.clear()
    estimate = _pg_estimate(conn, tsquery)
    held[tsquery] = (now + ESTIMATE_TTL, estimate)
    return estimate


def _pg_newest_matches(
    conn: Connection, p: SearchParams, below: int | None, columns: str
) -> list[Any]:
    """PostgreSQL: walk down disjoint id ranges, each sized from the match density so it
    holds about the matches still needed, until WINDOW matches are found.

    The GIN index holds the id block too (btree_gin), so a range probe intersects the
    words' posting lists with the range inside the index instead of computing every match
    of a common word; a heap row is read only per match in the range. A query expected to
    match few datasets scans its (small) GIN result whole. Tags with a full-text token are
    part of the tsquery and checked exactly here, on the fetched ``tags`` column: an EXISTS
    on dataset_tags leads the planner to hash-join the whole tag."""
    max_id = conn.execute(text("SELECT max(id) FROM datasets")).scalar()
    if max_id is None:
        return []
    high = min(max_id, below) if below is not None else max_id
    token_tags = [t for t in p.tags if tag_token(t) != "zztag"]
    query = " & ".join([*words(p.q), *(tag_token(t) for t in token_tags)])
    qb = _Query()
    qb.where.append(f"d.search @@ to_tsquery('english', {qb.bind(query)})")
    _filters(qb, replace(p, tags=[t for t in p.tags if t not in token_tags]), True)
    # Matches per id, below ``high``; corrected by what each probe finds.
    density = max(_cached_estimate(conn, query), 0.5) / max_id
    found: list[Any] = []
    span = 0
    while high > 0 and len(found) < WINDOW:
        need = WINDOW - len(found)
        if density * high <= PG_UNBOUNDED_BELOW:
            low = 0
        else:
            span = max(PG_FIRST_SPAN, int(1.5 * need / density))
            low = max(0, high - span)
        where = list(qb.where)
        # Deep in the matches (a later page), a GIN block range would also fetch every
        # match above ``high``: bound the range on the primary key instead.
        deep = density * (max_id - high) > 2 * WINDOW
        if deep:
            where.append(f"d.id <= {qb.bind(high, 'hi')}")
            if low > 0:
                where.append(f"d.id > {qb.bind(low, 'lo')}")
        else:
            if high < max_id:  # a heap filter (few matches lie above ``high``)
                where.append(f"d.id + 0 <= {qb.bind(high, 'hi')}")
            if low > 0:  # a GIN key: the id blocks from ``low``'s up (PG_ID_BLOCK_BITS)
                block = low >> PG_ID_BLOCK_BITS
                low = (block << PG_ID_BLOCK_BITS) - 1
                # (typed: psycopg sends a small int as int2, which the int4 key ignores)
                bound = f"CAST({qb.bind(block, 'lo')} AS integer)"
                where.append(f"(d.id >> {PG_ID_BLOCK_BITS}) >= {bound}")
        sql = (
            f"SELECT {columns}, {_TAGS_TEXT} FROM datasets d WHERE {' AND '.join(where)}"
            f" ORDER BY d.id DESC LIMIT {need}"
        )
        rows = conn.execute(text(sql), qb.params).all()
        found += (
            [r for r in rows if all(t in _json_list(r.tags) for t in token_tags)]
            if token_tags
            else rows
        )
        if len(rows) == need:  # the range holds more: go on below the last row
            high = rows[-1].id - 1
            continue
        if low > 0:  # the range is exhausted: learn its density (at most x16 sparser)
            density = max(len(rows) / (high - low), density / 16)
        high = low
    return found[:WINDOW]


#: The tags column as JSON text on both databases: psycopg would decode PostgreSQL's JSON for
#: every row, where the text of a tag list recurs and is parsed once (`_parse_json_list`).
_TAGS_TEXT = "CAST(d.tags AS TEXT) AS tags"
_WINDOW_COLUMNS = "d.id AS id, d.name AS name, d.schema_uri AS schema_uri, d.license AS license"


def _window(
    conn: Connection, p: SearchParams, pg: bool, below: int | None
) -> tuple[list[tuple[int, int]], list[Any]]:
    """(id, tier) of the WINDOW newest matches with id <= ``below``, newest first, and
    their rows (which carry what facets count). Tier 0: every word in the name; 1: in name,
    tags or schema field names; 2: elsewhere."""
    columns = _WINDOW_COLUMNS if pg else f"{_WINDOW_COLUMNS}, {_TAGS_TEXT}"
    rows = _newest_matches(conn, p, pg, below, columns)
    fields = _cached_fields(conn, {r[2] for r in rows if r[2]})
    wanted = _terms(p.q or "")
    # The hot loop of a search (~300 rows): _tier inlined, names bound locally.
    name_terms, texts_terms, no_fields = _text_terms, _texts_terms, ()
    tiers = []
    for row_id, name, schema_uri, _license, tags in rows:
        in_name = name_terms(name or "")
        if wanted <= in_name:
            tiers.append((row_id, 0))
            continue
        rest = wanted - in_name - texts_terms(_json_list(tags))
        tiers.append((row_id, 1 if rest <= texts_terms(fields.get(schema_uri, no_fields)) else 2))
    return tiers, rows


def _json_list(value: Any) -> tuple[str, ...]:
    """The strings of a JSON array column (text on SQLite, decoded on PostgreSQL)."""
    if type(value) is str:
        return _parse_json_list(value)
    if isinstance(value, list | tuple):
        return tuple(v for v in value if isinstance(v, str))
    return ()


@functools.lru_cache(maxsize=1 << 16)
def _parse_json_list(raw: str) -> tuple[str, ...]:
    """Cached: a window parses ~300 tag lists per search, and tag lists recur."""
    value = json.loads(raw)
    return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else ()


def _distinct_tags(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return _distinct_json_list(value)
    return tuple(dict.fromkeys(_json_list(value)))


@functools.lru_cache(maxsize=1 << 16)
def _distinct_json_list(raw: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(_parse_json_list(raw)))


class _FieldNames:
    """Field names of schemas by URI, kept for a short while: relevance tiers read those of
    ~300 rows per search, most of them the same few schemas. A schema changed under the same
    URI (rare) re-ranks within ``ttl`` seconds."""

    def __init__(self, ttl: float = 30.0, absent_ttl: float = 2.0, size: int = 20_000) -> None:
        self.ttl, self.absent_ttl, self.size = ttl, absent_ttl, size
        self._held: dict[str, tuple[float, tuple[str, ...]]] = {}

    def get(self, conn: Connection, uris: set[str]) -> dict[str, tuple[str, ...]]:
        now = time.monotonic()
        out: dict[str, tuple[str, ...]] = {}
        missing = []
        for uri in uris:
            held = self._held.get(uri)
            if held is not None and held[0] > now:
                out[uri] = held[1]
            else:
                missing.append(uri)
        if missing:
            fetched = _schema_fields(conn, missing)
            if len(self._held) + len(missing) > self.size:
                self._held.clear()
            for uri in missing:  # an absent schema (not indexed yet) is asked for again soon
                fields = fetched.get(uri)
                ttl = self.ttl if fields is not None else self.absent_ttl
                self._held[uri] = (now + ttl, fields or ())
                out[uri] = fields or ()
        return out


#: One cache per database (an Engine), dropped with it.
_field_names: weakref.WeakKeyDictionary[Any, _FieldNames] = weakref.WeakKeyDictionary()


def _cached_fields(conn: Connection, uris: set[str]) -> dict[str, tuple[str, ...]]:
    cache = _field_names.get(conn.engine)
    if cache is None:
        cache = _field_names.setdefault(conn.engine, _FieldNames())
    return cache.get(conn, uris)


def _schema_fields(conn: Connection, uris: list[str]) -> dict[str, tuple[str, ...]]:
    if conn.dialect.name == "postgresql":  # one array parameter: no 300-literal plan
        stmt = text("SELECT uri, field_names FROM schemas WHERE uri = ANY(:uris)")
    else:
        stmt = text("SELECT uri, field_names FROM schemas WHERE uri IN :uris").bindparams(
            bindparam("uris", expanding=True)
        )
    rows = conn.execute(stmt, {"uris": sorted(uris)})
    return {r.uri: _json_list(r.field_names) for r in rows}


def _relevance_page(
    conn: Connection, p: SearchParams, pg: bool, limit: int
) -> tuple[list[int], str | None, list[Any] | None]:
    below: int | None = None
    after: tuple[int, int] | None = None
    if p.cursor:
        key, last_id = decode_cursor(p.cursor, "relevance")
        below, after = key[0], (key[1], last_id)
    first: list[Any] | None = None
    page: list[tuple[int, int, int]] = []  # (window start, tier, id)
    while True:
        window, rows = _window(conn, p, pg, below)
        if first is None and below is None:
            first = rows
        # (tier, newest first): the window is newest first already, and the sort is stable
        ranked = sorted(window, key=_TIER)
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


def _first_window(conn: Connection, p: SearchParams, pg: bool) -> list[Any]:
    """Rows (id, tags, license) of the first WINDOW matches, newest first (what facets
    count)."""
    if words(p.q):
        return _newest_matches(
            conn,
            p,
            pg,
            None,
            "d.id AS id, d.license AS license" + ("" if pg else f", {_TAGS_TEXT}"),
        )
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
        f"SELECT d.id AS id, {_TAGS_TEXT}, d.license AS license FROM {source}"
        f" WHERE {' AND '.join(qb.where)} ORDER BY {order} DESC LIMIT {WINDOW}"
    )
    return list(conn.execute(text(sql), qb.params).all())


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


_TAGS, _LICENSE, _TIER = attrgetter("tags"), attrgetter("license"), itemgetter(1)


def _facets(rows: list[Any]) -> dict[str, dict[str, int]]:
    """Tag and license counts over the given matches (the first window), counted from the
    rows already fetched: no second pass over them."""
    raw_tags = list(map(_TAGS, rows))
    try:  # SQLite: JSON text, the same lists often repeated: count each list once
        per_list = Counter(raw_tags)
    except TypeError:  # PostgreSQL: decoded lists
        tags = Counter(chain.from_iterable(map(_distinct_tags, raw_tags)))
    else:
        tags = Counter()
        for value, n in per_list.items():
            for tag in _distinct_json_list(value):
                tags[tag] += n
    licenses = Counter(map(_LICENSE, rows))
    licenses.pop(None, None)
    top = sorted(tags.items(), key=lambda kv: (-kv[1], kv[0]))[:FACET_TAGS]
    return {
        "tags": dict(top),
        "licenses": dict(sorted(licenses.items(), key=lambda kv: (-kv[1], kv[0]))),
    }


_HYDRATE = (
    "SELECT d.id, d.uri, d.cid, d.did, r.handle, d.name, d.description,"
    " CAST(d.tags AS TEXT) AS tags, d.license,"
    " d.samples, d.bytes, d.schema_uri, s.name AS schema_name, s.version AS schema_version,"
    " d.created_at, d.version, d.newest, d.family FROM datasets d LEFT JOIN repos r ON r.did = d.did"
    " LEFT JOIN schemas s ON s.uri = d.schema_uri WHERE d.id IN ({ids})"
)
#: Hydration binds its ids padded to one of these counts: a few fixed statements that
#: SQLAlchemy and the database prepare once, instead of new SQL text for every page.
_HYDRATE_SIZES = (10, 25, 50, MAX_LIMIT)


@functools.cache
def _hydrate_sql(size: int) -> Any:
    return text(_HYDRATE.format(ids=",".join(f":i{k}" for k in range(size))))


def _hydrate(conn: Connection, ids: list[int]) -> list[dict[str, Any]]:
    if not ids:
        return []
    size = next((n for n in _HYDRATE_SIZES if n >= len(ids)), len(ids))
    padded = [int(i) for i in ids] + [-1] * (size - len(ids))  # -1: no dataset has it
    params: dict[str, Any] = {f"i{k}": v for k, v in enumerate(padded)}
    rows = conn.execute(_hydrate_sql(size), params).all()
    by_id = {r.id: r for r in rows}
    counts = {c.id: c.n for c in conn.execute(_version_counts_sql(size), params)}
    out = []
    for i in ids:
        r = by_id.get(i)
        if r is None:
            continue
        tags = list(_json_list(r.tags))
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
                    "version": r.version or DEFAULT_VERSION,
                    "versions": counts.get(r.id, 1),
                    "newest": bool(r.newest),
                    "family": r.family,
                }
            )
        )
    return out


@functools.cache
def _version_counts_sql(size: int) -> Any:
    """How many visible versions the (author, name) of each page row has (an index range
    per name); padded ids like hydration's: one prepared statement per page size."""
    ids = ",".join(f":i{k}" for k in range(size))
    return text(
        "SELECT p.id AS id, count(*) AS n FROM datasets p"
        " JOIN datasets d ON d.did = p.did AND d.name = p.name"
        f" WHERE p.id IN ({ids}) AND d.hidden = :hidden GROUP BY p.id"
    ).bindparams(hidden=False)


def _drop_none(view: dict[str, Any]) -> dict[str, Any]:
    """XRPC views omit absent optional fields rather than sending null."""
    return {k: v for k, v in view.items() if v is not None}
