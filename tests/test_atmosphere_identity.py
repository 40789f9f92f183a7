"""Identity resolution: at:// URIs, did:web documents, PDS endpoints, handle fallbacks."""

from __future__ import annotations

import json
from typing import Any

import pytest
from atdata import ResolutionError, UnsafeURLError
from atdata.atmosphere import IdentityResolver, parse_at_uri
from atdata.atmosphere.identity import AtUri
from test_netguard import serve


def test_parse_at_uri() -> None:
    at = parse_at_uri("at://did:plc:abc/io.atdata.dataset/3jzfcijpj2z2a")
    assert at == AtUri("did:plc:abc", "io.atdata.dataset", "3jzfcijpj2z2a")
    assert str(at) == "at://did:plc:abc/io.atdata.dataset/3jzfcijpj2z2a"
    assert parse_at_uri("at://alice.test", need_record=False).collection is None
    for bad in ("https://x", "at://did:plc:abc", "at://did:plc:abc/notnsid/x", "at://a b/c.d.e/f"):
        with pytest.raises(ResolutionError):
            parse_at_uri(bad)


def did_doc(did: str, pds: str | None) -> dict[str, Any]:
    doc: dict[str, Any] = {"id": did, "alsoKnownAs": ["at://someone.test"]}
    if pds:
        doc["service"] = [
            {"id": "#atproto_pds", "type": "AtprotoPersonalDataServer", "serviceEndpoint": pds}
        ]
    return doc


def test_did_web_document_and_pds_endpoint() -> None:
    routes: dict[str, Any] = {}
    with serve(routes) as srv:
        port = srv.server_address[1]
        did = f"did:web:localhost%3A{port}"
        routes["/.well-known/did.json"] = (
            200,
            {},
            json.dumps(did_doc(did, "http://localhost:9")).encode(),
        )
        r = IdentityResolver("http://localhost:1", allow_private=True)
        assert r.resolve_did(did)["id"] == did
        assert r.pds_endpoint(did) == "http://localhost:9"
        # cached: the server is not asked again
        n = len(srv.seen)
        r.resolve_did(did)
        assert len(srv.seen) == n
        # a document naming another DID is refused
        other = IdentityResolver("http://localhost:1", allow_private=True)
        routes["/.well-known/did.json"] = (
            200,
            {},
            json.dumps(did_doc("did:web:evil.com", None)).encode(),
        )
        with pytest.raises(ResolutionError, match="another id"):
            other.resolve_did(did)
        # without the private-network allowance, a local did:web is not even fetched
        with pytest.raises(UnsafeURLError):
            IdentityResolver("http://localhost:1", allow_private=False).resolve_did(did)


def test_plc_document_errors_and_private_pds_endpoint() -> None:
    did = "did:plc:abcdefghijklmnopqrstuvwx"
    routes: dict[str, Any] = {
        f"/{did}": (200, {}, json.dumps(did_doc(did, "http://10.0.0.5")).encode())
    }
    with serve(routes) as srv:
        r = IdentityResolver(srv.url, allow_private=True)
        assert r.pds_endpoint(did) == "http://10.0.0.5"
        # The configured PLC (here on loopback) is the user's own and is asked even without
        # the private-network allowance; the PDS endpoint its document names is not trusted.
        strict = IdentityResolver(srv.url, allow_private=False)
        assert strict.resolve_did(did)["id"] == did
        with pytest.raises(UnsafeURLError, match="10.0.0.5"):
            strict.pds_endpoint(did)
        missing = "did:plc:bbbbbbbbbbbbbbbbbbbbbbbb"
        with pytest.raises(ResolutionError, match="cannot resolve"):
            r.resolve_did(missing)
        routes[f"/{missing}"] = (200, {}, json.dumps(did_doc(missing, None)).encode())
        with pytest.raises(ResolutionError, match="no #atproto_pds"):
            r.pds_endpoint(missing)
    with pytest.raises(ResolutionError, match="unsupported DID method"):
        IdentityResolver("http://localhost:1").resolve_did("did:key:z6Mk")


def test_handle_resolution_falls_back_to_resolve_handle() -> None:
    did = "did:plc:abcdefghijklmnopqrstuvwx"
    routes: dict[str, Any] = {
        "/xrpc/com.atproto.identity.resolveHandle": (200, {}, json.dumps({"did": did}).encode())
    }
    with serve(routes) as srv:
        r = IdentityResolver("http://localhost:1", handle_services=[srv.url], allow_private=True)
        assert r.resolve_handle("Alice.PDS1.test") == did
        assert "handle=alice.pds1.test" in srv.seen[-1]["path"]
    with pytest.raises(ResolutionError, match="cannot resolve handle"):
        IdentityResolver("http://localhost:1", allow_private=True).resolve_handle("nobody.test")
    with pytest.raises(ResolutionError, match="not a valid handle"):
        IdentityResolver("http://localhost:1").resolve_handle("not a handle")
