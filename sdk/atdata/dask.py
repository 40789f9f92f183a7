"""Datasets as Dask collections: a DataFrame with one partition per shard, or a Bag of samples.

``Dataset.to_dask()`` builds a ``dask.dataframe`` through ``from_map`` over the dataset's
shards: each partition reads one shard with atdata's reader (sha256 checks, network guard and
retries included) and holds one row per sample. NDArray fields are object columns whose cells
are numpy arrays (pandas has no tensor column); nested samples, lists and dicts are object
columns too; required int/float/bool fields are ``int64``/``float64``/``bool``.
``T.from_pandas(partition)`` turns rows back into samples.

Dask is imported only when these are called (``pip install 'atdata[dask]'``).
"""

from __future__ import annotations

from typing import Any

from ._columns import dicts_to_frame, samples_to_frame
from ._parts import parts
from .errors import require_extra
from .packable import is_packable

__all__ = ["to_dask", "to_dask_bag"]


def _frame(part: Any) -> Any:
    """One partition: the part's samples as a pandas DataFrame."""
    view = part.sample_type
    if is_packable(view):
        return samples_to_frame(part, view)
    return dicts_to_frame([s.to_dict() for s in part])


def _samples(part: Any) -> list[Any]:
    return list(part)


def to_dask(dataset: Any) -> Any:
    """``dataset`` as a Dask DataFrame, one partition per shard, in storage order."""
    require_extra("dask.dataframe", "dask", "Dataset.to_dask")
    import dask
    import dask.dataframe as dd

    view = dataset.sample_type
    # without a schema, Dask reads the first partition to learn the columns
    meta = {"meta": samples_to_frame([], view)} if is_packable(view) else {}
    # object columns stay objects (arrays, samples): no conversion to Arrow strings
    with dask.config.set({"dataframe.convert-string": False}):
        return dd.from_map(_frame, parts(dataset), label="atdata-read", **meta)


def to_dask_bag(dataset: Any) -> Any:
    """``dataset`` as a Dask Bag of samples, one partition per shard, in storage order."""
    require_extra("dask.bag", "dask", "Dataset.to_dask_bag")
    import dask.bag as db
    from dask.delayed import delayed

    return db.from_delayed([delayed(_samples)(part) for part in parts(dataset)])
