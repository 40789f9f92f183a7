"""The on-disk shard cache: hits, verification, size cap, and concurrent workers."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
from pathlib import Path

import pytest
from atdata import ShardIntegrityError
from atdata._sources import LocalShard
from atdata.atmosphere import ShardCache


def make_shards(tmp: Path, n: int, size: int) -> list[LocalShard]:
    out = []
    for i in range(n):
        data = bytes([i % 251]) * size + os.urandom(64)
        p = tmp / f"src-{i}.tar"
        p.write_bytes(data)
        out.append(LocalShard(p, sha256=hashlib.sha256(data).hexdigest(), size=len(data)))
    return out


def test_miss_then_hit_serves_the_cached_copy(tmp_path: Path) -> None:
    (src,) = make_shards(tmp_path, 1, 10_000)
    cache = ShardCache(tmp_path / "cache", max_bytes=1 << 20)
    cached = cache.wrap(src)
    with cached.open() as f:
        first = f.read()
    assert cache.get(src.sha256) is not None
    os.unlink(src.path)  # the second read cannot come from the source any more
    with cached.open() as f:
        assert f.read() == first
    assert hashlib.sha256(first).hexdigest() == src.sha256


def test_partial_reads_and_bad_shards_never_enter_the_cache(tmp_path: Path) -> None:
    (src,) = make_shards(tmp_path, 1, 10_000)
    cache = ShardCache(tmp_path / "cache", max_bytes=1 << 20)
    with cache.wrap(src).open() as f:
        f.read(100)
    assert cache.get(src.sha256) is None
    bad = LocalShard(src.path, sha256="0" * 64, size=src.size)
    with pytest.raises(ShardIntegrityError), cache.wrap(bad).open() as f:
        f.read()
    assert cache.entries() == []
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.startswith(".partial")]


def test_a_corrupted_cache_file_is_detected(tmp_path: Path) -> None:
    (src,) = make_shards(tmp_path, 1, 10_000)
    cache = ShardCache(tmp_path / "cache", max_bytes=1 << 20)
    with cache.wrap(src).open() as f:
        f.read()
    path = cache.get(src.sha256)
    assert path is not None
    data = bytearray(path.read_bytes())
    data[5] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ShardIntegrityError), cache.wrap(src).open() as f:
        f.read()


def test_size_cap_evicts_least_recently_used(tmp_path: Path) -> None:
    shards = make_shards(tmp_path, 5, 10_000)
    cache = ShardCache(tmp_path / "cache", max_bytes=35_000)
    for i, s in enumerate(shards):
        with cache.wrap(s).open() as f:
            f.read()
        os.utime(cache.get(s.sha256), (1_000_000 + i, 1_000_000 + i))  # strict LRU order
    assert cache.size() <= 35_000
    kept = {p.name for p, _ in cache.entries()}
    assert kept == {f"{s.sha256}.tar" for s in shards[-3:]}


def _worker(cache_dir: str, paths: list[tuple[str, str, int]], rounds: int) -> int:
    cache = ShardCache(cache_dir, max_bytes=45_000)
    total = 0
    for _ in range(rounds):
        for path, sha, size in paths:
            with cache.wrap(LocalShard(path, sha256=sha, size=size)).open() as f:
                data = f.read()
            assert hashlib.sha256(data).hexdigest() == sha
            total += len(data)
    return total


def test_concurrent_workers_fill_one_cache_safely(tmp_path: Path) -> None:
    shards = make_shards(tmp_path, 6, 10_000)
    spec = [(str(s.path), s.sha256, s.size) for s in shards]
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(4) as pool:
        totals = pool.starmap(_worker, [(str(tmp_path / "cache"), spec, 3)] * 4)
    assert totals == [3 * sum(s.size for s in shards)] * 4
    cache = ShardCache(tmp_path / "cache", max_bytes=45_000)
    assert 0 < cache.size() <= 45_000
    leftovers = [p for p in (tmp_path / "cache").iterdir() if p.name.startswith(".partial")]
    assert leftovers == []
    for p, _ in cache.entries():
        assert hashlib.sha256(p.read_bytes()).hexdigest() == p.stem


class _EvictedAfterLookup(ShardCache):
    """Another process evicts the file between the lookup and the open (the race, on cue)."""

    def get(self, sha256: str, size: int | None = None) -> Path | None:
        hit = super().get(sha256, size)
        if hit is not None:
            hit.unlink()
        return hit


def test_a_shard_evicted_between_lookup_and_open_is_fetched_again(tmp_path: Path) -> None:
    (src,) = make_shards(tmp_path, 1, 10_000)
    cache = _EvictedAfterLookup(tmp_path / "cache", max_bytes=1 << 20)
    with cache.wrap(src).open() as f:  # a miss: fetched and cached
        f.read()
    assert cache.path_for(src.sha256).exists()
    with cache.wrap(src).open() as f:  # a hit that vanishes: fetched again, not "not found"
        data = f.read()
    assert hashlib.sha256(data).hexdigest() == src.sha256


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        ShardCache("/tmp/x-atdata-unused", max_bytes=0)
    with pytest.raises(ValueError):
        ShardCache("/tmp/x-atdata-unused").path_for("../../etc/passwd")
