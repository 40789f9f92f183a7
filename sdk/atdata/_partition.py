"""Which reader gets which sample: an epoch's global order and its split, as pure functions.

Every reading path with more than one reader (the training loader, ``Dataset.torch()``, mixes)
asks the same two questions, and answers them here without touching data:

* :func:`epoch_order` -- the epoch's global sample order, a permutation of global sample ids
  (shard ``s`` holds ids ``offsets[s] .. offsets[s+1]-1``). It depends on the shard sample
  counts, the seed and the epoch only: never on how many workers or ranks read it. Shuffling is
  two-level, like MosaicML Streaming's block shuffles: the shard order is shuffled, consecutive
  shards are grouped into blocks of at least ``block`` samples, and the samples of each block
  are shuffled together (so a reader touches one block's shards at a time).
* :class:`BatchPlan` -- the global order cut into batches of ``batch_size`` from a starting
  sample (where a resumed epoch picks up), batch ``j`` going to rank ``j % world_size``. The
  rank's batches are then read by its workers in any split (the loader reorders them), so the
  order a rank yields is the same with 0 or 8 workers, and the ranks together yield the global
  order: each sample exactly once per epoch.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "BLOCK_SAMPLES",
    "BatchPlan",
    "epoch_order",
    "fingerprint",
    "locate",
    "rank_and_world",
    "rng_for",
    "shard_offsets",
]


def rank_and_world(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """This reader's rank and the number of ranks: as given, else from an initialised
    ``torch.distributed`` process group, else rank 0 of 1."""
    if rank is None or world_size is None:
        torch = sys.modules.get("torch")  # not imported: no process group can exist
        dist = getattr(torch, "distributed", None)
        if dist is not None and dist.is_available() and dist.is_initialized():
            rank = dist.get_rank() if rank is None else rank
            world_size = dist.get_world_size() if world_size is None else world_size
    rank = 0 if rank is None else int(rank)
    world_size = 1 if world_size is None else int(world_size)
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside world_size {world_size}")
    return rank, world_size


#: Samples shuffled together (whole shards are grouped until a block holds at least this many).
BLOCK_SAMPLES = 1000


def rng_for(seed: int, *keys: int) -> np.random.Generator:
    """A generator that depends on ``seed`` and ``keys`` only (any ints, negative included)."""
    mask = (1 << 64) - 1
    return np.random.default_rng([int(seed) & mask, *(int(k) & mask for k in keys)])


def shard_offsets(counts: Sequence[int]) -> np.ndarray:
    """``offsets[s]``: the global id of shard ``s``'s first sample; the last entry is the total."""
    out = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(np.asarray(counts, dtype=np.int64), out=out[1:])
    return out


def locate(ids: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Global ids -> (shard index, index within the shard)."""
    shard = np.searchsorted(offsets, ids, side="right") - 1
    return shard, ids - offsets[shard]


def epoch_order(
    counts: Sequence[int],
    *,
    seed: int,
    epoch: int,
    shuffle: bool = True,
    block: int = BLOCK_SAMPLES,
) -> np.ndarray:
    """The epoch's global order of sample ids (int64); storage order when not ``shuffle``."""
    offsets = shard_offsets(counts)
    total = int(offsets[-1])
    if not shuffle:
        return np.arange(total, dtype=np.int64)
    rng = rng_for(seed, epoch)
    pieces: list[np.ndarray] = []
    current: list[np.ndarray] = []
    size = 0
    for s in rng.permutation(len(counts)):
        n = int(counts[s])
        if not n:
            continue
        current.append(np.arange(offsets[s], offsets[s] + n, dtype=np.int64))
        size += n
        if size >= block:
            ids = np.concatenate(current)
            rng.shuffle(ids)
            pieces.append(ids)
            current, size = [], 0
    if current:
        ids = np.concatenate(current)
        rng.shuffle(ids)
        pieces.append(ids)
    return np.concatenate(pieces) if pieces else np.empty(0, dtype=np.int64)


@dataclass(frozen=True)
class BatchPlan:
    """An epoch of ``total`` samples cut into batches, from sample ``start`` on, over ranks.

    Global batch ``j`` holds positions ``start + j*batch_size`` up to the next batch (the last
    one may be short, or dropped with ``drop_last``) and belongs to rank ``j % world_size``.
    With ``drop_last`` every rank also gets the same number of batches (the trailing ones that
    would leave some ranks a batch short are dropped, as data-parallel training needs).
    """

    total: int
    batch_size: int
    world_size: int = 1
    drop_last: bool = False
    start: int = 0

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be positive, not {self.batch_size}")
        if self.world_size < 1:
            raise ValueError(f"world_size must be positive, not {self.world_size}")
        if not 0 <= self.start <= max(self.total, 0):
            raise ValueError(f"start {self.start} is outside an epoch of {self.total} samples")

    @property
    def batches(self) -> int:
        """Global batches left in the epoch (from ``start``)."""
        left = self.total - self.start
        if self.drop_last:
            full = left // self.batch_size
            return full - full % self.world_size
        return -(-left // self.batch_size)

    def rank_batches(self, rank: int) -> range:
        """The global batch indices of ``rank``, in the order it yields them."""
        if not 0 <= rank < self.world_size:
            raise ValueError(f"rank {rank} is outside world_size {self.world_size}")
        return range(rank, self.batches, self.world_size)

    def positions(self, batch: int) -> slice:
        """The positions (into the epoch's order) of global batch ``batch``."""
        lo = self.start + batch * self.batch_size
        return slice(lo, min(lo + self.batch_size, self.total))

    def samples_after(self, rank_batches_done: int) -> int:
        """The epoch position reached once every rank yielded ``rank_batches_done`` batches.

        Ranks advance in lockstep in data-parallel training, so one rank's count stands for all.
        """
        done = self.start + rank_batches_done * self.world_size * self.batch_size
        return min(done, self.total)


def fingerprint(parts: Sequence[Any]) -> str:
    """A short digest of what an epoch order is built from (resume states carry it)."""
    return hashlib.sha256(repr(list(parts)).encode()).hexdigest()[:16]
