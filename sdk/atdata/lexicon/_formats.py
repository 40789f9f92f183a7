"""String formats of the Lexicon spec (did, handle, nsid, at-uri, ...), one checker each.

Each checker returns None when the value is valid and a short reason otherwise, so callers can
build an error message that names the offending path.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime

__all__ = ["FORMATS", "check_format", "grapheme_length", "is_nsid"]

_DID = re.compile(r"^did:[a-z]+:[a-zA-Z0-9._:%-]*[a-zA-Z0-9._-]$")
_HANDLE = re.compile(
    r"^([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)+[a-zA-Z]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$"
)
_NSID = re.compile(
    r"^[a-zA-Z]([a-zA-Z0-9-]{0,62}[a-zA-Z0-9])?"
    r"(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,62}[a-zA-Z0-9])?)+"
    r"\.[a-zA-Z][a-zA-Z0-9]{0,62}$"
)
_TID = re.compile(r"^[234567abcdefghij][234567abcdefghijklmnopqrstuvwxyz]{12}$")
_RKEY = re.compile(r"^[a-zA-Z0-9_~.:-]{1,512}$")
_CID = re.compile(r"^[a-zA-Z0-9+=]{8,256}$")
_DATETIME = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$"
)
_URI = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:[^\s]+$")
_LANGUAGE = re.compile(r"^(i|[a-zA-Z]{2,3})(-[a-zA-Z0-9]+)*$")
# Lexicon's restricted at-uri: at://AUTHORITY[/COLLECTION[/RKEY]], no query, no fragment.
_AT_URI = re.compile(r"^at://(?P<auth>[^/?#]+)(/(?P<coll>[^/?#]+)(/(?P<rkey>[^/?#]+))?)?$")


def _did(v: str) -> str | None:
    if len(v) > 2048:
        return "DID longer than 2048 characters"
    return None if _DID.fullmatch(v) else "not a valid DID"


def _handle(v: str) -> str | None:
    if len(v) > 253:
        return "handle longer than 253 characters"
    return None if _HANDLE.fullmatch(v) else "not a valid handle"


def is_nsid(v: str) -> bool:
    """True when `v` is a syntactically valid NSID (at least three segments)."""
    return len(v) <= 317 and _NSID.fullmatch(v) is not None


def _nsid(v: str) -> str | None:
    return None if is_nsid(v) else "not a valid NSID"


def _tid(v: str) -> str | None:
    return None if _TID.fullmatch(v) else "not a valid TID"


def _record_key(v: str) -> str | None:
    if v in (".", "..") or not _RKEY.fullmatch(v):
        return "not a valid record key"
    return None


def _cid(v: str) -> str | None:
    if not _CID.fullmatch(v):
        return "not a valid CID"
    try:
        import libipld  # optional (comes with the atmosphere extra): a full parse when present
    except ImportError:  # pragma: no cover - exercised only without the extra
        return None
    try:
        libipld.decode_cid(v)
    except Exception:  # libipld raises plain ValueError/others
        return "not a valid CID"
    return None


def _datetime(v: str) -> str | None:
    if not _DATETIME.fullmatch(v) or v.endswith("-00:00"):
        return "not an RFC 3339 datetime with a timezone"
    core = v[:19]
    try:
        datetime.fromisoformat(core)
    except ValueError:
        return "not a valid calendar datetime"
    return None


def _uri(v: str) -> str | None:
    if len(v) > 8192:
        return "URI longer than 8 KiB"
    return None if _URI.fullmatch(v) else "not a valid URI"


def _language(v: str) -> str | None:
    return None if _LANGUAGE.fullmatch(v) else "not a BCP-47 language tag"


def _at_identifier(v: str) -> str | None:
    if v.startswith("did:"):
        return _did(v)
    return _handle(v)


def _at_uri(v: str) -> str | None:
    if len(v) > 8192:
        return "at-uri longer than 8 KiB"
    m = _AT_URI.fullmatch(v)
    if not m:
        return "not a valid at:// URI"
    if _at_identifier(m["auth"]):
        return "at:// URI authority is neither a DID nor a handle"
    if m["coll"] is not None and not is_nsid(m["coll"]):
        return "at:// URI collection is not an NSID"
    if m["rkey"] is not None and _record_key(m["rkey"]):
        return "at:// URI record key is invalid"
    return None


FORMATS: dict[str, Callable[[str], str | None]] = {
    "at-identifier": _at_identifier,
    "at-uri": _at_uri,
    "cid": _cid,
    "datetime": _datetime,
    "did": _did,
    "handle": _handle,
    "nsid": _nsid,
    "tid": _tid,
    "record-key": _record_key,
    "uri": _uri,
    "language": _language,
}


def check_format(fmt: str, value: str) -> str | None:
    """Reason why `value` breaks string format `fmt`, or None when it is valid."""
    return FORMATS[fmt](value)


try:  # the `regex` module knows extended grapheme clusters (\X)
    import regex as _regex

    _GRAPHEME = _regex.compile(r"\X")

    def grapheme_length(s: str) -> int:
        """Number of user-perceived characters (extended grapheme clusters)."""
        return sum(1 for _ in _GRAPHEME.finditer(s))

except ImportError:  # pragma: no cover - fallback without `regex`
    import unicodedata

    def grapheme_length(s: str) -> int:
        """Approximate grapheme count: code points minus combining marks and joiners."""
        return sum(
            1 for ch in s if not unicodedata.combining(ch) and ch not in "\u200d\ufe0f\ufe0e"
        )
