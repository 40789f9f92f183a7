"""The NDArray wire format and the msgpack message layer, byte-compatible with atdata 0.7.

An array travels as a msgpack bin holding::

    u8 len(dtype) | dtype string (numpy's ``dtype.str``) | u8 ndim | ndim x int64 LE | C-order bytes

Arrays stored as ``.npy`` bytes (``\\x93NUMPY`` magic) are read too.

Decoding is the hot path of every reader, so this module avoids per-value Python work where it
can: :func:`unpack_message` parses the flat top level of a sample message itself and hands out
bins as ``memoryview`` slices of the message, so arrays can be viewed in place instead of being
copied once by msgpack and once more for alignment. Anything it does not handle (nested maps and
arrays, ext types) falls back to ``msgpack.unpackb``.
"""

from __future__ import annotations

import functools
import io
import itertools
import struct
from collections.abc import Callable
from math import prod
from typing import Any

import msgpack
import numpy as np

from .errors import DecodeError, SampleValueError

__all__ = [
    "NPY_MAGIC",
    "decode_array",
    "encode_array",
    "pack",
    "pack_sample",
    "unpack",
    "unpack_message",
]

NPY_MAGIC = b"\x93NUMPY"

Buffer = bytes | bytearray | memoryview

_SHAPE_STRUCTS = [struct.Struct(f"<{n}q") for n in range(65)]
_INFO_CACHE: dict[bytes, tuple[np.dtype, struct.Struct, int]] = {}
_DTYPE_CACHE_MAX = 512
_HEADER_CACHE: dict[tuple[str, int], bytes] = {}
# Full array header (dtype + shape) -> (dtype, shape or None when 1-d, count, nbytes, aligned?)
_ARRAY_CACHE: dict[bytes, tuple[np.dtype, tuple[int, ...] | None, int, int, bool]] = {}
_ARRAY_CACHE_MAX = 4096
# (dtype, shape) -> full array header, for encoding
_FULL_HEADERS: dict[tuple[np.dtype, tuple[int, ...]], bytes] = {}


def _array_header(dt: np.dtype, shape: tuple[int, ...]) -> bytes:
    """Header bytes of an array; the dtype/ndim prefix is cached per (dtype, ndim)."""
    ndim = len(shape)
    key = (dt.str, ndim)
    prefix = _HEADER_CACHE.get(key)
    if prefix is None:
        ds = dt.str.encode("ascii")
        prefix = bytes((len(ds),)) + ds + bytes((ndim,))
        if len(_HEADER_CACHE) < _DTYPE_CACHE_MAX:
            _HEADER_CACHE[key] = prefix
    return prefix + _SHAPE_STRUCTS[ndim].pack(*shape)


def check_array_dtype(dt: np.dtype) -> None:
    """Refuse dtypes the wire format cannot carry faithfully (objects, structured records)."""
    if dt.hasobject:
        raise SampleValueError(f"object arrays cannot be stored (dtype {dt}); use a concrete dtype")
    if dt.names is not None or dt.subdtype is not None:
        raise SampleValueError(f"structured/sub-array dtype {dt} cannot be stored as an NDArray")


def encode_array(arr: np.ndarray) -> bytes:
    """Encode an array in the atdata wire format (C order, whatever the input's strides)."""
    key = (arr.dtype, arr.shape)
    header = _FULL_HEADERS.get(key)
    if header is None:
        check_array_dtype(arr.dtype)
        header = _array_header(arr.dtype, arr.shape)
        if len(_FULL_HEADERS) < _ARRAY_CACHE_MAX:
            _FULL_HEADERS[key] = header
    if not arr.flags.c_contiguous:
        arr = arr.copy(order="C")
    if arr.nbytes < 65536:
        return header + arr.tobytes()
    # One copy: join reads the array's buffer directly (tobytes() + concat would copy twice).
    return b"".join((header, arr.reshape(-1).view(np.uint8).data))


