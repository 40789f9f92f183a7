"""SampleBatch: a list of samples that reads like one sample with a batch dimension.

Array fields are stacked into one array (leading batch axis), other fields become lists. The
stacking happens on first access of a field and is cached, so a training loop that reads only
``batch.image`` pays for nothing else, and a ragged array field raises (naming the field) only
when that field is read.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import partial
from operator import attrgetter, is_
from typing import Any, Generic, TypeVar

import numpy as np

from .errors import SampleValueError
from .packable import is_packable, sample_fields

__all__ = ["SampleBatch"]

T = TypeVar("T")


def _field_plan(sample_type: type | None) -> dict[str, Any] | None:
    """``{field name: is an array field}`` for a packable type, None when schema-free."""
    if sample_type is None or not is_packable(sample_type):
        return None
    # Per field: False for non-arrays, else the declared dtype (decoding guarantees it) or True.
    return {
        spec.name: (spec.dtype if spec.dtype is not None else True) if spec.is_array else False
        for spec in sample_fields(sample_type)
    }


_PLANS: dict[type, dict[str, Any] | None] = {}


def _plan_for(sample_type: type | None) -> dict[str, Any] | None:
    if sample_type is None:
        return None
    try:
        return _PLANS[sample_type]
    except KeyError:
        plan = _PLANS[sample_type] = _field_plan(sample_type)
        return plan


_shape_of = attrgetter("shape")
_dtype_of = attrgetter("dtype")
_is_none = partial(is_, None)


def stack_arrays(
    name: str, values: Sequence[Any], dtype: np.dtype | None = None
) -> np.ndarray | list[Any]:
    """Stack arrays along a new first axis; a list when some are None; an error naming the
    field when their shapes differ. ``dtype``: the dtype every value is known to have."""
    if not values:
        return np.empty((0,))
    if any(map(_is_none, values)):
        return list(values)
    shapes = list(map(_shape_of, values))
    shape = shapes[0]
    if shapes.count(shape) != len(shapes):
        i = next(i for i, s in enumerate(shapes) if s != shape)
        raise SampleValueError(
            f"cannot stack field {name!r}: sample {i} has shape {shapes[i]}, sample 0 has "
            f"{shape} (ragged arrays; read batch.samples instead)"
        )
    if not shape:
        return np.stack(values)
    # The declared dtype says the kind and size, not the byte order: a peer's big-endian
    # array decodes as ">i4" under NDArray[np.int32], so the bytes are joined as what they are.
    dtypes = set(map(_dtype_of, values))
    if len(dtypes) == 1:
        # Same dtype: one byte-level join (C-contiguous inputs) into a fresh, writable buffer;
        # far cheaper than np.concatenate for many small arrays.
        try:
            joined = bytearray().join(values)
        except BufferError:  # a non-contiguous input
            pass
        else:
            return np.frombuffer(joined, dtype=dtypes.pop()).reshape((len(values), *shape))
    # Mixed dtypes promote as np.stack would.
    return np.concatenate(values).reshape((len(values), *shape))


class SampleBatch(Generic[T]):
    """Samples of one type, with fields as stacked arrays (NDArray) or lists (the rest)."""

    __slots__ = ("_cache", "_plan", "_samples", "sample_type")

    def __init__(self, samples: Sequence[T], sample_type: type | None = None) -> None:
        self._samples = list(samples)
        if sample_type is None and self._samples:
            sample_type = type(self._samples[0])
        self.sample_type = sample_type
        self._plan = _plan_for(sample_type)
        self._cache: dict[str, Any] = {}

    @classmethod
    def _of(cls, samples: list[T], sample_type: type | None) -> SampleBatch[T]:
        """A batch that takes ownership of ``samples`` (no copy); for the data path."""
        batch = cls.__new__(cls)
        batch._samples = samples
        batch.sample_type = sample_type
        batch._plan = _plan_for(sample_type)
        batch._cache = {}
        return batch

    @property
    def samples(self) -> list[T]:
        """The samples themselves."""
        return self._samples

    def __len__(self) -> int:
        return len(self._samples)

    def __iter__(self) -> Iterator[T]:
        return iter(self._samples)

    def fields(self) -> list[str]:
        """Field names, in declaration (or, schema-free, first-sample) order."""
        if self._plan is not None:
            return list(self._plan)
        if not self._samples:
            return []
        first = self._samples[0]
        keys = getattr(first, "keys", None)
        return list(keys()) if callable(keys) else list(vars(first))

    def _compute(self, name: str) -> Any:
        samples: list[Any] = self._samples  # packable (attributes) or schema-free (items)
        if self._plan is not None:
            if name not in self._plan:
                raise AttributeError(
                    f"{getattr(self.sample_type, '__name__', 'batch')} has no field {name!r}"
                )
            values = list(map(attrgetter(name), samples))
            kind = self._plan[name]
            if kind is False:
                return values
            return stack_arrays(name, values, None if kind is True else kind)
        if name not in self.fields():
            raise AttributeError(f"batch has no field {name!r}")
        values = [s[name] for s in samples]
        if values and all(type(v) is np.ndarray for v in values):
            return stack_arrays(name, values)
        return values

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        cache = self._cache
        try:
            return cache[name]
        except KeyError:
            value = cache[name] = self._compute(name)
            return value

    def __getitem__(self, name: str) -> Any:
        if not isinstance(name, str):
            raise TypeError("index a batch by field name; use batch.samples[i] for a sample")
        try:
            return self.__getattr__(name)
        except AttributeError as exc:
            raise KeyError(name) from exc

    def as_dict(self) -> dict[str, Any]:
        """Every field, stacked or listed."""
        return {name: self[name] for name in self.fields()}

    def __repr__(self) -> str:
        name = getattr(self.sample_type, "__name__", "?")
        return f"SampleBatch[{name}]({len(self._samples)} samples)"
