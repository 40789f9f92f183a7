"""Dataset[T]: ordered/shuffled iteration, batches, lenses, errors, and remote sources."""

from __future__ import annotations

import hashlib
import io
import logging
import tarfile
from pathlib import Path

import atdata
import numpy as np
import pytest
from _fixtures.local_http import file_server
from atdata import DecodeError, DictSample, LensError, ShardIntegrityError
from atdata._codec import encode_array, pack
from atdata._sources import LocalShard
from atdata._tar import TarShardWriter
from numpy.typing import NDArray


@atdata.packable
class Rec:
    image: NDArray[np.float32]
    label: int
    name: str


@atdata.packable
class Labelled:
    label: int
    name: str


@atdata.packable
class LabelOnly:
    label: int


@atdata.lens
def rec_to_labelled(src: Rec) -> Labelled:
    return Labelled(label=src.label, name=src.name)


@atdata.lens
def labelled_to_label(src: Labelled) -> LabelOnly:
    return LabelOnly(label=src.label)


def _rec(i: int) -> Rec:
    return Rec(image=np.full((2, 3), i, dtype=np.float32), label=i, name=f"n{i}")


N = 25


@pytest.fixture
def shards(tmp_path):
    infos = atdata.write_samples([_rec(i) for i in range(N)], tmp_path / "d-%06d.tar", maxcount=10)
    assert [i.samples for i in infos] == [10, 10, 5]
    return tmp_path, infos


def _pattern(tmp_path) -> str:
    return str(tmp_path / "d-{000000..000002}.tar")


def test_ordered_reads_back_what_was_written(shards) -> None:
    tmp_path, _ = shards
    ds = atdata.Dataset[Rec](_pattern(tmp_path))
    got = list(ds.ordered())
    assert [s.label for s in got] == list(range(N))
    assert all(isinstance(s, Rec) for s in got)
    for s in got:
        np.testing.assert_array_equal(s.image, np.full((2, 3), s.label, dtype=np.float32))
        assert s.image.dtype == np.float32
    assert [s.label for s in ds] == [s.label for s in got]
    assert ds.sample_type is Rec
    assert len(ds.shards) == 3


def test_arrays_are_read_only_and_zero_copy_where_aligned(tmp_path) -> None:
    @atdata.packable
    class Pix:
        image: NDArray[np.uint8]

    atdata.write_samples(
        [Pix(np.arange(12, dtype=np.uint8)) for _ in range(3)], tmp_path / "p-%d.tar"
    )
    (s,) = atdata.Dataset[Pix](str(tmp_path / "p-0.tar")).head(1)
    assert not s.image.flags.writeable
    assert s.image.base is not None  # a view over the shard's read buffer, not a copy
    np.testing.assert_array_equal(s.image, np.arange(12, dtype=np.uint8))


def test_untyped_dataset_gives_dict_samples(shards) -> None:
    tmp_path, _ = shards
    ds = atdata.Dataset(_pattern(tmp_path))
    first = ds.head(1)[0]
    assert isinstance(first, DictSample)
    assert first.keys() == ["image", "label", "name"]
    assert first.label == 0 and first["name"] == "n0"
    typed = ds.as_type(Rec)
    assert [s.label for s in typed.ordered()] == list(range(N))


def test_batches_cross_shard_boundaries(shards) -> None:
    tmp_path, _ = shards
    ds = atdata.Dataset[Rec](_pattern(tmp_path))
    batches = list(ds.ordered(batch_size=7))
    assert [len(b) for b in batches] == [7, 7, 7, 4]
    assert batches[1].label == list(range(7, 14))  # spans shards 0 and 1
    assert batches[1].image.shape == (7, 2, 3)
    assert [len(b) for b in ds.ordered(batch_size=7, drop_last=True)] == [7, 7, 7]
    with pytest.raises(ValueError, match="batch_size"):
        ds.ordered(batch_size=0)


