"""The rules both identity resolvers follow, apart from their transports.

The SDK resolves DIDs with httpx through the network guard (sync), the AppView with aiohttp
(async). What they must agree on lives here, so a document one of them accepts the other
accepts too: which DIDs resolve and where their documents are (`did.py`), how a fetched
answer is judged (HTTP status, JSON, the document naming the DID it was fetched for), how
long an accepted document is kept, and when a kept one is fetched again: after its time to
live, or when the caller asks for a fresh copy because using it failed in a way a stale copy
would explain (a commit signature that does not verify: the key may have rotated; a PDS that
does not answer: the account may have moved). Each transport only fetches bytes.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from ..errors import ResolutionError
from .did import DidDocument, check_did, did_document_url, parse_did_document

__all__ = ["MAX_DOCUMENT_BYTES", "DidNotFound", "DidResolution"]

T = TypeVar("T")

#: Largest DID document either resolver reads (real ones are about a kilobyte).
MAX_DOCUMENT_BYTES = 1024 * 1024


class DidNotFound(ResolutionError):
    """The directory or did:web host says the DID does not exist (404) or is gone (410)."""

    error = "DidNotFound"

    def __init__(self, did: str, url: str, status: int) -> None:
        self.did, self.url, self.status = did, url, status
        super().__init__(f"cannot resolve {did}: not found ({status} from {url})")


class DidResolution(Generic[T]):
    """Where a DID document is fetched from, whether an answer is accepted, and the cache.

    `read(document, raw)` turns an accepted document into what the resolver keeps and hands
    out (the SDK keeps the raw JSON, the AppView its parsed identity with the signing key).
    """

    def __init__(
        self,
        plc_url: str,
        *,
        ttl: float,
        read: Callable[[DidDocument, dict[str, Any]], T],
    ) -> None:
        self.plc_url = plc_url.rstrip("/")
        self.ttl = ttl
        self._read = read
        self._cache: dict[str, tuple[float, T]] = {}
        self._lock = threading.Lock()

    def document_url(self, did: str, *, http_for_localhost: bool = True) -> str:
        """The URL of `did`'s document; a `ResolutionError` for a DID that does not resolve."""
        return did_document_url(check_did(did), self.plc_url, http_for_localhost=http_for_localhost)

    def cached(self, did: str) -> T | None:
        """The kept answer for `did` while it is younger than the time to live."""
        with self._lock:
            hit = self._cache.get(did)
        if hit is not None and time.monotonic() - hit[0] < self.ttl:
            return hit[1]
        return None

    def keep(self, did: str, value: T) -> T:
        with self._lock:
            self._cache[did] = (time.monotonic(), value)
        return value

    def invalidate(self, did: str) -> None:
        """Forget `did` (its identity changed): the next use fetches it again."""
        with self._lock:
            self._cache.pop(did, None)

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()

    def accept(self, did: str, url: str, status: int, body: bytes) -> T:
        """Judge the answer to a fetch of `url` for `did`; keep and return it, or raise.

        404 and 410 mean the DID does not exist (or was tombstoned); any other status but
        200, a body over `MAX_DOCUMENT_BYTES` or not JSON, or a document of another DID is
        refused.
        """
        if status in (404, 410):
            raise DidNotFound(did, url, status)
        if status != 200:
            raise ResolutionError(f"cannot resolve {did}: HTTP {status} from {url}")
        if len(body) > MAX_DOCUMENT_BYTES:
            raise ResolutionError(
                f"cannot resolve {did}: {url} answered over {MAX_DOCUMENT_BYTES} bytes"
            )
        try:
            raw = json.loads(body)
        except ValueError:
            raise ResolutionError(f"cannot resolve {did}: {url} did not answer JSON") from None
        try:
            document = parse_did_document(did, raw)
        except ResolutionError as e:
            raise ResolutionError(f"{e} (from {url})") from None
        return self.keep(did, self._read(document, raw))
