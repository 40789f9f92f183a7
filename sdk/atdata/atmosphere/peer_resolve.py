"""Loading the peer network's datasets (`science.alt.dataset.*`, written by the PyPI `atdata`
0.5-0.7): entries as typed `Dataset`s, labels, `@handle/name` labels, and lenses.

An entry names its schema by at:// URI with no CID pin, so the schema is whatever its
author's PDS holds now (its CID recomputed from the content, as for every record); the type
comes from `atdata.peer.own_schema`, which reads all three schema-body forms into our schema
shape. Shards stream through the same guarded sources, retries and cache as our records.
Each shard's checksum is verified while streaming when it is a sha256; a placeholder
(`none`) or an algorithm this SDK cannot compute leaves the shard unverified, said in one
warning per load. A PDS blob's own CID is the sha256 of its bytes, so blob shards are
verified even when the record gives no checksum. Labels (a name and version pointing at an
entry; the newest `createdAt` of a name is its latest) resolve to their entry.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from .. import schema as schema_mod
from .._fields import FieldKind
from .._sources import S3Shard, ShardSource
from ..appview_client import AppViewClient
from ..dataset import Dataset
from ..errors import (
    AppViewError,
    AtdataWarning,
    LensError,
    LexiconError,
    ResolutionError,
    SchemaError,
)
from ..lens import Lens, lens_types, registry
from ..packable import is_packable
from ..peer import PeerShard, entry_storage, own_schema
from ..records import (
    PEER_ENTRY,
    PEER_LABEL,
    PEER_LENS,
    PEER_SCHEMA,
    Record,
)
from .cache import ShardCache
from .cid import cid_bytes, record_cid
from .did import parse_did_document
from .identity import parse_at_uri
from .lens_code import import_unpinned
from .netguard import HTTPStatusError, check_url, get_json
from .remote_shards import BlobShard, GuardedHttpShard, s3_client_options

if TYPE_CHECKING:
    from .resolve import Resolver

__all__ = [
    "LabelPick",
    "entry_shard_sources",
    "find_label",
    "label_entry_uri",
    "list_records",
    "load_entry",
    "load_peer_lens",
    "peer_differences",
    "peer_schema",
]

log = logging.getLogger(__name__)

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_RAW_SHA256_CID = bytes((0x01, 0x55, 0x12, 0x20))  # CIDv1, raw codec, sha2-256, 32 bytes
#: `at://{authority}/science.alt.dataset.schema/{name}@{version}`: a schema named, not keyed
_NAME_VERSION_REF = re.compile(
    r"^at://([^/?#]+)/" + re.escape(PEER_SCHEMA) + r"/([^/?#@]+)@([^/?#@]+)$"
)
_MAX_LIST_PAGES = 100  # listRecords pages (of 100) read to find a label: 10,000 records


# -- schemas ---------------------------------------------------------------------------------


def peer_schema(r: Resolver, entry: Record) -> tuple[Record, Record]:
    """The entry's schema record as published, and as our schema shape (same URI and CID)."""
    ref = entry.value.get("schemaRef")
    if not isinstance(ref, str) or not ref.startswith("at://"):
        raise ResolutionError(f"entry {entry.uri} has no schemaRef at:// URI (got {ref!r})")
    by_name = _NAME_VERSION_REF.match(ref)
    if by_name is not None:
        authority, name, version = by_name.groups()
        rec = _schema_by_name(r, authority, name, version, ref)
    else:
        if parse_at_uri(ref).collection != PEER_SCHEMA:
            raise ResolutionError(f"entry {entry.uri}: its schemaRef {ref} is not a {PEER_SCHEMA}")
        rec = r.fetch_record(ref)
    if rec.value.get("$type") != PEER_SCHEMA:
        raise ResolutionError(f"{ref} is not a {PEER_SCHEMA} record")
    try:
        own = own_schema(rec.value)
    except SchemaError as e:
        raise SchemaError(f"schema {ref} cannot be read as a sample type: {e}") from e
    return rec, Record(rec.uri, rec.cid, own)


