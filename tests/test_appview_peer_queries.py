"""The AppView's answers to the atdata 0.7 SDK (``science.alt.dataset.*`` queries) and the
peer family in ``io.atdata.searchDatasets``, on a served app over an index written through
the store's write path (the one ingest commits through)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from _fixtures.appview_index import DATASET, ServedApp, dataset_record, run
from _fixtures.peer_records import (
    PEER_ENTRY,
    PEER_LABEL,
    PEER_LENS,
    PEER_SCHEMA,
    entry_record,
    label_record,
    lens_record,
    schema_record,
)
from atdata_appview.db import Store

A, B = "did:plc:alice", "did:plc:bob"
PDS_A = "http://127.0.0.1:2583"
T1, T2, T3 = (
    "2026-03-01T12:00:00.000000+00:00",
    "2026-03-02T12:00:00.000000+00:00",
    "2026-03-03T12:00:00.000000+00:00",
)


def uri(did: str, collection: str, rkey: str) -> str:
    return f"at://{did}/{collection}/{rkey}"


S_V1, S_V2, S_B = uri(A, PEER_SCHEMA, "s1"), uri(A, PEER_SCHEMA, "s2"), uri(B, PEER_SCHEMA, "sb")
E_HTTP, E_BLOBS, E_S3, E_EXT = (
    uri(A, PEER_ENTRY, "e-http"),
    uri(A, PEER_ENTRY, "e-blobs"),
    uri(A, PEER_ENTRY, "e-s3"),
    uri(B, PEER_ENTRY, "e-ext"),
)
OWN = uri(A, DATASET, "own")

SCHEMA_V1 = schema_record("peer.Sample", "1.0.0", created=T1)
SCHEMA_V2 = schema_record(
    "peer.Sample",
    "1.1.0",
    created=T2,
    fields={"image": {"$ref": "x"}, "caption": {"type": "string"}},
)
#: The newer generation of the ndarray shim's URL (1.1.0, under json-schema.alt.science).
NEW_SHIM = "https://json-schema.alt.science/atdata-ndarray-bytes/1.1.0#/$defs/ndarray"
SCHEMA_B = schema_record(
    "peer.Other",
    "1.0.0",
    form="envelope",
    created=T1,
    fields={"pixels": {"$ref": NEW_SHIM}, "digit": {"type": "integer"}},
)
ENTRIES = {
    E_HTTP: entry_record(
        "street scenes",
        S_V1,
        "http",
        description="photos of streets at night",
        tags=("Vision", "city"),
        created=T1,
    ),
    E_BLOBS: entry_record("street scenes", S_V2, "blobs", tags=("vision",), created=T2),
    E_S3: entry_record("tabular", S_V1, "s3", description="rows", samples=None, created=T3),
    E_EXT: entry_record("legacy digits", S_B, "external", created=T1),
}
LABELS = {
    "l1": label_record("scenes", E_HTTP, "1.0.0", created=T1),
    "l2": label_record("scenes", E_BLOBS, "1.1.0", created=T2),
    "l3": label_record("tab", E_S3, None, created=T3),
}
LENS = lens_record("to-other", S_V1, S_B, created=T2)


def _rkey(at_uri: str) -> str:
    return at_uri.rsplit("/", 1)[1]


def seed(store: Store) -> None:
    """Both families in one index, through the store's write path."""

    async def write() -> None:
        async with store.transaction() as tx:
            tx.set_repo(A, handle="alice.test", pds=PDS_A)
            tx.set_repo(B, handle="bob.test", pds="http://127.0.0.1:2584")
            tx.upsert_record(A, PEER_SCHEMA, "s1", "bafys1", SCHEMA_V1)
            tx.upsert_record(A, PEER_SCHEMA, "s2", "bafys2", SCHEMA_V2)
            tx.upsert_record(B, PEER_SCHEMA, "sb", "bafysb", SCHEMA_B)
            for at_uri, record in ENTRIES.items():
                did = at_uri.split("/")[2]
                tx.upsert_record(did, PEER_ENTRY, _rkey(at_uri), f"bafy{_rkey(at_uri)}", record)
            for rkey, record in LABELS.items():
                tx.upsert_record(A, PEER_LABEL, rkey, f"bafy{rkey}", record)
            tx.upsert_record(A, PEER_LENS, "lens1", "bafylens1", LENS)
            tx.upsert_record(
                A,
                DATASET,
                "own",
                "bafyown",
                dataset_record("street scenes ours", description="our own streets", tags=("city",)),
            )

    run(write())


