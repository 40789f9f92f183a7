"""Shard facts for dataset records, and cutting shards under a PDS blob limit."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import atdata
import numpy as np
import pytest
from atdata._tar import iter_samples
from atdata.atmosphere import PublishError, cut_shard
from atdata.atmosphere.shards import gather_shards, merge_arrays, remap_splits
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray


@atdata.packable
class Blobby:
    key_id: int
    payload: NDArray[np.uint8]


def write(tmp: Path, sizes: list[int], maxcount: int = 1000) -> list[atdata.ShardInfo]:
    samples = [Blobby(key_id=i, payload=np.full(n, i % 256, np.uint8)) for i, n in enumerate(sizes)]
    return atdata.write_samples(samples, str(tmp / "s-%04d.tar"), maxcount=maxcount)


def keys_of(path: str) -> list[str]:
    with open(path, "rb") as f:
        return [s["__key__"] for s in iter_samples(f, path)]


def test_gather_from_paths_matches_shard_info(tmp_path: Path) -> None:
    infos = write(tmp_path, [100] * 7, maxcount=3)
    from_paths = gather_shards([i.path for i in infos])
    assert [(f.samples, f.bytes, f.sha256) for f in from_paths] == [
        (i.samples, i.bytes, i.sha256) for i in infos
    ]
    ds = atdata.Dataset[Blobby](str(tmp_path / "s-{0000..0002}.tar"))
    assert [f.sha256 for f in gather_shards(ds)] == [i.sha256 for i in infos]
    with pytest.raises(PublishError, match="does not exist"):
        gather_shards([str(tmp_path / "missing.tar")])
    with pytest.raises(PublishError, match="no shards"):
        gather_shards([])


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    # a 1,900-byte payload plus its msgpack framing, tar header, padding and the closing
    # blocks still fits the smallest limit, so every generated sample can be placed
    sizes=st.lists(st.integers(0, 1900), min_size=1, max_size=25),
    limit=st.integers(4096, 20000),
)
def test_cut_keeps_every_sample_in_order_under_the_limit(
    tmp_path_factory: pytest.TempPathFactory, sizes: list[int], limit: int
) -> None:
    tmp = tmp_path_factory.mktemp("cut")
    (info,) = write(tmp, sizes)
    (facts,) = gather_shards([info])
    pieces = cut_shard(facts, limit, tmp / "out")
    assert all(p.bytes <= limit for p in pieces)
    assert sum(p.samples for p in pieces) == len(sizes)
    assert [k for p in pieces for k in keys_of(p.path)] == keys_of(info.path)
    for p in pieces:
        assert hashlib.sha256(Path(p.path).read_bytes()).hexdigest() == p.sha256
        assert os.path.getsize(p.path) == p.bytes
    back = [s.key_id for s in atdata.Dataset[Blobby]([p.path for p in pieces]).ordered()]
    assert back == list(range(len(sizes)))


def test_a_sample_over_the_limit_is_a_clear_error(tmp_path: Path) -> None:
    (info,) = write(tmp_path, [100, 50_000])
    (facts,) = gather_shards([info])
    with pytest.raises(PublishError, match="blob limit"):
        cut_shard(facts, 10_000, tmp_path / "out")


def test_merge_arrays_marks_varying_dimensions() -> None:
    from atdata import ShardInfo as F

    a = F("a", 1, 1, "0" * 64, {"x": {"dtype": "float32", "shape": [3, 4]}})
    b = F("b", 1, 1, "0" * 64, {"x": {"dtype": "float32", "shape": [3, None]}})
    c = F("c", 1, 1, "0" * 64, {"x": {"dtype": "float32", "shape": [5, 4]}})
    assert merge_arrays([a, b, c]) == [{"field": "x", "dtype": "float32", "shape": [-1, -1]}]
    d = F("d", 1, 1, "0" * 64, {"x": {"dtype": "int8", "shape": [3, 4]}})
    with pytest.raises(PublishError, match="dtype"):
        merge_arrays([a, d])


def test_remap_splits_follows_cut_shards() -> None:
    mapping = [[0], [1, 2, 3], [4]]
    assert remap_splits({"train": [0, 1], "test": [2]}, mapping, 3) == [
        {"name": "train", "shards": [0, 1, 2, 3]},
        {"name": "test", "shards": [4]},
    ]
    with pytest.raises(PublishError, match="shard 3"):
        remap_splits({"train": [3]}, mapping, 3)