def _header_info(buf: Buffer, dlen: int) -> tuple[np.dtype, struct.Struct, int]:
    """Parse (and cache) the dtype/ndim prefix of an array header."""
    key = bytes(buf[: 2 + dlen])
    if len(key) < 2 + dlen:
        raise DecodeError(f"array bytes too short ({len(buf)} bytes) for a dtype of {dlen} bytes")
    try:
        dt = np.dtype(key[1 : 1 + dlen].decode("ascii"))
    except Exception as exc:  # numpy parses some strings with ast: even SyntaxError
        raise DecodeError(f"array has an invalid dtype string {key[1:]!r}") from exc
    if dt.hasobject or dt.names is not None or dt.subdtype is not None or dt.itemsize == 0:
        raise DecodeError(f"array dtype {dt.str!r} is not allowed (object, structured or empty)")
    ndim = key[1 + dlen]
    if ndim > 64:
        raise DecodeError(f"array claims {ndim} dimensions")
    info = (dt, _SHAPE_STRUCTS[ndim], 2 + dlen)
    if len(_INFO_CACHE) < _DTYPE_CACHE_MAX:
        _INFO_CACHE[key] = info
    return info


def _decode_npy(buf: Buffer) -> np.ndarray:
    try:
        arr = np.load(io.BytesIO(bytes(buf)), allow_pickle=False)
    except Exception as exc:  # numpy raises several types for bad headers
        raise DecodeError(f"invalid .npy array bytes: {exc}") from exc
    if not isinstance(arr, np.ndarray) or arr.dtype.names is not None:
        raise DecodeError(".npy bytes do not hold a plain array")
    return arr


def decode_array(buf: Buffer, writable: bool | None = False) -> np.ndarray:
    """Decode wire bytes (or ``.npy`` bytes) into an array.

    The result is a read-only view over ``buf`` when the data offset suits the dtype's
    alignment; it is a private copy when it does not, or when ``writable`` is true. With
    ``writable=None`` it is a view even when unaligned: for callers that copy it anyway (batch
    stacking), so the unaligned data is copied once, straight into its destination. A view keeps
    ``buf`` alive and shares its memory, so pass an immutable buffer (bytes) unless you copy.
    """
    # Fast path: a header seen before (datasets repeat a few dtype/shape pairs) maps straight
    # to what frombuffer needs; anything else goes to _decode_array_checked.
    try:
        dlen = buf[0]
        end = 2 + dlen + 8 * buf[1 + dlen]
        key = buf[:end]
        if type(key) is not bytes:
            key = bytes(key)
        dt, shape, count, nbytes, check_aligned = _ARRAY_CACHE[key]
    except (KeyError, IndexError):
        return _decode_array_checked(buf, writable)
    if len(buf) - end != nbytes:
        return _decode_array_checked(buf, writable)
    arr = np.frombuffer(buf, dt, count, end)
    if shape is not None:
        arr = arr.reshape(shape)
    if writable or (check_aligned and not arr.flags.aligned and writable is not None):
        return arr.copy()
    return arr


def array_layout(head: Buffer, size: int) -> tuple[np.dtype, tuple[int, ...], int] | None:
    """``(dtype, shape, header length)`` of wire array bytes ``size`` long, from their first
    bytes ``head`` (the header at least), so the payload can be read straight to where it
    goes. None when they are not a plain wire array of that size (``.npy`` bytes, an empty
    array, anything wrong): the caller then decodes the whole bytes the usual way, which says
    what is wrong."""
    try:
        dlen = head[0]
        end = 2 + dlen + 8 * head[1 + dlen]
        key = bytes(head[:end])
        if len(key) < end:
            return None
        entry = _LAYOUT_CACHE.get(key)
        if entry is None:
            if dlen == 0x93:
                return None
            dt, shape_struct, off = _header_info(key, dlen)
            shape = shape_struct.unpack_from(key, off)
            count = prod(shape)
            if count <= 0 or any(d < 0 for d in shape):
                return None
            entry = (dt, shape, end, count * dt.itemsize)
            if len(_LAYOUT_CACHE) < _ARRAY_CACHE_MAX:
                _LAYOUT_CACHE[key] = entry
    except (IndexError, DecodeError, struct.error):
        return None
    if size - end != entry[3]:
        return None
    return entry[0], entry[1], end


_LAYOUT_CACHE: dict[bytes, tuple[np.dtype, tuple[int, ...], int, int]] = {}


