"""The existing atdata network, end to end on the devnet with the real atdata 0.7 SDK.

The 0.7 SDK (PyPI ``atdata==0.7.0b1``, its own Python 3.12 venv) logs into PDS1 and publishes
a schema, a blob-stored dataset and a label, as its users do (createRecord on their PDS). Our
AppView (`atdata appview serve`), already following the devnet's PDSes, indexes them within
5 s: the entry as a dataset of the peer family with one shard row per blob and its sha256,
the schema with its field names, the label with its version.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import sqlalchemy as sa
from _fixtures.newcomer import RunningAppView
from _fixtures.peer_network import PeerPublished
from atdata.atmosphere import fetch_record
from atdata_appview.db.models import PEER_FAMILY, datasets, labels, schemas, shards

pytestmark = [pytest.mark.devnet, pytest.mark.peer]

INDEX_DEADLINE_S = 5.0


def index_rows(appview: RunningAppView, pub: PeerPublished) -> dict[str, Any]:
    """What the AppView's index holds of `pub` (its SQLite file, read beside the server)."""
    engine = sa.create_engine(appview.db)
    try:
        with engine.connect() as conn:
            entry = conn.execute(
                sa.select(datasets).where(datasets.c.uri == pub.entry_uri)
            ).one_or_none()
            return {
                "entry": entry,
                "shards": (
                    conn.execute(
                        sa.select(shards)
                        .where(shards.c.dataset_id == entry.id)
                        .order_by(shards.c.position)
                    ).all()
                    if entry is not None
                    else []
                ),
                "schema": conn.execute(
                    sa.select(schemas).where(schemas.c.uri == pub.schema_uri)
                ).one_or_none(),
                "label": conn.execute(
                    sa.select(labels).where(labels.c.uri == pub.label_uri)
                ).one_or_none(),
            }
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def indexed(
    appview: RunningAppView, peer_published: PeerPublished
) -> tuple[PeerPublished, float, dict[str, Any]]:
    """The 0.7 SDK's publication once our AppView (already following the devnet when the
    0.7 SDK wrote) has indexed its schema, entry and label; the seconds that took after the
    publishing script ended (its records were written before), and the index rows."""
    started = time.monotonic()
    while True:
        rows = index_rows(appview, peer_published)
        waited = time.monotonic() - started
        if all(rows[k] is not None for k in ("entry", "schema", "label")):
            return peer_published, waited, rows
        if waited > 30:
            raise AssertionError(f"{peer_published} not indexed after {waited:.0f} s: {rows}")
        time.sleep(0.1)


def test_our_appview_indexes_what_the_07_sdk_published_within_5_s(
    indexed: tuple[PeerPublished, float, dict[str, Any]],
) -> None:
    pub, waited, rows = indexed
    assert waited < INDEX_DEADLINE_S, f"indexed after {waited:.1f} s"
    entry, schema, label = rows["entry"], rows["schema"], rows["label"]
    assert (entry.family, entry.name, entry.did) == (PEER_FAMILY, pub.name, pub.did)
    assert entry.schema_uri == pub.schema_uri
    assert pub.tag in entry.tags
    assert (schema.family, schema.name, schema.version) == (PEER_FAMILY, pub.schema_name, "1.0.0")
    assert sorted(schema.field_names) == ["image", "label", "score"]
    assert (label.name, label.version, label.dataset_uri) == (
        pub.name,
        pub.version,
        pub.entry_uri,
    )
    # One shard row per blob, with the sha256 the 0.7 SDK computed of the bytes it uploaded.
    published = fetch_record(pub.entry_uri).value["storage"]["blobs"]
    assert [s.blob_cid for s in rows["shards"]] == [b["blob"]["ref"]["$link"] for b in published]
    assert [s.sha256 for s in rows["shards"]] == [b["checksum"]["digest"] for b in published]
    assert len(rows["shards"]) == -(-pub.samples // pub.per_shard)
