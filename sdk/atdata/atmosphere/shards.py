"""Gathering what a dataset record says about its shards, and cutting shards to a size limit.

`publish_dataset` takes `ShardInfo`s (from `write_samples`), plain paths or a `Dataset`; each
becomes a `ShardInfo` (path, samples, bytes, sha256, arrays). A PDS caps blob size, so a shard
over the cap is cut at sample boundaries into smaller tars (through the same `ShardWriter` as
`write_samples`) before anything is uploaded.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from .._sources import LocalShard
from .._tar import END_BYTES, iter_samples, member_bytes
from ..dataset import Dataset
from ..errors import AtdataError
from ..writer import ShardInfo, ShardWriter

__all__ = [
    "PublishError",
    "cut_shard",
    "gather_shards",
    "merge_arrays",
    "sha256_file",
]


class PublishError(AtdataError):
    """A record or its data could not be published (nothing, or nothing more, was written)."""


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The hex sha256 of a file, read in 1 MiB pieces."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _hash_and_count(path: str) -> tuple[int, int, str]:
    with open(path, "rb") as f:
        samples = sum(1 for _ in iter_samples(f, path))
    return samples, os.path.getsize(path), sha256_file(path)


def gather_shards(shards: Any) -> list[ShardInfo]:
    """`ShardInfo` list, path list or a local `Dataset` -> facts about each shard."""
    if isinstance(shards, Dataset):
        items: list[Any] = []
        for src in shards.shards:
            if not isinstance(src, LocalShard):
                raise PublishError(f"can only publish local shards; {src.name} is not local")
            items.append(str(src.path))
    elif isinstance(shards, str | os.PathLike):
        items = [shards]
    else:
        items = list(shards)
    if not items:
        raise PublishError("no shards to publish")
    out: list[ShardInfo] = []
    for item in items:
        if isinstance(item, str | os.PathLike):
            path = os.fspath(item)
            if not os.path.isfile(path):
                raise PublishError(f"shard {path} does not exist")
            samples, size, sha = _hash_and_count(path)
            out.append(ShardInfo(path, samples, size, sha))
        elif all(hasattr(item, a) for a in ("path", "samples", "bytes", "sha256")):
            if not os.path.isfile(item.path):
                raise PublishError(f"shard {item.path} does not exist")
            actual = os.path.getsize(item.path)
            if actual != item.bytes:
                raise PublishError(
                    f"shard {item.path} has {actual} bytes, its info says {item.bytes}"
                )
            out.append(
                ShardInfo(
                    str(item.path),
                    int(item.samples),
                    int(item.bytes),
                    str(item.sha256),
                    dict(getattr(item, "arrays", {}) or {}),
                )
            )
        else:
            raise PublishError(
                f"cannot publish {item!r}: give ShardInfo objects, paths or a Dataset"
            )
    return out


def merge_arrays(shards: Iterable[ShardInfo]) -> list[dict[str, Any]]:
    """Per NDArray field: one dtype and a shape with -1 where shards (or samples) disagree."""
    merged: dict[str, dict[str, Any]] = {}
    for s in shards:
        for name, info in s.arrays.items():
            dtype = str(info.get("dtype"))
            shape = [(-1 if d is None else int(d)) for d in info.get("shape") or []]
            if name not in merged:
                merged[name] = {"field": name, "dtype": dtype, "shape": shape}
                continue
            m = merged[name]
            if m["dtype"] != dtype:
                raise PublishError(
                    f"field {name!r} has dtype {m['dtype']} and {dtype} in different shards"
                )
            if len(m["shape"]) != len(shape):
                m["shape"] = []  # rank varies: nothing to say about the shape
            else:
                m["shape"] = [a if a == b else -1 for a, b in zip(m["shape"], shape, strict=True)]
    return list(merged.values())


def cut_shard(shard: ShardInfo, max_bytes: int, out_dir: str | Path) -> list[ShardInfo]:
    """Rewrite `shard` as several tars of at most `max_bytes` each, cut between samples.

    Raises `PublishError` when one sample alone does not fit.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = Path(shard.path).name.removesuffix(".tar").replace("%", "%%")
    writer = ShardWriter(out_dir / f"{stem}-part%04d.tar", maxcount=1 << 62, maxsize=max_bytes)
    with open(shard.path, "rb") as f, writer:
        for sample in iter_samples(f, shard.path):
            key = sample.pop("__key__")
            members = [(f"{key}.{ext}", bytes(data)) for ext, data in sample.items()]
            need = sum(member_bytes(name, len(data)) for name, data in members)
            if need + END_BYTES > max_bytes:
                raise PublishError(
                    f"sample {key!r} of {shard.path} needs {need} bytes, over the PDS blob limit "
                    f"of {max_bytes} bytes: write smaller samples or use S3/HTTP storage"
                )
            writer.write(members, need)
    # The pieces hold the shard's samples: the same array facts.
    return [replace(piece, arrays=dict(shard.arrays)) for piece in writer.shards]


def remap_splits(
    splits: dict[str, Sequence[int]] | None, mapping: list[list[int]], n_shards: int
) -> list[dict[str, Any]]:
    """Splits as record entries, with original shard indices mapped to the published ones."""
    out = []
    for name, indices in (splits or {}).items():
        new: list[int] = []
        for i in indices:
            if type(i) is not int or not 0 <= i < n_shards:
                raise PublishError(f"split {name!r} names shard {i!r}; there are {n_shards} shards")
            new.extend(mapping[i])
        out.append({"name": name, "shards": new})
    return out