def test_shuffled_exactly_once_and_repeatable(shards) -> None:
    tmp_path, _ = shards
    ds = atdata.Dataset[Rec](_pattern(tmp_path))
    runs = {seed: [s.label for s in ds.shuffled(buffer=4, seed=seed)] for seed in range(8)}
    for order in runs.values():
        assert sorted(order) == list(range(N))
    assert [s.label for s in ds.shuffled(buffer=4, seed=3)] == runs[3]
    assert len({tuple(o) for o in runs.values()}) > 1
    # Shard order is shuffled too: some seed starts outside the first shard.
    assert any(order[0] >= 10 for order in runs.values())
    batches = list(ds.shuffled(batch_size=8, buffer=100, seed=1))
    assert [len(b) for b in batches] == [8, 8, 8, 1]
    assert sorted(x for b in batches for x in b.label) == list(range(N))
    unseeded = [s.label for s in ds.shuffled()]
    assert sorted(unseeded) == list(range(N))


def test_head_len_and_counts(shards) -> None:
    tmp_path, _ = shards
    ds = atdata.Dataset[Rec](_pattern(tmp_path))
    assert [s.label for s in ds.head(3)] == [0, 1, 2]
    assert ds.head(0) == []
    assert len(ds) == N  # local shards: counted by one pass over their tar headers
    assert len(atdata.Dataset[Rec](_pattern(tmp_path), sample_count=N)) == N
    with pytest.raises(TypeError, match="unknown"):
        len(atdata.Dataset[Rec]("https://example.org/x-{0..2}.tar"))  # not downloaded for len
    assert "3 shards" in repr(ds)


def test_as_type_composes_lenses_along_the_shortest_path(shards) -> None:
    tmp_path, _ = shards
    ds = atdata.Dataset[Rec](_pattern(tmp_path))
    view = ds.as_type(LabelOnly)  # Rec -> Labelled -> LabelOnly
    assert view.sample_type is LabelOnly
    got = list(view.ordered(batch_size=10))
    assert got[0].label == list(range(10))
    assert isinstance(got[0].samples[0], LabelOnly)
    assert [s.name for s in ds.as_type(Labelled).head(2)] == ["n0", "n1"]
    assert ds.as_type(Labelled).as_type(LabelOnly).head(1) == [LabelOnly(label=0)]
    assert ds.as_type(Rec) is ds


def test_as_type_without_a_path_lists_lenses(shards) -> None:
    @atdata.packable
    class Unrelated:
        x: int

    tmp_path, _ = shards
    with pytest.raises(LensError) as err:
        atdata.Dataset[Rec](_pattern(tmp_path)).as_type(Unrelated)
    assert "rec_to_labelled" in str(err.value) and "Labelled" in str(err.value)


# -- bad data --------------------------------------------------------------------------------


def _write_raw(path, members: list[tuple[str, bytes]]) -> str:
    with open(path, "wb") as f, TarShardWriter(f) as w:
        for name, data in members:
            w.add(name, data)
    return str(path)


def _msg(**fields) -> bytes:
    return pack(fields)


def _good(i: int) -> bytes:
    return _msg(image=encode_array(np.zeros((2, 3), np.float32)), label=i, name=f"n{i}")


def test_undecodable_member_names_shard_and_key(tmp_path) -> None:
    path = _write_raw(
        tmp_path / "bad.tar",
        [("a.msgpack", _good(0)), ("b.msgpack", b"\xc1 not msgpack"), ("c.msgpack", _good(2))],
    )
    ds = atdata.Dataset[Rec](path)
    with pytest.raises(DecodeError) as err:
        list(ds)
    assert err.value.shard == path and err.value.key == "b"


def test_missing_and_mistyped_fields_name_the_field(tmp_path) -> None:
    arr = encode_array(np.zeros((2, 3), np.float32))
    path = _write_raw(tmp_path / "f.tar", [("a.msgpack", _msg(image=arr, label=1))])
    with pytest.raises(DecodeError) as err:
        list(atdata.Dataset[Rec](path))
    assert (err.value.shard, err.value.key, err.value.field) == (path, "a", "name")
    path = _write_raw(tmp_path / "g.tar", [("a.msgpack", _msg(image=arr, label="one", name="x"))])
    with pytest.raises(DecodeError) as err:
        list(atdata.Dataset[Rec](path))
    assert (err.value.key, err.value.field) == ("a", "label")
    bad_dtype = encode_array(np.zeros((2, 3), np.int64))
    path = _write_raw(tmp_path / "h.tar", [("a.msgpack", _msg(image=bad_dtype, label=1, name="x"))])
    with pytest.raises(DecodeError) as err:
        list(atdata.Dataset[Rec](path))
    assert err.value.field == "image"


