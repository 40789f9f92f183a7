"""Lineage in the index: `derivedFrom` edges, io.atdata.getLineage and the dataset page.

On a seeded index (SQLite and PostgreSQL) a derivation graph spanning two authors: ancestors
and descendants with their depth and relation, depth limits, cycles and diamonds reported once,
edges that follow updates and deletes, hidden repos left out, bad parameters answered with
400s. On the devnet: datasets published from two PDSes with `derived_from=` (and a lens
conversion through `Dataset.as_type`) come back from the live AppView's getLineage.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from _fixtures.appview_index import DATASET, LENS, ServedApp, dataset_record, run
from _fixtures.services import login
from atdata_appview.app import create_app
from atdata_appview.db import Store

A, B = "did:plc:alice", "did:plc:bob"


def uri(did: str, rkey: str) -> str:
    return f"at://{did}/{DATASET}/{rkey}"


def derived(name: str, *sources: tuple[str, str], lens: str | None = None) -> dict:
    rec = dataset_record(name)
    rec["derivedFrom"] = [
        {"dataset": {"uri": src, "cid": f"bafy{src[-4:]}"}, "relation": rel}
        | ({"lens": {"uri": lens, "cid": "bafylens"}} if lens else {})
        for src, rel in sources
    ]
    return rec


# raw (A) -> clean (A, subset) -> gray (B, converted by a lens) -> aug (B, augmented)
#                                  clean + other (B) -> merged (B, merged)
RAW, CLEAN, GRAY, AUG, OTHER, MERGED = (
    uri(A, "raw"),
    uri(A, "clean"),
    uri(B, "gray"),
    uri(B, "aug"),
    uri(B, "other"),
    uri(B, "merged"),
)
LENS_URI = f"at://{B}/{LENS}/gray"
GONE = uri("did:plc:elsewhere", "never-indexed")


def seed(store: Store) -> None:
    async def go() -> None:
        async with store.transaction() as tx:
            tx.set_repo(A, handle="alice.test", pds="http://127.0.0.1:1")
            tx.set_repo(B, handle="bob.test", pds="http://127.0.0.1:2")
            raw = derived("raw", (GONE, "other"))
            raw["version"] = "2.0.0"
            tx.upsert_record(A, DATASET, "raw", "bafyraw", raw)
            tx.upsert_record(A, DATASET, "clean", "bafyclean", derived("clean", (RAW, "subset")))
            tx.upsert_record(
                B, DATASET, "gray", "bafygray", derived("gray", (CLEAN, "converted"), lens=LENS_URI)
            )
            tx.upsert_record(B, DATASET, "aug", "bafyaug", derived("aug", (GRAY, "augmented")))
            tx.upsert_record(B, DATASET, "other", "bafyother", dataset_record("other"))
            tx.upsert_record(
                B,
                DATASET,
                "merged",
                "bafymerged",
                derived("merged", (CLEAN, "merged"), (OTHER, "merged")),
            )

    run(go())


@pytest.fixture
def served(store: Store) -> str:
    seed(store)
    with ServedApp(lambda: create_app(store)) as app:
        yield app.url


def lineage(url: str, of: str, **params: object) -> dict:
    r = httpx.get(f"{url}/xrpc/io.atdata.getLineage", params={"uri": of, **params}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def summary(items: list[dict]) -> set[tuple[str, str, int]]:
    return {(x["uri"], x["relation"], x["depth"]) for x in items}


def test_ancestors_and_descendants_across_authors(served: str) -> None:
    out = lineage(served, GRAY)
    assert out["uri"] == GRAY
    assert summary(out["ancestors"]) == {
        (CLEAN, "converted", 1),
        (RAW, "subset", 2),
        (GONE, "other", 3),
    }
    assert summary(out["descendants"]) == {(AUG, "augmented", 1)}
    by_uri = {x["uri"]: x for x in out["ancestors"]}
    clean = by_uri[CLEAN]
    assert clean["name"] == "clean" and clean["handle"] == "alice.test"
    assert clean["cid"] == "bafy" + CLEAN[-4:]  # the CID the edge pinned, not the indexed one
    assert clean["lens"] == LENS_URI and clean["of"] == GRAY and clean["indexed"] is True
    assert by_uri[RAW]["version"] == "2.0.0"
    assert by_uri[GONE]["indexed"] is False and "name" not in by_uri[GONE]

    down = lineage(served, RAW)
    assert summary(down["descendants"]) == {
        (CLEAN, "subset", 1),
        (GRAY, "converted", 2),
        (MERGED, "merged", 2),
        (AUG, "augmented", 3),
    }
    assert {x["handle"] for x in down["descendants"]} == {"alice.test", "bob.test"}
    assert {x["cid"] for x in down["descendants"] if x["uri"] == MERGED} == {"bafymerged"}


def test_depth_limits(served: str) -> None:
    assert summary(lineage(served, RAW, depth=1)["descendants"]) == {(CLEAN, "subset", 1)}
    assert {x["depth"] for x in lineage(served, RAW, depth=2)["descendants"]} == {1, 2}
    assert summary(lineage(served, AUG, depth=1)["ancestors"]) == {(GRAY, "augmented", 1)}
    assert len(lineage(served, AUG, depth=10)["ancestors"]) == 4  # gray, clean, raw, gone
    assert len(lineage(served, AUG)["ancestors"]) == 3  # default depth 3


@pytest.mark.parametrize(
    "params",
    [
        {"depth": "11"},
        {"depth": "0"},
        {"depth": "two"},
        {"uri": "not-a-uri"},
        {"uri": ""},
        {"uri": None},
    ],
)
def test_bad_parameters_are_400s(served: str, params: dict) -> None:
    query = {"uri": RAW, **params}
    query = {k: v for k, v in query.items() if v is not None}
    r = httpx.get(f"{served}/xrpc/io.atdata.getLineage", params=query, timeout=10)
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "InvalidRequest"


def test_unknown_dataset_is_404(served: str) -> None:
    r = httpx.get(f"{served}/xrpc/io.atdata.getLineage", params={"uri": GONE}, timeout=10)
    assert r.status_code == 404 and r.json()["error"] == "NotFound"


def test_handle_uris_resolve(served: str) -> None:
    out = lineage(served, GRAY.replace(B, "bob.test"))
    assert out["uri"] == GRAY and len(out["ancestors"]) == 3


def test_cycles_and_diamonds_are_reported_once(store: Store) -> None:
    from atdata_appview.db.lineage import get_lineage

    x, y, z = uri(A, "x"), uri(A, "y"), uri(A, "z")

    async def go() -> None:
        async with store.transaction() as tx:
            tx.set_repo(A, handle="alice.test")
            tx.upsert_record(A, DATASET, "x", "cx", derived("x", (z, "other")))
            tx.upsert_record(A, DATASET, "y", "cy", derived("y", (x, "subset")))
            tx.upsert_record(A, DATASET, "z", "cz", derived("z", (y, "subset"), (x, "merged")))

    run(go())
    out = store.read_sync(get_lineage, x, 10)
    assert summary(out["ancestors"]) == {(z, "other", 1), (y, "subset", 2)}
    assert summary(out["descendants"]) == {(y, "subset", 1), (z, "merged", 1)}


def test_edges_follow_updates_deletes_and_hidden_repos(store: Store) -> None:
    from atdata_appview.db.lineage import get_lineage

    seed(store)

    async def change() -> None:
        async with store.transaction() as tx:  # gray now derives from other, not clean
            tx.upsert_record(B, DATASET, "gray", "bafygray2", derived("gray", (OTHER, "subset")))
            tx.delete_record(B, DATASET, "merged")

    run(change())
    assert summary(store.read_sync(get_lineage, GRAY)["ancestors"]) == {(OTHER, "subset", 1)}
    assert store.read_sync(get_lineage, CLEAN)["descendants"] == []

    async def hide() -> None:
        async with store.transaction() as tx:
            tx.set_repo(B, status="takendown")

    run(hide())
    assert store.read_sync(get_lineage, RAW)["descendants"] == [
        {
            "uri": CLEAN,
            "cid": "bafyclean",
            "relation": "subset",
            "depth": 1,
            "of": RAW,
            "indexed": True,
            "name": "clean",
            "handle": "alice.test",
            "version": "0.0.0",  # the record has none
        }
    ]
    assert store.read_sync(get_lineage, GRAY) is None


def test_malformed_derived_from_indexes_without_edges(store: Store) -> None:
    from atdata_appview.db.lineage import get_lineage

    rec = dataset_record("odd")
    rec["derivedFrom"] = [
        "at://not/a/ref",
        {"dataset": "x"},
        {"dataset": {"uri": "at://" + "a" * 600, "cid": "c"}, "relation": "subset"},
        {"dataset": {"uri": RAW, "cid": "c" * 500}, "relation": "r" * 100},
        {"dataset": {"uri": RAW, "cid": "again"}, "relation": "subset"},
    ]

    async def go() -> None:
        async with store.transaction() as tx:
            tx.upsert_record(A, DATASET, "odd", "cid-odd", rec)
            tx.upsert_record(A, DATASET, "raw", "bafyraw", dataset_record("raw"))

    run(go())
    (edge,) = store.read_sync(get_lineage, uri(A, "odd"))["ancestors"]
    assert edge["uri"] == RAW and edge["cid"] == "bafyraw" and edge["relation"] == "r" * 64


# -- published on the devnet, indexed live -----------------------------------------------------


@pytest.mark.devnet
def test_lineage_across_two_pdses(devnet: Any, make_account: Any, index_url: str, tmp_path: Any):
    """A publishes a dataset on PDS 1; B (PDS 2) publishes a subset of it, then a conversion
    of that through a published lens (`as_type`); A merges things. The AppView following both
    PDSes answers getLineage across them, through `AppViewClient.get_lineage`."""
    import atdata
    from _fixtures.ingest import wait_for, ws_url
    from _fixtures.newcomer import Glyph, GlyphLabel, glyph_label, glyphs
    from atdata import AppViewClient
    from atdata.atmosphere import load_dataset
    from atdata_appview.ingest import IngestService

    a, b = make_account(0), make_account(1)
    ca, cb = login(a), login(b)
    infos = atdata.write_samples(glyphs(12), str(tmp_path / "g-%06d.tar"), maxcount=4)
    base = ca.publish_dataset(infos, name="lin-base", schema=Glyph, progress=False)
    loaded = load_dataset(str(base), sample_type=Glyph)
    assert (loaded.uri, loaded.cid) == (str(base), base.cid)
    subset = cb.publish_dataset(
        infos[:2], name="lin-subset", schema=Glyph, derived_from=[(loaded, "subset")],
        progress=False,
    )  # fmt: skip
    lens_ref = cb.publish_lens(glyph_label, repo_url="https://example.com/atdata-tests.git")
    glyph_label.record = None  # as in a new process: found again in B's own repo
    view = load_dataset(str(subset), sample_type=Glyph).as_type(GlyphLabel)
    labels = cb.publish_dataset(view, name="lin-labels", progress=False)
    assert cb.get_record(str(labels)).value["derivedFrom"] == [
        {
            "dataset": {"uri": str(subset), "cid": subset.cid},
            "relation": "converted",
            "lens": lens_ref.strong_ref(),
        }
    ]
    assert [s.label for s in load_dataset(str(labels), sample_type=GlyphLabel).ordered()] == [
        g.label for g in glyphs(12)[:8]
    ]
    merged = ca.publish_dataset(
        infos, name="lin-merged", schema=Glyph, progress=False,
        derived_from=[str(base), (str(labels), "merged")],  # plain URIs: pinned by fetching
    )  # fmt: skip
    assert [d["dataset"]["cid"] for d in ca.get_record(str(merged)).value["derivedFrom"]] == [
        base.cid,
        labels.cid,
    ]

    async def go() -> None:
        store = Store(index_url)
        svc = IngestService(
            store, [ws_url(p.url) for p in devnet.pds], devnet.plc_url, batch_interval=0.1
        )
        task = asyncio.create_task(svc.run())
        served = ServedApp(lambda: create_app(store))
        try:
            with served:
                from atdata_appview.db.lineage import get_lineage

                async def indexed() -> bool:
                    for ref in (base, subset, labels, merged):
                        if await store.read(get_lineage, str(ref), 1) is None:
                            return False
                    return True

                await wait_for(indexed, 60)
                with AppViewClient(served.url) as av:
                    got = await asyncio.to_thread(av.get_lineage, str(labels), 10)
                    shallow = await asyncio.to_thread(av.get_lineage, str(base), 1)
            ancestors = {x.uri: x for x in got.ancestors}
            assert set(ancestors) == {str(subset), str(base)}
            assert ancestors[str(subset)].relation == "converted"
            assert ancestors[str(subset)].lens == str(lens_ref)
            assert ancestors[str(subset)].handle == b.handle
            assert (ancestors[str(base)].depth, ancestors[str(base)].handle) == (2, a.handle)
            assert ancestors[str(base)].cid == base.cid and ancestors[str(base)].name == "lin-base"
            assert [(x.uri, x.relation, x.depth) for x in got.descendants] == [
                (str(merged), "merged", 1)
            ]
            assert {(x.uri, x.relation, x.depth) for x in shallow.descendants} == {
                (str(subset), "subset", 1),
                (str(merged), "other", 1),
            }
        finally:
            await svc.stop()
            await asyncio.wait_for(task, 30)
            store.close()

    asyncio.run(go())


def test_migration_backfills_edges_of_indexed_records(index_url: str) -> None:
    """Records indexed before the lineage table existed get their edges when it is created."""
    from atdata_appview.db import make_engine, migrate
    from atdata_appview.db.lineage import get_lineage
    from atdata_appview.db.models import dataset_records
    from sqlalchemy import text

    engine = make_engine(index_url)
    migrate(engine, "0001")
    plain = dataset_record("raw")
    child = derived("clean", (RAW, "subset"))
    with engine.begin() as conn:
        for ds_id, rkey, rec in ((1, "raw", plain), (2, "clean", child)):
            conn.execute(
                text(
                    "INSERT INTO datasets (id, uri, did, rkey, cid, name, hidden)"
                    " VALUES (:id, :uri, :did, :rkey, :cid, :name, :hidden)"
                ),
                {
                    "id": ds_id,
                    "uri": uri(A, rkey),
                    "did": A,
                    "rkey": rkey,
                    "cid": f"c{rkey}",
                    "name": rkey,
                    "hidden": False,
                },  # fmt: skip
            )
            conn.execute(dataset_records.insert().values(dataset_id=ds_id, record=rec))
    migrate(engine)
    try:
        with engine.connect() as conn:
            out = get_lineage(conn, RAW)
        assert out is not None
        assert summary(out["descendants"]) == {(CLEAN, "subset", 1)}
    finally:
        engine.dispose()


def test_derived_from_is_checked_before_anything_is_published(tmp_path: Any) -> None:
    import atdata
    from _fixtures.newcomer import glyphs
    from atdata.atmosphere import PublishError, RecordRef
    from atdata.atmosphere.lineage import derivation_entries

    def no_fetch(at_uri: str) -> Any:
        raise AssertionError(f"{at_uri} was fetched: a RecordRef carries its CID")

    raw, clean = RecordRef(RAW, "bafyraw"), RecordRef(CLEAN, "bafyclean")
    assert derivation_entries([raw, (clean, "subset")], no_fetch, list) == [
        {"dataset": {"uri": RAW, "cid": "bafyraw"}, "relation": "other"},
        {"dataset": {"uri": CLEAN, "cid": "bafyclean"}, "relation": "subset"},
    ]
    local = atdata.Dataset(
        [i.path for i in atdata.write_samples(glyphs(2), str(tmp_path / "g-%06d.tar"))]
    )
    for bad, message in [
        ([(raw, "borrowed")], "unknown lineage relation 'borrowed'"),
        ([raw, (raw, "subset")], "names .* twice"),
        ([local], "has no at:// URI"),
        (["https://example.com/data"], "needs at:// URIs"),
        ([42], "not int"),
        ([(raw, "subset", "extra")], "pairs are"),
    ]:
        with pytest.raises(PublishError, match=message):
            derivation_entries(bad, no_fetch, list)
