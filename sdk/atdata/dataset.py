"""Dataset[T]: typed, streaming iteration over WebDataset shards.

``Dataset[T](source)`` names its shards (see :func:`~atdata._sources.expand_sources`) and
decodes each sample's ``.msgpack`` member into ``T`` (``DictSample`` when no type is given).
Iteration streams shard by shard through the aligned tar reader; nothing is read up front.
Errors name the shard, the sample key and the field; ``on_error="skip"`` counts them instead
of raising, logs them rate-limited and ends each pass with a summary (skipped N of M, the first
reasons), so nothing is dropped unsaid.
"""

from __future__ import annotations

import functools
import io
import json
import logging
import os
import random
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast, overload

import numpy as np

from ._access import ShardAccess
from ._direct import direct_batches, takes_direct_path
from ._fields import SampleType, is_sample_type
from ._partition import epoch_order, fingerprint
from ._skips import SkipLog
from ._sources import DatasetSource, LocalShard, ShardSource, ShardStream, expand_sources
from ._tar import iter_samples
from .batch import SampleBatch
from .errors import AtdataError, DecodeError
from .lens import Lens, registry
from .packable import is_packable, sample_fields
from .writer import ShardInfo

if TYPE_CHECKING:
    import dask.bag
    import dask.dataframe
    import ray.data
    import torch

    from ._torch import TorchIterable
    from .loader import Feed, Loader

__all__ = ["Dataset"]

log = logging.getLogger(__name__)

T = TypeVar("T")
U = TypeVar("U")

_ON_ERROR = ("raise", "skip")
_INT_EXTS = frozenset(("cls", "cls2", "index", "inx", "id"))
_TEXT_EXTS = frozenset(("txt", "text"))


def _default_type() -> type:
    from .dict_sample import DictSample

    return DictSample


def _member_value(ext: str, data: memoryview) -> tuple[str, Any]:
    """A WebDataset-style member (``key.<field>.<ext>``) as a field value."""
    field, _, last = ext.rpartition(".")
    field = field or ext
    if last == "npy":
        arr = np.load(io.BytesIO(data), allow_pickle=False)
        return field, arr
    if last == "json":
        return field, json.loads(bytes(data))
    if last in _TEXT_EXTS:
        return field, str(data, "utf-8")
    if last in _INT_EXTS:
        return field, int(bytes(data))
    return ext, bytes(data)


def _decoder(sample_type: type[SampleType]) -> Callable[[dict[str, Any]], Any]:
    """A function from a raw sample (``{"__key__", ext: view}``) to a ``sample_type``."""
    from_bytes = sample_type.from_bytes
    from_data = sample_type.from_data

    def decode(raw: dict[str, Any]) -> Any:
        data = raw.get("msgpack")
        if data is not None:
            return from_bytes(data)
        fields: dict[str, Any] = {}
        for ext, value in raw.items():
            if ext != "__key__":
                name, v = _member_value(ext, value)
                fields[name] = v
        return from_data(fields)

    return decode


class Loadable:
    """What a dataset and a mix of datasets share: the training loader over them (one
    signature for both; they provide what :class:`atdata.loader.Feed` reads)."""

    def loader(
        self,
        batch_size: int = 32,
        workers: int = 0,
        device: str | torch.device | None = None,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        rank: int | None = None,
        world_size: int | None = None,
        pad: int | str | None = None,
    ) -> Loader:
        """The training loader: dict batches of tensors, one epoch per ``for``.

        ``workers`` processes decode into a shared-memory ring of batch slots; ``device``
        (``"cuda"``, a ``torch.device``) puts batches there, copied asynchronously; ranks come
        from ``torch.distributed`` when not given; ``pad="max"`` (or a length) pads ragged
        NDArray fields and adds ``<field>_mask``. Resume with ``state_dict()`` /
        ``load_state_dict()``. See :class:`atdata.loader.Loader`.
        """
        from .loader import Loader

        return Loader(
            cast("Feed", self),
            batch_size=batch_size,
            workers=workers,
            device=device,
            shuffle=shuffle,
            seed=seed,
            drop_last=drop_last,
            rank=rank,
            world_size=world_size,
            pad=pad,
        )


