"""Decode `com.atproto.sync.subscribeRepos` frames with libipld, cheaply.

A frame is two concatenated DAG-CBOR objects: a header `{op, t}` and a body.
We decode both with one `libipld.decode_dag_cbor_multi` call (the CAR in a
commit stays an opaque byte string), look at the op paths, and only go on to
parse the CAR of a commit that touches a collection of ours (`io.atdata.*`) or of the peer
network (`science.alt.dataset.*`), both indexed. Pydantic
models are never built: on this path they cost about three times the decode.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import libipld
from atdata.records import OWN_NAMESPACE, PEER_NAMESPACE

__all__ = [
    "INDEXED_PREFIXES",
    "AccountEvent",
    "CarError",
    "CarReader",
    "CommitEvent",
    "ErrorFrame",
    "FrameError",
    "IdentityEvent",
    "InfoEvent",
    "RepoOp",
    "SkippedCommit",
    "SyncEvent",
    "cid_str",
    "decode_frame",
    "encode_car",
    "make_cid",
    "parse_car",
    "parse_cid",
]

#: Record paths the AppView looks into: both lexicon families it indexes. A parameter typed
#: `Prefixes` takes one prefix or several (what `str.startswith` takes).
INDEXED_PREFIXES: tuple[str, ...] = (OWN_NAMESPACE, PEER_NAMESPACE)
Prefixes = str | tuple[str, ...]

_SHA256 = 0x12
_DAG_CBOR = 0x71
_DAG_CBOR_SHA256 = b"\x01\x71\x12\x20"


class FrameError(ValueError):
    """A frame that is not a well-formed subscribeRepos message (counted, skipped)."""


class CarError(ValueError):
    """A CAR archive that is malformed, or a block whose bytes do not hash to its CID."""


@dataclass(slots=True)
class RepoOp:
    """One op of a commit: `action` create|update|delete on `collection/rkey`."""

    action: str
    collection: str
    rkey: str
    cid: bytes | None  # raw CID bytes of the new record (None for delete)
    prev: bytes | None = None  # raw CID of the previous record (sync 1.1, update/delete)

    @property
    def path(self) -> str:
        return f"{self.collection}/{self.rkey}"


@dataclass(slots=True)
class CommitEvent:
    """A `#commit` that touches at least one of our collections (blocks not yet parsed)."""

    seq: int
    repo: str
    rev: str
    since: str | None
    commit: bytes  # raw CID of the commit block
    blocks: bytes  # CAR bytes
    ops: list[RepoOp]  # only the ops on our collections
    prev_data: bytes | None = None
    too_big: bool = False
    time: str | None = None
    all_ops: int = 0  # number of ops in the commit, ours or not


@dataclass(slots=True)
class SkippedCommit:
    """A `#commit` with no op on our collections: only its seq/repo/rev matter."""

    seq: int
    repo: str
    rev: str
    since: str | None
    time: str | None = None


@dataclass(slots=True)
class IdentityEvent:
    seq: int
    did: str
    handle: str | None = None
    time: str | None = None


@dataclass(slots=True)
class AccountEvent:
    seq: int
    did: str
    active: bool
    status: str | None = None
    time: str | None = None


@dataclass(slots=True)
class SyncEvent:
    seq: int
    did: str
    rev: str
    blocks: bytes = b""


@dataclass(slots=True)
class InfoEvent:
    """`#info` (e.g. OutdatedCursor) or an unknown message type; carries no seq."""

    name: str
    message: str | None = None
    seq: int | None = None


@dataclass(slots=True)
class ErrorFrame:
    """An error frame (`op: -1`), e.g. FutureCursor; the server closes the socket after it."""

    error: str
    message: str | None = None


Event = (
    CommitEvent | SkippedCommit | IdentityEvent | AccountEvent | SyncEvent | InfoEvent | ErrorFrame
)


def _req(body: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    value = body.get(key)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
        raise FrameError(f"field {key!r} missing or not {getattr(kind, '__name__', kind)}")
    return value


def _opt_str(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise FrameError(f"field {key!r} is not a string")
    return value


def _time(body: dict[str, Any]) -> str | None:
    value = body.get("time")
    return value if isinstance(value, str) else None


def _split_path(path: Any) -> tuple[str, str]:
    if not isinstance(path, str) or path.count("/") != 1:
        raise FrameError(f"op path {path!r} is not 'collection/rkey'")
    collection, rkey = path.split("/")
    if not collection or not rkey:
        raise FrameError(f"op path {path!r} is not 'collection/rkey'")
    return collection, rkey


def decode_frame(data: bytes, prefix: Prefixes = INDEXED_PREFIXES) -> Event:
    """Decode one binary websocket message; raise `FrameError` on garbage.

    A commit whose ops all lie outside `prefix` comes back as a `SkippedCommit`
    without its CAR ever being looked at.
    """
    try:
        parts = libipld.decode_dag_cbor_multi(data)
    except (ValueError, RecursionError, TypeError) as exc:
        raise FrameError(f"not DAG-CBOR: {exc}") from exc
    if len(parts) != 2 or not isinstance(parts[0], dict) or not isinstance(parts[1], dict):
        raise FrameError(f"expected header and body maps, got {len(parts)} object(s)")
    header, body = parts
    op = header.get("op")
    if op == -1:
        return ErrorFrame(str(body.get("error", "unknown")), _opt_str(body, "message"))
    if op != 1:
        raise FrameError(f"unknown frame op {op!r}")
    kind = header.get("t")
    if kind == "#commit":
        return _commit(body, prefix)
    if kind == "#identity":
        return IdentityEvent(
            _req(body, "seq", int),
            _req(body, "did", str),
            _opt_str(body, "handle"),
            _time(body),
        )
    if kind == "#account":
        return AccountEvent(
            _req(body, "seq", int),
            _req(body, "did", str),
            _req(body, "active", bool),
            _opt_str(body, "status"),
            _time(body),
        )
    if kind == "#sync":
        blocks = body.get("blocks", b"")
        if not isinstance(blocks, bytes):
            raise FrameError("field 'blocks' is not bytes")
        return SyncEvent(
            _req(body, "seq", int), _req(body, "did", str), _req(body, "rev", str), blocks
        )
    if kind == "#info":
        return InfoEvent(str(body.get("name", "")), _opt_str(body, "message"))
    # Unknown message types must be ignored (they may still carry a seq).
    seq = body.get("seq")
    return InfoEvent(str(kind), None, seq if isinstance(seq, int) else None)


def _commit(body: dict[str, Any], prefix: Prefixes) -> CommitEvent | SkippedCommit:
    seq = _req(body, "seq", int)
    repo = _req(body, "repo", str)
    rev = _req(body, "rev", str)
    since = _opt_str(body, "since")
    raw_ops = _req(body, "ops", list)
    ours: list[RepoOp] | None = None
    for raw in raw_ops:
        if not isinstance(raw, dict):
            raise FrameError("op is not a map")
        path = raw.get("path")
        if isinstance(path, str) and path.startswith(prefix):
            collection, rkey = _split_path(path)
            action = raw.get("action")
            if action not in ("create", "update", "delete"):
                raise FrameError(f"unknown op action {action!r}")
            cid = raw.get("cid")
            prev = raw.get("prev")
            if (cid is None) != (action == "delete") or (
                cid is not None and not isinstance(cid, bytes)
            ):
                raise FrameError(f"op {path!r}: bad cid for {action}")
            if ours is None:
                ours = []
            ours.append(
                RepoOp(action, collection, rkey, cid, prev if isinstance(prev, bytes) else None)
            )
    if ours is None:
        return SkippedCommit(seq, repo, rev, since, _time(body))
    commit = _req(body, "commit", bytes)
    blocks = _req(body, "blocks", bytes)
    prev_data = body.get("prevData")
    return CommitEvent(
        seq=seq,
        repo=repo,
        rev=rev,
        since=since,
        commit=commit,
        blocks=blocks,
        ops=ours,
        prev_data=prev_data if isinstance(prev_data, bytes) else None,
        too_big=bool(body.get("tooBig", False)),
        time=_time(body),
        all_ops=len(raw_ops),
    )


# -- CIDs and CAR --------------------------------------------------------------------------


def _varint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf):
            raise CarError("truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise CarError("varint too long")


@dataclass(frozen=True, slots=True)
class ParsedCid:
    version: int
    codec: int
    hash_code: int
    digest: bytes


def parse_cid(buf: bytes | memoryview, pos: int = 0) -> tuple[ParsedCid, int]:
    """Parse a binary CID starting at `pos`; return it and the position after it."""
    if (
        pos + 4 <= len(buf)
        and buf[pos] == 1
        and buf[pos + 1] < 0x80
        and buf[pos + 2] < 0x80
        and buf[pos + 3] < 0x80
    ):  # the usual CIDv1 with one-byte varints
        end = pos + 4 + buf[pos + 3]
        if end > len(buf):
            raise CarError("truncated CID digest")
        return ParsedCid(1, buf[pos + 1], buf[pos + 2], bytes(buf[pos + 4 : end])), end
    if pos + 2 <= len(buf) and buf[pos] == 0x12 and buf[pos + 1] == 0x20:  # CIDv0
        end = pos + 34
        if end > len(buf):
            raise CarError("truncated CIDv0")
        return ParsedCid(0, 0x70, _SHA256, bytes(buf[pos + 2 : end])), end
    version, p = _varint(buf, pos)
    if version != 1:
        raise CarError(f"unsupported CID version {version}")
    codec, p = _varint(buf, p)
    code, p = _varint(buf, p)
    size, p = _varint(buf, p)
    if p + size > len(buf):
        raise CarError("truncated CID digest")
    return ParsedCid(1, codec, code, bytes(buf[p : p + size])), p + size


def cid_str(raw: bytes) -> str:
    """The base32 text form of a raw binary CID."""
    return libipld.encode_cid(raw)


@dataclass(slots=True)
class Car:
    """A CAR archive parsed into raw blocks; each block's hash is checked on first use."""

    roots: list[bytes]
    blocks: dict[bytes, bytes]
    _checked: set[bytes] = field(default_factory=set)

    def raw(self, cid: bytes) -> bytes:
        """The bytes of block `cid`, after checking they hash to it; KeyError if absent."""
        data = self.blocks[cid]
        if cid not in self._checked:
            if len(cid) == 36 and cid[:4] == _DAG_CBOR_SHA256:
                if hashlib.sha256(data).digest() != cid[4:]:
                    raise CarError(f"block {cid_str(cid)} does not match its CID")
                self._checked.add(cid)
                return data
            parsed, end = parse_cid(cid)
            if end != len(cid):
                raise CarError("trailing bytes after CID")
            if parsed.hash_code != _SHA256:
                raise CarError(f"unsupported multihash 0x{parsed.hash_code:x}")
            if hashlib.sha256(data).digest() != parsed.digest:
                raise CarError(f"block {cid_str(cid)} does not match its CID")
            self._checked.add(cid)
        return data

    def get(self, cid: bytes) -> Any:
        """Block `cid` decoded as DAG-CBOR (hash checked); KeyError if absent."""
        data = self.raw(cid)
        try:
            return libipld.decode_dag_cbor(data)
        except (ValueError, RecursionError) as exc:
            raise CarError(f"block {cid_str(cid)} is not DAG-CBOR: {exc}") from exc

    def __contains__(self, cid: object) -> bool:
        return cid in self.blocks


