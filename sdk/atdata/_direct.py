"""Batches of local shards with one copy: array payloads read straight into the batch arrays.

``ordered(batch_size=N)`` over memory-mapped shards copies each array once, from the mapping
into the stacked batch array; but mapping the page cache costs the kernel page-table work for
every page touched and released, which measured more than the copy itself (a 602 KB float32
image: half the CPU time of a batched read). Here the tar headers and msgpack messages of a
local shard are read through a small window with ``pread``, and each array payload too large
for the window goes with one ``preadv`` from the page cache straight into its row of the
batch's array for that field. Samples are built by the sample type's own decoder, their arrays
being read-only views of those rows, and the batch comes with the stacked arrays already made.

Only the plain layout takes this path: one ``.msgpack`` member per sample, a flat message,
ustar or pax (``x``) headers, no checksum to verify while reading, and (judged on the first
sample) arrays at offsets not aligned for their dtype, as the atdata 0.7 SDK writes them:
shards we write align their arrays, and copying those aligned views out of the mapping
measured faster than reading them. At the first thing it does
not handle (another member of the sample, a GNU or global pax header, a nested message, a
truncated shard...) the rest of the shard is read by the tar reader as usual, which also
reports errors with its usual words; shards of small samples are read that way from the
start, since a read per sample costs more than mapping.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from ._codec import array_layout
from ._tar import BLOCK, _octal, _parse_pax, _ustar_name, header_ok
from .batch import SampleBatch
from .errors import AtdataError
from .packable import is_packable, sample_fields

if TYPE_CHECKING:
    from ._sources import ShardSource
    from .dataset import Dataset

__all__ = ["direct_batches", "takes_direct_path"]

#: Bytes read at a time for headers and messages (a pax header, a ustar header and the start
#: of a message fit, with room to spare).
WINDOW = 8192
#: Shards whose first message is smaller than this are read by the tar reader (mapped).
DIRECT_MIN_MESSAGE = 1 << 16

_ZERO_BLOCK = bytes(BLOCK)
_HAVE_PREADV = hasattr(os, "preadv") and hasattr(os, "pread")
_REGULAR = frozenset((b"0", b"\0", b"7"))


class _Fallback(Exception):
    """Something the direct path leaves to the tar reader (from this sample on)."""


def takes_direct_path(dataset: Dataset[Any]) -> bool:
    """Whether batches of ``dataset`` are read this way: a packable type, no lens, a platform
    with ``preadv``, and a first shard that is a plain local file whose first sample is large
    with an array at an offset not aligned for its dtype (as the peer writes them). Shards we
    write align their arrays, and the mapped shard's aligned views were copied into the batch
    faster than a read (measured), so they keep that path."""
    if not (_HAVE_PREADV and dataset._lens is None and is_packable(dataset._decode_type)):
        return False
    if not dataset._sources:
        return False
    source = dataset._sources[0]
    try:
        stream = source.open()
    except (OSError, AtdataError):
        return False  # the tar reader's path reports it (or skips it)
    try:
        if type(stream) is not io.FileIO:
            return False
        reader = _ShardReader(dataset, stream.fileno(), source.name, _Filler(1, dataset._view_type))
        found = reader.member(0)
        if found is None or found[2] < DIRECT_MIN_MESSAGE:
            return False
        reader._message(found[1], found[2])
        return reader.unaligned > 0
    except Exception:  # anything odd in the first sample: the tar reader's path says what
        return False
    finally:
        stream.close()


class _Window:
    """Bytes of a file around a position, read with ``pread`` into one reused buffer."""

    __slots__ = ("buf", "end", "fd", "mv", "start")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buf = bytearray(WINDOW)
        self.mv = memoryview(self.buf)
        self.start = 0  # file offset of buf[0]
        self.end = 0  # file offset past the last valid byte

    def at(self, pos: int, n: int) -> tuple[memoryview, int]:
        """``(view, i)`` with ``view[i : i + n]`` the file's bytes ``pos .. pos + n``."""
        if pos < self.start or pos + n > self.end:
            if n > len(self.buf):
                self.mv.release()
                self.buf = bytearray(n)
                self.mv = memoryview(self.buf)
            got = os.preadv(self.fd, [self.buf], pos)
            self.start, self.end = pos, pos + got
            if got < n:
                raise _Fallback  # end of file: the tar reader says how the shard is cut short
        return self.mv, pos - self.start


