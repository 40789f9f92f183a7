"""The streaming tar reader and ustar writer against Python's tarfile and webdataset."""

from __future__ import annotations

import io
import logging
import tarfile

import numpy as np
import pytest
import webdataset as wds
from _fixtures import hostile
from atdata._tar import BLOCK, TarReader, TarShardWriter, iter_samples, split_key
from atdata.errors import DecodeError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# Member names: path segments of safe characters, sometimes long enough to need pax/GNU/prefix.
_segment = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-é", min_size=1, max_size=40)
_names = st.lists(_segment, min_size=1, max_size=6).map("/".join)
_members = st.lists(
    st.tuples(_names, st.integers(min_value=0, max_value=5000)),
    min_size=0,
    max_size=12,
    unique_by=lambda m: m[0],
)


class ShortReads(io.RawIOBase):
    """A stream that returns at most ``step`` bytes a read, as sockets do."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data = memoryview(data)
        self._pos = 0
        self._step = step

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[override]
        n = min(len(b), self._step, len(self._data) - self._pos)
        b[:n] = self._data[self._pos : self._pos + n]
        self._pos += n
        return n


def _tarfile_archive(members: list[tuple[str, int]], fmt: int, seed: int = 0) -> tuple[bytes, list]:
    rng = np.random.default_rng(seed)
    expected = []
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for name, size in members:
            data = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
            info = tarfile.TarInfo(name)
            info.size = size
            info.mtime = 1_700_000_000.5
            tf.addfile(info, io.BytesIO(data))
            expected.append((name, data))
    return buf.getvalue(), expected


def _read(data: bytes, chunk: int, step: int | None = None) -> list[tuple[str, bytes]]:
    stream = ShortReads(data, step) if step else io.BytesIO(data)
    return [(n, bytes(d)) for n, d in TarReader(stream, "mem.tar", chunk=chunk)]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    members=_members,
    fmt=st.sampled_from([tarfile.PAX_FORMAT, tarfile.GNU_FORMAT]),
    chunk=st.sampled_from([512, 1024, 4096, 1 << 16]),
    step=st.sampled_from([None, 1, 700, 5000]),
)
def test_reads_tarfile_archives_identically(members, fmt, chunk, step) -> None:
    data, expected = _tarfile_archive(members, fmt)
    assert _read(data, chunk, step) == expected


@settings(max_examples=40, deadline=None)
@given(members=_members, chunk=st.sampled_from([512, 2048, 1 << 20]))
def test_writer_output_reads_in_tarfile_and_ours(members, chunk) -> None:
    rng = np.random.default_rng(1)
    buf = io.BytesIO()
    expected = []
    with TarShardWriter(buf, mtime=1_700_000_000) as w:
        for name, size in members:
            blob = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
            w.add(name, blob)
            expected.append((name, blob))
    raw = buf.getvalue()
    assert len(raw) % BLOCK == 0
    assert _read(raw, chunk) == expected
    with tarfile.open(fileobj=io.BytesIO(raw)) as tf:
        got = [(m.name, tf.extractfile(m).read()) for m in tf.getmembers()]  # type: ignore[union-attr]
        assert got == expected
        for m in tf.getmembers():
            assert m.mtime == 1_700_000_000
            # Plain ustar unless the name cannot fit a ustar name + prefix.
            if len(m.name.encode()) <= 100:
                assert m.pax_headers == {}


def test_writer_emits_no_pax_headers_for_ordinary_names() -> None:
    buf = io.BytesIO()
    with TarShardWriter(buf, mtime=5) as w:
        w.add("00000001.msgpack", b"abc")
        w.add("deep/" * 25 + "x.msgpack", b"def")  # 131 bytes: fits as prefix + name
    raw = buf.getvalue()
    assert len(raw) == 2 * (BLOCK + BLOCK) + 2 * BLOCK
    assert raw[156:157] == b"0" and raw[257:263] == b"ustar\0"
    with tarfile.open(fileobj=io.BytesIO(raw)) as tf:
        assert [m.name for m in tf.getmembers()] == ["00000001.msgpack", "deep/" * 25 + "x.msgpack"]
        assert all(m.pax_headers == {} for m in tf.getmembers())


def test_writer_falls_back_to_pax_for_unsplittable_names() -> None:
    name = "n" * 250 + ".msgpack"
    buf = io.BytesIO()
    with TarShardWriter(buf) as w:
        w.add(name, b"payload")
    raw = buf.getvalue()
    assert _read(raw, 4096) == [(name, b"payload")]
    with tarfile.open(fileobj=io.BytesIO(raw)) as tf:
        (m,) = tf.getmembers()
        assert m.name == name and tf.extractfile(m).read() == b"payload"  # type: ignore[union-attr]


def test_webdataset_reads_our_shards(tmp_path) -> None:
    path = tmp_path / "s-000000.tar"
    with open(path, "wb") as f, TarShardWriter(f) as w:
        for i in range(5):
            w.add(f"{i:08d}.msgpack", bytes([i]) * (i * 300))
            w.add(f"{i:08d}.cls", str(i).encode())
    got = list(wds.WebDataset(str(path), shardshuffle=False))
    assert [s["__key__"] for s in got] == [f"{i:08d}" for i in range(5)]
    assert [s["msgpack"] for s in got] == [bytes([i]) * (i * 300) for i in range(5)]
    assert [s["cls"] for s in got] == [str(i).encode() for i in range(5)]


def test_member_data_is_64_byte_aligned() -> None:
    data, _ = _tarfile_archive([(f"m{i}.bin", 100 * i + 1) for i in range(40)], tarfile.PAX_FORMAT)
    for _, view in TarReader(io.BytesIO(data), "mem.tar", chunk=8192):
        addr = np.frombuffer(view, dtype=np.uint8).ctypes.data if len(view) else 0
        assert addr % 64 == 0


def test_views_stay_valid_after_later_chunks_are_read() -> None:
    data, expected = _tarfile_archive(
        [(f"m{i}.bin", 3000) for i in range(30)], tarfile.USTAR_FORMAT
    )
    views = list(TarReader(io.BytesIO(data), "mem.tar", chunk=4096))
    assert [(n, bytes(v)) for n, v in views] == expected


def test_truncated_member_names_shard_and_member() -> None:
    data, _ = _tarfile_archive([("a.msgpack", 100), ("b.msgpack", 5000)], tarfile.USTAR_FORMAT)
    cut = data[: BLOCK * 2 + BLOCK + 2000]
    with pytest.raises(DecodeError) as err:
        _read(cut, 1 << 20)
    assert err.value.shard == "mem.tar"
    assert "truncated" in str(err.value) and "b.msgpack" in str(err.value)


def test_truncated_header_is_an_error() -> None:
    data, _ = _tarfile_archive([("a.msgpack", 100), ("b.msgpack", 100)], tarfile.USTAR_FORMAT)
    with pytest.raises(DecodeError, match="truncated"):
        _read(data[: BLOCK * 2 + 300], 1 << 20)


def test_corrupt_header_is_an_error() -> None:
    data, _ = _tarfile_archive([("a.msgpack", 100), ("b.msgpack", 100)], tarfile.USTAR_FORMAT)
    bad = bytearray(data)
    bad[BLOCK * 2 + 10] ^= 0xFF  # inside the second header's name
    with pytest.raises(DecodeError, match="checksum") as err:
        _read(bytes(bad), 1 << 20)
    assert err.value.shard == "mem.tar"


def test_archive_cut_at_a_member_boundary_is_an_error_unless_allowed(caplog) -> None:
    data, expected = _tarfile_archive([("a.x", 10), ("b.x", 600)], tarfile.USTAR_FORMAT)
    body = data[: 4 * BLOCK + BLOCK]  # headers + data, no zero blocks
    for chunk in (1024, 1 << 20):
        with pytest.raises(DecodeError, match="no end-of-archive blocks") as err:
            _read(body, chunk)
        assert err.value.shard == "mem.tar"
        reader = TarReader(io.BytesIO(body), "mem.tar", chunk=chunk, allow_truncated=True)
        with caplog.at_level(logging.DEBUG, logger="atdata._tar"):
            assert [(n, bytes(d)) for n, d in reader] == expected
    assert "no end-of-archive" in caplog.text


def test_reader_consumes_the_whole_stream() -> None:
    data, _ = _tarfile_archive([("a.x", 10)], tarfile.USTAR_FORMAT)  # padded to 10240 bytes
    stream = io.BytesIO(data)
    list(TarReader(stream, "mem.tar", chunk=1024))
    assert stream.tell() == len(data)


def test_non_regular_members_are_skipped() -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        d = tarfile.TarInfo("dir")
        d.type = tarfile.DIRTYPE
        tf.addfile(d)
        link = tarfile.TarInfo("dir/link.txt")
        link.type = tarfile.SYMTYPE
        link.linkname = "x" * 150  # GNU long link name ('K')
        tf.addfile(link)
        f = tarfile.TarInfo("dir/k.msgpack")
        f.size = 3
        tf.addfile(f, io.BytesIO(b"abc"))
    assert _read(buf.getvalue(), 4096) == [("dir/k.msgpack", b"abc")]


@given(name=_names)
def test_split_key_matches_webdataset(name: str) -> None:
    from webdataset.tariterators import base_plus_ext

    name = name + ".ext.more"
    assert split_key(name) == base_plus_ext(name)


def test_iter_samples_groups_consecutive_members_by_key() -> None:
    buf = io.BytesIO()
    with TarShardWriter(buf) as w:
        w.add("a/s1.msgpack", b"1")
        w.add("a/s1.image.npy", b"2")
        w.add("a/s2.msgpack", b"3")
        w.add("s.2.msgpack", b"4")
        w.add("README", b"no extension")
    buf.seek(0)
    got = [
        {k: (bytes(v) if k != "__key__" else v) for k, v in s.items()}
        for s in iter_samples(buf, "m")
    ]
    assert got == [
        {"__key__": "a/s1", "msgpack": b"1", "image.npy": b"2"},
        {"__key__": "a/s2", "msgpack": b"3"},
        {"__key__": "s", "2.msgpack": b"4"},
    ]


def test_duplicate_member_in_a_sample_is_an_error() -> None:
    buf = io.BytesIO()
    with TarShardWriter(buf) as w:
        w.add("k.msgpack", b"1")
        w.add("k.msgpack", b"2")
    buf.seek(0)
    with pytest.raises(DecodeError, match="duplicate") as err:
        list(iter_samples(buf, "m.tar"))
    assert err.value.key == "k" and err.value.shard == "m.tar"


def test_global_pax_header_and_base256_size() -> None:
    buf = io.BytesIO()
    with tarfile.open(
        fileobj=buf, mode="w", format=tarfile.PAX_FORMAT, pax_headers={"comment": "hi"}
    ) as tf:
        info = tarfile.TarInfo("g.msgpack")
        info.size = 5
        tf.addfile(info, io.BytesIO(b"hello"))
    assert _read(buf.getvalue(), 1024) == [("g.msgpack", b"hello")]
    # A base-256 size field (GNU), built by hand.
    hdr = bytearray(tarfile.TarInfo("b.bin").tobuf(tarfile.GNU_FORMAT))
    hdr[124:136] = b"\x80" + (7).to_bytes(11, "big")
    hdr[148:156] = b"        "
    hdr[148:156] = b"%06o\0 " % sum(hdr)
    raw = bytes(hdr) + b"seven!!" + bytes(BLOCK - 7) + bytes(2 * BLOCK)
    assert _read(raw, 1024) == [("b.bin", b"seven!!")]


def test_mapped_local_file_views_survive_page_release(tmp_path) -> None:
    """Local files are mmapped and pages behind the cursor released; held views stay right."""
    rng = np.random.default_rng(3)
    blobs = [rng.integers(0, 256, 700_001, dtype=np.uint8).tobytes() for _ in range(50)]
    path = tmp_path / "big.tar"
    with open(path, "wb") as f, TarShardWriter(f) as w:
        for i, blob in enumerate(blobs):
            w.add(f"{i:04d}.bin", blob)
    assert path.stat().st_size > 2 * (16 << 20)  # crosses the release window twice
    with open(path, "rb", buffering=0) as f:
        views = list(TarReader(f, str(path)))
    assert [bytes(v) for _, v in views] == blobs
    assert all(np.frombuffer(v, np.uint8).ctypes.data % 64 == 0 for _, v in views)
    with open(path, "rb") as f:  # a buffered stream takes the chunked path
        assert [bytes(v) for _, v in TarReader(f, str(path), chunk=1 << 20)] == blobs


def test_recycled_chunks_never_overwrite_held_views() -> None:
    first, expected = _tarfile_archive(
        [(f"a{i}.bin", 3000) for i in range(20)], tarfile.USTAR_FORMAT
    )
    held = [v for _, v in TarReader(io.BytesIO(first), "a.tar", chunk=4096)]
    for seed in range(3):  # more reads that recycle every chunk they can
        other, _ = _tarfile_archive(
            [(f"b{i}.bin", 3000) for i in range(20)], tarfile.USTAR_FORMAT, seed + 1
        )
        for _, v in TarReader(io.BytesIO(other), "b.tar", chunk=4096):
            bytes(v)
    assert [bytes(v) for v in held] == [data for _, data in expected]


def test_mmap_can_be_turned_off(tmp_path, monkeypatch) -> None:
    from atdata import _tar

    path = tmp_path / "a.tar"
    with open(path, "wb") as f, TarShardWriter(f) as w:
        w.add("k.bin", b"x" * 1000)
    with open(path, "rb", buffering=0) as f:
        assert _tar._map_file(f)[0] is not None
        monkeypatch.setenv("ATDATA_MMAP", "0")
        assert _tar._map_file(f) == (None, None)
        assert [(n, bytes(d)) for n, d in TarReader(f, "a")] == [("k.bin", b"x" * 1000)]


# -- hostile archives ---------------------------------------------------------------------------


@pytest.mark.timeout(30)
@pytest.mark.parametrize("typeflag", [b"5", b"Z"])
def test_backwards_pax_size_is_an_error_not_a_loop(typeflag: bytes, caplog) -> None:
    """size=-1536 in a pax header in front of a directory (or unknown) member used to send the
    next header back to the pax header, forever."""
    shard = hostile.backwards_pax_size(typeflag)
    assert len(shard) == 3584
    for chunk in (1024, 1 << 20):
        with (
            caplog.at_level(logging.WARNING, logger="atdata._tar"),
            pytest.raises(DecodeError, match="-1536") as err,
        ):
            list(iter_samples(io.BytesIO(shard), "loop.tar", chunk=chunk))
        assert err.value.shard == "loop.tar" and "'d/'" in str(err.value)
    assert len(caplog.records) <= 2


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "field",
    [b"-0000003000\0", b"\xff" * 12, b"\x80" + (1 << 80).to_bytes(11, "big"), b"12x\0" + bytes(8)],
)
def test_bad_size_fields_name_the_member(field: bytes) -> None:
    with pytest.raises(DecodeError, match="size") as err:
        list(iter_samples(io.BytesIO(hostile.header_size(field)), "s.tar"))
    assert err.value.shard == "s.tar" and "'b.msgpack'" in str(err.value)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("value", ["-1", "+512", " 512", "5_12", "12abc", "", "9" * 40, "1" * 5000])
def test_pax_sizes_must_be_plain_decimal_numbers(value: str) -> None:
    for chunk in (1024, 1 << 20):
        with pytest.raises(DecodeError, match="pax header") as err:
            list(iter_samples(io.BytesIO(hostile.pax_size(value)), "p.tar", chunk=chunk))
        assert err.value.shard == "p.tar" and "'b.msgpack'" in str(err.value)


@pytest.mark.timeout(30)
def test_huge_size_claims_are_errors_without_allocating(tmp_path) -> None:
    shards = [
        hostile.pax_size(str(1 << 61)),
        hostile.huge_extended_header(b"x"),
        hostile.huge_extended_header(b"L"),
    ]
    for i, shard in enumerate(shards):
        path = tmp_path / f"{i}.tar"
        path.write_bytes(shard)
        with open(path, "rb", buffering=0) as f, pytest.raises(DecodeError):  # mapped
            list(iter_samples(f, str(path)))
        for chunk in (1024, 1 << 20):
            with pytest.raises(DecodeError):
                list(iter_samples(io.BytesIO(shard), "h.tar", chunk=chunk))


def test_a_flood_of_unknown_members_logs_once(caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="atdata._tar"):
        got = list(iter_samples(io.BytesIO(hostile.unknown_type_flood(500)), "u.tar"))
    assert [s["__key__"] for s in got] == ["a", "b"]
    assert len(caplog.records) == 2  # the first one, then the count
    assert "500" in caplog.records[-1].getMessage()


@settings(max_examples=150, deadline=None)
@given(
    edits=st.lists(
        st.tuples(st.integers(min_value=0, max_value=5 * BLOCK), st.integers(0, 255)),
        min_size=1,
        max_size=6,
    ),
    cut=st.one_of(st.none(), st.integers(min_value=0, max_value=5 * BLOCK)),
    chunk=st.sampled_from([512, 1024, 1 << 20]),
)
def test_damaged_archives_end_with_samples_or_a_decode_error(edits, cut, chunk) -> None:
    """Any byte changed (checksums fixed up, so headers are believed) and any cut: the reader
    ends, with samples or a DecodeError, never another exception."""
    raw = bytearray(
        hostile.sample("a") + hostile.pax(hostile.pax_record("path", "b.msgpack"))
    ) + bytearray(hostile.header(b"x", 3) + hostile.padded(b"abc") + hostile.END)
    for offset, value in edits:
        raw[offset] = value
        block = offset - offset % BLOCK
        hdr = raw[block : block + BLOCK]
        if hdr[257:263] == b"ustar\0":  # a header: make its checksum right again
            hdr[148:156] = b" " * 8
            raw[block + 148 : block + 156] = b"%06o\0 " % sum(hdr)
    data = bytes(raw if cut is None else raw[:cut])
    try:
        for _ in iter_samples(io.BytesIO(data), "d.tar", chunk=chunk):
            pass
    except DecodeError as exc:
        assert exc.shard == "d.tar"


@settings(max_examples=60, deadline=None)
@given(name=st.one_of(_names, st.text(min_size=1, max_size=300)), size=st.integers(0, 70_000))
def test_member_bytes_is_what_the_writer_writes(name: str, size: int) -> None:
    from atdata._tar import member_bytes

    w = TarShardWriter(io.BytesIO())
    w.add(name, bytes(size))
    assert w.bytes_written == member_bytes(name, size)
