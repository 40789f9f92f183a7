"""@atdata.packable sample classes and DictSample: construction, wire format, decoding."""

from __future__ import annotations

import contextlib
import dataclasses
import struct
from typing import Annotated, Any, Optional

import atdata
import msgpack
import numpy as np
import pytest
from atdata import DecodeError, FieldKind, FieldTypeError, SampleValueError, Shape
from atdata._codec import SCAN_MIN_BYTES, encode_array
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from numpy.typing import NDArray


@atdata.packable
class ImageSample:
    """The quickstart's sample type."""

    image: NDArray
    label: str
    confidence: float


@atdata.packable
class Point:
    x: int
    y: NDArray[np.float32] | None = None


@atdata.packable(name="everything", version="2.1.0")
class Everything:
    image: Annotated[NDArray[np.float32], Shape(None, 3)]
    label: str
    score: float
    flag: bool
    raw: bytes
    count: int
    maybe: Optional[NDArray] = None  # noqa: UP045 - typing.Optional must work too
    maybe_text: str | None = None
    frames: list[NDArray] = dataclasses.field(default_factory=list)
    tags: list[str] = dataclasses.field(default_factory=list)
    counts: dict[str, int] = dataclasses.field(default_factory=dict)
    loose: dict = dataclasses.field(default_factory=dict)
    items: list = dataclasses.field(default_factory=list)
    extra: Any = None
    point: Point | None = None
    points: list[Point] = dataclasses.field(default_factory=list)


def make_everything() -> Everything:
    return Everything(
        image=np.arange(12, dtype="<f4").reshape(4, 3),
        label="cat",
        score=0.25,
        flag=True,
        raw=b"\x00\xff",
        count=2**64 - 1,
        maybe=np.array([1, 2], dtype=">i4"),
        frames=[np.zeros((2, 2), "u1"), np.ones(3, "<f8")],
        tags=["a", "b"],
        counts={"a": -(2**63)},
        loose={"k": [1, "x", None]},
        items=[1, 2.5, "s", b"b"],
        extra={"nested": [True]},
        point=Point(3, np.ones(2, np.float32)),
        points=[Point(1), Point(2, np.zeros(1, np.float32))],
    )


def assert_same(a: Any, b: Any) -> None:
    """Deep equality; arrays compared by dtype, shape and bytes."""
    if isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray)
        assert (a.dtype.str, a.shape, a.tobytes()) == (b.dtype.str, b.shape, b.tobytes())
    elif atdata.is_packable(a):
        assert type(a) is type(b)
        for f in dataclasses.fields(a):
            assert_same(getattr(a, f.name), getattr(b, f.name))
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same(x, y)
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b)
        for k in a:
            assert_same(a[k], b[k])
    else:
        assert type(a) is type(b) and a == b


def test_quickstart_round_trip() -> None:
    sample = ImageSample(
        image=np.random.rand(224, 224, 3).astype(np.float32), label="cat", confidence=0.95
    )
    restored = ImageSample.from_bytes(sample.packed)
    assert np.allclose(sample.image, restored.image)
    assert_same(sample, restored)
    wds = sample.as_wds
    assert set(wds) == {"__key__", "msgpack"} and wds["msgpack"] == sample.packed
    assert wds["__key__"] != sample.as_wds["__key__"]
    assert "." not in wds["__key__"]


def test_every_field_kind_round_trips() -> None:
    s = make_everything()
    assert_same(s, Everything.from_bytes(s.packed))
    assert_same(s, Everything.from_bytes(memoryview(s.packed)))
    assert_same(s, Everything.from_bytes(bytearray(s.packed)))


def test_wire_is_a_map_in_declaration_order_with_every_field() -> None:
    s = Point(5)
    d = msgpack.unpackb(s.packed, raw=False)
    assert list(d) == ["x", "y"] and d == {"x": 5, "y": None}
    s2 = ImageSample(np.arange(3, dtype=">i2"), "x", 1.0)
    d2 = msgpack.unpackb(s2.packed, raw=False)
    assert list(d2) == ["image", "label", "confidence"]
    ds = b">i2"
    assert d2["image"] == bytes([3]) + ds + b"\x01" + struct.pack("<q", 3) + s2.image.tobytes()
    e = make_everything()
    de = msgpack.unpackb(e.packed, raw=False)
    assert list(de) == [f.name for f in dataclasses.fields(Everything)]
    assert de["point"] == {"x": 3, "y": encode_array(np.ones(2, np.float32))}
    assert de["frames"][0] == encode_array(np.zeros((2, 2), "u1"))


