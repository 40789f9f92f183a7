"""Where shards come from: local files, HTTP(S) and S3, behind one small protocol.

A :class:`ShardSource` opens a byte stream. When it knows the shard's sha256 (and size) the
stream verifies them while it is read, so a shard is checked without a second pass, and a
mismatch raises :class:`~atdata.errors.ShardIntegrityError` naming the shard. Network streams
retry with backoff (honouring ``429``/``Retry-After``) and resume with ``Range`` where they
stopped, so a dropped connection costs neither the bytes already read nor a restart.
"""

from __future__ import annotations

import fnmatch
import glob as globlib
import hashlib
import io
import logging
import os
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeAlias, runtime_checkable
from urllib.parse import urlparse

import httpx

from ._http import ThroughputFloor, timed_chunks
from .errors import AtdataError, ShardIntegrityError, SourceError
from .ratelimit import RETRY_STATUS, retry_after_seconds

__all__ = [
    "HttpShard",
    "LocalShard",
    "S3Shard",
    "ShardSource",
    "expand_sources",
]

log = logging.getLogger(__name__)

_READ = 1 << 20
_GLOB_CHARS = frozenset("*?[")


ShardStream: TypeAlias = io.RawIOBase | io.BufferedIOBase
"""What :meth:`ShardSource.open` returns: a binary stream (``readinto``, ``read``, ``close``).

``open(path, "rb")``, ``io.BytesIO`` and atdata's own network streams are all of these.
"""


@runtime_checkable
class ShardSource(Protocol):
    """One shard: a name for errors, a way to open it, and what it should hash to."""

    name: str
    sha256: str | None
    size: int | None

    def open(self) -> ShardStream:
        """A readable binary stream over the shard's bytes (verified when sha256/size known)."""
        ...


class _Verifying(io.RawIOBase):
    """Hash (and count) bytes as they pass; compare at EOF."""

    def __init__(self, raw: ShardStream, name: str, sha256: str | None, size: int | None) -> None:
        self._raw = raw
        self._name = name
        self._want = sha256.lower() if sha256 else None
        self._size = size
        self._hash = hashlib.sha256() if sha256 else None
        self._seen = 0
        self._checked = False

    @property
    def raw(self) -> ShardStream:
        """The wrapped stream (a reader that maps local files feeds the bytes itself)."""
        return self._raw

    def readable(self) -> bool:
        return True

    def feed(self, data: Any) -> None:
        """Account for bytes read around this wrapper (from a memory map of ``raw``)."""
        if self._hash is not None:
            self._hash.update(data)
        self._seen += len(data)

    def finish(self) -> None:
        """All bytes were fed: compare size and sha256 now."""
        self._verify()

    def readinto(self, b: Any) -> int:
        view = memoryview(b).cast("B")
        n = self._raw.readinto(view)
        if n:
            if self._hash is not None:
                self._hash.update(view[:n])
            self._seen += n
            if self._size is not None and self._seen > self._size:
                raise ShardIntegrityError(
                    f"shard is larger than its recorded size {self._size}", shard=self._name
                )
            return n
        self._verify()
        return 0

    def _verify(self) -> None:
        if self._checked:
            return
        self._checked = True
        if self._size is not None and self._seen != self._size:
            raise ShardIntegrityError(
                f"shard has {self._seen} bytes, its record says {self._size}", shard=self._name
            )
        if self._hash is not None:
            got = self._hash.hexdigest()
            if got != self._want:
                raise ShardIntegrityError(
                    f"sha256 mismatch: expected {self._want}, got {got}", shard=self._name
                )

    def close(self) -> None:
        try:
            self._raw.close()
        finally:
            super().close()


def _maybe_verify(raw: ShardStream, name: str, sha256: str | None, size: int | None) -> ShardStream:
    if sha256 is None and size is None:
        return raw
    return _Verifying(raw, name, sha256, size)


class LocalShard:
    """A shard on the local filesystem."""

    def __init__(
        self, path: str | os.PathLike[str], *, sha256: str | None = None, size: int | None = None
    ) -> None:
        self.path = Path(path)
        self.name = str(path)
        self.sha256 = sha256
        self.size = size

    def open(self) -> ShardStream:
        try:
            raw = open(self.path, "rb", buffering=0)  # noqa: SIM115 - returned to the caller
        except FileNotFoundError as exc:
            raise SourceError(f"shard not found: {self.name}") from exc
        return _maybe_verify(raw, self.name, self.sha256, self.size)

    def __repr__(self) -> str:
        return f"LocalShard({self.name!r})"


