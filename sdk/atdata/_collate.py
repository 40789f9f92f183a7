"""Samples -> a batch of fixed-layout arrays, written straight into a caller's buffer.

The loader's workers (and the in-process path) decode samples and copy each field once, into a
slot of the batch ring: NDArray fields of one shape and dtype into a ``(batch, *shape)`` region,
int/float/bool fields into a column. What has no fixed layout (str/bytes, None values, arrays
whose shape varies) comes back beside the slot: ragged arrays padded (``pad="max"`` or a fixed
length, with a ``<field>_mask``) or as a list. This module is numpy-only, so workers need no
torch; :func:`as_tensors` turns a filled batch into tensors in the training process.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

import numpy as np

from . import packable as _packable
from ._fields import FieldKind
from .errors import LoaderError

__all__ = [
    "BatchLayout",
    "FieldLayout",
    "fill_batch",
    "sample_dict",
]

ALIGN = 64
_NUMERIC = "biufc"  # dtype kinds that become tensors (in native byte order)
_SCALAR_DTYPES = {
    FieldKind.INT: np.dtype(np.int64),
    FieldKind.FLOAT: np.dtype(np.float64),
    FieldKind.BOOL: np.dtype(np.bool_),
}


def sample_dict(sample: Any) -> dict[str, Any]:
    """A sample's fields as ``{name: value}`` (packable, DictSample or plain dataclass)."""
    if hasattr(sample, "to_dict"):
        return dict(sample.to_dict())
    if dataclasses.is_dataclass(sample):
        return {f.name: getattr(sample, f.name) for f in dataclasses.fields(sample)}
    return dict(vars(sample))


@dataclass(frozen=True)
class FieldLayout:
    """One field of a batch: in the slot (``array``/``scalar``) or beside it (``list``)."""

    name: str
    kind: str  # "array", "scalar", "ragged" or "list"
    dtype: np.dtype | None = None
    shape: tuple[int, ...] = ()
    offset: int = 0  # byte offset of the field's region in a slot
    nbytes: int = 0  # bytes of the region (batch_size rows)


