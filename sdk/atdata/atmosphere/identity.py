"""Identity: DIDs to DID documents and PDS endpoints, handles to DIDs, at:// URIs parsed.

did:plc is resolved through the PLC directory (`ATDATA_PLC_URL`, default the public one),
did:web through `https://<host>/.well-known/did.json`. Handles resolve through
`https://<handle>/.well-known/atproto-did`, then `com.atproto.identity.resolveHandle` on the
services the caller names (its PDS, an AppView). Everything a document names is fetched
through the network guard. Results are cached for a few minutes. How a document is found,
judged, kept and fetched again is `atdata.atmosphere.did_resolution`, which the AppView's
async resolver shares; this module is its httpx transport, plus handles.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Any

from ..errors import ResolutionError, UnsafeURLError
from ..lexicon import check_format
from .did import DidDocument, parse_did_document
from .did_resolution import DidNotFound, DidResolution
from .netguard import (
    check_url,
    get_bytes,
    get_json,
    private_network_allowed,
)

__all__ = [
    "AtUri",
    "IdentityResolver",
    "default_plc_url",
    "parse_at_uri",
]

DEFAULT_PLC_URL = "https://plc.directory"
_TTL = 300.0


def default_plc_url() -> str:
    """`ATDATA_PLC_URL`, else the public PLC directory."""
    return os.environ.get("ATDATA_PLC_URL") or DEFAULT_PLC_URL


@dataclass(frozen=True)
class AtUri:
    """`at://authority/collection/rkey` split into its parts."""

    authority: str
    collection: str | None = None
    rkey: str | None = None

    def __str__(self) -> str:
        return "at://" + "/".join(p for p in (self.authority, self.collection, self.rkey) if p)

    def with_authority(self, authority: str) -> AtUri:
        return AtUri(authority, self.collection, self.rkey)


def parse_at_uri(uri: str, *, need_record: bool = True) -> AtUri:
    """Parse (and check) an at:// URI; `need_record` requires collection and rkey."""
    if not isinstance(uri, str) or check_format("at-uri", uri):
        raise ResolutionError(f"not a valid at:// URI: {uri!r}")
    parts = uri[len("at://") :].split("/")
    at = AtUri(parts[0], *(parts[1:3] + [None] * (3 - len(parts))))
    if need_record and not (at.collection and at.rkey):
        raise ResolutionError(f"{uri!r} does not name a record (at://did/collection/rkey)")
    return at


def _raw(document: DidDocument, raw: dict[str, Any]) -> dict[str, Any]:
    return raw


