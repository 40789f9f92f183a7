"""Writing samples into WebDataset shards: plain ustar, hashed as written.

:class:`ShardWriter` rolls samples into size- and count-limited shards; each shard's sha256 is
computed while its bytes go out (no second pass), and the dtype/shape of every array field is
observed on the way, so the :class:`ShardInfo` it returns is what a dataset record needs.
`write_samples` and the publisher's shard cutting both write through it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence, Sized
from dataclasses import dataclass, field
from typing import IO, Any

import numpy as np

from ._tar import END_BYTES, TarShardWriter, member_bytes
from .packable import as_packable, is_packable, sample_fields

__all__ = ["ShardInfo", "ShardWriter", "observe_arrays", "write_samples"]

log = logging.getLogger(__name__)

_FLUSH = 1 << 20


@dataclass(frozen=True)
class ShardInfo:
    """One written shard: where, how many samples and bytes, its sha256, the arrays seen."""

    path: str
    samples: int
    bytes: int
    sha256: str
    arrays: dict[str, dict[str, Any]] = field(default_factory=dict)


class _HashingSink:
    """A write-only file wrapper that hashes what passes and batches small writes.

    (Hashing on a helper thread was tried: on a loaded 2-core machine it cost more CPU and
    wall time than hashing inline, so the hash is updated here, once per ~1 MB.)
    """

    def __init__(self, f: IO[bytes]) -> None:
        self._f = f
        self._hash = hashlib.sha256()
        self._buf = bytearray()
        self.size = 0

    def write(self, data: Any) -> int:
        n = len(data) if not isinstance(data, memoryview) else data.nbytes
        if n >= 1 << 16:
            self.flush()
            self._hash.update(data)
            self._f.write(data)
        else:
            self._buf += data
            if len(self._buf) >= _FLUSH:
                self.flush()
        self.size += n
        return n

    def flush(self) -> None:
        if self._buf:
            self._hash.update(self._buf)
            self._f.write(self._buf)
            self._buf = bytearray()

    def hexdigest(self) -> str:
        """Flush and return the digest of everything written."""
        self.flush()
        return self._hash.hexdigest()


class _ArrayObserver:
    """Tracks dtype and shape per array field; a dimension that varies becomes None."""

    def __init__(self) -> None:
        self.seen: dict[str, dict[str, Any]] = {}
        self._last: dict[str, tuple[tuple[int, ...], np.dtype]] = {}

    def observe(self, name: str, arr: np.ndarray) -> None:
        key = (arr.shape, arr.dtype)
        if self._last.get(name) == key:
            return  # the common case: same as the previous sample
        self._last[name] = key
        entry = self.seen.get(name)
        if entry is None:
            self.seen[name] = {"dtype": arr.dtype.str, "shape": list(arr.shape)}
            return
        shape = entry["shape"]
        if shape is not None:
            if len(shape) != arr.ndim:
                entry["shape"] = None  # even the rank varies
            else:
                for i, d in enumerate(arr.shape):
                    if shape[i] is not None and shape[i] != d:
                        shape[i] = None
        if entry["dtype"] is not None and entry["dtype"] != arr.dtype.str:
            log.warning(
                "array field %r holds several dtypes (%s, %s)", name, entry["dtype"], arr.dtype.str
            )
            entry["dtype"] = None


class ShardWriter:
    """Samples into shards named ``pattern % index``, a new shard when the open one is full.

    :meth:`write` adds one sample (its tar members) to the open shard, first finishing that
    shard when the sample would take it past ``maxcount`` samples or ``maxsize`` bytes (a
    sample larger than ``maxsize`` gets a shard of its own), and opening the next one when none
    is open. :meth:`observe` records an array field of the sample just written for its shard's
    ``arrays``. :meth:`finish` ends the open shard and returns its :class:`ShardInfo`; ``shards``
    lists every finished one. As a context manager it finishes the last shard on success and
    closes it as it is on an error.
    """

    def __init__(
        self,
        pattern: str | os.PathLike[str],
        *,
        maxcount: int = 100_000,
        maxsize: int = 3_000_000_000,
        mtime: int | None = None,
    ) -> None:
        pattern = os.fspath(pattern)
        if "%" not in pattern:
            raise ValueError(
                f"pattern {pattern!r} needs a %-format for the shard index, e.g. -%06d"
            )
        if maxcount < 1 or maxsize < 1:
            raise ValueError("maxcount and maxsize must be positive")
        self.pattern = pattern
        self.maxcount = maxcount
        self.maxsize = maxsize
        self.mtime = mtime
        #: Every finished shard, in order.
        self.shards: list[ShardInfo] = []
        #: Samples in the open shard.
        self.samples = 0
        self._path = ""
        self._file: IO[bytes] | None = None
        self._sink: _HashingSink | None = None
        self._tar: TarShardWriter | None = None
        self._observer = _ArrayObserver()

    @property
    def bytes_written(self) -> int:
        """Bytes of the open shard so far (0 when none is open)."""
        return self._sink.size if self._sink is not None else 0

    def next_shard(self) -> str:
        """Finish the open shard (if any) and open the next; returns its path."""
        if self._tar is not None:
            self.finish()
        path = self.pattern % len(self.shards)
        parent = os.path.dirname(path)
        if parent:
            os.makedirs(parent, exist_ok=True)
        self._path = path
        self._file = open(path, "wb")  # noqa: SIM115 - closed in finish() or abort()
        self._sink = _HashingSink(self._file)
        self._tar = TarShardWriter(self._sink, mtime=self.mtime)
        self.samples = 0
        self._observer = _ArrayObserver()
        return path

    def write(self, members: Sequence[tuple[str, Any]], size: int | None = None) -> None:
        """Add one sample's members; ``size`` bounds the bytes they take (computed if None)."""
        if size is None:
            size = sum(member_bytes(name, memoryview(data).nbytes) for name, data in members)
        tar, samples = self._tar, self.samples
        if (
            tar is not None
            and samples
            and (samples >= self.maxcount or self.bytes_written + size + END_BYTES > self.maxsize)
        ):
            self.finish()
            tar = None
        if tar is None:
            self.next_shard()
            tar = self._tar
            assert tar is not None
        for name, data in members:
            tar.add(name, data)
        self.samples += 1

    def observe(self, name: str, arr: np.ndarray) -> None:
        """Note array field ``name`` of the sample just written (its dtype and shape)."""
        self._observer.observe(name, arr)

    def finish(self) -> ShardInfo:
        """End the open shard (end-of-archive blocks, sha256) and return what it holds."""
        if self._tar is None or self._sink is None or self._file is None:
            raise ValueError("no shard is open")
        self._tar.close()
        digest = self._sink.hexdigest()
        self._file.close()
        info = ShardInfo(self._path, self.samples, self._sink.size, digest, self._observer.seen)
        self.shards.append(info)
        self._file = self._sink = self._tar = None
        return info

    def abort(self) -> None:
        """Close the open shard as it is (no end-of-archive blocks: readers see it cut short)."""
        if self._file is not None:
            self._file.close()
        self._file = self._sink = self._tar = None

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is not None:
            self.abort()
        elif self._tar is not None:
            self.finish()


