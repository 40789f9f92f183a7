"""DID resolution for ingest: handle, PDS endpoint and the repo signing key, cached.

Commit signatures are checked against the key in the repo's *current* DID
document. Documents are cached (keys rarely rotate); a signature failure makes
the verifier ask once for a fresh copy before refusing the commit, and an
`#identity` event drops the cached copy. Where documents live, how an answer is
judged and how long it is kept are the SDK's (`atdata.atmosphere.did_resolution`,
shared with its resolver); this module is the aiohttp transport and the key.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import aiohttp
from atdata.atmosphere import did as did_doc
from atdata.atmosphere.did_resolution import MAX_DOCUMENT_BYTES, DidResolution
from atdata.errors import ResolutionError
from atproto_crypto.consts import (
    P256_CURVE_ORDER,
    P256_JWT_ALG,
    SECP256K1_CURVE_ORDER,
    SECP256K1_JWT_ALG,
)
from atproto_crypto.did import parse_did_key
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.hashes import SHA256

__all__ = ["Identity", "IdentityResolver", "VerifyKey", "parse_did_document"]

log = logging.getLogger(__name__)

_CURVES = {
    P256_JWT_ALG: (ec.SECP256R1(), P256_CURVE_ORDER),
    SECP256K1_JWT_ALG: (ec.SECP256K1(), SECP256K1_CURVE_ORDER),
}
_ECDSA = ec.ECDSA(SHA256())

_coincurve: ModuleType | None
try:  # libsecp256k1 checks a secp256k1 signature ~10x faster than OpenSSL (27 vs 270 us)
    import coincurve as _coincurve
except ImportError:  # pragma: no cover - optional speed-up
    _coincurve = None


class VerifyKey:
    """A parsed ATProto signing key (P-256 or secp256k1) that checks raw 64-byte signatures."""

    __slots__ = ("alg", "did_key", "_pub", "_half_order", "_k1")

    def __init__(self, did_key: str) -> None:
        try:
            parsed = parse_did_key(did_key)
            curve, order = _CURVES[parsed.jwt_alg]
            self._pub = ec.EllipticCurvePublicKey.from_encoded_point(curve, parsed.key_bytes)
        except Exception as exc:  # atproto_crypto raises several unrelated types
            raise ResolutionError(f"unusable signing key {did_key!r}: {exc}") from exc
        self.alg = parsed.jwt_alg
        self.did_key = did_key
        self._half_order = order // 2
        self._k1 = None
        if _coincurve is not None and self.alg == SECP256K1_JWT_ALG:
            self._k1 = _coincurve.PublicKey(parsed.key_bytes)

    def verify(self, data: bytes, sig: bytes) -> bool:
        """True when `sig` (r||s, low-S as the spec demands) signs `data`."""
        if len(sig) != 64:
            return False
        r = int.from_bytes(sig[:32], "big")
        s = int.from_bytes(sig[32:], "big")
        if s > self._half_order or r == 0 or s == 0:
            return False
        if self._k1 is not None:
            try:
                return bool(self._k1.verify(encode_dss_signature(r, s), data))
            except ValueError:
                return False
        try:
            self._pub.verify(encode_dss_signature(r, s), data, _ECDSA)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True, slots=True)
class Identity:
    """What ingest needs from a DID document."""

    did: str
    handle: str | None
    pds: str | None
    key: VerifyKey | None


def parse_did_document(did: str, doc: Any) -> Identity:
    """Handle, `#atproto_pds` endpoint and `#atproto` key of a DID document (shared parser)."""
    return _identity(did_doc.parse_did_document(did, doc), doc)


def _identity(document: did_doc.DidDocument, raw: dict[str, Any]) -> Identity:
    did_key = document.signing_key()
    key = VerifyKey(did_key) if did_key else None
    return Identity(document.did, document.handle, document.pds, key)


class IdentityResolver:
    """Async DID resolver (did:plc via the directory, did:web) with a TTL cache."""

    def __init__(
        self,
        plc_url: str = "https://plc.directory",
        *,
        ttl: float = 3600.0,
        timeout: float = 10.0,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.plc_url = plc_url.rstrip("/")
        self.ttl = ttl
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._session = session
        self._own_session = session is None
        self._dids: DidResolution[Identity] = DidResolution(self.plc_url, ttl=ttl, read=_identity)
        self._inflight: dict[str, asyncio.Future[Identity]] = {}
        self.resolutions = 0  # network fetches made (for metrics and tests)

    def preload(self, identity: Identity) -> None:
        """Seed the cache (the benchmark preloads its synthetic DID documents)."""
        self._dids.keep(identity.did, identity)

    def invalidate(self, did: str) -> None:
        self._dids.invalidate(did)

    def cached(self, did: str) -> Identity | None:
        return self._dids.cached(did)

    async def resolve(self, did: str, *, fresh: bool = False) -> Identity:
        """The identity of `did`; `fresh=True` bypasses the cache (once per failure)."""
        if not fresh:
            hit = self.cached(did)
            if hit is not None:
                return hit
        pending = self._inflight.get(did)
        if pending is not None:
            return await asyncio.shield(pending)
        fut: asyncio.Future[Identity] = asyncio.get_running_loop().create_future()
        self._inflight[did] = fut
        try:
            ident = await self._fetch(did)
            fut.set_result(ident)
            return ident
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # mark retrieved so asyncio does not warn
            raise
        finally:
            del self._inflight[did]

    async def _fetch(self, did: str) -> Identity:
        url = self._dids.document_url(did)
        if self._session is None:
            self._session = aiohttp.ClientSession()
        self.resolutions += 1
        try:
            async with self._session.get(url, timeout=self.timeout) as resp:
                status, body = resp.status, bytearray()
                async for chunk in resp.content.iter_chunked(1 << 16):
                    body += chunk
                    if len(body) > MAX_DOCUMENT_BYTES:
                        break  # refused by accept(): no need to read the rest
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ResolutionError(f"resolving {did} via {url}: {exc!r}") from exc
        return self._dids.accept(did, url, status, bytes(body))

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None
