"""write_samples: shard splitting, ShardInfo (sha256, sizes, observed arrays), readers."""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path

import atdata
import numpy as np
import pytest
import webdataset as wds
from atdata import ShardInfo
from numpy.typing import NDArray


@atdata.packable
class Frame:
    pixels: NDArray[np.uint8]
    depth: NDArray | None
    label: int


def _frames(n: int, vary: bool = False) -> list[Frame]:
    return [
        Frame(
            pixels=np.full((4, 4 + (i % 3 if vary else 0), 3), i % 256, np.uint8),
            depth=np.zeros(2, np.float64) if i % 2 else None,
            label=i,
        )
        for i in range(n)
    ]


def test_shard_infos_describe_the_files(tmp_path) -> None:
    infos = atdata.write_samples(
        _frames(23, vary=True), tmp_path / "out" / "f-%04d.tar", maxcount=10
    )
    assert [Path(i.path).name for i in infos] == ["f-0000.tar", "f-0001.tar", "f-0002.tar"]
    assert [i.samples for i in infos] == [10, 10, 3]
    for info in infos:
        assert isinstance(info, ShardInfo)
        raw = Path(info.path).read_bytes()
        assert info.bytes == len(raw)
        assert info.sha256 == hashlib.sha256(raw).hexdigest()
        assert info.arrays["pixels"] == {"dtype": "|u1", "shape": [4, None, 3]}
        assert info.arrays["depth"] == {"dtype": "<f8", "shape": [2]}
    fixed = atdata.write_samples(_frames(3), tmp_path / "g-%d.tar")
    assert fixed[0].arrays["pixels"]["shape"] == [4, 4, 3]


def test_maxsize_splits_shards(tmp_path) -> None:
    one = len(_frames(1)[0].packed) + 512 + 512
    infos = atdata.write_samples(_frames(10), tmp_path / "s-%03d.tar", maxsize=3 * one + 1024)
    assert sum(i.samples for i in infos) == 10
    assert all(i.bytes <= 3 * one + 1024 for i in infos)
    assert len(infos) >= 4


def test_output_is_plain_ustar_read_by_everyone(tmp_path) -> None:
    (info,) = atdata.write_samples(_frames(5), tmp_path / "u-%d.tar", mtime=1_700_000_000)
    with tarfile.open(info.path) as tf:
        members = tf.getmembers()
        assert [m.name for m in members] == [f"{i:08d}.msgpack" for i in range(5)]
        assert all(m.pax_headers == {} and m.mtime == 1_700_000_000 for m in members)
    got = list(wds.WebDataset(info.path, shardshuffle=False))
    assert [Frame.from_bytes(s["msgpack"]).label for s in got] == list(range(5))
    assert [s.label for s in atdata.Dataset[Frame](info.path)] == list(range(5))


def _names(path: str) -> list[str]:
    with tarfile.open(path) as tf:
        return tf.getnames()


def test_keys_dicts_and_dict_samples(tmp_path) -> None:
    (info,) = atdata.write_samples(
        _frames(3), tmp_path / "k-%d.tar", key=lambda i, s: f"frame-{s.label * 10}"
    )
    assert _names(info.path) == [
        "frame-0.msgpack",
        "frame-10.msgpack",
        "frame-20.msgpack",
    ]
    (info,) = atdata.write_samples(
        [{"__key__": "a", "txt": "hello", "bin": b"\x00\x01"}], tmp_path / "d-%d.tar"
    )
    assert _names(info.path) == ["a.txt", "a.bin"]
    (info,) = atdata.write_samples(
        [atdata.DictSample(x=np.arange(3), y="z")], tmp_path / "ds-%d.tar"
    )
    assert info.arrays == {"x": {"dtype": np.arange(3).dtype.str, "shape": [3]}}
    (back,) = atdata.Dataset(info.path)
    np.testing.assert_array_equal(back.array("x"), np.arange(3))


def test_bad_arguments(tmp_path) -> None:
    with pytest.raises(ValueError, match="%"):
        atdata.write_samples(_frames(1), tmp_path / "no-pattern.tar")
    with pytest.raises(ValueError, match="positive"):
        atdata.write_samples(_frames(1), tmp_path / "x-%d.tar", maxcount=0)
    with pytest.raises(TypeError, match="cannot write"):
        atdata.write_samples([42], tmp_path / "x-%d.tar")
    assert atdata.write_samples([], tmp_path / "e-%d.tar") == []


def test_progress_bar_only_when_asked_or_on_a_terminal(tmp_path, capsys) -> None:
    atdata.write_samples(_frames(3), tmp_path / "p-%d.tar")
    assert capsys.readouterr().err == ""  # stderr is not a terminal under pytest
    atdata.write_samples(_frames(3), tmp_path / "q-%d.tar", progress=True)
    assert "3/3" in capsys.readouterr().err


def test_shard_writer_rolls_by_count_and_size_and_reports_each_shard(tmp_path) -> None:
    from atdata._tar import END_BYTES, iter_samples, member_bytes
    from atdata.writer import ShardWriter

    members = [[(f"{i:03d}.bin", bytes(700 * (i % 4))), (f"{i:03d}.txt", b"x")] for i in range(30)]
    limit = 6000
    with ShardWriter(tmp_path / "w-%02d.tar", maxcount=5, maxsize=limit) as writer:
        for sample in members:
            writer.write(sample)
            if sample[0][1]:
                writer.observe("bin", np.frombuffer(sample[0][1], np.uint8))
    infos = writer.shards
    assert all(isinstance(i, ShardInfo) for i in infos)
    assert sum(i.samples for i in infos) == 30 and max(i.samples for i in infos) <= 5
    keys = []
    for info in infos:
        raw = Path(info.path).read_bytes()
        assert info.bytes == len(raw) <= limit
        assert info.sha256 == hashlib.sha256(raw).hexdigest()
        with open(info.path, "rb") as f:
            keys += [s["__key__"] for s in iter_samples(f, info.path)]
    assert keys == [f"{i:03d}" for i in range(30)]
    # Sizes are exact: a shard is full when the next sample would not fit.
    need = [sum(member_bytes(n, len(d)) for n, d in s) for s in members]
    used = 0
    for info in infos:
        count = info.samples
        assert info.bytes == sum(need[used : used + count]) + END_BYTES
        if used + count < 30 and count < 5:
            assert info.bytes + need[used + count] > limit
        used += count
    assert infos[0].arrays["bin"]["dtype"] == "|u1"


def test_shard_writer_error_leaves_the_open_shard_cut_short(tmp_path) -> None:
    from atdata.errors import DecodeError
    from atdata.writer import ShardWriter

    with pytest.raises(RuntimeError), ShardWriter(tmp_path / "e-%d.tar") as writer:
        writer.write([("a.bin", b"1")])
        raise RuntimeError("the sample source failed")
    assert writer.shards == []
    with pytest.raises(DecodeError, match="truncated"):
        list(atdata.Dataset(str(tmp_path / "e-0.tar")))
