"""``Dataset.torch()``: a torch ``IterableDataset`` for PyTorch's DataLoader.

torch is optional: this module imports it only when ``Dataset.torch()`` is called. The split is
the training loader's (:mod:`atdata._partition`): the epoch's global order depends on the seed
and epoch only, global batch ``j`` goes to rank ``j % world_size``, and within a rank the
DataLoader worker ``p % num_workers`` builds the rank's ``p``-th batch, so DataLoader's
round-robin over its workers yields the rank's batches in order, each sample once per epoch.

The epoch lives in a shared value, so ``set_epoch()`` in the training process reaches
persistent DataLoader workers too. ``state_dict()``/``load_state_dict()`` follow torchdata's
``StatefulDataLoader`` protocol (called in each worker, about that worker's batches).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
from collections.abc import Iterator
from multiprocessing.context import get_spawning_popen
from typing import TYPE_CHECKING, Any

import numpy as np

from ._access import ShardAccess
from ._collate import BatchLayout, check_pad, fill_batch, sample_dict
from ._partition import BatchPlan, rank_and_world
from .errors import LoaderError

if TYPE_CHECKING:
    from .dataset import Dataset

__all__ = ["TorchIterable", "to_torch"]

log = logging.getLogger(__name__)

try:
    import torch
    from torch.utils.data import IterableDataset, get_worker_info
except ImportError as exc:  # pragma: no cover - exercised only without torch
    raise ImportError("Dataset.torch() needs PyTorch: pip install torch") from exc

_STATE_FORMAT = "atdata.torch/1"


def to_torch(value: Any) -> Any:
    """Arrays become tensors (copied when read-only, since torch tensors are writable)."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "biufc":
            if value.dtype.byteorder == ">":
                value = value.astype(value.dtype.newbyteorder("="))
            elif not value.flags.writeable:
                value = value.copy()
            return torch.from_numpy(value)
        return value
    if isinstance(value, list) and value and all(isinstance(v, np.ndarray) for v in value):
        return [to_torch(v) for v in value]
    return value


class TorchIterable(IterableDataset[Any]):
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
        pad: int | str | None = None,
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
        self.pad = check_pad(pad)
        self.rank, self.world_size = rank_and_world(rank, world_size)
        # Shared with DataLoader workers (inherited or handed over at their start), so that
        # set_epoch() reaches persistent workers.
        self._shared_epoch: Any = mp.RawValue("q", 0)
        self._layout: BatchLayout | None = None
        self._resume: dict[str, Any] | None = None
        self._epoch_now = 0
        self._start = 0
        self._yielded = 0
        self._warned: set[str] = set()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if get_spawning_popen() is None:
            # Pickled outside a worker start (a copy, a checkpoint): a plain int then.
            state["_shared_epoch"] = int(self._shared_epoch.value)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if isinstance(self._shared_epoch, int):
            self._shared_epoch = mp.RawValue("q", self._shared_epoch)

    @property
    def epoch(self) -> int:
        return int(self._shared_epoch.value)

    def set_epoch(self, epoch: int) -> None:
        """Give the next pass its own shuffle (same seed + epoch -> same order)."""
        self._shared_epoch.value = int(epoch)

    def _reader(self) -> tuple[int, int]:
        """This process's DataLoader worker index and the number of workers."""
        info = get_worker_info()
        return (info.id, info.num_workers) if info is not None else (0, 1)

    # -- torchdata's Stateful protocol ---------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """This reader's place: epoch, where the epoch started, the batches it yielded."""
        worker, workers = self._reader()
        return {
            "format": _STATE_FORMAT,
            "fingerprint": self.dataset._feed_fingerprint(),
            "seed": self.seed,
            "batch_size": self.batch_size,
            "shuffle": self.shuffle,
            "drop_last": self.drop_last,
            "rank": self.rank,
            "world_size": self.world_size,
            "worker": worker,
            "workers": workers,
            "epoch": self._epoch_now,
            "start": self._start,
            "yielded": self._yielded,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Make the next pass continue the state's epoch after the batches it yielded."""
        if not isinstance(state, dict) or state.get("format") != _STATE_FORMAT:
            raise LoaderError("not a Dataset.torch() state (from TorchIterable.state_dict())")
        mine = self.state_dict()
        for key in ("fingerprint", "seed", "batch_size", "shuffle", "drop_last"):
            if state.get(key) != mine[key]:
                raise LoaderError(
                    f"this state belongs to another Dataset.torch() ({key}={state.get(key)!r}, "
                    f"this one has {mine[key]!r})"
                )
        for key in ("rank", "world_size", "workers"):
            if state.get(key) != mine[key]:
                raise LoaderError(
                    f"this state was taken with {key}={state.get(key)!r}, this reader has "
                    f"{mine[key]!r}: resume Dataset.torch() with the same topology (ds.loader() "
                    "resumes across topologies)"
                )
        self._resume = dict(state)

    # -- iteration -----------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Any]:
        ds = self.dataset
        worker, workers = self._reader()
        epoch, start, skip = self.epoch, 0, 0
        if self._resume is not None:
            epoch, start, skip = (
                self._resume["epoch"],
                self._resume["start"],
                self._resume["yielded"],
            )
            self._resume = None
        order = ds._feed_order(self.seed, epoch, self.shuffle)
        plan = BatchPlan(len(order), self.batch_size or 1, self.world_size, self.drop_last, start)
        mine = plan.rank_batches(self.rank)[worker::workers]
        self._epoch_now, self._start, self._yielded = epoch, start, skip
        reader = ShardAccess(ds, ds.shard_counts(), views=True)
        try:
            for j in mine[skip:]:
                samples = reader.read(order[plan.positions(j)])
                for reason, whole in reader.skips:
                    ds._skip(LoaderError(reason), whole_shard=whole)
                reader.skips.clear()
                if not samples:
                    self._yielded += 1
                    continue
                if self.batch_size is None:
                    item = {k: to_torch(v) for k, v in sample_dict(samples[0]).items()}
                else:
                    item = self._batch(samples)
                self._yielded += 1
                yield item
        finally:
            reader.close()

    def _batch(self, samples: list[Any]) -> dict[str, Any]:
        if self._layout is None:
            self._layout = BatchLayout.infer(
                self.dataset.sample_type, samples[0], self.batch_size or 1
            )
        layout = self._layout
        views = layout.views(np.empty(layout.slot_bytes, dtype=np.uint8))
        extra, listed = fill_batch(layout, samples, views, self.pad)
        for name in listed:
            if name not in self._warned:
                self._warned.add(name)
                log.warning(
                    "field %r holds arrays of different shapes: batches carry it as a list of "
                    'tensors; pass pad="max" (or pad=<length>) to ds.torch() or ds.loader() '
                    "for one padded tensor and a %s_mask",
                    name,
                    name,
                )
        out: dict[str, Any] = {}
        n = len(samples)
        for f in layout.fields:
            if f.name in extra:
                out[f.name] = to_torch(extra[f.name])
                mask = extra.get(f"{f.name}_mask")
                if mask is not None:
                    out[f"{f.name}_mask"] = torch.from_numpy(mask)
            else:
                out[f.name] = torch.from_numpy(views[f.name][:n])
        return out