def _decode_array_checked(buf: Buffer, writable: bool | None) -> np.ndarray:
    """decode_array with every check spelled out (first sight of a header, errors, empties)."""
    n = len(buf)
    if n < 2:
        raise DecodeError(f"array bytes too short ({n} bytes)")
    dlen = buf[0]
    info = _INFO_CACHE.get(bytes(buf[: 2 + dlen]))
    if info is None:
        if dlen == 0x93 and bytes(buf[:6]) == NPY_MAGIC:
            return _decode_npy(buf)
        info = _header_info(buf, dlen)
    dt, shape_struct, off = info
    end = off + shape_struct.size
    if n < end:
        raise DecodeError(f"array bytes too short ({n} bytes) for its shape")
    shape = shape_struct.unpack_from(buf, off)
    if any(d < 0 for d in shape):  # before the product: two negatives make a positive
        raise DecodeError(f"array has a negative dimension in shape {shape}")
    count = prod(shape)
    if count == 0:
        if n != end:
            raise DecodeError(f"empty array of shape {shape} carries {n - end} payload bytes")
        try:
            return np.empty(shape, dtype=dt)
        except (ValueError, MemoryError) as exc:  # dimensions past what numpy can index
            raise DecodeError(f"empty array of shape {shape} is too large for numpy") from exc
    if n - end != count * dt.itemsize:
        raise DecodeError(
            f"array payload is {n - end} bytes but dtype {dt.str} shape {shape} needs "
            f"{count * dt.itemsize}"
        )
    if len(_ARRAY_CACHE) < _ARRAY_CACHE_MAX:
        _ARRAY_CACHE[bytes(buf[:end])] = (
            dt,
            None if len(shape) == 1 else shape,
            count,
            count * dt.itemsize,
            dt.alignment > 1,
        )
    arr = np.frombuffer(buf, dt, count, end).reshape(shape)
    if writable or (not arr.flags.aligned and writable is not None):
        return arr.copy()
    return arr


def msgpack_default(obj: Any) -> Any:
    """msgpack fallback: numpy arrays as wire arrays, numpy scalars as Python scalars."""
    if isinstance(obj, np.ndarray):
        return encode_array(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, memoryview | bytearray):
        return bytes(obj)
    raise TypeError(f"cannot store a value of type {type(obj).__name__} in msgpack")


# Arrays at least this large are laid out so their data starts at an offset aligned for the
# dtype, letting readers view them in place; smaller ones are not worth the extra Python work.
ALIGN_MIN_BYTES = 8192
# Messages at least this large are parsed by the zero-copy scanner; below it msgpack's C
# decoder plus a small copy is faster.
SCAN_MIN_BYTES = 16384

_packb = msgpack.packb
_unpackb = msgpack.unpackb


def pack(obj: Any) -> bytes:
    """msgpack-encode ``obj`` (bin type for bytes; numpy arrays and scalars handled)."""
    return _packb(obj, default=msgpack_default)


def _headers(
    n: int, fixed: tuple[int, int] | None, sized: tuple[tuple[int, int], ...]
) -> list[bytes]:
    """Every msgpack header able to carry a length ``n``, smallest first: the fixed form
    (type bits, exclusive limit) when ``n`` fits in it, then each (marker, byte width) form."""
    out = []
    if fixed is not None and n < fixed[1]:
        out.append(bytes((fixed[0] | n,)))
    for marker, width in sized:
        if n < 1 << (8 * width):
            out.append(bytes((marker,)) + n.to_bytes(width, "big"))
    return out


def _str_headers(n: int) -> list[bytes]:
    return _headers(n, (0xA0, 32), ((0xD9, 1), (0xDA, 2), (0xDB, 4)))


def _bin_headers(n: int) -> list[bytes]:
    return _headers(n, None, ((0xC4, 1), (0xC5, 2), (0xC6, 4)))


def _map_headers(n: int) -> list[bytes]:
    return _headers(n, (0x80, 16), ((0xDE, 2), (0xDF, 4)))


def _wants_alignment(v: Any) -> bool:
    return (
        type(v) is np.ndarray
        and v.dtype.alignment > 1
        and v.nbytes >= ALIGN_MIN_BYTES
        and not v.dtype.hasobject
    )


