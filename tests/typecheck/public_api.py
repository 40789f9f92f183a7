"""What a user's type checker sees of atdata's public API (checked by `make lint`, never run).

`assert_type` fails the type check when an inferred type changes: a decorated sample class keeps
its checked constructor, datasets carry their sample type through iteration and batching.
"""

from __future__ import annotations

from typing import Any, assert_type

import atdata
import numpy as np
from atdata import Dataset, PackableSample, SampleBatch
from numpy.typing import NDArray


@atdata.packable(name="typing.Point", version="1.0.0")
class Point:
    x: int
    label: str
    image: NDArray[np.uint8]


def samples_are_checked() -> None:
    p = Point(x=1, label="a", image=np.zeros(3, np.uint8))
    assert_type(p, Point)
    assert_type(p.x, int)
    Point(x="not an int", label="a", image=np.zeros(3, np.uint8))  # type: ignore[arg-type]
    Point(x=1)  # type: ignore[call-arg]


def datasets_carry_their_sample_type(ds: Dataset[Point]) -> None:
    for sample in ds:
        assert_type(sample, Point)
    assert_type(ds.head(2), list[Point])
    assert_type(next(ds.ordered()), Point)
    assert_type(next(ds.ordered(batch_size=8)), SampleBatch[Point])
    assert_type(next(ds.shuffled(seed=1)), Point)
    assert_type(next(ds.shuffled(batch_size=8, seed=1)), SampleBatch[Point])


def generated_types_are_packable(record: dict[str, Any]) -> None:
    cls = atdata.type_from_schema(record)
    assert_type(cls, type[PackableSample])
    sample = cls.from_bytes(b"")
    assert_type(sample.packed, bytes)
    assert_type(atdata.sample_fields(cls), tuple[atdata.FieldSpec, ...])


def loading_by_uri() -> None:
    ds = atdata.load_dataset("at://did:plc:x/io.atdata.dataset/y", appview=True)
    assert_type(ds, Dataset[Any])
