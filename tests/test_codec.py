"""The NDArray wire format and message layer (atdata._codec): unit and property tests."""

from __future__ import annotations

import contextlib
import io
import struct

import msgpack
import numpy as np
import pytest
from atdata import DecodeError, SampleValueError
from atdata._codec import (
    ALIGN_MIN_BYTES,
    SCAN_MIN_BYTES,
    decode_array,
    encode_array,
    pack,
    pack_sample,
    unpack_message,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

NUMERIC_KINDS = ["b1", "i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8", "f2", "f4", "f8"]
NUMERIC_KINDS += ["c8", "c16"]
DTYPES = [np.dtype(o + k) for k in NUMERIC_KINDS for o in ("<", ">")]


def reference_encoding(arr: np.ndarray) -> bytes:
    """The format spelled out field by field, independently of the implementation."""
    ds = arr.dtype.str.encode()
    shape = struct.pack(f"<{arr.ndim}q", *arr.shape)
    return bytes([len(ds)]) + ds + bytes([arr.ndim]) + shape + arr.tobytes(order="C")


def same_array(a: np.ndarray, b: np.ndarray) -> bool:
    """Bitwise equality (NaN payloads included) with dtype (byte order too) and shape."""
    return (
        a.dtype == b.dtype
        and a.dtype.str == b.dtype.str
        and a.shape == b.shape
        and (a.tobytes() == b.tobytes())
    )


def test_layout_matches_the_spec() -> None:
    arr = np.arange(6, dtype=">i4").reshape(2, 3)
    b = encode_array(arr)
    assert b[0] == 3 and b[1:4] == b">i4" and b[4] == 2
    assert struct.unpack_from("<2q", b, 5) == (2, 3)
    assert b[21:] == arr.tobytes()
    assert b == reference_encoding(arr)


@pytest.mark.parametrize("dt", DTYPES, ids=lambda d: d.str)
def test_every_dtype_both_orders(dt: np.dtype) -> None:
    arr = (np.arange(24) % 7).astype(dt).reshape(2, 3, 4)
    b = encode_array(arr)
    assert b == reference_encoding(arr)
    out = decode_array(b)
    assert same_array(out, arr)


def test_zero_d_and_empty() -> None:
    for arr in (np.array(3.5, dtype="<f8"), np.zeros((0,), "u1"), np.zeros((3, 0, 2), ">i2")):
        out = decode_array(encode_array(arr))
        assert same_array(out, arr)


def test_non_contiguous_inputs_encode_in_c_order() -> None:
    base = np.arange(60, dtype="<f4").reshape(3, 4, 5)
    for view in (base[:, ::2], base.T, base[::-1, 1:3, ::2], np.asfortranarray(base)):
        assert encode_array(view) == reference_encoding(view.copy(order="C"))
        assert same_array(decode_array(encode_array(view)), view.copy(order="C"))


def test_views_when_aligned_copies_otherwise_or_when_writable() -> None:
    arr = np.arange(16, dtype="<f4")
    hdr = reference_encoding(arr)[: 2 + 3 + 8]  # data at offset 13: unaligned for f4
    pad = b"\x00" * 3
    buf = bytearray(pad + hdr + arr.tobytes())
    aligned = memoryview(bytes(buf))[3:]  # data offset 13 + 3 = 16 from a 16-aligned start
    out = decode_array(aligned)
    assert not out.flags.owndata and not out.flags.writeable
    unaligned = bytes(hdr + arr.tobytes())
    out2 = decode_array(unaligned)
    assert out2.flags.aligned and out2.flags.owndata
    out3 = decode_array(aligned, writable=True)
    assert out3.flags.writeable and out3.flags.owndata
    out3[0] = 99
    assert out[0] == 0


def test_npy_bytes_are_read() -> None:
    arr = np.arange(12, dtype=">f8").reshape(3, 4)
    bio = io.BytesIO()
    np.save(bio, arr)
    assert same_array(decode_array(bio.getvalue()), arr)


@pytest.mark.parametrize(
    "bad",
    [
        b"",
        b"\x03",
        b"\x03<f4",
        b"\x03<f4\x01",  # shape missing
        reference_encoding(np.arange(3, dtype="<f4"))[:-1],  # truncated payload
        reference_encoding(np.arange(3, dtype="<f4")) + b"\x00",  # trailing bytes
        b"\x02|O\x01" + struct.pack("<q", 1) + b"\x00" * 8,  # object dtype
        b"\x03zz9\x00",  # not a dtype
        b"\x03<f4\x01" + struct.pack("<q", -1),  # negative dim
        b"\x93NUMPY garbage",
    ],
)
def test_corrupt_arrays_raise_decode_error(bad: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_array(bad)


def test_object_arrays_are_refused() -> None:
    with pytest.raises(SampleValueError):
        encode_array(np.array([object()], dtype=object))


def test_pack_sample_aligns_large_arrays_and_stays_plain_msgpack() -> None:
    img = np.random.default_rng(0).random((64, 64, 3)).astype("<f4")
    assert img.nbytes >= ALIGN_MIN_BYTES
    for fields in (
        {"image": img, "label": "cat", "confidence": 0.5},
        {"a": 1, "image": img.astype(">f8"), "b": None},
        {"k" * 40: img},
    ):
        msg = pack_sample(fields)
        assert len(msg) >= SCAN_MIN_BYTES
        plain = msgpack.unpackb(msg, raw=False)  # any msgpack decoder reads it
        assert list(plain) == list(fields)
        got = unpack_message(msg)
        for k, v in fields.items():
            if isinstance(v, np.ndarray):
                out = decode_array(got[k])
                assert same_array(out, v)
                assert not out.flags.owndata, "aligned array should be a view"
                assert same_array(decode_array(plain[k]), v)
            else:
                assert got[k] == v == plain[k]


def test_small_samples_use_minimal_msgpack() -> None:
    fields = {"image": np.zeros((4, 4), "<f4"), "label": 3}
    msg = pack_sample(fields)
    assert msg == msgpack.packb({"image": reference_encoding(fields["image"]), "label": 3})


def test_unpack_message_errors() -> None:
    with pytest.raises(DecodeError):
        unpack_message(b"\xc1")
    with pytest.raises(DecodeError):
        unpack_message(msgpack.packb([1, 2]))
    big = msgpack.packb({"a": b"x" * SCAN_MIN_BYTES})
    with pytest.raises(DecodeError):
        unpack_message(big[:-5])
    with pytest.raises(DecodeError):
        unpack_message(big + b"\x00")


def test_pack_handles_numpy_values() -> None:
    msg = pack({"a": np.float32(1.5), "b": np.arange(3, dtype="u1"), "c": [np.int64(2)]})
    d = msgpack.unpackb(msg)
    assert d["a"] == 1.5 and d["c"] == [2]
    assert same_array(decode_array(d["b"]), np.arange(3, dtype="u1"))


# --- properties ---------------------------------------------------------------------------

dtypes = st.sampled_from(DTYPES)
shapes = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5)


@st.composite
def arrays(draw: st.DrawFn) -> np.ndarray:
    dt = draw(dtypes)
    arr = draw(hnp.arrays(dt, draw(shapes), elements=hnp.from_dtype(dt, allow_nan=True)))
    if arr.ndim and draw(st.booleans()):  # a strided, non-contiguous view
        arr = arr[tuple(slice(None, None, draw(st.sampled_from([1, 2, -1]))) for _ in arr.shape)]
    return arr


@settings(max_examples=300, deadline=None)
@given(arrays())
def test_roundtrip_bitwise(arr: np.ndarray) -> None:
    b = encode_array(arr)
    assert b == reference_encoding(arr.copy(order="C"))
    for buf in (b, memoryview(b), bytearray(b)):
        assert same_array(decode_array(buf), arr.copy(order="C"))
    assert decode_array(b, writable=True).flags.writeable


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=64).map(lambda b: bytes([len(b) % 5]) + b))
def test_garbage_never_crashes_differently(buf: bytes) -> None:
    try:
        out = decode_array(buf)
    except DecodeError:
        return
    assert isinstance(out, np.ndarray)