def test_class_attributes_and_field_specs() -> None:
    assert Everything.__atdata_name__ == "everything"
    assert Everything.__atdata_version__ == "2.1.0"
    assert ImageSample.__atdata_name__ == "ImageSample"
    assert ImageSample.__atdata_version__ == "1.0.0"
    assert atdata.is_packable(Everything) and atdata.is_packable(make_everything())
    assert atdata.packable.is_packable(Point) and not atdata.is_packable(int)
    specs = {s.name: s for s in atdata.sample_fields(Everything)}
    img = specs["image"]
    assert img.kind is FieldKind.ARRAY and img.is_array
    assert img.dtype == np.dtype(np.float32) and img.shape == (None, 3)
    assert specs["maybe"].optional and specs["maybe"].is_array and specs["maybe"].dtype is None
    assert specs["frames"].kind is FieldKind.LIST and specs["frames"].item.is_array
    assert specs["counts"].item.kind is FieldKind.INT
    assert specs["loose"].item is None and specs["extra"].kind is FieldKind.ANY
    assert specs["point"].sample_type is Point and specs["point"].optional
    assert specs["points"].item.sample_type is Point
    assert atdata.packable.sample_fields(Point)[0].kind is FieldKind.INT


def test_declared_dtype_and_shape_are_enforced() -> None:
    good = make_everything()
    kw = {f.name: getattr(good, f.name) for f in dataclasses.fields(good)}
    for bad in (np.zeros((4, 3)), np.zeros((4, 2), np.float32), np.zeros(3, np.float32)):
        with pytest.raises(SampleValueError, match="image"):
            Everything(**{**kw, "image": bad})
    # A big-endian float32 is still a float32.
    ok = Everything(**{**kw, "image": np.zeros((1, 3), ">f4")})
    assert Everything.from_bytes(ok.packed).image.dtype.str == ">f4"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("label", 3),
        ("score", "x"),
        ("score", True),
        ("flag", 1),
        ("raw", "text"),
        ("count", 2**64),
        ("count", -(2**63) - 1),
        ("count", True),
        ("count", 1.5),
        ("label", None),
        ("image", [1.0, 2.0, 3.0]),
        ("tags", ["a", 1]),
        ("counts", {1: 2}),
        ("point", "p"),
        ("maybe", np.array([object()], dtype=object)),
    ],
)
def test_bad_values_are_refused_at_construction(field: str, value: Any) -> None:
    good = make_everything()
    kw = {f.name: getattr(good, f.name) for f in dataclasses.fields(good)}
    with pytest.raises(SampleValueError, match=field):
        Everything(**{**kw, field: value})


def test_friendly_inputs_are_coerced() -> None:
    s = ImageSample(np.zeros(2, "u1"), np.str_("x"), np.float32(0.5))
    assert type(s.label) is str and type(s.confidence) is float
    p = Point(np.int64(3))
    assert type(p.x) is int
    assert ImageSample(np.zeros(1), "x", 2).confidence == 2.0
    # Wire bytes are accepted for arrays (as atdata 0.7 does when building from data).
    wire = ImageSample(encode_array(np.arange(3, dtype="<i8")), "x", 1.0)
    assert wire.image.tolist() == [0, 1, 2]


@pytest.mark.parametrize(
    ("ann", "needle"),
    [
        ("tuple[int, int]", "tuple"),
        ("int | str", "union"),
        ("dict[int, str]", "non-str keys"),
        ("Annotated[str, Shape(3)]", "Shape"),
        ("set[int]", "set"),
        ("NoSuchName", "NoSuchName"),
        ("object", "object"),
    ],
)
def test_unsupported_annotations_fail_at_decoration(ann: str, needle: str) -> None:
    ns: dict[str, Any] = {"__annotations__": {"good": "int", "weird": ann}}
    cls = type("Bad", (), ns)
    cls.__module__ = __name__
    with pytest.raises(FieldTypeError, match="weird") as info:
        atdata.packable(cls)
    assert needle in str(info.value)


def test_invalid_version_or_name() -> None:
    with pytest.raises(atdata.AtdataError):
        atdata.packable(version="1.0")(type("V", (), {"__annotations__": {"a": int}}))
    with pytest.raises(atdata.AtdataError):
        atdata.packable(name="bad name!")(type("V", (), {"__annotations__": {"a": int}}))


def test_local_classes_and_postponed_annotations() -> None:
    @atdata.packable
    class Leaf:
        v: NDArray[np.uint8]

    @atdata.packable
    class Tree:
        leaves: list[Leaf]
        best: Leaf | None = None

    t = Tree([Leaf(np.arange(3, dtype=np.uint8))], Leaf(np.zeros(1, np.uint8)))
    assert_same(t, Tree.from_bytes(t.packed))


