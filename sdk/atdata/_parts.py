"""A dataset cut into parts that travel to other processes: Ray tasks, Dask partitions, pools.

Each part is a :class:`~atdata.dataset.Dataset` over some of the shards, with the same sample
type, lens and error policy, and the shard sources themselves (URLs, sha256s, S3 client
arguments, HTTP headers, the network guard's allow-list): whatever a worker needs arrives in
the pickled part, never from a record or the worker's environment.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Iterator
from typing import Any

from ._tar import iter_samples

__all__ = ["keyed_samples", "parts", "pickle_by_value"]


def _portable(source: Any) -> Any:
    """The source with the guard's allow-list decided here (not by a worker's environment)."""
    if getattr(source, "allow_private", False) is None:
        netguard = sys.modules.get("atdata.atmosphere.netguard")
        if netguard is not None:
            source = copy.copy(source)
            source.allow_private = netguard.private_network_allowed(None)
    return source


def parts(dataset: Any, shards_per_part: int = 1) -> list[Any]:
    """``dataset`` as datasets of ``shards_per_part`` consecutive shards each, in order."""
    if shards_per_part < 1:
        raise ValueError(f"shards_per_part must be >= 1, not {shards_per_part!r}")
    sources = [_portable(s) for s in dataset.shards]
    out = []
    for start in range(0, len(sources), shards_per_part):
        part = dataset._derive()
        part._sources = sources[start : start + shards_per_part]
        part.sample_count = None
        out.append(part)
    return out


def keyed_samples(part: Any) -> Iterator[tuple[str, str, Any]]:
    """``(shard name, sample key, sample)`` of a part, in order, decoded and viewed.

    Like iterating the part, with the key each sample had in its shard, so that a derived
    shard keeps the source's keys and a failure can say which sample it was.
    """
    from .dataset import _decoder, _sample_error

    decode = _decoder(part._decode_type)
    view = part._lens.get if part._lens is not None else None
    for source in part.shards:
        name = source.name
        stream = source.open()
        try:
            for raw in iter_samples(stream, name, allow_truncated=part.allow_truncated):
                key = raw["__key__"]
                try:
                    sample = decode(raw)
                except Exception as exc:
                    raise _sample_error(exc, name, key) from exc
                if view is not None:
                    sample = view(sample)
                yield name, key, sample
        finally:
            stream.close()


def pickle_by_value(obj: Any) -> bytes:
    """cloudpickle when available (functions and types defined in ``__main__`` travel too)."""
    try:
        import cloudpickle
    except ImportError:
        import pickle

        return pickle.dumps(obj)
    return cloudpickle.dumps(obj)


def unpickle(blob: bytes) -> Any:
    import pickle

    return pickle.loads(blob)
