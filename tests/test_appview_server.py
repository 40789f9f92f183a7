"""The AppView's connection policy and its serving processes, on real sockets.

Slow or idle clients are closed (header-read and keep-alive timeouts), connections past the
cap are answered 503, and `atdata appview serve --workers N` serves from N processes with one
/metrics over all of them. Small configured values keep the test short.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from _fixtures.appview_index import ServedApp, free_port
from atdata_appview.app import create_app
from atdata_appview.config import Settings
from atdata_appview.db import Store
from atdata_appview.server import Limits

LIMITS = Limits(header_timeout=0.6, keepalive_timeout=1.5, max_connections=4)


@pytest.fixture
def limited(tmp_path: Path) -> Iterator[ServedApp]:
    store = Store(f"sqlite:///{tmp_path / 'index.sqlite'}")
    app = ServedApp(lambda: create_app(store), LIMITS)
    with app:
        yield app
    store.close()


def _connect(app: ServedApp) -> socket.socket:
    return socket.create_connection(("127.0.0.1", app.port), timeout=10)


def _closed_within(sock: socket.socket, seconds: float) -> tuple[bool, bytes]:
    """(whether the server closed ``sock`` within ``seconds``, what it sent before)."""
    sock.settimeout(0.1)
    got = b""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return True, got
        if not chunk:
            return True, got
        got += chunk
    return False, got


def test_headers_trickling_in_are_cut_off(limited: ServedApp) -> None:
    with _connect(limited) as sock:
        sock.sendall(b"GET /_health HTTP/1.1\r\n")
        started = time.monotonic()
        closed = False
        got = b""
        while time.monotonic() - started < 5 and not closed:
            try:
                sock.sendall(b"X-Slow: a\r\n")  # a header line every 0.1 s, never the end
            except OSError:
                closed = True
                break
            closed, more = _closed_within(sock, 0.1)
            got += more
        elapsed = time.monotonic() - started
    assert closed, "a connection trickling headers was still open after 5 s"
    assert elapsed < LIMITS.header_timeout + 1.0
    if got:  # the 408 may be lost to a reset; when it arrives, it is the JSON error shape
        assert got.startswith(b"HTTP/1.1 408") and b'"RequestTimeout"' in got


def test_idle_connections_are_closed_after_the_keepalive_timeout(limited: ServedApp) -> None:
    with _connect(limited) as never_asked, _connect(limited) as asked_once:
        asked_once.sendall(b"GET /_health HTTP/1.1\r\nHost: x\r\n\r\n")
        started = time.monotonic()
        closed_idle, _ = _closed_within(never_asked, 5)
        closed_after, answer = _closed_within(asked_once, 5)
        elapsed = time.monotonic() - started
    assert closed_idle and closed_after
    assert answer.startswith(b"HTTP/1.1 200") and b'"ok"' in answer
    assert LIMITS.keepalive_timeout - 0.5 < elapsed < LIMITS.keepalive_timeout + 2.5


def test_connections_past_the_cap_are_refused_with_503(limited: ServedApp) -> None:
    held = [_connect(limited) for _ in range(LIMITS.max_connections)]
    try:
        time.sleep(0.2)
        with _connect(limited) as extra:
            closed, got = _closed_within(extra, 3)
        assert closed and got.startswith(b"HTTP/1.1 503")
        assert json.loads(got.partition(b"\r\n\r\n")[2])["error"] == "Overloaded"
        held.pop().close()
        time.sleep(0.2)
        assert httpx.get(limited.url + "/_health", timeout=10).status_code == 200
    finally:
        for sock in held:
            sock.close()


def test_settings_read_limits_from_options_and_environment() -> None:
    env = {
        "ATDATA_APPVIEW_HEADER_TIMEOUT": "2.5",
        "ATDATA_APPVIEW_KEEPALIVE_TIMEOUT": "30",
        "ATDATA_APPVIEW_MAX_CONNECTIONS": "64",
        "ATDATA_APPVIEW_WORKERS": "3",
    }
    s = Settings.load(environ=env)
    assert (s.header_timeout, s.keepalive_timeout, s.max_connections, s.workers) == (
        2.5,
        30.0,
        64,
        3,
    )
    assert Settings.load(workers=2, environ=env).workers == 2
    d = Settings.load(environ={})
    assert (d.header_timeout, d.keepalive_timeout, d.max_connections, d.workers) == (
        10.0,
        75.0,
        1024,
        1,
    )
    for key, bad in (("workers", "0"), ("max_connections", "x"), ("header_timeout", "-1")):
        with pytest.raises(ValueError, match=key.replace("_", " ")):
            Settings.load(environ={f"ATDATA_APPVIEW_{key.upper()}": bad})


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        out += [int(c) for c in text]
    return out


@pytest.fixture
def served_workers(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(workers: int) -> tuple[subprocess.Popen[bytes], str]:
        port = free_port()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        proc = subprocess.Popen(
            [sys.executable, "-m", "atdata.cli", "appview", "serve",
             "--db", f"sqlite:///{tmp_path / 'index.sqlite'}",
             "--firehose", "ws://127.0.0.1:9", "--plc", "http://127.0.0.1:9",
             "--port", str(port), "--workers", str(workers)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/_health", timeout=2).status_code == 200:
                    return proc, url
            except httpx.TransportError:
                time.sleep(0.2)
        raise AssertionError(proc.stderr.read().decode() if proc.poll() is not None else "slow")

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_workers_serve_from_several_processes_with_one_metrics(served_workers: Any) -> None:
    proc, url = served_workers(2)
    assert len(_children(proc.pid)) >= 2
    n = 40
    with httpx.Client(base_url=url, timeout=10) as client:
        for _ in range(n):
            # a new connection each time, so the kernel may hand it to either process
            assert client.get("/xrpc/io.atdata.searchDatasets", headers={"Connection": "close"})
        text = client.get("/metrics").text
        described = client.get("/xrpc/io.atdata.describeService").json()
    route = 'route="/xrpc/io.atdata.searchDatasets"'
    total = sum(
        float(line.rpartition(" ")[2])
        for line in text.splitlines()
        if line.startswith("atdata_appview_http_requests_total{") and route in line
    )
    assert total == n  # counted in whichever process answered, reported by every one
    pids = {line.split('pid="')[1].split('"')[0] for line in text.splitlines() if 'pid="' in line}
    assert not pids, "multiprocess values must be summed, not split by pid"
    # what only the ingesting process knows reaches the serving processes
    assert [h["host"] for h in described["hosts"]] == ["ws://127.0.0.1:9"]
    assert "atdata_appview_host_connected{" in text
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