def test_truncated_shard_names_the_shard(shards) -> None:
    tmp_path, infos = shards
    raw = Path(infos[1].path).read_bytes()
    cut = tmp_path / "cut.tar"
    cut.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DecodeError, match="truncated") as err:
        list(atdata.Dataset[Rec](str(cut)))
    assert err.value.shard == str(cut)


def test_on_error_skip_logs_and_counts(tmp_path, caplog) -> None:
    bad = _write_raw(
        tmp_path / "a.tar",
        [("a.msgpack", _good(0)), ("b.msgpack", b"\xc1"), ("c.msgpack", _good(2))],
    )
    good = _write_raw(tmp_path / "b.tar", [("d.msgpack", _good(3))])
    raw = Path(good).read_bytes()
    (tmp_path / "c.tar").write_bytes(raw[:550])  # truncated inside its first member
    ds = atdata.Dataset[Rec]([bad, good, str(tmp_path / "c.tar")], on_error="skip")
    with caplog.at_level(logging.WARNING, logger="atdata.dataset"):
        labels = [s.label for s in ds]
    assert labels == [0, 2, 3]
    assert ds.skipped == 2
    assert "'b'" in ds.errors[0] and "c.tar" in ds.errors[1]
    assert caplog.text.count("skipping") == 2
    with pytest.raises(ValueError, match="on_error"):
        atdata.Dataset[Rec](bad, on_error="ignore")
    summary = [r.getMessage() for r in caplog.records if "on_error='skip'" in r.getMessage()]
    assert summary == [
        "on_error='skip': skipped 1 of 4 samples and the rest of 1 shard(s); first reasons: "
        + " | ".join(ds.errors)
    ]


def test_on_error_skip_of_many_samples_logs_a_few_lines_and_a_summary(tmp_path, caplog) -> None:
    """400 broken samples: a handful of log lines (not 400), then skipped N of M and why."""
    members = [(f"s{i:04d}.msgpack", _good(i) if i % 101 == 0 else b"\xc1") for i in range(404)]
    path = _write_raw(tmp_path / "broken.tar", members)
    ds = atdata.Dataset[Rec](path, on_error="skip")
    with caplog.at_level(logging.WARNING, logger="atdata.dataset"):
        assert [s.label for s in ds] == [0, 101, 202, 303]
    assert ds.skipped == 400
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) <= 8, lines
    assert lines[-1].startswith("on_error='skip': skipped 400 of 404 samples; first reasons: ")
    assert "'s0001'" in lines[-1] and "'s0002'" in lines[-1]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="atdata.dataset"):
        assert len(ds.head(2)) == 2  # a pass closed early still says what it skipped
    assert caplog.records[-1].getMessage().startswith("on_error='skip': skipped 100 of 102")


def test_integrity_checked_for_sources_with_a_hash(shards) -> None:
    tmp_path, infos = shards
    info = infos[0]
    assert info.sha256 == hashlib.sha256(Path(info.path).read_bytes()).hexdigest()
    ok = atdata.Dataset[Rec]([LocalShard(info.path, sha256=info.sha256, size=info.bytes)])
    assert len(list(ok)) == 10
    bad = atdata.Dataset[Rec]([LocalShard(info.path, sha256="0" * 64)])
    with pytest.raises(ShardIntegrityError) as err:
        list(bad)
    assert err.value.shard == info.path


