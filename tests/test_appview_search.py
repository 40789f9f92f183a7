"""Dataset search on SQLite FTS5 and PostgreSQL tsvector: matching, ranking, filters, sorts,
facets and cursor paging, each checked against a Python model of the same corpus."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass

import pytest
from _fixtures.appview_index import DATASET, SCHEMA, dataset_record, run, schema_record
from atdata_appview.db import BadCursor, SearchParams, Store, search_datasets
from atdata_appview.db import search as search_module

# Words whose stems are distinct and which are no stopwords (PostgreSQL's english config
# drops stopwords; FTS5 does not).
VOCAB = [
    "galaxy", "protein", "traffic", "weather", "speech", "medical", "satellite", "retail",
    "genome", "robot", "finance", "ocean", "forest", "music", "chess", "soccer",
]  # fmt: skip
TAGS = ["vision", "audio", "text", "tabular", "computer-vision", "biology"]
LICENSES = ["MIT", "CC-BY-4.0", "Apache-2.0"]
AUTHORS = {"did:plc:ann": "ann.test", "did:plc:ben": "ben.test", "did:plc:hid": "hid.test"}
SCHEMAS = {
    "did:plc:ann": ("at://did:plc:ann/io.atdata.schema/s1", ("pixels", "label")),
    "did:plc:ben": ("at://did:plc:ben/io.atdata.schema/s2", ("waveform", "transcript")),
}


@dataclass
class Doc:
    uri: str
    did: str
    name: str
    description: str
    tags: list[str]
    license: str
    samples: int
    created: str
    schema: str | None
    order: int  # insertion order = id order

    def words(self) -> set[str]:
        fields = SCHEMAS[self.did][1] if self.did in SCHEMAS else ()
        text = " ".join([self.name, self.description, *self.tags, *fields])
        return set(text.replace("-", " ").split())


def build_corpus(n: int = 90) -> list[Doc]:
    rng = random.Random(7)
    docs = []
    taken: set[tuple[str, str]] = set()
    for i in range(n):
        did = list(AUTHORS)[i % 3]
        name = " ".join(rng.sample(VOCAB, 2))
        while (did, name) in taken:  # one version per (author, name): each is its own result
            name = " ".join(rng.sample(VOCAB, 2))
        taken.add((did, name))
        docs.append(
            Doc(
                uri=f"at://{did}/{DATASET}/r{i:03d}",
                did=did,
                name=name,
                description=" ".join(rng.sample(VOCAB, 4)),
                tags=sorted(set(rng.sample(TAGS, rng.randint(0, 3)))),
                license=rng.choice(LICENSES),
                samples=rng.choice([5, 50, 500, 5000]),
                created=f"2026-0{1 + i % 9}-{1 + i % 28:02d}T00:00:00.000Z",
                schema=SCHEMAS[did][0] if did in SCHEMAS else None,
                order=i,
            )
        )
    return docs


CORPUS = build_corpus()


@pytest.fixture
def corpus_store(store: Store) -> Store:
    async def seed() -> None:
        async with store.transaction() as tx:
            for did, handle in AUTHORS.items():
                tx.set_repo(did, handle=handle)
            for did, (uri, fields) in SCHEMAS.items():
                tx.upsert_record(
                    did, SCHEMA, uri.rsplit("/", 1)[1], "cs", schema_record("S", fields=fields)
                )
            for d in CORPUS:
                rec = dataset_record(
                    d.name,
                    description=d.description,
                    tags=tuple(d.tags),
                    license=d.license,
                    samples=d.samples,
                    created=d.created,
                    schema=d.schema or "at://did:plc:none/io.atdata.schema/x",
                )
                tx.upsert_record(d.did, DATASET, d.uri.rsplit("/", 1)[1], "c", rec, "r1")
        async with store.transaction() as tx:
            tx.set_repo("did:plc:hid", status="takendown")

    run(seed())
    return store


VISIBLE = [d for d in CORPUS if d.did != "did:plc:hid"]


def search(store: Store, **params: object) -> tuple[list[str], dict]:
    page = run(store.read(search_datasets, SearchParams(**params)))
    return [d["uri"] for d in page.datasets], page.facets


def walk(store: Store, limit: int, **params: object) -> list[str]:
    """Every page of a query, following cursors."""
    seen: list[str] = []
    cursor = None
    for _ in range(200):
        page = run(store.read(search_datasets, SearchParams(limit=limit, cursor=cursor, **params)))
        seen += [d["uri"] for d in page.datasets]
        cursor = page.cursor
        if cursor is None:
            return seen
    raise AssertionError("pagination did not end")


def expect(q: str | None = None, **f: object) -> list[Doc]:
    out = []
    for d in VISIBLE:
        if q and not set(q.split()) <= d.words():
            continue
        if any(t not in d.tags for t in f.get("tags", [])):
            continue
        if f.get("license") and d.license != f["license"]:
            continue
        if f.get("schema") and d.schema != f["schema"]:
            continue
        if f.get("author") and f["author"] not in (d.did, AUTHORS[d.did]):
            continue
        if f.get("min_samples") is not None and d.samples < f["min_samples"]:
            continue
        if f.get("max_samples") is not None and d.samples > f["max_samples"]:
            continue
        out.append(d)
    return out


@pytest.mark.parametrize(
    "q", ["galaxy", "protein ocean", "chess music robot", "pixels", "transcript"]
)
def test_every_word_must_match_in_any_indexed_text(corpus_store: Store, q: str) -> None:
    got = walk(corpus_store, 100, q=q)
    assert len(got) == len(set(got))
    assert set(got) == {d.uri for d in expect(q)}


def test_name_matches_rank_above_description_matches(corpus_store: Store) -> None:
    got, _ = search(corpus_store, q="weather", limit=100)
    in_name = [d.uri for d in expect("weather") if "weather" in d.name.split()]
    assert in_name and set(got[: len(in_name)]) == set(in_name)


def tier(doc: Doc, q: str) -> int:
    """The relevance tier model: 0 all words in the name, 1 in name/tags/schema fields, 2 any."""
    wanted = set(q.split())
    fields = SCHEMAS[doc.did][1] if doc.did in SCHEMAS else ()
    if wanted <= set(doc.name.split()):
        return 0
    if wanted <= set(" ".join([doc.name, *doc.tags, *fields]).replace("-", " ").split()):
        return 1
    return 2


@pytest.mark.parametrize("q", ["weather", "galaxy ocean", "pixels", "vision speech", "audio"])
def test_relevance_orders_by_tier_then_newest(corpus_store: Store, q: str) -> None:
    want = sorted(expect(q), key=lambda d: (tier(d, q), -d.order))
    assert walk(corpus_store, 4, q=q) == [d.uri for d in want]


FILTERS = [
    {"tags": ["vision"]},
    {"tags": ["vision", "audio"]},
    {"tags": ["computer-vision"]},
    {"license": "MIT"},
    {"schema": SCHEMAS["did:plc:ben"][0]},
    {"author": "did:plc:ann"},
    {"author": "ben.test"},
    {"min_samples": 50, "max_samples": 500},
    {"tags": ["text"], "license": "CC-BY-4.0", "min_samples": 6},
]


@pytest.mark.parametrize("filters", FILTERS)
@pytest.mark.parametrize("q", [None, "galaxy"])
def test_filters_alone_and_with_text(corpus_store: Store, q: str | None, filters: dict) -> None:
    got = walk(corpus_store, 100, q=q, **filters)
    assert set(got) == {d.uri for d in expect(q, **filters)}


def test_tags_match_exactly(corpus_store: Store) -> None:
    vision, _ = search(corpus_store, tags=["vision"], limit=100)
    cv, _ = search(corpus_store, tags=["computer-vision"], limit=100)
    assert {u for u in cv} == {d.uri for d in VISIBLE if "computer-vision" in d.tags}
    assert {u for u in vision} == {d.uri for d in VISIBLE if "vision" in d.tags}


@pytest.mark.parametrize("q", [None, "ocean"])
@pytest.mark.parametrize("tags", [[], ["audio"]])
def test_sorts_by_created_and_samples(corpus_store: Store, q: str | None, tags: list[str]) -> None:
    docs = expect(q, tags=tags)
    by_created = sorted(docs, key=lambda d: (d.created, d.order), reverse=True)
    by_samples = sorted(docs, key=lambda d: (d.samples, d.order), reverse=True)
    assert walk(corpus_store, 100, q=q, tags=tags, sort="created") == [d.uri for d in by_created]
    assert walk(corpus_store, 100, q=q, tags=tags, sort="samples") == [d.uri for d in by_samples]
    if q is None:  # relevance without words browses newest first
        assert walk(corpus_store, 100, tags=tags) == [d.uri for d in by_created]


@pytest.mark.parametrize(
    "params",
    [
        {"q": "forest"},
        {"q": "galaxy", "sort": "samples"},
        {"sort": "created"},
        {"tags": ["tabular"], "sort": "samples"},
        {"q": "soccer", "tags": ["biology"]},
        {"min_samples": 500},
    ],
)
def test_cursor_pages_are_stable_and_complete(corpus_store: Store, params: dict) -> None:
    whole, _ = search(corpus_store, limit=100, **params)
    for size in (1, 7, 25):
        paged = walk(corpus_store, size, **params)
        assert paged == whole


def test_facets_count_tags_and_licenses_of_the_matches(corpus_store: Store) -> None:
    for q, tags in ((None, []), ("music", []), (None, ["audio"])):
        _, facets = search(corpus_store, q=q, tags=tags, limit=3)
        docs = expect(q, tags=tags)
        tag_counts = Counter(t for d in docs for t in d.tags)
        assert facets["tags"] == dict(tag_counts)
        assert facets["licenses"] == dict(Counter(d.license for d in docs))


def test_hidden_authors_never_appear(corpus_store: Store) -> None:
    everything = walk(corpus_store, 50)
    assert len(everything) == len(VISIBLE)
    assert not any("did:plc:hid" in uri for uri in everything)
    assert walk(corpus_store, 50, author="hid.test") == []


def test_items_carry_the_search_view(corpus_store: Store) -> None:
    page = run(corpus_store.read(search_datasets, SearchParams(author="did:plc:ben", limit=1)))
    item = page.datasets[0]
    doc = next(d for d in CORPUS if d.uri == item["uri"])
    assert item["handle"] == "ben.test" and item["name"] == doc.name
    assert item["samples"] == doc.samples and item["license"] == doc.license
    assert item["schema"] == {"uri": SCHEMAS["did:plc:ben"][0], "name": "S", "version": "1.0.0"}
    assert item["createdAt"] == doc.created and item["tags"] == doc.tags


def test_a_cursor_only_works_for_its_own_sort(corpus_store: Store) -> None:
    page = run(corpus_store.read(search_datasets, SearchParams(sort="created", limit=2)))
    with pytest.raises(BadCursor):
        run(corpus_store.read(search_datasets, SearchParams(sort="samples", cursor=page.cursor)))


@pytest.mark.parametrize("q", ["galaxy", "ocean", "audio"])
def test_relevance_ranks_window_by_window_over_every_match(
    corpus_store: Store, q: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past WINDOW matches, each window of newest matches is ranked on its own; paging
    crosses windows without losing or repeating anything."""
    monkeypatch.setattr(search_module, "WINDOW", 7)
    # PostgreSQL: several id-range probes of 4-id GIN blocks, however few the matches
    monkeypatch.setattr(search_module, "PG_FIRST_SPAN", 3)
    monkeypatch.setattr(search_module, "PG_UNBOUNDED_BELOW", 0)
    monkeypatch.setattr(search_module, "PG_ID_BLOCK_BITS", 2)
    # (a tiny unanalyzed table has no word statistics: start from a dense guess)
    monkeypatch.setattr(search_module, "_pg_estimate", lambda conn, q: 1e6)
    newest = sorted(expect(q), key=lambda d: -d.order)
    assert len(newest) > 14  # several windows
    want = []
    for k in range(0, len(newest), 7):
        want += sorted(newest[k : k + 7], key=lambda d: (tier(d, q), -d.order))
    for size in (1, 3, 10, 100):
        assert walk(corpus_store, size, q=q) == [d.uri for d in want]