def _car_header(data: bytes) -> tuple[list[bytes], int]:
    """The roots of a CAR v1 header at the start of `data`, and the position after it."""
    try:
        size, pos = _varint(data, 0)
        if pos + size > len(data):
            raise CarError("truncated CAR header")
        header = libipld.decode_dag_cbor(data[pos : pos + size])
    except (ValueError, RecursionError) as exc:
        raise CarError(f"bad CAR header: {exc}") from exc
    if not isinstance(header, dict) or header.get("version") != 1:
        raise CarError("CAR header is not version 1")
    roots = header.get("roots")
    if not isinstance(roots, list) or not all(isinstance(r, bytes) for r in roots):
        raise CarError("CAR header has no roots list")
    return roots, pos + size


def _car_sections(data: bytes, pos: int, blocks: dict[bytes, bytes], *, partial: bool) -> int:
    """Split the CAR sections of `data` from `pos` into `blocks`; return where it stopped.

    With `partial`, a section cut by the end of `data` is left for the next call (its start
    is returned); otherwise it is an error.
    """
    end = len(data)
    while pos < end:
        start = pos
        try:
            size, pos = _varint(data, pos)
        except CarError:
            if partial and end - start < 10:
                return start
            raise
        stop = pos + size
        if stop > end:
            if partial:
                return start
            raise CarError("truncated CAR block")
        if size < 4:
            raise CarError("truncated CAR block")
        if (
            data[pos] == 1
            and data[pos + 1] < 0x80
            and data[pos + 2] < 0x80
            and data[pos + 3] < 0x80
        ):
            after_cid = pos + 4 + data[pos + 3]  # CIDv1 with one-byte varints (the usual)
        else:
            _, after_cid = parse_cid(data, pos)
        if after_cid > stop:
            raise CarError("CID runs past its CAR section")
        blocks[data[pos:after_cid]] = data[after_cid:stop]
        pos = stop
    return pos


