"""atdata: typed, federated ML datasets on the AT Protocol."""

from __future__ import annotations

# Data path: shards, datasets, batches, lenses, writing.
from .batch import SampleBatch
from .dataset import Dataset
from .appview_client import AppViewClient
from .errors import (
    AppViewError,
    AtdataError,
    DecodeError,
    FieldTypeError,
    LensError,
    LexiconError,
    ResolutionError,
    SampleValueError,
    ShardIntegrityError,
    SourceError,
    UnsafeURLError,
)
from .lens import Lens, lens
from .writer import ShardInfo, write_samples

__version__ = "0.1.0"

__all__ = [
    "AppViewClient",
    "AppViewError",
    "AtdataError",
    "DecodeError",
    "FieldTypeError",
    "LensError",
    "LexiconError",
    "ResolutionError",
    "SampleValueError",
    "ShardIntegrityError",
    "UnsafeURLError",
    "__version__",
    # data path
    "Dataset",
    "Lens",
    "SampleBatch",
    "ShardInfo",
    "SourceError",
    "lens",
    "write_samples",
]
