"""``ordered(batch_size=N)`` over local shards of large samples reads array payloads straight
into the batch arrays (``atdata._direct``). Whatever it yields must equal the tar reader's
path, sample by sample, for the layouts it takes (ours, the peer's pax headers with unaligned
arrays) and for everything it hands back to the tar reader mid-shard, errors included."""

from __future__ import annotations

import io
import logging
import tarfile
from pathlib import Path
from typing import Any

import atdata
import msgpack
import numpy as np
import pytest
import webdataset as wds
from atdata import _direct
from atdata._codec import encode_array
from atdata.batch import SampleBatch
from atdata.errors import DecodeError, SampleValueError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

SHAPE = (96, 96, 3)  # float32: 110 KB, over the direct path's minimum message size


@atdata.packable
class Big:
    image: NDArray
    label: str
    confidence: float


def message(i: int, shape: tuple[int, ...] = SHAPE, dtype: str = "<f4") -> bytes:
    """A sample message as the peer packs it: plain msgpack, the array data not aligned."""
    image = (np.arange(np.prod(shape), dtype=np.float64).reshape(shape) * (i + 1)).astype(dtype)
    return msgpack.packb(
        {"image": encode_array(image), "label": f"class_{i % 3}", "confidence": i / 7}
    )


def write_peer_layout(path: Path, members: list[tuple[str, bytes]]) -> None:
    """webdataset's TarWriter, as the peer writes shards: a pax header before every member."""
    with wds.writer.TarWriter(str(path)) as sink:
        for name, data in members:
            key, ext = name.split(".", 1)
            sink.write({"__key__": key, ext: data})


def peer_shards(tmp_path: Path, shards: int, per: int) -> list[str]:
    paths = []
    for s in range(shards):
        path = tmp_path / f"peer-{s:06d}.tar"
        write_peer_layout(
            path, [(f"s{s}_{i:04d}.msgpack", message(s * per + i)) for i in range(per)]
        )
        paths.append(str(path))
    return paths


def generic_batches(ds: atdata.Dataset[Any], batch_size: int, drop_last: bool) -> list[list[Any]]:
    """What the tar reader's path yields: ordered() samples, cut into batches."""
    samples = list(ds.ordered())
    cut = [samples[i : i + batch_size] for i in range(0, len(samples), batch_size)]
    if drop_last and cut and len(cut[-1]) < batch_size:
        cut.pop()
    return cut


def assert_same(ds: atdata.Dataset[Any], batch_size: int, drop_last: bool = False) -> list[Any]:
    want = generic_batches(ds, batch_size, drop_last)
    got = list(ds.ordered(batch_size=batch_size, drop_last=drop_last))
    assert [len(b) for b in got] == [len(b) for b in want]
    for batch, samples in zip(got, want, strict=True):
        for mine, theirs in zip(batch.samples, samples, strict=True):
            assert mine.image.dtype == theirs.image.dtype
            assert np.array_equal(mine.image, theirs.image)
            assert (mine.label, mine.confidence) == (theirs.label, theirs.confidence)
        if len({s.image.shape for s in samples}) == 1:
            stacked = SampleBatch(samples, Big).image  # as the tar reader's path stacks
            assert batch.image.dtype == stacked.dtype
            assert np.array_equal(batch.image, stacked)
        assert batch.label == [s.label for s in samples]
    return got


@pytest.mark.parametrize(
    ("batch_size", "drop_last"), [(4, False), (4, True), (7, False), (1, False)]
)
def test_peer_layout_reads_as_the_tar_reader_does(
    tmp_path: Path, batch_size: int, drop_last: bool
) -> None:
    ds = atdata.Dataset[Big](peer_shards(tmp_path, shards=3, per=5))
    assert_same(ds, batch_size, drop_last)


def test_batches_are_filled_in_place_with_one_copy(tmp_path: Path) -> None:
    ds = atdata.Dataset[Big](peer_shards(tmp_path, shards=2, per=3))
    batch = next(iter(ds.ordered(batch_size=4)))  # spans both shards
    # The samples' arrays are read-only rows of the batch's own (writable) stacked array.
    assert all(np.shares_memory(s.image, batch.image) for s in batch.samples)
    assert not batch.samples[0].image.flags.writeable
    assert batch.image.flags.writeable and batch.image.flags.c_contiguous
    assert batch.image.shape == (4, *SHAPE)


