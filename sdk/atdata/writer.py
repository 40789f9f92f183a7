"""Writing samples into WebDataset shards: plain ustar, hashed as written.

Each shard's sha256 is computed while its bytes go out (no second pass), and the dtype/shape of
every array field is observed on the way, so the returned :class:`ShardInfo` is what a dataset
record needs.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

import numpy as np

from ._tar import TarShardWriter
from .packable import is_packable, sample_fields

__all__ = ["ShardInfo", "observe_arrays", "write_samples"]

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


def _sample_shape(cls: type | None) -> tuple[str, tuple[str, ...]] | None:
    fields = getattr(cls, "__atdata_fields__", None)
    if fields is None:
        return None
    return cls.__atdata_name__, tuple(f.name for f in fields)  # type: ignore[union-attr]


def _check_same_type(previous: type | None, sample: Any, key: str) -> None:
    """Shards hold one sample type: a packable sample of another type is a mistake."""
    before, now = _sample_shape(previous), _sample_shape(type(sample))
    if before is not None and now is not None and before != now:
        raise TypeError(
            f"sample {key!r} is a {type(sample).__name__} ({now[0]}), but the samples "
            f"before it are {previous.__name__} ({before[0]}): shards hold one sample type"  # type: ignore[union-attr]
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
    pattern = os.fspath(pattern)
    if "%" not in pattern:
        raise ValueError(f"pattern {pattern!r} needs a %-format for the shard index, e.g. -%06d")
    if maxcount < 1 or maxsize < 1:
        raise ValueError("maxcount and maxsize must be positive")
    total = len(samples) if hasattr(samples, "__len__") else None  # type: ignore[arg-type]
    if progress is None:
        progress = sys.stderr.isatty()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="sample", desc="writing")

    infos: list[ShardInfo] = []
    shard_index = 0
    f: IO[bytes] | None = None
    sink: _HashingSink | None = None
    tar: TarShardWriter | None = None
    path = ""
    count = 0
    observer = _ArrayObserver()
    arrays_of: Callable[[Any], Iterable[tuple[str, Any]]] | None = None
    array_type: type | None = None

    def finish() -> None:
        nonlocal f, sink, tar
        assert f is not None and sink is not None and tar is not None
        tar.close()
        digest = sink.hexdigest()
        f.close()
        infos.append(ShardInfo(path, count, sink.size, digest, observer.seen))
        f = sink = tar = None

    try:
        for index, sample in enumerate(samples):
            k = key(index, sample) if key is not None else f"{index:08d}"
            packed = getattr(sample, "packed", None)
            if packed is not None:  # the common case: one .msgpack member
                members: list[tuple[str, Any]] = [(k + ".msgpack", packed)]
                size = 1024 + len(packed)
            else:
                k, members = _members(sample, k)
                size = sum(512 + len(data) + (-len(data) % 512) for _, data in members)
            if sink is not None and (
                count >= maxcount or (count and sink.size + size + 1024 > maxsize)
            ):
                finish()
                shard_index += 1
            if tar is None:
                path = pattern % shard_index
                parent = os.path.dirname(path)
                if parent:
                    os.makedirs(parent, exist_ok=True)
                f = open(path, "wb")  # noqa: SIM115 - closed in finish()
                sink = _HashingSink(f)
                tar = TarShardWriter(sink, mtime=mtime)  # type: ignore[arg-type]
                count = 0
                observer = _ArrayObserver()
            for name, data in members:
                tar.add(name, data)
            if type(sample) is not array_type:
                _check_same_type(array_type, sample, k)
                array_type = type(sample)
                arrays_of = _array_fields(sample)
            for name, arr in arrays_of(sample):  # type: ignore[misc]
                if isinstance(arr, np.ndarray):
                    observer.observe(name, arr)
            count += 1
            if bar is not None:
                bar.update(1)
        if tar is not None:
            finish()
    except BaseException:
        if f is not None:
            f.close()
        raise
    finally:
        if bar is not None:
            bar.close()
    return infos