class Dataset(Loadable, Generic[T]):
    """Samples of type ``T`` stored in WebDataset shards (local, HTTP(S) or S3).

    ``Dataset[T](source)`` where source is a path, brace pattern, glob, URL, ``s3://`` prefix,
    a list of these, or :class:`~atdata._sources.ShardSource` objects.
    """

    _sample_type: type | None = None
    allow_truncated: bool = False
    _specialised: dict[type, type] = {}

    def __class_getitem__(cls, item: Any) -> Any:
        if isinstance(item, type):
            sub = Dataset._specialised.get(item)
            if sub is None:
                sub = type(
                    f"Dataset[{item.__name__}]",
                    (Dataset,),
                    {"_sample_type": item, "__module__": __name__, "__qualname__": "Dataset"},
                )
                Dataset._specialised[item] = sub
            return sub
        return super().__class_getitem__(item)  # type: ignore[misc]

    def __init__(
        self,
        source: DatasetSource,
        *,
        sample_count: int | None = None,
        on_error: str = "raise",
        uri: str | None = None,
        cid: str | None = None,
        version: str | None = None,
        sample_type: type | None = None,
        client_kwargs: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        allow_truncated: bool = False,
        shard_counts: Sequence[int] | None = None,
    ) -> None:
        if on_error not in _ON_ERROR:
            raise ValueError(f"on_error must be one of {_ON_ERROR}, not {on_error!r}")
        infos = _shard_infos(source)
        if infos is not None:
            # write_samples' ShardInfo list: paths, checked against their sha256 and size, with
            # their sample counts known.
            source = [LocalShard(i.path, sha256=i.sha256, size=i.bytes) for i in infos]
            if shard_counts is None:
                shard_counts = [i.samples for i in infos]
        self._sources: list[ShardSource] = expand_sources(
            source, client_kwargs=client_kwargs, headers=headers
        )
        if shard_counts is not None:
            counts = [int(n) for n in shard_counts]
            if len(counts) != len(self._sources) or any(n < 0 for n in counts):
                raise ValueError(
                    f"shard_counts must give one count >= 0 for each of the "
                    f"{len(self._sources)} shards"
                )
            self._shard_counts = counts
            if sample_count is None:
                sample_count = sum(counts)
        decode_type = sample_type or self._sample_type or _default_type()
        if not is_sample_type(decode_type):
            # fail here, not with an AttributeError at the first sample
            name = getattr(decode_type, "__name__", repr(decode_type))
            raise TypeError(f"Dataset[{name}]: {name} is not a @packable sample class")
        self._decode_type: type[SampleType] = decode_type
        self._view_type: type = decode_type
        self._lens: Lens[Any, Any] | None = None
        self.sample_count = sample_count
        self.on_error = on_error
        self.uri = uri
        self.cid = cid
        #: The semantic version of the published record (log it with ``cid`` for a run).
        self.version = version
        #: Read shards cut short at a member boundary (no end-of-archive blocks) up to where
        #: they end instead of raising; a shard whose sha256 or size is known (every shard of
        #: a published record) is verified, so a short one is an error regardless.
        self.allow_truncated = allow_truncated
        #: Samples (or whole shard remainders) skipped under ``on_error="skip"``.
        self.skipped = 0
        #: The most recent skip messages (at most 100).
        self.errors: list[str] = []
        self._skip_log = SkipLog(log)

    # -- description ---------------------------------------------------------------------------

    @property
    def sample_type(self) -> type:
        """The type samples come out as (the lens view type after ``as_type``)."""
        return self._view_type

    @property
    def lens(self) -> Lens[Any, Any] | None:
        """The lens samples are seen through (set by ``as_type``; None: as stored)."""
        return self._lens

    @property
    def shards(self) -> list[ShardSource]:
        """The shard sources, in storage order."""
        return list(self._sources)

    def __len__(self) -> int:
        """The sample count: from the record, ``sample_count=``/``shard_counts=``, a
        ``ShardInfo`` list, or (local shards only: reading tar headers is cheap there) one
        index pass; remote shards of unknown count are not downloaded to answer ``len()``."""
        if self.sample_count is not None:
            return self.sample_count
        counts = self.__dict__.get("_shard_counts")
        if counts is None and all(isinstance(s, LocalShard) for s in self._sources):
            counts = self.shard_counts()
        if counts is None:
            raise TypeError(
                "this dataset's sample count is unknown (pass sample_count= or shard_counts=, "
                "or count its shards once with ds.shard_counts())"
            )
        return sum(counts)

    def __repr__(self) -> str:
        return (
            f"Dataset[{self._view_type.__name__}]({len(self._sources)} shards"
            + (f", {self.sample_count} samples" if self.sample_count is not None else "")
            + (f", {self.uri}" if self.uri else "")
            + ")"
        )

    # -- views ---------------------------------------------------------------------------------

    def _derive(self) -> Dataset[Any]:
        other = object.__new__(Dataset)
        other.__dict__.update(self.__dict__)
        other.skipped = 0
        other.errors = []
        other._skip_log = SkipLog(log)
        return other

    def as_type(self, view: type[U]) -> Dataset[U]:
        """The same shards seen as ``view`` through the registered lens (or shortest chain)."""
        if view is self._view_type:
            return cast("Dataset[U]", self)  # U is T
        lens_: Lens[Any, Any]
        if registry.find_path(self._view_type, view) is None and self._view_type is _default_type():
            # Schema-free samples become any type that their fields fit.
            lens_ = Lens(_FromDict(view), source=self._view_type, view=view, name="from_dict")
        else:
            lens_ = registry.resolve(self._view_type, view)
        other = self._derive()
        other._lens = self._lens.compose(lens_) if self._lens is not None else lens_
        other._view_type = view
        return other

    # -- iteration -----------------------------------------------------------------------------

    def _skip(self, exc: BaseException, *, whole_shard: bool = False) -> None:
        self.skipped += 1
        message = str(exc)
        self.errors.append(message)
        del self.errors[:-100]
        self._skip_log.add(message, whole_shard=whole_shard)

    def decode_raw(self, raw: dict[str, Any], shard: str) -> T:
        """One raw sample (``{"__key__", ext: bytes}`` from the tar reader) as a viewed sample.

        A sample that does not decode raises a :class:`DecodeError` naming shard and key (the
        caller decides whether ``on_error="skip"`` applies); a lens failure is re-raised with a
        note saying which sample it was viewing.
        """
        return self._raw_decoder()(raw, shard)

    def _raw_decoder(self, views: bool = False) -> Callable[[dict[str, Any], str], Any]:
        """:meth:`decode_raw` as one closure, for hot loops.

        ``views``: arrays stay views of the shard even where unaligned (``writable=None``),
        for batches, whose stacking copies them once, straight into the batch array.
        """
        decode = _decoder(self._decode_type)
        from_bytes: Callable[..., Any] = self._decode_type.from_bytes
        if views:
            from_bytes = functools.partial(from_bytes, writable=None)
        view = self._lens.get if self._lens is not None else None

        def decode_raw(raw: dict[str, Any], shard: str) -> Any:
            try:
                data = raw.get("msgpack")
                sample = from_bytes(data) if data is not None else decode(raw)
            except Exception as exc:
                raise _sample_error(exc, shard, raw["__key__"]) from exc
            if view is not None:
                try:
                    sample = view(sample)
                except Exception as exc:
                    exc.add_note(f"while viewing sample {raw['__key__']!r} of shard {shard}")
                    raise
            return sample

        return decode_raw

    def iter_shard(self, shard: ShardSource | int, *, keys: bool = False) -> Iterator[Any]:
        """The samples of one shard (a source or its index), in storage order.

        The one per-shard stage every reading path builds on (``ordered()``, ``shuffled()``,
        ``atdata inspect``); errors follow ``on_error``. ``keys=True`` yields
        ``(sample key, sample)`` pairs.
        """
        source = self._sources[shard] if isinstance(shard, int) else shard
        return self._iter_shard(source, keys=keys)

    def _iter_shard(
        self,
        source: ShardSource,
        keep: Callable[[int], bool] | None = None,
        counter: list[int] | None = None,
        views: bool = False,
        keys: bool = False,
    ) -> Iterator[Any]:
        """Decoded (and viewed) samples of one shard; ``keep(i)`` filters by running index."""
        stream = self._open_shard(source)
        if stream is None:
            return
        try:
            yield from self._decode_stream(stream, source.name, keep, counter, views, keys)
        finally:
            stream.close()

    def _open_shard(self, source: ShardSource) -> ShardStream | None:
        """The shard's stream, or None when it cannot be opened under ``on_error="skip"``
        (counted and logged as a whole shard skipped)."""
        try:
            return source.open()
        except (OSError, AtdataError) as exc:
            if self.on_error != "skip":
                raise
            self._skip(exc, whole_shard=True)
            return None

    def _decode_stream(
        self,
        stream: ShardStream,
        name: str,
        keep: Callable[[int], bool] | None = None,
        counter: list[int] | None = None,
        views: bool = False,
        keys: bool = False,
    ) -> Iterator[Any]:
        """Decoded (and viewed) samples of an open shard stream (left open), with the
        ``on_error`` policy applied to each sample and to the shard as a whole."""
        if counter is None:
            counter = [0]
        decode_raw = self._raw_decoder(views)
        skip = self.on_error == "skip"
        try:
            for raw in iter_samples(stream, name, allow_truncated=self.allow_truncated):
                if keep is not None:
                    i = counter[0]
                    counter[0] = i + 1
                    if not keep(i):
                        continue
                try:
                    sample = decode_raw(raw, name)
                except DecodeError as exc:
                    if not skip:
                        raise
                    self._skip(exc)
                    continue
                yield (raw["__key__"], sample) if keys else sample
        except (DecodeError, OSError) as exc:
            # Shard-level trouble: a truncated/corrupt archive, integrity or transport error.
            if not skip:
                raise
            self._skip(exc, whole_shard=True)

    def shard_counts(self) -> list[int]:
        """Samples per shard, from one pass over the tar headers (no decoding), cached.

        A shard that cannot be read counts 0 under ``on_error="skip"`` (and is logged).
        """
        counts = self.__dict__.get("_shard_counts")
        if counts is None:
            counts = [self._count_shard(source) for source in self._sources]
            self._shard_counts = counts
        return list(counts)

    def _count_shard(self, source: ShardSource) -> int:
        known = getattr(source, "samples", None)
        if isinstance(known, int):
            return known
        n = 0
        try:
            stream = source.open()
            try:
                for _ in iter_samples(stream, source.name, allow_truncated=self.allow_truncated):
                    n += 1
            finally:
                stream.close()
        except (DecodeError, OSError, AtdataError) as exc:
            if self.on_error != "skip":
                raise
            self._skip(exc, whole_shard=True)
            return 0
        return n

    def _iter_sources(
        self,
        sources: Iterable[ShardSource],
        keep: Callable[[int], bool] | None = None,
        views: bool = False,
    ) -> Generator[Any, None, None]:
        counter = [0]
        samples = (s for source in sources for s in self._iter_shard(source, keep, counter, views))
        return self._skip_log.watch(samples)

    def __iter__(self) -> Iterator[T]:
        return self._iter_sources(self._sources)

    @overload
    def ordered(self, batch_size: None = None, drop_last: bool = False) -> Iterator[T]: ...
    @overload
    def ordered(self, batch_size: int, drop_last: bool = False) -> Iterator[SampleBatch[T]]: ...
    def ordered(
        self, batch_size: int | None = None, drop_last: bool = False
    ) -> Iterator[T] | Iterator[SampleBatch[T]]:
        """Samples (or :class:`SampleBatch` es of ``batch_size``) in storage order.

        In a batch, stacked fields are aligned arrays of their own; a sample's arrays (in
        ``batch.samples``) are read-only: views of the shard (maybe unaligned) or, for large
        arrays of local shards, which are read straight into the batch, views of their row of
        the stacked array (so writing into ``batch.image`` shows through them).
        """
        _check_batch_size(batch_size)
        if batch_size is not None and takes_direct_path(self):
            # Local shards: array payloads read straight into the batch's arrays (_direct).
            return direct_batches(self, batch_size, drop_last)
        samples = self._iter_sources(self._sources, views=batch_size is not None)
        if batch_size is None:
            return samples
        return _batched(samples, batch_size, drop_last, self._view_type)

    @overload
    def shuffled(
        self,
        batch_size: None = None,
        buffer: int = 1000,
        seed: int | None = None,
        drop_last: bool = False,
    ) -> Iterator[T]: ...
    @overload
    def shuffled(
        self,
        batch_size: int,
        buffer: int = 1000,
        seed: int | None = None,
        drop_last: bool = False,
    ) -> Iterator[SampleBatch[T]]: ...
    def shuffled(
        self,
        batch_size: int | None = None,
        buffer: int = 1000,
        seed: int | None = None,
        drop_last: bool = False,
    ) -> Iterator[T] | Iterator[SampleBatch[T]]:
        """Shard order shuffled, then samples shuffled through a ``buffer``-sized pool.

        Every sample comes exactly once per pass; the same ``seed`` gives the same order.
        """
        _check_batch_size(batch_size)
        rng = random.Random(seed if seed is not None else int.from_bytes(os.urandom(8), "big"))
        samples = self._shuffled_samples(self._sources, rng, buffer, views=batch_size is not None)
        if batch_size is None:
            return samples
        return _batched(samples, batch_size, drop_last, self._view_type)

    def _shuffled_samples(
        self,
        sources: list[ShardSource],
        rng: random.Random,
        buffer: int,
        keep: Callable[[int], bool] | None = None,
        views: bool = False,
    ) -> Iterator[Any]:
        order = list(sources)
        rng.shuffle(order)
        return shuffle_buffer(self._iter_sources(order, keep, views), rng, buffer)

    def head(self, n: int = 5) -> list[T]:
        """The first ``n`` samples, in storage order."""
        out: list[T] = []
        if n <= 0:
            return out
        it = self._iter_sources(self._sources)
        try:
            for sample in it:
                out.append(sample)
                if len(out) >= n:
                    break
        finally:
            it.close()
        return out

    # What the training loader reads (see atdata.loader.Feed).

    def _feed_total(self) -> int:
        return sum(self.shard_counts())

    def _feed_known_total(self) -> int | None:
        counts = self.__dict__.get("_shard_counts")
        return sum(counts) if counts is not None else self.sample_count

    def _feed_order(self, seed: int, epoch: int, shuffle: bool) -> np.ndarray:
        return epoch_order(self.shard_counts(), seed=seed, epoch=epoch, shuffle=shuffle)

    def _feed_reader(self) -> ShardAccess:
        # Batches copy every array into their slot: views of the shard spare a copy before.
        return ShardAccess(self, self.shard_counts(), views=True)

    def _feed_fingerprint(self) -> str:
        return fingerprint(
            [(s.name, n) for s, n in zip(self._sources, self.shard_counts(), strict=True)]
        )

    def _feed_first(self) -> Any:
        first = self.head(1)
        if not first:
            raise AtdataError(f"{self!r} has no samples to read")
        return first[0]

    def _feed_skip(self, reason: str, whole_shard: bool) -> None:
        self._skip(AtdataError(reason), whole_shard=whole_shard)

    def torch(
        self,
        batch_size: int | None = 32,
        shuffle: bool = True,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        buffer: int = 1000,
        drop_last: bool = False,
        pad: int | str | None = None,
    ) -> TorchIterable:
        """A ``torch.utils.data.IterableDataset`` of batches as ``dict[str, Tensor | list]``.

        Batches are split across DataLoader workers and across ranks (from
        ``torch.distributed`` when initialised) as :meth:`loader` splits them, so each sample
        is seen once per epoch; ``set_epoch(n)`` reshuffles (persistent workers included);
        ``state_dict()``/``load_state_dict()`` work with torchdata's ``StatefulDataLoader``.
        ``buffer`` is kept for compatibility: shuffling is by blocks of shards now.
        """
        from ._torch import TorchIterable

        return TorchIterable(
            self,
            batch_size=batch_size,
            shuffle=shuffle,
            seed=seed,
            rank=rank,
            world_size=world_size,
            buffer=buffer,
            drop_last=drop_last,
            pad=pad,
        )

    # -- cluster engines (Ray Data, Dask): optional extras, imported on use --------------------

    def to_ray(
        self,
        *,
        shards_per_task: int | None = None,
        rows_per_block: int | None = None,
        override_num_blocks: int | None = None,
        ray_remote_args: Mapping[str, Any] | None = None,
    ) -> ray.data.Dataset:
        """This dataset as a ``ray.data.Dataset`` of Arrow blocks (see :mod:`atdata.ray`)."""
        from .ray import read_dataset

        return read_dataset(
            self,
            shards_per_task=shards_per_task,
            rows_per_block=rows_per_block,
            override_num_blocks=override_num_blocks,
            ray_remote_args=ray_remote_args,
        )

    def to_dask(self) -> dask.dataframe.DataFrame:
        """This dataset as a Dask DataFrame, one partition per shard (see :mod:`atdata.dask`)."""
        from .dask import to_dask

        return to_dask(self)

    def to_dask_bag(self) -> dask.bag.Bag:
        """This dataset as a Dask Bag of samples, one partition per shard."""
        from .dask import to_dask_bag

        return to_dask_bag(self)

    def map_shards(
        self,
        fn: Callable[[Any], Any],
        *,
        out: str | os.PathLike[str],
        sample_type: type | None = None,
        engine: str = "processes",
        batched: bool = False,
        **options: Any,
    ) -> list[ShardInfo]:
        """``fn`` over every shard in parallel, one output shard each (see :mod:`atdata.derive`)."""
        from .derive import map_shards

        return map_shards(
            self, fn, out=out, sample_type=sample_type, engine=engine, batched=batched, **options
        )