def test_existing_dataclasses() -> None:
    @dataclasses.dataclass
    class Plain:
        a: int
        b: list[str] = dataclasses.field(default_factory=list)

    P = atdata.packable(Plain)
    assert P is Plain and P(1, ["z"]) == P.from_bytes(P(1, ["z"]).packed)
    with pytest.raises(SampleValueError):
        P("no")

    seen = []

    @atdata.packable
    @dataclasses.dataclass(frozen=True)
    class Frozen:
        arr: NDArray
        n: float

        def __post_init__(self) -> None:
            seen.append(self.n)

    f = Frozen(encode_array(np.arange(2)), 1)  # coerced despite frozen=True
    assert isinstance(f.arr, np.ndarray) and f.n == 1.0 and seen == [1.0]
    g = Frozen.from_bytes(f.packed)
    assert_same(f, g)
    assert seen == [1.0, 1.0]

    @atdata.packable
    class Child(Point):
        z: str = "z"

    c = Child(1, None, "q")
    assert_same(c, Child.from_bytes(c.packed))
    assert [s.name for s in atdata.sample_fields(Child)] == ["x", "y", "z"]


def test_decode_errors_name_the_field() -> None:
    good = msgpack.unpackb(ImageSample(np.zeros(2), "x", 1.0).packed, raw=False)
    cases = {
        "label": {**good, "label": 3},
        "confidence": {**good, "confidence": "high"},
        "image": {**good, "image": b"\x03<f4"},
    }
    for field, d in cases.items():
        with pytest.raises(DecodeError) as info:
            ImageSample.from_bytes(msgpack.packb(d))
        assert info.value.field == field
    missing = dict(good)
    del missing["label"]
    with pytest.raises(DecodeError) as info:
        ImageSample.from_bytes(msgpack.packb(missing))
    assert info.value.field == "label"
    with pytest.raises(DecodeError) as info:
        ImageSample.from_bytes(msgpack.packb({**good, "bogus": 1}))
    assert info.value.field == "bogus"
    with pytest.raises(DecodeError) as info:
        ImageSample.from_bytes(msgpack.packb({**good, "label": None}))
    assert info.value.field == "label"
    with pytest.raises(DecodeError):
        ImageSample.from_bytes(b"\x93\x01\x02\x03")
    with pytest.raises(DecodeError):
        ImageSample.from_bytes(b"")
    # Nested: the path names both levels; declared dtype checked on decode.
    bad_point = msgpack.unpackb(make_everything().packed, raw=False)
    bad_point["point"]["y"] = encode_array(np.zeros(2, "<f8"))
    with pytest.raises(DecodeError) as info:
        Everything.from_bytes(msgpack.packb(bad_point))
    assert info.value.field == "point.y"


def test_missing_fields_with_defaults_decode() -> None:
    p = Point.from_bytes(msgpack.packb({"x": 4}))
    assert p.x == 4 and p.y is None
    e = Everything.from_data(
        {"image": np.zeros((1, 3), np.float32), "label": "l", "score": 1.0}
        | {"flag": False, "raw": b"", "count": 0}
    )
    assert e.tags == [] and e.points == []


def test_writable_arrays() -> None:
    big = ImageSample(np.ones((64, 64, 3), np.float32), "x", 1.0)
    msg = big.packed
    assert len(msg) >= SCAN_MIN_BYTES
    view = ImageSample.from_bytes(msg)
    assert not view.image.flags.writeable and not view.image.flags.owndata
    w = ImageSample.from_bytes(msg, writable=True)
    w.image[0, 0, 0] = 5
    assert view.image[0, 0, 0] == 1
    small = ImageSample.from_bytes(ImageSample(np.ones(3), "x", 1.0).packed, writable=True)
    small.image[0] = 2


def test_from_data_accepts_wire_and_native_values() -> None:
    s = make_everything()
    wire = msgpack.unpackb(s.packed, raw=False)
    assert_same(s, Everything.from_data(wire))
    native = {f.name: getattr(s, f.name) for f in dataclasses.fields(s)}
    assert_same(s, Everything.from_data(native))
    with pytest.raises(DecodeError):
        Everything.from_data([1, 2])  # type: ignore[arg-type]