@pytest.fixture
def sqlite_store(tmp_path: Any) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path / 'index.sqlite'}")
    seed(s)
    yield s
    s.close()


@pytest.fixture
def api(sqlite_store: Store, serve_store: Callable[..., ServedApp]) -> Iterator[httpx.Client]:
    app = serve_store(sqlite_store)
    with httpx.Client(base_url=app.url, timeout=30) as client:
        yield client


def peer(api: httpx.Client, name: str, params: Any = None) -> httpx.Response:
    return api.get(f"/xrpc/science.alt.dataset.{name}", params=params)


def ok(resp: httpx.Response) -> Any:
    assert resp.status_code == 200, resp.text
    return resp.json()


# -- resolveSchema / resolveLabel ------------------------------------------------------------


def test_resolve_schema_gives_the_record_as_published_newest_or_by_version(
    api: httpx.Client,
) -> None:
    newest = ok(peer(api, "resolveSchema", {"handle": A, "schemaId": "peer.Sample"}))
    assert newest == {"uri": S_V2, "cid": "bafys2", "record": SCHEMA_V2}
    pinned = ok(
        peer(api, "resolveSchema", {"handle": A, "schemaId": "peer.Sample", "version": "1.0.0"})
    )
    assert pinned == {"uri": S_V1, "cid": "bafys1", "record": SCHEMA_V1}


@pytest.mark.parametrize(
    "params",
    [
        {"handle": A, "schemaId": "peer.Nothing"},
        {"handle": A, "schemaId": "peer.Sample", "version": "9.9.9"},
        {"handle": B, "schemaId": "peer.Sample"},  # another author's name
        {"handle": "nobody.test", "schemaId": "peer.Sample"},  # a handle the index never saw
    ],
)
def test_resolve_schema_answers_schema_not_found(api: httpx.Client, params: dict) -> None:
    resp = peer(api, "resolveSchema", params)
    assert resp.status_code == 404
    assert resp.json()["error"] == "SchemaNotFound"
    assert params["schemaId"] in resp.json()["message"]


def test_resolve_label_gives_the_newest_label_of_a_name_or_its_version(api: httpx.Client) -> None:
    latest = ok(peer(api, "resolveLabel", {"handle": A, "name": "scenes"}))
    assert latest == {
        "uri": E_BLOBS,  # what the 0.7 SDK loads
        "cid": "bafyl2",
        "labelUri": uri(A, PEER_LABEL, "l2"),
        "label": LABELS["l2"],
    }
    pinned = ok(peer(api, "resolveLabel", {"handle": A, "name": "scenes", "version": "1.0.0"}))
    assert (pinned["uri"], pinned["label"]) == (E_HTTP, LABELS["l1"])


@pytest.mark.parametrize(
    "params",
    [
        {"handle": A, "name": "nothing"},
        {"handle": A, "name": "scenes", "version": "0.1.0"},
        {"handle": B, "name": "scenes"},
    ],
)
def test_resolve_label_answers_label_not_found(api: httpx.Client, params: dict) -> None:
    resp = peer(api, "resolveLabel", params)
    assert resp.status_code == 404
    assert resp.json()["error"] == "LabelNotFound"


# -- entries ---------------------------------------------------------------------------------


def entry_row(at_uri: str) -> dict[str, Any]:
    """What an entry row holds: where it is, then the record's fields as published."""
    record = ENTRIES[at_uri]
    row = {"uri": at_uri, "cid": f"bafy{_rkey(at_uri)}", "did": at_uri.split("/")[2]}
    keys = ("name", "schemaRef", "storage", "createdAt", "description", "tags", "license", "size",
            "metadata")  # fmt: skip
    row |= {k: record[k] for k in keys if k in record}
    return row


def test_get_entry_gives_the_entry_row_and_not_found_for_others(api: httpx.Client) -> None:
    for at_uri in ENTRIES:
        assert ok(peer(api, "getEntry", {"uri": at_uri})) == {"entry": entry_row(at_uri)}
    got = ok(peer(api, "getEntry", {"uri": E_HTTP}))["entry"]
    assert got["tags"] == ["Vision", "city"]  # as published, not as the index folds them
    for missing in (uri(A, PEER_ENTRY, "gone"), OWN):  # ours are not peer entries
        resp = peer(api, "getEntry", {"uri": missing})
        assert resp.status_code == 404
        assert resp.json()["error"] == "NotFound"


