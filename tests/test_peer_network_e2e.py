"""The existing atdata network, end to end on the devnet with the real atdata 0.7 SDK.

The 0.7 SDK (PyPI ``atdata==0.7.0b1``, its own Python 3.12 venv) logs into PDS1 and publishes
a schema, a blob-stored dataset and a label, as its users do (createRecord on their PDS). Our
AppView (`atdata appview serve`), already following the devnet's PDSes, indexes them within
5 s: the entry as a dataset of the peer family with one shard row per blob and its sha256,
the schema with its field names, the label with its version. Our SDK, from another account on
PDS2 with nothing but the entry's or the label's URI, or ``@handle/name`` through our
AppView, loads the entry typed from its schema, and its batches hold exactly the samples the
0.7 SDK wrote. Then the 0.7 SDK, pointed at our
AppView and at no reachable PDS, finds the dataset by search, resolves its schema and label
and reads its samples: our AppView's /metrics count each of those calls as answered, and with
no PDS to fall back to (and no "falling back" logged), nothing was answered elsewhere.
"""

from __future__ import annotations

import json
import time
from typing import Any

import atdata
import httpx
import numpy as np
import pytest
import sqlalchemy as sa
from _fixtures.newcomer import RunningAppView
from _fixtures.peer import run_peer
from _fixtures.peer_network import PeerPublished, make_samples, plain
from atdata.atmosphere import fetch_record
from atdata_appview.db.models import PEER_FAMILY, datasets, labels, schemas, shards

pytestmark = [pytest.mark.devnet, pytest.mark.peer]

INDEX_DEADLINE_S = 5.0
make = make_samples()


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
    indexed: tuple[PeerPublished, float, dict[str, Any]], appview: RunningAppView
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
    # One search covers both families; `family=` keeps one.
    with atdata.AppViewClient(appview.url) as av:
        for family in (None, PEER_FAMILY):
            hits = av.search(pub.tag, family=family).datasets
            assert [(d.uri, d.family) for d in hits] == [(pub.entry_uri, PEER_FAMILY)]
        assert av.search(pub.tag, family="io.atdata").datasets == []


def expected_rows(n: int) -> list[dict[str, Any]]:
    return [make(i) for i in range(n)]


def assert_same_samples(ds: atdata.Dataset[Any], n: int) -> None:
    """Batches of 4 from `ds` hold exactly `make(0..n-1)`, in order."""
    want = expected_rows(n)
    seen = 0
    for batch in ds.ordered(batch_size=4):
        k = len(batch.label)
        rows = want[seen : seen + k]
        assert np.array_equal(batch.image, np.stack([r["image"] for r in rows]))
        assert batch.image.dtype == np.uint8
        assert list(batch.label) == [r["label"] for r in rows]
        assert [float(x) for x in batch.score] == [r["score"] for r in rows]
        seen += k
    assert seen == n


def test_our_sdk_loads_the_entry_by_uri_and_by_label(
    indexed: tuple[PeerPublished, float, dict[str, Any]], make_account: Any
) -> None:
    pub, _, _ = indexed
    reader = make_account(1)  # another account, on the other PDS: only the URIs travel
    assert reader.pds_url != pub.account.pds_url
    by_uri = atdata.load_dataset(pub.entry_uri)
    assert by_uri.uri == pub.entry_uri
    fields = {f.name: f.kind.value for f in atdata.sample_fields(by_uri.sample_type)}
    assert fields == {"image": "ndarray", "label": "str", "score": "float"}
    assert_same_samples(by_uri, pub.samples)

    by_label = atdata.load_dataset(pub.label_uri)
    assert by_label.uri == pub.entry_uri
    assert_same_samples(by_label, pub.samples)


