"""Resolving `at://` URIs to records and datasets: `load_dataset` and `fetch_record`.

The path is: authority (DID, or handle -> DID) -> DID document -> PDS endpoint ->
`com.atproto.repo.getRecord`, whose CID is recomputed from the value (so neither a PDS nor an
AppView can hand over a different record under a pinned CID) -> the schema record by its
strong ref -> a `Dataset` of shard sources that stream from `com.atproto.sync.getBlob`, S3 or
HTTP and verify each shard's sha256 while streaming. Every URL taken from a record or a DID
document goes through the network guard; the user's AWS credentials go only to endpoints the
user trusts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias
from urllib.parse import urlencode

from .. import schema as schema_mod
from .._sources import LocalShard, S3Shard, ShardSource
from ..appview_client import AppViewClient
from ..dataset import Dataset
from ..errors import (
    AppViewError,
    AtdataWarning,
    LexiconError,
    ResolutionError,
    SchemaError,
    UnsafeURLError,
)
from ..lens import registry as lens_registry
from ..lexicon import default_lexicons
from ..records import DATASET, PEER_ENTRY, PEER_LABEL, SCHEMA, Record
from ..versions import InvalidVersion, newest, parse_version, record_version, split_version_ref
from .cache import ShardCache
from .cid import check_record_cid, cid_bytes, record_cid
from .did import check_did, parse_did_document
from .identity import AtUri, IdentityResolver, default_plc_url, parse_at_uri
from .netguard import (
    DEFAULT_TIMEOUT,
    FetchError,
    HTTPStatusError,
    check_url,
    get_bytes,
    get_json,
    private_network_allowed,
)
from .offline import OfflineStore, offline_requested
from .peer_resolve import LabelPick, find_label, list_records, load_entry
from .remote_shards import (
    BlobShard,
    GuardedHttpShard,
    s3_client_options,
    trusted_s3_endpoints,
)

# What `appview=` takes: a URL, a client, True for $ATDATA_APPVIEW, or None (the PDS only).
AppViewArg: TypeAlias = "str | AppViewClient | bool | None"

__all__ = [
    "BlobShard",
    "GuardedHttpShard",
    "Resolver",
    "fetch_record",
    "load_dataset",
    "shard_sources",
    "trusted_s3_endpoints",
]

log = logging.getLogger(__name__)


class Resolver:
    """Resolves records and datasets; caches records (by URI+CID) and generated types."""

    def __init__(
        self,
        *,
        plc_url: str | None = None,
        handle_services: Sequence[str] = (),
        allow_private: bool | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        services = list(handle_services)
        if os.environ.get("ATDATA_PDS"):
            services.append(os.environ["ATDATA_PDS"])
        self.identity = IdentityResolver(
            plc_url, handle_services=services, allow_private=allow_private, timeout=timeout
        )
        self.allow_private = allow_private
        self.timeout = timeout
        self._records: dict[tuple[str, str], Record] = {}
        self._types: dict[str, type] = {}
        self._lock = threading.Lock()

    def fetch_record(self, uri: str, cid: str | None = None) -> Record:
        """The record at `uri` from its author's PDS; with `cid`, exactly that version."""
        at = parse_at_uri(uri)
        if cid is not None:
            check_record_cid(cid)
            with self._lock:
                hit = self._records.get((uri, cid))
            if hit is not None:
                return hit
        did = self.identity.resolve_identifier(at.authority)
        pds = self.identity.pds_endpoint(did)
        params = {"repo": did, "collection": at.collection, "rkey": at.rkey}
        try:
            try:
                out = self._get_record(pds, params)
            except (FetchError, HTTPStatusError) as e:
                # A PDS that does not answer, or no longer hosts the repo, may be one the
                # account left: the DID document is fetched fresh once, and a new PDS asked.
                if isinstance(e, HTTPStatusError) and e.error != "RepoNotFound":
                    raise
                moved = self.identity.moved_pds(did, pds)
                if moved is None:
                    raise
                log.info("%s moved from %s to %s; asking the new PDS", did, pds, moved)
                pds = moved
                out = self._get_record(pds, params)
        except HTTPStatusError as e:
            if e.error == "RecordNotFound" or e.status == 404:
                raise ResolutionError(f"record {uri} not found on {pds}") from e
            raise ResolutionError(f"cannot fetch {uri} from {pds}: {e}") from e
        value = out.get("value") if isinstance(out, dict) else None
        if not isinstance(value, dict):
            raise ResolutionError(f"{pds} answered getRecord for {uri} without a record value")
        actual = record_cid(value)
        if out.get("cid") not in (None, actual):
            raise ResolutionError(
                f"{pds} sent {uri} with cid {out.get('cid')}, but its content hashes to {actual}"
            )
        if cid is not None and actual != cid:
            raise ResolutionError(
                f"record {uri} has changed: its cid is now {actual}, not the pinned {cid}"
            )
        canonical = f"at://{did}/{at.collection}/{at.rkey}"
        return self.remember(Record(canonical, actual, value), uri)

    def _get_record(self, pds: str, params: dict[str, Any]) -> Any:
        return get_json(
            f"{pds}/xrpc/com.atproto.repo.getRecord",
            params=params,
            allow_private=self.allow_private,
            timeout=self.timeout,
        )

    def remember(self, rec: Record, *aliases: str) -> Record:
        """Cache a record whose CID has been checked, under its URI and `aliases`."""
        with self._lock:
            for uri in (rec.uri, *aliases):
                self._records[(uri, rec.cid)] = rec
        return rec

    def sample_type_for(
        self,
        schema: Record,
        sample_type: type | None,
        *,
        differences: Callable[[type, Mapping[str, Any]], list[str]] | None = None,
    ) -> tuple[type, type | None]:
        """The type to read samples as, and the type to view them as through a lens (or None).

        Without `sample_type`: a type generated from the schema (cached). With it: that class
        when it matches the schema; else a registered class that matches the schema and has a
        lens (or chain) to it, viewed through the lens; else a `SchemaError` naming the
        fields that differ. `differences` (default: our schemas' exact comparison) says
        what keeps a class from matching; empty means it matches.
        """
        differ = differences or schema_mod.schema_differences
        if sample_type is not None:
            if not differ(sample_type, schema.value):
                return sample_type, None
            for source in _lens_sources(sample_type):
                if not differ(source, schema.value):
                    log.info(
                        "reading %s as %s, viewed as %s through a lens",
                        schema.uri,
                        source.__qualname__,
                        sample_type.__qualname__,
                    )
                    return source, sample_type
            name = getattr(sample_type, "__qualname__", repr(sample_type))
            raise SchemaError(
                f"{name} does not match schema {schema.uri} "
                f"({schema.value.get('name')}@{schema.value.get('version')}): "
                + "; ".join(differ(sample_type, schema.value))
                + ". Register a lens from a class matching the schema to "
                f"{name}, or pass no sample_type to use a type generated from the schema"
            )
        return self._generated_type(schema), None

    def _generated_type(self, schema: Record) -> type:
        with self._lock:
            cached = self._types.get(schema.cid)
        if cached is not None:
            return cached
        t = schema_mod.type_from_schema(schema.value)
        with self._lock:
            self._types[schema.cid] = t
        return t

    def manifest_shards(self, did: str, pds: str, blob: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The shard list from a dataset's manifest blob, checked against its CID and lexicon."""
        link = blob["ref"]["$link"]
        url = f"{pds}/xrpc/com.atproto.sync.getBlob?" + urlencode({"did": did, "cid": link})
        size = int(blob["size"])
        try:  # never read more than the record promised
            status, body = get_bytes(
                url, allow_private=self.allow_private, timeout=self.timeout, max_bytes=size
            )
        except UnsafeURLError as e:
            raise ResolutionError(f"manifest blob {link} of {did}: {e}") from e
        if status != 200:
            raise ResolutionError(f"cannot fetch manifest blob {link}: HTTP {status}")
        if cid_bytes(link)[-32:] != hashlib.sha256(body).digest():
            raise ResolutionError(f"manifest blob {link} does not match its CID")
        manifest = json.loads(bytes(body))
        try:
            default_lexicons().validate(f"{DATASET}#manifest", manifest)
        except LexiconError as e:
            raise ResolutionError(f"manifest of the dataset is invalid: {e}") from e
        return manifest["shards"]


def _lens_sources(view: type) -> list[type]:
    """Registered types with a lens (or chain) to `view`, nearest first, `view` excluded."""
    sources: dict[type, int] = {}
    for lens_ in lens_registry:
        source = lens_.source
        if source is None or source is view or source in sources:
            continue
        path = lens_registry.find_path(source, view)
        if path:
            sources[source] = len(path)
    return sorted(sources, key=lambda t: sources[t])


def shard_sources(
    record: Mapping[str, Any],
    entries: list[Mapping[str, Any]],
    *,
    did: str,
    pds: str,
    allow_private: bool | None = None,
    trusted_endpoints: Sequence[str] = (),
    s3_client_kwargs: Mapping[str, Any] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    uri: str | None = None,
) -> list[ShardSource]:
    """One verifying `ShardSource` per shard entry, per the record's storage kind (`uri`,
    the dataset record's, names it in errors).

    S3 credentials (`s3_client_kwargs` or the AWS environment) are used only when the
    record's endpoint is absent (AWS) or trusted; other endpoints are read unsigned.
    """
    storage = record["storage"]
    kind = storage.get("$type", "")
    sources: list[ShardSource] = []
    if kind == f"{DATASET}#blobStorage":
        check_url(pds, allow_private=allow_private)
        for i, e in enumerate(entries):
            if "blob" not in e:
                raise ResolutionError(f"shard {i} of a blob dataset has no blob")
            link = e["blob"]["ref"]["$link"]
            # A raw blob CID is the sha256 of the bytes: it must agree with the record.
            if link.startswith("bafkrei") and cid_bytes(link)[-32:].hex() != e["sha256"]:
                raise ResolutionError(f"shard {i}: blob {link} and its sha256 disagree")
            q = urlencode({"did": did, "cid": link})
            sources.append(
                BlobShard(
                    f"{pds}/xrpc/com.atproto.sync.getBlob?{q}",
                    dataset_uri=uri,
                    sha256=e["sha256"],
                    size=e["bytes"],
                    allow_private=allow_private,
                    timeout=timeout,
                )
            )
    elif kind == f"{DATASET}#s3Storage":
        kwargs = s3_client_options(
            storage.get("endpoint"),
            storage.get("region"),
            trusted_endpoints=trusted_endpoints,
            s3_client_kwargs=s3_client_kwargs,
            allow_private=allow_private,
        )
        for i, e in enumerate(entries):
            if "key" not in e:
                raise ResolutionError(f"shard {i} of an S3 dataset has no key")
            sources.append(
                S3Shard(
                    f"s3://{storage['bucket']}/{e['key']}",
                    sha256=e["sha256"],
                    size=e["bytes"],
                    client_kwargs=kwargs,
                )
            )
    elif kind == f"{DATASET}#httpStorage":
        for i, e in enumerate(entries):
            if "url" not in e:
                raise ResolutionError(f"shard {i} of an HTTP dataset has no url")
            sources.append(
                GuardedHttpShard(
                    e["url"],
                    sha256=e["sha256"],
                    size=e["bytes"],
                    allow_private=allow_private,
                    timeout=timeout,
                )
            )
    else:
        raise ResolutionError(f"unknown storage kind {kind!r}: this atdata cannot read it")
    return sources


_default: dict[tuple[Any, ...], Resolver] = {}
_default_lock = threading.Lock()


def _resolver(allow_private: bool | None, handle_services: Sequence[str] = ()) -> Resolver:
    key = (
        default_plc_url(),
        private_network_allowed(allow_private),
        tuple(handle_services),
        os.environ.get("ATDATA_PDS"),
    )
    with _default_lock:
        if key not in _default:
            _default[key] = Resolver(
                plc_url=key[0], allow_private=key[1], handle_services=handle_services
            )
        return _default[key]


def fetch_record(uri: str, cid: str | None = None, *, allow_private: bool | None = None) -> Record:
    """Fetch (and CID-check) any record by at:// URI from its author's PDS (cached)."""
    return _resolver(allow_private).fetch_record(uri, cid)


def _appview_client(appview: AppViewArg) -> AppViewClient | None:
    """An `AppViewClient` for `appview` (URL, client, or True for `$ATDATA_APPVIEW`), or None."""
    if appview is None or appview is False:
        return None
    if appview is True:
        return AppViewClient()
    if isinstance(appview, AppViewClient):
        return appview
    if isinstance(appview, str):
        return AppViewClient(appview)
    raise TypeError(f"appview must be a URL, an AppViewClient or True, not {appview!r}")


def _via_appview(
    r: Resolver, av: Any, source: str, at: AtUri, cid: str | None
) -> tuple[Record, Record | None] | None:
    """The dataset record (and its schema when the AppView has it), looked up through the
    AppView's `io.atdata.getDataset` and checked: never taken on the AppView's word.

    The dataset record's content must hash to the CID the AppView claims, and that CID must
    be the pinned `cid` or the one the author's PDS reports now; the schema must hash to the
    CID the dataset's strong ref pins. A handle in `source` must be claimed by the DID
    document of the DID the AppView maps it to. Returns None (after logging) when the AppView
    does not answer for this URI, so the caller reads the author's PDS directly.
    """
    where = f"AppView {av.url}"
    try:
        data = av.get_dataset(source).to_dict()
    except ResolutionError:
        log.info("%s does not index %s; reading it from the author's PDS", where, source)
        return None
    except AppViewError as e:
        log.warning("%s could not look up %s (%s); reading the author's PDS", where, source, e)
        return None
    did, value, claimed = data.get("did"), data.get("record"), data.get("cid")
    if not (isinstance(did, str) and isinstance(value, dict) and isinstance(claimed, str)):
        raise ResolutionError(f"{where} answered getDataset for {source} without did/cid/record")
    check_did(did)
    if at.authority.startswith("did:"):
        if did != at.authority:
            raise ResolutionError(f"{where} answered {source} with a record of {did}")
    else:
        handle = parse_did_document(did, r.identity.resolve_did(did)).handle
        if handle != at.authority.lower():
            raise ResolutionError(
                f"{where} resolved handle {at.authority} to {did}, but that DID's document "
                f"claims the handle {handle!r}"
            )
    canonical = f"at://{did}/{at.collection}/{at.rkey}"
    if data.get("uri") != canonical:
        raise ResolutionError(f"{where} answered {source} with another record, {data.get('uri')}")
    actual = record_cid(value)
    if actual != claimed:
        raise ResolutionError(
            f"{where} sent {canonical} with cid {claimed}, but its content hashes to {actual}: "
            "the AppView's copy was altered"
        )
    if cid is not None and actual == cid:
        rec = r.remember(Record(canonical, actual, value), source)  # verified by the pinned CID
    elif cid is not None:
        log.info("%s holds %s at cid %s, not the pinned %s", where, canonical, actual, cid)
        rec = r.fetch_record(canonical, cid)  # the author's PDS decides
    else:
        rec = r.fetch_record(canonical)
        if rec.cid != actual:
            raise ResolutionError(
                f"{where} holds {canonical} at cid {actual}, but the author's PDS has {rec.cid}: "
                "the AppView is stale or altered the record (load without appview= to read "
                "the PDS directly)"
            )
        r.remember(rec, source)

    schema_view, ref = data.get("schema"), rec.value.get("schema")
    if not (isinstance(schema_view, dict) and isinstance(ref, dict)):
        return rec, None
    schema_value = schema_view.get("record")
    if (
        schema_view.get("uri") != ref.get("uri")
        or schema_view.get("cid") != ref.get("cid")
        or not isinstance(schema_value, dict)
    ):
        return rec, None  # another version or not indexed: fetch it from its author's PDS
    if record_cid(schema_value) != ref["cid"]:
        raise ResolutionError(
            f"{where} sent schema {ref['uri']} as cid {ref['cid']}, but its content hashes to "
            f"{record_cid(schema_value)}: the AppView's copy was altered"
        )
    return rec, r.remember(Record(ref["uri"], ref["cid"], schema_value))


class VersionNotListed(ResolutionError):
    """The AppView lists no dataset (or no such version) for `@handle/name[@version]`."""


@dataclass(frozen=True)
class VersionPick:
    """What `@handle/name[@version]` resolved to through an AppView (not yet checked)."""

    uri: str  #: at://handle/io.atdata.dataset/rkey (the handle: its DID document is checked)
    name: str
    version: str | None  #: the version asked for (None: the newest)
    listed_version: str  #: the version the AppView lists for the record


def find_version(ref: str, appview: AppViewArg = None) -> VersionPick:
    """The record `@handle/name[@version]` names, from the AppView's list of that author's
    versions of `name` (`appview=`, else `$ATDATA_APPVIEW`): the newest, or that version.
    The caller checks the record itself (`check_version`) once fetched from the author's PDS.
    """
    if appview is None and os.environ.get("ATDATA_APPVIEW"):
        appview = True
    av = _appview_client(appview)
    if av is None:
        raise ResolutionError(
            f"finding {ref} needs an AppView to list the versions: pass appview= (--appview) "
            "or set ATDATA_APPVIEW (or use the record's at:// URI)"
        )
    head, version = split_version_ref(ref)
    handle, _, name = head[1:].partition("/")
    if not handle or not name:
        raise ResolutionError(f"{ref!r} is not @handle/name or @handle/name@version")
    if version is not None:
        try:
            parse_version(version)
        except InvalidVersion as e:
            raise ResolutionError(f"{ref}: {e}") from None
    try:
        listed = list(
            av.iter_search(author=handle, name=name, all_versions=True, sort="created", limit=100)
        )
    except AppViewError as e:
        raise ResolutionError(f"AppView {av.url} could not list {head}: {e}") from e
    finally:
        if av is not appview:
            av.close()
    # an AppView that indexes both families lists the peer network's entries too: not ours
    listed = [d for d in listed if f"/{DATASET}/" in str(d.get("uri", ""))]
    if version is not None:
        matches = [d for d in listed if _same_version(d.get("version"), version)]
        if not matches:
            have = ", ".join(sorted({str(d.get("version")) for d in listed})) or "none"
            raise VersionNotListed(
                f"{head} has no version {version} in AppView {av.url} (versions: {have})"
            )
        chosen = newest(matches, lambda d: (d.get("version"), d.get("createdAt")))
    else:
        chosen = newest(listed, lambda d: (d.get("version"), d.get("createdAt")))
        if chosen is None:
            raise VersionNotListed(f"AppView {av.url} knows no dataset {head}")
    assert chosen is not None
    rkey = str(chosen.get("uri", "")).rsplit("/", 1)[-1]
    log.info("%s is %s (version %s)", ref, chosen.get("uri"), chosen.get("version"))
    return VersionPick(f"at://{handle}/{DATASET}/{rkey}", name, version, str(chosen.get("version")))


def find_named(
    ref: str, appview: AppViewArg = None, *, allow_private: bool | None = None
) -> VersionPick | LabelPick:
    """What `@handle/name[@version]` names across both record families.

    The author's `io.atdata.dataset` of that name (and version) comes first: through the
    AppView's listing when one is given (`appview=`, else `$ATDATA_APPVIEW`), else listed
    on the author's PDS. When
    there is none, the newest `science.alt.dataset.label` of that name (by `createdAt`; with
    `@version`, the label of that version) names the entry to load. When both exist, ours
    wins and an `AtdataWarning` names the label passed over.
    """
    if appview is None and os.environ.get("ATDATA_APPVIEW"):
        appview = True
    head, version = split_version_ref(ref)
    handle, _, name = head[1:].partition("/")
    if not head.startswith("@") or not handle or not name:
        raise ResolutionError(f"{ref!r} is not @handle/name or @handle/name@version")
    semver_ok = version is None or _is_semver(version)  # a label's version may be free-form
    av = _appview_client(appview)
    r = _resolver(allow_private, [av.url] if av is not None else [])
    own: VersionPick | None = None
    missing: VersionNotListed | None = None
    try:
        if semver_ok:
            try:
                own = (
                    find_version(ref, av)
                    if av is not None
                    else _find_version_on_pds(r, handle, name, version)
                )
            except VersionNotListed as e:
                missing = e
        try:
            label = find_label(r, handle, name, version, av)
        except ResolutionError as e:
            if own is None:
                if missing is None:
                    raise
                raise VersionNotListed(
                    f"{missing}; and its {PEER_LABEL} records cannot be listed: {e}"
                ) from e
            log.info("%s: no label lookup (%s); loading %s", ref, e, own.uri)
            label = None
    finally:
        if av is not None and av is not appview:
            av.close()
    if own is not None:
        if label is not None:
            warnings.warn(
                f"{ref} names both {handle}'s {DATASET} {own.uri} and the {PEER_LABEL} "
                f"{label.label.uri} (pointing at {label.entry_uri}): loading the {DATASET}; "
                "load the other by its at:// URI",
                AtdataWarning,
                stacklevel=3,
            )
        return own
    if label is not None:
        log.info("%s is the label %s, naming %s", ref, label.label.uri, label.entry_uri)
        return label
    said = str(missing) if missing is not None else f"{handle} has no {DATASET} {name}@{version}"
    raise VersionNotListed(
        f"{said}; nor is there a {PEER_LABEL} {name}"
        + (f" of version {version}" if version is not None else "")
    )


def _is_semver(text: str) -> bool:
    try:
        parse_version(text)
    except InvalidVersion:
        return False
    return True


def _find_version_on_pds(r: Resolver, handle: str, name: str, version: str | None) -> VersionPick:
    """`find_version` without an AppView: the author's datasets listed on their own PDS."""
    did = r.identity.resolve_identifier(handle)
    listed = [rec for rec in list_records(r, did, DATASET) if rec.value.get("name") == name]
    where = f"the PDS of {handle}"
    if version is not None:
        matches = [rec for rec in listed if _same_version(record_version(rec.value), version)]
        if not matches:
            have = ", ".join(sorted({str(record_version(rec.value)) for rec in listed})) or "none"
            raise VersionNotListed(
                f"@{handle}/{name} has no version {version} in {where} (versions: {have})"
            )
    else:
        matches = listed
    chosen = newest(matches, lambda rec: (record_version(rec.value), rec.value.get("createdAt")))
    if chosen is None:
        raise VersionNotListed(f"{where} holds no dataset @{handle}/{name}")
    log.info("@%s/%s is %s (version %s)", handle, name, chosen.uri, record_version(chosen.value))
    return VersionPick(chosen.uri, name, version, str(record_version(chosen.value)))


def check_version(rec: Record, name: str, version: str | None) -> None:
    """The record the author's PDS holds must be the name (and version) asked for."""
    got = (rec.value.get("name"), record_version(rec.value))
    if got[0] != name or (version is not None and not _same_version(got[1], version)):
        raise ResolutionError(
            f"the AppView listed {rec.uri} as {name} {version or '(newest)'}, but the "
            f"author's record is {got[0]} {got[1]}: the AppView is stale or altered"
        )


def _same_version(a: Any, b: str) -> bool:
    try:
        return isinstance(a, str) and parse_version(a).compare(b) == 0
    except InvalidVersion:
        return False


def _record_dataset(
    rec: Record,
    chosen: Sequence[Mapping[str, Any]],
    sources: Sequence[ShardSource],
    stype: type,
    view: type | None,
    on_error: str,
) -> Dataset[Any]:
    """The Dataset a record's chosen shards make, online or offline alike: counts, identity
    and version from the record, seen as ``view`` when a lens leads to the asked-for type."""
    ds: Dataset[Any] = Dataset(
        list(sources),
        sample_count=sum(e["samples"] for e in chosen),
        shard_counts=[e["samples"] for e in chosen],  # the loader needs no index pass
        on_error=on_error,
        uri=rec.uri,
        cid=rec.cid,
        version=record_version(rec.value),
        sample_type=stype,
    )
    return ds.as_type(view) if view is not None else ds


def load_dataset(
    source: str,
    sample_type: type | None = None,
    split: str | None = None,
    cid: str | None = None,
    appview: AppViewArg = None,
    *,
    allow_private: bool | None = None,
    cache: ShardCache | str | os.PathLike[str] | None = None,
    cache_max_bytes: int = 10 * 2**30,
    trusted_s3_endpoints: Sequence[str] = (),
    s3_client_kwargs: Mapping[str, Any] | None = None,
    on_error: str = "raise",
    offline: bool | None = None,
) -> Dataset[Any]:
    """A `Dataset` for the `io.atdata.dataset` record at `source`: an at:// URI
    (`at://did/io.atdata.dataset/rkey`, exactly that record), `"@handle/name"` (the author's
    newest version of that name) or `"@handle/name@1.1.0"` (that version).

    `split` restricts it to one named split; `cid` pins the record version (an error if it
    changed; a cid that cannot be a record's is refused before any request); the result
    reports `.uri`, `.cid` and `.version` (log them to pin a training run). Without `sample_type` the samples come as a type generated from
    the schema. With it, they come as that class: read directly when it matches the published
    schema, or through a registered lens from a class that matches it; otherwise a
    `SchemaError` names the fields that differ.

    `appview` (a URL, an `AppViewClient`, or True for `$ATDATA_APPVIEW`; None reads the
    author's PDS directly) looks the dataset up through the AppView's `io.atdata.getDataset`:
    it resolves a handle in `source` and supplies the record and its schema, but the AppView
    is never the authority: the record's recomputed CID must match the pinned `cid` or the
    CID the author's PDS reports, the schema's must match the dataset's strong ref, and shards
    are read from the author's PDS (per its DID document) or the record's storage, checked by
    sha256. A mismatch raises `ResolutionError`. When the AppView does not hold the dataset,
    the author's PDS is read directly (and the AppView URL is tried for `resolveHandle`).
    `@handle/name[@version]` is looked up through the AppView (`appview=`, else
    `$ATDATA_APPVIEW`): its `searchDatasets` lists the author's versions of that name (without
    an AppView, the author's PDS lists them), and the chosen record then goes through the same
    checks as a URI; its name and version are checked on the record the author's PDS holds.

    The peer network's records load too (see `peer_resolve`): a `science.alt.dataset.entry`
    URI, typed from its schema record; a `science.alt.dataset.label` URI, its entry (`cid`
    pins the label; the dataset reports the label's version); and `@handle/name[@version]`
    falls back to the newest label of that name (or of that version) when the author has no
    `io.atdata.dataset` of it (when both exist, ours wins and an `AtdataWarning` says so).
    Their sha256 checksums are verified as ours are; unverifiable shards (a `none`
    checksum) are named in one `AtdataWarning`. `sample_type` must match their field names
    and kinds. They have no splits, and offline loads are for `io.atdata` records only.
    `cache` (a `ShardCache` or a folder) keeps verified shards on disk, capped at
    `cache_max_bytes`, and beside them the dataset and schema records and the shard list (by
    CID). `offline=True` (or `ATDATA_OFFLINE=1`) then loads a pinned dataset (`cid=`, or an
    `@handle/name@version` loaded before) from that cache (`cache=`, else the default one
    under `ATDATA_CACHE`) with no network at all; every shard's sha256 is checked as usual, and
    anything missing is named in one `ResolutionError` saying what to fetch.
    """
    asked = source
    if offline_requested(offline):
        return _load_offline(
            source,
            sample_type,
            split,
            cid,
            cache=cache,
            cache_max_bytes=cache_max_bytes,
            allow_private=allow_private,
            on_error=on_error,
        )
    wanted: tuple[str, str | None] | None = None  # (name, version) of an @handle/name load
    label: Record | None = None  # the science.alt.dataset.label an @handle/name load picked
    if cid is not None:
        check_record_cid(cid)
    if isinstance(source, str) and source.startswith("@"):
        if appview is None and os.environ.get("ATDATA_APPVIEW"):
            appview = True
        pick = find_named(source, appview, allow_private=allow_private)
        if isinstance(pick, LabelPick):  # a label URI: loaded as a peer record below
            source, label = pick.label.uri, pick.label
        else:
            source, wanted = pick.uri, (pick.name, pick.version)
    if not isinstance(source, str) or not source.startswith("at://"):
        raise ResolutionError(
            f"load_dataset needs an at:// URI of an {DATASET} record (or a {PEER_ENTRY} or "
            f"{PEER_LABEL}) or @handle/name[@version], got {source!r}"
        )
    at = parse_at_uri(source)
    if at.collection in (PEER_ENTRY, PEER_LABEL):
        return _load_peer(
            source,
            appview,
            label,
            cid=cid,
            sample_type=sample_type,
            split=split,
            allow_private=allow_private,
            cache=_shard_cache(cache, cache_max_bytes),
            trusted_endpoints=trusted_s3_endpoints,
            s3_client_kwargs=s3_client_kwargs,
            on_error=on_error,
        )
    if at.collection != DATASET:
        raise ResolutionError(f"{source} is an {at.collection} record, not an {DATASET}")
    av = _appview_client(appview)
    r = _resolver(allow_private, [av.url] if av is not None else [])
    found = None
    if av is not None:
        try:
            found = _via_appview(r, av, source, at, cid)
        finally:
            if av is not appview:
                av.close()
    rec, schema_rec = found if found is not None else (r.fetch_record(source, cid), None)
    try:
        default_lexicons().validate_record(DATASET, rec.value)
    except LexiconError as e:
        raise ResolutionError(f"dataset record {rec.uri} does not follow its lexicon: {e}") from e
    value = rec.value
    if wanted is not None:  # the AppView's listing, checked on the author's own record
        check_version(rec, *wanted)
    did = parse_at_uri(rec.uri).authority
    pds = r.identity.pds_endpoint(did)
    schema_ref = value["schema"]
    if schema_rec is None:
        schema_rec = r.fetch_record(schema_ref["uri"], schema_ref["cid"])
    if schema_rec.value.get("$type") != SCHEMA:
        raise ResolutionError(f"{schema_ref['uri']} is not an {SCHEMA} record")
    stype, view = r.sample_type_for(schema_rec, sample_type)

    if "shards" in value:
        entries = list(value["shards"])
    elif "manifest" in value:
        entries = r.manifest_shards(did, pds, value["manifest"])
    else:
        raise ResolutionError(f"dataset {rec.uri} lists no shards and no manifest")
    if len(entries) != value["totals"]["shards"]:
        raise ResolutionError(
            f"dataset {rec.uri} lists {len(entries)} shards but its totals say {value['totals']['shards']}"
        )
    chosen = _chosen_shards(rec, entries, split)
    sources = shard_sources(
        value,
        chosen,
        did=did,
        pds=pds,
        allow_private=r.allow_private,
        trusted_endpoints=trusted_s3_endpoints,
        s3_client_kwargs=s3_client_kwargs,
        timeout=r.timeout,
        uri=rec.uri,
    )
    store = _shard_cache(cache, cache_max_bytes)
    if store is not None:
        sources = [store.wrap(s) for s in sources]
        try:  # what an offline load of this record needs later
            OfflineStore(store).keep(rec, schema_rec, entries, did=did, pds=pds, asked=asked)
        except OSError as e:
            log.warning("could not keep %s for offline loads: %s", rec.uri, e)
    return _record_dataset(rec, chosen, sources, stype, view, on_error)


def _shard_cache(
    cache: ShardCache | str | os.PathLike[str] | None, max_bytes: int
) -> ShardCache | None:
    """`cache=` as a `ShardCache` (a folder gets one capped at `max_bytes`), or None."""
    if cache is None or isinstance(cache, ShardCache):
        return cache
    return ShardCache(cache, max_bytes=max_bytes)


def _load_peer(
    source: str,
    appview: AppViewArg,
    label: Record | None,
    *,
    allow_private: bool | None,
    **options: Any,
) -> Dataset[Any]:
    """`load_dataset` for the peer network's entries and labels (see `peer_resolve`)."""
    av = _appview_client(appview)
    services = [av.url] if av is not None else []
    if av is not None and av is not appview:
        av.close()
    return load_entry(_resolver(allow_private, services), source, label=label, **options)


def _chosen_shards(
    rec: Record, entries: Sequence[Mapping[str, Any]], split: str | None
) -> list[Mapping[str, Any]]:
    """The shard entries of `split` (all of them without one)."""
    if split is None:
        return list(entries)
    names = {s["name"]: s["shards"] for s in rec.value.get("splits", [])}
    if split not in names:
        raise ResolutionError(
            f"dataset {rec.uri} has no split {split!r}; splits: {sorted(names) or 'none'}"
        )
    indices = list(names[split])
    if any(i >= len(entries) for i in indices):
        raise ResolutionError(f"split {split!r} of {rec.uri} names a shard that does not exist")
    return [entries[i] for i in indices]


def _load_offline(
    source: str,
    sample_type: type | None,
    split: str | None,
    cid: str | None,
    *,
    cache: ShardCache | str | os.PathLike[str] | None,
    cache_max_bytes: int,
    allow_private: bool | None,
    on_error: str,
) -> Dataset[Any]:
    """`load_dataset` from the shard cache and the records kept beside it: no network.

    Everything missing (the records, the shard list, shards) is named in one error.
    """
    store = cache if isinstance(cache, ShardCache) else ShardCache(cache, max_bytes=cache_max_bytes)
    kept = OfflineStore(store)
    where = f"the cache {store.directory}"
    if isinstance(source, str) and source.startswith("@"):
        pinned = kept.alias(source)
        if pinned is None:
            raise ResolutionError(
                f"offline: {source} was never loaded with a cache in {where} (an offline load "
                "needs @handle/name@version loaded once online with cache=, or an at:// URI "
                "with cid=)"
            )
        if cid is not None and cid != pinned[1]:
            raise ResolutionError(f"offline: {source} was {pinned[1]} when loaded, not {cid}")
        source, cid = pinned
    if not isinstance(source, str) or not source.startswith("at://"):
        raise ResolutionError(
            f"load_dataset needs an at:// URI of an {DATASET} record, got {source!r}"
        )
    at = parse_at_uri(source)
    if at.collection in (PEER_ENTRY, PEER_LABEL):
        raise ResolutionError(
            f"offline: {source} is a {at.collection} record; offline loads are for {DATASET} "
            f"records only: a {PEER_ENTRY} names its schema by URI with no CID, so nothing "
            "pins the schema the cache would have to hold (load it online, with cache= to "
            "read its verified shards from disk)"
        )
    if at.collection != DATASET:
        raise ResolutionError(f"{source} is an {at.collection} record, not an {DATASET}")
    if cid is None:
        raise ResolutionError(
            f"offline: {source} is not pinned: pass cid= (the dataset's .cid from an online "
            "load) or load @handle/name@version, so no network is needed to know the version"
        )
    check_record_cid(cid)
    fetch = (
        f"load it online once with atdata.load_dataset({source!r}, cid={cid!r}, "
        f"cache={str(store.directory)!r}) and read it through (e.g. iterate it once)"
    )
    rec = kept.record(cid)
    if rec is None:
        raise ResolutionError(f"offline: {where} does not hold the dataset record {source} "
                              f"(cid {cid}): {fetch}")  # fmt: skip
    if rec.uri.rsplit("/", 1)[-1] != at.rkey or (
        at.authority.startswith("did:") and parse_at_uri(rec.uri).authority != at.authority
    ):
        raise ResolutionError(f"offline: cid {cid} is the record {rec.uri}, not {source}")
    try:
        default_lexicons().validate_record(DATASET, rec.value)
    except LexiconError as e:
        raise ResolutionError(f"dataset record {rec.uri} does not follow its lexicon: {e}") from e
    missing: list[str] = []
    ref = rec.value["schema"]
    schema_rec = kept.record(ref["cid"])
    if schema_rec is None:
        missing.append(f"the schema record {ref['uri']} (cid {ref['cid']})")
    listed = kept.shard_list(cid)
    if listed is None:
        missing.append(f"the shard list of {rec.uri}")
        chosen: list[Mapping[str, Any]] = []
    else:
        chosen = _chosen_shards(rec, listed["shards"], split)
    everything = listed["shards"] if listed is not None else []
    for shard in chosen:
        if store.get(shard["sha256"], shard["bytes"]) is None:
            n = next(i for i, s in enumerate(everything) if s is shard)
            missing.append(f"shard {n} (sha256 {shard['sha256']}, {shard['bytes']} bytes)")
    if missing or schema_rec is None:
        raise ResolutionError(
            f"offline: {len(missing)} thing(s) of {rec.uri} (cid {cid}) are not in {where}: "
            + "; ".join(missing)
            + f". To fetch them, {fetch}"
        )
    if schema_rec.value.get("$type") != SCHEMA:
        raise ResolutionError(f"{ref['uri']} is not an {SCHEMA} record")
    stype, view = _resolver(allow_private).sample_type_for(schema_rec, sample_type)
    sources: list[ShardSource] = [
        LocalShard(store.path_for(e["sha256"]), sha256=e["sha256"], size=e["bytes"]) for e in chosen
    ]
    log.info("offline: %s (cid %s) from %s", rec.uri, cid, store.directory)
    return _record_dataset(rec, chosen, sources, stype, view, on_error)
