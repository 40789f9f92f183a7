"""The network guard: what may be fetched when a URL comes from a record or a DID document.

Records and DID documents are written by strangers, so a URL found in one could point at
the user's own machine or private network (SSRF) or at a never-ending stream. URLs taken
from them are fetched only over http(s), from public addresses, with a time limit and a size
cap. Two switches open more, each on its own: `ATDATA_ALLOW_PRIVATE_NETWORK=1` (or
`allow_private=True`) admits loopback and private ranges (a devnet, a lab network), and
`ATDATA_ALLOW_LINK_LOCAL=1` admits link-local addresses, where clouds serve instance
metadata and credentials (169.254.0.0/16, fe80::/10, fd00:ec2::254). Multicast, reserved
and unspecified addresses are never fetched. The check runs on every request a client sends,
redirects included, through an httpx transport.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import socket
import time
from collections.abc import Iterable
from typing import Any, TypedDict, Unpack
from urllib.parse import urlsplit

import httpx

from .._http import Deadline, describe_http_error, read_body
from ..errors import ResolutionError, UnsafeURLError
from ..ratelimit import RETRY_STATUS, retry_after_seconds

__all__ = [
    "DEFAULT_MAX_JSON_BYTES",
    "DEFAULT_TIMEOUT",
    "FetchError",
    "GuardTransport",
    "HTTPStatusError",
    "check_url",
    "get_bytes",
    "get_json",
    "guarded_client",
    "link_local_allowed",
    "private_network_allowed",
    "retry_delay",
]

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_JSON_BYTES = 8 * 1024 * 1024  # records are < 1 MB; DID docs are tiny


class HTTPStatusError(ResolutionError):
    """A guarded GET got an error status; keeps the XRPC error name when the body has one."""

    def __init__(self, url: str, status: int, body: bytes) -> None:
        self.url, self.status, self.body = url, status, body
        try:
            payload = json.loads(body)
            self.error = payload.get("error") if isinstance(payload, dict) else None
            message = payload.get("message") if isinstance(payload, dict) else None
        except ValueError:
            self.error, message = None, None
        detail = f"{self.error}: {message}" if self.error else body[:200].decode(errors="replace")
        super().__init__(f"GET {url}: HTTP {status} {detail}".rstrip())


def _env_switch(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes")


def private_network_allowed(allow_private: bool | None = None) -> bool:
    """An explicit argument wins; otherwise `ATDATA_ALLOW_PRIVATE_NETWORK=1` allows."""
    if allow_private is not None:
        return allow_private
    return _env_switch("ATDATA_ALLOW_PRIVATE_NETWORK")


def link_local_allowed() -> bool:
    """`ATDATA_ALLOW_LINK_LOCAL=1`: link-local and cloud-metadata addresses may be fetched.

    Separate from the private-network switch, which a devnet needs: a process on a cloud
    machine can reach the instance's credentials at these addresses.
    """
    return _env_switch("ATDATA_ALLOW_LINK_LOCAL")


_CGNAT = ipaddress.ip_network("100.64.0.0/10")
#: Instance-metadata services outside the link-local ranges (AWS over IPv6, Alibaba Cloud).
_METADATA = {ipaddress.ip_address("fd00:ec2::254"), ipaddress.ip_address("100.100.100.200")}


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _unmapped(ip: IPAddress) -> IPAddress:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _is_public(ip: IPAddress) -> bool:
    ip = _unmapped(ip)
    return not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or ip in _CGNAT
        or ip in _METADATA
    )


def _non_public_kind(ip: IPAddress) -> str:
    """Which switch admits a non-public address: "link-local", "private" or "never"."""
    ip = _unmapped(ip)
    if ip.is_link_local or ip in _METADATA:
        return "link-local"
    if ip.is_loopback:
        return "private"
    if ip.is_multicast or ip.is_reserved or ip.is_unspecified:
        return "never"
    if ip.is_private or ip in _CGNAT:
        return "private"
    return "never"


def _addresses(host: str, port: int) -> Iterable[str]:
    try:  # an address in its standard form needs no lookup (other spellings get one)
        return {str(ipaddress.ip_address(host))}
    except ValueError:
        pass
    try:
        return {str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)}
    except socket.gaierror as e:
        raise UnsafeURLError(f"cannot resolve host {host!r}: {e}") from None


def check_url(url: str, *, allow_private: bool | None = None) -> str:
    """Return `url` if it may be fetched; raise `UnsafeURLError` saying why not.

    Only http and https; every address the host resolves to must be public, or admitted by
    its switch: loopback and private ranges by `allow_private` (else
    `ATDATA_ALLOW_PRIVATE_NETWORK`), link-local and metadata addresses by
    `ATDATA_ALLOW_LINK_LOCAL`.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise UnsafeURLError(f"malformed URL {url!r}: {e}") from None
    if parts.scheme not in ("http", "https"):
        raise UnsafeURLError(f"refusing {url!r}: only http(s) URLs are fetched")
    host = parts.hostname
    if not host:
        raise UnsafeURLError(f"refusing {url!r}: no host")
    if parts.username or parts.password:
        raise UnsafeURLError(f"refusing {url!r}: credentials in URL")
    private_ok = private_network_allowed(allow_private)
    port = port or (443 if parts.scheme == "https" else 80)
    for addr in _addresses(host, port):
        ip = ipaddress.ip_address(addr.split("%", 1)[0])
        if _is_public(ip):
            continue
        kind = _non_public_kind(ip)
        if kind == "private" and not private_ok:
            raise UnsafeURLError(
                f"refusing {url!r}: {host} resolves to non-public address {ip} "
                "(set ATDATA_ALLOW_PRIVATE_NETWORK=1 to allow local/private networks)"
            )
        if kind == "link-local" and not link_local_allowed():
            raise UnsafeURLError(
                f"refusing {url!r}: {host} resolves to link-local address {ip}, where cloud "
                "machines serve their credentials (set ATDATA_ALLOW_LINK_LOCAL=1 to allow it)"
            )
        if kind == "never":
            raise UnsafeURLError(f"refusing {url!r}: {host} resolves to unusable address {ip}")
    return url