def _sample_shape(cls: type | None) -> tuple[str, tuple[str, ...]] | None:
    if cls is None or not is_packable(cls):
        return None
    packable = as_packable(cls)
    return packable.__atdata_name__, tuple(f.name for f in packable.__atdata_fields__)


def _check_same_type(previous: type | None, sample: Any, key: str) -> None:
    """Shards hold one sample type: a packable sample of another type is a mistake."""
    before, now = _sample_shape(previous), _sample_shape(type(sample))
    if previous is not None and before is not None and now is not None and before != now:
        raise TypeError(
            f"sample {key!r} is a {type(sample).__name__} ({now[0]}), but the samples "
            f"before it are {previous.__name__} ({before[0]}): shards hold one sample type"
        )


def _array_fields(sample: Any) -> Callable[[Any], Iterable[tuple[str, Any]]]:
    """A function listing ``(name, array)`` of a sample's array fields, chosen per type."""
    cls = type(sample)
    if is_packable(cls):
        names = [spec.name for spec in sample_fields(cls) if spec.is_array]
        return lambda s: ((n, getattr(s, n)) for n in names)

    def schema_free(s: Any) -> Iterable[tuple[str, Any]]:
        items = s.items() if isinstance(s, Mapping) else s.to_dict().items()
        return ((k, v) for k, v in items if isinstance(v, np.ndarray))

    return schema_free