def _schema_by_name(r: Resolver, authority: str, name: str, version: str, ref: str) -> Record:
    """The schema a `.../science.alt.dataset.schema/{name}@{version}` reference means (a form
    the network's documents show; '@' is no record-key character, so no record has that key):
    the author's schema record of that name and version, newest `createdAt` first."""
    did = r.identity.resolve_identifier(authority)
    found = [
        rec
        for rec in list_records(r, did, PEER_SCHEMA)
        if rec.value.get("name") == name and rec.value.get("version") == version
    ]
    if not found:
        raise ResolutionError(f"schemaRef {ref}: {authority} has no {PEER_SCHEMA} {name} {version}")
    return max(found, key=lambda rec: created_at(rec.value))


def _kinds(t: Any) -> Any:
    """What a field type says about the wire value: its kind, and its items' (recursively).

    The peer's JSON Schemas carry no dtype or shape, nor nested sample types, so a match is
    on names and kinds only (an NDArray of any dtype matches the ndarray shim).
    """
    if not isinstance(t, Mapping):
        return None
    kind = t.get("kind")
    if kind in (FieldKind.LIST.value, FieldKind.DICT.value) and isinstance(t.get("item"), Mapping):
        return (kind, _kinds(t["item"]))
    return kind


def peer_differences(sample_type: type, own: Mapping[str, Any]) -> list[str]:
    """What keeps `sample_type` from reading samples of a peer schema (in our shape), by
    field names and kinds; empty when it can."""
    if not is_packable(sample_type):
        return [f"{getattr(sample_type, '__name__', sample_type)!r} is not a packable class"]
    ours = {
        f["name"]: f["type"] for f in schema_mod.schema_of(sample_type, created_at="-")["fields"]
    }
    theirs = {f.get("name"): f.get("type") for f in own.get("fields", []) if isinstance(f, Mapping)}
    lines: list[str] = []
    for name, t in theirs.items():
        if name not in ours:
            lines.append(f"field {name!r} ({_kind_text(t)}) is missing")
        elif _kinds(ours[name]) != _kinds(t):
            lines.append(
                f"field {name!r}: {_kind_text(ours[name])} here, {_kind_text(t)} in the schema"
            )
    lines += [f"field {name!r} is not in the schema" for name in ours if name not in theirs]
    return lines


def _kind_text(t: Any) -> str:
    k = _kinds(t)
    if isinstance(k, tuple):
        return f"{k[0]} of {_kind_text(t.get('item'))}"
    return str(k)


# -- shards ----------------------------------------------------------------------------------


def _sha256(shard: PeerShard, name: str, where: str, unverified: list[str]) -> str | None:
    """The sha256 to verify a shard against, or None (noted in `unverified`, with why)."""
    if shard.algorithm is None:
        unverified.append(f"{name} (checksum 'none' or none given)")
        return None
    if shard.algorithm != "sha256":
        unverified.append(f"{name} ({shard.algorithm} checksum, which this SDK does not compute)")
        return None
    sha = shard.sha256
    if sha is None or not _SHA256.match(sha):
        raise ResolutionError(f"{where}: sha256 checksum {shard.digest!r} is not 64 hex digits")
    return sha