def test_get_entries_keeps_the_asked_order_and_leaves_out_unknown_ones(api: httpx.Client) -> None:
    asked = [E_S3, uri(A, PEER_ENTRY, "gone"), E_HTTP, E_S3, OWN]
    got = ok(peer(api, "getEntries", [("uris", u) for u in asked]))
    assert got == {"entries": [entry_row(E_S3), entry_row(E_HTTP)]}


def test_batch_queries_take_at_most_25_uris(api: httpx.Client) -> None:
    for name in ("getEntries", "resolveBlobs"):
        many = [("uris", uri(A, PEER_ENTRY, f"e{i}")) for i in range(26)]
        resp = peer(api, name, many)
        assert resp.status_code == 400
        assert resp.json()["error"] == "InvalidRequest"
        assert "uris" in resp.json()["message"]
        assert ok(peer(api, name, many[:25]))


def test_list_entries_pages_newest_first_with_a_keyset_cursor(api: httpx.Client) -> None:
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 1}
        if cursor:
            params["cursor"] = cursor
        page = ok(peer(api, "listEntries", params))
        seen += [e["uri"] for e in page["entries"]]
        pages += 1
        cursor = page.get("cursor")
        if not cursor:
            break
    assert seen == [E_S3, E_BLOBS, E_HTTP, E_EXT] or seen == [E_S3, E_BLOBS, E_EXT, E_HTTP]
    assert pages == 4
    mine = ok(peer(api, "listEntries", {"repo": B}))
    assert mine == {"entries": [entry_row(E_EXT)]}
    by_handle = ok(peer(api, "listEntries", {"repo": "alice.test", "limit": 10}))
    assert [e["uri"] for e in by_handle["entries"]] == [E_S3, E_BLOBS, E_HTTP]


def test_resolve_blobs_gives_get_blob_urls_on_the_authors_pds(api: httpx.Client) -> None:
    got = ok(peer(api, "resolveBlobs", [("uris", E_BLOBS), ("uris", E_HTTP), ("uris", OWN)]))
    blobs = got["blobs"]
    cids = [b["blob"]["ref"]["$link"] for b in ENTRIES[E_BLOBS]["storage"]["blobs"]]
    assert [b for b in blobs if b["uri"] == E_BLOBS] == [
        {
            "uri": E_BLOBS,
            "cid": cid,
            "url": f"{PDS_A}/xrpc/com.atproto.sync.getBlob?did=did%3Aplc%3Aalice&cid={cid}",
        }
        for cid in cids
    ]
    errors = {b["uri"]: b["error"] for b in blobs if "error" in b}
    assert set(errors) == {E_HTTP, OWN}
    assert "storageHttp" in errors[E_HTTP]


# -- schemas and lenses ----------------------------------------------------------------------


def test_get_and_list_schemas(api: httpx.Client) -> None:
    got = ok(peer(api, "getSchema", {"uri": S_V1}))
    assert got["uri"] == S_V1 and got["did"] == A and got["cid"] == "bafys1"
    assert {k: got[k] for k in ("name", "version", "schemaType", "schema", "createdAt")} == {
        k: SCHEMA_V1[k] for k in ("name", "version", "schemaType", "schema", "createdAt")
    }
    assert got["atdataSchemaVersion"] == 1  # the 0.7 SDK checks it before using a schema
    assert peer(api, "getSchema", {"uri": uri(A, PEER_SCHEMA, "nope")}).status_code == 404
    first = ok(peer(api, "listSchemas", {"limit": 2}))
    assert [s["uri"] for s in first["schemas"]] == [S_V2, S_V1] or [
        s["uri"] for s in first["schemas"]
    ] == [S_V2, S_B]
    rest = ok(peer(api, "listSchemas", {"limit": 2, "cursor": first["cursor"]}))
    assert "cursor" not in rest
    assert {s["uri"] for s in first["schemas"] + rest["schemas"]} == {S_V1, S_V2, S_B}
    assert [s["uri"] for s in ok(peer(api, "listSchemas", {"repo": B}))["schemas"]] == [S_B]