def test_our_own_shards_keep_the_mapped_path(tmp_path: Path) -> None:
    # Our writer aligns arrays: views of the mapped shard, stacked when read, cost no more.
    samples = [Big.from_bytes(message(i)) for i in range(9)]
    atdata.write_samples(samples, tmp_path / "ours-%06d.tar", maxcount=4, progress=False)
    ds = atdata.Dataset[Big](sorted(str(p) for p in tmp_path.glob("ours-*.tar")))
    assert not _direct.takes_direct_path(ds)
    first = next(iter(ds.ordered(batch_size=4)))
    assert "image" not in first._cache
    assert_same(ds, 4)


def test_the_first_sample_decides(tmp_path: Path) -> None:
    assert _direct.takes_direct_path(atdata.Dataset[Big](peer_shards(tmp_path, 1, 2)))
    small = tmp_path / "small-000000.tar"
    write_peer_layout(small, [("k.msgpack", message(0, (4, 4, 3)))])
    assert not _direct.takes_direct_path(atdata.Dataset[Big](str(small)))
    gnu = tmp_path / "empty-000000.tar"
    gnu.write_bytes(bytes(1024))  # an empty archive
    assert not _direct.takes_direct_path(atdata.Dataset[Big](str(gnu)))


def test_big_endian_arrays_keep_their_bytes(tmp_path: Path) -> None:
    path = tmp_path / "be-000000.tar"
    write_peer_layout(path, [(f"k{i}.msgpack", message(i, dtype=">f4")) for i in range(5)])
    got = assert_same(atdata.Dataset[Big](str(path)), 2)
    assert got[0].image.dtype == np.dtype(">f4")


def test_a_sample_of_two_members_hands_the_shard_back(tmp_path: Path) -> None:
    path = tmp_path / "mixed-000000.tar"
    members = [(f"k{i}.msgpack", message(i)) for i in range(6)]
    members.insert(3, ("k2.json", b"{}"))  # a second member of sample k2
    write_peer_layout(path, members)
    assert_same(atdata.Dataset[Big](str(path)), 4)


def test_a_shape_that_changes_mid_batch(tmp_path: Path) -> None:
    path = tmp_path / "shapes-000000.tar"
    shapes = [SHAPE, SHAPE, (64, 128, 3), SHAPE, SHAPE]
    write_peer_layout(path, [(f"k{i}.msgpack", message(i, s)) for i, s in enumerate(shapes)])
    ds = atdata.Dataset[Big](str(path))
    first, second = assert_same(ds, 3)
    with pytest.raises(SampleValueError, match="cannot stack field 'image'"):
        first.image  # noqa: B018 - ragged, as on the tar reader's path
    assert second.image.shape == (2, *SHAPE)


def test_gnu_long_names_hand_the_shard_back(tmp_path: Path) -> None:
    path = tmp_path / "gnu-000000.tar"
    long = "d" * 120
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tf:
        for i in range(4):
            data = message(i)
            info = tarfile.TarInfo(f"{long}/k{i}.msgpack" if i == 2 else f"k{i}.msgpack")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    assert_same(atdata.Dataset[Big](str(path)), 3)


def corrupt_shard(tmp_path: Path, how: str) -> str:
    path = tmp_path / f"bad-{how}-000000.tar"
    members = [(f"k{i}.msgpack", message(i)) for i in range(6)]
    if how == "type":  # valid msgpack, a field of the wrong type: the decoder refuses it
        fields = msgpack.unpackb(members[2][1])
        bad = msgpack.packb({**fields, "confidence": "high"})
    else:  # the fields after the array: a msgpack type byte that does not exist
        bad = members[2][1][:-30] + b"\xc1" * 30
    members[2] = ("k2.msgpack", bad)
    write_peer_layout(path, members)
    return str(path)


@pytest.mark.parametrize("how", ["type", "msgpack"])
def test_a_corrupt_sample_raises_naming_it(tmp_path: Path, how: str) -> None:
    ds = atdata.Dataset[Big](corrupt_shard(tmp_path, how))
    with pytest.raises(DecodeError) as generic:
        list(ds.ordered())
    with pytest.raises(DecodeError) as caught:
        list(ds.ordered(batch_size=4))
    assert (caught.value.key, caught.value.field) == (generic.value.key, generic.value.field)
    assert caught.value.key == "k2"
    assert str(caught.value) == str(generic.value)


