"""When a server says to come back: the statuses worth retrying and the wait it asked for.

Shard streams (HTTP and S3), the guarded JSON fetches and the AppView's backfill all retry
on the same statuses and read the same headers: `Retry-After` (seconds or an HTTP date), and
the `ratelimit-reset` that ATProto PDSes send instead on a 429.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping

__all__ = ["RETRY_STATUS", "retry_after_seconds"]

#: Statuses that mean "try again later" rather than "this will never work".
RETRY_STATUS = frozenset((408, 425, 429, 500, 502, 503, 504))


def _digits(value: str) -> bool:
    return value.isascii() and value.isdigit()  # str.isdigit alone accepts "²"


def _http_seconds(value: str) -> float | None:
    value = value.strip()
    if _digits(value):
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return max(0.0, when.timestamp() - time.time())


def retry_after_seconds(headers: Mapping[str, str], status: int) -> float | None:
    """Seconds the server asked to wait, or None when it did not say.

    `Retry-After` wins; else `ratelimit-reset` when the request was refused for the rate (a
    429, or `ratelimit-remaining: 0`). PDSes send an epoch timestamp there; the IETF draft
    sends delta-seconds. Header names are looked up in lower case (httpx and aiohttp headers
    match any case; botocore's are lower case).
    """
    retry_after = headers.get("retry-after")
    if retry_after:
        wait = _http_seconds(retry_after)
        if wait is not None:
            return wait
    reset = (headers.get("ratelimit-reset") or "").strip()
    limited = status == 429 or (headers.get("ratelimit-remaining") or "").strip() == "0"
    if _digits(reset) and limited:
        value = int(reset)
        return float(max(0, value - int(time.time()))) if value > 10**9 else float(value)
    return None
