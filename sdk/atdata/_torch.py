"""A torch ``IterableDataset`` over a Dataset: shards split across workers and ranks.

torch is optional: this module imports it only when ``Dataset.torch()`` is called. Each
(rank, worker) pair takes every ``n``-th shard of the epoch's shard order, so every sample is
read once per epoch; when there are fewer shards than readers, every reader scans all shards
and keeps every ``n``-th sample instead (still exactly once, at the cost of redundant reads).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from .batch import SampleBatch

if TYPE_CHECKING:
    from .dataset import Dataset

__all__ = ["TorchIterable", "to_torch"]

log = logging.getLogger(__name__)

try:
    import torch
    from torch.utils.data import IterableDataset, get_worker_info
except ImportError as exc:  # pragma: no cover - exercised only without torch
    raise ImportError("Dataset.torch() needs PyTorch: pip install torch") from exc


def to_torch(value: Any) -> Any:
    """Arrays become tensors (copied when read-only, since torch tensors are writable)."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "biufc" and value.dtype.byteorder not in (">",):
            if not value.flags.writeable:
                value = value.copy()
            return torch.from_numpy(value)
        return value
    return value


def _sample_dict(sample: Any) -> dict[str, Any]:
    if hasattr(sample, "to_dict"):
        return dict(sample.to_dict())
    from dataclasses import fields, is_dataclass

    if is_dataclass(sample):
        return {f.name: getattr(sample, f.name) for f in fields(sample)}
    return dict(vars(sample))


class TorchIterable(IterableDataset):  # type: ignore[type-arg]
    """Batches as ``dict[str, Tensor | list]``; use ``DataLoader(it, batch_size=None)``."""

    def __init__(
        self,
        dataset: Dataset[Any],
        *,
        batch_size: int | None = 32,
        shuffle: bool = True,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        buffer: int = 1000,
        drop_last: bool = False,
    ) -> None:
        super().__init__()
        if batch_size is not None and batch_size < 1:
            raise ValueError("batch_size must be positive or None")
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.buffer = buffer
        self.drop_last = drop_last
        if rank is None or world_size is None:
            dist = getattr(torch, "distributed", None)
            if dist is not None and dist.is_available() and dist.is_initialized():
                rank = dist.get_rank() if rank is None else rank
                world_size = dist.get_world_size() if world_size is None else world_size
        self.rank = 0 if rank is None else rank
        self.world_size = 1 if world_size is None else world_size
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} is outside world_size {self.world_size}")
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Give the next pass its own shuffle (same seed + epoch -> same order)."""
        self.epoch = int(epoch)

    def _reader(self) -> tuple[int, int]:
        """This reader's index among all (rank, worker) readers, and their count."""
        info = get_worker_info()
        workers, worker = (info.num_workers, info.id) if info is not None else (1, 0)
        return self.rank * workers + worker, self.world_size * workers

    def __iter__(self) -> Iterator[Any]:
        ds = self.dataset
        index, readers = self._reader()
        sources = ds.shards
        # The shard order of an epoch is the same in every reader, so the split is consistent.
        rng = random.Random(self.seed * 1_000_003 + self.epoch)
        if self.shuffle:
            rng.shuffle(sources)
        if len(sources) >= readers:
            mine = sources[index::readers]
            if len(sources) % readers:
                log.debug(
                    "%d shards over %d readers: per-reader sample counts differ",
                    len(sources),
                    readers,
                )
            keep = None
        else:
            mine = sources
            keep = _modulo(index, readers)
        samples = ds._iter_sources(mine, keep)
        if self.shuffle:
            from .dataset import shuffle_buffer

            local = random.Random(self.seed * 1_000_003 + self.epoch + 7919 * (index + 1))
            samples = shuffle_buffer(samples, local, self.buffer)
        if self.batch_size is None:
            for sample in samples:
                yield {k: to_torch(v) for k, v in _sample_dict(sample).items()}
            return
        chunk: list[Any] = []
        for sample in samples:
            chunk.append(sample)
            if len(chunk) == self.batch_size:
                yield _batch_dict(chunk, ds.sample_type)
                chunk = []
        if chunk and not self.drop_last:
            yield _batch_dict(chunk, ds.sample_type)


def _modulo(index: int, readers: int) -> Any:
    return lambda i: i % readers == index


def _batch_dict(samples: list[Any], sample_type: type) -> dict[str, Any]:
    batch = SampleBatch(samples, sample_type)
    return {name: to_torch(batch[name]) for name in batch.fields()}