def test_list_and_search_lenses_by_schema(api: httpx.Client) -> None:
    lens = ok(peer(api, "listLenses"))["lenses"]
    assert len(lens) == 1
    assert {k: lens[0][k] for k in ("uri", "did", "name", "sourceSchema", "targetSchema")} == {
        "uri": uri(A, PEER_LENS, "lens1"),
        "did": A,
        "name": "to-other",
        "sourceSchema": S_V1,
        "targetSchema": S_B,
    }
    assert lens[0]["getterCode"] == LENS["getterCode"]
    found = ok(peer(api, "searchLenses", {"sourceSchema": S_V1, "targetSchema": S_B}))
    assert [x["uri"] for x in found["lenses"]] == [lens[0]["uri"]]
    assert ok(peer(api, "searchLenses", {"sourceSchema": S_B})) == {"lenses": []}
    assert ok(peer(api, "listLenses", {"repo": B})) == {"lenses": []}


# -- search ----------------------------------------------------------------------------------


def test_peer_search_finds_entries_by_name_description_tag_and_field(api: httpx.Client) -> None:
    def found(**params: Any) -> list[str]:
        return [e["uri"] for e in ok(peer(api, "searchDatasets", params))["entries"]]

    assert set(found(q="street")) == {E_HTTP, E_BLOBS}  # ours ("street scenes ours") left out
    assert found(q="night") == [E_HTTP]  # description
    assert set(found(q="caption")) == {E_BLOBS}  # a field of its schema (S_V2)
    assert found(q="pixels") == [E_EXT]  # a field of an envelope-form JSON Schema
    assert found(q="street", tags="city") == [E_HTTP]
    assert found(q="street", schemaRef=S_V2) == [E_BLOBS]
    assert found(q="digits", repo=B) == [E_EXT]
    assert found(q="digits", repo=A) == []
    page = ok(peer(api, "searchDatasets", {"q": "street", "limit": 1}))
    assert len(page["entries"]) == 1 and page["entries"][0] == entry_row(page["entries"][0]["uri"])
    rest = ok(peer(api, "searchDatasets", {"q": "street", "limit": 1, "cursor": page["cursor"]}))
    assert {page["entries"][0]["uri"], rest["entries"][0]["uri"]} == {E_HTTP, E_BLOBS}


# -- service ---------------------------------------------------------------------------------


def test_describe_service_and_entry_stats(api: httpx.Client) -> None:
    described = ok(peer(api, "describeService"))
    assert re.fullmatch(r"did:web:127\.0\.0\.1%3A\d+", described["did"])
    assert "science.alt.dataset.entry" in described["availableCollections"]
    assert described["recordCount"]["science.alt.dataset.entry"] == 4
    assert described["recordCount"]["science.alt.dataset.label"] == 3
    before = ok(peer(api, "getEntryStats", {"uri": E_HTTP}))
    assert before == {"views": 0, "searchAppearances": 0, "period": "week"}
    ok(peer(api, "getEntry", {"uri": E_HTTP}))
    ok(peer(api, "getEntries", [("uris", E_HTTP), ("uris", E_S3)]))
    ok(peer(api, "searchDatasets", {"q": "night"}))
    after = ok(peer(api, "getEntryStats", {"uri": E_HTTP, "period": "day"}))
    assert after == {"views": 2, "searchAppearances": 1, "period": "day"}


@pytest.mark.parametrize(
    ("name", "params", "mentions"),
    [
        ("resolveSchema", {"handle": A}, "schemaId"),
        ("resolveSchema", {"handle": "not a handle", "schemaId": "x"}, "handle"),
        ("resolveLabel", {"name": "x"}, "handle"),
        ("getEntry", {"uri": "https://example.com/x"}, "uri"),
        ("getEntries", {}, "uris"),
        ("listEntries", {"limit": "0"}, "limit"),
        ("listEntries", {"limit": "101"}, "limit"),
        ("listEntries", {"cursor": "garbage!"}, "cursor"),
        ("listSchemas", {"colour": "red"}, "colour"),
        ("listLenses", {"sourceSchema": "nope"}, "sourceSchema"),
        ("searchDatasets", {}, "q"),
        ("searchDatasets", {"q": "x", "cursor": "zzz"}, "cursor"),
        ("getEntryStats", {"uri": E_HTTP, "period": "year"}, "period"),
    ],
)
def test_bad_parameters_get_400_with_a_json_error(
    api: httpx.Client, name: str, params: dict, mentions: str
) -> None:
    resp = peer(api, name, params)
    assert resp.status_code == 400, resp.text
    body = resp.json()
    assert body["error"] in ("InvalidRequest", "BadCursor")
    assert mentions in body["message"]


