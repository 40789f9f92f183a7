"""Verify what a repo host tells us before anything reaches the index.

For a commit: the commit block hashes to the CID the frame names, it is signed
by the repo's signing key, each created/updated record block hashes to its op
CID, and each op's path is (or, for a delete, is not) in the commit's MST,
proved with the nodes the commit carries. For a whole repo (backfill): the same
signature check, then a walk of the full tree.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import libipld

from .frames import INDEXED_PREFIXES, Car, CarError, CommitEvent, Prefixes, cid_str, parse_car
from .identity import Identity, VerifyKey
from .mst import ProofError, mst_lookup, mst_walk

__all__ = [
    "SignatureError",
    "VerifiedCommit",
    "VerifiedOp",
    "VerifiedRepo",
    "VerifyError",
    "check_commit",
    "to_json",
    "verify_commit",
    "verify_repo",
]


class VerifyError(ValueError):
    """The data does not prove what it claims; the commit or repo is refused."""


class SignatureError(VerifyError):
    """The commit signature does not verify against the key we hold."""


@dataclass(slots=True)
class VerifiedOp:
    action: str
    collection: str
    rkey: str
    cid: str | None  # text CID (None for delete)
    record: dict[str, Any] | None  # JSON form (None for delete)


@dataclass(slots=True)
class VerifiedCommit:
    seq: int
    did: str
    rev: str
    ops: list[VerifiedOp]


@dataclass(slots=True)
class VerifiedRepo:
    did: str
    rev: str
    records: list[VerifiedOp]  # creates, one per record in our collections


def _is_link(b: bytes) -> bool:
    # libipld hands back tag-42 links as raw CID bytes, indistinguishable from byte
    # strings; a CIDv1 (dag-cbor or raw codec, sha256) is far likelier a link.
    return len(b) == 36 and b[0] == 1 and b[1] in (0x71, 0x55) and b[2] == 0x12 and b[3] == 0x20


def _link_or_bytes(value: bytes) -> dict[str, str]:
    if _is_link(value):
        return {"$link": cid_str(value)}
    return {"$bytes": base64.b64encode(value).decode().rstrip("=")}


def to_json(value: Any) -> Any:
    """A decoded DAG-CBOR value in the atproto JSON form (`$link`, `$bytes`).

    Converts in place (libipld hands us fresh containers): walking once and
    replacing only byte strings costs a third of rebuilding every dict.
    """
    if type(value) is bytes:
        return _link_or_bytes(value)
    stack = [value]
    while stack:
        node = stack.pop()
        if type(node) is dict:
            for k, v in node.items():
                t = type(v)
                if t is bytes:
                    node[k] = _link_or_bytes(v)
                elif t is dict or t is list:
                    stack.append(v)
        elif type(node) is list:
            for i, v in enumerate(node):
                t = type(v)
                if t is bytes:
                    node[i] = _link_or_bytes(v)
                elif t is dict or t is list:
                    stack.append(v)
    return value


def _commit_block(car: Car, cid: bytes, did: str) -> tuple[dict[str, Any], bytes, bytes]:
    """Decode a commit block; return (commit, unsigned bytes, sig)."""
    try:
        commit = car.get(cid)
    except KeyError:
        raise VerifyError("commit block is not in the CAR") from None
    except CarError as exc:
        raise VerifyError(str(exc)) from exc
    if not isinstance(commit, dict):
        raise VerifyError("commit block is not a map")
    if commit.get("did") != did:
        raise VerifyError(f"commit is for {commit.get('did')!r}, not {did!r}")
    if commit.get("version") != 3:
        raise VerifyError(f"unsupported commit version {commit.get('version')!r}")
    sig = commit.get("sig")
    if not isinstance(sig, bytes) or not isinstance(commit.get("data"), bytes):
        raise VerifyError("commit lacks sig or data")
    if not isinstance(commit.get("rev"), str):
        raise VerifyError("commit lacks rev")
    unsigned = {k: v for k, v in commit.items() if k != "sig"}
    return commit, libipld.encode_dag_cbor(unsigned), sig


@dataclass(slots=True)
class CheckedCommit:
    """A commit whose blocks and proofs hold; only the signature is left to check."""

    event: CommitEvent
    unsigned: bytes
    sig: bytes
    ops: list[VerifiedOp]

    def signed_by(self, key: VerifyKey | None) -> bool:
        return key is not None and key.verify(self.unsigned, self.sig)


def _record_block(car: Car, cid: bytes, where: str) -> dict[str, Any]:
    """The record block `cid` of `car`, which must be there and be a map."""
    try:
        record = car.get(cid)
    except KeyError:
        raise VerifyError(f"{where}: record block missing") from None
    except CarError as exc:
        raise VerifyError(f"{where}: {exc}") from exc
    if not isinstance(record, dict):
        raise VerifyError(f"{where}: record is not a map")
    return record


def check_commit(event: CommitEvent) -> CheckedCommit:
    """Check hashes and MST proofs of a commit's ops (everything but the signature)."""
    try:
        car = parse_car(event.blocks)
    except CarError as exc:
        raise VerifyError(f"bad CAR: {exc}") from exc
    if car.roots[:1] != [event.commit]:
        raise VerifyError("CAR root is not the commit")
    commit, unsigned, sig = _commit_block(car, event.commit, event.repo)
    if commit["rev"] != event.rev:
        raise VerifyError(f"commit rev {commit['rev']!r} differs from the frame's {event.rev!r}")
    root = commit["data"]
    ops: list[VerifiedOp] = []
    for op in event.ops:
        try:
            found = mst_lookup(car.get, root, op.path.encode())
        except ProofError as exc:
            raise VerifyError(f"{op.path}: {exc}") from exc
        if op.action == "delete":
            if found is not None:
                raise VerifyError(f"{op.path}: deleted but still in the MST")
            ops.append(VerifiedOp("delete", op.collection, op.rkey, None, None))
            continue
        if found is None:
            raise VerifyError(f"{op.path}: not in the commit's MST")
        assert op.cid is not None  # frames refuse a create/update without one
        if found != op.cid:
            raise VerifyError(f"{op.path}: MST holds {cid_str(found)}, op says {cid_str(op.cid)}")
        record = _record_block(car, op.cid, op.path)
        ops.append(VerifiedOp(op.action, op.collection, op.rkey, cid_str(op.cid), to_json(record)))
    return CheckedCommit(event, unsigned, sig, ops)


