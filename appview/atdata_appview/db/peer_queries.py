"""Lookups behind the ``science.alt.dataset.*`` queries, in the shapes the atdata 0.7 SDK reads.

The peer network's records live in the same tables as ours (``family`` tells them apart), so
these are views of the same rows: an entry is a ``datasets`` row whose record (kept exactly as
published) supplies the fields the 0.7 SDK expects, a schema or lens likewise, a label a
``labels`` row. Only rows of the peer family and of visible repos are answered. Functions take a
live connection and return plain JSON-ready dicts, like `queries`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlencode

from atdata.peer import storage_kind
from sqlalchemy import Connection, func, select

from .models import (
    PEER_FAMILY,
    dataset_records,
    datasets,
    labels,
    lens_verifications,
    lenses,
    repos,
    schemas,
)
from .queries import FIRST_PAGE, Page, _json, _newest_first_page, resolve_author
from .search import SearchParams, search_datasets

#: What an entry row carries, from its record: ``{uri, cid, did}`` plus these when present
#: (the 0.7 SDK takes the row for the record itself: metadata and manifests included).
ENTRY_KEYS = (
    "name",
    "schemaRef",
    "storage",
    "createdAt",
    "description",
    "tags",
    "license",
    "size",
    "metadata",
    "metadataSchemaRef",
    "contentMetadata",
    "manifests",
)
#: A schema row: the record's fields the 0.7 SDK reads (its format version included, which
#: the SDK checks before using a schema).
SCHEMA_KEYS = (
    "name",
    "version",
    "schemaType",
    "schema",
    "createdAt",
    "description",
    "metadata",
    "atdataSchemaVersion",
    "$atdataSchemaVersion",
)
LENS_KEYS = (
    "name",
    "sourceSchema",
    "targetSchema",
    "getterCode",
    "putterCode",
    "createdAt",
    "description",
    "sourceSchemaVersion",
    "targetSchemaVersion",
)
LABEL_KEYS = ("name", "datasetUri", "version", "description", "createdAt")
#: At most this many URIs per batch query (getEntries, resolveBlobs), as the peer AppView.
MAX_BATCH = 25


def _picked(r: Any, record: Any, keys: Iterable[str]) -> dict[str, Any]:
    """``{uri, cid, did}`` of the row, then ``keys`` of its record as published."""
    value = _json(record)
    value = value if isinstance(value, Mapping) else {}
    view: dict[str, Any] = {"uri": r.uri, "cid": r.cid, "did": r.did}
    view.update({k: value[k] for k in keys if value.get(k) is not None})
    return view


def entry_view(r: Any, handle: str | None = None) -> dict[str, Any]:
    return _picked(r, r.record, ENTRY_KEYS)


def schema_view(r: Any, handle: str | None = None) -> dict[str, Any]:
    return _picked(r, r.record, SCHEMA_KEYS)


def lens_view(r: Any, handle: str | None = None) -> dict[str, Any]:
    view = _picked(r, r.record, LENS_KEYS)
    getter = view.get("getterCode")
    if isinstance(getter, Mapping) and isinstance(getter.get("language"), str):
        view["language"] = getter["language"]
    return view


def label_view(r: Any, handle: str | None = None) -> dict[str, Any]:
    return _picked(r, r.record, LABEL_KEYS)


def _visible(table: Any) -> Any:
    return table.c.hidden.is_(False)


def _peer(table: Any) -> Any:
    return (table.c.family == PEER_FAMILY) & table.c.hidden.is_(False)


def _entries_select() -> Any:
    return (
        select(
            datasets.c.id,
            datasets.c.uri,
            datasets.c.cid,
            datasets.c.did,
            datasets.c.created_at,
            dataset_records.c.record,
        )
        .join(dataset_records, dataset_records.c.dataset_id == datasets.c.id)
        .where(_peer(datasets))
    )


def _of_repo(conn: Connection, stmt: Any, table: Any, repo: str | None) -> Any:
    """``stmt`` narrowed to the rows of one ``repo`` (a DID, or a handle the index knows; none
    for a handle it does not), unchanged when no repo is given."""
    if not repo:
        return stmt
    return stmt.where(table.c.did == (resolve_author(conn, repo) or ""))


# -- entries ----------------------------------------------------------------------------------


def entries_by_uri(conn: Connection, uris: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The indexed peer entries among ``uris``, by URI."""
    wanted = list(dict.fromkeys(uris))
    if not wanted:
        return {}
    rows = conn.execute(_entries_select().where(datasets.c.uri.in_(wanted))).all()
    return {r.uri: entry_view(r) for r in rows}