class _Cache:
    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._data: dict[Any, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        with self._lock:
            hit = self._data.get(key)
            if hit and hit[0] > time.monotonic():
                return hit[1]
            return None

    def put(self, key: Any, value: Any) -> Any:
        with self._lock:
            self._data[key] = (time.monotonic() + self.ttl, value)
        return value

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


class IdentityResolver:
    """Resolves DIDs and handles, with a small TTL cache; all fetches go through the guard."""

    def __init__(
        self,
        plc_url: str | None = None,
        *,
        handle_services: list[str] | None = None,
        allow_private: bool | None = None,
        timeout: float = 15.0,
        ttl: float = _TTL,
    ) -> None:
        self.plc_url = (plc_url or default_plc_url()).rstrip("/")
        self.handle_services = [s.rstrip("/") for s in handle_services or []]
        self.allow_private = allow_private
        self.timeout = timeout
        self._dids: DidResolution[dict[str, Any]] = DidResolution(self.plc_url, ttl=ttl, read=_raw)
        self._handles = _Cache(ttl)

    def _get(self, url: str, params: dict[str, Any] | None = None, *, trusted: bool = False) -> Any:
        # The PLC directory and the handle services are the user's own configuration, so
        # they may sit on a private network; URLs from documents go through the full guard.
        allow = True if trusted else self.allow_private
        return get_json(url, params=params, allow_private=allow, timeout=self.timeout)

    # -- DIDs -----------------------------------------------------------------------------
    def resolve_did(self, did: str, *, fresh: bool = False) -> dict[str, Any]:
        """The DID document of `did` (did:plc or did:web); `fresh=True` skips the cache."""
        if not fresh:
            cached = self._dids.cached(did)
            if cached is not None:
                return cached
        url = self._dids.document_url(
            did, http_for_localhost=private_network_allowed(self.allow_private)
        )
        # The PLC directory is the user's own configuration (it may sit on a private
        # network); a did:web host is named by the DID itself and goes through the full guard.
        allow = True if did.startswith("did:plc:") else self.allow_private
        try:
            status, body = get_bytes(url, allow_private=allow, timeout=self.timeout)
        except UnsafeURLError:
            raise
        except ResolutionError as e:  # transport failure or deadline: names the URL
            raise ResolutionError(f"cannot resolve {did}: {e}") from e
        try:
            return self._dids.accept(did, url, status, body)
        except DidNotFound as e:  # callers tell "absent" apart by the cause's status
            raise ResolutionError(str(e)) from e

    def pds_endpoint(self, did: str, *, fresh: bool = False) -> str:
        """The `#atproto_pds` service endpoint of `did` (checked by the guard)."""
        pds = parse_did_document(did, self.resolve_did(did, fresh=fresh)).pds
        if pds is None:
            raise ResolutionError(f"DID document of {did} names no #atproto_pds service")
        return check_url(pds, allow_private=self.allow_private)

    def moved_pds(self, did: str, failed: str) -> str | None:
        """After `failed` (a PDS endpoint of `did`) did not answer: its endpoint now, if it
        moved. The document is fetched fresh once; None when it still names `failed`."""
        try:
            now = self.pds_endpoint(did, fresh=True)
        except ResolutionError:
            return None
        return now if now != failed else None

    # -- handles --------------------------------------------------------------------------
    def resolve_handle(self, handle: str) -> str:
        """The DID of `handle`: its https well-known file, else `resolveHandle` on the services.

        (DNS TXT is not tried: it needs a resolver library, and on a local network the
        well-known file or the hosting PDS answers.)
        """
        handle = handle.lower()
        if check_format("handle", handle):
            raise ResolutionError(f"not a valid handle: {handle!r}")
        cached = self._handles.get(handle)
        if cached is not None:
            return cached
        errors: list[str] = []
        did = self._handle_well_known(handle, errors)
        if did:
            return self._handles.put(handle, did)
        for service in self.handle_services:
            try:
                out = self._get(
                    f"{service}/xrpc/com.atproto.identity.resolveHandle",
                    {"handle": handle},
                    trusted=True,
                )
            except Exception as e:  # try the next service
                errors.append(f"{service}: {e}")
                continue
            did = out.get("did") if isinstance(out, dict) else None
            if isinstance(did, str) and not check_format("did", did):
                return self._handles.put(handle, did)
            errors.append(f"{service}: no DID in the answer")
        raise ResolutionError(f"cannot resolve handle {handle}: " + "; ".join(errors))

    def _handle_well_known(self, handle: str, errors: list[str]) -> str | None:
        url = f"https://{handle}/.well-known/atproto-did"
        try:
            status, body = get_bytes(
                url,
                allow_private=self.allow_private,
                timeout=self.timeout,
                max_bytes=2048,
                retries=0,  # the handle services are the fallback
            )
        except (ResolutionError, UnsafeURLError) as e:
            errors.append(f"{url}: {e}")
            return None
        did = body.decode(errors="replace").strip() if status == 200 else ""
        if did and not check_format("did", did):
            return did
        errors.append(f"{url}: HTTP {status}")
        return None

    def resolve_identifier(self, ident: str) -> str:
        """A DID for a DID or a handle."""
        return ident if ident.startswith("did:") else self.resolve_handle(ident)

    def clear(self) -> None:
        self._dids.clear()
        self._handles.clear()
