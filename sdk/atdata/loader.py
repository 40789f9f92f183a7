"""The training loader: batches decoded by worker processes straight into shared memory.

``ds.loader(...)`` is what a training loop iterates. Why not PyTorch's DataLoader over
``ds.torch()``: there each batch is built as tensors in a worker, pickled through shared-memory
files, and copied once more by the pin-memory thread, which costs more than decoding (workers
made it slower than none). Here:

* a **ring of batch slots** is allocated once in shared memory; worker processes decode
  samples and copy each field once, from the page cache into its place in a slot (the layout:
  :class:`~atdata._collate.BatchLayout`);
* the training process hands the slot's arrays out as tensors **without a copy** (CPU), or,
  with ``device="cuda"``, copies the slot (page-locked through ``cudaHostRegister``) to the GPU
  asynchronously on its own stream; a slot is refilled only after that copy completed, or on
  CPU once every tensor of the batch has been released;
* which samples form which batch is decided by :mod:`atdata._partition` from the seed and the
  epoch only, so the order is the same with any number of workers, ranks split it exactly once,
  and :meth:`Loader.state_dict` / :meth:`Loader.load_state_dict` resume mid-epoch exactly.

Ring size: ``RING_SLOTS_PER_WORKER`` slots per worker plus ``RING_SPARE_SLOTS`` (the in-process
path, ``workers=0``, keeps ``RING_SPARE_SLOTS + 1``), capped at ``RING_MAX_BYTES`` of memory in
all but never fewer than ``workers + 1`` slots. Worker failures, a dead worker (even SIGKILL)
and Ctrl-C end the epoch with a :class:`~atdata.errors.LoaderError` (or the KeyboardInterrupt)
after the workers are stopped; the shared memory has no name in ``/dev/shm`` once the workers
attached to it, so nothing can leak there.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import multiprocessing as mp
import os
import signal
import traceback
import warnings
import weakref
from collections import deque
from collections.abc import Iterator
from multiprocessing import connection, shared_memory
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ._collate import BatchLayout, check_pad, fill_batch
from ._partition import BatchPlan, rank_and_world
from .errors import LoaderError

if TYPE_CHECKING:
    import torch

__all__ = ["RING_MAX_BYTES", "RING_SLOTS_PER_WORKER", "RING_SPARE_SLOTS", "Loader"]

log = logging.getLogger(__name__)

#: Slots per worker: one being filled while one waits to be taken.
RING_SLOTS_PER_WORKER = 2
#: Slots beyond the workers' share, for batches the training loop still holds.
RING_SPARE_SLOTS = 2
#: Most memory the ring may take (the ring still gets ``workers + 1`` slots).
RING_MAX_BYTES = 1 << 30

_STATE_FORMAT = "atdata.loader/1"


def import_torch() -> Any:
    """torch, or an ImportError that says how to install it."""
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - exercised only without torch
        raise ImportError("the atdata training loader needs PyTorch: pip install torch") from exc
    return torch


class Feed(Protocol):
    """What a loader reads: a :class:`~atdata.Dataset` or a mix of datasets."""

    @property
    def sample_type(self) -> type: ...

    def _feed_total(self) -> int: ...
    def _feed_known_total(self) -> int | None: ...
    def _feed_order(self, seed: int, epoch: int, shuffle: bool) -> np.ndarray: ...
    def _feed_reader(self) -> Any: ...
    def _feed_fingerprint(self) -> str: ...
    def _feed_first(self) -> Any: ...
    def _feed_skip(self, reason: str, whole_shard: bool) -> None: ...


class Loader:
    """Dict batches of tensors over a dataset, one epoch per ``for``; see the module docs.

    Built by :meth:`atdata.Dataset.loader` (and on what :func:`atdata.mix` returns). Batches are
    ``{field: value}``: NDArray fields as stacked tensors, int/float/bool fields as tensors,
    str/bytes (and optional fields holding None) as lists; ragged NDArray fields padded, with a
    ``<field>_mask``, when ``pad`` is ``"max"`` or a length, else lists of tensors.

    Tensors handed out are never overwritten: on CPU they share the ring slot they were
    decoded into, which is refilled only once every tensor of that batch (and every view of
    one) has been released; if the loop keeps so many batches that the workers would run out
    of slots, further batches are copied out of the ring instead. On CUDA they are fresh
    device tensors.
    """

    def __init__(
        self,
        feed: Feed,
        *,
        batch_size: int = 32,
        workers: int = 0,
        device: str | torch.device | None = None,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        rank: int | None = None,
        world_size: int | None = None,
        pad: int | str | None = None,
    ) -> None:
        torch = import_torch()
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, not {batch_size!r}")
        if not isinstance(workers, int) or isinstance(workers, bool) or workers < 0:
            raise ValueError(f"workers must be an int >= 0, not {workers!r}")
        self.feed = feed
        self.batch_size = batch_size
        self.workers = workers
        self.device = torch.device(device) if device is not None else None
        if self.device is not None and self.device.type == "cuda" and not torch.cuda.is_available():
            raise LoaderError(f"device={device!r}, but torch finds no CUDA device here")
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        self.pad = check_pad(pad)
        self.rank, self.world_size = rank_and_world(rank, world_size)
        self._next_epoch = 0
        self._next_start = 0
        self._epoch = 0
        self._plan: BatchPlan | None = None
        self._done = 0
        # True from the start of an epoch until set_epoch()/load_state_dict(): state_dict() then
        # describes that epoch, also after a loop that stopped early (the next ``for`` starts
        # the next epoch, as each ``for`` is one epoch).
        self._running = False
        self._layout: BatchLayout | None = None
        self._pool: _WorkerPool | None = None
        self._reader: Any = None  # the in-process path's shard reader and ring (kept)
        self._ring: _Ring | None = None
        self._warned: set[str] = set()
        self._finalizer = weakref.finalize(self, _close_pool, [None])

    # -- epochs, length, state -----------------------------------------------------------------

    @property
    def epoch(self) -> int:
        """The epoch last started (the one set for the next ``for`` before any)."""
        return self._epoch if self._running else self._next_epoch

    @property
    def ring_bytes(self) -> int:
        """Memory of the batch ring (shared with the workers); 0 before the first epoch."""
        ring = self._pool.ring if self._pool is not None else self._ring
        return ring.size if ring is not None else 0

    def set_epoch(self, epoch: int) -> None:
        """Make the next ``for`` run epoch ``epoch`` (from its start)."""
        self._next_epoch = int(epoch)
        self._next_start = 0
        self._running = False

    def _plan_for(self, total: int, start: int) -> BatchPlan:
        return BatchPlan(total, self.batch_size, self.world_size, self.drop_last, start)

    def __len__(self) -> int:
        """Batches this rank yields in an epoch (the next one, when resuming mid-epoch)."""
        total = self.feed._feed_known_total()
        if total is None:
            total = self.feed._feed_total()
        start = min(self._next_start, total)
        return len(self._plan_for(total, start).rank_batches(self.rank))

    def state_dict(self) -> dict[str, Any]:
        """Where this loader is, as a plain picklable dict (see :meth:`load_state_dict`).

        Taken inside the loop, it counts the batches yielded so far as consumed. Ranks of a
        data-parallel job advance in lockstep, so the state of any one rank (usually rank 0)
        describes the whole job.
        """
        epoch, position = self._next_epoch, self._next_start
        if self._running and self._plan is not None:
            plan = self._plan
            if self._done >= len(plan.rank_batches(self.rank)):
                epoch, position = self._epoch + 1, 0
            else:
                epoch, position = self._epoch, plan.samples_after(self._done)
        return {
            "format": _STATE_FORMAT,
            "fingerprint": self.feed._feed_fingerprint(),
            "seed": self.seed,
            "batch_size": self.batch_size,
            "shuffle": self.shuffle,
            "drop_last": self.drop_last,
            "epoch": epoch,
            "position": position,
            "rank": self.rank,
            "world_size": self.world_size,
            "workers": self.workers,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue where ``state`` was taken: the next ``for`` yields the rest of its epoch.

        Any number of workers and ranks may resume it: with the same topology the order is the
        uninterrupted run's, with another one the rest of the epoch still comes exactly once
        across all ranks. A state of a loader over other shards, another seed, batch size,
        shuffle or drop_last setting is refused with a :class:`LoaderError`.
        """
        if not isinstance(state, dict) or state.get("format") != _STATE_FORMAT:
            raise LoaderError("not an atdata loader state (from Loader.state_dict())")
        mine = self.state_dict()
        for key, what in (
            ("fingerprint", "shards or sample counts"),
            ("seed", "seed"),
            ("batch_size", "batch size"),
            ("shuffle", "shuffle setting"),
            ("drop_last", "drop_last setting"),
        ):
            if state.get(key) != mine[key]:
                raise LoaderError(
                    f"this loader state belongs to a loader with another {what} "
                    f"({key}={state.get(key)!r}, this loader has {mine[key]!r})"
                )
        self._next_epoch = int(state["epoch"])
        self._next_start = int(state["position"])
        self._running = False

    # -- iteration -----------------------------------------------------------------------------

    def __iter__(self) -> Iterator[dict[str, Any]]:
        epoch, start = self._next_epoch, self._next_start
        self._next_epoch, self._next_start = epoch + 1, 0
        plan, batches = self._batches_for(epoch, start)
        self._epoch, self._plan, self._done, self._running = epoch, plan, 0, True
        if not batches:
            return iter(())
        layout = self._layout_for()
        if self.workers:
            return self._from_workers(layout, batches, epoch)
        return self._in_process(layout, batches)

    def _batches_for(self, epoch: int, start: int) -> tuple[BatchPlan, list[np.ndarray]]:
        """The plan of an epoch from ``start`` on and this rank's batches (sample ids)."""
        order = self.feed._feed_order(self.seed, epoch, self.shuffle)
        if start > len(order):
            raise LoaderError(
                f"resume position {start} is past the end of epoch {epoch} ({len(order)} samples)"
            )
        plan = self._plan_for(len(order), start)
        return plan, [order[plan.positions(j)] for j in plan.rank_batches(self.rank)]

    def _layout_for(self) -> BatchLayout:
        if self._layout is None:
            first = self.feed._feed_first()
            self._layout = BatchLayout.infer(self.feed.sample_type, first, self.batch_size)
        return self._layout

    def _slot_count(self, layout: BatchLayout) -> int:
        wanted = RING_SLOTS_PER_WORKER * self.workers + RING_SPARE_SLOTS
        if not self.workers:
            wanted = RING_SPARE_SLOTS + 1
        fits = max(1, RING_MAX_BYTES // layout.slot_bytes)
        return max(min(wanted, fits), self.workers + 1)

    def _in_process(
        self, layout: BatchLayout, batches: list[np.ndarray]
    ) -> Iterator[dict[str, Any]]:
        ring = self._ring
        if ring is None or ring.layout is not layout:
            ring = self._ring = _Ring(layout, self._slot_count(layout), None, self.device)
        # Kept across epochs, as a worker keeps its own: the shards it holds stay mapped.
        reader = self._reader
        if reader is None:
            reader = self._reader = self.feed._feed_reader()
        try:
            for ids in batches:
                samples = reader.read(ids)
                self._report(reader)
                slot = ring.take()
                views = ring.views(slot) if slot is not None else _fresh(layout)
                extra, listed = fill_batch(layout, samples, views, self.pad)
                batch = ring.hand_out(slot, views, len(samples), extra, reserve=0)
                self._warn(listed)
                self._done += 1
                yield batch
        finally:
            ring.settle()

    def _from_workers(
        self, layout: BatchLayout, batches: list[np.ndarray], epoch: int
    ) -> Iterator[dict[str, Any]]:
        pool = self._pool
        if pool is None or pool.layout is not layout or not pool.alive():
            if pool is not None:
                pool.close()
            pool = self._pool = _WorkerPool(
                self.feed, layout, self.pad, self.workers, self._slot_count(layout), self.device
            )
            self._finalizer.detach()
            self._finalizer = weakref.finalize(self, _close_pool, [pool])
        ring = pool.ring
        ready: dict[int, Any] = {}
        ahead = pool.ahead
        pool.ahead = None
        if ahead is not None and ahead.matches(batches):
            # The workers started this epoch while the last one was finishing: adopt their work.
            gen, sent = ahead.generation, ahead.sent
            early = ahead.received
        else:
            if ahead is not None:
                for msg in ahead.received:  # speculated for an epoch that did not come
                    ring.give_back(msg[1])
            pool.generation += 1
            gen, sent, early = pool.generation, 0, []
        want = 0
        finished = False

        def take(msg: Any) -> None:
            pos, slot = msg[0][1], msg[1]
            if len(msg) == 3:  # it failed: raised when its turn comes
                ring.give_back(slot)
                ready[pos] = msg[2]
                return
            for reason, whole in msg[5]:
                self.feed._feed_skip(reason, whole)
            ready[pos] = (slot, msg[2], msg[3], msg[4])

        try:
            for msg in early:
                take(msg)
            while want < len(batches):
                while sent < len(batches):
                    slot = ring.take()
                    if slot is None:
                        break
                    pool.submit(pool.idlest(), (gen, sent), batches[sent], slot)
                    sent += 1
                if sent == len(batches):
                    self._run_ahead(pool, epoch)
                while want not in ready:
                    for msg in pool.receive():
                        g = msg[0][0]
                        if g == gen:
                            take(msg)
                        elif pool.ahead is not None and g == pool.ahead.generation:
                            pool.ahead.received.append(msg)
                        else:
                            ring.give_back(msg[1])  # a batch of an abandoned epoch
                result = ready.pop(want)
                if isinstance(result, BaseException):
                    raise result
                slot, n, extra, listed = result
                batch = ring.hand_out(slot, ring.views(slot), n, extra, reserve=self.workers)
                self._warn(listed)
                want += 1
                self._done += 1
                yield batch
            finished = True
        except BaseException:
            if not finished:
                # A failure, Ctrl-C or a dead worker: stop them all, leave nothing behind.
                pool.close()
                self._pool = None
            raise
        finally:
            for result in ready.values():
                if not isinstance(result, BaseException):
                    ring.give_back(result[0])

    def _run_ahead(self, pool: _WorkerPool, epoch: int) -> None:
        """Hand free slots to the workers for the first batches of the epoch that a ``for``
        started next would run (``epoch + 1`` from its start, unless ``set_epoch`` or
        ``load_state_dict`` said otherwise), so that they do not idle while this one ends.
        Adopted only if that epoch's batches turn out the same; else their slots come back."""
        ahead = pool.ahead
        if ahead is None:
            if self._next_epoch != epoch + 1 or self._next_start != 0:
                return
            _, upcoming = self._batches_for(epoch + 1, 0)
            if not upcoming:
                return
            pool.generation += 1
            ahead = pool.ahead = _Ahead(pool.generation, upcoming)
        ring = pool.ring
        while ahead.sent < len(ahead.batches):
            slot = ring.take()
            if slot is None:
                return
            pool.submit(
                pool.idlest(), (ahead.generation, ahead.sent), ahead.batches[ahead.sent], slot
            )
            ahead.sent += 1

    def _report(self, reader: Any) -> None:
        if reader.skips:
            for reason, whole in reader.skips:
                self.feed._feed_skip(reason, whole)
            reader.skips.clear()

    def _warn(self, listed: list[str]) -> None:
        for name in listed:
            if name not in self._warned:
                self._warned.add(name)
                warnings.warn(
                    f"field {name!r} holds arrays of different shapes: batches carry it as a "
                    f'list of tensors; pass pad="max" (or pad=<length>) to ds.loader() for '
                    f"one padded tensor and a {name}_mask",
                    stacklevel=3,
                )

    def close(self) -> None:
        """Stop the worker processes (they are also stopped when the loader is collected)."""
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self._ring is not None:
            self._ring.close()
            self._ring = None
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def __enter__(self) -> Loader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"Loader(batch_size={self.batch_size}, workers={self.workers}, "
            f"rank={self.rank}/{self.world_size}, epoch={self.epoch})"
        )


