"""Publishing to one's own PDS: schemas, datasets (blobs, S3 or HTTP URLs) and lenses.

`Client(pds_url).login(handle, password)` wraps an `atproto.Client` session. Every record is
validated against its lexicon before anything is written, and a dataset's whole plan (shard
sizes against the PDS blob limit, record size, splits) is checked before the first upload.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import httpx
import semver

from .. import peer
from .. import schema as schema_mod
from .._sources import s3_client
from ..dataset import Dataset
from ..errors import (
    AtdataError,
    DecodeError,
    LensError,
    LexiconError,
    ResolutionError,
    describe_xrpc_error,
)
from ..lens import Lens
from ..lexicon import Lexicons, default_lexicons
from ..packable import as_packable, is_packable
from ..records import (
    DATASET,
    LENS,
    PEER_ENTRY,
    PEER_LABEL,
    PEER_LENS,
    PEER_SCHEMA,
    SCHEMA,
    DatasetRef,
    Record,
    RecordRef,
)
from ..versions import InvalidVersion, next_patch, parse_version, record_version
from ..writer import ShardInfo, observe_arrays, write_samples
from .cards import CARD_INLINE_MAX, CARD_MIME, read_card
from .identity import parse_at_uri
from .lens_code import import_lens, lens_code_ref
from .lineage import derivation_entries
from .netguard import get_json
from .peer_publish import (
    OWN_FAMILY,
    PEER_FAMILY,
    check_family,
    not_a_peer_schema,
    peer_schema_record,
    peer_storage_of,
    refuse_unheld,
)
from .peer_resolve import load_peer_lens
from .resolve import fetch_record
from .shards import (
    PublishError,
    cut_shard,
    gather_shards,
    merge_arrays,
    remap_splits,
)
from .spdx import check_license

__all__ = ["Client", "DatasetRef", "PublishError", "Record", "RecordRef"]

log = logging.getLogger(__name__)

TAR_MIME = "application/x-tar"
#: Shards listed in the record itself; past this (or past _MAX_INLINE_JSON) a manifest blob.
MAX_INLINE_SHARDS = 1000
_MAX_INLINE_JSON = 300_000  # bytes of JSON: well under the 1 MB record limit
_PLACEHOLDER_CID = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
#: The largest blob a science.alt.dataset.storageBlobs entry may reference (its lexicon).
_PEER_BLOB_MAX = 50 * 1024 * 1024


def now_iso() -> str:
    """UTC now as an RFC 3339 datetime with milliseconds and `Z`."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _content(record: Mapping[str, Any]) -> dict[str, Any]:
    """A record without the fields that differ between identical publications."""
    return {k: v for k, v in record.items() if k not in ("$type", "createdAt")}