def test_every_peer_query_is_counted_per_nsid_in_metrics(api: httpx.Client) -> None:
    ok(peer(api, "resolveSchema", {"handle": A, "schemaId": "peer.Sample"}))
    peer(api, "resolveLabel", {"handle": A, "name": "nothing"})
    text = api.get("/metrics").text
    assert re.search(
        r'atdata_appview_http_requests_total\{route="/xrpc/science\.alt\.dataset\.resolveSchema"'
        r',status="200"\} 1\.0',
        text,
    )
    assert re.search(
        r'atdata_appview_http_requests_total\{route="/xrpc/science\.alt\.dataset\.resolveLabel"'
        r',status="404"\} 1\.0',
        text,
    )


# -- io.atdata.searchDatasets over both families (SQLite and PostgreSQL) ---------------------


def test_search_covers_both_families_and_the_family_filter_narrows_it(
    store: Store, serve_store: Callable[..., ServedApp]
) -> None:
    seed(store)
    app = serve_store(store)
    with httpx.Client(base_url=app.url, timeout=30) as api:

        def search(**params: Any) -> dict[str, str]:
            body = ok(api.get("/xrpc/io.atdata.searchDatasets", params=params))
            return {d["uri"]: d["family"] for d in body["datasets"]}

        both = search(q="street", allVersions="true")
        assert both == {E_HTTP: "science.alt.dataset", E_BLOBS: "science.alt.dataset",
                        OWN: "io.atdata"}  # fmt: skip
        assert search(q="street", family="io.atdata") == {OWN: "io.atdata"}
        assert set(search(q="street", family="science.alt.dataset", allVersions="true")) == {
            E_HTTP,
            E_BLOBS,
        }
        assert set(search(q="caption")) == {E_BLOBS}  # schema field names (JSON Schema)
        assert set(search(q="photos night", allVersions="true")) == {E_HTTP}
        assert set(search(tag="vision", allVersions="true")) == {E_HTTP, E_BLOBS}
        assert set(search(family="science.alt.dataset", sort="created", allVersions="true")) == {
            *ENTRIES
        }
        facets = ok(
            api.get("/xrpc/io.atdata.searchDatasets", params={"q": "street", "allVersions": "true"})
        )["facets"]
        assert facets["tags"].get("city") == 2  # ours and the peer entry
        bad = api.get("/xrpc/io.atdata.searchDatasets", params={"family": "com.example"})
        assert bad.status_code == 400 and "family" in bad.json()["message"]
    # the CLI's --family, and an entry listed without a version of its own
    import subprocess
    import sys

    from _fixtures.newcomer import subprocess_env

    def cli(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "atdata.cli", "search", *args, "--appview", app.url],
            capture_output=True,
            text=True,
            timeout=120,
            env=subprocess_env(),
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    found = json.loads(cli("street", "--family", "science.alt.dataset", "--all-versions", "--json"))
    assert {d["uri"] for d in found["datasets"]} == {E_HTTP, E_BLOBS}
    lines = cli("street", "--all-versions").splitlines()
    assert any(E_HTTP in x and "(entry)" in x for x in lines)
    assert any(OWN in x and "(entry)" not in x for x in lines)


# -- web page --------------------------------------------------------------------------------


