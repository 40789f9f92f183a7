"""Hostile input to the AppView's HTTP surface: every declared parameter of every query
lexicon, crafted cursors, NUL bytes, huge integers, over-long request lines. The answer is
always a 4xx with the XRPC JSON error body naming what was wrong, never a 500, on SQLite and
PostgreSQL (a NUL or an out-of-range integer reaches psycopg only if validation misses it)."""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from _fixtures.appview_index import DATASET, SCHEMA, ServedApp, dataset_record, run, schema_record
from atdata.lexicon import default_lexicons
from atdata_appview.db import Store
from atdata_appview.xrpc import METHODS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

A = "did:plc:alice"
S1 = f"at://{A}/{SCHEMA}/s1"


#: Valid values for required parameters, so each request is wrong in one parameter only.
VALID = {
    "uri": f"at://{A}/{DATASET}/d0",
    "uris": f"at://{A}/{DATASET}/d0",
    "source": S1,
    "target": S1,
    "handle": "alice.test",
    "schemaId": "Img",
    "name": "digits",
    "q": "digits",
}


def _with(nsid: str, name: str, value: Any) -> list[tuple[str, Any]]:
    """Query of ``nsid``: ``name`` set to ``value`` (a list: repeated), the rest valid."""
    required = default_lexicons().get_def(nsid).get("parameters", {}).get("required", [])
    pairs = [(r, VALID[r]) for r in required if r != name]
    return pairs + [(name, v) for v in (value if isinstance(value, list) else [value])]


def _queries() -> list[tuple[str, str, dict[str, Any]]]:
    """(nsid, parameter, its lexicon def) for every parameter of every query the app serves."""
    lex = default_lexicons()
    out = []
    for nsid in sorted(lex):
        d = lex.get_def(nsid)
        if d["type"] != "query" or nsid not in METHODS:
            continue
        for name, p in d.get("parameters", {}).get("properties", {}).items():
            out.append((nsid, name, p))
    return out


PARAMS = _queries()
INT_PARAMS = [(n, p, d) for n, p, d in PARAMS if (d.get("items") or d)["type"] == "integer"]
TEXT_PARAMS = [(n, p, d) for n, p, d in PARAMS if (d.get("items") or d)["type"] == "string"]


@pytest.fixture
def app_url(store: Store, serve_store: Callable[..., ServedApp]) -> Iterator[str]:
    async def seed() -> None:
        async with store.transaction() as tx:
            tx.set_repo(A, handle="alice.test", pds="http://127.0.0.1:1")
            tx.upsert_record(A, SCHEMA, "s1", "cs1", schema_record("Img", fields=("x", "y")))
            for i in range(3):
                rec = dataset_record(f"digits {i}", tags=("vision",), samples=10 + i, schema=S1)
                tx.upsert_record(A, DATASET, f"d{i}", f"cd{i}", rec, "r1")

    run(seed())
    yield serve_store(store).url


def _assert_xrpc_400(resp: httpx.Response, mentions: str) -> None:
    assert resp.status_code == 400, (resp.status_code, resp.text[:300])
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert set(body) == {"error", "message"}, body
    assert body["error"] in ("InvalidRequest", "BadCursor")
    assert mentions in body["message"], body


def test_every_declared_parameter_is_swept() -> None:
    """The sweep below covers the queries the lexicons declare (new ones join by themselves)."""
    nsids = {n for n, _, _ in PARAMS}
    assert {"io.atdata.searchDatasets", "io.atdata.listSchemas", "io.atdata.listLenses"} <= nsids
    assert {("io.atdata.searchDatasets", "minSamples"), ("io.atdata.searchDatasets", "limit")} <= {
        (n, p) for n, p, _ in INT_PARAMS
    }


def test_nul_and_huge_integers_in_every_parameter_are_400s(app_url: str) -> None:
    with httpx.Client(base_url=app_url, timeout=30) as client:
        for nsid, name, _ in TEXT_PARAMS:
            resp = client.get(f"/xrpc/{nsid}", params=_with(nsid, name, "a\x00b"))
            _assert_xrpc_400(resp, name)
        for nsid, name, _ in INT_PARAMS:
            for bad in ("9223372036854775808", "-9223372036854775809", "9" * 4301, "1" * 25):
                resp = client.get(f"/xrpc/{nsid}", params=_with(nsid, name, bad))
                _assert_xrpc_400(resp, name)
        # inside 64 bits and the lexicon's bounds: an answer, not an error
        ok = client.get(
            "/xrpc/io.atdata.searchDatasets",
            params={"minSamples": str(2**63 - 1), "maxSamples": str(2**63 - 1)},
        )
        assert ok.status_code == 200 and ok.json()["datasets"] == []


