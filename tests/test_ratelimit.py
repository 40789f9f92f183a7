"""The wait a server asks for (Retry-After, ATProto ratelimit-*), read the same everywhere."""

from __future__ import annotations

import email.utils
import time

import httpx
from atdata.ratelimit import RETRY_STATUS, retry_after_seconds
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict


def test_retry_after_seconds_and_http_date() -> None:
    assert retry_after_seconds({"retry-after": "7"}, 503) == 7.0
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 28 <= retry_after_seconds({"retry-after": later}, 503) <= 30  # type: ignore[operator]
    earlier = email.utils.formatdate(time.time() - 30, usegmt=True)
    assert retry_after_seconds({"retry-after": earlier}, 429) == 0.0
    assert retry_after_seconds({"retry-after": "soon"}, 429) is None
    assert retry_after_seconds({}, 429) is None


def test_ratelimit_reset_only_when_refused_for_the_rate() -> None:
    epoch = str(int(time.time()) + 20)
    assert 18 <= retry_after_seconds({"ratelimit-reset": epoch}, 429) <= 20  # type: ignore[operator]
    assert retry_after_seconds({"ratelimit-reset": "3"}, 429) == 3.0  # delta-seconds form
    headers = {"ratelimit-reset": "3", "ratelimit-remaining": "0"}
    assert retry_after_seconds(headers, 503) == 3.0
    # A successful answer that still has budget left says nothing about waiting.
    assert retry_after_seconds({"ratelimit-reset": "3", "ratelimit-remaining": "9"}, 503) is None
    # Retry-After wins over ratelimit-reset.
    assert retry_after_seconds({"retry-after": "1", "ratelimit-reset": "9"}, 429) == 1.0


def test_header_containers_of_every_client() -> None:
    # httpx and aiohttp headers match any case; botocore hands over lower-case dicts.
    assert retry_after_seconds(httpx.Headers({"Retry-After": "4"}), 429) == 4.0
    assert retry_after_seconds(CIMultiDict({"RateLimit-Reset": "5"}), 429) == 5.0
    assert retry_after_seconds({"retry-after": "6"}, 503) == 6.0


def test_retry_statuses() -> None:
    assert {429, 503, 504} <= RETRY_STATUS
    assert not {200, 206, 400, 401, 403, 404, 416} & RETRY_STATUS


@given(
    st.dictionaries(
        st.sampled_from(["retry-after", "ratelimit-reset", "ratelimit-remaining"]),
        st.text(max_size=40),
    ),
    st.integers(100, 599),
)
def test_never_raises_and_never_negative(headers: dict[str, str], status: int) -> None:
    wait = retry_after_seconds(headers, status)
    assert wait is None or wait >= 0