def entry_shard_sources(
    entry: Record,
    *,
    did: str,
    pds: str,
    allow_private: bool | None,
    trusted_endpoints: Sequence[str],
    s3_client_kwargs: Mapping[str, Any] | None,
    timeout: float,
) -> tuple[list[ShardSource], list[str]]:
    """One `ShardSource` per shard of a peer entry, and the shards left unverified (why)."""
    try:
        storage = entry_storage(entry.value)
    except LexiconError as e:
        raise ResolutionError(f"entry {entry.uri}: {e}") from e
    unverified: list[str] = []
    sources: list[ShardSource] = []
    s3_kwargs: dict[str, Any] | None = None
    if storage.kind == "blobs":
        check_url(pds, allow_private=allow_private)
    elif storage.kind == "s3":
        s3_kwargs = s3_client_options(
            storage.endpoint,
            storage.region,
            trusted_endpoints=trusted_endpoints,
            s3_client_kwargs=s3_client_kwargs,
            allow_private=allow_private,
        )
    for i, shard in enumerate(storage.shards):
        where = f"shard {i} of {entry.uri}"
        if shard.blob_cid is not None:
            url = f"{pds}/xrpc/com.atproto.sync.getBlob?" + urlencode(
                {"did": did, "cid": shard.blob_cid}
            )
            sources.append(
                BlobShard(
                    url,
                    dataset_uri=entry.uri,
                    sha256=_blob_sha256(shard, url, where, unverified),
                    size=_blob_size(shard),
                    allow_private=allow_private,
                    timeout=timeout,
                )
            )
        elif shard.key is not None:
            name = f"s3://{storage.bucket}/{shard.key}"
            sha = _sha256(shard, name, where, unverified)
            sources.append(S3Shard(name, sha256=sha, client_kwargs=s3_kwargs))
        elif shard.url is not None:
            sha = _sha256(shard, shard.url, where, unverified)
            sources.append(
                _url_source(shard.url, sha, where, allow_private, timeout, s3_client_kwargs)
            )
    if not sources:
        raise ResolutionError(f"entry {entry.uri} lists no shards")
    return sources, unverified


def _blob_sha256(shard: PeerShard, url: str, where: str, unverified: list[str]) -> str | None:
    """A PDS blob's CID (raw codec, sha2-256) is the sha256 of its bytes: that is verified,
    and must agree with the record's checksum when it gives one."""
    link = str(shard.blob_cid)
    if not link.startswith("bafkrei"):  # not a raw sha256 CID: the record's checksum only
        return _sha256(shard, url, where, unverified)
    try:
        raw = cid_bytes(link)
    except ValueError:  # not base32
        raw = b""
    if len(raw) != 36 or raw[:4] != _RAW_SHA256_CID:
        raise ResolutionError(f"{where}: blob CID {link!r} is malformed")
    sha = raw[4:].hex()
    if shard.algorithm == "sha256" and shard.sha256 != sha:
        raise ResolutionError(
            f"{where} (blob {link}): the blob's CID and the record's sha256 disagree"
        )
    return sha


def _blob_size(shard: PeerShard) -> int | None:
    size = shard.blob.get("size") if shard.blob is not None else None
    return size if type(size) is int and size >= 0 else None


def _url_source(
    url: str,
    sha: str | None,
    where: str,
    allow_private: bool | None,
    timeout: float,
    s3_client_kwargs: Mapping[str, Any] | None,
) -> ShardSource:
    if url.startswith(("http://", "https://")):
        return GuardedHttpShard(url, sha256=sha, allow_private=allow_private, timeout=timeout)
    if url.startswith("s3://"):  # no endpoint: AWS itself, with the user's credentials
        kwargs = s3_client_options(None, None, s3_client_kwargs=s3_client_kwargs)
        return S3Shard(url, sha256=sha, client_kwargs=kwargs)
    raise ResolutionError(f"{where}: cannot read {url!r} (http, https or s3 URLs only)")


def warn_unverified(uri: str, unverified: Sequence[str]) -> None:
    """One warning for a load whose shards include unverified ones, naming each."""
    if unverified:
        warnings.warn(
            f"{uri}: {len(unverified)} shard(s) are unverified (the record gives no sha256 "
            "for them, so their bytes cannot be checked): " + ", ".join(unverified),
            AtdataWarning,
            stacklevel=5,
        )


def entry_sample_count(entry: Record) -> int | None:
    """The sample count the entry's `size` declares, if it does."""
    size = entry.value.get("size")
    n = size.get("samples") if isinstance(size, Mapping) else None
    return n if type(n) is int and n >= 0 else None


# -- loading an entry ------------------------------------------------------------------------


