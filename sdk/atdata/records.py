"""Record names and record types: every collection NSID atdata knows, spelled once.

Two lexicon families share the network. Ours (`io.atdata.*`) is what this SDK writes and the
AppView indexes; the peer network's (`science.alt.dataset.*`, written by the 0.7 `atdata`
SDK on PyPI) is named here so that code reading or bridging it spells it the same way (no
behaviour for it lives here). The types say how a record is held once fetched or written:
`RecordRef` (an at:// URI carrying its CID, usable as a `com.atproto.repo.strongRef`) and
`Record` (URI, CID and JSON value).

This module imports nothing from atdata, so anything (the schema codec, the lexicon
registry, the AppView) can depend on it without pulling in the network stack.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypedDict

__all__ = [
    "DATASET",
    "LENS",
    "OWN_COLLECTIONS",
    "OWN_NAMESPACE",
    "PEER_COLLECTIONS",
    "PEER_ENTRY",
    "PEER_LABEL",
    "PEER_LENS",
    "PEER_LENS_VERIFICATION",
    "PEER_NAMESPACE",
    "PEER_SCHEMA",
    "PEER_STORAGE_BLOBS",
    "PEER_STORAGE_EXTERNAL",
    "PEER_STORAGE_HTTP",
    "PEER_STORAGE_S3",
    "SCHEMA",
    "STRONG_REF",
    "DatasetRef",
    "Record",
    "RecordRef",
    "StrongRef",
]

# -- our family: io.atdata.* -------------------------------------------------------------------
OWN_NAMESPACE = "io.atdata."
SCHEMA = "io.atdata.schema"
DATASET = "io.atdata.dataset"
LENS = "io.atdata.lens"
#: The record collections the SDK publishes and the AppView indexes.
OWN_COLLECTIONS = (SCHEMA, DATASET, LENS)

# -- the peer network's family: science.alt.dataset.* ------------------------------------------
PEER_NAMESPACE = "science.alt.dataset."
PEER_SCHEMA = "science.alt.dataset.schema"
PEER_ENTRY = "science.alt.dataset.entry"  # a dataset
PEER_LENS = "science.alt.dataset.lens"
PEER_LABEL = "science.alt.dataset.label"  # a name (and version) pointing at an entry
PEER_LENS_VERIFICATION = "science.alt.dataset.lensVerification"
PEER_COLLECTIONS = (PEER_SCHEMA, PEER_ENTRY, PEER_LENS, PEER_LABEL, PEER_LENS_VERIFICATION)
# Members of an entry's `storage` union (each its own lexicon, named by `$type`).
PEER_STORAGE_HTTP = "science.alt.dataset.storageHttp"
PEER_STORAGE_S3 = "science.alt.dataset.storageS3"
PEER_STORAGE_BLOBS = "science.alt.dataset.storageBlobs"
PEER_STORAGE_EXTERNAL = "science.alt.dataset.storageExternal"  # legacy, outside the union

# -- atproto ---------------------------------------------------------------------------------
STRONG_REF = "com.atproto.repo.strongRef"


class StrongRef(TypedDict):
    """A `com.atproto.repo.strongRef`: a record pinned by URI and content hash."""

    uri: str
    cid: str


class RecordRef(str):
    """An at:// URI (a `str`) that also carries the record's CID."""

    cid: str

    def __new__(cls, uri: str, cid: str) -> RecordRef:
        self = super().__new__(cls, uri)
        self.cid = cid
        return self

    @property
    def uri(self) -> str:
        return str.__str__(self)

    def strong_ref(self) -> StrongRef:
        """`{"uri", "cid"}` for a `com.atproto.repo.strongRef` field."""
        return {"uri": self.uri, "cid": self.cid}


class DatasetRef(RecordRef):
    """The ref of a published dataset record, with the version it was published as."""

    version: str

    def __new__(cls, uri: str, cid: str, version: str) -> DatasetRef:
        self = str.__new__(cls, uri)
        self.cid, self.version = cid, version
        return self


@dataclass(frozen=True)
class Record:
    """A record as listed or fetched: where it is, its CID and its JSON value."""

    uri: str
    cid: str
    value: dict[str, Any]

    @property
    def ref(self) -> RecordRef:
        return RecordRef(self.uri, self.cid)
