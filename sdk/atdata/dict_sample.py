"""``DictSample``: a sample read without a declared type.

Values are exactly what the message holds (arrays stay as their wire bytes, since without a
schema a bin cannot be told apart from a bytes field); :meth:`DictSample.array` decodes one
on request, and ``Dataset.as_type(T)`` / ``T.from_data(s.to_dict())`` give a typed sample.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np

from ._codec import Buffer, decode_array, pack, unpack
from .errors import DecodeError

__all__ = ["DictSample"]


class DictSample:
    """Schema-free sample: attribute and item access over a field -> value dict."""

    __slots__ = ("_data",)

    def __init__(self, _data: dict[str, Any] | None = None, /, **fields: Any) -> None:
        object.__setattr__(self, "_data", dict(_data) if _data is not None else fields)

    @classmethod
    def from_data(cls, d: dict[str, Any]) -> DictSample:
        """Wrap an unpacked message dict (not copied)."""
        if type(d) is not dict:
            raise DecodeError(f"expected a dict of fields, got {type(d).__name__}")
        obj = cls.__new__(cls)
        object.__setattr__(obj, "_data", d)
        return obj

    @classmethod
    def from_bytes(cls, b: Buffer, *, writable: bool | None = False) -> DictSample:
        """Decode a msgpack map message (``writable`` is accepted for API symmetry)."""
        d = unpack(b)
        if type(d) is not dict:
            raise DecodeError(f"sample message is a msgpack {type(d).__name__}, not a map")
        return cls.from_data(d)

    def __getattr__(self, name: str) -> Any:
        if name == "_data":  # not yet set (copy/pickle protocols probe before __init__)
            raise AttributeError(name)
        try:
            return self._data[name]
        except KeyError:
            raise AttributeError(
                f"DictSample has no field {name!r} (fields: {', '.join(map(str, self._data))})"
            ) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self._data[name] = value

    def __getstate__(self) -> dict[str, Any]:
        return self._data

    def __setstate__(self, state: dict[str, Any]) -> None:
        object.__setattr__(self, "_data", state)

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._data[key] = value

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DictSample) and other._data == self._data

    __hash__ = None  # type: ignore[assignment]

    def keys(self) -> list[str]:
        """Field names in message order."""
        return list(self._data)

    def values(self) -> list[Any]:
        return list(self._data.values())

    def items(self) -> list[tuple[str, Any]]:
        return list(self._data.items())

    def get(self, key: str, default: Any = None) -> Any:
        return self._data.get(key, default)

    def to_dict(self) -> dict[str, Any]:
        """A shallow copy of the fields."""
        return dict(self._data)

    def array(self, key: str, *, writable: bool = False) -> np.ndarray:
        """Decode field ``key`` as an NDArray (wire format or ``.npy`` bytes)."""
        v = self._data[key]
        if isinstance(v, np.ndarray):
            return v
        if not isinstance(v, bytes | bytearray | memoryview):
            raise DecodeError(f"expected array bytes, got {type(v).__name__}", field=key)
        try:
            return decode_array(v, writable=writable)
        except DecodeError as exc:
            raise DecodeError(exc.reason, field=key) from None

    @property
    def packed(self) -> bytes:
        """The msgpack message (numpy arrays encoded in the NDArray wire format)."""
        return pack(self._data)

    @property
    def as_wds(self) -> dict[str, Any]:
        """``{"__key__": <fresh unique key>, "msgpack": <message>}`` for a WebDataset writer."""
        return {"__key__": uuid.uuid4().hex, "msgpack": self.packed}

    def __repr__(self) -> str:
        return f"DictSample({', '.join(map(str, self._data))})"