def pack_sample(fields: dict[str, Any]) -> bytes:
    """msgpack-encode a sample map whose array values are still ``np.ndarray``.

    Small samples go straight through msgpack. When a large multi-byte array is present the map
    is written piece by piece, choosing among msgpack's equivalent header widths (a non-minimal
    map, str or bin header is still valid msgpack, read by any decoder) so that the array's
    data starts at an offset that is a multiple of its dtype's alignment.
    """
    for v in fields.values():
        if type(v) is np.ndarray and _wants_alignment(v):
            return pack_aligned(fields)
    return _packb(fields, default=msgpack_default)


@functools.lru_cache(maxsize=4096)
def _choose(need: int, align: int, deltas: tuple[tuple[int, ...], ...]) -> tuple[int, ...] | None:
    """Pick one option per header slot so the added bytes are ``need`` modulo ``align``."""
    best: tuple[int, ...] | None = None
    best_cost = -1
    for combo in itertools.product(*(range(len(d)) for d in deltas)):
        cost = sum(d[i] for d, i in zip(deltas, combo, strict=True))
        if (cost - need) % align == 0 and (best is None or cost < best_cost):
            best, best_cost = combo, cost
    return best


def pack_aligned(fields: dict[str, Any]) -> bytes:
    """pack_sample's aligning writer (see there); for maps holding a large array."""
    maps = _map_headers(len(fields))
    parts: list[Any] = [maps[0]]
    pos = len(maps[0])
    # Header slots written since the last aligned array, whose width may still change.
    slots: list[tuple[int, list[bytes]]] = [(0, maps)]
    for key, v in fields.items():
        kb = key.encode("utf-8")
        khs = _str_headers(len(kb))
        key_slot = (len(parts), khs)
        parts += (khs[0], kb)
        pos += len(khs[0]) + len(kb)
        if not _wants_alignment(v):
            chunk = _packb(v, default=msgpack_default)
            parts.append(chunk)
            pos += len(chunk)
            slots.append(key_slot)
            continue
        arr = v if v.flags.c_contiguous else v.copy(order="C")
        check_array_dtype(arr.dtype)
        header = _array_header(arr.dtype, arr.shape)
        bhs = _bin_headers(len(header) + arr.nbytes)
        candidates = [*slots[-3:], key_slot, (len(parts), bhs)]
        parts += (bhs[0], header, arr.reshape(-1).view(np.uint8))
        data_at = pos + len(bhs[0]) + len(header)
        deltas = tuple(tuple(len(o) - len(opts[0]) for o in opts) for _, opts in candidates)
        choice = _choose((-data_at) % arr.dtype.alignment, arr.dtype.alignment, deltas)
        if choice is not None:  # else no header widths reach the alignment: leave it
            for (idx, opts), ci in zip(candidates, choice, strict=True):
                parts[idx] = opts[ci]
                pos += len(opts[ci]) - len(opts[0])
        pos += len(bhs[0]) + len(header) + arr.nbytes
        slots = []
    return b"".join(parts)


def _why(exc: Exception) -> str:
    """The exception's text, or its class name when it has none (msgpack's FormatError())."""
    return str(exc) or type(exc).__name__


