"""The network guard: schemes, private addresses, size/time limits, rate-limit waits, and
that the user's AWS credentials never reach an endpoint named by a record."""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from _fixtures.local_http import serving
from atdata import ShardIntegrityError, UnsafeURLError
from atdata.atmosphere import check_url, guarded_client
from atdata.atmosphere.netguard import FetchError, HTTPStatusError, get_json, retry_delay
from atdata.atmosphere.resolve import GuardedHttpShard, shard_sources


@pytest.fixture(autouse=True)
def _no_env_allowance(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ATDATA_ALLOW_PRIVATE_NETWORK", raising=False)
    monkeypatch.delenv("ATDATA_ALLOW_LINK_LOCAL", raising=False)


class Recorder(http.server.BaseHTTPRequestHandler):
    """Records request headers; answers per the server's `routes` (path -> (status, headers, body))."""

    def do_GET(self) -> None:  # http.server API
        self.server.seen.append({"path": self.path, "headers": dict(self.headers)})  # type: ignore[attr-defined]
        route = self.server.routes.get(self.path.split("?")[0], (404, {}, b"nope"))  # type: ignore[attr-defined]
        if callable(route):
            route = route(self)
        status, headers, body = route
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serve(routes: dict[str, Any], host: str = "127.0.0.1") -> Iterator[Any]:
    with serving(Recorder, host, seen=[], routes=routes) as server:
        yield server


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://example.com/x",
        "s3://bucket/key",
        "gopher://x",
        "http://127.0.0.1/x",
        "http://localhost:8080/",
        "http://10.1.2.3/",
        "http://192.168.0.1/",
        "http://172.16.5.4/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://0.0.0.0/",
        "http://100.64.0.1/",
        "http://user:pw@93.184.216.34/",
        "http:///nohost",
    ],
)
def test_refused_urls(url: str) -> None:
    with pytest.raises(UnsafeURLError):
        check_url(url)


def test_public_addresses_pass_and_allowance_opens_private(monkeypatch: pytest.MonkeyPatch) -> None:
    assert check_url("https://93.184.216.34/x") == "https://93.184.216.34/x"
    assert check_url("http://127.0.0.1:9/x", allow_private=True)
    monkeypatch.setenv("ATDATA_ALLOW_PRIVATE_NETWORK", "1")
    assert check_url("http://10.0.0.1/")


LINK_LOCAL = [
    "http://169.254.169.254/latest/meta-data/",
    "http://169.254.0.1:8080/",
    "http://[fe80::1]/",
    "http://[fd00:ec2::254]/latest/meta-data/",
    "http://[::ffff:169.254.169.254]/",
    "http://100.100.100.200/latest/meta-data/",
]


@pytest.mark.parametrize("url", LINK_LOCAL)
def test_the_private_network_switch_does_not_open_link_local_or_metadata(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for allow in (True, None):
        monkeypatch.setenv("ATDATA_ALLOW_PRIVATE_NETWORK", "1")
        with pytest.raises(UnsafeURLError, match="ATDATA_ALLOW_LINK_LOCAL"):
            check_url(url, allow_private=allow)
    monkeypatch.setenv("ATDATA_ALLOW_LINK_LOCAL", "1")
    assert check_url(url) == url  # its own switch opens it


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://localhost:8080/",
        "http://[::1]/",
        "http://10.1.2.3/",
        "http://172.16.5.4/",
        "http://192.168.0.1/",
        "http://100.64.0.1/",
        "http://[fd12::1]/",
    ],
)
def test_the_private_network_switch_opens_loopback_and_private_ranges(url: str) -> None:
    assert check_url(url, allow_private=True) == url


