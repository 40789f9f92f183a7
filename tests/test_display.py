"""Text for people (CLI and web pages share it): sizes, shapes and schema field types."""

from __future__ import annotations

from atdata.display import dtype_text, human_bytes, shape_text, type_text
from hypothesis import given
from hypothesis import strategies as st


def test_human_bytes() -> None:
    assert human_bytes(0) == "0 B"
    assert human_bytes(999) == "999 B"
    assert human_bytes(1000) == "1.0 KB"
    assert human_bytes(1_234_567) == "1.2 MB"
    assert human_bytes(5 * 10**9) == "5.0 GB"
    assert human_bytes(7 * 10**12) == "7.0 TB"
    assert human_bytes(3 * 10**15) == "3000.0 TB"
    assert human_bytes(None) == human_bytes("12") == "?"


def test_shape_text() -> None:
    assert shape_text([224, 224, 3]) == "(224, 224, 3)"
    assert shape_text([-1, 3]) == shape_text((None, 3)) == "(?, 3)"
    assert shape_text([5]) == "(5,)"
    assert shape_text([]) == "()"
    assert shape_text("(2, ?)") == "(2, ?)"
    assert shape_text(None) == shape_text({"a": 1}) == ""
    assert shape_text([True, "x", 2.0]) == "(?, ?, ?)"


@given(st.lists(st.one_of(st.none(), st.integers(-5, 10**6)), max_size=6))
def test_shape_text_round_trips_known_dims(dims: list[int | None]) -> None:
    text = shape_text(dims)
    inner = text[1:-1].rstrip(",")
    parts = inner.split(", ") if inner else []
    assert parts == ["?" if d is None or d < 0 else str(d) for d in dims]


def test_type_text() -> None:
    assert type_text({"kind": "primitive"}) == "primitive"
    assert type_text({"kind": "ndarray", "dtype": "<f4", "optional": True}) == "NDArray | None"
    nested = {"kind": "list", "item": {"kind": "dict", "item": {"kind": "sample", "sample": "P"}}}
    assert type_text(nested) == "list[dict[str, P]]"
    assert type_text({"kind": "list"}) == "list"
    assert type_text({"kind": "dict", "optional": True}) == "dict | None"
    assert type_text({"kind": "sample"}) == "sample"
    assert type_text({}) == "?"
    assert type_text(None) == type_text(["kind"]) == "?"


def test_dtype_text_names_the_numpy_type_next_to_the_wire_string() -> None:
    assert dtype_text("|u1") == "|u1 (uint8)"
    assert dtype_text("<f4") == "<f4 (float32)"
    assert dtype_text("bool") == "bool"  # numpy's name is the string itself: not repeated
    assert dtype_text("not-a-dtype") == "not-a-dtype"
    assert dtype_text("") == dtype_text(None) == ""
