"""Shard sources: local paths and patterns, HTTP on a loopback server, S3 on moto_server."""

from __future__ import annotations

import hashlib
import os
import select
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from _fixtures.local_http import serving
from atdata._sources import HttpShard, LocalShard, S3Shard, _Resumable, expand_sources
from atdata._tar import TarShardWriter, iter_samples
from atdata.errors import ShardIntegrityError, SourceError


def _tar_bytes(n: int, size: int = 3000) -> bytes:
    import io

    buf = io.BytesIO()
    with TarShardWriter(buf, mtime=1) as w:
        for i in range(n):
            w.add(f"{i:06d}.msgpack", bytes([i % 256]) * size)
    return buf.getvalue()


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


# -- local -------------------------------------------------------------------------------------


@pytest.fixture
def shard_dir(tmp_path):
    for i in range(3):
        (tmp_path / f"d-{i:06d}.tar").write_bytes(_tar_bytes(2 + i))
    (tmp_path / "notes.txt").write_text("not a shard")
    return tmp_path


def test_expand_local_forms(shard_dir) -> None:
    names = [str(shard_dir / f"d-{i:06d}.tar") for i in range(3)]
    assert [s.name for s in expand_sources(names[1])] == [names[1]]
    assert [s.name for s in expand_sources(str(shard_dir / "d-{000000..000002}.tar"))] == names
    assert [s.name for s in expand_sources(str(shard_dir / "d-*.tar"))] == names
    assert [s.name for s in expand_sources(shard_dir)] == names  # directory: its .tar files
    assert [s.name for s in expand_sources([names[2], names[0]])] == [names[2], names[0]]
    assert [s.name for s in expand_sources("file://" + names[0])] == [names[0]]
    src = LocalShard(names[0])
    assert expand_sources(src) == [src]
    assert all(isinstance(s, LocalShard) for s in expand_sources(names))


def test_expand_reports_missing_shards(shard_dir) -> None:
    with pytest.raises(SourceError, match="d-000009.tar"):
        expand_sources(str(shard_dir / "d-{000000..000009}.tar"))
    with pytest.raises(SourceError, match="no files match"):
        expand_sources(str(shard_dir / "x-*.tar"))
    with pytest.raises(SourceError, match="no shards"):
        expand_sources([])
    with pytest.raises(TypeError):
        expand_sources(42)


def test_local_sha256_verified_while_streaming(tmp_path) -> None:
    data = _tar_bytes(4)
    path = tmp_path / "a.tar"
    path.write_bytes(data)
    with LocalShard(path, sha256=_sha(data), size=len(data)).open() as f:
        assert f.read() == data
    with (
        LocalShard(path, sha256=_sha(b"other")).open() as f,
        pytest.raises(ShardIntegrityError, match="sha256 mismatch") as err,
    ):
        f.read()
    assert err.value.shard == str(path)
    with (
        LocalShard(path, size=len(data) + 1).open() as f,
        pytest.raises(ShardIntegrityError, match="record says"),
    ):
        f.read()


def test_verification_sees_bytes_after_the_end_marker(tmp_path) -> None:
    data = _tar_bytes(2) + b"\0" * 4096  # trailing zero records, as tarfile writes
    path = tmp_path / "a.tar"
    path.write_bytes(data)
    stream = LocalShard(path, sha256=_sha(data)).open()
    assert len(list(iter_samples(stream, "a"))) == 2  # no error: the reader drained to EOF
    stream = LocalShard(path, sha256=_sha(data[:-1])).open()
    with pytest.raises(ShardIntegrityError):
        list(iter_samples(stream, "a"))


# -- HTTP --------------------------------------------------------------------------------------


@dataclass
class HttpState:
    files: dict[str, bytes] = field(default_factory=dict)
    requests: list[dict[str, str]] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    busy: int = 0  # answer this many requests with 429 first
    retry_after: str = "1"
    drop_after: int | None = None  # send this many body bytes of the next 200, then hang up
    ignore_range: bool = False