#: The s3Storage fields recorded from the S3 client's keyword or, unset, the environment.
_S3_LOCATION = (
    ("endpoint", "endpoint_url", ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")),
    ("region", "region_name", ("AWS_REGION", "AWS_DEFAULT_REGION")),
)


class Client:
    """A session on the user's own PDS for publishing and managing atdata records."""

    def __init__(
        self,
        pds_url: str | None = None,
        *,
        lexicons: Lexicons | None = None,
        allow_private: bool | None = None,
        timeout: float = 120.0,
    ) -> None:
        url = pds_url or os.environ.get("ATDATA_PDS")
        if not url:
            raise AtdataError("no PDS URL: pass Client(pds_url) or set ATDATA_PDS")
        self.pds_url = url.rstrip("/")
        self._lexicons = lexicons
        self.allow_private = allow_private
        self.timeout = timeout
        self._atp: Any = None
        self._blob_limit: int | None | bool = False  # False = not asked yet

    # -- session -------------------------------------------------------------------------
    @property
    def lexicons(self) -> Lexicons:
        return self._lexicons or default_lexicons()

    def login(self, handle_or_did: str | None = None, password: str | None = None) -> Client:
        """Log in (falls back to `ATDATA_HANDLE` / `ATDATA_PASSWORD`); returns self."""
        from atproto import Client as AtpClient
        from atproto.exceptions import AtProtocolError

        ident = handle_or_did or os.environ.get("ATDATA_HANDLE")
        password = password or os.environ.get("ATDATA_PASSWORD")
        if not ident or not password:
            raise AtdataError(
                "login needs a handle (or DID) and a password (or ATDATA_HANDLE/ATDATA_PASSWORD)"
            )
        atp = AtpClient(self.pds_url)
        try:
            atp.login(ident, password, fetch_bsky_profile=False)
        except AtProtocolError as e:
            raise AtdataError(
                f"login to {self.pds_url} as {ident} failed: {describe_xrpc_error(e)}"
            ) from e
        self._atp = atp
        return self

    @property
    def atproto(self) -> Any:
        """The underlying logged-in `atproto.Client`."""
        if self._atp is None:
            raise AtdataError("not logged in: call Client.login() first")
        return self._atp

    @property
    def did(self) -> str:
        return self.atproto._session.did

    @property
    def handle(self) -> str:
        return self.atproto._session.handle

    def _auth_headers(self) -> dict[str, str]:
        atp = self.atproto
        with atp._refresh_lock:
            if atp._should_refresh_session():
                atp._refresh_and_set_session()
        return dict(atp._get_access_auth_headers())

    # -- low-level records ---------------------------------------------------------------
    def _validate(self, nsid: str, record: dict[str, Any]) -> None:
        if nsid not in self.lexicons:
            raise LexiconError(f"no lexicon for {nsid} is loaded; refusing to publish")
        self.lexicons.validate_record(nsid, record)

    def create_record(
        self, nsid: str, record: Mapping[str, Any], rkey: str | None = None
    ) -> RecordRef:
        """Validate `record` against its lexicon, then write it to the own repo."""
        from atproto import models
        from atproto.exceptions import AtProtocolError

        record = {"$type": nsid, **record}
        self._validate(nsid, record)
        data = models.ComAtprotoRepoCreateRecord.Data(
            repo=self.did, collection=nsid, record=record, rkey=rkey
        )
        try:
            out = self.atproto.com.atproto.repo.create_record(data)
        except AtProtocolError as e:
            raise PublishError(f"PDS refused the {nsid} record: {describe_xrpc_error(e)}") from e
        log.info("published %s (%s)", out.uri, out.cid)
        return RecordRef(out.uri, out.cid)

    def iter_records(self, collection: str, repo: str | None = None) -> Iterator[Record]:
        """Every record of `collection` in `repo` (default: one's own), oldest page first."""
        from atproto import models

        cursor = None
        while True:
            params = models.ComAtprotoRepoListRecords.Params(
                repo=repo or self.did, collection=collection, limit=100, cursor=cursor
            )
            out = self.atproto.com.atproto.repo.list_records(params)
            for r in out.records:
                yield Record(r.uri, r.cid, _as_dict(r.value))
            if not out.cursor or not out.records:
                return
            cursor = out.cursor

    def list_records(self, collection: str, repo: str | None = None) -> list[Record]:
        """All records of `collection` in one's own repository (or `repo`)."""
        return list(self.iter_records(collection, repo))

    def get_record(self, uri: str) -> Record:
        """A record of one's own PDS by at:// URI (use `atdata.atmosphere.fetch_record` for others)."""
        from atproto import models
        from atproto.exceptions import AtProtocolError

        at = parse_at_uri(uri)
        try:
            out = self.atproto.com.atproto.repo.get_record(
                models.ComAtprotoRepoGetRecord.Params(
                    repo=at.authority, collection=at.collection, rkey=at.rkey
                )
            )
        except AtProtocolError as e:
            raise ResolutionError(f"cannot get {uri}: {describe_xrpc_error(e)}") from e
        return Record(out.uri, out.cid, _as_dict(out.value))

    def delete(self, uri: str) -> None:
        """Delete one of one's own records (a blob goes with the last record that uses it)."""
        from atproto import models
        from atproto.exceptions import AtProtocolError

        at = parse_at_uri(uri)
        if at.authority not in (self.did, self.handle):
            raise AtdataError(f"{uri} is not in your repository ({self.did})")
        try:
            self.atproto.com.atproto.repo.delete_record(
                models.ComAtprotoRepoDeleteRecord.Data(
                    repo=self.did, collection=at.collection, rkey=at.rkey
                )
            )
        except AtProtocolError as e:
            raise AtdataError(f"cannot delete {uri}: {describe_xrpc_error(e)}") from e

    def delete_versions(self, name: str) -> list[str]:
        """Delete every `io.atdata.dataset` record named `name` in one's own repository;
        returns their URIs (empty when there was none)."""
        uris = [r.uri for r in self.iter_records(DATASET) if r.value.get("name") == name]
        for uri in uris:
            self.delete(uri)
        return uris

    # -- schemas -------------------------------------------------------------------------
    def publish_schema(self, sample_type: Any, *, family: str = OWN_FAMILY) -> RecordRef:
        """Publish the schema of a packable class (or a schema record dict); returns its ref.

        Publishing identical content again returns the existing record. The same name and
        version with different content is an error: schemas are immutable, bump the version.

        `family="science.alt.dataset"` publishes a ``science.alt.dataset.schema`` record (the
        JSON Schema form the atdata 0.7 SDK writes) instead of an ``io.atdata.schema``.
        """
        nsid = SCHEMA if check_family(family) == OWN_FAMILY else PEER_SCHEMA
        record = (
            dict(sample_type)
            if isinstance(sample_type, Mapping)
            else schema_mod.schema_of(sample_type)
        )
        record.setdefault("createdAt", now_iso())
        if nsid == PEER_SCHEMA:
            record = peer_schema_record(record)
        self._validate(nsid, {"$type": nsid, **record})
        name, version = record.get("name"), record.get("version")
        for existing in self.iter_records(nsid):
            v = existing.value
            if v.get("name") == name and v.get("version") == version:
                if _content(v) == _content(record):
                    log.info("schema %s@%s already published as %s", name, version, existing.uri)
                    return existing.ref
                raise PublishError(
                    f"schema {name}@{version} is already published ({existing.uri}) with different "
                    "content; schemas are immutable: publish it under a new version"
                )
        return self.create_record(nsid, record)

    def _schema_ref(self, schema: Any, shards: Any) -> RecordRef:
        if isinstance(schema, RecordRef):
            return schema
        if isinstance(schema, str):
            rec = _fetch_any(self, schema)
            if rec.value.get("$type") != SCHEMA:
                raise PublishError(f"{schema} is not an {SCHEMA} record")
            return rec.ref
        if schema is None:
            schema = getattr(shards, "sample_type", None)
            if schema is None:
                raise PublishError("publish_dataset needs schema= (a sample class or a schema ref)")
        return self.publish_schema(schema)

    def _check_samples_fit(self, schema: Any, shards: Any, facts: list[Any]) -> None:
        """Refuse shards whose first sample does not decode as the schema's type, before
        anything is published (a record pinning the wrong schema fails every reader).

        Shards given as paths (no `ShardInfo`) get their array dtypes and shapes observed
        here, so their record says what `write_samples` would have recorded.
        """
        if schema is None:
            schema = getattr(shards, "sample_type", None)
        if isinstance(schema, str):  # an at:// URI or a RecordRef
            rec = _fetch_any(self, str(schema))
            if rec.value.get("$type") == PEER_SCHEMA:
                schema = schema_mod.type_from_schema(peer.own_schema(rec.value))
            elif rec.value.get("$type") != SCHEMA:
                raise PublishError(f"{schema} is not an {SCHEMA} record")
            else:
                schema = schema_mod.type_from_schema(rec.value)
        if not (isinstance(schema, type) and is_packable(schema)):
            return  # `_schema_ref` reports what is wrong with it
        first = next((f for f in facts if f.samples), None)
        if first is None:
            return
        try:
            Dataset(first.path, sample_type=schema).head(1)
            for f in facts:
                if f.samples and not f.arrays:
                    f.arrays.update(observe_arrays(Dataset(f.path, sample_type=schema).ordered()))
        except DecodeError as e:
            raise PublishError(
                f"shard {e.shard or first.path} does not hold "
                f"{as_packable(schema).__atdata_name__} samples "
                f"({e.reason}{f', field {e.field!r}' if e.field else ''}): "
                "pass the schema the shards were written with"
            ) from None

    # -- datasets ------------------------------------------------------------------------
    def blob_limit(self) -> int | None:
        """The PDS's blob size limit from `describeServer` (`blobUploadLimit`), if it says."""
        if self._blob_limit is False:
            try:  # the user's own PDS: private addresses allowed, a 30 s deadline
                out = get_json(
                    f"{self.pds_url}/xrpc/com.atproto.server.describeServer",
                    allow_private=True,
                    timeout=30,
                    retries=0,
                )
                limit = out.get("blobUploadLimit") if isinstance(out, dict) else None
            except AtdataError:
                limit = None
            self._blob_limit = limit if type(limit) is int and limit > 0 else None
        return self._blob_limit

    def upload_blob(
        self, path: str | Path | bytes, mime: str = TAR_MIME, *, progress: Any = None
    ) -> dict[str, Any]:
        """Upload a file (streamed) or bytes as a blob; returns the blob ref (JSON form)."""
        body: bytes | Iterator[bytes]
        if isinstance(path, bytes):
            size, body = len(path), path
        else:
            size = os.path.getsize(path)
            body = _file_chunks(path, progress)
        headers = {**self._auth_headers(), "Content-Type": mime, "Content-Length": str(size)}
        try:
            r = httpx.post(
                f"{self.pds_url}/xrpc/com.atproto.repo.uploadBlob",
                content=body,
                headers=headers,
                timeout=self.timeout,
            )
        except httpx.HTTPError as e:
            raise PublishError(
                f"uploading {path if not isinstance(path, bytes) else 'blob'} failed: {e}"
            ) from e
        if r.status_code == 413:
            raise _TooLarge(size)
        if r.status_code != 200:
            raise PublishError(f"uploadBlob: HTTP {r.status_code} {r.text[:200]}")
        return r.json()["blob"]

    def publish_dataset(
        self,
        shards: Any,
        *,
        name: str,
        schema: Any = None,
        storage: str | Sequence[str] = "blobs",
        description: str | None = None,
        tags: Sequence[str] = (),
        license: str | None = None,
        splits: Mapping[str, Sequence[int]] | None = None,
        cut_oversize: bool = True,
        s3_client_kwargs: Mapping[str, Any] | None = None,
        progress: bool | None = None,
        card: str | os.PathLike[str] | None = None,
        derived_from: Any = None,
        version: str | None = None,
        allow_older: bool = False,
        family: str = OWN_FAMILY,
    ) -> DatasetRef:
        """Publish shards as an `io.atdata.dataset` record; returns its ref (with `.version`).

        `shards`: `ShardInfo`s (from `write_samples`), paths, or a local `Dataset`.
        `storage`: "blobs" (PDS blobs), "s3://bucket/prefix" (uploaded with boto3, endpoint
        and credentials from `s3_client_kwargs` or the AWS environment), or one http(s) URL
        per shard (already hosted). Shards over the PDS blob limit are cut between samples
        (`cut_oversize=True`) or refused, before anything is uploaded. `splits` maps a name
        to indices into `shards`.

        `card`: the dataset card, Markdown text or a file (a `Path`, or a string naming an
        existing file); up to 32 KiB goes in the record, longer (up to 1 MiB) as a blob.
        `derived_from`: the datasets this one was made from (lineage): `Dataset`s loaded by
        URI, at:// URIs, or `(dataset or URI, relation)` pairs with a relation among
        `lineage.RELATIONS`. A `Dataset` seen through a lens (`as_type`) given as `shards` is
        written out as its view type and records its source as `converted`, with the lens's
        record when the lens was published.

        `version` (semantic, e.g. "1.1.0") must not be one this account already published
        under `name`, nor lower than its newest unless `allow_older=True`; both are checked
        against one's own repository before anything is uploaded. Without it the next patch
        version after the newest is used ("1.0.0" for a new name), logged and returned.

        `family="science.alt.dataset"` publishes for the atdata 0.7 network instead: a
        ``science.alt.dataset.entry`` (storageBlobs, storageHttp or storageS3, each shard
        with its sha256), its schema as a ``science.alt.dataset.schema``, and a
        ``science.alt.dataset.label`` naming the entry `name`@`version` (the version chosen
        and checked as above, against one's labels of that name). The label is written on
        every publish, with `version` or without: an entry without a label is found by
        neither `@handle/name` nor the 0.7 SDK's `resolveLabel`, and every dataset we publish
        has a version. `card`, `derived_from` and `splits` have no place in that family's
        records and are refused.
        """
        if check_family(family) == PEER_FAMILY:
            refuse_unheld(card=card, derived_from=derived_from, splits=splits)
            if isinstance(shards, Dataset) and shards.lens is not None and shards.uri:
                raise PublishError(
                    f"family={PEER_FAMILY!r} cannot hold lineage, which a dataset viewed "
                    "through a lens records (its source): write the view out with "
                    "atdata.write_samples and publish those shards"
                )
        if license is not None:
            try:
                check_license(license)
            except ValueError as e:
                raise PublishError(str(e)) from None
        card_text = read_card(card) if card is not None else None
        tmp = tempfile.TemporaryDirectory(prefix="atdata-publish-")
        try:
            sources = list(_sources_of(derived_from))
            if isinstance(shards, Dataset) and shards.lens is not None:
                if shards.uri and not any(_names(s, shards.uri) for s in sources):
                    sources.append(shards)
                if schema is None:
                    schema = shards.sample_type
                shards = _materialise(shards, tmp.name)
            facts = gather_shards(shards)
            self._check_samples_fit(schema, shards, facts)
            if family == PEER_FAMILY:
                return self._publish_peer_entry(
                    shards,
                    facts,
                    tmp.name,
                    name=name,
                    schema=schema,
                    storage=storage,
                    description=description,
                    tags=tags,
                    license=license,
                    cut_oversize=cut_oversize,
                    s3_client_kwargs=s3_client_kwargs,
                    progress=progress,
                    version=version,
                    allow_older=allow_older,
                )
            # what needs the network comes after every local check
            version = self._choose_version(name, version, allow_older)
            lineage = derivation_entries(
                sources, lambda uri: _fetch_any(self, uri), lambda: self.iter_records(LENS)
            )
            kind, plan, mapping = self._plan(facts, storage, cut_oversize, tmp.name)
            base: dict[str, Any] = {
                "name": name,
                "version": version,
                "schema": {
                    "uri": f"at://did:plc:placeholder/{SCHEMA}/placeholder",
                    "cid": _PLACEHOLDER_CID,
                },
                "totals": {
                    "samples": sum(s.samples for s in plan),
                    "bytes": sum(s.bytes for s in plan),
                    "shards": len(plan),
                },
                "createdAt": now_iso(),
            }
            if description is not None:
                base["description"] = description
            if tags:
                base["tags"] = list(tags)
            if license is not None:
                base["license"] = license
            card_blob = card_text is not None and len(card_text.encode()) > CARD_INLINE_MAX
            if card_text is not None and not card_blob:
                base["card"] = card_text
            elif card_blob:
                base["cardBlob"] = {
                    "$type": "blob",
                    "ref": {"$link": _PLACEHOLDER_CID},
                    "mimeType": CARD_MIME,
                    "size": len(card_text.encode()) if card_text else 0,
                }
            if lineage:
                base["derivedFrom"] = lineage
            arrays = merge_arrays(facts)
            if arrays:
                base["arrays"] = arrays
            split_entries = remap_splits(dict(splits or {}), mapping, len(facts))
            if split_entries:
                base["splits"] = split_entries
            # Dry run: the record with placeholders must already pass its lexicon.
            entries, storage_obj = self._locations(
                kind, storage, plan, dry=True, s3_kwargs=s3_client_kwargs
            )
            draft = self._with_shards(base, storage_obj, entries, manifest_ref=None, kind=kind)
            self._validate(DATASET, {"$type": DATASET, **draft})
            # Only now, with the plan and the draft record checked, is anything written.
            base["schema"] = self._schema_ref(schema, shards).strong_ref()
            if card_blob and card_text is not None:
                base["cardBlob"] = self.upload_blob(card_text.encode(), CARD_MIME)
            entries, storage_obj = self._locations(
                kind, storage, plan, dry=False, s3_kwargs=s3_client_kwargs, progress=progress
            )
            manifest_ref = None
            if self._needs_manifest(entries):
                manifest = {"shards": entries}
                self.lexicons.validate(f"{DATASET}#manifest", manifest)
                manifest_ref = self.upload_blob(json.dumps(manifest).encode(), "application/json")
            record = self._with_shards(base, storage_obj, entries, manifest_ref, kind)
            ref = self.create_record(DATASET, record)
            log.info("published %s version %s as %s", name, version, ref.uri)
            return DatasetRef(ref.uri, ref.cid, version)
        finally:
            tmp.cleanup()

    def _publish_peer_entry(
        self,
        shards: Any,
        facts: list[ShardInfo],
        tmp: str,
        *,
        name: str,
        schema: Any,
        storage: str | Sequence[str],
        description: str | None,
        tags: Sequence[str],
        license: str | None,
        cut_oversize: bool,
        s3_client_kwargs: Mapping[str, Any] | None,
        progress: bool | None,
        version: str | None,
        allow_older: bool,
    ) -> DatasetRef:
        """`publish_dataset(family="science.alt.dataset")` once the shards passed the local
        checks: entry and label drafted and validated, then schema, shards, entry, label."""
        version = self._choose_version(name, version, allow_older, collection=PEER_LABEL)
        kind, plan, _ = self._plan(facts, storage, cut_oversize, tmp, cap=_PEER_BLOB_MAX)

        def entry(
            schema_uri: str, entries: list[dict[str, Any]], where: dict[str, Any]
        ) -> dict[str, Any]:
            return peer.peer_entry(
                name=name,
                schema_uri=schema_uri,
                storage=peer_storage_of(kind, where, entries),
                description=description,
                tags=list(tags),
                license=license,
                samples=sum(s.samples for s in plan),
                size_bytes=sum(s.bytes for s in plan),
                created_at=now_iso(),
            )

        entries, storage_obj = self._locations(
            kind, storage, plan, dry=True, s3_kwargs=s3_client_kwargs
        )
        if self._needs_manifest(entries):
            raise PublishError(
                f"{len(entries)} shards do not fit in one {PEER_ENTRY} record (that family has "
                f"no manifest; limit {MAX_INLINE_SHARDS}): write larger shards"
            )
        placeholder = f"at://did:plc:placeholder/{PEER_ENTRY}/placeholder"
        self._validate(
            PEER_ENTRY, {"$type": PEER_ENTRY, **entry(placeholder, entries, storage_obj)}
        )
        label = peer.peer_label(name=name, dataset_uri=placeholder, version=version)
        self._validate(PEER_LABEL, {"$type": PEER_LABEL, **label})
        # Only now, with the plan and both records checked, is anything written.
        schema_uri = self._peer_schema_uri(schema, shards)
        entries, storage_obj = self._locations(
            kind, storage, plan, dry=False, s3_kwargs=s3_client_kwargs, progress=progress
        )
        ref = self.create_record(PEER_ENTRY, entry(schema_uri, entries, storage_obj))
        self.create_record(PEER_LABEL, {**label, "datasetUri": ref.uri, "createdAt": now_iso()})
        log.info("published %s version %s as %s (%s)", name, version, ref.uri, PEER_ENTRY)
        return DatasetRef(ref.uri, ref.cid, version)

    def _peer_schema_uri(self, schema: Any, shards: Any) -> str:
        """The at:// URI of the entry's ``science.alt.dataset.schema`` (published from the
        sample class when needed; a given ref must be one of that family)."""
        if isinstance(schema, str):  # an at:// URI or a RecordRef
            rec = _fetch_any(self, str(schema))
            if rec.value.get("$type") != PEER_SCHEMA:
                raise not_a_peer_schema(str(schema), rec.value)
            return rec.uri
        if schema is None:
            schema = getattr(shards, "sample_type", None)
            if schema is None:
                raise PublishError("publish_dataset needs schema= (a sample class or a schema ref)")
        return str(self.publish_schema(schema, family=PEER_FAMILY))

    def _choose_version(
        self, name: str, version: str | None, allow_older: bool, collection: str = DATASET
    ) -> str:
        """The version to publish `name` as, checked against one's own records of that name
        in `collection` (datasets, or labels for the peer family; listRecords on one's PDS,
        never an AppView: right after a publish it already counts).
        """
        used = [
            record_version(r.value)
            for r in self.iter_records(collection)
            if r.value.get("name") == name
        ]
        if version is None:
            chosen = next_patch(used)
            log.info("publishing %s as version %s", name, chosen)
            return chosen
        try:
            wanted = parse_version(version)
        except InvalidVersion as e:
            raise PublishError(str(e)) from None
        parsed = [v for v in (_lenient_version(u) for u in used) if v is not None]
        if any(wanted.compare(v) == 0 for v in parsed):
            raise PublishError(
                f"{name} version {version} is already published by {self.handle}: "
                "a version is never reused, publish a new one"
            )
        top = max(parsed, default=None)
        if top is not None and wanted < top and not allow_older:
            raise PublishError(
                f"{name} version {version} is lower than your newest, {top}: pass "
                "allow_older=True (atdata publish --allow-older) to publish an older line"
            )
        return version

    def _needs_manifest(self, entries: list[dict[str, Any]]) -> bool:
        return len(entries) > MAX_INLINE_SHARDS or len(json.dumps(entries)) > _MAX_INLINE_JSON

    def _with_shards(
        self,
        base: dict[str, Any],
        storage_obj: dict[str, Any],
        entries: list[dict[str, Any]],
        manifest_ref: dict[str, Any] | None,
        kind: str,
    ) -> dict[str, Any]:
        record = {**base, "storage": storage_obj}
        if self._needs_manifest(entries):
            if kind == "blobs":
                raise PublishError(
                    f"{len(entries)} blob shards do not fit in one record (PDS blobs must be "
                    f"referenced by the record itself; limit {MAX_INLINE_SHARDS}): write larger "
                    "shards or use S3/HTTP storage"
                )
            record["manifest"] = manifest_ref or {
                "$type": "blob",
                "ref": {"$link": _PLACEHOLDER_CID},
                "mimeType": "application/json",
                "size": 0,
            }
        else:
            record["shards"] = entries
        return record

    def _plan(
        self,
        facts: list[ShardInfo],
        storage: Any,
        cut_oversize: bool,
        tmp: str,
        cap: int | None = None,
    ) -> tuple[str, list[ShardInfo], list[list[int]]]:
        """Storage kind, the shards to upload (cut to the blob limit: the PDS's, or `cap`
        when lower) and which of them each given shard became."""
        if isinstance(storage, str) and storage == "blobs":
            kind = "blobs"
        elif isinstance(storage, str) and storage.startswith("s3://"):
            kind = "s3"
        elif isinstance(storage, Sequence) and not isinstance(storage, str):
            kind = "http"
            if len(storage) != len(facts):
                raise PublishError(f"storage lists {len(storage)} URLs for {len(facts)} shards")
            for url in storage:
                if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                    raise PublishError(f"HTTP storage needs http(s) URLs, got {url!r}")
        else:
            raise PublishError(
                f"storage must be 'blobs', 's3://bucket/prefix' or a list of URLs, not {storage!r}"
            )
        mapping = [[i] for i in range(len(facts))]
        if kind != "blobs":
            return kind, facts, mapping
        limit = self.blob_limit()
        if cap is not None:
            limit = cap if limit is None else min(limit, cap)
        if limit is None:
            return kind, facts, mapping  # unknown: the largest shard goes first (see _locations)
        plan: list[ShardInfo] = []
        mapping = []
        for s in facts:
            if s.bytes <= limit:
                mapping.append([len(plan)])
                plan.append(s)
                continue
            if not cut_oversize:
                raise PublishError(
                    f"shard {s.path} is {s.bytes} bytes, over this PDS's blob limit of {limit} "
                    "bytes; nothing was uploaded (pass cut_oversize=True, or write smaller shards)"
                )
            pieces = cut_shard(s, limit, tmp)
            log.info(
                "cut %s (%d bytes) into %d shards under %d bytes",
                s.path,
                s.bytes,
                len(pieces),
                limit,
            )
            mapping.append(list(range(len(plan), len(plan) + len(pieces))))
            plan.extend(pieces)
        return kind, plan, mapping

    def _locations(
        self,
        kind: str,
        storage: Any,
        plan: list[ShardInfo],
        *,
        dry: bool,
        s3_kwargs: Mapping[str, Any] | None,
        progress: bool | None = None,
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        entries: list[dict[str, Any]] = [
            {"samples": s.samples, "bytes": s.bytes, "sha256": s.sha256} for s in plan
        ]
        if kind == "http":
            for e, url in zip(entries, storage, strict=True):
                e["url"] = url
            return entries, {"$type": f"{DATASET}#httpStorage"}
        if kind == "s3":
            bucket, _, prefix = storage[len("s3://") :].partition("/")
            prefix = prefix.strip("/")
            kwargs = dict(s3_kwargs or {})
            storage_obj: dict[str, Any] = {"$type": f"{DATASET}#s3Storage", "bucket": bucket}
            if prefix:
                storage_obj["prefix"] = prefix
            # Where readers find the bucket: the client's own setting, else boto3's variables.
            for field, kwarg, envvars in _S3_LOCATION:
                value = kwargs.get(kwarg) or next(
                    (os.environ[v] for v in envvars if os.environ.get(v)), None
                )
                if value:
                    storage_obj[field] = value
            names = _unique_names(plan)
            for e, n in zip(entries, names, strict=True):
                e["key"] = f"{prefix}/{n}" if prefix else n
            if not dry:
                self._upload_s3(bucket, plan, [e["key"] for e in entries], kwargs, progress)
            return entries, storage_obj
        # blobs
        if dry:
            for e, s in zip(entries, plan, strict=True):
                e["blob"] = {
                    "$type": "blob",
                    "ref": {"$link": _PLACEHOLDER_CID},
                    "mimeType": TAR_MIME,
                    "size": s.bytes,
                }
            return entries, {"$type": f"{DATASET}#blobStorage"}
        order = sorted(range(len(plan)), key=lambda i: -plan[i].bytes)  # largest first
        bar = _progress(sum(s.bytes for s in plan), "upload", progress)
        uploaded = 0
        try:
            for i in order:
                try:
                    entries[i]["blob"] = self.upload_blob(plan[i].path, TAR_MIME, progress=bar)
                except _TooLarge as e:
                    done = (
                        "nothing was uploaded"
                        if uploaded == 0
                        else f"{uploaded} shards were uploaded (unreferenced blobs expire)"
                    )
                    raise PublishError(
                        f"shard {plan[i].path} ({e.size} bytes) is over this PDS's blob size limit; "
                        f"{done}. Write smaller shards (maxsize=) or use S3/HTTP storage"
                    ) from None
                uploaded += 1
        finally:
            if bar is not None:
                bar.close()
        return entries, {"$type": f"{DATASET}#blobStorage"}

    def _upload_s3(
        self,
        bucket: str,
        plan: list[ShardInfo],
        keys: list[str],
        kwargs: dict[str, Any],
        progress: bool | None,
    ) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        s3 = s3_client(kwargs)
        bar = _progress(sum(s.bytes for s in plan), "upload", progress)
        try:
            for s, key in zip(plan, keys, strict=True):
                try:
                    s3.upload_file(
                        s.path,
                        bucket,
                        key,
                        ExtraArgs={"ContentType": TAR_MIME},
                        Callback=(bar.update if bar is not None else None),
                    )
                except (BotoCoreError, ClientError) as e:
                    raise PublishError(
                        f"uploading {s.path} to s3://{bucket}/{key} failed: {e}"
                    ) from e
        finally:
            if bar is not None:
                bar.close()

    # -- lenses --------------------------------------------------------------------------
    def publish_lens(
        self,
        lens: Any,
        repo_url: str | None = None,
        commit: str | None = None,
        *,
        name: str | None = None,
        description: str | None = None,
        source_schema: Any = None,
        target_schema: Any = None,
    ) -> RecordRef:
        """Publish a reference to a lens's code (never the code itself); returns its ref.

        The entry point (`module:qualname`) and the sha256 of its source file come from the
        lens; the repository URL and commit from the arguments or, when the file is in a git
        checkout, from git. Source and target schemas are published (idempotently) too.
        """
        code = lens_code_ref(lens, repo_url=repo_url, commit=commit)
        src = source_schema if source_schema is not None else getattr(lens, "source", None)
        dst = target_schema if target_schema is not None else getattr(lens, "view", None)
        if src is None or dst is None:
            raise PublishError(
                "the lens has no source/view types: pass source_schema= and target_schema="
            )
        record: dict[str, Any] = {
            "name": name or getattr(lens, "name", None) or code["entryPoint"].rsplit(":", 1)[1],
            "source": self._schema_ref(src, None).strong_ref(),
            "target": self._schema_ref(dst, None).strong_ref(),
            "code": code,
            "createdAt": now_iso(),
        }
        doc = (
            description
            if description is not None
            else inspect.getdoc(getattr(lens, "__wrapped__", lens))
        )
        if doc:
            record["description"] = doc[:3000]
        ref = self.create_record(LENS, record)
        if isinstance(lens, Lens):
            lens.record = ref  # lineage names it for datasets this lens converts
        return ref

    def load_lens(self, uri: str, trust: bool | Literal["unpinned"] = False) -> Any:
        """Import the lens a record names, only with `trust=True` and a matching sha256.

        The module must already be importable locally (nothing is downloaded); its source
        file must hash to the record's sha256, checked before the module is imported. A
        `science.alt.dataset.lens` record pins no hash of its code: it is imported only with
        `trust="unpinned"`, with a warning that the code is not pinned.
        """
        rec = fetch_record(uri, allow_private=self.allow_private)
        if rec.value.get("$type") == PEER_LENS:
            return load_peer_lens(rec, trust)
        if rec.value.get("$type") != LENS:
            raise LensError(f"{uri} is not an {LENS} (or {PEER_LENS}) record")
        loaded = import_lens(rec.value["code"], trust=bool(trust), uri=uri)
        if isinstance(loaded, Lens):
            loaded.record = rec.ref
        return loaded


# -- helpers -------------------------------------------------------------------------------


def _lenient_version(text: str) -> semver.Version | None:
    try:
        return parse_version(text)
    except InvalidVersion:
        return None  # someone else's malformed version: it cannot collide with a valid one


class _TooLarge(Exception):
    def __init__(self, size: int) -> None:
        self.size = size


def _file_chunks(path: str | Path, bar: Any) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            if bar is not None:
                bar.update(len(chunk))
            yield chunk


def _progress(total: int, desc: str, enabled: bool | None) -> Any:
    if enabled is False:
        return None
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        unit="B",
        unit_scale=True,
        desc=desc,
        disable=None if enabled is None else False,
    )


def _unique_names(plan: list[ShardInfo]) -> list[str]:
    names = [Path(s.path).name for s in plan]
    if len(set(names)) == len(names):
        return names
    return [f"{i:06d}-{n}" for i, n in enumerate(names)]


def _as_dict(value: Any) -> dict[str, Any]:
    from atproto import models

    if isinstance(value, dict):
        return value
    return models.get_model_as_dict(value)


def _sources_of(derived_from: Any) -> list[Any]:
    if derived_from is None:
        return []
    if isinstance(derived_from, str | Dataset | tuple):
        return [derived_from]
    return list(derived_from)


def _names(source: Any, uri: str) -> bool:
    """Whether a `derived_from` item (or pair) names the dataset `uri`."""
    item = source[0] if isinstance(source, tuple) and source else source
    return (getattr(item, "uri", None) if isinstance(item, Dataset) else item) == uri


def _materialise(ds: Dataset[Any], folder: str) -> list[ShardInfo]:
    """Write a lens-viewed dataset's samples as its view type: one output shard per source
    shard (so split indices keep their meaning), into `folder`."""
    out: list[ShardInfo] = []
    for i in range(len(ds.shards)):
        infos = write_samples(
            ds.iter_shard(i), os.path.join(folder, f"view-{i:06d}-%03d.tar"), progress=False
        )
        if len(infos) != 1:
            raise PublishError(
                f"shard {i} of {ds!r} turned into {len(infos)} shards: publish the written "
                "shards yourself (atdata.write_samples) with derived_from="
            )
        out.extend(infos)
    return out


def _fetch_any(client: Client, uri: str) -> Record:
    return fetch_record(uri, allow_private=client.allow_private)
