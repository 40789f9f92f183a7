"""atdata: typed, federated ML datasets on the AT Protocol."""

from __future__ import annotations

from .errors import (
    AtdataError,
    DecodeError,
    FieldTypeError,
    LensError,
    LexiconError,
    ResolutionError,
    SampleValueError,
    ShardIntegrityError,
    UnsafeURLError,
)

__version__ = "0.1.0"

__all__ = [
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
]