def unpack(buf: Buffer) -> Any:
    """msgpack-decode a whole message (bins as bytes, maps with any key type as dicts)."""
    try:
        return msgpack.unpackb(buf, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises ValueError/ExtraData/FormatError/...
        raise DecodeError(f"invalid msgpack message: {_why(exc)}") from exc


_S16 = struct.Struct(">H").unpack_from
_S32 = struct.Struct(">I").unpack_from
_FIXED: dict[int, tuple[Callable[..., tuple[Any, ...]], int]] = {
    0xCA: (struct.Struct(">f").unpack_from, 4),
    0xCB: (struct.Struct(">d").unpack_from, 8),
    0xCC: (struct.Struct(">B").unpack_from, 1),
    0xCD: (struct.Struct(">H").unpack_from, 2),
    0xCE: (struct.Struct(">I").unpack_from, 4),
    0xCF: (struct.Struct(">Q").unpack_from, 8),
    0xD0: (struct.Struct(">b").unpack_from, 1),
    0xD1: (struct.Struct(">h").unpack_from, 2),
    0xD2: (struct.Struct(">i").unpack_from, 4),
    0xD3: (struct.Struct(">q").unpack_from, 8),
}


class _Fallback(Exception):
    """The flat parser met something it leaves to msgpack."""


def _scan(mv: memoryview) -> dict[str, Any]:
    """Parse a flat top-level map; bins come back as memoryview slices of ``mv``."""
    t = mv[0]
    if 0x80 <= t <= 0x8F:
        n, i = t & 0x0F, 1
    elif t == 0xDE:
        n, i = _S16(mv, 1)[0], 3
    elif t == 0xDF:
        n, i = _S32(mv, 1)[0], 5
    else:
        raise _Fallback
    out: dict[str, Any] = {}
    for _ in range(n):
        t = mv[i]
        if 0xA0 <= t <= 0xBF:
            ln = t & 0x1F
            i += 1
        elif t == 0xD9:
            ln = mv[i + 1]
            i += 2
        elif t == 0xDA:
            ln = _S16(mv, i + 1)[0]
            i += 3
        elif t == 0xDB:
            ln = _S32(mv, i + 1)[0]
            i += 5
        else:
            raise _Fallback
        key = str(mv[i : i + ln], "utf-8")
        i += ln
        t = mv[i]
        if t <= 0x7F:
            v: Any = t
            i += 1
        elif 0xA0 <= t <= 0xBF:
            ln = t & 0x1F
            v = str(mv[i + 1 : i + 1 + ln], "utf-8")
            i += 1 + ln
        elif t >= 0xE0:
            v = t - 0x100
            i += 1
        elif t == 0xC6:
            ln = _S32(mv, i + 1)[0]
            v = mv[i + 5 : i + 5 + ln]
            i += 5 + ln
        elif t == 0xC4:
            ln = mv[i + 1]
            v = mv[i + 2 : i + 2 + ln]
            i += 2 + ln
        elif t == 0xC5:
            ln = _S16(mv, i + 1)[0]
            v = mv[i + 3 : i + 3 + ln]
            i += 3 + ln
        elif t == 0xC0:
            v = None
            i += 1
        elif t == 0xC2:
            v = False
            i += 1
        elif t == 0xC3:
            v = True
            i += 1
        elif t in _FIXED:
            fn, size = _FIXED[t]
            v = fn(mv, i + 1)[0]
            i += 1 + size
        elif t == 0xD9:
            ln = mv[i + 1]
            v = str(mv[i + 2 : i + 2 + ln], "utf-8")
            i += 2 + ln
        elif t == 0xDA:
            ln = _S16(mv, i + 1)[0]
            v = str(mv[i + 3 : i + 3 + ln], "utf-8")
            i += 3 + ln
        elif t == 0xDB:
            ln = _S32(mv, i + 1)[0]
            v = str(mv[i + 5 : i + 5 + ln], "utf-8")
            i += 5 + ln
        else:
            raise _Fallback
        out[key] = v
    if i != len(mv):
        raise _Fallback
    return out


def unpack_message(buf: Buffer) -> dict[Any, Any]:
    """Decode a sample message (a msgpack map) into a dict.

    Large messages with a flat top level (scalars, strings, bins) are parsed here so that bins
    come back as ``memoryview`` slices of ``buf`` (arrays then decode without a copy); others
    go through msgpack, bins as ``bytes``. Raises :class:`DecodeError` unless it is a map.
    """
    if len(buf) >= SCAN_MIN_BYTES:
        mv = buf if type(buf) is memoryview else memoryview(buf)
        if mv.ndim != 1 or mv.itemsize != 1:
            mv = mv.cast("B")
        try:
            return _scan(mv)
        except (_Fallback, IndexError, struct.error, UnicodeDecodeError):
            pass
    try:
        out = _unpackb(buf, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises ValueError/ExtraData/FormatError/...
        raise DecodeError(f"invalid msgpack message: {_why(exc)}") from exc
    if type(out) is not dict:
        raise DecodeError(f"sample message is a msgpack {type(out).__name__}, not a map")
    return out