def load_entry(
    r: Resolver,
    source: str,
    *,
    cid: str | None,
    sample_type: type | None,
    split: str | None,
    cache: ShardCache | None,
    trusted_endpoints: Sequence[str],
    s3_client_kwargs: Mapping[str, Any] | None,
    on_error: str,
    label: Record | None = None,
) -> Dataset[Any]:
    """A `Dataset` for the peer entry (or label: its entry) at `source`, or for `label`.

    `cid` pins the record at `source` (the label, for a label URI). The dataset reports the
    entry's URI and CID, and the label's version when reached through a label.
    """
    at = parse_at_uri(source)
    if at.collection == PEER_LABEL and label is None:
        label = r.fetch_record(source, cid)
        cid = None
    if label is not None:
        source = label_entry_uri(label)
        log.info("label %s names %s", label.uri, source)
    entry = r.fetch_record(source, cid)
    if entry.value.get("$type") != PEER_ENTRY:
        raise ResolutionError(f"{entry.uri} is not a {PEER_ENTRY} record")
    if split is not None:
        raise ResolutionError(
            f"entry {entry.uri} has no split {split!r}: {PEER_ENTRY} records have no splits"
        )
    _, own = peer_schema(r, entry)
    stype, view = r.sample_type_for(own, sample_type, differences=peer_differences)
    did = parse_at_uri(entry.uri).authority
    sources, unverified = entry_shard_sources(
        entry,
        did=did,
        pds=r.identity.pds_endpoint(did),
        allow_private=r.allow_private,
        trusted_endpoints=trusted_endpoints,
        s3_client_kwargs=s3_client_kwargs,
        timeout=r.timeout,
    )
    if cache is not None:  # shards with a sha256 only: an unverified one is never cached
        sources = [cache.wrap(s) for s in sources]
    warn_unverified(entry.uri, unverified)
    version = label.value.get("version") if label is not None else None
    ds: Dataset[Any] = Dataset(
        sources,
        sample_count=entry_sample_count(entry),
        on_error=on_error,
        uri=entry.uri,
        cid=entry.cid,
        version=version if isinstance(version, str) else None,
        sample_type=stype,
    )
    return ds.as_type(view) if view is not None else ds


# -- labels ----------------------------------------------------------------------------------


def label_entry_uri(label: Record) -> str:
    """The entry a label record points at (its `datasetUri`), checked to be an entry URI."""
    if label.value.get("$type") != PEER_LABEL:
        raise ResolutionError(f"{label.uri} is not a {PEER_LABEL} record")
    target = label.value.get("datasetUri")
    if not isinstance(target, str) or not target.startswith("at://"):
        raise ResolutionError(f"label {label.uri} has no datasetUri at:// URI (got {target!r})")
    if parse_at_uri(target).collection != PEER_ENTRY:
        raise ResolutionError(f"label {label.uri} points at {target}, which is not a {PEER_ENTRY}")
    return target


@dataclass(frozen=True)
class LabelPick:
    """The label `@handle/name[@version]` resolved to (checked on the author's PDS)."""

    label: Record

    @property
    def entry_uri(self) -> str:
        return label_entry_uri(self.label)

    @property
    def version(self) -> str | None:
        v = self.label.value.get("version")
        return v if isinstance(v, str) else None


def created_at(value: Mapping[str, Any]) -> dt.datetime:
    """A record's `createdAt` as an aware datetime (`Z` or `+00:00`); unreadable: the epoch."""
    text = value.get("createdAt")
    try:
        when = dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return dt.datetime.min.replace(tzinfo=dt.UTC)
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


def same_label_version(have: Any, want: str) -> bool:
    """Label versions are semver or free-form: equal as text, or as semantic versions."""
    from ..versions import InvalidVersion, parse_version

    if not isinstance(have, str):
        return False
    if have == want:
        return True
    try:
        return parse_version(have).compare(want) == 0
    except (InvalidVersion, ValueError, TypeError):
        return False


