"""Dataset versions: semantic versions (semver.org) and which record of a name is the newest.

A dataset is identified by its author and name; each `io.atdata.dataset` record of that name
is one version. Records without a ``version`` read as ``0.0.0``. "Newest" is the highest
semantic version, ties broken by the newest ``createdAt``. The publisher (which checks the
author's own repo) and the AppView (which keeps one newest record per author and name) both
decide with `newest_key`, so they agree.

Like `atdata.records`, this module imports nothing from atdata's network stack.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

import semver

from .errors import InvalidVersion

__all__ = [
    "DEFAULT_VERSION",
    "FIRST_VERSION",
    "InvalidVersion",
    "newest",
    "newest_key",
    "next_patch",
    "parse_version",
    "record_version",
    "split_version_ref",
]

#: What a record without a ``version`` field counts as.
DEFAULT_VERSION = "0.0.0"
#: The version a name gets on its first publication when none is given.
FIRST_VERSION = "1.0.0"

_ZERO = semver.Version(0, 0, 0)
T = TypeVar("T")


def parse_version(text: str) -> semver.Version:
    """The semantic version in ``text`` (a leading ``v`` is not accepted: ``1.2.3``)."""
    try:
        return semver.Version.parse(text)
    except (ValueError, TypeError) as exc:
        raise InvalidVersion(
            f"{text!r} is not a semantic version (MAJOR.MINOR.PATCH, e.g. 1.0.0)"
        ) from exc


def _lenient(text: Any) -> semver.Version:
    """Ordering for records written by anyone: a missing or malformed version is 0.0.0."""
    if not isinstance(text, str):
        return _ZERO
    try:
        return semver.Version.parse(text)
    except (ValueError, TypeError):
        return _ZERO


def record_version(record: Mapping[str, Any]) -> str:
    """The version a dataset record declares (``0.0.0`` when it has none)."""
    value = record.get("version")
    return value if isinstance(value, str) and value else DEFAULT_VERSION


def newest_key(version: Any, created_at: Any) -> tuple[semver.Version, str]:
    """What orders versions of one name: highest version, then newest ``createdAt`` (ISO
    strings compare in time order)."""
    return _lenient(version), created_at if isinstance(created_at, str) else ""


def newest(records: Iterable[T], key: Any) -> T | None:
    """The newest of ``records``; ``key(item) -> (version, createdAt)``."""
    return max(records, key=lambda item: newest_key(*key(item)), default=None)


def next_patch(used: Iterable[str]) -> str:
    """The version after the highest of ``used`` (its next patch); ``1.0.0`` when none was
    used (or only ``0.0.0``, what records without a version read as)."""
    top: semver.Version | None = None
    for text in used:
        v = _lenient(text)
        if top is None or v > top:
            top = v
    if top is None or top == _ZERO:  # a new name, or records from before versions existed
        return FIRST_VERSION
    if top.prerelease:  # 1.2.0-rc.1 -> 1.2.0 (the release it was a candidate for)
        return str(semver.Version(top.major, top.minor, top.patch))
    return str(top.bump_patch())


def split_version_ref(ref: str) -> tuple[str, str | None]:
    """``"@handle/name@1.1.0"`` -> ``("@handle/name", "1.1.0")``; no ``@version``: None."""
    head, sep, tail = ref.rpartition("@")
    if sep and "/" in head and "/" not in tail and tail:
        return head, tail
    return ref, None