class _Filler:
    """The batch being filled: its samples and, per array field, the stacked array whose row
    ``k`` receives sample ``k``'s payload."""

    def __init__(self, batch_size: int, sample_type: type) -> None:
        self.batch_size = batch_size
        self.sample_type = sample_type
        self.samples: list[Any] = []
        self.arrays: dict[str, np.ndarray] = {}
        self.filled: dict[str, int] = {}  # rows of this batch filled, per field
        self.pending: list[str] = []  # fields filled for the sample being read

    def row(self, field: str, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
        """Where sample ``len(samples)``'s array for ``field`` goes: a row of the field's batch
        array, or an array of its own when the shape or dtype differs from the batch's."""
        k = len(self.samples)
        arr = self.arrays.get(field)
        if arr is None:
            arr = self.arrays[field] = np.empty((self.batch_size, *shape), dtype)
            self.filled[field] = 0
        elif arr.dtype != dtype or arr.shape[1:] != shape:
            return np.empty(shape, dtype)
        self.pending.append(field)
        return arr[k]

    def add(self, sample: Any) -> SampleBatch[Any] | None:
        """Take a sample whose arrays are in place; the batch, once it is full."""
        for field in self.pending:
            self.filled[field] += 1
        self.pending.clear()
        self.samples.append(sample)
        return self.batch() if len(self.samples) == self.batch_size else None

    def drop(self) -> None:
        """Forget what the sample being read wrote (it was skipped): its rows are reused."""
        self.pending.clear()

    def batch(self) -> SampleBatch[Any]:
        samples, n = self.samples, len(self.samples)
        batch = SampleBatch._of(samples, self.sample_type)
        for field, arr in self.arrays.items():
            if self.filled[field] == n:  # every sample's array is in its row: stacked already
                batch._cache[field] = arr[:n]
        self.samples = []
        # The next batch gets fresh arrays: this one's samples and stacked arrays keep theirs.
        self.arrays = {}
        self.filled = {}
        return batch


def direct_batches(
    dataset: Dataset[Any], batch_size: int, drop_last: bool
) -> Iterator[SampleBatch[Any]]:
    """``dataset.ordered(batch_size)`` read as described in the module docs."""
    filler = _Filler(batch_size, dataset._view_type)
    # A sample is read into row len(filler.samples): the generator runs one sample ahead of
    # nothing, so the row is known when its payload is read.
    for sample in dataset._skip_log.watch(_samples(dataset, filler)):
        batch = filler.add(sample)
        if batch is not None:
            yield batch
    if filler.samples and not drop_last:
        yield filler.batch()


def _samples(dataset: Dataset[Any], filler: _Filler) -> Iterator[Any]:
    for source in dataset._sources:
        yield from _shard(dataset, source, filler)


def _shard(dataset: Dataset[Any], source: ShardSource, filler: _Filler) -> Iterator[Any]:
    name = source.name
    stream = dataset._open_shard(source)
    if stream is None:
        return
    done = 0  # samples of this shard read (skipped ones included)
    try:
        if type(stream) is io.FileIO:  # a local file, nothing to verify as it is read
            reader = _ShardReader(dataset, stream.fileno(), name, filler)
            try:
                for sample in reader.samples():
                    if sample is None:  # skipped (on_error="skip"): its rows are reused
                        filler.drop()
                    else:
                        yield sample
                return
            except _Fallback:
                filler.drop()
                done = reader.done
            stream.seek(0)
        yield from _rest_of_shard(dataset, stream, name, done)
    finally:
        stream.close()


def _rest_of_shard(dataset: Dataset[Any], stream: Any, name: str, done: int) -> Iterator[Any]:
    """The shard's samples from the ``done``-th on, through the tar reader (arrays as views
    of the mapped shard, stacked when the batch's fields are read)."""
    keep = (lambda i: i >= done) if done else None
    return dataset._decode_stream(stream, name, keep, views=True)


class _ShardReader:
    """The direct path over one shard: samples (None for one skipped) until the end of the
    archive, or :class:`_Fallback` (``done`` samples read by then)."""

    def __init__(self, dataset: Dataset[Any], fd: int, name: str, filler: _Filler) -> None:
        self.dataset = dataset
        self.fd = fd
        self.name = name
        self.filler = filler
        self.window = _Window(fd)
        self.done = 0
        self.unaligned = 0  # array payloads read into place from offsets not aligned for
        # their dtype (the tar reader would hand them out as unaligned views)
        specs = sample_fields(dataset._decode_type)
        self.array_fields = frozenset(s.name for s in specs if s.is_array)
        self.from_data = dataset._decode_type.from_data

    def member(self, pos: int) -> tuple[str, int, int] | None:
        """``(name, data offset, size)`` of the regular member whose headers start at ``pos``
        (None at the end of the archive); :class:`_Fallback` for any other header."""
        at = self.window.at
        pax: dict[str, str] = {}
        while True:
            mv, i = at(pos, BLOCK)
            hdr = bytes(mv[i : i + BLOCK])
            if hdr == _ZERO_BLOCK:
                if pax:
                    raise _Fallback  # a header with no member after it
                return None
            if not header_ok(hdr):
                raise _Fallback
            typeflag = hdr[156:157]
            try:
                size = int(hdr[124:135], 8)
            except ValueError:
                size = _size(hdr)
            if typeflag == b"x":
                if size > WINDOW:
                    raise _Fallback
                mv, i = at(pos + BLOCK, size)
                try:
                    pax = _parse_pax(mv[i : i + size])
                except ValueError:
                    raise _Fallback from None
                pos += BLOCK + _padded(size)
                continue
            if typeflag not in _REGULAR:
                raise _Fallback  # GNU names, global pax headers, links, directories...
            name = pax.get("path") or _ustar_name(hdr)
            text = pax.get("size")
            if text is not None:
                if not (text.isascii() and text.isdigit()) or len(text) > 20:
                    raise _Fallback
                size = int(text)
            return name, pos + BLOCK, size

    def samples(self) -> Iterator[Any]:
        pos = 0
        last_key: str | None = None
        skip = self.dataset.on_error == "skip"
        while True:
            found = self.member(pos)
            if found is None:
                return
            name, start, size = found
            dot = name.find(".", name.rfind("/") + 1)
            key = name[:dot]
            if dot < 0 or name[dot + 1 :] != "msgpack" or key == last_key:
                raise _Fallback  # a member of another kind, or a second one of a sample
            if self.done == 0 and size < DIRECT_MIN_MESSAGE:
                raise _Fallback  # small samples: mapping the shard is cheaper
            try:
                sample = self.from_data(self._message(start, size))
            except _Fallback:
                raise
            except Exception as exc:  # as decode_raw: any failure is this sample's DecodeError
                from .dataset import _sample_error

                error = _sample_error(exc, self.name, key)
                if not skip:
                    raise error from exc
                self.dataset._skip(error)
                sample = None
            self.done += 1
            last_key = key
            pos = start + _padded(size)
            yield sample

    def _text(self, p: int, ln: int, end: int) -> str:
        """The UTF-8 string of ``ln`` bytes at ``p`` (a key or a str value) of a message
        ending at ``end``; anything else is for the tar reader to judge."""
        if p + ln > end:
            raise _Fallback
        mv, i = self.window.at(p, ln)
        try:
            return str(mv[i : i + ln], "utf-8")
        except UnicodeDecodeError:
            raise _Fallback from None

    def _message(self, start: int, size: int) -> dict[str, Any]:
        """The fields of the msgpack map at ``start`` (``size`` bytes); array payloads past the
        window go straight into their rows of the batch."""
        at = self.window.at
        end = start + size
        mv, i = at(start, 5 if size > 5 else size)
        t = mv[i]
        if 0x80 <= t <= 0x8F:
            n, p = t & 0x0F, start + 1
        elif t == 0xDE:
            n, p = int.from_bytes(mv[i + 1 : i + 3], "big"), start + 3
        elif t == 0xDF:
            n, p = int.from_bytes(mv[i + 1 : i + 5], "big"), start + 5
        else:
            raise _Fallback
        out: dict[str, Any] = {}
        for _ in range(n):
            mv, i = at(p, 9 if end - p > 9 else end - p)
            t = mv[i]
            if 0xA0 <= t <= 0xBF:
                ln, p = t & 0x1F, p + 1
            elif t == 0xD9:
                ln, p = mv[i + 1], p + 2
            elif t == 0xDA:
                ln, p = int.from_bytes(mv[i + 1 : i + 3], "big"), p + 3
            else:
                raise _Fallback
            key = self._text(p, ln, end)
            p += ln
            if p >= end:
                raise _Fallback
            mv, i = at(p, 9 if end - p > 9 else end - p)
            t = mv[i]
            if t <= 0x7F:
                value: Any = t
                p += 1
            elif t >= 0xE0:
                value = t - 0x100
                p += 1
            elif t == 0xC0 or t == 0xC2 or t == 0xC3:
                value = None if t == 0xC0 else t == 0xC3
                p += 1
            elif 0xA0 <= t <= 0xBF or 0xD9 <= t <= 0xDB:
                if t <= 0xBF:
                    ln, p = t & 0x1F, p + 1
                else:
                    width = 1 << (t - 0xD9)
                    ln, p = int.from_bytes(mv[i + 1 : i + 1 + width], "big"), p + 1 + width
                value = self._text(p, ln, end)
                p += ln
            elif 0xC4 <= t <= 0xC6:
                width = 1 << (t - 0xC4)
                ln, p = int.from_bytes(mv[i + 1 : i + 1 + width], "big"), p + 1 + width
                if p + ln > end:
                    raise _Fallback
                value = self._bin(key, p, ln)
                p += ln
            elif t in _FIXED:
                fmt, width = _FIXED[t]
                value = fmt(mv, i + 1)[0]
                p += 1 + width
            else:
                raise _Fallback
            out[key] = value
        if p != end:
            raise _Fallback
        return out

    def _bin(self, field: str, p: int, ln: int) -> Any:
        """A bin value: copied out of the window when it fits there, else read to its place
        (an array of the sample type: its row of the batch)."""
        window = self.window
        if p >= window.start and p + ln <= window.end:
            return bytes(window.buf[p - window.start : p - window.start + ln])
        if field in self.array_fields:
            mv, i = window.at(p, min(ln, 2 + 255 + 1 + 8 * 64))
            layout = array_layout(mv[i:], ln)
            if layout is not None:
                dtype, shape, head = layout
                dest = self.filler.row(field, dtype, shape)
                self.unaligned += (p + head) % dtype.alignment != 0
                _pread_into(self.fd, dest, p + head)
                view = dest.view()
                view.flags.writeable = False
                return view
        data = os.pread(self.fd, ln, p)
        if len(data) < ln:
            raise _Fallback
        return data


def _pread_into(fd: int, dest: np.ndarray, offset: int) -> None:
    """Fill ``dest`` (C-contiguous) from ``fd`` at ``offset``: the one copy of the payload."""
    view = dest.reshape(-1).view(np.uint8).data
    got = 0
    while got < len(view):
        n = os.preadv(fd, [view[got:]], offset + got)
        if n <= 0:
            raise _Fallback  # cut short: the tar reader reports it
        got += n


def _padded(size: int) -> int:
    return (size + BLOCK - 1) & ~(BLOCK - 1)


def _size(hdr: bytes) -> int:
    try:
        size = _octal(hdr[124:136])
    except ValueError:
        raise _Fallback from None
    if size < 0:
        raise _Fallback
    return size


def _fixed() -> dict[int, tuple[Any, int]]:
    import struct

    return {
        t: (struct.Struct(">" + c).unpack_from, struct.calcsize(c))
        for t, c in (
            (0xCA, "f"),
            (0xCB, "d"),
            (0xCC, "B"),
            (0xCD, "H"),
            (0xCE, "I"),
            (0xCF, "Q"),
            (0xD0, "b"),
            (0xD1, "h"),
            (0xD2, "i"),
            (0xD3, "q"),
        )
    }


_FIXED = _fixed()