def newest_label(labels: Sequence[Record], name: str, version: str | None) -> Record | None:
    """The newest (by `createdAt`) label of `name` (and `version`, when given)."""
    fits = [
        rec
        for rec in labels
        if rec.value.get("name") == name
        and (version is None or same_label_version(rec.value.get("version"), version))
    ]
    return max(fits, key=lambda rec: created_at(rec.value), default=None)


def find_label(
    r: Resolver, authority: str, name: str, version: str | None, av: AppViewClient | None
) -> LabelPick | None:
    """The `science.alt.dataset.label` that `@authority/name[@version]` names, or None.

    With an AppView, its `science.alt.dataset.resolveLabel` picks it (`labelUri`, `cid`),
    and the label is then fetched from the author's PDS (its CID must match) and checked for
    author, name, version and the entry the AppView said it names; an AppView that cannot
    answer that query is passed over for the PDS, and its `LabelNotFound` means none. Without one, the
    author's labels are listed on their PDS (`listRecords`) and the newest of that name
    (and version) chosen.
    """
    if av is not None:
        try:
            found = av.query(
                f"{PEER_LABEL.rpartition('.')[0]}.resolveLabel",
                handle=authority,
                name=name,
                version=version,
            )
        except (AppViewError, ResolutionError) as e:
            if "LabelNotFound" in str(e) or getattr(e, "error", None) == "LabelNotFound":
                return None
            log.info("AppView %s cannot resolve labels (%s); listing the PDS", av.url, e)
        else:
            # {uri: the entry, cid: the label's, labelUri, label}; an answer without the
            # label's own URI cannot be checked on the PDS, which is then listed instead
            uri, cid = found.get("labelUri"), found.get("cid")
            if not isinstance(uri, str) or not isinstance(cid, str):
                log.info("AppView %s answered resolveLabel without labelUri/cid", av.url)
                return _label_on_pds(r, authority, name, version)
            label = r.fetch_record(uri, cid)
            at = parse_at_uri(label.uri)
            if (
                not _is_authors(r, at.authority, authority)
                or at.collection != PEER_LABEL
                or label.value.get("name") != name
                or (
                    version is not None
                    and not same_label_version(label.value.get("version"), version)
                )
            ):
                raise ResolutionError(
                    f"AppView {av.url} resolved @{authority}/{name} to {label.uri}, which is not "
                    f"{authority}'s label {name} {version or ''}: the AppView is stale or altered"
                )
            if found.get("uri") not in (None, label_entry_uri(label)):
                raise ResolutionError(
                    f"AppView {av.url} answered {label.uri} as naming {found.get('uri')}, but "
                    f"the label names {label_entry_uri(label)}: the AppView is stale or altered"
                )
            return LabelPick(label)
    return _label_on_pds(r, authority, name, version)


def _label_on_pds(r: Resolver, authority: str, name: str, version: str | None) -> LabelPick | None:
    """The newest label of `name` (and `version`) among the author's, listed on their PDS."""
    did = r.identity.resolve_identifier(authority)
    chosen = newest_label(list(list_records(r, did, PEER_LABEL)), name, version)
    return LabelPick(chosen) if chosen is not None else None


def _is_authors(r: Resolver, did: str, authority: str) -> bool:
    """True when `authority` (a DID or a handle) is `did`: a handle must be the one `did`'s
    own DID document claims (no handle lookup needed, as for our records via an AppView)."""
    if authority.startswith("did:"):
        return did == authority
    return parse_did_document(did, r.identity.resolve_did(did)).handle == authority.lower()


