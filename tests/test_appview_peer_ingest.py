"""The AppView ingests the peer network's records (``science.alt.dataset.*``) next to ours, by
default: written to the real devnet PDSes by an atproto client, shaped as the atdata 0.7 SDK
writes them (each schema-body form, each storage kind), indexed within 5 s from the firehose
and by the start-up backfill, on SQLite and PostgreSQL. Forged and lexicon-invalid peer
records are refused and counted like ours."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from typing import Any

import pytest
from _fixtures import peer_records as peer
from _fixtures.ingest import (
    FakeFirehose,
    capture_frames,
    delete_record,
    forged_commit,
    frame_parts,
    put_record,
    running,
    wait_for,
    ws_url,
)
from _fixtures.peer_records import (
    PEER_ENTRY,
    PEER_LABEL,
    PEER_LENS,
    PEER_LENS_VERIFICATION,
    PEER_SCHEMA,
)
from atdata_appview.db.models import datasets, labels, lens_verifications, lenses, schemas, shards
from atdata_appview.db.store import Store
from atdata_appview.ingest import IngestService
from sqlalchemy import select

pytestmark = pytest.mark.devnet


def upload_tar(client: Any, payload: bytes) -> dict[str, Any]:
    """Upload `payload` as a blob; its ref in the JSON form a record holds."""
    blob = client.com.atproto.repo.upload_blob(payload).blob
    return {
        "$type": "blob",
        "ref": {"$link": str(blob.ref.link)},
        "mimeType": blob.mime_type,
        "size": blob.size,
    }


def uris_of(store: Store, table: Any) -> Any:
    def q(conn: Any) -> dict[str, Any]:
        return {r.uri: r for r in conn.execute(select(table))}

    return store.read(q)


def shard_urls(store: Store, uri: str) -> Any:
    def q(conn: Any) -> list[tuple[Any, ...]]:
        rows = conn.execute(
            select(shards.c.url, shards.c.blob_cid, shards.c.sha256)
            .join(datasets, shards.c.dataset_id == datasets.c.id)
            .where(datasets.c.uri == uri)
            .order_by(shards.c.position)
        )
        return [tuple(r) for r in rows]

    return store.read(q)


async def indexed(store: Store, table: Any, *uris: str) -> bool:
    got = await uris_of(store, table)
    return all(u in got for u in uris)


async def absent(store: Store, table: Any, *uris: str) -> bool:
    got = await uris_of(store, table)
    return not any(u in got for u in uris)


def test_peer_records_are_indexed_by_backfill_and_live(devnet, make_account, index_url, caplog):
    caplog.set_level(logging.WARNING)
    a = make_account(0)
    b = make_account(1)
    ca, cb = a.client(), b.client()
    # A publishes before the AppView starts: the start-up backfill finds it
    tar = b"peer shard bytes " * 600
    blob = upload_tar(ca, tar)
    schema_a = put_record(ca, a.did, PEER_SCHEMA, peer.schema_record(form="flat"))
    entry_rec = peer.entry_record("peer-blobs", schema_a.uri, "blobs", blobs=[blob])
    entry_rec["storage"]["blobs"][0]["checksum"]["digest"] = hashlib.sha256(tar).hexdigest()
    entry_a = put_record(ca, a.did, PEER_ENTRY, entry_rec)
    label_a = put_record(ca, a.did, PEER_LABEL, peer.label_record("peer-blobs", entry_a.uri))

    async def go() -> None:
        store = Store(index_url)
        svc = IngestService(
            store, [ws_url(p.url) for p in devnet.pds], devnet.plc_url, batch_interval=0.05
        )
        try:
            async with running(svc):
                await wait_for(lambda: indexed(store, datasets, entry_a.uri), 20)
                await wait_for(lambda: indexed(store, labels, label_a.uri), 5)
                assert await shard_urls(store, entry_a.uri) == [
                    (None, blob["ref"]["$link"], hashlib.sha256(tar).hexdigest())
                ]
                # B publishes live (its first commit is fetched whole: a backfill of its repo):
                # each schema form, each remaining storage kind, a lens, a check, a label
                envelope = put_record(cb, b.did, PEER_SCHEMA, peer.schema_record(form="envelope"))
                legacy = put_record(cb, b.did, PEER_SCHEMA, peer.schema_record(form="legacy"))
                entries = {
                    kind: put_record(
                        cb,
                        b.did,
                        PEER_ENTRY,
                        peer.entry_record(f"peer-{kind}", envelope.uri, kind, tags=("live",)),
                    )
                    for kind in ("http", "s3", "external")
                }
                lens = put_record(
                    cb, b.did, PEER_LENS, peer.lens_record("peer-lens", envelope.uri, legacy.uri)
                )
                check = put_record(
                    cb,
                    b.did,
                    PEER_LENS_VERIFICATION,
                    peer.lens_verification_record(lens.uri, lens.cid),
                )
                label = put_record(
                    cb, b.did, PEER_LABEL, peer.label_record("peer-http", entries["http"].uri)
                )
                written = time.monotonic()
                await wait_for(
                    lambda: indexed(store, datasets, *(r.uri for r in entries.values())), 10
                )
                await wait_for(lambda: indexed(store, schemas, envelope.uri, legacy.uri), 5)
                await wait_for(lambda: indexed(store, lenses, lens.uri), 5)
                await wait_for(lambda: indexed(store, lens_verifications, check.uri), 5)
                await wait_for(lambda: indexed(store, labels, label.uri), 5)
                assert time.monotonic() - written < 5.0
                got_schemas = await uris_of(store, schemas)
                for uri in (schema_a.uri, envelope.uri, legacy.uri):
                    assert got_schemas[uri].family == "science.alt.dataset"
                    # a PDS stores records as DAG-CBOR: properties come back in its key order
                    assert got_schemas[uri].field_names == ["image", "index", "label", "score"]
                got = await uris_of(store, datasets)
                assert {got[r.uri].family for r in entries.values()} == {"science.alt.dataset"}
                assert got[entries["http"].uri].schema_uri == envelope.uri
                assert len(await shard_urls(store, entries["s3"].uri)) == 2
                assert (await shard_urls(store, entries["external"].uri))[0][0].endswith(
                    "legacy-{000000..000003}.tar"
                )
                # an update and deletes propagate like ours
                rkey = entries["http"].uri.rsplit("/", 1)[1]
                put_record(
                    cb,
                    b.did,
                    PEER_ENTRY,
                    peer.entry_record("peer-http-2", legacy.uri, "s3"),
                    rkey=rkey,
                )
                delete_record(cb, b.did, PEER_ENTRY, entries["external"].uri.rsplit("/", 1)[1])
                delete_record(cb, b.did, PEER_LABEL, label.uri.rsplit("/", 1)[1])

                async def changed() -> bool:
                    now = await uris_of(store, datasets)
                    row = now.get(entries["http"].uri)
                    return (
                        row is not None
                        and row.name == "peer-http-2"
                        and entries["external"].uri not in now
                        and await absent(store, labels, label.uri)
                    )

                await wait_for(changed, 10)
                assert (await shard_urls(store, entries["http"].uri))[0][0].startswith("s3://")
                assert await shard_urls(store, entries["external"].uri) == []
                # none of these records or commits was refused (the devnet is shared: other tests'
                # accounts may hold records that are invalid on purpose, and backfill sees them)
                ours = [
                    r.getMessage()
                    for r in caplog.records
                    if r.levelno >= logging.WARNING
                    and any(did in r.getMessage() for did in (a.did, b.did))
                ]
                assert ours == []
                # other accounts of the shared devnet may still be fetching: the index says when
                # it has caught up
                await wait_for(lambda: svc.metrics()["backlog"]["caughtUp"], 30)
        finally:
            store.close()

    asyncio.run(go())


def test_forged_and_invalid_peer_records_are_refused_and_counted(
    devnet, make_account, index_url, caplog
):
    """A commit of a peer record with a forged signature is refused; a peer entry without
    its schemaRef is skipped as lexicon-invalid, with its reason logged; the rest indexes."""
    acc = make_account(0)
    client = acc.client()
    schema = put_record(client, acc.did, PEER_SCHEMA, peer.schema_record(), rkey="3kpeerschema1")
    good = peer.entry_record("peer-good", schema.uri, "http")
    put_record(client, acc.did, PEER_ENTRY, good, rkey="3kpeergood001")
    bad = {k: v for k, v in peer.entry_record("peer-bad", schema.uri).items() if k != "schemaRef"}
    put_record(client, acc.did, PEER_ENTRY, bad, rkey="3kpeerbad0001")
    put_record(
        client, acc.did, PEER_LABEL, peer.label_record("l", "at://x/y/z"), rkey="3kpeerlab0001"
    )

    def done(frames: list[bytes]) -> bool:
        return any(
            frame_parts(f)[1].get("repo") == acc.did
            and any(op["path"].startswith(PEER_LABEL) for op in frame_parts(f)[1]["ops"])
            for f in frames
            if frame_parts(f)[0].get("t") == "#commit"
        )

    frames = asyncio.run(capture_frames(acc.pds_url, done, cursor=0, timeout=30))
    mine = [
        f for f in frames if frame_parts(f)[1].get("repo", frame_parts(f)[1].get("did")) == acc.did
    ]
    last_seq = frame_parts(mine[-1])[1]["seq"]
    label_commit = mine[-1]

    forged = forged_commit(label_commit, last_seq + 1)
    base = f"at://{acc.did}"

    async def go() -> None:
        fake = FakeFirehose()
        host = await fake.start()
        for f in mine[:-1]:  # the label's own commit never arrives: only its forgery
            fake.add(f)
        fake.add(forged)
        store = Store(index_url)
        svc = IngestService(store, [host], devnet.plc_url, backfill=False, batch_interval=0.05)
        try:
            async with running(svc):
                await wait_for(lambda: svc.metrics()["hosts"][host]["seq"] == last_seq + 1, 20)
                await svc.drain()
                assert set(await uris_of(store, datasets)) >= {f"{base}/{PEER_ENTRY}/3kpeergood001"}
                assert f"{base}/{PEER_ENTRY}/3kpeerbad0001" not in await uris_of(store, datasets)
                assert f"{base}/{PEER_SCHEMA}/3kpeerschema1" in await uris_of(store, schemas)
                assert await absent(store, labels, f"{base}/{PEER_LABEL}/3kpeerlab0001")
                m = svc.metrics()
                assert m["invalid_records"] == 1 and m["commits_refused"] == 1
                assert m["reasons"].get("signature") == 1
                logged = [
                    r.getMessage() for r in caplog.records if "invalid record" in r.getMessage()
                ]
                assert len(logged) == 1 and "3kpeerbad0001" in logged[0]
                assert "schemaRef" in logged[0]
        finally:
            store.close()
            await fake.stop()

    asyncio.run(go())