def get_entry(conn: Connection, uri: str) -> dict[str, Any] | None:
    return entries_by_uri(conn, [uri]).get(uri)


def get_entries(conn: Connection, uris: list[str]) -> list[dict[str, Any]]:
    """The indexed ones of ``uris``, in the order asked (each once); others are left out."""
    found = entries_by_uri(conn, uris)
    return [found[u] for u in dict.fromkeys(uris) if u in found]


def list_entries(
    conn: Connection, *, repo: str | None = None, page: Page = FIRST_PAGE
) -> dict[str, Any]:
    """Entries newest first (keyset cursor), of one repo (DID or handle) when given."""
    stmt = _of_repo(conn, _entries_select(), datasets, repo)
    return _newest_first_page(conn, stmt, datasets, page, "entries", entry_view)


def search_entries(conn: Connection, params: SearchParams) -> dict[str, Any]:
    """Full-text search (the same index and ranking as ``io.atdata.searchDatasets``) over
    peer entries only, answered as entry rows. Every entry is its own record: entries sharing
    a name are all listed (the peer network has no versions of a name)."""
    page = search_datasets(conn, params)
    found = entries_by_uri(conn, [d["uri"] for d in page.datasets])
    out: dict[str, Any] = {"entries": [found[d["uri"]] for d in page.datasets if d["uri"] in found]}
    if page.cursor:
        out["cursor"] = page.cursor
    return out


def blob_urls(conn: Connection, uris: list[str]) -> list[dict[str, Any]]:
    """``{uri, cid, url}`` for each blob of each entry (``getBlob`` on the author's PDS, as
    the index knows it), or ``{uri, error}`` for an entry that cannot be answered."""
    found = {
        r.uri: r
        for r in conn.execute(
            _entries_select()
            .add_columns(repos.c.pds)
            .outerjoin(repos, repos.c.did == datasets.c.did)
            .where(datasets.c.uri.in_(list(dict.fromkeys(uris))))
        ).all()
    }
    out: list[dict[str, Any]] = []
    for uri in dict.fromkeys(uris):
        r = found.get(uri)
        if r is None:
            out.append({"uri": uri, "error": "no such entry in this index"})
            continue
        record = _json(r.record)
        storage = record.get("storage") if isinstance(record, Mapping) else None
        if not isinstance(storage, Mapping) or storage_kind(storage) != "blobs":
            kind = storage.get("$type") if isinstance(storage, Mapping) else None
            out.append({"uri": uri, "error": f"the entry's storage is {kind}, not blobs"})
            continue
        if not r.pds:
            out.append({"uri": uri, "error": "the author's PDS is not known to this index"})
            continue
        for item in storage.get("blobs") or []:
            cid = _blob_cid(item)
            if cid is not None:
                query = urlencode({"did": r.did, "cid": cid})
                url = f"{r.pds.rstrip('/')}/xrpc/com.atproto.sync.getBlob?{query}"
                out.append({"uri": uri, "cid": cid, "url": url})
    return out


def _blob_cid(item: Any) -> str | None:
    """CID of a ``storageBlobs`` member: ``{blob: <blob ref>, checksum?}`` or a bare blob ref
    (older records)."""
    if not isinstance(item, Mapping):
        return None
    blob = item.get("blob", item)
    ref = blob.get("ref") if isinstance(blob, Mapping) else None
    link = ref.get("$link") if isinstance(ref, Mapping) else ref
    return link if isinstance(link, str) else None


# -- schemas ----------------------------------------------------------------------------------


def _schemas_select() -> Any:
    return select(schemas).where(_peer(schemas))


