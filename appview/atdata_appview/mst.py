"""The repo Merkle Search Tree: proving a key's presence or absence from proof blocks.

A node is `{"l": CID|null, "e": [{"p", "k", "v", "t"}]}`: entries sorted by key,
each key stored as `p` bytes shared with the previous key plus the suffix `k`;
`l` is the subtree left of the first entry, each `t` the subtree right of its
entry. A lookup walks from the signed root, so every block it touches must be
in the CAR the commit carries; a missing block means the proof is incomplete.

`build_mst` writes a tree from scratch (layers from SHA-256 leading zeros, as the
reference implementation does); tests and the benchmark use it to make repos.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import Any

import libipld

from .frames import CarError, make_cid

__all__ = ["ProofError", "build_mst", "key_layer", "mst_lookup", "mst_walk", "proof_blocks"]


class ProofError(ValueError):
    """The MST blocks do not prove what the commit claims (missing or malformed node)."""


GetNode = Callable[[bytes], Any]


def _node(get: GetNode, cid: bytes) -> tuple[bytes | None, list[dict[str, Any]]]:
    try:
        node = get(cid)
    except KeyError:
        raise ProofError(f"MST node {libipld.encode_cid(cid)} is not in the proof") from None
    except CarError as exc:
        raise ProofError(str(exc)) from exc
    if not isinstance(node, dict):
        raise ProofError("MST node is not a map")
    left, entries = node.get("l"), node.get("e")
    if (left is not None and not isinstance(left, bytes)) or not isinstance(entries, list):
        raise ProofError("MST node lacks 'l' or 'e'")
    return left, entries


def _entry_key(prev: bytes, entry: Any) -> bytes:
    if not isinstance(entry, dict):
        raise ProofError("MST entry is not a map")
    p, k, v, t = entry.get("p"), entry.get("k"), entry.get("v"), entry.get("t")
    if (
        not isinstance(p, int)
        or not isinstance(k, bytes)
        or not isinstance(v, bytes)
        or p < 0
        or p > len(prev)
        or (t is not None and not isinstance(t, bytes))
    ):
        raise ProofError("malformed MST entry")
    return prev[:p] + k


def mst_lookup(get: GetNode, root: bytes, key: bytes) -> bytes | None:
    """The value CID stored under `key`, or None when the tree proves it absent.

    `get(cid)` returns a decoded node (KeyError when absent). Keys within each
    node must be strictly increasing, else the proof is refused.
    """
    cid: bytes | None = root
    depth = 0
    while cid is not None:
        depth += 1
        if depth > 128:
            raise ProofError("MST deeper than 128 levels")
        left, entries = _node(get, cid)
        below = left
        prev = b""
        for entry in entries:
            k = _entry_key(prev, entry)
            if prev and k <= prev:
                raise ProofError("MST entries out of order")
            if k == key:
                return entry["v"]
            if key < k:
                break
            below = entry.get("t")
            prev = k
        cid = below
    return None


def mst_walk(get: GetNode, root: bytes) -> list[tuple[bytes, bytes]]:
    """Every `(key, value CID)` of a complete tree, in key order (for whole-repo checks)."""
    out: list[tuple[bytes, bytes]] = []
    stack: list[tuple[str, Any]] = [("node", root)]
    depth_guard = 0
    while stack:
        kind, item = stack.pop()
        if kind == "leaf":
            out.append(item)
            continue
        depth_guard += 1
        if depth_guard > 10_000_000:
            raise ProofError("MST too large")
        left, entries = _node(get, item)
        pushes: list[tuple[str, Any]] = []
        if left is not None:
            pushes.append(("node", left))
        prev = b""
        for entry in entries:
            k = _entry_key(prev, entry)
            if prev and k <= prev:
                raise ProofError("MST entries out of order")
            pushes.append(("leaf", (k, entry["v"])))
            if entry.get("t") is not None:
                pushes.append(("node", entry["t"]))
            prev = k
        stack.extend(reversed(pushes))
    for (a, _), (b, _) in zip(out, out[1:], strict=False):
        if a >= b:
            raise ProofError("MST keys out of order across nodes")
    return out


def key_layer(key: bytes) -> int:
    """The tree layer of a key: leading zero bits of its SHA-256, counted in pairs."""
    digest = hashlib.sha256(key).digest()
    zeros = 0
    for byte in digest:
        if byte == 0:
            zeros += 8
            continue
        zeros += 8 - byte.bit_length()
        break
    return zeros // 2


def build_mst(items: Mapping[bytes, bytes]) -> tuple[bytes, dict[bytes, bytes]]:
    """Write an MST holding `items` (key -> value CID); return (root CID, {CID: block})."""
    blocks: dict[bytes, bytes] = {}
    keyed = sorted((k, v, key_layer(k)) for k, v in items.items())

    def build(part: list[tuple[bytes, bytes, int]], layer: int) -> bytes | None:
        if not part:
            return None
        top = [i for i, (_, _, lay) in enumerate(part) if lay >= layer]
        if not top:
            return build(part, max(lay for _, _, lay in part))
        left = build(part[: top[0]], layer - 1)
        entries = []
        prev = b""
        for n, i in enumerate(top):
            key, value, _ = part[i]
            end = top[n + 1] if n + 1 < len(top) else len(part)
            shared = 0
            while shared < min(len(prev), len(key)) and prev[shared] == key[shared]:
                shared += 1
            entries.append(
                {
                    "p": shared,
                    "k": key[shared:],
                    "v": value,
                    "t": build(part[i + 1 : end], layer - 1),
                }
            )
            prev = key
        data = libipld.encode_dag_cbor({"l": left, "e": entries})
        cid = make_cid(data)
        blocks[cid] = data
        return cid

    root = build(keyed, max((lay for _, _, lay in keyed), default=0))
    if root is None:
        data = libipld.encode_dag_cbor({"l": None, "e": []})
        root = make_cid(data)
        blocks[root] = data
    return root, blocks


def proof_blocks(blocks: Mapping[bytes, bytes], root: bytes, key: bytes) -> dict[bytes, bytes]:
    """The nodes a lookup of `key` visits (what a commit must carry to prove that op)."""
    seen: dict[bytes, bytes] = {}

    def get(cid: bytes) -> Any:
        seen[cid] = blocks[cid]
        return libipld.decode_dag_cbor(blocks[cid])

    mst_lookup(get, root, key)
    return seen