def _close_pool(holder: list[Any]) -> None:
    pool = holder[0]
    if pool is not None:
        pool.close()


def _fresh(layout: BatchLayout) -> dict[str, np.ndarray]:
    """Batch arrays in fresh memory (when every slot is held by the training loop)."""
    return layout.views(np.empty(layout.slot_bytes, dtype=np.uint8))


class _Ring:
    """The batch slots: which are free, which the training loop holds, which a GPU copy reads."""

    def __init__(self, layout: BatchLayout, slots: int, buf: Any, device: Any) -> None:
        self.layout = layout
        self.slots = slots
        self.size = slots * layout.slot_bytes
        self._own = buf is None
        # A mapping, not a numpy array: numpy views of a lease then keep the lease's own array
        # alive (views of an owning array would point past it), which is what frees the slot.
        self.buf = mmap.mmap(-1, self.size) if buf is None else buf
        self.free: deque[int] = deque(range(slots))
        self.released: deque[int] = deque()  # appended to by finalizers, from any thread
        self.held = 0
        self.torch = import_torch()
        self.device = device
        self.cuda = device is not None and device.type == "cuda"
        self._copies: deque[tuple[Any, int]] = deque()  # (event, slot) of copies in flight
        self._registered = False
        self._stream = None
        if self.cuda:
            self._register()

    def _register(self) -> None:
        torch = self.torch
        ptr = np.frombuffer(self.buf, np.uint8, 1).ctypes.data
        err = torch.cuda.cudart().cudaHostRegister(ptr, self.size, 0)
        if int(getattr(err, "value", err)) != 0:
            log.warning("cudaHostRegister failed (%s): copies to the GPU are not pinned", err)
        else:
            self._registered = True
            self._ptr = ptr
        self._stream = torch.cuda.Stream(self.device)

    def views(self, slot: int) -> dict[str, np.ndarray]:
        return self.layout.views(self.buf, slot * self.layout.slot_bytes)

    def _collect(self) -> None:
        while self.released:
            self.free.append(self.released.popleft())
            self.held -= 1
        while self._copies and self._copies[0][0].query():
            self.free.append(self._copies.popleft()[1])

    def take(self) -> int | None:
        """A free slot, or None when all are filling, waiting, held or being copied."""
        self._collect()
        return self.free.popleft() if self.free else None

    def give_back(self, slot: int) -> None:
        self.free.append(slot)

    def hand_out(
        self,
        slot: int | None,
        views: dict[str, np.ndarray],
        n: int,
        extra: dict[str, Any],
        reserve: int,
    ) -> dict[str, Any]:
        """The batch in ``slot`` (or in fresh ``views``) as a dict of tensors and lists."""
        torch = self.torch
        from_numpy = torch.from_numpy
        layout = self.layout
        out: dict[str, Any] = {}
        lease = None
        if slot is not None and not self.cuda:
            self._collect()
            if self.slots - self.held - 1 >= reserve:
                # Zero copy: the tensors share the slot, which comes back when they are freed.
                base = np.frombuffer(
                    self.buf, np.uint8, layout.slot_bytes, slot * layout.slot_bytes
                )
                weakref.finalize(base, self.released.append, slot)
                self.held += 1
                lease = {
                    f.name: base[f.offset : f.offset + f.nbytes]
                    .view(f.dtype)
                    .reshape((layout.batch_size, *f.shape))
                    for f in layout.fields
                    if f.dtype is not None and f.kind in ("array", "scalar")
                }
        for f in layout.fields:
            name = f.name
            if name in extra:
                value = extra[name]
                out[name] = _tensors(from_numpy, value)
                mask = extra.get(f"{name}_mask")
                if mask is not None:
                    out[f"{name}_mask"] = from_numpy(mask)
                continue
            if lease is not None:
                out[name] = from_numpy(lease[name][:n])
            elif slot is None or self.cuda:
                out[name] = from_numpy(views[name][:n])
            else:
                out[name] = from_numpy(views[name][:n].copy())
        if slot is not None and lease is None and not self.cuda:
            self.free.append(slot)  # copied out
        if self.cuda:
            out = self._to_device(out, slot)
        return out

    def _to_device(self, out: dict[str, Any], slot: int | None) -> dict[str, Any]:
        torch = self.torch
        stream = self._stream
        current = torch.cuda.current_stream(self.device)
        moved: dict[str, Any] = {}
        with torch.cuda.stream(stream):
            for k, v in out.items():
                if isinstance(v, torch.Tensor):
                    moved[k] = v.to(self.device, non_blocking=self._registered or slot is None)
                elif isinstance(v, list) and v and isinstance(v[0], torch.Tensor):
                    moved[k] = [t.to(self.device, non_blocking=True) for t in v]
                else:
                    moved[k] = v
            event = torch.cuda.Event()
            event.record(stream)
        current.wait_event(event)
        for v in moved.values():
            for t in v if isinstance(v, list) else (v,):
                if isinstance(t, torch.Tensor) and t.is_cuda:
                    t.record_stream(current)
        if slot is not None:
            self._copies.append((event, slot))  # the slot is free once the copy completed
        return moved

    def settle(self) -> None:
        """Wait for the copies to the device in flight (their slots come back)."""
        while self._copies:
            event, slot = self._copies.popleft()
            event.synchronize()
            self.free.append(slot)

    def close(self) -> None:
        if self.cuda:
            self.settle()
            if self._registered:
                self.torch.cuda.cudart().cudaHostUnregister(self._ptr)
                self._registered = False


