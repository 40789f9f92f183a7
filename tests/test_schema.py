"""Sample types <-> io.atdata.schema records: schema_of, type_from_schema, schema_matches."""

from __future__ import annotations

import copy
import dataclasses
import json
import pickle
from pathlib import Path
from typing import Annotated, Any

import atdata
import msgpack
import numpy as np
import pytest
from atdata import SchemaError, Shape, schema_of, type_from_schema
from atdata.lexicon import load_lexicons
from atdata.schema import SCHEMA_NSID, schema_differences, schema_matches
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray
from test_packable import Everything, Point, assert_same, make_everything

LEXICON = Path(__file__).resolve().parents[1] / "lexicons" / "io" / "atdata" / "schema.json"


@pytest.fixture(scope="module")
def lexicons() -> Any:
    return load_lexicons()


def content(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != "createdAt"}


def walk(value: Any) -> list[Any]:
    out = [value]
    if isinstance(value, dict):
        for v in value.values():
            out += walk(v)
    elif isinstance(value, list):
        for v in value:
            out += walk(v)
    return out


@atdata.packable(version="0.3.1-rc.1")
class Documented:
    """An image with a caption.

    Used to check that descriptions travel.
    """

    image: Annotated[NDArray[np.uint8], Shape(None, None, 3)]
    scalar: Annotated[NDArray[np.float64], Shape()] | None
    caption: str


def test_schema_of_describes_every_kind(lexicons: Any) -> None:
    rec = schema_of(Everything)
    assert rec["$type"] == SCHEMA_NSID and rec["name"] == "everything"
    assert rec["version"] == "2.1.0" and rec["createdAt"].endswith("Z")
    types = {f["name"]: f["type"] for f in rec["fields"]}
    assert [f["name"] for f in rec["fields"]] == [f.name for f in dataclasses.fields(Everything)]
    assert types["image"] == {"kind": "ndarray", "dtype": "<f4", "shape": [-1, 3]}
    assert types["maybe"] == {"kind": "ndarray", "optional": True}
    assert types["frames"] == {"kind": "list", "item": {"kind": "ndarray"}}
    assert types["counts"] == {"kind": "dict", "item": {"kind": "int"}}
    assert types["loose"] == {"kind": "dict"} and types["items"] == {"kind": "list"}
    assert types["extra"] == {"kind": "any"}
    assert types["point"] == {"kind": "sample", "optional": True, "sample": "Point"}
    assert types["points"] == {"kind": "list", "item": {"kind": "sample", "sample": "Point"}}
    assert rec["types"] == [
        {
            "name": "Point",
            "version": "1.0.0",
            "fields": [
                {"name": "x", "type": {"kind": "int"}},
                {"name": "y", "type": {"kind": "ndarray", "optional": True, "dtype": "<f4"}},
            ],
        }
    ]
    assert not any(isinstance(v, float) for v in walk(rec)), "records cannot hold floats"
    lexicons.validate_record(SCHEMA_NSID, rec)
    doc = schema_of(Documented)
    assert (
        doc["description"] == "An image with a caption.\n\nUsed to check that descriptions travel."
    )
    lexicons.validate_record(SCHEMA_NSID, doc)
    assert {f["name"]: f["type"] for f in doc["fields"]}["scalar"] == {
        "kind": "ndarray",
        "optional": True,
        "dtype": "<f8",
        "shape": [],
    }


@pytest.mark.parametrize("cls", [Everything, Documented, Point])
def test_round_trip_is_exact(cls: type) -> None:
    rec = schema_of(cls)
    gen = type_from_schema(json.loads(json.dumps(rec)))  # as it comes back from a PDS
    assert atdata.is_packable(gen)
    assert content(schema_of(gen)) == content(rec)
    assert gen.__atdata_name__ == rec["name"] and gen.__atdata_version__ == rec["version"]
    for ours, theirs in zip(atdata.sample_fields(cls), atdata.sample_fields(gen), strict=True):
        assert (ours.name, ours.kind, ours.optional, ours.dtype, ours.shape) == (
            theirs.name,
            theirs.kind,
            theirs.optional,
            theirs.dtype,
            theirs.shape,
        )
    assert schema_matches(cls, rec) and schema_matches(gen, rec)
    assert schema_matches(gen, schema_of(cls), check_name=True)


