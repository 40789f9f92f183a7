"""CIDs of records: recompute a record's CID from its JSON form, to check what a server sent.

A record's CID is CIDv1, codec dag-cbor (0x71), sha2-256 over its DAG-CBOR encoding. JSON
`{"$link": cid}` becomes a CID link and `{"$bytes": b64}` becomes bytes before encoding.
Needs `libipld` (installed with the `atmosphere` extra).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Any

from ..errors import ResolutionError

__all__ = ["check_record_cid", "cid_bytes", "record_cid"]

#: CIDv1, dag-cbor, sha2-256 with a 32-byte digest: the prefix of every record CID.
_RECORD_CID_PREFIX = bytes([0x01, 0x71, 0x12, 0x20])


def cid_bytes(cid: str) -> bytes:
    """Binary form of a base32 (`b...`) CIDv1 string."""
    if not cid.startswith("b"):
        raise ValueError(f"only base32 CIDv1 strings are supported: {cid!r}")
    body = cid[1:].upper()
    return base64.b32decode(body + "=" * (-len(body) % 8))


def check_record_cid(cid: object) -> str:
    """Return `cid` if it can be a record's CID (base32 CIDv1, dag-cbor, sha2-256), else raise.

    A pinned CID of any other form could never match a record, so it is refused as
    malformed before anything is fetched, rather than reported later as a changed record.
    """
    expected = "a record CID is a base32 CIDv1 of dag-cbor (59 characters starting 'bafyrei')"
    if not isinstance(cid, str) or not cid.isascii() or cid != cid.lower():
        raise ResolutionError(f"malformed cid {cid!r}: {expected}")
    try:
        raw = cid_bytes(cid)
    except (ValueError, binascii.Error):
        raise ResolutionError(f"malformed cid {cid!r}: {expected}") from None
    if len(raw) != len(_RECORD_CID_PREFIX) + 32 or not raw.startswith(_RECORD_CID_PREFIX):
        raise ResolutionError(f"malformed cid {cid!r}: {expected}")
    return cid


def _to_ipld(v: Any) -> Any:
    if isinstance(v, dict):
        if set(v) == {"$link"} and isinstance(v["$link"], str):
            return cid_bytes(v["$link"])  # libipld encodes CID bytes as a tag-42 link
        if set(v) == {"$bytes"} and isinstance(v["$bytes"], str):
            s = v["$bytes"]
            return base64.b64decode(s + "=" * (-len(s) % 4))
        return {k: _to_ipld(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_to_ipld(x) for x in v]
    return v


def record_cid(value: dict[str, Any]) -> str:
    """The CID (string) a PDS gives the record `value` (JSON form)."""
    import libipld

    digest = hashlib.sha256(libipld.encode_dag_cbor(_to_ipld(value))).digest()
    raw = _RECORD_CID_PREFIX + digest
    return "b" + base64.b32encode(raw).decode().lower().rstrip("=")
