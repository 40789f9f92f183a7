"""Time limits for HTTP: deadlines for metadata fetches, a throughput floor for shard streams.

httpx's timeouts bound each network operation, not a request: a server that sends one byte
every two seconds never trips a 5 s read timeout, so a small JSON answer could take hours.
Metadata (records, DID documents, AppView answers: small JSON) therefore gets a deadline for
the whole request. Shards are large and may stream for a long time, so a shard stream gets a
floor instead: it fails when it delivers less than `min_rate` bytes/s, averaged over the last
`window` seconds spent waiting for the network (time the reader spends elsewhere does not
count). The floor is `ATDATA_MIN_THROUGHPUT` (`BYTES_PER_SECOND/WINDOW_SECONDS`, default
`1024/30`; `0` turns it off).
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import httpx

from .errors import AtdataError, SourceError

__all__ = [
    "Deadline",
    "ThroughputFloor",
    "describe_http_error",
    "min_throughput",
    "read_body",
]

ENV_MIN_THROUGHPUT = "ATDATA_MIN_THROUGHPUT"
DEFAULT_MIN_THROUGHPUT = (1024.0, 30.0)  # bytes per second, averaged over seconds


class Deadline:
    """A point in time a whole request must finish by."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def remaining(self) -> float:
        return max(self.end - time.monotonic(), 0.0)

    def expired(self) -> bool:
        return time.monotonic() >= self.end

    def timeout(self) -> httpx.Timeout:
        """httpx timeouts for the next request: no single operation may outlast the deadline."""
        return httpx.Timeout(max(self.remaining(), 0.001))


def describe_http_error(exc: BaseException) -> str:
    """An httpx exception as a short phrase (its class says what happened; text may be empty)."""
    text = str(exc).strip()
    kind = type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out ({kind}{': ' + text if text else ''})"
    return f"{kind}: {text}" if text else kind


def read_body(
    response: httpx.Response,
    url: str,
    *,
    deadline: Deadline,
    max_bytes: int,
    too_large: Callable[[str], AtdataError],
    too_slow: Callable[[str], AtdataError],
) -> bytes:
    """The body of a streamed `response`, refused past `max_bytes` or past `deadline`."""
    length = response.headers.get("content-length")
    if length and length.isdigit() and int(length) > max_bytes:
        raise too_large(f"{url}: response of {length} bytes exceeds {max_bytes}")
    body = bytearray()
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) > max_bytes:
            raise too_large(f"{url}: response exceeds {max_bytes} bytes")
        if deadline.expired():
            break
    else:
        return bytes(body)
    if not (length and length.isdigit() and len(body) == int(length)):  # else: just complete
        raise too_slow(
            f"GET {url}: no complete answer within {deadline.seconds:g} s "
            f"({len(body)} bytes received); the server is too slow"
        )
    return bytes(body)


def min_throughput() -> tuple[float, float] | None:
    """The shard-stream floor from `ATDATA_MIN_THROUGHPUT`: (bytes/s, window s), or None (off)."""
    raw = os.environ.get(ENV_MIN_THROUGHPUT, "").strip()
    if not raw:
        return DEFAULT_MIN_THROUGHPUT
    if raw == "0":
        return None
    rate, sep, window = raw.partition("/")
    try:
        value = (float(rate), float(window) if sep else DEFAULT_MIN_THROUGHPUT[1])
    except ValueError:
        value = (-1.0, -1.0)
    if not (value[0] >= 0 and value[1] > 0) or value[0] != value[0]:
        raise SourceError(
            f"{ENV_MIN_THROUGHPUT}={raw!r}: expected BYTES_PER_SECOND/WINDOW_SECONDS "
            "(e.g. 1024/30), or 0 to turn the floor off"
        )
    return value if value[0] > 0 else None


@dataclass
class ThroughputFloor:
    """Fails a stream delivering under `min_rate` bytes/s over the last `window` s of waiting.

    Only time spent waiting for the network is counted (the caller reports it with each
    chunk), so a slow consumer never makes a fast server look slow.
    """

    min_rate: float
    window: float
    name: str = ""

    def __post_init__(self) -> None:
        self._waited = 0.0
        self._bytes = 0
        # (seconds waited, bytes) marks at most one per window/32, oldest first.
        self._marks: deque[tuple[float, int]] = deque([(0.0, 0)])

    @classmethod
    def from_env(cls, name: str) -> ThroughputFloor | None:
        floor = min_throughput()
        return cls(floor[0], floor[1], name) if floor else None

    def add(self, nbytes: int, waited: float) -> None:
        """Count one chunk and the time spent waiting for it; raise if the floor is broken."""
        self._waited += waited
        self._bytes += nbytes
        now, marks = self._waited, self._marks
        if now - marks[-1][0] >= self.window / 32:
            marks.append((now, self._bytes))
        while len(marks) > 1 and marks[1][0] <= now - self.window:
            marks.popleft()
        start, base = marks[0]
        span = now - start
        if span >= self.window and self._bytes - base < self.min_rate * span:
            raise SourceError(
                f"{self.name}: {self._bytes - base} bytes in the last {span:.0f} s "
                f"({(self._bytes - base) / span:.0f} B/s), under the floor of "
                f"{self.min_rate:g} B/s over {self.window:g} s; giving up on this server "
                f"({ENV_MIN_THROUGHPUT} sets the floor)"
            )


def timed_chunks(chunks: Iterable[bytes], floor: ThroughputFloor | None) -> Iterable[bytes]:
    """`chunks`, each one's wait counted against `floor` (unchanged when there is none)."""
    if floor is None:
        yield from chunks
        return
    it = iter(chunks)
    while True:
        started = time.monotonic()
        try:
            chunk = next(it)
        except StopIteration:
            return
        except BaseException:
            floor.add(0, time.monotonic() - started)  # a stall that ended in an error counts
            raise
        floor.add(len(chunk), time.monotonic() - started)
        yield chunk