def test_entry_page_shows_family_schema_storage_labels_and_snippet(api: httpx.Client) -> None:
    page = api.get("/entries/did:plc:alice/e-http")
    assert page.status_code == 200, page.text
    html = page.text
    assert "science.alt.dataset · atdata 0.5-0.7 network" in html  # the family badge
    assert "photos of streets at night" in html
    # the schema's JSON Schema read as fields: the shim $ref is an NDArray
    schema = html.split("<h2>Schema</h2>", 1)[1].split("<h2>", 1)[0]
    assert re.search(r"<code>image</code></td><td>NDArray", schema), schema
    assert re.search(r"<code>index</code></td><td>int", schema)
    storage = html.split("<h2>Storage</h2>", 1)[1].split("<h2>", 1)[0]
    assert "HTTP(S) URLs" in storage and "https://data.example/peer-000000.tar" in storage
    assert "sha256:" + "cd" * 32 in storage
    labels = html.split("<h2>Labels</h2>", 1)[1].split("<h2>", 1)[0]
    assert "scenes" in labels and "1.0.0" in labels
    assert "(latest)" not in labels  # "scenes" 1.1.0 (created later) names the other entry
    assert (
        "atdata.load_dataset(&quot;at://did:plc:alice/science.alt.dataset.entry/e-http&quot;)"
        in html
    )
    newer = api.get("/entries/did:plc:alice/e-blobs").text
    assert "(latest)" in newer.split("<h2>Labels</h2>", 1)[1].split("<h2>", 1)[0]
    assert "blobs in the author&#x27;s repository" in newer
    s3 = api.get("/entries/did:plc:alice/e-s3").text.split("<h2>Storage</h2>", 1)[1]
    assert "peer-bucket at https://s3.example, region eu-west-1" in s3
    assert "none (not verified)" in s3
    envelope = api.get("/entries/did:plc:bob/e-ext").text  # schema in the envelope form
    assert "legacy-{000000..000003}.tar" in envelope
    assert re.search(r"<code>pixels</code></td><td>NDArray", envelope)  # the newer shim URL
    assert re.search(r"<code>digit</code></td><td>int", envelope)


def test_peer_lenses_are_listed_with_their_family_and_shown_on_the_entry_page(
    api: httpx.Client,
) -> None:
    """io.atdata.listLenses lists both families (each lens says its own), and the page of an
    entry whose schema a peer lens reads lists it with the trust its code needs."""
    listed = ok(api.get("/xrpc/io.atdata.listLenses", params={"source": S_V1}))["lenses"]
    assert [(x["uri"], x["family"], x["target"]) for x in listed] == [
        (uri(A, PEER_LENS, "lens1"), "science.alt.dataset", S_B)
    ]
    html = api.get("/entries/did:plc:alice/e-http").text
    lenses = html.split("<h2>Lenses from this schema</h2>", 1)[1].split("<h2>", 1)[0]
    assert "to-other" in lenses and "atdata 0.5-0.7 network" in lenses
    lens_uri = uri(A, PEER_LENS, "lens1")
    assert f"client.load_lens(&quot;{lens_uri}&quot;, trust=&quot;unpinned&quot;)" in lenses
    target = api.get("/entries/did:plc:bob/e-ext").text  # its schema is the lens's target
    assert "to-other" in target.split("<h2>Lenses to this schema</h2>", 1)[1]


def test_an_entry_has_croissant_json_beside_its_page(api: httpx.Client) -> None:
    page = api.get("/entries/did:plc:alice/e-blobs").text
    assert "/entries/did:plc:alice/e-blobs/croissant.json" in page
    got = api.get("/entries/did:plc:alice/e-blobs/croissant.json")
    assert got.status_code == 200, got.text
    assert got.headers["content-type"].startswith("application/ld+json")
    doc = got.json()
    assert (doc["identifier"], doc["name"]) == (E_BLOBS, "street scenes")
    assert doc["version"] == "1.1.0"  # its author's newest label naming it
    assert doc["url"].endswith("/entries/did:plc:alice/e-blobs")
    files = [f for f in doc["distribution"] if f["@type"] == "cr:FileObject"]
    assert files and all(
        f["contentUrl"].startswith(f"{PDS_A}/xrpc/com.atproto.sync.getBlob?") for f in files
    )
    fields = next(r for r in doc["recordSet"] if r["@id"] == "samples")["field"]
    assert [f["name"] for f in fields] == ["image", "caption"]  # schema v2 (S_V2)
    # placeholder checksums give no sha256, S3 keys go through the storage's endpoint
    s3 = api.get("/entries/did:plc:alice/e-s3/croissant.json").json()
    s3_files = [f for f in s3["distribution"] if f["@type"] == "cr:FileObject"]
    assert s3_files and all(f["contentUrl"].startswith("https://s3.example/") for f in s3_files)
    assert any("sha256" not in f for f in s3_files)
    assert api.get("/entries/did:plc:alice/nothing/croissant.json").status_code == 404


def test_search_page_links_peer_entries_to_their_page_and_filters_by_family(
    api: httpx.Client,
) -> None:
    html = api.get("/", params={"q": "digits"}).text
    assert "/entries/did:plc:bob/e-ext" in html
    assert "atdata 0.5-0.7 network" in html
    ours_only = api.get("/", params={"q": "street", "family": "io.atdata"}).text
    assert "/datasets/did:plc:alice/own" in ours_only
    assert "/entries/" not in ours_only
    assert api.get("/entries/did:plc:alice/nothing").status_code == 404