def get_schema(conn: Connection, uri: str) -> dict[str, Any] | None:
    r = conn.execute(_schemas_select().where(schemas.c.uri == uri)).first()
    return None if r is None else schema_view(r)


def list_schemas(
    conn: Connection, *, repo: str | None = None, page: Page = FIRST_PAGE
) -> dict[str, Any]:
    stmt = _of_repo(conn, _schemas_select(), schemas, repo)
    return _newest_first_page(conn, stmt, schemas, page, "schemas", schema_view)


def resolve_schema(
    conn: Connection, did: str, name: str, version: str | None = None
) -> dict[str, Any] | None:
    """``{uri, cid, record}`` of the author's schema ``name`` at ``version``, or the most
    recently created one of that name (the peer network's "latest")."""
    stmt = _schemas_select().where(schemas.c.did == did, schemas.c.name == name)
    if version is not None:
        stmt = stmt.where(schemas.c.version == version)
    r = conn.execute(
        stmt.order_by(schemas.c.created_at.desc(), schemas.c.id.desc()).limit(1)
    ).first()
    if r is None:
        return None
    return {"uri": r.uri, "cid": r.cid, "record": _json(r.record)}


# -- labels -----------------------------------------------------------------------------------


def resolve_label(
    conn: Connection, did: str, name: str, version: str | None = None
) -> dict[str, Any] | None:
    """``{uri, cid, labelUri, label}``: the entry the author's label ``name`` names (the
    label at ``version``, else the newest of that name by ``createdAt``), the label's CID,
    its own URI (to check it on the author's PDS) and its record."""
    stmt = select(labels).where(_visible(labels), labels.c.did == did, labels.c.name == name)
    if version is not None:
        stmt = stmt.where(labels.c.version == version)
    r = conn.execute(stmt.order_by(labels.c.created_at.desc(), labels.c.id.desc()).limit(1)).first()
    if r is None or not r.dataset_uri:
        return None
    return {"uri": r.dataset_uri, "cid": r.cid, "labelUri": r.uri, "label": _json(r.record)}


def labels_of(conn: Connection, entry_uri: str) -> list[dict[str, Any]]:
    """Labels naming the entry, newest first, each with ``latest``: whether it is the newest
    label of its author and name (what ``@handle/name`` resolves to)."""
    rows = conn.execute(
        select(labels)
        .where(_visible(labels), labels.c.dataset_uri == entry_uri)
        .order_by(labels.c.created_at.desc(), labels.c.id.desc())
    ).all()
    out = []
    for r in rows:
        newest = conn.execute(
            select(labels.c.id)
            .where(_visible(labels), labels.c.did == r.did, labels.c.name == r.name)
            .order_by(labels.c.created_at.desc(), labels.c.id.desc())
            .limit(1)
        ).scalar()
        out.append(label_view(r) | {"latest": newest == r.id})
    return out


# -- lenses -----------------------------------------------------------------------------------


def list_lenses(
    conn: Connection,
    *,
    repo: str | None = None,
    source: str | None = None,
    target: str | None = None,
    page: Page = FIRST_PAGE,
) -> dict[str, Any]:
    """Peer lenses newest first, by author and/or source and target schema."""
    stmt = _of_repo(conn, select(lenses).where(_peer(lenses)), lenses, repo)
    if source:
        stmt = stmt.where(lenses.c.source_schema == source)
    if target:
        stmt = stmt.where(lenses.c.target_schema == target)
    return _newest_first_page(conn, stmt, lenses, page, "lenses", lens_view)


# -- service ----------------------------------------------------------------------------------


def record_counts(conn: Connection) -> dict[str, int]:
    """Visible records of each peer collection (describeService)."""

    def n(table: Any, where: Any) -> int:
        return int(conn.execute(select(func.count()).select_from(table).where(where)).scalar() or 0)

    return {
        "science.alt.dataset.schema": n(schemas, _peer(schemas)),
        "science.alt.dataset.entry": n(datasets, _peer(datasets)),
        "science.alt.dataset.lens": n(lenses, _peer(lenses)),
        "science.alt.dataset.label": n(labels, _visible(labels)),
        "science.alt.dataset.lensVerification": n(lens_verifications, _visible(lens_verifications)),
    }
