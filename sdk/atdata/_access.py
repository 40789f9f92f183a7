"""Samples by global id: random access to a dataset's shards, a few shards held at a time.

The training loader reads an epoch in the order :func:`~atdata._partition.epoch_order` gives,
so a reader needs sample ``i`` of shard ``s``. A shard is walked once by the tar reader (for a
local file that is header parsing over a memory map: the members stay views of the page cache;
a remote shard is read into memory once) and its raw samples are kept while the reader works
in that shard's block. Decoding happens per sample, when it is asked for.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ._partition import locate, shard_offsets
from ._sources import LocalShard
from ._tar import iter_samples
from .errors import AtdataError, DecodeError

if TYPE_CHECKING:
    from .dataset import Dataset

__all__ = ["ShardAccess"]

#: Shards whose raw samples a reader keeps (a shuffle block spans a few shards).
KEEP_SHARDS = 16
#: Memory a reader may hold in shards read over the network (local shards are memory maps of
#: the page cache and do not count); past it, the least recently used are let go (at least one
#: is kept). For large remote datasets, a local shard cache (``load_dataset(cache=...)``) saves
#: reading a shard again when its block comes back.
KEEP_REMOTE_BYTES = 1 << 30


class ShardAccess:
    """Decoded samples of ``dataset`` by global sample id (ids as in ``shard_counts()``).

    Under ``on_error="skip"`` a sample (or shard) that fails is left out and its reason is
    appended to :attr:`skips` for the caller to report; otherwise the error is raised.
    ``views=True`` leaves arrays as (possibly unaligned, read-only) views of the shard, for
    readers that copy them into a batch anyway: one copy, straight into the batch.
    """

    def __init__(
        self,
        dataset: Dataset[Any],
        counts: Sequence[int],
        keep: int = KEEP_SHARDS,
        *,
        views: bool = False,
    ) -> None:
        self.dataset = dataset
        self.offsets = shard_offsets(counts)
        self.keep = max(1, keep)
        self.skip = dataset.on_error == "skip"
        self.skips: list[tuple[str, bool]] = []  # (reason, whole shard)
        self._decode = dataset._raw_decoder(views)
        self._held: OrderedDict[int, list[dict[str, Any]] | None] = OrderedDict()
        self._bytes: dict[int, int] = {}  # memory held per remote shard

    def _raw(self, shard: int) -> list[dict[str, Any]] | None:
        held = self._held
        if shard in held:
            held.move_to_end(shard)
            return held[shard]
        source = self.dataset._sources[shard]
        try:
            stream = source.open()
            try:
                raws: list[dict[str, Any]] | None = list(
                    iter_samples(stream, source.name, allow_truncated=self.dataset.allow_truncated)
                )
            finally:
                stream.close()
        except (DecodeError, OSError, AtdataError) as exc:
            if not self.skip:
                raise
            self.skips.append((str(exc), True))
            raws = None
        expected = int(self.offsets[shard + 1] - self.offsets[shard])
        if raws is not None and len(raws) != expected:
            error = DecodeError(
                f"shard holds {len(raws)} samples, but {expected} were counted before "
                "(was it rewritten while being read?)",
                shard=source.name,
            )
            if not self.skip:
                raise error
            self.skips.append((str(error), True))
            raws = None
        held[shard] = raws
        if raws is not None and not isinstance(source, LocalShard):
            self._bytes[shard] = sum(
                len(v) for raw in raws for k, v in raw.items() if k != "__key__"
            )
        while len(held) > 1 and (
            len(held) > self.keep or sum(self._bytes.values()) > KEEP_REMOTE_BYTES
        ):
            gone, _ = held.popitem(last=False)
            self._bytes.pop(gone, None)
        return raws

    def read(self, ids: np.ndarray) -> list[Any]:
        """The samples with these global ids, in this order (skipped ones left out)."""
        shards, index = locate(np.asarray(ids, dtype=np.int64), self.offsets)
        out: list[Any] = []
        names = self.dataset.shards
        decode = self._decode
        last = -1
        raws: list[dict[str, Any]] | None = None
        for s, i in zip(shards.tolist(), index.tolist(), strict=True):
            if s != last:
                raws = self._raw(s)
                last = s
            if raws is None:
                continue  # a skipped shard: its reason is already recorded
            try:
                out.append(decode(raws[i], names[s].name))
            except DecodeError as exc:
                if not self.skip:
                    raise
                self.skips.append((str(exc), False))
        return out

    def close(self) -> None:
        """Let go of the shards held."""
        self._held.clear()
        self._bytes.clear()
