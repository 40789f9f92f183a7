"""DID resolution for ingest: handle, PDS endpoint and the repo signing key, cached.

Commit signatures are checked against the key in the repo's *current* DID
document. Documents are cached (keys rarely rotate); a signature failure makes
the verifier ask once for a fresh copy before refusing the commit, and an
`#identity` event drops the cached copy.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import aiohttp
from atdata.atmosphere import did as did_doc
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
    parsed = did_doc.parse_did_document(did, doc)
    did_key = parsed.signing_key()
    return Identity(did, parsed.handle, parsed.pds, VerifyKey(did_key) if did_key else None)


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
        self._cache: dict[str, tuple[float, Identity]] = {}
        self._inflight: dict[str, asyncio.Future[Identity]] = {}
        self.resolutions = 0  # network fetches made (for metrics and tests)

    def preload(self, identity: Identity) -> None:
        """Seed the cache (the benchmark preloads its synthetic DID documents)."""
        self._cache[identity.did] = (time.monotonic(), identity)

    def invalidate(self, did: str) -> None:
        self._cache.pop(did, None)

    def cached(self, did: str) -> Identity | None:
        hit = self._cache.get(did)
        if hit and time.monotonic() - hit[0] < self.ttl:
            return hit[1]
        return None

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
            ident = parse_did_document(did, await self._fetch(did))
            self._cache[did] = (time.monotonic(), ident)
            fut.set_result(ident)
            return ident
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # mark retrieved so asyncio does not warn
            raise
        finally:
            del self._inflight[did]

    async def _fetch(self, did: str) -> Any:
        url = did_doc.did_document_url(did, self.plc_url)
        if self._session is None:
            self._session = aiohttp.ClientSession()
        self.resolutions += 1
        try:
            async with self._session.get(url, timeout=self.timeout) as resp:
                if resp.status == 404 or resp.status == 410:
                    raise ResolutionError(f"{did} not found ({resp.status})")
                if resp.status != 200:
                    raise ResolutionError(f"resolving {did}: HTTP {resp.status}")
                return await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise ResolutionError(f"resolving {did}: {exc}") from exc

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None