# -- handles: through the index, checked against the DID document (devnet) ------------------


def test_a_handle_is_mapped_by_the_index_and_checked_against_the_did_document(
    make_account: Callable[..., Any], serve_store: Callable[..., ServedApp], tmp_path: Any
) -> None:
    """``handle`` goes to a DID through the index's identity data, and that DID's document
    must claim the handle: a mapping the document does not confirm (the handle went to
    another account) answers as if nothing matched."""
    alice, other = make_account(0), make_account(1)
    store = Store(f"sqlite:///{tmp_path / 'index.sqlite'}")

    async def write() -> None:
        async with store.transaction() as tx:
            tx.set_repo(alice.did, handle=alice.handle, pds=alice.pds_url)
            tx.set_repo(other.did, handle="moved-away.test", pds=other.pds_url)
            for did in (alice.did, other.did):
                tx.upsert_record(did, PEER_SCHEMA, "s1", "bafys1", SCHEMA_V1)
                tx.upsert_record(did, PEER_ENTRY, "e1", "bafye1", ENTRIES[E_HTTP])
                tx.upsert_record(did, PEER_LABEL, "l1", "bafyl1", LABELS["l1"])

    run(write())
    try:
        app = serve_store(store)
        with httpx.Client(base_url=app.url, timeout=30) as api:
            for handle in (alice.handle, alice.handle.upper()):
                got = ok(peer(api, "resolveSchema", {"handle": handle, "schemaId": "peer.Sample"}))
                assert got["uri"] == uri(alice.did, PEER_SCHEMA, "s1")
                label = ok(peer(api, "resolveLabel", {"handle": handle, "name": "scenes"}))
                assert label["cid"] == "bafyl1"
            stale = {"handle": "moved-away.test", "schemaId": "peer.Sample"}
            resp = peer(api, "resolveSchema", stale)
            assert resp.status_code == 404 and resp.json()["error"] == "SchemaNotFound"
            assert "vouch" in resp.json()["message"]
            resp = peer(api, "resolveLabel", {"handle": "moved-away.test", "name": "scenes"})
            assert resp.status_code == 404 and resp.json()["error"] == "LabelNotFound"
            # the DID itself still answers
            assert ok(peer(api, "resolveLabel", {"handle": other.did, "name": "scenes"}))
    finally:
        store.close()


# -- the real atdata 0.7 SDK against this AppView ----------------------------------------------

PEER_CLIENT = r"""
import json, logging, sys
from atdata.atmosphere.client import Atmosphere
from atdata.atmosphere.labels import LabelLoader
from atdata.atmosphere.lens import LensLoader
from atdata.atmosphere.records import DatasetLoader
from atdata.atmosphere.schema import SchemaLoader
from atdata.search import AppViewSearchBackend

fallbacks = []
class Catch(logging.Handler):
    def emit(self, record):
        fallbacks.append(record.getMessage())
logging.getLogger().addHandler(Catch(logging.WARNING))
a = Atmosphere(appview=sys.argv[1])
alice = "did:plc:alice"
entry = f"at://{alice}/science.alt.dataset.entry/"
out = {
    "search": [e["uri"] for e in a.search_datasets("street", tags=["city"])],
    "backend": [i.schema_ref for i in AppViewSearchBackend(a).search(text="night").items],
    "healthy": AppViewSearchBackend(a).health_check(),
    "schema": SchemaLoader(a).resolve(alice, "peer.Sample", "1.0.0")["version"],
    "label": LabelLoader(a).resolve(alice, "scenes"),
    "entry": DatasetLoader(a).get(entry + "e-s3")["storage"]["bucket"],
    "metadata": DatasetLoader(a).get_metadata(entry + "e-http"),
    "listed": len(DatasetLoader(a).list_all(repo=alice, limit=2)),
    "blobs": len(DatasetLoader(a).get_blob_urls(entry + "e-blobs")),
    "schemas": len(SchemaLoader(a).list_all(repo=alice)),
    "lenses": len(LensLoader(a).find_by_schemas(f"at://{alice}/science.alt.dataset.schema/s1")),
    "entries": len(a.get_entries([entry + "e-http", entry.replace("alice", "bob") + "e-ext"])),
    "counts": a.describe_service()["recordCount"]["science.alt.dataset.entry"],
    "stats": a.get_entry_stats(entry + "e-http", "month")["period"],
    "fallbacks": fallbacks,
}
print(json.dumps(out))
"""