def list_records(r: Resolver, did: str, collection: str) -> Iterator[Record]:
    """Every record of `collection` in `did`'s repository, from its PDS, each CID-checked."""
    pds = r.identity.pds_endpoint(did)
    cursor: str | None = None
    for _ in range(_MAX_LIST_PAGES):
        params: dict[str, Any] = {"repo": did, "collection": collection, "limit": 100}
        if cursor:
            params["cursor"] = cursor
        try:
            page = get_json(
                f"{pds}/xrpc/com.atproto.repo.listRecords",
                params=params,
                allow_private=r.allow_private,
                timeout=r.timeout,
            )
        except HTTPStatusError as e:
            raise ResolutionError(f"cannot list {collection} of {did} on {pds}: {e}") from e
        records = page.get("records") if isinstance(page, dict) else None
        if not isinstance(records, list):
            raise ResolutionError(f"{pds} answered listRecords without records")
        for item in records:
            value = item.get("value") if isinstance(item, dict) else None
            uri = item.get("uri") if isinstance(item, dict) else None
            if not isinstance(value, dict) or not isinstance(uri, str):
                continue
            cid = record_cid(value)
            if item.get("cid") not in (None, cid):
                raise ResolutionError(
                    f"{pds} listed {uri} with cid {item.get('cid')}, but its content hashes to {cid}"
                )
            yield r.remember(Record(uri, cid, value))
        cursor = page.get("cursor")
        if not cursor or not records:
            return
    log.warning("stopped listing %s of %s after %d pages", collection, did, _MAX_LIST_PAGES)


# -- lenses ----------------------------------------------------------------------------------


def _entry_point(code: Any, uri: str, which: str) -> str:
    """`module:qualname` from a peer lens's `#codeReference` (its `path`)."""
    path = code.get("path") if isinstance(code, Mapping) else None
    if not isinstance(path, str) or ":" not in path:
        raise LensError(f"lens {uri}: its {which} names no module:function path (got {path!r})")
    module, _, qualname = path.partition(":")
    if module.endswith(".py"):  # a file path in the repository: pkg/mod.py -> pkg.mod
        module = module[: -len(".py")].replace("/", ".")
    return f"{module}:{qualname}"


def load_peer_lens(rec: Record, trust: bool | str) -> Lens[Any, Any]:
    """The lens a `science.alt.dataset.lens` record names, imported from a local module.

    Its record pins no hash of the code, so it is imported only with `trust="unpinned"`
    (whatever module of that name is installed here runs), and a warning says so. A getter
    annotated `def f(src: A) -> B` with classes is registered as the lens `A -> B`, as
    `@atdata.lens` registers ours, so `ds.as_type(B)` and `sample_type=B` find it; a getter
    decorated with `@atdata.lens` registered itself when its module ran.
    """
    if rec.value.get("$type") != PEER_LENS:
        raise LensError(f"{rec.uri} is not a {PEER_LENS} record")
    getter_entry = _entry_point(rec.value.get("getterCode"), rec.uri, "getterCode")
    if trust != "unpinned":
        raise LensError(
            f"lens {rec.uri} names code {getter_entry!r}, but a {PEER_LENS} record pins no hash "
            "of it, so the local module cannot be checked against what was published: it is "
            'only imported with trust="unpinned" (read the code first: it runs in your process)'
        )
    warnings.warn(
        f"lens {rec.uri}: importing {getter_entry!r}, which its record does not pin by a hash: "
        "the locally installed module runs unverified",
        AtdataWarning,
        stacklevel=3,
    )
    getter = import_unpinned(getter_entry, uri=rec.uri)
    putter: Callable[..., Any] | None = None
    if isinstance(rec.value.get("putterCode"), Mapping):
        putter_entry = _entry_point(rec.value["putterCode"], rec.uri, "putterCode")
        if putter_entry != getter_entry:
            putter = import_unpinned(putter_entry, uri=rec.uri)
    name = rec.value.get("name")
    if isinstance(getter, Lens):
        if putter is not None and not getter.bidirectional and not isinstance(putter, Lens):
            getter.putter(putter)
        return getter
    if not callable(getter):
        raise LensError(f"lens {rec.uri}: {getter_entry} is not callable")
    label = name if isinstance(name, str) else None
    try:
        source, view = lens_types(getter)
    except (LensError, TypeError, ValueError, AttributeError) as exc:  # no class annotations:
        # usable by hand (`.get`), but not found by type
        log.info("lens %s is not registered: %s", rec.uri, exc)
        return Lens(getter, putter, name=label)
    return registry.register(Lens(getter, putter, source=source, view=view, name=label))
