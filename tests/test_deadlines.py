"""Time limits that hold against a server trickling bytes: a deadline for metadata (JSON)
fetches, a throughput floor for shard streams, and atdata errors that name the URL."""

from __future__ import annotations

import contextlib
import http.server
import time
from collections.abc import Iterator
from typing import Any

import atdata
import pytest
from _fixtures.local_http import serving
from atdata._http import ThroughputFloor, min_throughput
from atdata._sources import HttpShard
from atdata.atmosphere.netguard import FetchError, get_json
from atdata.atmosphere.resolve import GuardedHttpShard
from atdata.errors import ResolutionError, SourceError

BODY = b'{"padding": "' + b"x" * 4000 + b'"}'


class Trickle(http.server.BaseHTTPRequestHandler):
    """`/trickle`: one byte every `server.interval` s; `/fast`: the whole body at once."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # http.server API
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        try:
            if self.path.startswith("/fast"):
                self.wfile.write(BODY)
                return
            for i in range(len(BODY)):
                self.wfile.write(BODY[i : i + 1])
                self.wfile.flush()
                time.sleep(self.server.interval)  # type: ignore[attr-defined]
        except OSError:  # the client gave up: what the test wants
            pass

    def log_message(self, *args: Any) -> None:
        pass


@contextlib.contextmanager
def trickle_server(interval: float) -> Iterator[str]:
    with serving(Trickle, interval=interval) as server:
        yield server.url


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("interval", "timeout"), [(0.2, 1.0), pytest.param(2.0, 3.0, marks=pytest.mark.slow)]
)
def test_a_json_fetch_ends_at_its_deadline_with_an_error_naming_the_url(
    interval: float, timeout: float
) -> None:
    with trickle_server(interval) as url:
        started = time.monotonic()
        with pytest.raises(FetchError) as info:
            get_json(f"{url}/trickle", allow_private=True, timeout=timeout, retries=0)
        elapsed = time.monotonic() - started
    assert isinstance(info.value, ResolutionError) and info.value.url == f"{url}/trickle"
    assert f"{url}/trickle" in str(info.value) and f"within {timeout:g} s" in str(info.value)
    assert elapsed < timeout + interval + 1.0


@pytest.mark.timeout(60)
def test_an_appview_query_ends_at_its_deadline() -> None:
    with trickle_server(0.2) as url:
        av = atdata.AppViewClient(url, timeout=1.0)
        started = time.monotonic()
        with pytest.raises(atdata.AppViewError, match="io.atdata.describeService"):
            av.describe()
        assert time.monotonic() - started < 2.5
        av.close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("guarded", [False, True])
def test_a_shard_stream_under_the_throughput_floor_fails_naming_the_url(
    guarded: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ATDATA_MIN_THROUGHPUT", "1024/1.5")
    with trickle_server(0.2) as url:
        shard = (
            GuardedHttpShard(f"{url}/trickle", allow_private=True)
            if guarded
            else HttpShard(f"{url}/trickle")
        )
        started = time.monotonic()
        with pytest.raises(SourceError, match="under the floor") as info, shard.open() as f:
            f.read()
        assert time.monotonic() - started < 4.0
    assert f"{url}/trickle" in str(info.value) and "ATDATA_MIN_THROUGHPUT" in str(info.value)


@pytest.mark.timeout(60)
def test_a_slow_reader_of_a_fast_stream_is_not_under_the_floor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ATDATA_MIN_THROUGHPUT", "1024/0.5")
    with trickle_server(0.2) as url, HttpShard(f"{url}/fast").open() as f:
        got = b""
        while chunk := f.read(500):
            got += chunk
            time.sleep(0.1)  # ~0.9 s of reading elsewhere: more than the window
    assert got == BODY


def test_the_floor_counts_only_time_spent_waiting() -> None:
    floor = ThroughputFloor(min_rate=100, window=10, name="http://x/shard")
    for _ in range(100):
        floor.add(200, 0.1)  # 2,000 B/s
    floor.add(0, 9.0)  # a stall, but the last 10 s of waiting still brought 200 B
    with pytest.raises(SourceError, match=r"http://x/shard: \d+ bytes in the last"):
        floor.add(0, 2.0)


def test_the_floor_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ATDATA_MIN_THROUGHPUT", raising=False)
    assert min_throughput() == (1024.0, 30.0)
    monkeypatch.setenv("ATDATA_MIN_THROUGHPUT", "0")
    assert min_throughput() is None
    monkeypatch.setenv("ATDATA_MIN_THROUGHPUT", "4096/10")
    assert min_throughput() == (4096.0, 10.0)
    for bad in ("fast", "1024/0", "-5/3", "nan/3", "1024/x"):
        monkeypatch.setenv("ATDATA_MIN_THROUGHPUT", bad)
        with pytest.raises(SourceError, match="BYTES_PER_SECOND/WINDOW_SECONDS"):
            min_throughput()
