"""`load_dataset(uri, appview=...)` end to end on the devnet with a real AppView.

The AppView (`atdata appview serve`, following both PDSes) is a fast path for the record, its
schema and handle resolution, never the authority: every test that lies goes through a small
aiohttp server that relays the real AppView's answer after tampering with it (a lying AppView
is a fault the real one cannot produce).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import numpy as np
import pytest
from _fixtures.local_http import serving_app
from _fixtures.newcomer import Glyph, Published, RunningAppView
from atdata import AppViewClient, ResolutionError
from atdata.atmosphere import load_dataset
from atdata.atmosphere.cid import record_cid
from atdata.devnet import free_ports

Answer = Callable[[dict[str, Any]], tuple[int, dict[str, Any]]]


def assert_same(got: list[Glyph], want: list[Glyph]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert (g.label, g.caption) == (w.label, w.caption)
        np.testing.assert_array_equal(g.image, w.image)


@contextmanager
def relaying_appview(real: str, tamper: Answer) -> Iterator[str]:
    """An AppView that fetches the real getDataset answer and hands it to `tamper`."""
    from aiohttp import web

    async def get_dataset(request: web.Request) -> web.Response:
        r = httpx.get(f"{real}/xrpc/io.atdata.getDataset", params=dict(request.query), timeout=10)
        status, body = tamper(r.json()) if r.status_code == 200 else (r.status_code, r.json())
        return web.json_response(body, status=status)

    app = web.Application()
    app.router.add_get("/xrpc/io.atdata.getDataset", get_dataset)
    with serving_app(app) as url:
        yield url


def recid(body: dict[str, Any]) -> dict[str, Any]:
    """Make a tampered view self-consistent: its cid is that of its (altered) record."""
    body["cid"] = record_cid(body["record"])
    return body


# -- an honest AppView ---------------------------------------------------------------------


def test_loads_through_the_appview_by_url_and_by_client(
    appview: RunningAppView, published: Published
) -> None:
    ds = load_dataset(published.uri, sample_type=Glyph, appview=appview.url)
    assert (ds.uri, ds.cid, ds.sample_type) == (published.uri, published.cid, Glyph)
    assert_same(list(ds.ordered()), published.samples)
    with AppViewClient(appview.url) as av:
        test = load_dataset(published.uri, sample_type=Glyph, split="test", appview=av)
        assert_same(list(test.ordered()), published.samples[20:])
        # the caller's client stays open for further use
        assert av.get_dataset(published.uri).cid == published.cid


def test_pinned_cid_through_the_appview(appview: RunningAppView, published: Published) -> None:
    ds = load_dataset(published.uri, cid=published.cid, appview=appview.url)
    assert ds.cid == published.cid
    assert [s.label for s in ds.ordered()] == [g.label for g in published.samples]
    with pytest.raises(ResolutionError, match="has changed"):
        load_dataset(published.uri, cid=record_cid({"other": 1}), appview=appview.url)


def test_environment_appview_is_used_only_when_asked(
    appview: RunningAppView, published: Published, monkeypatch: pytest.MonkeyPatch
) -> None:
    (dead,) = free_ports(1)
    monkeypatch.setenv("ATDATA_APPVIEW", f"http://127.0.0.1:{dead}")
    # appview=None never contacts $ATDATA_APPVIEW (a dead port here): the PDS is read
    assert load_dataset(published.uri).cid == published.cid
    monkeypatch.setenv("ATDATA_APPVIEW", appview.url)
    handle_uri = published.uri.replace(published.account.did, published.account.handle)
    monkeypatch.delenv("ATDATA_PDS", raising=False)
    assert load_dataset(handle_uri, appview=True).uri == published.uri


def test_handle_uri_resolves_through_the_appview(
    appview: RunningAppView, published: Published, monkeypatch: pytest.MonkeyPatch
) -> None:
    handle_uri = published.uri.replace(published.account.did, published.account.handle)
    monkeypatch.delenv("ATDATA_PDS", raising=False)
    with pytest.raises(ResolutionError, match="cannot resolve handle"):
        load_dataset(handle_uri)  # no DNS, no service to ask
    ds = load_dataset(handle_uri, sample_type=Glyph, split="train", appview=appview.url)
    assert ds.uri == published.uri
    assert_same(list(ds.ordered()), published.samples[:20])


def test_unreachable_or_unaware_appview_falls_back_to_the_pds(
    appview: RunningAppView, published: Published, caplog: pytest.LogCaptureFixture
) -> None:
    (dead,) = free_ports(1)
    with caplog.at_level(logging.WARNING, logger="atdata.atmosphere.resolve"):
        ds = load_dataset(published.uri, appview=f"http://127.0.0.1:{dead}")
    assert ds.cid == published.cid
    assert "could not look up" in caplog.text

    def not_indexed(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return 404, {"error": "NotFound", "message": "no such dataset"}

    with relaying_appview(appview.url, not_indexed) as liar:
        assert load_dataset(published.uri, appview=liar).cid == published.cid


# -- a lying AppView -----------------------------------------------------------------------


def _tampered_shard_hash(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    body["record"]["shards"][0]["sha256"] = "0" * 64  # cid left as the genuine one
    return 200, body


def _self_consistent_description(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    body["record"]["description"] = "nothing to see here"
    return 200, recid(body)


def _other_author(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    body["did"] = "did:plc:" + "a" * 24
    return 200, body


def _other_record(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    body["uri"] = body["uri"].rsplit("/", 1)[0] + "/3zzzzzzzzzzzz"
    return 200, body


def _tampered_schema(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    body["schema"]["record"]["description"] = "altered"
    return 200, body


@pytest.mark.parametrize(
    ("tamper", "match"),
    [
        (_tampered_shard_hash, "content hashes to .*altered"),
        (_self_consistent_description, "author's PDS has .*stale or altered"),
        (_other_author, "with a record of did:plc:a"),
        (_other_record, "with another record"),
        (_tampered_schema, "schema .* content hashes to .*altered"),
    ],
)
def test_a_lying_appview_is_caught(
    appview: RunningAppView, published: Published, tamper: Answer, match: str
) -> None:
    with relaying_appview(appview.url, tamper) as liar, pytest.raises(ResolutionError, match=match):
        load_dataset(published.uri, appview=liar)


def test_a_pinned_cid_overrules_a_lying_appview(
    appview: RunningAppView, published: Published
) -> None:
    with relaying_appview(appview.url, _self_consistent_description) as liar:
        ds = load_dataset(published.uri, sample_type=Glyph, cid=published.cid, appview=liar)
    assert ds.cid == published.cid
    assert_same(list(ds.ordered()), published.samples)
    with (
        relaying_appview(appview.url, _tampered_shard_hash) as liar,
        pytest.raises(ResolutionError, match="altered"),
    ):
        load_dataset(published.uri, cid=published.cid, appview=liar)


def test_a_handle_mapped_to_another_did_is_caught(
    appview: RunningAppView,
    published: Published,
    make_account: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mallory = make_account(1)
    victim = published.account

    def hijack(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        body = copy.deepcopy(body)
        body["did"] = mallory.did
        body["uri"] = body["uri"].replace(victim.did, mallory.did)
        return 200, body

    monkeypatch.delenv("ATDATA_PDS", raising=False)
    handle_uri = published.uri.replace(victim.did, victim.handle)
    with (
        relaying_appview(appview.url, hijack) as liar,
        pytest.raises(ResolutionError, match="claims the handle"),
    ):
        load_dataset(handle_uri, appview=liar)