def test_the_atdata_07_sdk_reads_this_appview_without_falling_back(
    api: httpx.Client, peer_python: str
) -> None:
    """Each AppView call of the 0.7 SDK's loaders, answered here (a failed or malformed
    answer makes that SDK log a warning and fall back to the PDS, which it cannot reach)."""
    from _fixtures.peer import run_peer

    got = run_peer(peer_python, PEER_CLIENT, str(api.base_url))
    assert got == {
        "search": [E_HTTP],
        "backend": [S_V1],
        "healthy": True,
        "schema": "1.0.0",
        "label": E_BLOBS,
        "entry": "peer-bucket",
        "metadata": {"split": "train"},
        "listed": 2,
        "blobs": 2,
        "schemas": 2,
        "lenses": 1,
        "entries": 2,
        "counts": 4,
        "stats": "month",
        "fallbacks": [],
    }
    text = api.get("/metrics").text
    for nsid in ("searchDatasets", "resolveSchema", "resolveLabel", "getEntry", "listEntries",
                 "resolveBlobs", "listSchemas", "searchLenses", "getEntries", "describeService",
                 "getEntryStats"):  # fmt: skip
        assert re.search(
            rf'http_requests_total\{{route="/xrpc/science\.alt\.dataset\.{nsid}",status="200"\}}',
            text,
        ), nsid


def test_describe_service_reports_the_ingest_backlog(
    tmp_path: Any, serve_store: Callable[..., ServedApp]
) -> None:
    """With an ingest running, the peer describeService says what the index still waits for,
    as io.atdata.describeService does (here: a repo whose fetch cannot resolve its DID)."""
    import asyncio

    from _fixtures.ingest import running, wait_for
    from atdata_appview.ingest import IngestService

    store = Store(f"sqlite:///{tmp_path / 'index.sqlite'}")
    stuck = "did:plc:stuckstuckstuckstuckstuc"

    async def write() -> None:
        async with store.transaction() as tx:
            tx.set_repo(stuck, resync=True)
            tx.upsert_record(stuck, PEER_LABEL, "l1", "c1", label_record("x", E_HTTP))

    run(write())

    async def ingest_once(svc: IngestService) -> None:
        async with running(svc):
            await wait_for(lambda: svc.metrics()["backfills_failed"] >= 1, 15)

    try:
        svc = IngestService(store, [], "http://127.0.0.1:9", batch_interval=0.05)
        asyncio.run(ingest_once(svc))
        app = serve_store(store, svc)
        with httpx.Client(base_url=app.url, timeout=30) as api:
            described = ok(peer(api, "describeService"))
            ours = ok(api.get("/xrpc/io.atdata.describeService"))
        assert described["backlog"] == ours["backlog"]
        assert described["backlog"]["repos"] == 1 and not described["backlog"]["caughtUp"]
        assert (described["backfillPending"], described["resyncPending"]) == (1, 0)
        assert described["recordCount"]["science.alt.dataset.label"] == 1
    finally:
        store.close()


def test_records_of_a_hidden_repo_are_not_answered(
    sqlite_store: Store, serve_store: Callable[..., ServedApp]
) -> None:
    async def take_down() -> None:
        async with sqlite_store.transaction() as tx:
            tx.set_repo(A, status="takendown")

    run(take_down())
    app = serve_store(sqlite_store)
    with httpx.Client(base_url=app.url, timeout=30) as api:
        assert peer(api, "getEntry", {"uri": E_HTTP}).status_code == 404
        assert ok(peer(api, "getEntries", [("uris", E_HTTP), ("uris", E_EXT)]))["entries"] == [
            entry_row(E_EXT)
        ]
        assert [e["uri"] for e in ok(peer(api, "listEntries"))["entries"]] == [E_EXT]
        assert ok(peer(api, "searchDatasets", {"q": "street"})) == {"entries": []}
        assert (
            peer(api, "resolveSchema", {"handle": A, "schemaId": "peer.Sample"}).status_code == 404
        )
        assert peer(api, "resolveLabel", {"handle": A, "name": "scenes"}).status_code == 404
        assert ok(peer(api, "listLenses")) == {"lenses": []}
        assert api.get("/entries/did:plc:alice/e-http").status_code == 404
