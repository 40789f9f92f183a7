"""Transport: one websocket per host to `com.atproto.sync.subscribeRepos`.

`FirehoseConnection.frames()` yields raw binary messages forever: it connects
with the caller's current cursor, reconnects with exponential backoff and full
jitter after any failure, and treats a socket that answers no ping within the
heartbeat window as stalled (aiohttp closes it; we reconnect). A host that accepts
the TCP connection but does not complete the websocket handshake within
`connect_timeout` seconds counts as a failed attempt (logged, then the same
backoff), instead of hanging for aiohttp's five-minute default. Decoding and
cursor bookkeeping are the caller's: the connection only asks `cursor()` for
the seq to resume after at each (re)connect.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from urllib.parse import urlencode, urlsplit

import aiohttp

__all__ = ["DEFAULT_CONNECT_TIMEOUT", "FirehoseConnection", "HostState", "subscribe_url"]

log = logging.getLogger(__name__)

NSID = "com.atproto.sync.subscribeRepos"
DEFAULT_CONNECT_TIMEOUT = 10.0  # seconds for TCP connect + TLS + websocket handshake


def subscribe_url(host: str, cursor: int | None) -> str:
    """`ws://h:p` (or http(s)://, or a bare hostname = wss) -> the subscribeRepos URL."""
    parts = urlsplit(host if "://" in host else f"wss://{host}")
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    if scheme not in ("ws", "wss"):
        raise ValueError(f"firehose host must be ws(s):// or http(s)://, got {host!r}")
    query = f"?{urlencode({'cursor': cursor})}" if cursor is not None else ""
    return f"{scheme}://{parts.netloc}/xrpc/{NSID}{query}"


class FirehoseConnection:
    """A self-healing subscription to one host."""

    def __init__(
        self,
        host: str,
        cursor: Callable[[], int | None],
        *,
        session: aiohttp.ClientSession | None = None,
        heartbeat: float = 20.0,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        idle_timeout: float | None = None,
        backoff_base: float = 0.5,
        backoff_max: float = 60.0,
        max_msg_size: int = 64 * 1024 * 1024,
    ) -> None:
        self.host = host
        self.cursor = cursor
        self.session = session
        self.heartbeat = heartbeat
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.max_msg_size = max_msg_size
        self.connected = False
        self.connects = 0
        self.failures = 0
        self.last_frame_at: float | None = None
        self.last_error: str | None = None
        self._stopping = False
        self._ws: aiohttp.ClientWebSocketResponse | None = None

    def backoff(self, attempt: int) -> float:
        """Full jitter: uniform in [0, min(max, base * 2^attempt)] (with a small floor)."""
        cap = min(self.backoff_max, self.backoff_base * 2 ** min(attempt, 30))
        return max(0.05, random.uniform(0, cap))

    async def frames(self) -> AsyncIterator[bytes]:
        """Binary messages in order, across reconnects, until `stop()`."""
        own = self.session is None
        if own:
            self.session = aiohttp.ClientSession()
        attempt = 0
        try:
            while not self._stopping:
                url = subscribe_url(self.host, self.cursor())
                got_frame = False
                handshaken = False
                try:
                    ws = await self._connect(url)
                    handshaken = True
                    async with ws:
                        self._ws = ws
                        self.connected = True
                        self.connects += 1
                        log.info("firehose %s connected (%s)", self.host, url)
                        while True:
                            msg = await ws.receive(timeout=self.idle_timeout)
                            if msg.type == aiohttp.WSMsgType.BINARY:
                                got_frame = True
                                self.last_frame_at = time.monotonic()
                                yield msg.data
                            elif msg.type in (
                                aiohttp.WSMsgType.CLOSE,
                                aiohttp.WSMsgType.CLOSING,
                                aiohttp.WSMsgType.CLOSED,
                            ):
                                self.last_error = f"closed by peer ({ws.close_code})"
                                break
                            elif msg.type == aiohttp.WSMsgType.ERROR:
                                self.last_error = f"socket error: {ws.exception()}"
                                break
                            # text frames are not part of the protocol: ignore
                except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                    self.last_error = f"{type(exc).__name__}: {exc}"
                finally:
                    self.connected = False
                    self._ws = None
                if self._stopping:
                    break
                if got_frame:
                    attempt = 0
                self.failures += 1
                delay = self.backoff(attempt)
                attempt += 1
                log.warning(
                    "firehose %s %s (%s); reconnecting in %.2fs",
                    self.host,
                    "lost" if handshaken else "cannot connect",
                    self.last_error,
                    delay,
                )
                await asyncio.sleep(delay)
        finally:
            if own and self.session is not None:
                await self.session.close()
                self.session = None

    async def _connect(self, url: str) -> aiohttp.ClientWebSocketResponse:
        """Open the websocket; TCP connect + handshake must finish in `connect_timeout`."""
        assert self.session is not None
        try:
            async with asyncio.timeout(self.connect_timeout):
                return await self.session.ws_connect(
                    url,
                    heartbeat=self.heartbeat,
                    max_msg_size=self.max_msg_size,
                    autoping=True,
                )
        except TimeoutError:
            raise TimeoutError(f"no websocket handshake within {self.connect_timeout:g}s") from None

    async def reconnect(self) -> None:
        """Drop the socket (e.g. after an error frame); `frames()` reconnects."""
        if self._ws is not None:
            await self._ws.close()

    async def stop(self) -> None:
        self._stopping = True
        if self._ws is not None:
            await self._ws.close()


class HostState:
    """What we know of one followed host: its cursor, last event time and connection."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.seq: int | None = None  # last seq processed (committed or pending)
        self.last_time: str | None = None  # `time` of the last event processed
        self.connection: FirehoseConnection | None = None

    def lag(self) -> float | None:
        """Seconds between now and the last processed event's timestamp."""
        if not self.last_time:
            return None
        try:
            stamp = datetime.fromisoformat(self.last_time.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
        return max(0.0, time.time() - stamp)