def _cursor(*parts: Any) -> str:
    raw = json.dumps(list(parts)).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


BAD_CURSORS = [
    ("io.atdata.searchDatasets", {"sort": "created"}, _cursor("created", {}, 1)),
    ("io.atdata.searchDatasets", {"sort": "created"}, _cursor("created", [], 1)),
    ("io.atdata.searchDatasets", {"sort": "created"}, _cursor("created", "2026", True)),
    ("io.atdata.searchDatasets", {"sort": "created"}, _cursor("created", "2026", 2**70)),
    ("io.atdata.searchDatasets", {"sort": "created"}, _cursor("created", "a\x00", 1)),
    ("io.atdata.searchDatasets", {"sort": "created"}, _cursor("created", 2**80, 1)),
    ("io.atdata.searchDatasets", {"sort": "samples"}, _cursor("samples", "abc", 1)),
    ("io.atdata.searchDatasets", {"sort": "samples"}, _cursor("samples", 2**64, 1)),
    ("io.atdata.searchDatasets", {"sort": "samples"}, _cursor("samples", 1.5, 1)),
    ("io.atdata.searchDatasets", {"q": "digits"}, _cursor("relevance", [1, True], 1)),
    ("io.atdata.searchDatasets", {"q": "digits"}, _cursor("relevance", {"a": 1}, 1)),
    ("io.atdata.searchDatasets", {"q": "digits"}, _cursor("relevance", [2**64, 0], 1)),
    ("io.atdata.searchDatasets", {"tag": "vision"}, _cursor("created", {}, 1)),
    ("io.atdata.listSchemas", {}, _cursor("created", {}, 1)),
    ("io.atdata.listSchemas", {}, _cursor("created", "2026", False)),
    ("io.atdata.listSchemas", {}, _cursor("created", ["x"], 1)),
    ("io.atdata.listLenses", {}, _cursor("created", None, 1)),
    ("io.atdata.listLenses", {}, _cursor("created", "2026", 10**30)),
    ("io.atdata.listLenses", {}, _cursor("created", "2026")),
]


def test_cursors_of_the_wrong_shape_are_refused_before_the_database(app_url: str) -> None:
    with httpx.Client(base_url=app_url, timeout=30) as client:
        for nsid, params, cursor in BAD_CURSORS:
            resp = client.get(f"/xrpc/{nsid}", params={**params, "cursor": cursor})
            _assert_xrpc_400(resp, "cursor")
        for _, params, cursor in BAD_CURSORS[:13]:  # the web page's search reads them too
            page = client.get("/", params={**params, "cursor": cursor})
            assert page.status_code == 400 and "Bad search" in page.text


def test_web_pages_refuse_nul_bytes(app_url: str) -> None:
    with httpx.Client(base_url=app_url, timeout=30) as client:
        for params in ({"tag": "a\x00"}, {"q": "x\x00"}, {"license": "a\x00b"}):
            resp = client.get("/", params=params)
            assert resp.status_code == 400 and "Bad search" in resp.text
        resp = client.get("/datasets/did:plc:x%00/y")
        assert resp.status_code == 400 and "Bad dataset address" in resp.text
        assert client.get("/datasets/did:plc:alice/d1").status_code == 200


def test_unknown_xrpc_paths_and_long_request_lines_answer_json(app_url: str) -> None:
    with httpx.Client(base_url=app_url, timeout=30) as client:
        for path in ("/xrpc/", "/xrpc/io.atdata.nope/extra", "/xrpc/a/b/c"):
            resp = client.get(path)
            assert resp.status_code == 501, (path, resp.status_code)
            assert resp.json()["error"] == "MethodNotImplemented"
    host, port = app_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"GET /xrpc/io.atdata.searchDatasets?q=" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] in (b"400", b"414"), head
    assert b"application/json" in head.lower()
    assert set(json.loads(body)) == {"error", "message"}


_text = st.text(st.characters(codec="utf-8"), max_size=40) | st.sampled_from(
    ["", "0", "-1", "9" * 30, "true", "at://x/y/z", "did:plc:x", "\x00", "%", "a" * 700]
)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_random_values_for_declared_parameters_never_500(app_url: str, data: Any) -> None:
    nsid, name, _ = data.draw(st.sampled_from(PARAMS))
    values = data.draw(st.lists(_text, min_size=1, max_size=3))
    with httpx.Client(base_url=app_url, timeout=30) as client:
        resp = client.get(f"/xrpc/{nsid}", params=_with(nsid, name, values))
    assert resp.status_code in (200, 400, 404), (nsid, name, values, resp.text[:200])
    if resp.status_code != 200:
        assert set(resp.json()) == {"error", "message"}