Resolve = Callable[..., Awaitable[Identity]]


async def verify_commit(event: CommitEvent, resolve: Resolve) -> VerifiedCommit:
    """Fully verify a commit; `resolve(did, fresh=bool)` gives the signing key.

    On a signature mismatch the key is fetched fresh once (it may have rotated).
    """
    checked = check_commit(event)
    ident = await resolve(event.repo)
    if not checked.signed_by(ident.key):
        ident = await resolve(event.repo, fresh=True)
        if not checked.signed_by(ident.key):
            raise SignatureError(f"commit {event.rev} of {event.repo}: bad signature")
    return VerifiedCommit(event.seq, event.repo, event.rev, checked.ops)


def verify_repo(
    did: str,
    car_bytes: bytes | Car,
    key: VerifyKey | None,
    prefix: Prefixes = INDEXED_PREFIXES,
) -> VerifiedRepo:
    """Verify a whole-repo CAR (getRepo; bytes, or already split by a `CarReader`) and
    return the records of our collections."""
    try:
        car = car_bytes if isinstance(car_bytes, Car) else parse_car(car_bytes)
    except CarError as exc:
        raise VerifyError(f"bad CAR: {exc}") from exc
    if not car.roots:
        raise VerifyError("repo CAR has no root")
    commit, unsigned, sig = _commit_block(car, car.roots[0], did)
    if key is None or not key.verify(unsigned, sig):
        raise SignatureError(f"repo {did}: bad commit signature")
    try:
        leaves = mst_walk(car.get, commit["data"])
    except ProofError as exc:
        raise VerifyError(f"repo {did}: {exc}") from exc
    pre = tuple(p.encode() for p in ((prefix,) if isinstance(prefix, str) else prefix))
    records: list[VerifiedOp] = []
    for key_bytes, value in leaves:
        if not key_bytes.startswith(pre):
            continue
        path = key_bytes.decode("utf-8", "replace")
        collection, _, rkey = path.partition("/")
        record = _record_block(car, value, f"repo {did}: {path}")
        records.append(VerifiedOp("create", collection, rkey, cid_str(value), to_json(record)))
    return VerifiedRepo(did, commit["rev"], records)
