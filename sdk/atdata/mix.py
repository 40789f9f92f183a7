"""``atdata.mix``: several datasets of one sample type read as one, in set proportions.

The schedule of an epoch (which dataset each position draws from) is a pure function of the
weights, the seeds and the epoch: each dataset's share is apportioned exactly (largest
remainders, so it is within one sample of ``weight * epoch length``), spread evenly over the
epoch like a smooth weighted round-robin, then shuffled within blocks of ``MIX_BLOCK``
positions. As the training loader cuts batches from this one global order, the realised
shares are the same for any number of workers and ranks, and a resumed loader continues it.
Each dataset's own samples come in its own epoch order; one that runs out is cycled with a
fresh shuffle.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ._access import ShardAccess
from ._partition import epoch_order, fingerprint, rng_for
from .batch import SampleBatch
from .dataset import Loadable
from .errors import AtdataError, SchemaError

if TYPE_CHECKING:
    from .dataset import Dataset

__all__ = ["MIX_BLOCK", "Mix", "mix"]

log = logging.getLogger(__name__)

#: Positions of a mixed epoch shuffled together (shares hold exactly over each epoch).
MIX_BLOCK = 256
_STOPS = ("first", "longest")


def mix(
    datasets: Sequence[Dataset[Any]],
    weights: Sequence[float],
    seed: int = 0,
    epoch_samples: int | None = None,
    stop: str = "first",
) -> Mix:
    """Read ``datasets`` as one, each contributing ``weights[i]`` (normalised) of every epoch.

    With ``epoch_samples=N`` an epoch has exactly N samples (datasets that run out are cycled
    with a fresh shuffle); without it the epoch ends when the first (``stop="first"``) or the
    last (``stop="longest"``, the others cycled) dataset is exhausted. Datasets must share one
    sample type: view the others through a lens first (``ds.as_type(T)``).
    """
    return Mix(datasets, weights, seed=seed, epoch_samples=epoch_samples, stop=stop)


def apportion(total: int, weights: np.ndarray) -> np.ndarray:
    """Integers summing to ``total``, each within one of ``total * weight`` (largest remainder)."""
    exact = weights * total
    out = np.floor(exact).astype(np.int64)
    short = total - int(out.sum())
    if short > 0:
        order = np.argsort(-(exact - out), kind="stable")
        out[order[:short]] += 1
    return out


def schedule(
    quotas: np.ndarray, rng: np.random.Generator | None, block: int = MIX_BLOCK
) -> np.ndarray:
    """Which dataset each position draws from: ``quotas[d]`` times ``d``, evenly spread.

    Dataset ``d``'s ``k``-th draw sits at ``(k + 0.5) / quotas[d]`` of the epoch (each dataset
    offset by a seeded fraction of a step when shuffling), then blocks are shuffled within.
    """
    total = int(quotas.sum())
    times: list[np.ndarray] = []
    which: list[np.ndarray] = []
    for d, q in enumerate(quotas.tolist()):
        if not q:
            continue
        offset = rng.random() if rng is not None else 0.5
        times.append((np.arange(q) + offset) / q)
        which.append(np.full(q, d, dtype=np.int64))
    if not times:
        return np.empty(0, dtype=np.int64)
    order = np.argsort(np.concatenate(times), kind="stable")
    seq = np.concatenate(which)[order]
    if rng is not None:
        for lo in range(0, total, block):
            rng.shuffle(seq[lo : lo + block])
    return seq


class Mix(Loadable):
    """Datasets of one sample type mixed in set proportions; see :func:`mix`."""

    def __init__(
        self,
        datasets: Sequence[Dataset[Any]],
        weights: Sequence[float],
        *,
        seed: int = 0,
        epoch_samples: int | None = None,
        stop: str = "first",
    ) -> None:
        datasets = list(datasets)
        if not datasets:
            raise ValueError("mix() needs at least one dataset")
        if len(weights) != len(datasets):
            raise ValueError(f"{len(datasets)} datasets but {len(weights)} weights")
        w = np.asarray(weights, dtype=np.float64)
        if not np.all(np.isfinite(w)) or np.any(w < 0) or not w.sum() > 0:
            raise ValueError(f"weights must be finite, >= 0 and not all 0, not {list(weights)}")
        if stop not in _STOPS:
            raise ValueError(f"stop must be one of {_STOPS}, not {stop!r}")
        if epoch_samples is not None and (not isinstance(epoch_samples, int) or epoch_samples < 1):
            raise ValueError(f"epoch_samples must be a positive int, not {epoch_samples!r}")
        types = [ds.sample_type for ds in datasets]
        if any(t is not types[0] for t in types):
            names = ", ".join(sorted({getattr(t, "__name__", repr(t)) for t in types}))
            raise SchemaError(
                f"mix() needs datasets of one sample type, got {names}: view them as one type "
                "first, e.g. ds.as_type(T) through a registered lens"
            )
        self.datasets = datasets
        self.weights = w / w.sum()
        self.seed = int(seed)
        self.epoch_samples = epoch_samples
        self.stop = stop
        #: Samples (or shards) skipped under on_error="skip" by loaders over this mix.
        self.skipped = 0
        self.errors: list[str] = []

    @property
    def sample_type(self) -> type:
        return self.datasets[0].sample_type

    def __repr__(self) -> str:
        parts = ", ".join(
            f"{ds!r}: {w:.3g}" for ds, w in zip(self.datasets, self.weights, strict=True)
        )
        return f"Mix({parts})"

    # -- sizes -----------------------------------------------------------------------------------

    def _sizes(self) -> np.ndarray:
        return np.array([sum(ds.shard_counts()) for ds in self.datasets], dtype=np.int64)

    def _length(self) -> int:
        if self.epoch_samples is not None:
            return self.epoch_samples
        sizes = self._sizes()
        live = self.weights > 0
        if np.any(sizes[live] == 0):
            raise AtdataError("mix(): a dataset with a weight above 0 has no samples")
        ratios = sizes[live] / self.weights[live]
        if self.stop == "longest":
            return int(math.ceil(ratios.max() - 1e-9))
        length = int(math.floor(ratios.min() + 1e-9))
        while length > 0 and np.any(apportion(length, self.weights) > sizes):
            length -= 1
        return length

    def __len__(self) -> int:
        """Samples per epoch."""
        return self._length()

    def quotas(self) -> list[int]:
        """Samples each dataset contributes to an epoch."""
        return apportion(self._length(), self.weights).tolist()

    # -- the training loader's feed ----------------------------------------------------------

    def _feed_total(self) -> int:
        return self._length()

    def _feed_known_total(self) -> int | None:
        return self._length()

    def _feed_order(self, seed: int, epoch: int, shuffle: bool) -> np.ndarray:
        quotas = apportion(self._length(), self.weights)
        sizes = self._sizes()
        bases = np.concatenate([[0], np.cumsum(sizes)])
        rng = rng_for(self.seed, seed, epoch) if shuffle else None
        seq = schedule(quotas, rng)
        out = np.empty(len(seq), dtype=np.int64)
        for d, ds in enumerate(self.datasets):
            need = int(quotas[d])
            if not need:
                continue
            counts = ds.shard_counts()
            taken: list[np.ndarray] = []
            have = 0
            lap = 0
            while have < need:
                # The dataset's own epoch order; each lap through it is a fresh shuffle.
                ids = epoch_order(
                    counts,
                    seed=int(rng_for(self.seed, seed, d).integers(1 << 62)),
                    epoch=epoch * 1_000_003 + lap,
                    shuffle=shuffle,
                )
                taken.append(ids[: need - have])
                have += len(taken[-1])
                lap += 1
            out[seq == d] = np.concatenate(taken) + bases[d]
        return out

    def _feed_reader(self) -> _MixReader:
        return _MixReader(self)

    def _feed_fingerprint(self) -> str:
        return fingerprint(
            [
                [ds._feed_fingerprint() for ds in self.datasets],
                self.weights.round(12).tolist(),
                self.seed,
                self.epoch_samples,
                self.stop,
            ]
        )

    def _feed_first(self) -> Any:
        return self.datasets[0]._feed_first()

    def _feed_skip(self, reason: str, whole_shard: bool) -> None:
        self.skipped += 1
        self.errors.append(reason)
        del self.errors[:-100]
        if self.skipped <= 5:
            log.warning("skipping: %s", reason)

    # -- reading ---------------------------------------------------------------------------------

    def _samples(self, shuffle: bool, seed: int, epoch: int) -> Iterator[Any]:
        order = self._feed_order(seed, epoch, shuffle)
        reader = _MixReader(self, views=False)  # samples handed out as they are: aligned
        try:
            for lo in range(0, len(order), 256):
                yield from reader.read(order[lo : lo + 256])
                for reason, whole in reader.skips:
                    self._feed_skip(reason, whole)
                reader.skips.clear()
        finally:
            reader.close()

    def ordered(self, batch_size: int | None = None, drop_last: bool = False) -> Iterator[Any]:
        """An epoch without shuffling: each dataset in storage order, evenly interleaved."""
        return self._batched(self._samples(False, 0, 0), batch_size, drop_last)

    def shuffled(
        self,
        batch_size: int | None = None,
        seed: int | None = None,
        drop_last: bool = False,
        epoch: int = 0,
    ) -> Iterator[Any]:
        """A shuffled epoch (the loader's order for ``seed`` and ``epoch``), in this process."""
        return self._batched(self._samples(True, seed or 0, epoch), batch_size, drop_last)

    def _batched(
        self, samples: Iterator[Any], batch_size: int | None, drop_last: bool
    ) -> Iterator[Any]:
        if batch_size is None:
            return samples
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int or None, not {batch_size!r}")
        return _chunks(samples, batch_size, drop_last, self.sample_type)


def _chunks(
    samples: Iterator[Any], size: int, drop_last: bool, sample_type: type
) -> Iterator[SampleBatch[Any]]:
    chunk: list[Any] = []
    for sample in samples:
        chunk.append(sample)
        if len(chunk) == size:
            yield SampleBatch._of(chunk, sample_type)
            chunk = []
    if chunk and not drop_last:
        yield SampleBatch._of(chunk, sample_type)


class _MixReader:
    """Samples of a mix by combined id (each dataset's ids offset by the sizes before it)."""

    def __init__(self, m: Mix, views: bool = True) -> None:
        self.readers = [ShardAccess(ds, ds.shard_counts(), views=views) for ds in m.datasets]
        self.bases = np.concatenate([[0], np.cumsum(m._sizes())])
        self.skips: list[tuple[str, bool]] = []

    def read(self, ids: np.ndarray) -> list[Any]:
        ids = np.asarray(ids, dtype=np.int64)
        member = np.searchsorted(self.bases, ids, side="right") - 1
        out: list[Any] = []
        # Runs of one dataset keep the order while reading each run in one call.
        start = 0
        n = len(ids)
        while start < n:
            d = int(member[start])
            end = start + 1
            while end < n and member[end] == d:
                end += 1
            reader = self.readers[d]
            out.extend(reader.read(ids[start:end] - self.bases[d]))
            if reader.skips:
                self.skips.extend(reader.skips)
                reader.skips.clear()
            start = end
        return out

    def close(self) -> None:
        for reader in self.readers:
            reader.close()