def retry_delay(response: httpx.Response, attempt: int, *, base: float = 0.5) -> float:
    """Seconds to wait before retrying: what the server asked for, else exponential backoff."""
    wait = retry_after_seconds(response.headers, response.status_code)
    return wait if wait is not None else base * (2**attempt)


class GuardTransport(httpx.HTTPTransport):
    """An httpx transport that checks each request's URL (redirects too) with `check_url`.

    It also turns a `ratelimit-reset` header on a 429 into `Retry-After`, so retry loops that
    only read `Retry-After` wait as long as the server asked.
    """

    def __init__(self, *, allow_private: bool | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.allow_private = allow_private

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        check_url(str(request.url), allow_private=self.allow_private)
        response = super().handle_request(request)
        if response.status_code == 429 and "retry-after" not in response.headers:
            delay = retry_delay(response, 0)
            response.headers["Retry-After"] = str(int(delay + 0.999))
        return response


def guarded_client(
    *, allow_private: bool | None = None, timeout: float = DEFAULT_TIMEOUT, **kwargs: Any
) -> httpx.Client:
    """An httpx client whose every request (and redirect) passes the network guard."""
    return httpx.Client(
        transport=GuardTransport(allow_private=allow_private),
        timeout=timeout,
        follow_redirects=True,
        max_redirects=5,
        **kwargs,
    )


class FetchError(ResolutionError):
    """A guarded GET failed in transport or ran past its deadline; names the URL."""

    def __init__(self, url: str, message: str) -> None:
        self.url = url
        super().__init__(message)


def get_bytes(
    url: str,
    *,
    params: dict[str, Any] | None = None,
    allow_private: bool | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    max_bytes: int = DEFAULT_MAX_JSON_BYTES,
    retries: int = 4,
    client: httpx.Client | None = None,
) -> tuple[int, bytes]:
    """GET a small document through the guard: (status, body), within one deadline.

    `timeout` bounds the whole request, retries (on 429/5xx) and their waits included;
    transport failures and the deadline raise `FetchError` naming the URL, and a body over
    `max_bytes` (or a URL the guard refuses) `UnsafeURLError`.
    """
    deadline = Deadline(timeout)
    own = client is None
    client = client or guarded_client(allow_private=allow_private, timeout=timeout)

    try:
        for attempt in range(retries + 1):
            with client.stream("GET", url, params=params, timeout=deadline.timeout()) as response:
                if response.status_code in RETRY_STATUS and attempt < retries:
                    delay = min(retry_delay(response, attempt), 60.0)
                    if delay < deadline.remaining():
                        log.info(
                            "GET %s: HTTP %s, retrying in %.1fs", url, response.status_code, delay
                        )
                        time.sleep(delay)
                        continue
                body = read_body(
                    response,
                    url,
                    deadline=deadline,
                    max_bytes=max_bytes,
                    too_large=UnsafeURLError,
                    too_slow=lambda message: FetchError(url, message),
                )
                return response.status_code, body
        raise AssertionError("unreachable")  # pragma: no cover
    except httpx.HTTPError as e:
        raise FetchError(url, f"GET {url}: {describe_http_error(e)}") from e
    finally:
        if own:
            client.close()


class FetchOptions(TypedDict, total=False):
    """`get_bytes`' keyword arguments, which `get_json` passes on as they are."""

    params: dict[str, Any] | None
    allow_private: bool | None
    timeout: float
    max_bytes: int
    retries: int
    client: httpx.Client | None


def get_json(url: str, **options: Unpack[FetchOptions]) -> Any:
    """GET a JSON document through the guard: size-capped, retried on 429/5xx, one deadline.

    Takes `get_bytes`' options. Raises `HTTPStatusError` for other error statuses or a
    non-JSON body, `FetchError` for transport failures and the deadline, and `UnsafeURLError`
    when the URL is refused or the body exceeds `max_bytes`.
    """
    status, body = get_bytes(url, **options)
    if status >= 400:
        raise HTTPStatusError(url, status, body)
    try:
        return json.loads(body)
    except ValueError as e:
        raise HTTPStatusError(url, status, body[:200]) from e