# The 0.7 SDK, pointed at our AppView only: its PDS (for the fallbacks it takes when an AppView
# call fails) is an address where nothing listens, so every answer came from our AppView.
_PEER_VIA_APPVIEW = r"""
import json, logging, sys
import numpy as np
from atdata.atmosphere import Atmosphere, DatasetLoader, LabelLoader, SchemaLoader
from atdata._schema_codec import _schema_to_type

fallbacks = []
class Catch(logging.Handler):
    def emit(self, record):
        if "falling back" in record.getMessage():
            fallbacks.append(record.getMessage())
logging.getLogger().addHandler(Catch())

args = json.loads(sys.argv[1])
atmo = Atmosphere(base_url="http://127.0.0.1:9", appview=args["appview"])
hits = atmo.search_datasets(args["tag"])
schema = SchemaLoader(atmo).resolve(args["handle"], args["schema_name"], "1.0.0")
latest = LabelLoader(atmo).resolve(args["handle"], args["name"])
pinned = LabelLoader(atmo).resolve(args["handle"], args["name"], args["version"])
loader = DatasetLoader(atmo)
entry = loader.get(latest)
T = _schema_to_type(schema)
rows = [
    {"image": {"dtype": s.image.dtype.str, "shape": list(s.image.shape), "data": s.image.tolist()},
     "label": s.label, "score": s.score}
    for s in loader.to_dataset(latest, T).ordered()
]
print(json.dumps({
    "hits": [h.get("uri") for h in hits], "schema": schema, "latest": latest, "pinned": pinned,
    "entry": entry, "rows": rows, "fallbacks": fallbacks,
}))
"""

#: The calls the script above makes, each answered by our AppView.
PEER_CALLS = (
    "searchDatasets",
    "resolveSchema",
    "resolveLabel",
    "getEntry",
    "resolveBlobs",
)


def answered(appview: RunningAppView) -> dict[str, float]:
    """Requests our AppView answered with 200, per science.alt.dataset route (/metrics)."""
    text = httpx.get(f"{appview.url}/metrics", timeout=10).text
    counts: dict[str, float] = {}
    for line in text.splitlines():
        if not line.startswith("atdata_appview_http_requests_total{") or 'status="200"' not in line:
            continue
        route = line.split('route="', 1)[1].split('"', 1)[0]
        if route.startswith("/xrpc/science.alt.dataset."):
            nsid = route.rsplit(".", 1)[1]
            counts[nsid] = counts.get(nsid, 0) + float(line.rpartition(" ")[2])
    return counts


def test_the_07_sdk_finds_resolves_and_reads_through_our_appview(
    indexed: tuple[PeerPublished, float, dict[str, Any]],
    appview: RunningAppView,
    peer_python: str,
) -> None:
    pub, _, _ = indexed
    before = answered(appview)
    args = {
        "appview": appview.url,
        "tag": pub.tag,
        "handle": pub.account.handle,
        "name": pub.name,
        "version": pub.version,
        "schema_name": pub.schema_name,
    }
    got = run_peer(peer_python, _PEER_VIA_APPVIEW, json.dumps(args))
    after = answered(appview)

    assert got["fallbacks"] == []
    assert got["hits"] == [pub.entry_uri]
    assert got["schema"]["name"] == pub.schema_name
    assert set(got["schema"]["schema"]["properties"]) == {"image", "label", "score"}
    assert got["latest"] == got["pinned"] == pub.entry_uri
    assert got["entry"]["name"] == pub.name
    assert got["rows"] == [{k: plain(v) for k, v in r.items()} for r in expected_rows(pub.samples)]
    for call in PEER_CALLS:
        assert after.get(call, 0) > before.get(call, 0), (call, before, after)


def test_our_sdk_loads_the_entry_by_handle_and_name_through_our_appview(
    indexed: tuple[PeerPublished, float, dict[str, Any]],
    appview: RunningAppView,
    make_account: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`@handle/name` names the author's newest label of that name (they have no io.atdata
    dataset of it); the reader's own PDS cannot resolve a handle of PDS1: our AppView's
    answer is what finds it."""
    pub, _, _ = indexed
    reader = make_account(1)
    monkeypatch.setenv("ATDATA_PDS", reader.pds_url)  # the reader's environment
    newest = atdata.load_dataset(f"@{pub.account.handle}/{pub.name}", appview=appview.url)
    assert newest.uri == pub.entry_uri
    assert_same_samples(newest, pub.samples)
    pinned = atdata.load_dataset(
        f"@{pub.account.handle}/{pub.name}@{pub.version}", appview=appview.url
    )
    assert pinned.uri == pub.entry_uri