# ----------------------------------------------------------------------------------------------
# Resumable network streams


class _Resumable(io.RawIOBase):
    """A byte stream that reconnects from the current offset after a transport error."""

    retries = 6
    backoff = 0.5
    max_wait = 30.0

    def __init__(self, name: str) -> None:
        self.name_ = name
        self._pos = 0
        self._pending = memoryview(b"")
        self._chunks: Iterator[bytes] | None = None
        self._total: int | None = None
        self._done = False

    def readable(self) -> bool:
        return True

    # Subclasses implement these two.
    def _connect(self, offset: int) -> tuple[Iterable[bytes], int | None]:
        """Start a response at ``offset``; return its chunks and the full size if known."""
        raise NotImplementedError

    def _transient(self, exc: BaseException) -> bool:
        raise NotImplementedError

    def _sleep(self, attempt: int, retry_after: float | None = None) -> None:
        wait = retry_after if retry_after is not None else self.backoff * (2**attempt)
        time.sleep(min(max(wait, 0.0), self.max_wait))

    def _open_at_pos(self) -> Iterator[bytes]:
        """Connect at the current offset (retrying transient failures); the body's chunks."""
        attempt = 0
        while True:
            try:
                chunks, total = self._connect(self._pos)
            except _RetryAfter as exc:
                if attempt >= self.retries:
                    raise SourceError(f"giving up on {self.name_}: {exc.reason}") from None
                log.info("%s: %s; retrying", self.name_, exc.reason)
                self._sleep(attempt, exc.seconds)
                attempt += 1
                continue
            except Exception as exc:
                if not self._transient(exc) or attempt >= self.retries:
                    if isinstance(exc, SourceError):
                        raise
                    raise SourceError(f"cannot fetch {self.name_}: {exc}") from exc
                log.info("%s: %s; retrying", self.name_, exc)
                self._sleep(attempt)
                attempt += 1
                continue
            self._chunks = iter(chunks)
            if total is not None:
                self._total = total
            return self._chunks

    def readinto(self, b: Any) -> int:
        view = memoryview(b).cast("B")
        want = len(view)
        if not want:
            return 0
        failures = 0
        while not self._pending:
            if self._done:
                return 0
            chunks = self._chunks if self._chunks is not None else self._open_at_pos()
            try:
                chunk = next(chunks)
            except StopIteration:
                self._close_response()
                self._chunks = None
                if self._total is not None and self._pos < self._total:
                    # The body ended early without an error: resume where it stopped.
                    failures += 1
                    if failures > self.retries:
                        raise SourceError(
                            f"{self.name_}: body ended at {self._pos} of {self._total} bytes"
                        ) from None
                    log.info("%s: body ended early at %d; resuming", self.name_, self._pos)
                    continue
                self._done = True
                return 0
            except Exception as exc:
                if not self._transient(exc):
                    if isinstance(exc, AtdataError):
                        raise
                    raise SourceError(
                        f"cannot read {self.name_}: {type(exc).__name__}: {exc}"
                    ) from exc
                failures += 1
                self._close_response()
                self._chunks = None
                if failures > self.retries:
                    raise SourceError(f"{self.name_}: {exc} (after retries)") from exc
                log.info("%s: %s at byte %d; resuming", self.name_, exc, self._pos)
                self._sleep(failures - 1)
                continue
            self._pending = memoryview(chunk)
        n = min(want, len(self._pending))
        view[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        self._pos += n
        return n

    def _close_response(self) -> None:
        pass

    def close(self) -> None:
        self._close_response()
        super().close()


class _RetryAfter(Exception):
    """A response that says "try again later" (429, 503, ...)."""

    def __init__(self, reason: str, seconds: float | None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.seconds = seconds


_clients: dict[tuple[int, Hashable], Any] = {}
_clients_lock = threading.Lock()


def _forget_clients_after_fork() -> None:
    # The parent's clients (sockets, TLS state) and a lock another thread may have held at
    # fork time are not the child's to use; the child builds its own on first need.
    global _clients_lock
    _clients.clear()
    _clients_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_clients_after_fork)


def shared_http_client(key: Hashable, factory: Callable[[], Any]) -> Any:
    """One httpx client per process and ``key``, built by ``factory`` on first use.

    Building a client (TLS context, pool) costs tens of milliseconds, too much per shard when a
    dataset has thousands; a shared one also reuses connections. Clients are per process
    (keyed by pid, dropped in a forked child), so DataLoader workers never share a pool.
    """
    full_key = (os.getpid(), key)
    with _clients_lock:
        client = _clients.get(full_key)
        if client is None:
            client = _clients[full_key] = factory()
        return client


class _HttpStream(_Resumable):
    """A resumable GET over a client the stream does not own (it stays open for others)."""

    def __init__(
        self,
        url: str,
        name: str,
        headers: Mapping[str, str] | None,
        client: Any,
        refused: Callable[[int, bytes], SourceError] | None = None,
        floor: ThroughputFloor | None = None,
    ):
        super().__init__(name)
        self._url = url
        self._headers = dict(headers or {})
        self._client = client
        self._refused = refused
        self._response: Any = None
        self._floor = floor  # one for the whole stream: resuming does not reset it

    def _transient(self, exc: BaseException) -> bool:
        return isinstance(exc, httpx.TransportError)

    def _connect(self, offset: int) -> tuple[Iterable[bytes], int | None]:
        headers = {"Accept-Encoding": "identity", **self._headers}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        request = self._client.build_request("GET", self._url, headers=headers)
        response = self._client.send(request, stream=True)
        status = response.status_code
        if status in RETRY_STATUS:
            response.close()
            raise _RetryAfter(f"HTTP {status}", retry_after_seconds(response.headers, status))
        if status == 416 and offset and self._total == offset:
            response.close()
            return iter(()), self._total
        if status not in (200, 206):
            body = _error_body(response)
            if self._refused is not None:
                raise self._refused(status, body)
            raise SourceError(f"HTTP {status} fetching {self.name_}")
        self._response = response
        length = response.headers.get("Content-Length")
        total: int | None = None
        chunks: Iterable[bytes] = timed_chunks(response.iter_raw(), self._floor)
        if status == 206:
            content_range = response.headers.get("Content-Range", "")
            start, _, size = content_range.removeprefix("bytes ").partition("/")
            if not start.startswith(f"{offset}-"):
                response.close()
                raise SourceError(f"{self.name_}: server resumed at {content_range!r}")
            total = int(size) if size.isdigit() else None
        else:
            total = int(length) if length and length.isdigit() else None
            if offset:
                # The server ignored Range: skip what was already read.
                chunks = _skip(chunks, offset)
        return chunks, total

    def _close_response(self) -> None:
        if self._response is not None:
            self._response.close()
            self._response = None


def _error_body(response: Any, limit: int = 4096) -> bytes:
    """The start of an error response's body (never more than `limit` bytes), then closed."""
    body = b""
    try:
        for chunk in response.iter_raw():
            body += chunk
            if len(body) >= limit:
                break
    except Exception:  # the status alone still says what went wrong
        pass
    finally:
        response.close()
    return body[:limit]


def _skip(chunks: Iterable[bytes], n: int) -> Iterable[bytes]:
    for chunk in chunks:
        if n >= len(chunk):
            n -= len(chunk)
            continue
        yield chunk[n:] if n else chunk
        n = 0


class HttpShard:
    """A shard served over HTTP(S), streamed with resume and retries over a shared client.

    `timeout` bounds each network operation; a stream that stays under the throughput floor
    (`ATDATA_MIN_THROUGHPUT`, default 1 KiB/s over 30 s; see `atdata._http`) fails with a
    `SourceError` naming the URL.
    """

    def __init__(
        self,
        url: str,
        *,
        sha256: str | None = None,
        size: int | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.url = url
        self.name = url
        self.sha256 = sha256
        self.size = size
        self.headers = dict(headers or {})
        self.timeout = timeout

    def _client(self) -> Any:
        """The process's shared client for this timeout (subclasses add a guard here)."""

        def build() -> Any:
            return httpx.Client(timeout=self.timeout, follow_redirects=True)

        return shared_http_client(("plain", self.timeout), build)

    def refused(self, status: int, body: bytes) -> SourceError:
        """The error for a final (not retried) HTTP status; subclasses say what it means."""
        return SourceError(f"HTTP {status} fetching {self.name}")

    def open(self) -> ShardStream:
        floor = ThroughputFloor.from_env(self.name)
        stream = _HttpStream(self.url, self.name, self.headers, self._client(), self.refused, floor)
        return _maybe_verify(stream, self.name, self.sha256, self.size)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"


# ----------------------------------------------------------------------------------------------
# S3


def _aws_environment() -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("AWS_")))