@pytest.mark.parametrize("how", ["type", "msgpack"])
def test_a_corrupt_sample_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    ds = atdata.Dataset[Big](corrupt_shard(tmp_path, how), on_error="skip")
    with caplog.at_level(logging.WARNING):
        got = assert_same(ds, 4)
    assert [s.confidence for b in got for s in b.samples] == [i / 7 for i in (0, 1, 3, 4, 5)]
    assert ds.skipped == 2  # once per pass: the tar reader's in assert_same, then this one
    assert caplog.text.count("skipped 1 of 6 samples") == 2
    if how == "type":
        # Its row was reused by the next sample: the batch is stacked in place all the same.
        assert all(np.shares_memory(s.image, got[0].image) for s in got[0].samples)


@pytest.mark.parametrize("mid_payload", [True, False])  # else: only the end blocks are missing
def test_a_truncated_shard(tmp_path: Path, mid_payload: bool) -> None:
    path = tmp_path / "cut-000000.tar"
    write_peer_layout(path, [(f"k{i}.msgpack", message(i)) for i in range(4)])
    data = path.read_bytes()
    end = data.rstrip(b"\0")
    cut = data[: len(data) // 2] if mid_payload else end + bytes(-len(end) % 512)
    path.write_bytes(cut)
    for lenient in (False, True):
        ds = atdata.Dataset[Big](str(path), allow_truncated=lenient)
        try:
            want: Any = generic_batches(ds, 2, False)
        except DecodeError as exc:
            with pytest.raises(DecodeError) as caught:
                list(ds.ordered(batch_size=2))
            assert str(caught.value) == str(exc)
            assert "truncated" in str(exc)
        else:
            assert lenient and not mid_payload and sum(map(len, want)) == 4
            assert_same(ds, 2)


def test_without_preadv_the_tar_reader_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_direct, "_HAVE_PREADV", False)  # e.g. Windows
    ds = atdata.Dataset[Big](peer_shards(tmp_path, shards=1, per=3))
    first = next(iter(ds.ordered(batch_size=2)))
    assert "image" not in first._cache
    assert_same(ds, 2)


def test_small_samples_take_the_tar_reader(tmp_path: Path) -> None:
    path = tmp_path / "small-000000.tar"
    write_peer_layout(path, [(f"k{i}.msgpack", message(i, (4, 4, 3))) for i in range(5)])
    ds = atdata.Dataset[Big](str(path))
    first = next(iter(ds.ordered(batch_size=2)))
    assert "image" not in first._cache  # stacked on first access, as before
    assert_same(ds, 2)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    shapes=st.lists(st.sampled_from([(8, 8, 3), (5, 2), (8, 8, 3)]), min_size=1, max_size=12),
    dtype=st.sampled_from(["<f4", ">f4", "<u2", "|u1"]),
    per_shard=st.integers(1, 5),
    batch_size=st.integers(1, 6),
    drop_last=st.booleans(),
    extra_member=st.booleans(),
)
def test_any_layout_reads_as_the_tar_reader_does(
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    shapes: list[tuple[int, ...]],
    dtype: str,
    per_shard: int,
    batch_size: int,
    drop_last: bool,
    extra_member: bool,
) -> None:
    monkeypatch.setattr(_direct, "DIRECT_MIN_MESSAGE", 0)  # small samples take it too
    monkeypatch.setattr(_direct, "WINDOW", 64)  # and arrays cross the window's edge
    root = tmp_path_factory.mktemp("any")
    paths = []
    for s in range(0, len(shapes), per_shard):
        members = [
            (f"k{i:04d}.msgpack", message(i, shapes[i], dtype))
            for i in range(s, s + per_shard)
            if i < len(shapes)
        ]
        if extra_member and len(members) > 1:
            members.insert(1, (members[0][0].replace("msgpack", "txt"), b"x"))
        path = root / f"shard-{s:06d}.tar"
        write_peer_layout(path, members)
        paths.append(str(path))
    assert_same(atdata.Dataset[Big](paths), batch_size, drop_last)