def test_generated_type_reads_and_writes_the_same_bytes() -> None:
    s = make_everything()
    gen = type_from_schema(schema_of(Everything))
    g = gen.from_bytes(s.packed)
    assert g.packed == s.packed
    assert_same(s.image, g.image)
    assert type(g.point).__atdata_name__ == "Point" and g.point.x == 3
    back = Everything.from_bytes(g.packed)
    assert_same(s, back)


def test_schema_matches_detects_differences() -> None:
    rec = schema_of(Everything)
    assert schema_matches(Everything, rec)
    assert not schema_matches(Point, rec)
    assert not schema_matches(Everything, schema_of(Point))
    changes = [
        lambda r: r["fields"].reverse(),
        lambda r: r["fields"][0]["type"].update(dtype="<f8"),
        lambda r: r["fields"][0]["type"].update(shape=[-1, 4]),
        lambda r: r["fields"][1]["type"].update(optional=True),
        lambda r: r["fields"][1].update(name="labels"),
        lambda r: r["fields"].pop(),
        lambda r: r["types"][0]["fields"][0]["type"].update(kind="str"),
    ]
    for change in changes:
        other = copy.deepcopy(rec)
        change(other)
        assert not schema_matches(Everything, other)
    renamed = {**copy.deepcopy(rec), "name": "other", "version": "9.9.9"}
    assert schema_matches(Everything, renamed)
    assert not schema_matches(Everything, renamed, check_name=True)
    # Nested types are compared by structure, not by name.
    nested_renamed = copy.deepcopy(rec)
    nested_renamed["types"][0]["name"] = "Pt"
    for f in nested_renamed["fields"]:
        t = f["type"].get("item", f["type"])
        if t.get("sample") == "Point":
            t["sample"] = "Pt"
    assert schema_matches(Everything, nested_renamed)
    # Malformed records (JSON from anywhere) do not match, and do not raise.
    unhashable = copy.deepcopy(rec)
    unhashable["types"][0]["name"] = ["Point"]
    assert not schema_matches(Everything, unhashable)