def _aws_session() -> Any:
    """A boto3 session for the AWS settings in the environment *now*.

    boto3's default session resolves credentials once and keeps them, so a process whose
    AWS_* variables change would go on signing with the old keys; one session per distinct
    AWS environment (per process) follows the change and still builds clients cheaply.
    """
    import boto3

    return shared_http_client(("aws-session", _aws_environment()), boto3.session.Session)


def s3_client(client_kwargs: Mapping[str, Any] | None) -> Any:
    """A boto3 S3 client; endpoint/credentials from the standard AWS config unless passed."""
    return _aws_session().client("s3", **dict(client_kwargs or {}))


def _split_s3(url: str) -> tuple[str, str]:
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise SourceError(f"not an s3:// URL: {url!r}")
    return parsed.netloc, parsed.path.lstrip("/")


class _S3Stream(_Resumable):
    def __init__(self, client: Any, bucket: str, key: str, name: str) -> None:
        super().__init__(name)
        self._client = client
        self._bucket = bucket
        self._key = key
        self._body: Any = None

    def _transient(self, exc: BaseException) -> bool:
        import urllib3.exceptions
        from botocore.exceptions import BotoCoreError, NoCredentialsError, ParamValidationError

        if isinstance(exc, (NoCredentialsError, ParamValidationError)):
            return False
        return isinstance(
            exc, (BotoCoreError, urllib3.exceptions.HTTPError, ConnectionError, TimeoutError)
        )

    def _connect(self, offset: int) -> tuple[Iterable[bytes], int | None]:
        from botocore.exceptions import ClientError

        kwargs: dict[str, Any] = {"Bucket": self._bucket, "Key": self._key}
        if offset:
            kwargs["Range"] = f"bytes={offset}-"
        try:
            response = self._client.get_object(**kwargs)
        except ClientError as exc:
            meta = exc.response.get("ResponseMetadata", {})
            status = meta.get("HTTPStatusCode")
            code = exc.response.get("Error", {}).get("Code")
            if status in RETRY_STATUS or code in ("SlowDown", "RequestTimeout"):
                retry_after = retry_after_seconds(meta.get("HTTPHeaders", {}), status)
                raise _RetryAfter(f"S3 {code} ({status})", retry_after) from None
            if code in ("NoSuchKey", "404", "NoSuchBucket"):
                raise SourceError(f"shard not found: {self.name_}") from exc
            raise SourceError(f"cannot fetch {self.name_}: {exc}") from exc
        body = response["Body"]
        self._body = body
        total = None
        content_range = response.get("ContentRange")
        if content_range:
            size = content_range.rpartition("/")[2]
            total = int(size) if size.isdigit() else None
        elif response.get("ContentLength") is not None:
            total = int(response["ContentLength"]) + offset
        return iter(lambda: body.read(_READ), b""), total

    def _close_response(self) -> None:
        if self._body is not None:
            self._body.close()
            self._body = None