def observe_arrays(samples: Iterable[Any]) -> dict[str, dict[str, Any]]:
    """The dtype and shape of each array field over ``samples`` (None where it varies).

    The same facts `write_samples` gathers while writing, for shards written some other way
    (`webdataset.TarWriter`, another tool) whose dataset record should still carry them.
    """
    observer = _ArrayObserver()
    arrays_of: Callable[[Any], Iterable[tuple[str, Any]]] | None = None
    for sample in samples:
        if arrays_of is None:
            arrays_of = _array_fields(sample)
        for name, arr in arrays_of(sample):
            if isinstance(arr, np.ndarray):
                observer.observe(name, arr)
    return observer.seen


def _members(sample: Any, key: str) -> tuple[str, list[tuple[str, Any]]]:
    """The tar members of one sample: its ``.msgpack`` message, or a WebDataset-style dict."""
    packed = getattr(sample, "packed", None)
    if packed is not None:
        return key, [(f"{key}.msgpack", packed)]
    if isinstance(sample, Mapping):
        key = str(sample.get("__key__", key))
        members = []
        for ext, value in sample.items():
            if ext.startswith("__"):
                continue
            if isinstance(value, str):
                value = value.encode("utf-8")
            if not isinstance(value, (bytes, bytearray, memoryview)):
                raise TypeError(
                    f"sample {key!r}: member {ext!r} must be bytes or str, got {type(value).__name__}"
                )
            members.append((f"{key}.{ext}", value))
        return key, members
    raise TypeError(f"cannot write a {type(sample).__name__}: not a packable sample or a dict")


def write_samples(
    samples: Iterable[Any],
    pattern: str | os.PathLike[str],
    *,
    maxcount: int = 100_000,
    maxsize: int = 3_000_000_000,
    key: Callable[[int, Any], str] | None = None,
    progress: bool | None = None,
    mtime: int | None = None,
) -> list[ShardInfo]:
    """Write samples into shards named ``pattern % shard_index`` (e.g. ``"out/d-%06d.tar"``).

    A new shard starts when the current one holds ``maxcount`` samples or the next sample would
    take it past ``maxsize`` bytes. Sample keys are the running index (``%08d``) unless ``key``
    gives one. A progress bar shows when stderr is a terminal (``progress`` overrides).
    Returns one :class:`ShardInfo` per shard.
    """
    writer = ShardWriter(pattern, maxcount=maxcount, maxsize=maxsize, mtime=mtime)
    total = len(samples) if isinstance(samples, Sized) else None
    if progress is None:
        progress = sys.stderr.isatty()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="sample", desc="writing")
    write, observe = writer.write, writer.observe
    arrays_of: Callable[[Any], Iterable[tuple[str, Any]]]
    array_type: type | None = None
    try:
        with writer:
            for index, sample in enumerate(samples):
                k = key(index, sample) if key is not None else f"{index:08d}"
                if type(sample) is not array_type:
                    _check_same_type(array_type, sample, k)
                    array_type = type(sample)
                    arrays_of = _array_fields(sample)
                packed = getattr(sample, "packed", None)
                if packed is not None:  # the common case: one .msgpack member
                    write(((k + ".msgpack", packed),), 1024 + len(packed))
                else:
                    write(_members(sample, k)[1])
                for name, arr in arrays_of(sample):
                    if isinstance(arr, np.ndarray):
                        observe(name, arr)
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return writer.shards
