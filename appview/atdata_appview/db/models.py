"""SQL tables of the index.

Records keep their full JSON (``record``) next to the columns search and lookups need, so a
query can answer from indexed columns and still return the record exactly as published.
``hidden`` is denormalised from the repo's status onto every record row: searches then filter
one column instead of joining ``repos`` on every match.
"""

from __future__ import annotations

from typing import Any

from atdata.records import (
    DATASET,
    LENS,
    OWN_NAMESPACE,
    PEER_ENTRY,
    PEER_LABEL,
    PEER_LENS,
    PEER_LENS_VERIFICATION,
    PEER_SCHEMA,
    SCHEMA,
)
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

#: Repos we have seen. ``status`` is ``active`` or the reason the repo is hidden
#: (``deactivated``, ``takendown``, ``suspended``, ...); ``resync`` marks a broken chain.
repos = Table(
    "repos",
    metadata,
    Column("did", String(255), primary_key=True),
    Column("handle", String(255), index=True),
    Column("pds", String(512)),
    Column("rev", String(64)),
    Column("status", String(32), nullable=False, default="active"),
    Column("resync", Boolean, nullable=False, default=False),
    Column("updated_at", String(40)),
)


def _record_identity() -> list[Column[Any]]:
    """The columns naming one indexed record (schemas, datasets and lenses alike)."""
    return [
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("uri", String(512), nullable=False, unique=True),
        Column("did", String(255), nullable=False, index=True),
        Column("rkey", String(512), nullable=False),
        Column("cid", String(128), nullable=False),
    ]


def _record_times() -> list[Column[Any]]:
    """When the record says it was made, when we indexed it, and whether its repo is hidden."""
    return [
        Column("created_at", String(40)),
        Column("indexed_at", String(40)),
        Column("hidden", Boolean, nullable=False, default=False),
    ]


#: The lexicon family a schema, dataset or lens row was published in: ours, or the peer
#: network's, whose records are indexed into the same tables so one search covers both.
OWN_FAMILY = "io.atdata"
PEER_FAMILY = "science.alt.dataset"


def _family() -> Column[Any]:
    return Column("family", String(32), nullable=False, server_default=OWN_FAMILY)


def _dataset_key() -> Column[Any]:
    """A dataset child table's key: its dataset, whose deletion deletes the child rows."""
    return Column(
        "dataset_id", Integer, ForeignKey("datasets.id", ondelete="CASCADE"), primary_key=True
    )


schemas = Table(
    "schemas",
    metadata,
    *_record_identity(),
    _family(),
    Column("name", String(512)),
    Column("version", String(64)),
    Column("description", Text),
    Column("field_names", JSON),
    *_record_times(),
    Column("record", JSON, nullable=False),
    Index("ix_schemas_name_version", "name", "version"),
)

datasets = Table(
    "datasets",
    metadata,
    *_record_identity(),
    _family(),
    Column("name", String(512)),
    Column("version", String(128)),
    #: The newest version of its (did, name) (highest semver, then newest created_at), kept
    #: at write time so search collapses versions with one column, not a GROUP BY.
    Column("newest", Boolean, nullable=False, default=True),
    Column("description", Text),
    Column("tags", JSON),
    Column("license", String(128)),
    Column("samples", BigInteger),
    Column("bytes", BigInteger),
    Column("schema_uri", String(512), index=True),
    Column("schema_cid", String(128)),
    *_record_times(),
    Index("ix_datasets_browse_created", "hidden", "created_at", "id"),
    Index("ix_datasets_browse_samples", "hidden", "samples", "id"),
    Index("ix_datasets_license", "license"),
    Index("ix_datasets_did_name", "did", "name"),
)

#: The dataset record as published, apart from the searched columns: dataset rows stay small,
#: so a search touching a thousand of them reads a few pages, not a thousand.
dataset_records = Table(
    "dataset_records",
    metadata,
    _dataset_key(),
    Column("record", JSON, nullable=False),
)