def _tensors(from_numpy: Any, value: Any) -> Any:
    if isinstance(value, np.ndarray) and value.dtype.kind in "biufc":
        return from_numpy(_native(value))
    if isinstance(value, list) and value and all(isinstance(v, np.ndarray) for v in value):
        return [from_numpy(_native(v)) if v.dtype.kind in "biufc" else v for v in value]
    return value


def _native(a: np.ndarray) -> np.ndarray:
    """``a`` writable and in native byte order (torch wants both), copied only if needed."""
    if not a.dtype.isnative:
        return a.astype(a.dtype.newbyteorder("="))
    return a if a.flags.writeable else a.copy()


# ---------------------------------------------------------------------------------------------
# Worker processes


class _Ahead:
    """Batches of the next epoch handed to the workers before its ``for`` started."""

    def __init__(self, generation: int, batches: list[np.ndarray]) -> None:
        self.generation = generation
        self.batches = batches
        self.sent = 0
        #: Results that arrived meanwhile, as the pool's receive() gave them.
        self.received: list[Any] = []

    def matches(self, batches: list[np.ndarray]) -> bool:
        """Whether the epoch starting now begins with exactly the batches sent ahead."""
        return len(batches) >= self.sent and all(
            np.array_equal(a, b) for a, b in zip(self.batches[: self.sent], batches, strict=False)
        )


