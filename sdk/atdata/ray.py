"""Datasets as Ray Data datasets, and Ray datasets written back as shards.

``Dataset.to_ray()`` reads through :class:`AtdataDatasource`: one read task per shard (or per
group of consecutive shards), each streaming its shards through atdata's own reader, with the
sha256 checks, network guard and retries of the shard sources, and yielding Arrow blocks of
many samples (columns as described in :mod:`atdata._columns`). :func:`write_dataset` writes a
Ray dataset as shards in parallel; its result goes to ``publish_dataset`` as it is.

Ray is imported only when one of these is called (``pip install 'atdata[ray]'``).
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

from ._columns import (
    MessageColumns,
    dicts_to_table,
    message_columns_apply,
    samples_to_table,
    table_to_samples,
)
from ._parts import parts
from ._regular import close_quietly, regular_plan
from ._tar import _map_file, iter_samples
from ._targets import ShardTarget
from .errors import ShardTaskError, require_extra
from .packable import is_packable
from .writer import ShardInfo

__all__ = ["read_dataset", "write_dataset"]  # and AtdataDatasource, built on first use

log = logging.getLogger(__name__)

#: A read task reads about this many bytes of consecutive shards (see _default_shards_per_task).
_TASK_BYTES = 256 << 20
#: Arrow blocks aim at about this many bytes of sample data (and hold at most _MAX_ROWS).
_BLOCK_BYTES = 64 << 20
_MAX_ROWS = 4096
#: write_dataset cuts exact maxcount-row blocks up to this maxcount (bigger blocks risk memory).
_EXACT_MAXCOUNT = 10_000


def _ray() -> Any:
    require_extra("ray", "ray", "Ray Data support (atdata.ray, Dataset.to_ray, engine='ray')")
    import ray
    import ray.data

    return ray


def _sample_bytes(sample: Any) -> int:
    """A rough in-memory size of one sample, to size blocks."""
    import numpy as np

    values = sample.to_dict().values() if hasattr(sample, "to_dict") else vars(sample).values()
    total = 64
    for v in values:
        total += (
            v.nbytes if isinstance(v, np.ndarray) else len(v) if isinstance(v, str | bytes) else 16
        )
    return total


def _read_blocks(part: Any, rows_per_block: int | None) -> Iterator[Any]:
    """The Arrow blocks of one part (its shards in order)."""
    view = part.sample_type
    if part._lens is None and part.on_error == "raise" and message_columns_apply(view):
        yield from _message_blocks(part, rows_per_block)
        return
    to_table = (
        (lambda rows: samples_to_table(rows, view))
        if is_packable(view)
        else (lambda rows: dicts_to_table([r.to_dict() for r in rows]))
    )
    rows: list[Any] = []
    limit = rows_per_block
    for sample in part:
        rows.append(sample)
        if limit is None:
            limit = max(1, min(_MAX_ROWS, _BLOCK_BYTES // _sample_bytes(sample)))
        if len(rows) >= limit:
            yield to_table(rows)
            rows = []
    if rows:
        yield to_table(rows)


def _message_blocks(part: Any, rows_per_block: int | None) -> Iterator[Any]:
    """:func:`_read_blocks` straight from the sample messages (see ``MessageColumns``).

    A sample the columns refuse is decoded the usual way (raising the error that names it, if
    it is bad), and so is every later one of the part: data that does not fit once (ragged
    arrays) would likely not fit again.
    """
    view = part.sample_type
    # sized for a block (when the first message says how big a block is, if not told)
    columns = MessageColumns(view, capacity=rows_per_block or 1)
    samples: list[Any] = []  # the block's rows decoded one by one, after those in columns
    decoding = False  # set by the first sample the columns refuse
    limit = rows_per_block
    for source in part._sources:
        name = source.name
        if not decoding:
            blocks = _regular_blocks(source, view, rows_per_block)
            if blocks is not None:
                yield from _flush(columns, samples, view)
                yield from blocks
                continue
        for raw in _raw_samples(part, source):
            message = raw.get("msgpack")
            if limit is None:
                size = 64 + (len(message) if message is not None else _MAX_ROWS)
                limit = max(1, min(_MAX_ROWS, _BLOCK_BYTES // size))
                columns = MessageColumns(view, capacity=limit)
            if decoding or message is None or not columns.add(message):
                decoding = True
                samples.append(part.decode_raw(raw, name))
            if columns.rows + len(samples) >= limit:
                yield from _flush(columns, samples, view)
    yield from _flush(columns, samples, view)


def _regular_blocks(source: Any, view: type, rows_per_block: int | None) -> Iterator[Any] | None:
    """The blocks of a local shard read with whole-shard numpy operations (see ``_regular``),
    or None when it is not such a shard (or not a local file)."""
    stream = source.open()
    try:
        mapped, verifier = _map_file(stream)
    finally:
        stream.close()
    if mapped is None:
        return None
    plan = regular_plan(mapped, view)
    if plan is None:
        close_quietly(mapped)
        return None

    def blocks() -> Iterator[Any]:
        try:
            yield from plan.blocks(rows_per_block)
            if verifier is not None:  # a known sha256 or size: checked at the end, as read
                with memoryview(mapped) as whole:
                    verifier.feed(whole)
                verifier.finish()
        finally:
            plan.release()
            close_quietly(mapped)

    return blocks()


def _raw_samples(part: Any, source: Any) -> Iterator[dict[str, Any]]:
    """The tar reader's ``{"__key__", ext: data}`` of one shard (what ``Dataset`` iteration
    decodes), under ``on_error="raise"``: any error propagates, the stream is closed."""
    stream = source.open()
    try:
        yield from iter_samples(stream, source.name, allow_truncated=part.allow_truncated)
    finally:
        stream.close()


def _flush(columns: Any, samples: list[Any], view: type) -> Iterator[Any]:
    """The block's rows built as columns, then those decoded (in that order: the rows'
    order), as one or two tables; both are emptied."""
    if columns.rows:
        yield columns.table()
    if samples:
        yield samples_to_table(samples, view)
        samples.clear()


def _shard_size(shard: Any) -> int | None:
    """A shard's size in bytes: as its record says, or from the file system, else None."""
    size = getattr(shard, "size", None)
    if size is None and isinstance(getattr(shard, "path", None), os.PathLike):
        try:
            size = os.path.getsize(shard.path)
        except OSError:
            return None
    return None if size is None else int(size)


