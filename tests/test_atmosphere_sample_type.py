"""`load_dataset(uri, sample_type=...)` on the local network: the class the user asks for is
what comes out, read directly, through a registered lens, or refused naming the fields."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import atdata
import pytest
from _fixtures.services import login
from atdata.atmosphere import load_dataset

pytestmark = pytest.mark.devnet


@atdata.packable(name="sampletype.Point", version="1.0.0")
class Point:
    x: int
    y: float


@atdata.packable(name="sampletype.Renamed", version="2.0.0")
class Renamed:  # another name, the same fields: reads the samples directly
    x: int
    y: float


@atdata.packable(name="sampletype.WrongPoint", version="1.0.0")
class WrongPoint:
    x: str
    z: int


@atdata.packable(name="sampletype.Norm", version="1.0.0")
class Norm:
    l1: float


@atdata.lens
def point_norm(p: Point) -> Norm:
    return Norm(l1=abs(p.x) + abs(p.y))


@pytest.fixture(scope="module")
def points(make_account: Any, tmp_path_factory: pytest.TempPathFactory) -> str:
    account = make_account(0)
    client = login(account)
    out: Path = tmp_path_factory.mktemp("points")
    infos = atdata.write_samples(
        [Point(x=i, y=-i / 2) for i in range(6)], str(out / "p-%04d.tar"), maxcount=4
    )
    return str(client.publish_dataset(infos, name="points", schema=Point, progress=False))


def test_a_matching_class_is_used_as_is(points: str) -> None:
    for cls in (Point, Renamed):
        ds = load_dataset(points, sample_type=cls)
        assert ds.sample_type is cls
        assert [(s.x, s.y) for s in ds.ordered()] == [(i, -i / 2) for i in range(6)]


def test_without_sample_type_a_generated_type_is_used(points: str) -> None:
    ds = load_dataset(points)
    assert ds.sample_type not in (Point, Renamed)
    assert [s.x for s in ds.ordered()] == list(range(6))


def test_a_class_with_a_lens_from_the_schema_gets_the_samples_through_it(points: str) -> None:
    ds = load_dataset(points, sample_type=Norm)
    assert ds.sample_type is Norm
    assert [s.l1 for s in ds.ordered()] == [i * 1.5 for i in range(6)]


def test_a_mismatching_class_is_a_schema_error_naming_the_fields(points: str) -> None:
    with pytest.raises(atdata.SchemaError) as info:
        load_dataset(points, sample_type=WrongPoint)
    message = str(info.value)
    assert "WrongPoint does not match schema" in message and "sampletype.Point@1.0.0" in message
    assert "field 'x': str here, int in the schema" in message
    assert "field 'y' (float) is missing" in message
    assert "field 'z' is not in the schema" in message