class _Handler(BaseHTTPRequestHandler):
    state: HttpState

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        st = self.state
        st.requests.append({k.lower(): v for k, v in self.headers.items()} | {"path": self.path})
        st.times.append(time.monotonic())
        if st.busy:
            st.busy -= 1
            self.send_response(429)
            self.send_header("Retry-After", st.retry_after)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = st.files.get(self.path)
        if data is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        start = 0
        rng = self.headers.get("Range")
        if rng and not st.ignore_range:
            start = int(rng.removeprefix("bytes=").split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if st.drop_after is not None:
            cut, st.drop_after = st.drop_after, None
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture
def http_server() -> Iterator[tuple[str, HttpState]]:
    state = HttpState()
    handler = type("Handler", (_Handler,), {"state": state})
    with serving(handler) as server:
        yield server.url, state


@pytest.fixture
def fast_retries(monkeypatch) -> None:
    monkeypatch.setattr(_Resumable, "backoff", 0.01)


def test_http_streams_and_expands_braces(http_server) -> None:
    url, state = http_server
    for i in range(3):
        state.files[f"/d-{i:03d}.tar"] = _tar_bytes(3, 10_000 + i)
    sources = expand_sources(url + "/d-{000..002}.tar")
    assert [type(s) for s in sources] == [HttpShard] * 3
    for i, s in enumerate(sources):
        with s.open() as f:
            assert f.read() == state.files[f"/d-{i:03d}.tar"]
    assert state.requests[0]["accept-encoding"] == "identity"


def test_http_resumes_with_range_after_a_dropped_connection(http_server, fast_retries) -> None:
    url, state = http_server
    data = _tar_bytes(50, 20_000)
    state.files["/a.tar"] = data
    state.drop_after = 123_457
    shard = HttpShard(url + "/a.tar", sha256=_sha(data), size=len(data))
    samples = list(iter_samples(shard.open(), shard.name))
    assert len(samples) == 50
    assert [r.get("range") for r in state.requests] == [None, "bytes=123457-"]


def test_http_resume_when_server_ignores_range(http_server, fast_retries) -> None:
    url, state = http_server
    data = _tar_bytes(20, 20_000)
    state.files["/a.tar"] = data
    state.drop_after = 50_001
    state.ignore_range = True
    with HttpShard(url + "/a.tar", sha256=_sha(data)).open() as f:
        assert f.read() == data
    assert len(state.requests) == 2


def test_http_honours_429_retry_after(http_server) -> None:
    url, state = http_server
    state.files["/a.tar"] = data = _tar_bytes(2)
    state.busy = 1
    state.retry_after = "1"
    with HttpShard(url + "/a.tar").open() as f:
        assert f.read() == data
    assert len(state.requests) == 2
    assert state.times[1] - state.times[0] >= 0.9


def test_http_gives_up_after_retries(http_server, fast_retries, monkeypatch) -> None:
    url, state = http_server
    state.files["/a.tar"] = _tar_bytes(2)
    state.busy = 100
    state.retry_after = "0"
    monkeypatch.setattr(_Resumable, "retries", 2)
    with pytest.raises(SourceError, match="HTTP 429"), HttpShard(url + "/a.tar").open() as f:
        f.read()
    assert len(state.requests) == 3


def test_http_errors_name_the_shard(http_server) -> None:
    url, state = http_server
    with (
        pytest.raises(SourceError, match="404.*missing.tar"),
        HttpShard(url + "/missing.tar").open() as f,
    ):
        f.read()
    state.files["/a.tar"] = _tar_bytes(2)
    with (
        HttpShard(url + "/a.tar", sha256="0" * 64).open() as f,
        pytest.raises(ShardIntegrityError) as err,
    ):
        f.read()
    assert err.value.shard == url + "/a.tar"


def test_http_shards_share_one_client_per_process(http_server) -> None:
    url, state = http_server
    state.files["/a.tar"] = data = _tar_bytes(2)
    a, b = HttpShard(url + "/a.tar"), HttpShard(url + "/a.tar")
    client = a._client()
    assert b._client() is client
    with a.open() as f:
        assert f.read() == data
    assert not client.is_closed  # closing a stream leaves the shared client to the others
    with b.open() as f:
        assert f.read() == data
    assert b._client() is client
    # A forked child (a DataLoader worker) must not reuse the parent's pool: it builds its own.
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        status = b"?"
        try:
            own = a._client()
            with a.open() as f:
                ok = f.read() == data
            status = b"ok" if ok and own is not client and a._client() is own else b"shared"
        finally:
            os.write(write_fd, status)
            os._exit(0)
    os.close(write_fd)
    try:
        ready, _, _ = select.select([read_fd], [], [], 60)
        if not ready:  # pragma: no cover - a hung child must not hang the suite
            os.kill(pid, signal.SIGKILL)
        assert ready and os.read(read_fd, 16) == b"ok"
    finally:
        os.close(read_fd)
        os.waitpid(pid, 0)
    assert a._client() is client


# -- S3 ----------------------------------------------------------------------------------------


@pytest.fixture
def s3(s3_server, s3_bucket):
    client = s3_server.client()
    return s3_server, s3_bucket, client


def test_s3_key_prefix_and_glob(s3) -> None:
    server, bucket, client = s3
    blobs = {f"ds/train-{i:03d}.tar": _tar_bytes(2 + i) for i in range(3)}
    blobs["ds/readme.md"] = b"# not a shard"
    blobs["other/x.tar"] = _tar_bytes(1)
    for k, v in blobs.items():
        client.put_object(Bucket=bucket, Key=k, Body=v)
    kw = server.client_kwargs()

    (one,) = expand_sources(f"s3://{bucket}/ds/train-001.tar", client_kwargs=kw)
    assert isinstance(one, S3Shard)
    with one.open() as f:
        assert f.read() == blobs["ds/train-001.tar"]

    listed = expand_sources(f"s3://{bucket}/ds/", client_kwargs=kw)
    assert [s.name for s in listed] == [f"s3://{bucket}/ds/train-{i:03d}.tar" for i in range(3)]
    assert [s.size for s in listed] == [len(blobs[f"ds/train-{i:03d}.tar"]) for i in range(3)]
    for s in listed:
        with s.open() as f:
            assert f.read() == blobs[s.name.split("/", 3)[3]]

    globbed = expand_sources(f"s3://{bucket}/ds/train-00[02].tar", client_kwargs=kw)
    assert [s.name.rsplit("/", 1)[1] for s in globbed] == ["train-000.tar", "train-002.tar"]
    braced = expand_sources(f"s3://{bucket}/ds/train-{{000..001}}.tar", client_kwargs=kw)
    assert len(braced) == 2


def test_s3_uses_the_standard_aws_configuration(s3, monkeypatch) -> None:
    server, bucket, client = s3
    client.put_object(Bucket=bucket, Key="a.tar", Body=_tar_bytes(3))
    monkeypatch.setenv("AWS_ENDPOINT_URL", server.endpoint_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", server.secret_key)
    monkeypatch.setenv("AWS_DEFAULT_REGION", server.region)
    (src,) = expand_sources(f"s3://{bucket}/")
    assert len(list(iter_samples(src.open(), src.name))) == 3


def test_s3_errors_and_integrity(s3) -> None:
    server, bucket, client = s3
    kw = server.client_kwargs()
    data = _tar_bytes(3)
    client.put_object(Bucket=bucket, Key="a.tar", Body=data)
    with pytest.raises(SourceError, match="no .tar objects"):
        expand_sources(f"s3://{bucket}/nothing-here/", client_kwargs=kw)
    with (
        pytest.raises(SourceError, match="not found"),
        S3Shard(f"s3://{bucket}/missing.tar", client_kwargs=kw).open() as f,
    ):
        f.read()
    with S3Shard(f"{bucket}/a.tar", sha256=_sha(data), client_kwargs=kw).open() as f:
        assert f.read() == data
    with (
        S3Shard(f"s3://{bucket}/a.tar", sha256=_sha(b""), client_kwargs=kw).open() as f,
        pytest.raises(ShardIntegrityError) as err,
    ):
        f.read()
    assert err.value.shard == f"s3://{bucket}/a.tar"


def test_s3_resumes_with_range(s3, fast_retries) -> None:
    """A body that breaks mid-way is re-requested from the offset reached."""
    server, bucket, client = s3
    data = os.urandom(3 << 20)
    client.put_object(Bucket=bucket, Key="big.tar", Body=data)
    shard = S3Shard(f"s3://{bucket}/big.tar", client_kwargs=server.client_kwargs())
    stream = shard.open()
    first = stream.read(1 << 20)
    # Sever the connection under the body, as a network fault would.
    stream._body._raw_stream._fp.fp.raw._sock.close()  # type: ignore[attr-defined]
    rest = stream.read()
    assert first + rest == data


def test_sources_pickle_for_worker_processes(s3, tmp_path) -> None:
    import pickle

    server, bucket, client = s3
    client.put_object(Bucket=bucket, Key="a.tar", Body=_tar_bytes(2))
    (src,) = expand_sources(f"s3://{bucket}/", client_kwargs=server.client_kwargs())
    clone = pickle.loads(pickle.dumps(src))
    with clone.open() as f:
        assert len(list(iter_samples(f, clone.name))) == 2
    local = LocalShard(tmp_path / "x.tar", sha256="ab")
    assert pickle.loads(pickle.dumps(local)).sha256 == "ab"


@pytest.mark.parametrize(
    ("count", "shown"),
    [
        (4, "m-0.tar, m-1.tar, m-2.tar, m-3.tar"),
        (6, "m-0.tar, m-1.tar, m-2.tar, ..., m-5.tar"),
    ],
)
def test_missing_shards_are_listed_with_an_ellipsis_only_for_a_gap(
    tmp_path: Path, count: int, shown: str
) -> None:
    with pytest.raises(SourceError) as info:
        expand_sources(str(tmp_path / f"m-{{0..{count - 1}}}.tar"))
    message = str(info.value).replace(f"{tmp_path}/", "")
    assert message == f"{count} shard(s) not found: {shown}"