def bad(rec: dict[str, Any], path: list[Any], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(rec)
    target = out
    for p in path[:-1]:
        target = target[p]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return out


@pytest.mark.parametrize(
    ("path", "value", "needle"),
    [
        (["fields", 0, "type", "kind"], "tensor", "kind"),
        (["fields", 0, "type", "kind"], ["array"], "kind"),
        (["fields", 14, "type", "sample"], ["Point"], "sample"),
        (["types", 0, "name"], ["Point"], "name"),
        (["fields", 0, "type", "dtype"], "|O", "dtype"),
        (["fields", 0, "type", "dtype"], "nonsense", "dtype"),
        (["fields", 0, "type", "dtype"], ",", "dtype"),
        (["fields", 0, "type", "shape"], [-2], "shape"),
        (["fields", 0, "type", "shape"], [1.5], "shape"),
        (["fields", 1, "type", "dtype"], "<f4", "does not apply"),
        (["fields", 1, "type", "optional"], "yes", "optional"),
        (["fields", 0, "name"], "class", "field name"),
        (["fields", 0, "name"], "__dict__", "field name"),
        (["fields", 1, "name"], "image", "twice"),
        (["fields", 14, "type", "sample"], "Missing", "Missing"),
        (["version"], "1", "version"),
        (["name"], "no spaces", "name"),
        (["fields"], [], "fields"),
        (["types"], KeyError, "Point"),
    ],
)
def test_bad_records_raise_schema_error(path: list[Any], value: Any, needle: str) -> None:
    rec = bad(schema_of(Everything), path, value)
    with pytest.raises(SchemaError, match=needle):
        type_from_schema(rec)


def test_self_containing_nested_types_are_refused() -> None:
    rec = {
        "name": "Loop",
        "version": "1.0.0",
        "fields": [{"name": "a", "type": {"kind": "sample", "sample": "A"}}],
        "types": [
            {
                "name": "A",
                "version": "1.0.0",
                "fields": [{"name": "a", "type": {"kind": "sample", "sample": "A"}}],
            }
        ],
    }
    with pytest.raises(SchemaError, match="contains itself"):
        type_from_schema(rec)


def test_same_name_different_nested_types_is_an_error() -> None:
    @atdata.packable(name="Part")
    class PartA:
        a: int

    @atdata.packable(name="Part")
    class PartB:
        b: str

    @atdata.packable
    class Whole:
        one: PartA
        two: PartB

    with pytest.raises(SchemaError, match="Part"):
        schema_of(Whole)


def test_every_lexicon_string_has_a_max_length() -> None:
    doc = json.loads(LEXICON.read_text())
    strings = [d for d in walk(doc) if isinstance(d, dict) and d.get("type") == "string"]
    assert strings and all("maxLength" in d for d in strings)
    assert doc["defs"]["main"]["key"] == "tid"


# --- generated annotations ----------------------------------------------------------------

DTYPES = [None, np.uint8, np.int16, np.float32, np.float64, np.bool_, np.complex64]
leaf = st.one_of(
    st.sampled_from([str, bytes, int, float, bool, Any, list, dict]),
    st.builds(
        lambda dt, shape: (
            (NDArray if dt is None else NDArray[dt])
            if shape is None
            else Annotated[NDArray if dt is None else NDArray[dt], Shape(*shape)]
        ),
        st.sampled_from(DTYPES),
        st.none() | st.lists(st.none() | st.integers(0, 2**40), max_size=4),
    ),
)


def _wrap(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        children.map(lambda a: list[a]),
        children.map(lambda a: dict[str, a]),
        children.map(lambda a: a | None if a is not Any else a),
    )


annotations = st.recursive(leaf, _wrap, max_leaves=4)


@settings(max_examples=150, deadline=None)
@given(st.lists(annotations, min_size=1, max_size=5), st.booleans())
def test_generated_annotations_round_trip(anns: list[Any], with_nested: bool) -> None:
    lexicons = load_lexicons()
    fields = {f"f{i}": a for i, a in enumerate(anns)}
    if with_nested:
        fields["nested"] = list[Point] | None
    cls = atdata.packable(type("Gen", (), {"__annotations__": fields}))
    rec = schema_of(cls)
    lexicons.validate_record(SCHEMA_NSID, rec)
    gen = type_from_schema(json.loads(json.dumps(rec)))
    assert content(schema_of(gen)) == content(rec)
    assert schema_matches(cls, schema_of(gen))


def test_msgpack_of_generated_type_matches_declared_order() -> None:
    gen = type_from_schema(schema_of(Point))
    assert list(msgpack.unpackb(gen(1, None).packed)) == ["x", "y"]


def test_generated_types_are_cached_and_their_samples_pickle() -> None:
    rec = schema_of(Everything)
    gen = type_from_schema(rec)
    assert type_from_schema(json.loads(json.dumps({**rec, "createdAt": "x"}))) is gen
    g = gen.from_bytes(make_everything().packed)
    back = pickle.loads(pickle.dumps(g))
    assert type(back) is gen
    assert back.packed == g.packed


def test_schema_differences_name_each_field_and_are_empty_exactly_on_a_match() -> None:
    @atdata.packable(name="diff.A")
    class A:
        x: int
        y: float
        tags: list[str]

    @atdata.packable(name="diff.B")
    class B:
        x: str
        tags: list[str]
        z: NDArray[np.float32]

    @atdata.packable(name="diff.C")
    class C:
        y: float
        x: int
        tags: list[str]

    record = schema_of(A)
    assert schema_differences(A, record) == [] and schema_matches(A, record)
    assert schema_differences(B, record) == [
        "field 'x': str here, int in the schema",
        "field 'y' (float) is missing",
        "field 'z' is not in the schema",
    ]
    assert schema_differences(C, record) == [
        "the fields are in another order: schema x, y, tags; here y, x, tags"
    ]
    assert not schema_matches(C, record)
    assert schema_differences(A, {"name": "no fields"}) == ["the schema record lists no fields"]
    assert "not a packable class" in schema_differences(int, record)[0]