class S3Shard:
    """A shard in an S3 (or S3-compatible) bucket, streamed through boto3."""

    def __init__(
        self,
        url_or_bucket_key: str,
        *,
        sha256: str | None = None,
        size: int | None = None,
        client_kwargs: Mapping[str, Any] | None = None,
        client: Any = None,
    ) -> None:
        if url_or_bucket_key.startswith("s3://"):
            self.bucket, self.key = _split_s3(url_or_bucket_key)
        else:
            self.bucket, _, self.key = url_or_bucket_key.partition("/")
        if not self.bucket or not self.key:
            raise SourceError(f"S3 shard needs a bucket and a key: {url_or_bucket_key!r}")
        self.name = f"s3://{self.bucket}/{self.key}"
        self.sha256 = sha256
        self.size = size
        self.client_kwargs = dict(client_kwargs or {})
        self._client = client

    def __getstate__(self) -> dict[str, Any]:
        # boto3 clients do not pickle (DataLoader workers under "spawn"); rebuild on demand.
        state = dict(self.__dict__)
        state["_client"] = None
        return state

    def _get_client(self) -> Any:
        if self._client is None:
            self._client = s3_client(self.client_kwargs)
        return self._client

    def open(self) -> ShardStream:
        stream = _S3Stream(self._get_client(), self.bucket, self.key, self.name)
        return _maybe_verify(stream, self.name, self.sha256, self.size)

    def __repr__(self) -> str:
        return f"S3Shard({self.name!r})"