class _WorkerPool:
    """Worker processes filling the slots of one shared-memory ring."""

    def __init__(
        self, feed: Feed, layout: BatchLayout, pad: Any, workers: int, slots: int, device: Any
    ) -> None:
        self.layout = layout
        self.generation = 0
        #: Work handed out for the next epoch while the current one ended (see Loader).
        self.ahead: _Ahead | None = None
        self.closed = False
        size = slots * layout.slot_bytes
        self.shm: shared_memory.SharedMemory | None = shared_memory.SharedMemory(
            create=True, size=size
        )
        #: The segment's name in /dev/shm while the workers start (gone once they attached).
        self.name = self.shm.name
        self.procs: list[Any] = []
        self.conns: list[connection.Connection] = []
        #: Tasks sent to each worker and not answered yet.
        self.pending = [0] * workers
        ctx = mp.get_context()
        try:
            for i in range(workers):
                mine, theirs = ctx.Pipe(duplex=True)
                proc = ctx.Process(
                    target=_worker_main,
                    args=(i, feed, layout, pad, self.shm.name, theirs, os.getpid()),
                    name=f"atdata-loader-{i}",
                    daemon=True,
                )
                proc.start()
                theirs.close()
                self.procs.append(proc)
                self.conns.append(mine)
            for i, conn in enumerate(self.conns):
                self._expect_ready(i, conn)
        except BaseException:
            self.close()
            raise
        # Every worker mapped the ring: its name can go, so /dev/shm holds nothing from here on.
        # This process maps it once more on its own, so that batches still held after close()
        # keep that mapping alive by themselves (SharedMemory.close() refuses while they exist).
        self.mapping = _own_mapping(self.shm, size)
        self.shm.unlink()
        self.shm.close()
        self.shm = None
        self.ring = _Ring(layout, slots, self.mapping, device)

    def _expect_ready(self, i: int, conn: connection.Connection) -> None:
        while True:
            ready = connection.wait([conn, self.procs[i].sentinel], timeout=60)
            if not ready:
                raise LoaderError(f"loader worker {i} did not start within 60 s")
            if conn in ready:
                msg = self._recv(i)
                if msg[0] == "ready":
                    return
            else:
                self._died(i)

    def alive(self) -> bool:
        return not self.closed and all(p.is_alive() for p in self.procs)

    def idlest(self) -> int:
        """The worker with the fewest tasks waiting: a worker slowed down (a busy core) gets
        fewer batches instead of holding up the ones queued behind it."""
        pending = self.pending
        return pending.index(min(pending))

    def submit(self, worker: int, tag: Any, ids: np.ndarray, slot: int) -> None:
        try:
            self.conns[worker].send((tag, ids, slot))
        except (BrokenPipeError, ConnectionResetError, OSError):
            self._died(worker)
        self.pending[worker] += 1

    def _recv(self, i: int) -> Any:
        try:
            return self.conns[i].recv()
        except (EOFError, OSError):
            self._died(i)

    def failure(self, i: int, exc: Any, text: str) -> BaseException:
        """A worker's failure as the exception to raise in the training process."""
        if isinstance(exc, Exception):
            # The worker's own exception (unpickled), so callers catch what they would catch
            # without workers.
            exc.add_note(f"(raised in loader worker {i}, pid {self.procs[i].pid})")
            return exc
        return LoaderError(f"loader worker {i} failed: {text}")

    def receive(self) -> list[Any]:
        """Results that arrived (waiting for at least one): ``(tag, slot, n, extra, listed,
        skips)``, or ``(tag, slot, exception)`` for a batch that failed; raises when a worker
        died."""
        sentinels = {p.sentinel: i for i, p in enumerate(self.procs)}
        conns = {c: i for i, c in enumerate(self.conns)}
        ready = connection.wait([*conns, *sentinels])
        out = []
        for obj in ready:
            if obj in conns:
                i = conns[obj]
                msg = self._recv(i)
                self.pending[i] -= 1
                if msg[0] == "error":
                    _, tag, slot, exc, text = msg
                    out.append((tag, slot, self.failure(i, exc, text)))
                else:
                    out.append(msg[1:])
        for obj in ready:
            if obj in sentinels and not any(c in conns for c in ready):
                self._died(sentinels[obj])
        return out

    def _died(self, i: int) -> Any:
        proc = self.procs[i]
        proc.join(timeout=1)
        code = proc.exitcode
        if code is not None and code < 0:
            try:
                how = f"was killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"was killed by signal {-code}"
        else:
            how = f"exited with status {code}"
        raise LoaderError(
            f"loader worker {i} (pid {proc.pid}) {how}; the epoch cannot go on "
            "(out of memory? see the system log)"
        )

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.send(None)
        for proc in self.procs:
            proc.join(timeout=2)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=2)
            if proc.is_alive():
                proc.kill()
                proc.join()
        for conn in self.conns:
            conn.close()
        ring = getattr(self, "ring", None)
        if ring is not None:
            ring.close()
            ring.buf = None
        self.mapping = None  # unmapped once no batch handed out refers to it any more
        shm, self.shm = self.shm, None
        if shm is not None:  # closed before the workers were up
            with contextlib.suppress(FileNotFoundError):
                shm.unlink()
            shm.close()


