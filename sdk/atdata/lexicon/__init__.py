"""Lexicon loading and validation: our own, checked against the Lexicon spec's rules.

Why our own: `lexrpc` 3.0 (checked) skips blob checks, does not validate lexicon documents
beyond their `type`s, treats `const: 0`/empty enums as absent and reports no value paths; the
`atproto` package only parses lexicons into models. Records are validated here before the SDK
publishes them, and the AppView validates XRPC parameters with `validate_params`.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from ._formats import check_format, grapheme_length, is_nsid
from ._registry import OWN_NAMESPACE, STRONG_REF, Lexicons

__all__ = [
    "OWN_NAMESPACE",
    "STRONG_REF",
    "Lexicons",
    "check_format",
    "default_lexicons",
    "grapheme_length",
    "is_nsid",
    "lexicon_dir",
    "load_lexicons",
    "validate_params",
    "validate_record",
]


def lexicon_dir() -> Path:
    """Where our lexicons live: the packaged `atdata/_lexicons`, else the repo's `lexicons/`."""
    packaged = Path(str(resources.files("atdata"))) / "_lexicons"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[3] / "lexicons"


def load_lexicons(path: str | Path | None = None) -> Lexicons:
    """Load and spec-check every lexicon JSON under `path` (default: `lexicon_dir()`)."""
    return Lexicons.from_dir(lexicon_dir() if path is None else path)


@lru_cache(maxsize=1)
def default_lexicons() -> Lexicons:
    """The cached registry of our own lexicons (loaded once per process)."""
    return load_lexicons()


def validate_record(nsid: str, record: Any) -> None:
    """Validate `record` against `nsid` in the default registry; raises `LexiconError`."""
    default_lexicons().validate_record(nsid, record)


def validate_params(nsid: str, params: Any) -> dict[str, Any]:
    """Coerce and validate XRPC query params against `nsid` in the default registry."""
    return default_lexicons().validate_params(nsid, params)