def test_dict_sample() -> None:
    s = make_everything()
    d = atdata.DictSample.from_bytes(s.packed)
    assert d.keys() == [f.name for f in dataclasses.fields(Everything)]
    assert d.label == d["label"] == "cat" and "label" in d and d.get("nope", 7) == 7
    assert isinstance(d.image, bytes)
    assert_same(d.array("image"), s.image)
    assert_same(atdata.DictSample.from_bytes(d.packed).to_dict(), d.to_dict())
    assert_same(Everything.from_data(d.to_dict()), s)
    with pytest.raises(AttributeError, match="nope"):
        _ = d.nope
    with pytest.raises(DecodeError) as info:
        d.array("label")
    assert info.value.field == "label"
    made = atdata.DictSample(a=1, arr=np.arange(3))
    back = atdata.DictSample.from_bytes(made.as_wds["msgpack"])
    assert back.a == 1 and back.array("arr").tolist() == [0, 1, 2]
    with pytest.raises(DecodeError):
        atdata.DictSample.from_bytes(msgpack.packb([1]))


# --- generated sample classes -------------------------------------------------------------

DTYPES = [np.dtype(o + k) for k in ("b1", "u1", "i2", "u4", "i8", "f2", "f4", "f8") for o in "<>"]

KINDS: dict[str, tuple[Any, st.SearchStrategy[Any]]] = {
    "int": (int, st.integers(min_value=-(2**63), max_value=2**64 - 1)),
    "float": (float, st.floats(allow_nan=False)),
    "bool": (bool, st.booleans()),
    "str": (str, st.text(max_size=20)),
    "bytes": (bytes, st.binary(max_size=20)),
    "array": (
        NDArray,
        st.sampled_from(DTYPES).flatmap(
            lambda dt: hnp.arrays(dt, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0))
        ),
    ),
    "big_array": (
        NDArray[np.float32],
        hnp.arrays(np.float32, st.sampled_from([(64, 64), (70, 33, 2)])),
    ),
    "list_int": (list[int], st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1))),
    "list_array": (list[NDArray], st.lists(hnp.arrays("<i4", st.integers(0, 4)), max_size=3)),
    "dict": (dict[str, float], st.dictionaries(st.text(max_size=5), st.floats(allow_nan=False))),
    "any": (Any, st.one_of(st.none(), st.integers(0, 9), st.lists(st.text(max_size=3)))),
}


@st.composite
def sample_classes(draw: st.DrawFn) -> tuple[type, dict[str, Any]]:
    names = draw(st.lists(st.sampled_from(sorted(KINDS)), min_size=1, max_size=6))
    annotations, values = {}, {}
    for i, kind in enumerate(names):
        ann, strategy = KINDS[kind]
        optional = draw(st.booleans())
        annotations[f"f{i}"] = ann | None if optional else ann
        values[f"f{i}"] = None if optional and draw(st.booleans()) else draw(strategy)
    cls = atdata.packable(type("Generated", (), {"__annotations__": annotations}))
    return cls, values


@settings(max_examples=150, deadline=None)
@given(sample_classes())
def test_generated_classes_round_trip(case: tuple[type, dict[str, Any]]) -> None:
    cls, values = case
    sample = cls(**values)
    back = cls.from_bytes(sample.packed)
    assert_same(sample, back)
    assert_same(sample, cls.from_bytes(sample.packed, writable=True))
    assert list(msgpack.unpackb(sample.packed, raw=False)) == list(values)


_GOOD = make_everything().packed


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, len(_GOOD) - 1), st.integers(0, 255)), min_size=1, max_size=3
    ),
)
def test_corrupt_messages_raise_decode_error_only(flips: list[tuple[int, int]]) -> None:
    buf = bytearray(_GOOD)
    for pos, value in flips:
        buf[pos] = value
    with contextlib.suppress(DecodeError):
        Everything.from_bytes(bytes(buf))


def test_unstorable_loose_values_name_the_field() -> None:
    s = make_everything()
    s.extra = {1, 2}  # a set: msgpack has no such type
    with pytest.raises(SampleValueError, match="extra"):
        _ = s.packed
    s.extra = None
    s.items = [2**64]
    with pytest.raises(SampleValueError, match="items"):
        _ = s.packed


def test_generated_methods_name_their_module() -> None:
    # cloudpickle (Ray, Dask) sends a class from __main__ by value; a function without a
    # module made it search every imported module for each generated method (~4 ms apiece,
    # for every Ray read task)
    @atdata.packable
    class Local:
        image: NDArray
        label: int

    generated = [
        Local.from_bytes.__func__,
        Local.__atdata_encode__,
        Local.__atdata_decode__,
    ]
    assert all(f.__module__ == "atdata.packable" for f in generated)
