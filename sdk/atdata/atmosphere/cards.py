"""Dataset cards: the Markdown that describes a dataset at length.

A card of up to `CARD_INLINE_MAX` bytes of UTF-8 goes in the record's `card` field; a longer
one (up to `CARD_BLOB_MAX`) is uploaded as a `text/markdown` blob referenced by `cardBlob`, so
the record stays small. The text is published as given: readers render it with raw HTML
disabled and sanitise the result (the AppView does), so nothing here filters it.
"""

from __future__ import annotations

import os
from pathlib import PurePath

from .shards import PublishError

__all__ = ["CARD_BLOB_MAX", "CARD_INLINE_MAX", "CARD_MIME", "read_card"]

#: Largest card kept inline in the record (bytes of UTF-8), as the lexicon's `card` allows.
CARD_INLINE_MAX = 32 * 1024
#: Largest card at all: the lexicon's `cardBlob` maxSize.
CARD_BLOB_MAX = 1024 * 1024
CARD_MIME = "text/markdown"
# A string this long, or holding a newline, is Markdown text, never a file name.
_MAX_PATH_TEXT = 4096


def _names_file(card: str) -> bool:
    if not card or "\n" in card or len(card) > _MAX_PATH_TEXT or "\x00" in card:
        return False
    try:
        return os.path.isfile(card)
    except (OSError, ValueError):
        return False


def read_card(card: str | os.PathLike[str]) -> str:
    """The card's Markdown: a `Path` (or a string naming an existing file) is read as UTF-8,
    any other string is the Markdown itself. Empty, undecodable or oversized cards raise
    `PublishError` (before anything is published)."""
    if isinstance(card, PurePath | os.PathLike) or (isinstance(card, str) and _names_file(card)):
        path = os.fspath(card)
        try:
            with open(path, "rb") as f:
                raw = f.read(CARD_BLOB_MAX + 1)
        except OSError as e:
            raise PublishError(f"cannot read the card file {path}: {e.strerror or e}") from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise PublishError(f"the card file {path} is not UTF-8 text ({e.reason})") from None
        where = f"the card file {path}"
    elif isinstance(card, str):
        text, where = card, "the card"
    else:
        raise PublishError(f"card= takes Markdown text or a file path, not {type(card).__name__}")
    if not text.strip():
        raise PublishError(f"{where} is empty")
    size = len(text.encode("utf-8"))
    if size > CARD_BLOB_MAX:
        raise PublishError(
            f"{where} is over {CARD_BLOB_MAX} bytes (the largest card a record can reference); "
            "shorten it or link to the long version"
        )
    return text