@dataclass(frozen=True)
class BatchLayout:
    """Where each field of a batch of ``batch_size`` goes; ``slot_bytes`` per ring slot."""

    batch_size: int
    fields: tuple[FieldLayout, ...]
    slot_bytes: int
    packable: bool

    @classmethod
    def infer(cls, sample_type: type, first: Any, batch_size: int) -> BatchLayout:
        """The layout from the declared fields (when packable) and the first sample's values."""
        values = sample_dict(first)
        specs = (
            {s.name: s for s in _packable.sample_fields(sample_type)}
            if _packable.is_packable(sample_type)
            else {}
        )
        names = list(specs) if specs else list(values)
        out: list[FieldLayout] = []
        offset = 0
        for name in names:
            value = values.get(name)
            spec = specs.get(name)
            kind, dtype, shape = _field_kind(spec, value)
            nbytes = 0
            if kind in ("array", "scalar"):
                assert dtype is not None
                nbytes = batch_size * math.prod(shape) * dtype.itemsize
            out.append(FieldLayout(name, kind, dtype, shape, offset, nbytes))
            offset += -(-nbytes // ALIGN) * ALIGN
        return cls(batch_size, tuple(out), max(offset, ALIGN), bool(specs))

    def views(self, buf: Any, base: int = 0) -> dict[str, np.ndarray]:
        """The slot regions of a buffer (bytes from ``base`` on) as full-capacity arrays."""
        out: dict[str, np.ndarray] = {}
        for f in self.fields:
            if f.kind in ("array", "scalar"):
                assert f.dtype is not None
                count = self.batch_size * math.prod(f.shape)
                arr = np.frombuffer(buf, f.dtype, count, base + f.offset)
                out[f.name] = arr.reshape((self.batch_size, *f.shape))
        return out


def _field_kind(spec: Any, value: Any) -> tuple[str, np.dtype | None, tuple[int, ...]]:
    if spec is not None:
        if spec.kind is FieldKind.ARRAY:
            declared = spec.shape
            if declared is not None and None in declared:
                return "ragged", spec.dtype, ()
            if isinstance(value, np.ndarray) and value.dtype.kind in _NUMERIC:
                return "array", value.dtype.newbyteorder("="), tuple(value.shape)
            return "ragged", spec.dtype, ()
        if spec.kind in _SCALAR_DTYPES and not spec.optional:
            return "scalar", _SCALAR_DTYPES[spec.kind], ()
        return "list", None, ()
    # Schema-free: judge by the first sample's value.
    if isinstance(value, np.ndarray):
        if value.dtype.kind in _NUMERIC:
            return "array", value.dtype.newbyteorder("="), tuple(value.shape)
        return "list", None, ()
    if isinstance(value, bool):
        return "scalar", np.dtype(np.bool_), ()
    if isinstance(value, int):
        return "scalar", np.dtype(np.int64), ()
    if isinstance(value, float):
        return "scalar", np.dtype(np.float64), ()
    return "list", None, ()


def fill_batch(
    layout: BatchLayout,
    samples: Sequence[Any],
    slot: dict[str, np.ndarray],
    pad: int | str | None,
) -> tuple[dict[str, Any], list[str]]:
    """Write ``samples`` into ``slot``; return what goes beside it and the ragged fields listed.

    The returned dict holds, per field not in the slot for this batch: a stacked or padded array
    (with a ``<name>_mask``) or a list. A fixed-layout field whose values do not fit the layout
    in this batch (another shape, a None) also goes there, so nothing is ever forced.
    """
    n = len(samples)
    extra: dict[str, Any] = {}
    listed: list[str] = []
    for f in layout.fields:
        get = attrgetter(f.name) if layout.packable else _item(f.name)
        values = [get(s) for s in samples]
        if f.kind == "array":
            dst = slot[f.name]
            if all(
                type(v) is np.ndarray
                and v.shape == f.shape
                and (v.dtype == f.dtype or v.dtype.newbyteorder("=") == f.dtype)
                for v in values
            ):
                for k, v in enumerate(values):
                    dst[k] = v
                continue
            _array_beside(f.name, values, pad, extra, listed)
        elif f.kind == "scalar":
            try:
                if any(v is None or isinstance(v, (str, bytes)) for v in values):
                    raise TypeError
                slot[f.name][:n] = np.asarray(values, dtype=f.dtype)
            except (TypeError, ValueError, OverflowError):
                extra[f.name] = values
        elif f.kind == "ragged":
            _array_beside(f.name, values, pad, extra, listed)
        else:
            extra[f.name] = values
    return extra, listed


def _item(name: str) -> Any:
    return lambda s: s[name]


def _array_beside(
    name: str, values: list[Any], pad: int | str | None, extra: dict[str, Any], listed: list[str]
) -> None:
    arrays = [v for v in values if isinstance(v, np.ndarray)]
    if len(arrays) != len(values) or not arrays:
        extra[name] = values  # None values (optional fields): as they are
        return
    shapes = {a.shape for a in arrays}
    if len(shapes) == 1:
        stacked = np.stack(arrays)
        extra[name] = stacked.astype(stacked.dtype.newbyteorder("="), copy=False)
        return
    if pad is None:
        extra[name] = arrays
        listed.append(name)
        return
    padded, mask = pad_arrays(name, arrays, pad)
    extra[name] = padded
    extra[f"{name}_mask"] = mask


def pad_arrays(
    name: str, arrays: list[np.ndarray], pad: int | str
) -> tuple[np.ndarray, np.ndarray]:
    """Zero-pad arrays of one rank to a common shape; the mask is True where data is.

    ``pad="max"`` pads every axis to the batch's largest size; an int pads the first axis to
    that length (a longer sample is an error, not truncated) and the others to the largest.
    The mask covers the first axis when only it varies, else the whole padded shape.
    """
    ndims = {a.ndim for a in arrays}
    if len(ndims) != 1 or not arrays[0].ndim:
        raise LoaderError(f"field {name!r}: arrays of different ranks cannot be padded together")
    dims = [max(a.shape[i] for a in arrays) for i in range(arrays[0].ndim)]
    if pad != "max":
        longest = dims[0]
        if longest > int(pad):
            raise LoaderError(
                f"field {name!r}: a sample has length {longest} along its first axis, "
                f"more than pad={pad}"
            )
        dims[0] = int(pad)
    dtype = np.result_type(*arrays).newbyteorder("=")
    out = np.zeros((len(arrays), *dims), dtype=dtype)
    only_first = all(a.shape[1:] == arrays[0].shape[1:] for a in arrays)
    mask = np.zeros((len(arrays), dims[0]) if only_first else (len(arrays), *dims), dtype=bool)
    for k, a in enumerate(arrays):
        region: tuple[int | slice, ...] = (k, *(slice(0, d) for d in a.shape))
        out[region] = a
        if only_first:
            mask[k, : a.shape[0]] = True
        else:
            mask[region] = True
    return out, mask


def check_pad(pad: Any) -> int | str | None:
    """``pad`` as given, after checking it is None, ``"max"`` or a positive int."""
    if pad is None:
        return None
    if pad == "max":
        return "max"
    if isinstance(pad, int) and not isinstance(pad, bool) and pad > 0:
        return pad
    raise ValueError(f'pad must be None, "max" or a positive int, not {pad!r}')
