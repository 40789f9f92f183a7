"""The SDK's and the AppView's identity resolvers follow one set of rules: the same answers
are accepted and refused, kept, and fetched again; and the SDK follows an account that moved."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import pytest
from atdata import ResolutionError
from atdata.atmosphere import IdentityResolver, record_cid
from atdata.atmosphere.resolve import Resolver
from atdata_appview.identity import IdentityResolver as AppViewResolver
from test_netguard import serve

DID = "did:plc:abcdefghijklmnopqrstuvwx"


def doc(did: str = DID, pds: str = "http://10.0.0.5") -> dict[str, Any]:
    return {
        "id": did,
        "alsoKnownAs": ["at://someone.test"],
        "service": [
            {"id": "#atproto_pds", "type": "AtprotoPersonalDataServer", "serviceEndpoint": pds}
        ],
    }


ANSWERS = {
    "a document": (200, json.dumps(doc()).encode()),
    "not found": (404, b"gone"),
    "tombstoned": (410, b""),
    "server error": (500, b"oops"),
    "not JSON": (200, b"<html>"),
    "another DID's document": (200, json.dumps(doc("did:plc:zzzzzzzzzzzzzzzzzzzzzzzz")).encode()),
    "oversized": (200, json.dumps({**doc(), "pad": "x" * (1 << 20)}).encode()),
}


def _sdk(url: str) -> tuple[str | None, str | None] | str:
    try:
        r = IdentityResolver(url, allow_private=True)
        return (r.resolve_did(DID)["alsoKnownAs"][0][5:], r.pds_endpoint(DID))
    except ResolutionError:
        return "refused"


def _appview(url: str) -> tuple[str | None, str | None] | str:
    async def go() -> tuple[str | None, str | None] | str:
        r = AppViewResolver(url)
        try:
            ident = await r.resolve(DID)
            return (ident.handle, ident.pds)
        except ResolutionError:
            return "refused"
        finally:
            await r.close()

    return asyncio.run(go())


# a 500 is retried with backoff (about 8 s): kept out of `make check`
@pytest.mark.parametrize(
    "answer",
    [pytest.param(a, marks=pytest.mark.slow) if a == "server error" else a for a in ANSWERS],
)
def test_both_resolvers_accept_and_refuse_the_same_answers(answer: str) -> None:
    status, body = ANSWERS[answer]
    with serve({f"/{DID}": (status, {"Content-Type": "application/json"}, body)}) as srv:
        sdk, appview = _sdk(srv.url), _appview(srv.url)
    assert sdk == appview
    assert (sdk == ("someone.test", "http://10.0.0.5")) == (answer == "a document")


def test_both_keep_a_document_and_fetch_it_fresh_on_request() -> None:
    with serve({f"/{DID}": (200, {}, json.dumps(doc()).encode())}) as srv:
        sdk = IdentityResolver(srv.url, allow_private=True)
        sdk.resolve_did(DID)
        sdk.resolve_did(DID)
        assert len(srv.seen) == 1  # kept
        sdk.resolve_did(DID, fresh=True)
        assert len(srv.seen) == 2  # fetched again when asked

        async def go() -> None:
            r = AppViewResolver(srv.url)
            await r.resolve(DID)
            await r.resolve(DID)
            await r.resolve(DID, fresh=True)
            await r.close()

        asyncio.run(go())
        assert len(srv.seen) == 4


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_record_is_read_from_the_new_pds_of_an_account_that_moved() -> None:
    value = {"$type": "io.atdata.schema", "name": "moved"}
    uri = f"at://{DID}/io.atdata.schema/3kabc"
    old_pds = f"http://127.0.0.1:{_closed_port()}"  # nothing answers there any more
    with serve({}) as pds:
        pds.routes["/xrpc/com.atproto.repo.getRecord"] = (
            200,
            {},
            json.dumps({"uri": uri, "cid": record_cid(value), "value": value}).encode(),
        )
        documents = iter([doc(pds=old_pds), doc(pds=pds.url)])
        with serve({f"/{DID}": lambda _h: (200, {}, json.dumps(next(documents)).encode())}) as plc:
            rec = Resolver(plc_url=plc.url, allow_private=True).fetch_record(uri)
            assert len(plc.seen) == 2  # the kept document, then one fresh copy
    assert rec.value == value and len(pds.seen) == 1