nan_payloads = st.integers(min_value=0x7FF0000000000001, max_value=0x7FFFFFFFFFFFFFFF)


@given(st.lists(nan_payloads, min_size=1, max_size=8), st.sampled_from(["<", ">"]))
def test_nan_payloads_survive(bits: list[int], order: str) -> None:
    arr = np.array(bits, dtype="<u8").view("<f8").astype(order + "f8")
    assert np.isnan(arr).all()
    out = decode_array(encode_array(arr))
    assert out.tobytes() == arr.tobytes()


extreme_ints = st.sampled_from(
    [("i8", -(2**63)), ("i8", 2**63 - 1), ("u8", 2**64 - 1), ("u8", 0), ("i1", -128)]
)


@given(extreme_ints, st.sampled_from(["<", ">"]))
def test_extreme_ints(case: tuple[str, int], order: str) -> None:
    kind, value = case
    arr = np.array([value, 0, value], dtype=order + kind)
    out = decode_array(encode_array(arr))
    assert out.tolist() == [value, 0, value] and out.dtype.str == arr.dtype.str


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=40),
    st.binary(max_size=40),
)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(st.text(min_size=1, max_size=40), st.one_of(scalars, arrays()), max_size=6),
    st.integers(min_value=0, max_value=2),
)
def test_messages_roundtrip_through_both_parsers(fields: dict, big: int) -> None:
    """Large flat messages go through the zero-copy scanner, small ones through msgpack."""
    if big:
        fields = {**fields, "zz_big": np.arange(SCAN_MIN_BYTES // 4, dtype="<f4")[::big]}
    msg = pack_sample(fields)
    got = unpack_message(msg)
    assert list(got) == list(fields)
    for k, v in fields.items():
        if isinstance(v, np.ndarray):
            assert same_array(decode_array(got[k]), v.copy(order="C"))
        elif isinstance(v, bytes):
            assert bytes(got[k]) == v
        else:
            assert got[k] == v and type(got[k]) is type(v)


_BIG_MESSAGE = pack_sample(
    {"image": np.arange(SCAN_MIN_BYTES // 4, dtype="<f4"), "label": "cat", "n": -3, "x": 0.5}
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, len(_BIG_MESSAGE) - 1), st.integers(0, 255)),
        min_size=1,
        max_size=4,
    ),
    st.integers(0, len(_BIG_MESSAGE)),
)
def test_corrupt_large_messages_fail_cleanly(flips: list[tuple[int, int]], cut: int) -> None:
    """Byte flips and truncation: a DecodeError or some map, never another exception."""
    buf = bytearray(_BIG_MESSAGE)
    for pos, value in flips:
        buf[pos] = value
    for candidate in (bytes(buf), bytes(buf[:cut])):
        try:
            got = unpack_message(candidate)
        except DecodeError:
            continue
        assert isinstance(got, dict)
        for v in got.values():
            if isinstance(v, memoryview | bytes):
                with contextlib.suppress(DecodeError):
                    decode_array(v)


_HOSTILE_SHAPES = [
    (-1, -1),
    (-2, -2),
    (2**62, 2**62, 0),
    (-1,),
    (0, -1),
    (2**62, 4),
    (2**31, 2**33),
]


def _array_bytes(shape: tuple[int, ...], payload: int) -> bytes:
    return (
        b"\x03<f4" + bytes([len(shape)]) + struct.pack(f"<{len(shape)}q", *shape) + bytes(payload)
    )


@pytest.mark.parametrize("shape", _HOSTILE_SHAPES)
@pytest.mark.parametrize("payload", [0, 4, 16])
def test_bad_header_shapes_are_the_same_decode_error_typed_or_not(shape, payload) -> None:
    """DictSample.array() used to raise numpy's ValueError for shapes like (-1, -1)."""
    import atdata
    from numpy.typing import NDArray

    @atdata.packable
    class Holder:
        image: NDArray

    buf = _array_bytes(shape, payload)
    message = msgpack.packb({"image": buf})
    with pytest.raises(DecodeError) as typed:
        Holder.from_bytes(message)
    with pytest.raises(DecodeError) as schema_free:
        atdata.DictSample.from_bytes(message).array("image")
    assert schema_free.value.field == typed.value.field == "image"
    assert schema_free.value.reason == typed.value.reason


@settings(max_examples=150, deadline=None)
@given(
    shape=st.lists(
        st.one_of(st.integers(-3, 4), st.integers(-(2**63), 2**63 - 1)), min_size=0, max_size=4
    ),
    payload=st.integers(0, 64),
)
def test_any_header_shape_decodes_to_that_shape_or_a_decode_error(shape, payload) -> None:
    buf = _array_bytes(tuple(shape), payload)
    try:
        arr = decode_array(buf)
    except DecodeError:
        return
    assert arr.shape == tuple(shape)


def test_writable_none_keeps_unaligned_arrays_as_views() -> None:
    arr = np.arange(12, dtype="<f4").reshape(3, 4)
    raw = bytearray(1) + bytearray(reference_encoding(arr))  # payload now at an odd address
    buf = memoryview(raw)[1:]
    for _ in range(2):  # first sight of the header, then the cached fast path
        copied, viewed = decode_array(buf), decode_array(buf, writable=None)
        assert copied.flags.aligned and copied.flags.owndata
        assert not viewed.flags.aligned and not viewed.flags.owndata
        assert same_array(viewed, arr) and same_array(copied, arr)