def _default_shards_per_task(shards: list[Any], cpus: int) -> int:
    """Consecutive shards per read task when not told: groups of about _TASK_BYTES, but as
    many tasks as CPUs where there are enough shards; one shard each where sizes are unknown.

    Each Ray task costs CPU of its own (scheduling on the driver, setup in the worker, ~10 ms
    measured): a task per small shard cost more than the reading of it.
    """
    sizes = [_shard_size(s) for s in shards]
    known = [s for s in sizes if s is not None]
    if not shards or len(known) < len(sizes):
        return 1
    tasks = max(min(len(shards), cpus), -(-sum(known) // _TASK_BYTES))
    return max(1, -(-len(shards) // tasks))


def _cluster_cpus(ray: Any) -> int:
    """The CPUs read tasks can run on: the cluster's, or this machine's before ``ray.init``."""
    if ray.is_initialized():
        return max(1, int(ray.cluster_resources().get("CPU", 1)))
    return os.cpu_count() or 1


def _known_size(shards: list[Any]) -> int | None:
    """The shards' total bytes when every one says its size (records do), else None."""
    sizes = [getattr(s, "size", None) for s in shards]
    known = [int(s) for s in sizes if s is not None]
    return sum(known) if known and len(known) == len(sizes) else None


def _make_datasource_class() -> type:
    ray = _ray()
    from ray.data.block import BlockMetadata
    from ray.data.datasource import Datasource, ReadTask

    class AtdataDatasource(Datasource):
        """A Ray ``Datasource`` over an atdata ``Dataset``: one read task per shard group."""

        def __init__(
            self,
            dataset: Any,
            *,
            shards_per_task: int | None = None,
            rows_per_block: int | None = None,
        ) -> None:
            super().__init__()
            self._dataset = dataset
            self._shards_per_task = shards_per_task
            self._rows_per_block = rows_per_block

        def get_name(self) -> str:
            return "Atdata"

        def estimate_inmemory_data_size(self) -> int | None:
            return _known_size(self._dataset.shards)

        def get_read_tasks(
            self,
            parallelism: int,
            per_task_row_limit: int | None = None,
            data_context: Any = None,
        ) -> list[ReadTask]:
            n = len(self._dataset.shards)
            per = self._shards_per_task or max(1, -(-n // max(1, parallelism)))
            tasks = []
            rows_per_block = self._rows_per_block
            for part in parts(self._dataset, per):
                meta = BlockMetadata(
                    num_rows=None,
                    size_bytes=_known_size(part.shards),
                    input_files=tuple(s.name for s in part.shards),
                    exec_stats=None,
                )

                def read(part: Any = part) -> Iterator[Any]:
                    return _read_blocks(part, rows_per_block)

                tasks.append(ReadTask(read, meta, per_task_row_limit=per_task_row_limit))
            return tasks

    del ray
    return AtdataDatasource


_DATASOURCE: type | None = None


def __getattr__(name: str) -> Any:
    # The Datasource subclass needs Ray at class creation: build it on first use.
    global _DATASOURCE
    if name == "AtdataDatasource":
        if _DATASOURCE is None:
            _DATASOURCE = _make_datasource_class()
        return _DATASOURCE
    raise AttributeError(f"module 'atdata.ray' has no attribute {name!r}")


def read_dataset(
    dataset: Any,
    *,
    shards_per_task: int | None = None,
    rows_per_block: int | None = None,
    override_num_blocks: int | None = None,
    ray_remote_args: Mapping[str, Any] | None = None,
) -> Any:
    """``dataset`` as a ``ray.data.Dataset`` (what ``Dataset.to_ray`` returns).

    One read task per ``shards_per_task`` consecutive shards (or as many tasks as
    ``override_num_blocks``). By default a task reads about 256 MB of shards, and there are
    as many tasks as the cluster has CPUs when there are enough shards (one shard per task when
    their sizes are unknown). Blocks of ``rows_per_block`` samples (default: about 64 MB each,
    at most 4096 samples). Rows come in storage order when Ray's
    ``DataContext.execution_options.preserve_order`` is set.
    """
    ray = _ray()
    if shards_per_task is None and override_num_blocks is None:
        shards_per_task = _default_shards_per_task(list(dataset.shards), _cluster_cpus(ray))
    source_cls = __getattr__("AtdataDatasource")
    source = source_cls(dataset, shards_per_task=shards_per_task, rows_per_block=rows_per_block)
    if override_num_blocks is None:
        # One read task per shard group, and no splitting of its output: Ray's default
        # parallelism would cut each task's blocks into dozens of tiny ones (measured 10x slower
        # on 4 shards of 2,500 small samples); blocks are sized in the task instead.
        override_num_blocks = max(1, -(-len(dataset.shards) // (shards_per_task or 1)))
    return ray.data.read_datasource(
        source,
        override_num_blocks=override_num_blocks,
        ray_remote_args=dict(ray_remote_args or {}),
    )


# --- writing ----------------------------------------------------------------------------------


def _make_datasink_class() -> type:
    _ray()
    from ray.data.block import BlockAccessor
    from ray.data.datasource import Datasink

    class ShardDatasink(Datasink[Any]):
        """Each write task stages its shards; the driver names them in dataset order."""

        def __init__(self, sample_type: type, target: ShardTarget, maxcount: int, maxsize: int):
            self.sample_type, self.target = sample_type, target
            self.maxcount, self.maxsize = maxcount, maxsize
            self.token = uuid.uuid4().hex[:16]
            self.staging = target.staging(self.token)
            self.result: list[ShardInfo] = []

        def get_name(self) -> str:
            return "AtdataShards"

        @property
        def min_rows_per_write(self) -> int:
            # a task gets a shard's worth of rows (Ray splits read blocks for parallelism)
            return self.maxcount

        def write(self, blocks: Any, ctx: Any) -> tuple[int, list[ShardInfo]]:
            st = self.sample_type

            tag = f"{ctx.task_idx:06d}"

            def samples() -> Iterator[Any]:
                for block in blocks:
                    table = BlockAccessor.for_block(block).to_arrow()
                    for start in range(0, table.num_rows, 1024):
                        chunk = table.slice(start, 1024)
                        try:
                            rows = table_to_samples(chunk, st)
                        except Exception as exc:
                            raise ShardTaskError(
                                f"write_dataset: task {tag}: rows {start}..{start + len(chunk)} "
                                f"of a block do not make {st.__name__} samples: "
                                f"{type(exc).__name__}: {exc}"
                            ) from exc
                        yield from rows

            infos = self.target.write_staged(
                samples(), self.staging, tag, self.maxcount, self.maxsize
            )
            return ctx.task_idx, infos

        def on_write_complete(self, write_result: Any) -> None:
            returns = sorted(write_result.write_returns, key=lambda r: r[0])
            staged = [info for _, infos in returns for info in infos]
            self.result = [self.target.promote(info, i) for i, info in enumerate(staged)]
            self.target.remove_staging(self.staging)

        def on_write_failed(self, error: Exception) -> None:
            self.target.remove_staging(self.staging)

    return ShardDatasink


def write_dataset(
    ray_dataset: Any,
    sample_type: type,
    out: str | os.PathLike[str],
    *,
    maxcount: int = 100_000,
    maxsize: int = 3_000_000_000,
    client_kwargs: Mapping[str, Any] | None = None,
    ray_remote_args: Mapping[str, Any] | None = None,
) -> list[ShardInfo]:
    """Write a Ray dataset's rows as ``sample_type`` shards, in parallel; their ShardInfos.

    ``out`` is a local pattern (``"out/part-%06d.tar"``) or an ``s3://bucket/prefix`` (keys
    ``<prefix>/part-%06d.tar``; ``client_kwargs`` go to boto3). Rows are converted with
    ``sample_type.from_arrow``; ``maxcount``/``maxsize`` cut shards as in ``write_samples``.
    Shards are numbered in the dataset's order and appear under their final names only once
    every task has finished; a failed or retried task leaves nothing behind. With
    ``maxcount`` up to 10,000 every shard but the last holds exactly ``maxcount`` samples;
    above that, each write task's last shard may hold fewer.
    """
    _ray()
    from ray.data.context import DataContext

    if not is_packable(sample_type):
        raise TypeError(f"write_dataset needs a @packable sample type, not {sample_type!r}")
    if maxcount < 1 or maxsize < 1:
        raise ValueError("maxcount and maxsize must be positive")
    sink = _make_datasink_class()(sample_type, ShardTarget(out, client_kwargs), maxcount, maxsize)
    if maxcount <= _EXACT_MAXCOUNT:  # blocks of exactly maxcount rows: one full shard per task
        ray_dataset = ray_dataset.repartition(target_num_rows_per_block=maxcount, strict=True)
    # Task order = dataset order, so shard names are stable: in the dataset's own context
    # (a Ray dataset keeps the one it was made with) and the current one, restored after.
    contexts = {id(c): c for c in (DataContext.get_current(), ray_dataset.context)}
    before = {key: c.execution_options.preserve_order for key, c in contexts.items()}
    for c in contexts.values():
        c.execution_options.preserve_order = True
    try:
        ray_dataset.write_datasink(sink, ray_remote_args=dict(ray_remote_args or {}))
    finally:
        for key, c in contexts.items():
            c.execution_options.preserve_order = before[key]
    return list(sink.result)
