"""DID syntax, document URLs and DID document parsing (shared by the SDK and the AppView)."""

from __future__ import annotations

from typing import Any

import pytest
from atdata import ResolutionError
from atdata.atmosphere.did import (
    DidDocument,
    check_did,
    did_document_url,
    did_web_url,
    parse_did_document,
)
from atproto_crypto.consts import P256_JWT_ALG, SECP256K1_JWT_ALG
from atproto_crypto.did import format_did_key, format_multikey
from atproto_crypto.multibase import bytes_to_multibase
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given
from hypothesis import strategies as st

DID = "did:plc:abcdefghijklmnopqrstuvwx"


def _compressed(curve: ec.EllipticCurve) -> bytes:
    return (
        ec.generate_private_key(curve)
        .public_key()
        .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint)
    )


def test_check_did() -> None:
    assert check_did(DID) == DID
    assert check_did("did:web:example.com") == "did:web:example.com"
    for bad in ("", "did:", "plc:abc", "did:PLC:abc", "did:plc:a b", 7):
        with pytest.raises(ResolutionError, match="not a valid DID"):
            check_did(bad)  # type: ignore[arg-type]


def test_document_urls() -> None:
    assert did_document_url(DID, "http://plc.local/") == f"http://plc.local/{DID}"
    assert did_web_url("did:web:example.com") == "https://example.com/.well-known/did.json"
    local = "did:web:localhost%3A2583"
    assert did_web_url(local) == "http://localhost:2583/.well-known/did.json"
    assert did_document_url(local, "x", http_for_localhost=False) == (
        "https://localhost:2583/.well-known/did.json"
    )
    with pytest.raises(ResolutionError, match="unsupported did:web"):
        did_web_url("did:web:example.com:user:alice")  # path-based: not atproto
    with pytest.raises(ResolutionError, match="unsupported DID method"):
        did_document_url("did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme", "x")
    with pytest.raises(ResolutionError, match="not a valid DID"):
        did_document_url("did:plc:", "x")


def test_parse_full_document_with_did_qualified_ids() -> None:
    pub = _compressed(ec.SECP256K1())
    doc = {
        "id": DID,
        "alsoKnownAs": ["https://elsewhere", "at://Alice.Test"],
        "verificationMethod": [
            {"id": f"{DID}#other", "type": "Multikey", "publicKeyMultibase": "zzz"},
            {
                "id": f"{DID}#atproto",
                "type": "Multikey",
                "controller": DID,
                "publicKeyMultibase": format_multikey(SECP256K1_JWT_ALG, pub),
            },
        ],
        "service": [
            {"id": "#bsky_fg", "type": "x", "serviceEndpoint": "https://feed"},
            {"id": f"{DID}#atproto_pds", "type": "x", "serviceEndpoint": "https://pds.test/"},
        ],
    }
    parsed = parse_did_document(DID, doc)
    assert (parsed.handle, parsed.pds) == ("alice.test", "https://pds.test")
    assert parsed.signing_key() == format_did_key(SECP256K1_JWT_ALG, pub)


def test_legacy_key_type_and_short_fragment_ids() -> None:
    priv = ec.generate_private_key(ec.SECP256R1())
    raw = priv.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    doc = {
        "id": DID,
        "verificationMethod": [
            {
                "id": "#atproto",
                "type": "EcdsaSecp256r1VerificationKey2019",
                "publicKeyMultibase": bytes_to_multibase("z", raw),
            }
        ],
        "service": [{"id": "#atproto_pds", "serviceEndpoint": "http://localhost:2583"}],
    }
    parsed = parse_did_document(DID, doc)
    assert parsed.pds == "http://localhost:2583"
    assert parsed.handle is None
    assert parsed.signing_key() == format_did_key(P256_JWT_ALG, _compress(priv))


def _compress(priv: ec.EllipticCurvePrivateKey) -> bytes:
    return priv.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
    )


def test_unknown_or_broken_keys() -> None:
    doc: dict[str, Any] = {
        "id": DID,
        "verificationMethod": [{"id": "#atproto", "type": "Ed25519", "publicKeyMultibase": "z1"}],
    }
    assert parse_did_document(DID, doc).signing_key() is None
    doc["verificationMethod"][0]["type"] = "EcdsaSecp256k1VerificationKey2019"
    doc["verificationMethod"][0]["publicKeyMultibase"] = "not multibase"
    parsed = parse_did_document(DID, doc)  # a reader that wants only the PDS is not stopped
    with pytest.raises(ResolutionError, match="unusable #atproto key"):
        parsed.signing_key()


def test_document_for_another_did_or_malformed_is_refused() -> None:
    for doc in ({"id": "did:plc:zzzzzzzzzzzzzzzzzzzzzzzz"}, [], None, {"service": []}):
        with pytest.raises(ResolutionError, match="malformed or names another id"):
            parse_did_document(DID, doc)


_junk = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)


@given(aka=_junk | st.lists(_junk), services=_junk | st.lists(_junk), methods=_junk)
def test_parser_never_crashes_on_junk(aka: Any, services: Any, methods: Any) -> None:
    doc = {"id": DID, "alsoKnownAs": aka, "service": services, "verificationMethod": methods}
    parsed = parse_did_document(DID, doc)
    assert isinstance(parsed, DidDocument)
    assert parsed.pds is None or isinstance(parsed.pds, str)
    assert parsed.handle is None or parsed.handle == parsed.handle.lower()
