"""SampleBatch: lazy stacking of array fields, lists for the rest, ragged and optional arrays."""

from __future__ import annotations

import atdata
import numpy as np
import pytest
from atdata import DictSample, SampleBatch, SampleValueError
from numpy.typing import NDArray


@atdata.packable
class Item:
    image: NDArray[np.float32]
    mask: NDArray | None
    label: str
    score: float
    extras: list[NDArray]


def _item(i: int, shape=(2, 2), mask: bool = True) -> Item:
    return Item(
        image=np.full(shape, i, np.float32),
        mask=np.ones(3, np.uint8) * i if mask else None,
        label=f"l{i}",
        score=i / 2,
        extras=[np.zeros(i)],
    )


def test_arrays_stack_and_other_fields_list() -> None:
    batch = SampleBatch([_item(i) for i in range(4)], Item)
    assert batch.image.shape == (4, 2, 2) and batch.image.dtype == np.float32
    np.testing.assert_array_equal(batch.image[3], np.full((2, 2), 3, np.float32))
    assert batch.image.flags.writeable
    assert batch.mask.shape == (4, 3)
    assert batch.label == ["l0", "l1", "l2", "l3"]
    assert batch.score == [0.0, 0.5, 1.0, 1.5]
    assert isinstance(batch.extras, list) and len(batch.extras[2]) == 1
    assert batch["label"] is batch.label  # computed once, cached
    assert len(batch) == 4 and [s.label for s in batch.samples] == batch.label
    assert batch.fields() == ["image", "mask", "label", "score", "extras"]
    assert set(batch.as_dict()) == set(batch.fields())
    assert "4 samples" in repr(batch)


def test_ragged_field_raises_only_when_read() -> None:
    batch = SampleBatch([_item(0), _item(1, shape=(3, 2))], Item)
    assert batch.label == ["l0", "l1"]  # other fields are fine
    with pytest.raises(SampleValueError, match="'image'"):
        _ = batch.image


def test_optional_array_with_none_gives_a_list() -> None:
    batch = SampleBatch([_item(0), _item(1, mask=False)], Item)
    assert isinstance(batch.mask, list) and batch.mask[1] is None
    assert batch.image.shape == (2, 2, 2)


def test_unknown_field_and_bad_index() -> None:
    batch = SampleBatch([_item(0)], Item)
    with pytest.raises(AttributeError, match="nope"):
        _ = batch.nope
    with pytest.raises(KeyError):
        batch["nope"]
    with pytest.raises(TypeError):
        batch[0]  # type: ignore[index]


def test_generic_alias_and_inferred_type() -> None:
    batch = SampleBatch[Item]([_item(0), _item(1)])
    assert batch.sample_type is Item and batch.image.shape == (2, 2, 2)


def test_schema_free_batches() -> None:
    samples = [DictSample(x=np.arange(3) + i, y=f"s{i}") for i in range(3)]
    batch = SampleBatch(samples)
    assert batch.x.shape == (3, 3) and batch.y == ["s0", "s1", "s2"]
    assert batch.fields() == ["x", "y"]
    ragged = SampleBatch([DictSample(x=np.arange(2)), DictSample(x=np.arange(3))])
    with pytest.raises(SampleValueError, match="'x'"):
        _ = ragged.x


def test_empty_batch() -> None:
    batch = SampleBatch([], Item)
    assert len(batch) == 0 and batch.label == []


def test_stacking_keeps_the_byte_order_of_the_values() -> None:
    """A big-endian array under NDArray[np.int32] was joined as native int32: wrong values."""

    @atdata.packable
    class BigEndian:
        v: NDArray[np.int32]

    from atdata._codec import pack_sample

    wire = [pack_sample({"v": (np.arange(3) + i).astype(">i4")}) for i in range(4)]
    samples = [BigEndian.from_bytes(b) for b in wire]  # as a peer's big-endian shard holds
    assert samples[0].v.dtype == np.dtype(">i4")  # as on the wire
    stacked = SampleBatch(samples, BigEndian).v
    assert stacked.tolist() == [[i, i + 1, i + 2] for i in range(4)]