def test_webdataset_style_members(tmp_path) -> None:
    """Samples stored as one member per field (``.npy``, ``.cls``, ``.txt``) read too."""
    members = []
    for i in range(3):
        buf = io.BytesIO()
        np.save(buf, np.full((2, 3), i, np.float32))
        members += [
            (f"k{i}.image.npy", buf.getvalue()),
            (f"k{i}.label.cls", str(i).encode()),
            (f"k{i}.name.txt", f"n{i}".encode()),
        ]
    path = _write_raw(tmp_path / "wds.tar", members)
    got = list(atdata.Dataset[Rec](path))
    assert [s.label for s in got] == [0, 1, 2] and got[2].name == "n2"
    np.testing.assert_array_equal(got[1].image, np.full((2, 3), 1, np.float32))
    untyped = atdata.Dataset(path).head(1)[0]
    assert untyped.keys() == ["image", "label", "name"]


def test_reads_shards_written_by_tarfile_with_pax_headers(tmp_path) -> None:
    path = tmp_path / "pax.tar"
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        for i in range(4):
            data = _rec(i).packed
            info = tarfile.TarInfo(f"{'deep/' * 30}s{i}.msgpack")
            info.size = len(data)
            info.mtime = 1.5
            tf.addfile(info, io.BytesIO(data))
    assert [s.label for s in atdata.Dataset[Rec](str(path))] == [0, 1, 2, 3]


# -- remote sources ----------------------------------------------------------------------------


def test_dataset_over_http(shards) -> None:
    tmp_path, _ = shards
    with file_server(tmp_path) as base:
        url = f"{base}/d-{{000000..000002}}.tar"
        ds = atdata.Dataset[Rec](url)
        assert [s.label for s in ds.ordered()] == list(range(N))


def test_dataset_over_s3(shards, s3_server, s3_bucket) -> None:
    tmp_path, infos = shards
    client = s3_server.client()
    for info in infos:
        client.upload_file(info.path, s3_bucket, "train/" + info.path.rsplit("/", 1)[1])
    ds = atdata.Dataset[Rec](f"s3://{s3_bucket}/train/", client_kwargs=s3_server.client_kwargs())
    assert len(ds.shards) == 3
    assert [s.label for s in ds.ordered()] == list(range(N))
    assert sorted(s.label for s in ds.shuffled(seed=0, buffer=5)) == list(range(N))


def test_datasets_and_views_pickle(shards) -> None:
    """DataLoader workers started with "spawn" receive the dataset by pickle."""
    import pickle

    tmp_path, _ = shards
    view = atdata.Dataset[Rec](_pattern(tmp_path)).as_type(LabelOnly)
    clone = pickle.loads(pickle.dumps(view))
    assert [s.label for s in clone.ordered()] == list(range(N))
    loose = pickle.loads(pickle.dumps(atdata.Dataset(_pattern(tmp_path)).as_type(Labelled)))
    assert loose.head(1) == [Labelled(label=0, name="n0")]


def test_batches_copy_unaligned_arrays_once_into_the_batch(tmp_path) -> None:
    """Shards from atdata 0.7 (compact msgpack) hold arrays at unaligned offsets: a batch copies
    them straight into its stacked array, with no aligned copy per sample first."""
    import msgpack

    @atdata.packable
    class Img:
        image: NDArray[np.float32]
        label: int

    arrays = [np.arange(12, dtype=np.float32).reshape(3, 4) + i for i in range(5)]
    members = [
        (f"s{i}.msgpack", msgpack.packb({"image": encode_array(a), "label": i}))
        for i, a in enumerate(arrays)
    ]
    path = _write_raw(tmp_path / "peer.tar", members)
    ds = atdata.Dataset[Img](path)
    singles = list(ds.ordered())
    assert all(s.image.flags.aligned for s in singles)  # one sample: an aligned copy
    assert [s.image.tolist() for s in singles] == [a.tolist() for a in arrays]
    (batch,) = list(ds.ordered(batch_size=5))
    assert batch.image.flags.aligned and batch.image.tolist() == [a.tolist() for a in arrays]
    assert not any(s.image.flags.aligned or s.image.flags.owndata for s in batch.samples)
    (shuffled,) = list(ds.shuffled(batch_size=5, seed=1))
    assert sorted(shuffled.label) == [0, 1, 2, 3, 4]
    assert not any(s.image.flags.owndata for s in shuffled.samples)