def _own_mapping(shm: shared_memory.SharedMemory, size: int) -> Any:
    """A mapping of the segment independent of ``shm`` (whose close() checks for exports)."""
    fd = getattr(shm, "_fd", -1)
    if isinstance(fd, int) and fd >= 0:
        return mmap.mmap(fd, size)
    return shm.buf  # pragma: no cover - platforms without a POSIX descriptor


def _worker_main(
    index: int,
    feed: Feed,
    layout: BatchLayout,
    pad: Any,
    shm_name: str,
    conn: connection.Connection,
    parent: int,
) -> None:
    """A worker: read the ids of each task, decode, and write the batch into its slot."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the training process's to handle
    shm = shared_memory.SharedMemory(name=shm_name)
    reader = feed._feed_reader()
    conn.send(("ready", os.getpid()))
    slot_views: dict[int, dict[str, np.ndarray]] = {}
    views: dict[str, np.ndarray] | None = None
    try:
        while True:
            if not conn.poll(1.0):
                if os.getppid() != parent:
                    return  # the training process is gone: do not outlive it
                continue
            try:
                task = conn.recv()
            except EOFError:
                return
            if task is None:
                return
            tag, ids, slot = task
            try:
                views = slot_views.get(slot)
                if views is None:
                    views = slot_views[slot] = layout.views(shm.buf, slot * layout.slot_bytes)
                samples = reader.read(ids)
                extra, listed = fill_batch(layout, samples, views, pad)
                skips, reader.skips = reader.skips, []
                conn.send(("ok", tag, slot, len(samples), extra, listed, skips))
            except Exception as exc:
                text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
                try:
                    conn.send(("error", tag, slot, exc, text))
                except Exception:
                    conn.send(("error", tag, slot, None, text))
    finally:
        reader.close()
        slot_views.clear()
        views = None
        shm.close()
