"""Derived datasets: a function over every shard, in parallel, one output shard per input shard.

``Dataset.map_shards(fn, out=...)`` runs ``fn`` over each shard's samples in a local process
pool (``engine="processes"``) or as Ray tasks (``engine="ray"``). Each task reads one shard,
applies ``fn`` (per sample, or per list of samples with ``batched=True``), and writes the
results as ``out % <input shard index>`` (or ``<prefix>/part-%06d.tar`` under ``s3://``),
keeping the samples' keys. A shard whose samples are all dropped (``fn`` returns None) is not
written. The shard appears under its final name only when complete (see
:mod:`atdata._targets`), so a retried task rewrites it and a killed one leaves nothing behind.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any

from ._parts import keyed_samples, parts, pickle_by_value, unpickle
from ._targets import ShardTarget
from .errors import AtdataError, ShardTaskError
from .writer import ShardInfo

if TYPE_CHECKING:
    from .dataset import Dataset

__all__ = ["map_shards"]

log = logging.getLogger(__name__)

_ENGINES = ("processes", "ray")


class _ShardJob:
    """What one task needs: its one-shard dataset, the function, where the output goes."""

    def __init__(
        self,
        part: Any,
        index: int,
        fn: Callable[[Any], Any],
        target: ShardTarget,
        sample_type: type | None,
        batched: bool,
        batch_size: int,
    ) -> None:
        self.part, self.index, self.fn, self.target = part, index, fn, target
        self.sample_type, self.batched, self.batch_size = sample_type, batched, batch_size

    def run(self) -> ShardInfo | None:
        current = ["", ""]  # shard, key of the sample being worked on

        def outputs() -> Iterator[Any]:
            if self.batched:
                yield from self._batched_outputs(current)
                return
            fn = self.fn
            for shard, key, sample in keyed_samples(self.part):
                current[0], current[1] = shard, key
                result = _call(fn, sample, shard, key)
                if result is not None:
                    yield self._checked(result, shard, key)

        def key_of(index: int, sample: Any) -> str:
            return current[1] if not self.batched else f"{index:08d}"

        return self.target.write_one(outputs(), self.index, key=key_of)

    def _batched_outputs(self, current: list[str]) -> Iterator[Any]:
        batch: list[Any] = []
        first_key = ""
        shard = ""
        for shard, key, sample in keyed_samples(self.part):
            if not batch:
                first_key = key
            current[0], current[1] = shard, key
            batch.append(sample)
            if len(batch) >= self.batch_size:
                yield from self._run_batch(batch, shard, first_key)
                batch = []
        if batch:
            yield from self._run_batch(batch, shard, first_key)

    def _run_batch(self, batch: list[Any], shard: str, first_key: str) -> Iterator[Any]:
        results = _call(self.fn, batch, shard, first_key, batch=True)
        for result in results or ():
            if result is not None:
                yield self._checked(result, shard, first_key)

    def _checked(self, result: Any, shard: str, key: str) -> Any:
        st = self.sample_type
        if st is not None and not isinstance(result, st):
            raise ShardTaskError(
                f"map_shards: fn returned a {type(result).__name__} for sample {key!r} of "
                f"shard {shard}, not a {st.__name__} (sample_type)",
                shard,
                key,
            )
        return result


def _call(fn: Callable[[Any], Any], arg: Any, shard: str, key: str, batch: bool = False) -> Any:
    try:
        return fn(arg)
    except Exception as exc:
        what = f"the batch starting at sample {key!r}" if batch else f"sample {key!r}"
        raise ShardTaskError(
            f"map_shards: fn failed on {what} of shard {shard}: {type(exc).__name__}: {exc}",
            shard,
            key,
        ) from exc


def _run_pickled(blob: bytes) -> ShardInfo | None:
    job: _ShardJob = unpickle(blob)
    return job.run()


def map_shards(
    dataset: Dataset[Any],
    fn: Callable[[Any], Any],
    *,
    out: str | os.PathLike[str],
    sample_type: type | None = None,
    engine: str = "processes",
    batched: bool = False,
    batch_size: int = 256,
    workers: int | None = None,
    client_kwargs: Mapping[str, Any] | None = None,
    ray_remote_args: Mapping[str, Any] | None = None,
) -> list[ShardInfo]:
    """Apply ``fn`` to every sample (or batch) of ``dataset``, one output shard per shard.

    Returns the written shards' :class:`ShardInfo` in input order (shards with no output
    samples left out). ``sample_type`` checks what ``fn`` returns. ``workers`` caps the local
    process pool; ``client_kwargs`` reach boto3 when ``out`` is an ``s3://`` prefix;
    ``ray_remote_args`` go to each Ray task (``max_retries`` defaults to 3).
    """
    if engine not in _ENGINES:
        raise ValueError(f"engine must be one of {_ENGINES}, not {engine!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, not {batch_size!r}")
    target = ShardTarget(out, client_kwargs)
    jobs = [
        pickle_by_value(_ShardJob(part, i, fn, target, sample_type, batched, batch_size))
        for i, part in enumerate(parts(dataset))
    ]
    if not jobs:
        return []
    try:
        if engine == "ray":
            results = _run_on_ray(jobs, ray_remote_args)
        else:
            results = _run_in_processes(jobs, workers)
    finally:
        target.remove_partials()
    return [info for info in results if info is not None]


def _run_in_processes(jobs: list[bytes], workers: int | None) -> list[ShardInfo | None]:
    n = min(len(jobs), workers or os.cpu_count() or 1)
    try:
        with ProcessPoolExecutor(max_workers=n) as pool:
            return list(pool.map(_run_pickled, jobs))
    except BrokenProcessPool as exc:
        raise AtdataError(
            "map_shards: a worker process died (killed, or out of memory); no shard of the "
            "unfinished tasks was written, run it again"
        ) from exc


def _run_on_ray(jobs: list[bytes], ray_remote_args: Mapping[str, Any] | None) -> list[Any]:
    from .ray import _ray

    ray = _ray()
    options = {"max_retries": 3, **dict(ray_remote_args or {})}
    task = ray.remote(_run_pickled).options(**options)
    return list(ray.get([task.remote(job) for job in jobs]))