def _list_s3(url: str, client_kwargs: Mapping[str, Any] | None) -> list[S3Shard]:
    """The ``.tar`` objects under a prefix (or matching a glob), in key order."""
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, key = _split_s3(url)
    first_glob = min((key.find(c) for c in _GLOB_CHARS if c in key), default=-1)
    pattern = key if first_glob >= 0 else None
    prefix = key[:first_glob] if first_glob >= 0 else key
    client = s3_client(client_kwargs)
    found: list[S3Shard] = []
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                k = obj["Key"]
                if pattern is not None:
                    if not fnmatch.fnmatchcase(k, pattern):
                        continue
                elif not k.endswith(".tar"):
                    continue
                found.append(
                    S3Shard(
                        f"s3://{bucket}/{k}",
                        size=int(obj["Size"]),
                        client_kwargs=client_kwargs,
                        client=client,
                    )
                )
    except (ClientError, BotoCoreError) as exc:
        raise SourceError(f"cannot list {url}: {exc}") from exc
    if not found:
        raise SourceError(f"no .tar objects under {url}")
    found.sort(key=lambda s: s.key)
    return found


# ----------------------------------------------------------------------------------------------
# Expanding a specification into sources


def _braces(spec: str) -> list[str]:
    import braceexpand

    return list(braceexpand.braceexpand(spec)) if "{" in spec else [spec]


ShardSpec: TypeAlias = str | os.PathLike[str] | ShardSource
"""One shard, or a pattern naming several: a path, brace pattern, glob, URL or source object."""
DatasetSource: TypeAlias = ShardSpec | Sequence[ShardSpec]
"""What a dataset reads: one :data:`ShardSpec` or a list of them."""


def expand_sources(
    spec: DatasetSource,
    *,
    client_kwargs: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> list[ShardSource]:
    """Turn what a user passes as a dataset's source into a list of shard sources.

    Accepts a :class:`ShardSource`, a path (file or directory of ``.tar`` files), a brace
    pattern (``data-{000000..000009}.tar``), a glob, ``http(s)://`` URLs (braces allowed),
    ``s3://bucket/key.tar``, ``s3://bucket/prefix`` (every ``.tar`` under it), or a list of
    any of these. ``client_kwargs`` go to ``boto3.client("s3", ...)``; ``headers`` to HTTP.
    """
    out: list[ShardSource] = []
    _expand_into(spec, out, client_kwargs, headers)
    if not out:
        raise SourceError(f"no shards in {spec!r}")
    return out


def _expand_into(
    spec: Any,
    out: list[ShardSource],
    client_kwargs: Mapping[str, Any] | None,
    headers: Mapping[str, str] | None,
) -> None:
    if isinstance(spec, (list, tuple)):
        for item in spec:
            _expand_into(item, out, client_kwargs, headers)
        return
    if isinstance(spec, os.PathLike):
        spec = os.fspath(spec)
    if not isinstance(spec, str):
        if isinstance(spec, ShardSource):
            out.append(spec)
            return
        raise TypeError(f"cannot read shards from {type(spec).__name__}: {spec!r}")
    if spec.startswith(("http://", "https://")):
        out.extend(HttpShard(url, headers=headers) for url in _braces(spec))
        return
    if spec.startswith("s3://"):
        for url in _braces(spec):
            key = _split_s3(url)[1]
            if key.endswith(".tar") and not _GLOB_CHARS.intersection(key):
                out.append(S3Shard(url, client_kwargs=client_kwargs))
            else:
                out.extend(_list_s3(url, client_kwargs))
        return
    if spec.startswith("file://"):
        spec = urlparse(spec).path
    missing: list[str] = []
    for path in _braces(spec):
        if _GLOB_CHARS.intersection(path):
            matches = sorted(globlib.glob(path))
            if not matches:
                raise SourceError(f"no files match {path!r}")
            out.extend(LocalShard(m) for m in matches)
        elif os.path.isdir(path):
            tars = sorted(globlib.glob(os.path.join(globlib.escape(path), "*.tar")))
            if not tars:
                raise SourceError(f"no .tar files in directory {path!r}")
            out.extend(LocalShard(t) for t in tars)
        elif os.path.exists(path):
            out.append(LocalShard(path))
        else:
            missing.append(path)
    if missing:
        # the first three and the last, with "..." only when something lies between them
        head = missing if len(missing) <= 4 else [*missing[:3], "...", missing[-1]]
        shown = ", ".join(head)
        raise SourceError(f"{len(missing)} shard(s) not found: {shown}")
