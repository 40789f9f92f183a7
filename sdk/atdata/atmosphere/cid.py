"""CIDs of records: recompute a record's CID from its JSON form, to check what a server sent.

A record's CID is CIDv1, codec dag-cbor (0x71), sha2-256 over its DAG-CBOR encoding. JSON
`{"$link": cid}` becomes a CID link and `{"$bytes": b64}` becomes bytes before encoding.
Needs `libipld` (installed with the `atmosphere` extra).
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

__all__ = ["cid_bytes", "record_cid"]


def cid_bytes(cid: str) -> bytes:
    """Binary form of a base32 (`b...`) CIDv1 string."""
    if not cid.startswith("b"):
        raise ValueError(f"only base32 CIDv1 strings are supported: {cid!r}")
    body = cid[1:].upper()
    return base64.b32decode(body + "=" * (-len(body) % 8))


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
    raw = bytes([0x01, 0x71, 0x12, 0x20]) + digest
    return "b" + base64.b32encode(raw).decode().lower().rstrip("=")
