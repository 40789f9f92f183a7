"""An on-disk shard cache keyed by sha256, with a size cap, safe for concurrent writers.

Several DataLoader worker processes may fetch the same shard at once. Each streams into its
own temporary file while the source verifies the sha256; only a complete, verified file is
renamed into place (rename is atomic on POSIX, and identical content makes the race
harmless). Eviction runs under an exclusive `flock` and drops the least recently used files
until the cache is under its cap. A reader that still has an evicted file open keeps reading
it: unlinking does not disturb open files.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from .._locks import file_lock
from .._sources import LocalShard, ShardSource, ShardStream
from ..errors import SourceError

__all__ = ["CachedShard", "ShardCache", "default_cache_dir"]

log = logging.getLogger(__name__)
_SHA = re.compile(r"^[0-9a-f]{64}$")


def default_cache_dir() -> Path:
    """`$ATDATA_CACHE/shards`, else `~/.cache/atdata/shards`."""
    root = os.environ.get("ATDATA_CACHE") or os.path.join(Path.home(), ".cache", "atdata")
    return Path(root) / "shards"


class ShardCache:
    """Files `<dir>/<sha256>.tar`, total size kept under `max_bytes` (least recently used go)."""

    def __init__(
        self, directory: str | os.PathLike[str] | None = None, *, max_bytes: int = 10 * 2**30
    ) -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        self.directory = Path(directory) if directory is not None else default_cache_dir()
        self.max_bytes = int(max_bytes)
        self.directory.mkdir(parents=True, exist_ok=True)

    def path_for(self, sha256: str) -> Path:
        if not _SHA.match(sha256):
            raise ValueError(f"not a lowercase sha256 hex digest: {sha256!r}")
        return self.directory / f"{sha256}.tar"

    def get(self, sha256: str, size: int | None = None) -> Path | None:
        """The cached file for `sha256` (touched for LRU), or None."""
        path = self.path_for(sha256)
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        if size is not None and st.st_size != size:
            log.warning("cached shard %s has the wrong size; dropping it", path)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            return None
        with contextlib.suppress(OSError):
            os.utime(path)
        return path

    def _lock(self) -> contextlib.AbstractContextManager[None]:
        return file_lock(self.directory / ".lock")

    def temp_file(self) -> tuple[int, str]:
        return tempfile.mkstemp(prefix=".partial-", suffix=".tar", dir=self.directory)

    def commit(self, tmp: str, sha256: str) -> Path:
        """Move a complete, verified temporary file into place, then evict to the cap."""
        final = self.path_for(sha256)
        os.replace(tmp, final)
        self.evict()
        return final

    def entries(self) -> list[tuple[Path, os.stat_result]]:
        out = []
        for p in self.directory.glob("*.tar"):
            if p.name.startswith("."):
                continue
            with contextlib.suppress(FileNotFoundError):
                out.append((p, p.stat()))
        return out

    def size(self) -> int:
        return sum(st.st_size for _, st in self.entries())

    def evict(self, keep: Path | None = None) -> None:
        """Delete least recently used files until the total is under `max_bytes`."""
        with self._lock():
            entries = sorted(self.entries(), key=lambda e: max(e[1].st_atime, e[1].st_mtime))
            total = sum(st.st_size for _, st in entries)
            for path, st in entries:
                if total <= self.max_bytes:
                    break
                if keep is not None and path == keep:
                    continue
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    total -= st.st_size
                    log.debug("evicted %s from the shard cache", path.name)

    def wrap(self, source: ShardSource) -> ShardSource:
        """A source served from the cache when possible (needs the shard's sha256)."""
        if not source.sha256:
            return source
        return CachedShard(source, self)


class _Tee(io.RawIOBase):
    """Copy what the (verifying) inner stream yields into a temp file; commit at clean EOF."""

    def __init__(self, inner: ShardStream, cache: ShardCache, sha256: str) -> None:
        self._inner = inner
        self._cache = cache
        self._sha = sha256
        fd, self._tmp = cache.temp_file()
        self._out: Any = os.fdopen(fd, "wb")
        self._done = False

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        try:
            n = self._inner.readinto(b)
        except BaseException:
            self._discard()
            raise
        if n:
            self._out.write(memoryview(b)[:n])
            return n
        if not self._done:  # EOF reached after the inner stream verified the bytes
            self._done = True
            self._out.close()
            self._cache.commit(self._tmp, self._sha)
        return 0

    def _discard(self) -> None:
        if not self._out.closed:
            self._out.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._tmp)

    def close(self) -> None:
        if not self._done:
            self._discard()  # a partial read never enters the cache
        with contextlib.suppress(Exception):
            self._inner.close()
        super().close()


class CachedShard:
    """A `ShardSource` that reads through a `ShardCache`."""

    def __init__(self, inner: ShardSource, cache: ShardCache) -> None:
        self.inner = inner
        self.cache = cache
        self.name = inner.name
        self.sha256 = inner.sha256
        self.size = inner.size

    def open(self) -> ShardStream:
        assert self.sha256
        hit = self.cache.get(self.sha256, self.size)
        if hit is not None:
            try:
                return LocalShard(hit, sha256=self.sha256, size=self.size).open()
            except SourceError:
                if hit.exists():
                    raise
                # another process evicted it between the lookup and the open: fetch it again
                log.debug("cached shard %s went away before it was opened", hit.name)
        return io.BufferedReader(_Tee(self.inner.open(), self.cache, self.sha256), 1 << 20)

    def __repr__(self) -> str:
        return f"CachedShard({self.inner!r})"