#: One row per (dataset, tag), carrying the sort keys so tag browsing is an index range scan.
dataset_tags = Table(
    "dataset_tags",
    metadata,
    _dataset_key(),
    Column("tag", String(128), primary_key=True),
    Column("hidden", Boolean, nullable=False, default=False),
    Column("created_at", String(40)),
    Column("samples", BigInteger),
    Index("ix_dataset_tags_created", "tag", "hidden", "created_at", "dataset_id"),
    Index("ix_dataset_tags_samples", "tag", "hidden", "samples", "dataset_id"),
)

#: Lineage edges: one row per entry of a dataset's ``derivedFrom`` (the dataset is the child,
#: ``source_uri`` the dataset it was derived from, which may not be indexed). Ancestors are
#: found by ``dataset_id``, descendants by ``source_uri``.
dataset_lineage = Table(
    "dataset_lineage",
    metadata,
    _dataset_key(),
    Column("position", Integer, primary_key=True),
    Column("source_uri", String(512), nullable=False, index=True),
    Column("source_cid", String(128)),
    Column("relation", String(64)),
    Column("lens_uri", String(512)),
)

shards = Table(
    "shards",
    metadata,
    _dataset_key(),
    Column("position", Integer, primary_key=True),
    Column("url", Text),
    Column("blob_cid", String(128)),
    Column("size", BigInteger),
    Column("sha256", String(64)),
    Column("samples", BigInteger),
    Column("detail", JSON),
)

lenses = Table(
    "lenses",
    metadata,
    *_record_identity(),
    _family(),
    Column("name", String(512)),
    Column("description", Text),
    Column("source_schema", String(512), index=True),
    Column("target_schema", String(512), index=True),
    *_record_times(),
    Column("record", JSON, nullable=False),
)

#: ``science.alt.dataset.label`` records: a name (and version) pointing at an entry. Several
#: may share a name; the newest ``created_at`` is that name's "latest". ``dataset_uri`` is
#: kept as written, whether or not the entry it names is indexed.
labels = Table(
    "labels",
    metadata,
    *_record_identity(),
    Column("name", String(512)),
    Column("version", String(128)),
    Column("dataset_uri", String(512), index=True),
    Column("description", Text),
    *_record_times(),
    Column("record", JSON, nullable=False),
    Index("ix_labels_did_name_created", "did", "name", "created_at"),
)

#: ``science.alt.dataset.lensVerification`` records: the repo's DID vouches for a lens
#: (``lens_uri``, pinned to the lens record's CID ``lens_cid``) by ``method``.
lens_verifications = Table(
    "lens_verifications",
    metadata,
    *_record_identity(),
    Column("lens_uri", String(512), index=True),
    Column("lens_cid", String(128)),
    Column("method", String(64)),
    *_record_times(),
    Column("record", JSON, nullable=False),
)

#: Firehose position per followed host, written in the same transaction as the writes it covers.
cursors = Table(
    "cursors",
    metadata,
    Column("host", String(512), primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("updated_at", String(40)),
)

#: Where each indexed collection's records live; both families share schemas/datasets/lenses.
COLLECTION_TABLES: dict[str, Table] = {
    SCHEMA: schemas,
    DATASET: datasets,
    LENS: lenses,
    PEER_SCHEMA: schemas,
    PEER_ENTRY: datasets,
    PEER_LENS: lenses,
    PEER_LABEL: labels,
    PEER_LENS_VERIFICATION: lens_verifications,
}

#: The ``family`` each indexed collection's rows carry.
COLLECTION_FAMILY: dict[str, str] = {
    collection: OWN_FAMILY if collection.startswith(OWN_NAMESPACE) else PEER_FAMILY
    for collection in COLLECTION_TABLES
}

#: Tables holding one row per record of a repo (hidden/purged with it).
RECORD_TABLES = (schemas, datasets, lenses, labels, lens_verifications)
