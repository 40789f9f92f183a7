"""DIDs and DID documents: syntax, where a document lives, and what an atproto one says.

Pure functions, no transport: the SDK's resolver fetches with httpx through the network
guard, the AppView's with aiohttp; both read documents through here, so they agree on which
handle, PDS endpoint and signing key a document names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

from ..errors import ResolutionError
from ..lexicon import check_format

__all__ = [
    "DidDocument",
    "check_did",
    "did_document_url",
    "did_web_url",
    "parse_did_document",
]

_LOCAL_HOSTS = ("localhost", "127.0.0.1")


def check_did(did: str) -> str:
    """Return `did` if it is a syntactically valid DID; raise `ResolutionError` if not."""
    if not isinstance(did, str) or check_format("did", did):
        raise ResolutionError(f"not a valid DID: {did!r}")
    return did


def did_web_url(did: str, *, http_for_localhost: bool = True) -> str:
    """`did:web:host%3Aport` -> its `/.well-known/did.json` URL.

    did:web means https; plain http only for a local host when `http_for_localhost` (a
    devnet). Path-based did:web (`did:web:host:path`) is not an atproto DID.
    """
    rest = did[len("did:web:") :] if did.startswith("did:web:") else ""
    if not rest or ":" in rest:
        raise ResolutionError(f"unsupported did:web {did!r} (atproto allows no path)")
    host = unquote(rest)
    local = host.split(":", 1)[0] in _LOCAL_HOSTS
    scheme = "http" if local and http_for_localhost else "https"
    return f"{scheme}://{host}/.well-known/did.json"


def did_document_url(did: str, plc_url: str, *, http_for_localhost: bool = True) -> str:
    """Where the DID document of `did` is fetched: the PLC directory or the did:web host."""
    check_did(did)
    if did.startswith("did:plc:"):
        return f"{plc_url.rstrip('/')}/{quote(did, safe=':')}"
    if did.startswith("did:web:"):
        return did_web_url(did, http_for_localhost=http_for_localhost)
    raise ResolutionError(f"unsupported DID method in {did!r} (plc and web only)")


@dataclass(frozen=True, slots=True)
class DidDocument:
    """What an atproto DID document says: handle, PDS endpoint and repo signing key."""

    did: str
    handle: str | None
    pds: str | None
    key_type: str | None = None  # the `#atproto` verification method, as written
    key_multibase: str | None = None

    def signing_key(self) -> str | None:
        """The `#atproto` key as a did:key string; None when absent or of an unknown type.

        Converted on demand, so a reader that only wants the PDS never fails on a bad key.
        """
        if self.key_type is None:
            return None
        multibase = self.key_multibase or ""
        if self.key_type == "Multikey":  # already compressed and multicodec-prefixed
            return f"did:key:{multibase}"
        try:
            from atproto_crypto.did import get_did_key  # legacy types need point compression

            return get_did_key(self.key_type, multibase)
        except Exception as exc:  # atproto_crypto raises several unrelated types
            raise ResolutionError(
                f"unusable #atproto key in the DID document of {self.did}: {exc}"
            ) from exc


def _fragment_is(value: Any, did: str, fragment: str) -> bool:
    return value in (fragment, f"{did}{fragment}")


def _entries(doc: dict[str, Any], name: str) -> list[Any]:
    value = doc.get(name)
    return value if isinstance(value, list) else []  # absent or malformed: nothing there


def parse_did_document(did: str, doc: Any) -> DidDocument:
    """Check that `doc` is `did`'s document and pull out handle, `#atproto_pds` and `#atproto`.

    The handle is the first `at://` alias (lower-cased); it is a claim the caller confirms
    against the handle's own resolution when that matters.
    """
    if not isinstance(doc, dict) or doc.get("id") != did:
        raise ResolutionError(f"DID document of {did} is malformed or names another id")
    handle = None
    for aka in _entries(doc, "alsoKnownAs"):
        if isinstance(aka, str) and aka.startswith("at://"):
            handle = aka[len("at://") :].lower()
            break
    pds = None
    for svc in _entries(doc, "service"):
        if (
            isinstance(svc, dict)
            and _fragment_is(svc.get("id"), did, "#atproto_pds")
            and isinstance(svc.get("serviceEndpoint"), str)
        ):
            pds = svc["serviceEndpoint"].rstrip("/")
            break
    key_type = key_multibase = None
    for method in _entries(doc, "verificationMethod"):
        if isinstance(method, dict) and _fragment_is(method.get("id"), did, "#atproto"):
            key_type = str(method.get("type"))
            key_multibase = str(method.get("publicKeyMultibase", ""))
            break
    return DidDocument(did, handle, pds, key_type, key_multibase)