def parse_car(data: bytes) -> Car:
    """Split CAR v1 bytes into `{raw CID: block bytes}` without decoding the blocks.

    libipld's `decode_car` decodes every block and drops its bytes, which leaves
    nothing to hash; we need the bytes to check each block against its CID.
    """
    data = bytes(data)
    roots, pos = _car_header(data)
    blocks: dict[bytes, bytes] = {}
    _car_sections(data, pos, blocks, partial=False)
    return Car(roots, blocks)


class CarReader:
    """`parse_car` fed in chunks, so a downloaded repo is never held twice (body + blocks).

    `feed` each chunk as it arrives, then `finish()` for the `Car`. Only the unparsed tail
    of the stream is kept between chunks; chunks of a block bigger than one chunk are
    collected and joined once, not re-copied on every feed.
    """

    def __init__(self) -> None:
        self.roots: list[bytes] | None = None
        self.blocks: dict[bytes, bytes] = {}
        self._parts: list[bytes] = []
        self._have = 0
        self._need = 1  # bytes to hold before parsing again

    def feed(self, chunk: bytes) -> None:
        if not chunk:
            return
        self._parts.append(bytes(chunk))
        self._have += len(chunk)
        if self._have < self._need:
            return
        data = b"".join(self._parts)
        pos = 0
        if self.roots is None:
            try:
                self.roots, pos = _car_header(data)
            except CarError:
                if len(data) < 1 << 20:  # a header is tiny: wait for more (or `finish`)
                    self._keep(data, need=len(data) + 1)
                    return
                raise
        pos = _car_sections(data, pos, self.blocks, partial=True)
        rest = data[pos:]
        need = len(rest) + 1
        if len(rest) >= 10 or (rest and not rest[-1] & 0x80):
            try:  # the cut section's full size is known: wait until all of it is here
                size, after = _varint(rest, 0)
                need = max(need, after + size)
            except CarError:
                pass
        self._keep(rest, need=need)

    def _keep(self, rest: bytes, *, need: int) -> None:
        self._parts = [rest] if rest else []
        self._have = len(rest)
        self._need = need

    def finish(self) -> Car:
        """The parsed CAR; CarError when the stream ended inside the header or a block."""
        data = b"".join(self._parts)
        if self.roots is None:
            self.roots, pos = _car_header(data)
            data = data[pos:]
        _car_sections(data, 0, self.blocks, partial=False)
        self._parts, self._have = [], 0
        return Car(self.roots, self.blocks)


def make_cid(data: bytes) -> bytes:
    """The raw CIDv1 (dag-cbor, sha256) of a DAG-CBOR block."""
    return b"\x01\x71\x12\x20" + hashlib.sha256(data).digest()


def _put_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def encode_car(roots: list[bytes], blocks: dict[bytes, bytes]) -> bytes:
    """Write CAR v1 bytes (used to build repos in tests and the benchmark)."""
    header = libipld.encode_dag_cbor({"version": 1, "roots": list(roots)})
    parts = [_put_varint(len(header)), header]
    for cid, data in blocks.items():
        parts.append(_put_varint(len(cid) + len(data)))
        parts.append(cid)
        parts.append(data)
    return b"".join(parts)