@pytest.mark.parametrize("url", ["http://0.0.0.0/", "http://224.0.0.1/", "http://240.0.0.1/"])
def test_unusable_addresses_stay_refused_with_every_switch(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ATDATA_ALLOW_LINK_LOCAL", "1")
    with pytest.raises(UnsafeURLError):
        check_url(url, allow_private=True)


def test_schemes_stay_refused_even_when_private_allowed() -> None:
    for url in ("file:///etc/passwd", "ftp://127.0.0.1/", "s3://b/k"):
        with pytest.raises(UnsafeURLError):
            check_url(url, allow_private=True)


def test_guarded_client_refuses_before_connecting() -> None:
    with serve({"/x": (200, {}, b"{}")}) as srv:
        with guarded_client() as c, pytest.raises(UnsafeURLError):
            c.get(f"{srv.url}/x")
        assert srv.seen == []
        with guarded_client(allow_private=True) as c:
            assert c.get(f"{srv.url}/x").status_code == 200
        assert len(srv.seen) == 1


def test_redirects_are_checked_too(monkeypatch: pytest.MonkeyPatch) -> None:
    # Stand-in for the internet: 127.0.0.1 counts as public, 127.0.0.2 as the private host
    # a hostile redirect points at (no real public address exists offline).
    from atdata.atmosphere import netguard

    monkeypatch.setattr(netguard, "_is_public", lambda ip: str(ip) == "127.0.0.1")
    with serve({"/secret": (200, {}, b"{}")}, host="127.0.0.2") as inner:
        hop = {"/r": (302, {"Location": f"{inner.url}/secret"}, b"")}
        with serve(hop) as srv, guarded_client() as c:
            with pytest.raises(UnsafeURLError, match="127.0.0.2"):
                c.get(f"{srv.url}/r")
            assert len(srv.seen) == 1
        assert inner.seen == []


def test_get_json_size_cap_time_limit_and_errors() -> None:
    def slow(handler: Any) -> tuple[int, dict, bytes]:
        time.sleep(2)
        return 200, {}, b"{}"

    routes = {
        "/big": (200, {}, b"[" + b"1," * 5000 + b"1]"),
        "/ok": (200, {}, b'{"a": 1}'),
        "/err": (400, {}, b'{"error": "RecordNotFound", "message": "gone"}'),
        "/slow": slow,
    }
    with serve(routes) as srv:
        assert get_json(f"{srv.url}/ok", allow_private=True) == {"a": 1}
        with pytest.raises(UnsafeURLError, match="exceeds"):
            get_json(f"{srv.url}/big", allow_private=True, max_bytes=1000)
        with pytest.raises(HTTPStatusError) as exc:
            get_json(f"{srv.url}/err", allow_private=True)
        assert exc.value.error == "RecordNotFound" and exc.value.status == 400
        with pytest.raises(FetchError, match=f"GET {srv.url}/slow: timed out"):
            get_json(f"{srv.url}/slow", allow_private=True, timeout=0.3, retries=0)


def test_retry_delay_honours_retry_after_and_ratelimit_headers() -> None:
    now = int(time.time())
    r = httpx.Response(429, headers={"Retry-After": "7"})
    assert retry_delay(r, 0) == 7
    r = httpx.Response(429, headers={"ratelimit-reset": str(now + 20), "ratelimit-remaining": "0"})
    assert 18 <= retry_delay(r, 0) <= 20
    r = httpx.Response(429, headers={"ratelimit-reset": "3"})  # delta-seconds form
    assert retry_delay(r, 0) == 3
    assert retry_delay(httpx.Response(503), 3, base=0.5) == 4.0


def test_429_with_ratelimit_reset_is_waited_out() -> None:
    calls = {"n": 0}

    def limited(handler: Any) -> tuple[int, dict, bytes]:
        calls["n"] += 1
        if calls["n"] == 1:
            reset = str(int(time.time()) + 1)
            return 429, {"ratelimit-remaining": "0", "ratelimit-reset": reset}, b"{}"
        return 200, {}, b'{"ok": true}'

    with serve({"/l": limited}) as srv:
        started = time.monotonic()
        assert get_json(f"{srv.url}/l", allow_private=True) == {"ok": True}
        assert calls["n"] == 2
        assert time.monotonic() - started >= 0.5  # it waited for the reset instead of hammering


def test_guarded_http_shard_verifies_sha256() -> None:
    data = b"x" * 5000
    good = hashlib.sha256(data).hexdigest()
    with serve({"/s.tar": (200, {}, data)}) as srv:
        with pytest.raises(UnsafeURLError):
            GuardedHttpShard(f"{srv.url}/s.tar", sha256=good)
        shard = GuardedHttpShard(f"{srv.url}/s.tar", sha256=good, size=5000, allow_private=True)
        with shard.open() as f:
            assert f.read() == data
        bad = GuardedHttpShard(f"{srv.url}/s.tar", sha256="0" * 64, allow_private=True)
        with pytest.raises(ShardIntegrityError, match="s.tar"), bad.open() as f:
            f.read()


S3_RECORD = {
    "storage": {
        "$type": "io.atdata.dataset#s3Storage",
        "bucket": "theirs",
        "prefix": "p",
        "region": "us-east-1",
    }
}


def _read_s3(srv: Any, **kwargs: Any) -> None:
    record = {"storage": {**S3_RECORD["storage"], "endpoint": srv.url}}
    entries = [{"samples": 1, "bytes": 3, "sha256": "0" * 64, "key": "p/a.tar"}]
    (src,) = shard_sources(record, entries, did="did:plc:x", pds="", allow_private=True, **kwargs)
    with contextlib.suppress(Exception), src.open() as f:
        f.read()


def test_user_aws_credentials_never_go_to_a_record_endpoint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAUSERSECRETKEY")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "user-secret")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.delenv("ATDATA_TRUSTED_S3_ENDPOINTS", raising=False)
    with serve({}) as srv:
        _read_s3(
            srv,
            s3_client_kwargs={"aws_access_key_id": "AKIAEXPLICIT", "aws_secret_access_key": "s"},
        )
        assert srv.seen, "the S3 request never arrived"
        for req in srv.seen:
            headers = {k.lower(): v for k, v in req["headers"].items()}
            assert "authorization" not in headers
            assert "AKIA" not in repr(req)
        srv.seen.clear()
        # The user names the endpoint as trusted: now requests are signed with their keys.
        _read_s3(srv, trusted_endpoints=[srv.url])
        assert srv.seen
        auth = {k.lower(): v for k, v in srv.seen[0]["headers"].items()}.get("authorization", "")
        assert "AKIAUSERSECRETKEY" in auth
        srv.seen.clear()
        monkeypatch.setenv("ATDATA_TRUSTED_S3_ENDPOINTS", srv.url)
        _read_s3(srv)
        auth = {k.lower(): v for k, v in srv.seen[0]["headers"].items()}.get("authorization", "")
        assert "AKIAUSERSECRETKEY" in auth


def test_record_s3_endpoint_on_private_network_is_refused() -> None:
    record = {"storage": {**S3_RECORD["storage"], "endpoint": "http://169.254.169.254"}}
    entries = [{"samples": 1, "bytes": 3, "sha256": "0" * 64, "key": "k"}]
    with pytest.raises(UnsafeURLError):
        shard_sources(record, entries, did="did:plc:x", pds="")


def test_blob_stream_waits_out_ratelimit_reset_and_resumes_after_a_cut() -> None:
    data = bytes(range(256)) * 400
    sha = hashlib.sha256(data).hexdigest()
    calls: list[str | None] = []

    class Flaky(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            rng = self.headers.get("Range")
            calls.append(rng)
            if len(calls) == 1:  # rate limited, with only the ATProto ratelimit-* headers
                self.send_response(429)
                self.send_header("ratelimit-remaining", "0")
                self.send_header("ratelimit-reset", str(int(time.time()) + 2))
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if rng is None:  # full answer promised, connection cut half way
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)
                return
            start = int(rng.removeprefix("bytes=").split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.send_header("Content-Length", str(len(data) - start))
            self.end_headers()
            self.wfile.write(data[start:])

        def log_message(self, *args: Any) -> None:
            pass

    with serving(Flaky) as server:
        url = f"{server.url}/blob"
        shard = GuardedHttpShard(url, sha256=sha, size=len(data), allow_private=True)
        started = time.monotonic()
        with shard.open() as f:
            got = f.read()
        assert got == data
        # waited for the reset (>= 1 s), not the default first backoff (0.5 s)
        assert time.monotonic() - started >= 1.0
        assert calls[0] is None and calls[1] is None
        assert calls[2] is not None and calls[2].startswith("bytes=")  # resumed, not restarted
