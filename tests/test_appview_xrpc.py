"""The AppView's HTTP surface on a real server: XRPC methods, error bodies, health, metrics."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx
import pytest
from _fixtures.appview_index import (
    DATASET,
    LENS,
    SCHEMA,
    ServedApp,
    dataset_record,
    lens_record,
    run,
    schema_record,
)
from atdata_appview.db import Store
from atdata_appview.ingest import IngestService

A, B = "did:plc:alice", "did:plc:bob"


def s_uri(did: str, rkey: str) -> str:
    return f"at://{did}/{SCHEMA}/{rkey}"


S1, S1_V2, S2, S3, S4, S5 = (
    s_uri(A, "img-v1"),
    s_uri(A, "img-v2"),
    s_uri(A, "gray"),
    s_uri(B, "vec"),
    s_uri(B, "tmp1"),
    s_uri(B, "tmp2"),
)
DS = f"at://{A}/{DATASET}/digits"


@pytest.fixture
def seeded(store: Store) -> Store:
    async def seed() -> None:
        async with store.transaction() as tx:
            tx.set_repo(A, handle="alice.test", pds="http://127.0.0.1:1")
            tx.set_repo(B, handle="bob.test", pds="http://127.0.0.1:2")
            img1 = schema_record("ImageSample", "1.0.0", ("image", "label"))
            img2 = schema_record("ImageSample", "2.0.0", ("image", "label", "source"))
            img2["createdAt"] = "2026-02-01T00:00:00.000Z"
            tx.upsert_record(A, SCHEMA, "img-v1", "cs1", img1)
            tx.upsert_record(A, SCHEMA, "img-v2", "cs1b", img2)
            tx.upsert_record(B, SCHEMA, "img-b", "csb", schema_record("ImageSample", "9.0.0"))
            for rkey, name in (("gray", "Gray"), ("vec", "Vec"), ("tmp1", "T1"), ("tmp2", "T2")):
                did = A if rkey == "gray" else B
                tx.upsert_record(did, SCHEMA, rkey, "c", schema_record(name))
            rec = dataset_record(
                "digits",
                description="handwritten digits 8x8",
                tags=("vision", "small"),
                samples=1797,
                schema=S1,
                shards=2,
            )
            tx.upsert_record(A, DATASET, "digits", "cd", rec, "r1")
            tx.upsert_record(B, DATASET, "other", "co", dataset_record("other", schema=S3), "r1")
            # S1 -> S2 -> S3 (two hops) and S1 -> S4 -> S5 -> S3 (three hops)
            for rkey, src, dst, did in (
                ("a", S1, S2, A),
                ("b", S2, S3, B),
                ("c", S1, S4, B),
                ("d", S4, S5, B),
                ("e", S5, S3, B),
                ("f", S3, S1, B),
            ):
                tx.upsert_record(
                    did, LENS, rkey, f"cl{rkey}", lens_record(f"lens-{rkey}", src, dst)
                )
            tx.save_cursor("ws://127.0.0.1:1", 41)

    run(seed())
    return store


@pytest.fixture
def api(seeded: Store, serve_store: Callable[..., ServedApp]) -> httpx.Client:
    app = serve_store(seeded)
    with httpx.Client(base_url=app.url, timeout=30) as client:
        yield client


def xrpc(api: httpx.Client, nsid: str, params: object = None) -> httpx.Response:
    return api.get(f"/xrpc/io.atdata.{nsid}", params=params)


@pytest.mark.parametrize(
    ("nsid", "params", "error", "mentions"),
    [
        ("searchDatasets", {"limit": "0"}, "InvalidRequest", "limit"),
        ("searchDatasets", {"limit": "101"}, "InvalidRequest", "limit"),
        ("searchDatasets", {"limit": "many"}, "InvalidRequest", "limit"),
        ("searchDatasets", {"sort": "popular"}, "InvalidRequest", "sort"),
        ("searchDatasets", {"minSamples": "-1"}, "InvalidRequest", "minSamples"),
        ("searchDatasets", {"schema": "not-a-uri"}, "InvalidRequest", "schema"),
        ("searchDatasets", {"author": "not a handle"}, "InvalidRequest", "author"),
        ("searchDatasets", {"colour": "red"}, "InvalidRequest", "colour"),
        ("searchDatasets", {"cursor": "garbage!"}, "BadCursor", "cursor"),
        ("searchDatasets", [("sort", "created"), ("sort", "samples")], "InvalidRequest", "sort"),
        ("getDataset", {}, "InvalidRequest", "uri"),
        ("getDataset", {"uri": "https://example.com/x"}, "InvalidRequest", "uri"),
        ("getSchema", {}, "InvalidRequest", "uri"),
        ("findLensPath", {"source": S1}, "InvalidRequest", "target"),
        ("listLenses", {"limit": "1000"}, "InvalidRequest", "limit"),
        ("listSchemas", {"cursor": "xyz"}, "BadCursor", "cursor"),
    ],
)
def test_bad_parameters_get_400_with_an_xrpc_error_body(
    api: httpx.Client, nsid: str, params: object, error: str, mentions: str
) -> None:
    resp = xrpc(api, nsid, params)
    assert resp.status_code == 400
    body = resp.json()
    assert set(body) == {"error", "message"} and body["error"] == error
    assert mentions in body["message"]


def test_unknown_method_and_missing_records(api: httpx.Client) -> None:
    resp = api.get("/xrpc/io.atdata.nope")
    assert resp.status_code == 501 and resp.json()["error"] == "MethodNotImplemented"
    for nsid, uri in (("getDataset", f"at://{A}/{DATASET}/missing"), ("getSchema", s_uri(A, "x"))):
        resp = xrpc(api, nsid, {"uri": uri})
        assert resp.status_code == 404 and resp.json()["error"] == "NotFound"


def test_search_datasets_output_shape(api: httpx.Client) -> None:
    resp = xrpc(api, "searchDatasets", [("q", "handwritten"), ("tag", "vision"), ("tag", "small")])
    assert resp.status_code == 200
    body = resp.json()
    assert set(body) == {"datasets", "facets"}  # no cursor: one page
    (item,) = body["datasets"]
    assert set(item) == {
        "uri", "cid", "did", "handle", "name", "description", "tags", "license", "samples",
        "bytes", "schema", "createdAt", "version", "versions", "newest", "family",
    }  # fmt: skip
    assert item["family"] == "io.atdata"
    assert (item["version"], item["versions"], item["newest"]) == ("0.0.0", 1, True)
    assert item["uri"] == DS and item["handle"] == "alice.test" and item["samples"] == 1797
    assert item["schema"] == {"uri": S1, "name": "ImageSample", "version": "1.0.0"}
    assert body["facets"] == {"tags": {"small": 1, "vision": 1}, "licenses": {"MIT": 1}}
    paged = xrpc(api, "searchDatasets", {"limit": "1", "sort": "created"}).json()
    assert len(paged["datasets"]) == 1 and paged["cursor"]
    rest = xrpc(api, "searchDatasets", {"limit": "1", "sort": "created", "cursor": paged["cursor"]})
    assert rest.json()["datasets"][0]["uri"] != paged["datasets"][0]["uri"]


def test_get_dataset_holds_record_schema_author_shards_and_lenses(api: httpx.Client) -> None:
    body = xrpc(api, "getDataset", {"uri": DS}).json()
    assert body["record"]["name"] == "digits" and body["record"]["totals"]["samples"] == 1797
    assert body["author"] == {"did": A, "handle": "alice.test", "pds": "http://127.0.0.1:1"}
    assert body["schema"]["uri"] == S1 and body["schema"]["fields"] == ["image", "label"]
    assert body["schema"]["record"]["version"] == "1.0.0"
    assert [s["url"].rsplit("/", 1)[1] for s in body["shards"]] == [
        "digits-000000.tar",
        "digits-000001.tar",
    ]
    assert all(s["sha256"] == "ab" * 32 and s["samples"] == 898 for s in body["shards"])
    assert {x["name"] for x in body["lenses"]["from"]} == {"lens-a", "lens-c"}
    assert {x["name"] for x in body["lenses"]["to"]} == {"lens-f"}


def test_schemas_list_and_versions(api: httpx.Client) -> None:
    body = xrpc(api, "getSchema", {"uri": S1}).json()
    assert body["record"]["fields"][0]["name"] == "image"
    assert [v["version"] for v in body["versions"]] == ["2.0.0", "1.0.0"]  # same author only
    listed = xrpc(api, "listSchemas", {"name": "ImageSample"}).json()["schemas"]
    assert {(s["did"], s["version"]) for s in listed} == {
        (A, "1.0.0"),
        (A, "2.0.0"),
        (B, "9.0.0"),
    }
    by_bob = xrpc(api, "listSchemas", {"name": "ImageSample", "author": "bob.test"}).json()
    assert [s["version"] for s in by_bob["schemas"]] == ["9.0.0"]
    seen, cursor = [], None
    while True:
        page = xrpc(api, "listSchemas", {"limit": "2", **({"cursor": cursor} if cursor else {})})
        body = page.json()
        seen += [s["uri"] for s in body["schemas"]]
        cursor = body.get("cursor")
        if not cursor:
            break
    assert len(seen) == len(set(seen)) == 7


def test_lenses_by_source_and_target(api: httpx.Client) -> None:
    from_s1 = xrpc(api, "listLenses", {"source": S1}).json()["lenses"]
    assert {x["target"] for x in from_s1} == {S2, S4}
    to_s3 = xrpc(api, "listLenses", {"target": S3}).json()["lenses"]
    assert {x["name"] for x in to_s3} == {"lens-b", "lens-e"}
    both = xrpc(api, "listLenses", {"source": S2, "target": S3}).json()["lenses"]
    assert [x["name"] for x in both] == ["lens-b"]


def test_find_lens_path_takes_the_shortest_chain(api: httpx.Client) -> None:
    body = xrpc(api, "findLensPath", {"source": S1, "target": S3}).json()
    assert body["found"] and [x["name"] for x in body["path"]] == ["lens-a", "lens-b"]
    assert xrpc(api, "findLensPath", {"source": S1, "target": S1}).json() == {
        "found": True,
        "path": [],
    }
    assert xrpc(api, "findLensPath", {"source": S1, "target": S1_V2}).json() == {
        "found": False,
        "path": [],
    }


def test_health_and_describe_service(api: httpx.Client) -> None:
    assert api.get("/_health").json() == {"status": "ok"}
    body = xrpc(api, "describeService").json()
    assert body["counts"]["datasets"] == 2 and body["counts"]["lenses"] == 6
    assert body["counts"]["schemas"] == 7 and body["counts"]["repos"] == 2
    assert body["hosts"] == [
        {"host": "ws://127.0.0.1:1", "cursor": 41, "updatedAt": body["hosts"][0]["updatedAt"]}
    ]


_SAMPLE = re.compile(r'^[a-z_]+(\{([a-z]+="[^"]*",?)+\})? -?[0-9.e+]+$|^# (HELP|TYPE) .+$')


def test_metrics_are_prometheus_text_and_include_ingest(
    seeded: Store, serve_store: Callable[..., ServedApp]
) -> None:
    ingest = IngestService(seeded, ["ws://127.0.0.1:1", "ws://127.0.0.1:9"], "http://127.0.0.1:3")
    app = serve_store(seeded, ingest)
    with httpx.Client(base_url=app.url) as client:
        resp = client.get("/metrics")
        described = client.get("/xrpc/io.atdata.describeService").json()
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")
    lines = resp.text.strip().splitlines()
    assert all(_SAMPLE.match(line) for line in lines), [
        line for line in lines if not _SAMPLE.match(line)
    ]
    samples = {
        k: float(v) for k, _, v in (line.rpartition(" ") for line in lines if line[0] != "#")
    }
    assert samples['atdata_appview_index_records{kind="datasets"}'] == 2
    assert samples['atdata_appview_host_connected{host="ws://127.0.0.1:9"}'] == 0
    for name in ("frames_per_second", "records_indexed_total", "invalid_records_total",
                 "backfill_queue"):  # fmt: skip
        assert any(line.startswith(f"atdata_appview_{name} ") for line in lines), name
    hosts = {h["host"]: h for h in described["hosts"]}
    assert set(hosts) == {"ws://127.0.0.1:1", "ws://127.0.0.1:9"}
    assert (
        hosts["ws://127.0.0.1:1"]["cursor"] == 41
        and hosts["ws://127.0.0.1:9"]["connected"] is False
    )
