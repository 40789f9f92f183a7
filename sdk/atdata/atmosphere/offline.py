"""What an offline load needs, kept beside the shard cache: records and shard lists by CID.

Whenever `load_dataset` runs with a shard cache, the dataset record, its schema record and the
dataset's full shard list (a manifest's too) are written under `<cache>/records/`, each file
named by the CID that pins it, plus the author's DID and PDS. An `@handle/name@version` load
also notes which record that name meant. `ATDATA_OFFLINE=1` (or `offline=True`) then loads a
pinned dataset from these files and the cached shards with no network at all. Records are
CID-checked again when read back, so an edited file is refused, not trusted.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import ResolutionError
from ..records import Record
from .cache import ShardCache
from .cid import record_cid

__all__ = ["OfflineStore", "offline_requested"]

log = logging.getLogger(__name__)


def offline_requested(offline: bool | None = None) -> bool:
    """`offline` when given, else `ATDATA_OFFLINE` (1/true/yes/on)."""
    if offline is not None:
        return offline
    return os.environ.get("ATDATA_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def version_alias(source: str) -> str | None:
    """The key of an `@handle/name@version` source (handle lowercased), None for others."""
    if not source.startswith("@"):
        return None
    head, sep, version = source[1:].rpartition("@")
    handle, slash, name = head.partition("/")
    if not (sep and slash and handle and name and version):
        return None  # no version: "the newest" cannot be pinned offline
    return f"@{handle.lower()}/{name}@{version}"


class OfflineStore:
    """`<cache dir>/records/`: `<cid>.json` per record, `<cid>.shards.json` per dataset."""

    def __init__(self, cache: ShardCache) -> None:
        self.cache = cache
        self.root = cache.directory / "records"

    def _write(self, path: Path, value: Any) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".partial-", suffix=".json", dir=self.root)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(value, f)
            os.replace(tmp, path)  # readers see the old file or the new one, never half
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def _read(self, path: Path) -> Any:
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            log.warning("unreadable offline record %s: %s", path, e)
            return None

    def _path(self, cid: str, suffix: str = ".json") -> Path:
        if not cid.isalnum():
            raise ResolutionError(f"not a CID: {cid!r}")
        return self.root / f"{cid}{suffix}"

    def keep(
        self,
        dataset: Record,
        schema: Record,
        shards: Sequence[Mapping[str, Any]],
        *,
        did: str,
        pds: str | None,
        asked: str | None = None,
    ) -> None:
        """Write what an offline load of `dataset` needs (and the alias `asked` names)."""
        for rec in (dataset, schema):
            self._write(self._path(rec.cid), {"uri": rec.uri, "cid": rec.cid, "value": rec.value})
        self._write(
            self._path(dataset.cid, ".shards.json"),
            {"uri": dataset.uri, "did": did, "pds": pds, "shards": list(shards)},
        )
        alias = version_alias(asked) if asked else None
        if alias is not None:
            self._write(
                self._alias_path(alias), {"source": alias, "uri": dataset.uri, "cid": dataset.cid}
            )

    def _alias_path(self, alias: str) -> Path:
        return self.root / f"alias-{hashlib.sha256(alias.encode()).hexdigest()[:32]}.json"

    def alias(self, source: str) -> tuple[str, str] | None:
        """(uri, cid) of the record an earlier load of `@handle/name@version` read."""
        key = version_alias(source)
        got = self._read(self._alias_path(key)) if key else None
        if not isinstance(got, dict) or got.get("source") != key:
            return None
        return str(got["uri"]), str(got["cid"])

    def record(self, cid: str) -> Record | None:
        """The record kept under `cid`, or None; its content must still hash to `cid`."""
        got = self._read(self._path(cid))
        if not isinstance(got, dict) or not isinstance(got.get("value"), dict):
            return None
        if record_cid(got["value"]) != cid:
            raise ResolutionError(
                f"the offline copy {self._path(cid)} does not hash to {cid}: delete it and "
                "load the dataset once online"
            )
        return Record(str(got["uri"]), cid, got["value"])

    def shard_list(self, cid: str) -> dict[str, Any] | None:
        """`{"uri", "did", "pds", "shards"}` kept for the dataset record `cid`, or None."""
        got = self._read(self._path(cid, ".shards.json"))
        return got if isinstance(got, dict) and isinstance(got.get("shards"), list) else None