@pytest.mark.parametrize("probes", [False, True])
def test_text_with_a_tag_whose_token_collides(
    corpus_store: Store, probes: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ "computervision" and "computer-vision" share a full-text tag token; only the exact tag
    matches, also when the newest matches are found by id-range probes."""
    if probes:
        monkeypatch.setattr(search_module, "WINDOW", 3)
        monkeypatch.setattr(search_module, "PG_UNBOUNDED_BELOW", 0)
        monkeypatch.setattr(search_module, "PG_ID_BLOCK_BITS", 1)
        monkeypatch.setattr(search_module, "_pg_estimate", lambda conn, q: 1e6)

    async def add() -> None:
        async with corpus_store.transaction() as tx:
            for k in range(4):
                rec = dataset_record("galaxy twin", tags=("computervision",))
                tx.upsert_record("did:plc:ann", DATASET, f"twin{k}", "c", rec, "r2")

    run(add())
    want = expect("galaxy", tags=["computer-vision"])
    got = walk(corpus_store, 2, q="galaxy", tags=["computer-vision"])
    assert want and set(got) == {d.uri for d in want} and len(got) == len(want)


@pytest.mark.parametrize("q", ["digits-081821", "digits 081821", "081821", "v2.1-beta", "beta"])
def test_names_with_hyphens_and_digits_are_found_by_their_words(store: Store, q: str) -> None:
    # PostgreSQL's parser indexed "digits-081821" as 'digit' and the integer '-081821', so a
    # search for those words found nothing there (SQLite found it)
    async def seed() -> None:
        async with store.transaction() as tx:
            tx.set_repo("did:plc:hy", handle="hy.test")
            tx.upsert_record(
                "did:plc:hy", DATASET, "a", "c", dataset_record("digits-081821 v2.1-beta"), "r1"
            )

    run(seed())
    uris, _ = search(store, q=q)
    assert uris == ["at://did:plc:hy/io.atdata.dataset/a"]
