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

import uuid
from dataclasses import dataclass
from typing import Any

from ._columns import dicts_to_frame, samples_to_frame
from ._parts import parts
from .errors import require_extra
from .packable import is_packable

__all__ = ["to_dask", "to_dask_bag"]


@dataclass(frozen=True)
class _Part:
    """A part named by a token of ours, so Dask does not pickle the dataset to name it.

    Dask names a collection by tokenizing its inputs; a dataset (sample type, sources) need
    not pickle to the same bytes twice, which Dask refuses ("Failed to tokenize
    deterministically"). One random token per ``to_dask()`` call, plus the part's index.
    """

    dataset: Any
    token: str

    def __dask_tokenize__(self) -> str:
        return self.token


def _frame(named: _Part) -> Any:
    """One partition: the part's samples as a pandas DataFrame."""
    part = named.dataset
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
        call = uuid.uuid4().hex
        named = [_Part(part, f"{call}-{i}") for i, part in enumerate(parts(dataset))]
        return dd.from_map(_frame, named, label="atdata-read", **meta)


def to_dask_bag(dataset: Any) -> Any:
    """``dataset`` as a Dask Bag of samples, one partition per shard, in storage order."""
    require_extra("dask.bag", "dask", "Dataset.to_dask_bag")
    import dask.bag as db
    from dask.delayed import delayed

    return db.from_delayed([delayed(_samples)(part) for part in parts(dataset)])
