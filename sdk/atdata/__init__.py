"""atdata: typed, federated ML datasets on the AT Protocol."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._fields import FieldKind, FieldSpec, PackableSample, Shape
from .appview_client import AppViewClient
from .batch import SampleBatch
from .dataset import Dataset
from .dict_sample import DictSample
from .errors import (
    AppViewError,
    AtdataError,
    AtdataWarning,
    DecodeError,
    FieldTypeError,
    InvalidVersion,
    LensError,
    LexiconError,
    LoaderError,
    MissingExtraError,
    ResolutionError,
    SampleValueError,
    SchemaError,
    ShardIntegrityError,
    ShardTaskError,
    SourceError,
    UnsafeURLError,
)
from .lens import Lens, lens
from .mix import mix
from .packable import is_packable, packable, sample_fields
from .schema import schema_of, type_from_schema
from .writer import ShardInfo, write_samples

if TYPE_CHECKING:  # at run time loaded on first use, by __getattr__ below
    from .atmosphere.resolve import load_dataset

__version__ = "0.1.0"

__all__ = [
    "AppViewClient",
    "AppViewError",
    "AtdataError",
    "AtdataWarning",
    "DecodeError",
    "FieldTypeError",
    "InvalidVersion",
    "LensError",
    "LexiconError",
    "LoaderError",
    "MissingExtraError",
    "ResolutionError",
    "SampleValueError",
    "SchemaError",
    "ShardIntegrityError",
    "ShardTaskError",
    "UnsafeURLError",
    "__version__",
    # samples
    "DictSample",
    "FieldKind",
    "FieldSpec",
    "PackableSample",
    "Shape",
    "is_packable",
    "packable",
    "sample_fields",
    "schema_of",
    "type_from_schema",
    # data path
    "Dataset",
    "Lens",
    "SampleBatch",
    "ShardInfo",
    "SourceError",
    "lens",
    "mix",
    "write_samples",
    # federation (lazy: the atmosphere extra is optional)
    "load_dataset",
    # cluster engines (lazy: the ray and dask extras are optional)
    "dask",
    "map_shards",
    "ray",
]


def __getattr__(name: str) -> object:
    # `atdata.load_dataset` without importing the atproto stack for users who never call it.
    if name == "load_dataset":
        from .atmosphere.resolve import load_dataset

        return load_dataset
    if name in ("ray", "dask"):  # atdata.ray / atdata.dask: Ray Data and Dask collections
        import importlib

        return importlib.import_module(f".{name}", __name__)
    if name == "map_shards":
        from .derive import map_shards

        return map_shards
    raise AttributeError(f"module 'atdata' has no attribute {name!r}")