class _FromDict:
    """``DictSample -> view``: the view's fields taken from the sample (others ignored).

    A class rather than a closure so that it pickles (DataLoader workers under "spawn").
    """

    def __init__(self, view: type) -> None:
        if not is_sample_type(view):
            raise TypeError(f"{view!r} is not a @packable sample class")
        self.view = view
        self.names: tuple[str, ...] | None = (
            tuple(spec.name for spec in sample_fields(view)) if is_packable(view) else None
        )

    def __call__(self, sample: Any) -> Any:
        data = sample.to_dict()
        if self.names is not None:
            data = {k: data[k] for k in self.names if k in data}
        return self.view.from_data(data)


def _shard_infos(source: Any) -> list[Any] | None:
    """``source`` as a list of ``ShardInfo`` (from ``write_samples``), or None if it is not."""
    items = source if isinstance(source, (list, tuple)) else [source]
    if items and all(isinstance(i, ShardInfo) for i in items):
        return list(items)
    return None


def _sample_error(exc: BaseException, shard: str, key: str) -> DecodeError:
    """Re-state a decode failure with where it happened."""
    if isinstance(exc, DecodeError):
        reason = getattr(exc, "reason", None) or str(exc)
        return DecodeError(reason, shard=shard, key=key, field=exc.field)
    field = getattr(exc, "field", None)
    return DecodeError(
        f"cannot decode sample: {type(exc).__name__}: {exc}", shard=shard, key=key, field=field
    )


def shuffle_buffer(samples: Iterable[Any], rng: random.Random, size: int) -> Iterator[Any]:
    """Shuffle a stream through a pool of ``size``: each item comes out exactly once."""
    if size <= 1:
        yield from samples
        return
    pool: list[Any] = []
    randrange = rng.randrange
    for sample in samples:
        if len(pool) < size:
            pool.append(sample)
            continue
        i = randrange(size)
        out = pool[i]
        pool[i] = sample
        yield out
    rng.shuffle(pool)
    yield from pool


def _check_batch_size(batch_size: int | None) -> None:
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size must be a positive int or None, not {batch_size!r}")


def _batched(
    samples: Iterator[Any], batch_size: int, drop_last: bool, sample_type: type | None
) -> Iterator[SampleBatch[Any]]:
    chunk: list[Any] = []
    wrap = SampleBatch._of
    for sample in samples:
        chunk.append(sample)
        if len(chunk) == batch_size:
            yield wrap(chunk, sample_type)
            chunk = []
    if chunk and not drop_last:
        yield wrap(chunk, sample_type)
