"""Publishing in the ``science.alt.dataset`` family: `family=` on `publish_schema` and
`publish_dataset` (and `atdata publish --family`).

Records land on the devnet's PDS in the shapes the atdata 0.7 SDK writes (schema in its
flattened JSON Schema form, entry with storageBlobs/storageHttp/storageS3 and the shards'
real sha256, a label naming the version), and the real 0.7 SDK loads them back value for
value. Options that family has no field for are refused before any request.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path
from typing import Annotated, Any

import atdata
import httpx
import numpy as np
import pytest
from _fixtures.local_http import file_server
from _fixtures.peer_network import make_samples, peer_read, plain
from _fixtures.services import login
from atdata.atmosphere import Client, PublishError
from atdata.atmosphere.peer_publish import peer_schema_record
from atdata.peer import NDARRAY_SHIM_REF as NDARRAY_SHIM
from atdata.records import PEER_ENTRY, PEER_LABEL, PEER_SCHEMA
from numpy.typing import NDArray

PEER = "science.alt.dataset"
make = make_samples()


@atdata.packable(name="peerpub.Glyph", version="1.0.0")
class Glyph:
    """The samples of `_fixtures.peer_network.PEER_SAMPLES`, as our class."""

    image: Annotated[NDArray[np.uint8], atdata.Shape(3, 4)]
    label: str
    score: float


@atdata.packable(name="peerpub.Every", version="2.1.0")
class Every:
    image: NDArray[np.float32]
    label: str
    count: int
    score: float
    flag: bool
    raw: bytes
    ids: list[int]
    note: str | None = None


@atdata.packable(name="peerpub.Inner", version="1.0.0")
class Inner:
    x: int


@atdata.packable(name="peerpub.Outer", version="1.0.0")
class Outer:
    inner: Inner


def glyph_shards(tmp_path: Path, n: int = 10, per: int = 4) -> list[atdata.ShardInfo]:
    return atdata.write_samples(
        [Glyph(**make(i)) for i in range(n)], str(tmp_path / "glyph-%06d.tar"), maxcount=per
    )


# -- without a network ------------------------------------------------------------------------


def test_schema_in_the_flattened_form_the_peer_writes() -> None:
    record = peer_schema_record(atdata.schema.schema_of(Every))
    assert record["name"] == "peerpub.Every" and record["version"] == "2.1.0"
    assert record["schemaType"] == "jsonSchema" and record["atdataSchemaVersion"] == 1
    body = record["schema"]
    assert body["$type"] == f"{PEER_SCHEMA}#jsonSchemaFormat"
    assert body["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert body["type"] == "object"
    assert body["properties"] == {
        "image": {"$ref": NDARRAY_SHIM, "dtype": "<f4"},
        "label": {"type": "string"},
        "count": {"type": "integer"},
        "score": {"type": "number"},
        "flag": {"type": "boolean"},
        "raw": {"type": "string", "format": "byte", "contentEncoding": "base64"},
        "ids": {"type": "array", "items": {"type": "integer"}},
        "note": {"type": "string"},
    }
    assert body["required"] == ["image", "label", "count", "score", "flag", "raw", "ids"]
    assert body["arrayFormatVersions"] == {"ndarrayBytes": "1.0.0"}
    atdata.lexicon.validate_record(PEER_SCHEMA, {"$type": PEER_SCHEMA, **record})


def test_nested_sample_types_are_refused_by_name() -> None:
    with pytest.raises(PublishError, match=r"peerpub\.Outer: field 'inner': kind 'sample'"):
        peer_schema_record(atdata.schema.schema_of(Outer))


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"card": "# Glyphs"}, "card"),
        ({"splits": {"train": [0]}}, "splits"),
        ({"derived_from": ["at://did:plc:abc/io.atdata.dataset/3kx"]}, "derived_from"),
        (
            {"card": "# Glyphs", "splits": {"train": [0]}, "derived_from": ["at://x/y/z"]},
            "card, derived_from, splits",
        ),
    ],
)
def test_options_the_family_cannot_hold_are_refused_before_any_request(
    tmp_path: Path, options: dict[str, Any], named: str
) -> None:
    shards = glyph_shards(tmp_path, n=3)
    # Not logged in, at an address nothing listens on: any request would fail differently.
    client = Client("http://127.0.0.1:9")
    with pytest.raises(PublishError, match=f"cannot hold {named}: ") as e:
        client.publish_dataset(shards, name="glyphs", schema=Glyph, family=PEER, **options)
    assert "nothing was published" in str(e.value)


def test_unknown_family_is_refused(tmp_path: Path) -> None:
    client = Client("http://127.0.0.1:9")
    with pytest.raises(PublishError, match="family must be one of io.atdata, science.alt.dataset"):
        client.publish_dataset(glyph_shards(tmp_path, n=2), name="g", schema=Glyph, family="x.y")
    with pytest.raises(PublishError, match="family must be one of"):
        client.publish_schema(Glyph, family="science.alt")


# -- on the devnet ----------------------------------------------------------------------------


@pytest.fixture
def author(make_account: Any) -> Client:
    return login(make_account(0))


def only(client: Client, nsid: str) -> dict[str, Any]:
    records = client.list_records(nsid)
    assert len(records) == 1, records
    return {"uri": records[0].uri, **records[0].value}


@pytest.mark.devnet
def test_blob_dataset_records_in_the_peer_shapes(author: Client, tmp_path: Path) -> None:
    shards = glyph_shards(tmp_path)
    ref = author.publish_dataset(
        shards,
        name="glyphs",
        schema=Glyph,
        description="Ten glyphs.",
        tags=["glyphs"],
        license="CC0-1.0",
        version="1.2.0",
        family=PEER,
        progress=False,
    )
    assert ref.version == "1.2.0" and f"/{PEER_ENTRY}/" in ref
    assert author.list_records("io.atdata.dataset") == []  # nothing of our own family
    assert author.list_records("io.atdata.schema") == []

    schema = only(author, PEER_SCHEMA)
    assert schema["name"] == "peerpub.Glyph" and schema["atdataSchemaVersion"] == 1
    assert schema["schema"]["properties"]["image"] == {
        "$ref": NDARRAY_SHIM,
        "dtype": "|u1",
        "shape": [3, 4],
    }

    entry = only(author, PEER_ENTRY)
    assert entry["uri"] == ref
    assert entry["schemaRef"] == schema["uri"]
    assert (entry["name"], entry["description"], entry["tags"], entry["license"]) == (
        "glyphs",
        "Ten glyphs.",
        ["glyphs"],
        "CC0-1.0",
    )
    assert entry["size"] == {"samples": 10, "bytes": sum(s.bytes for s in shards), "shards": 3}
    storage = entry["storage"]
    assert storage["$type"] == "science.alt.dataset.storageBlobs"
    assert [b["checksum"] for b in storage["blobs"]] == [
        {"algorithm": "sha256", "digest": s.sha256} for s in shards
    ]
    for b, s in zip(storage["blobs"], shards, strict=True):
        blob = httpx.get(
            f"{author.pds_url}/xrpc/com.atproto.sync.getBlob",
            params={"did": author.did, "cid": b["blob"]["ref"]["$link"]},
        ).content
        assert hashlib.sha256(blob).hexdigest() == s.sha256 == b["checksum"]["digest"]

    label = only(author, PEER_LABEL)
    assert (label["name"], label["version"], label["datasetUri"]) == ("glyphs", "1.2.0", ref)

    # The schema is reused; a version already labelled is refused before anything is written.
    with pytest.raises(PublishError, match="version 1.2.0 is already published"):
        author.publish_dataset(shards, name="glyphs", schema=Glyph, version="1.2.0", family=PEER)
    with pytest.raises(PublishError, match="lower than your newest"):
        author.publish_dataset(shards, name="glyphs", schema=Glyph, version="1.1.0", family=PEER)
    again = author.publish_dataset(
        shards, name="glyphs", schema=schema["uri"], family=PEER, progress=False
    )
    assert again.version == "1.2.1"  # the next patch after the newest label
    assert len(author.list_records(PEER_SCHEMA)) == 1
    assert len(author.list_records(PEER_ENTRY)) == len(author.list_records(PEER_LABEL)) == 2


@pytest.mark.devnet
def test_an_io_atdata_schema_is_not_a_peer_schema(author: Client, tmp_path: Path) -> None:
    own = author.publish_schema(Glyph)
    with pytest.raises(PublishError, match="is a io.atdata.schema, not a science.alt.dataset"):
        author.publish_dataset(glyph_shards(tmp_path, n=2), name="g", schema=own, family=PEER)
    assert author.list_records(PEER_ENTRY) == []


@pytest.mark.devnet
def test_schema_publishing_is_idempotent_per_family(author: Client) -> None:
    ref = author.publish_schema(Glyph, family=PEER)
    assert f"/{PEER_SCHEMA}/" in ref
    assert author.publish_schema(Glyph, family=PEER) == ref
    assert "/io.atdata.schema/" in author.publish_schema(Glyph)  # the other family: its own


@pytest.mark.devnet
def test_http_and_s3_storage_in_the_peer_shapes(
    author: Client, tmp_path: Path, s3_server: Any, s3_bucket: str
) -> None:
    shards = glyph_shards(tmp_path)
    with file_server(tmp_path) as base:
        urls = [f"{base}/{Path(s.path).name}" for s in shards]
        author.publish_dataset(shards, name="hosted", schema=Glyph, storage=urls, family=PEER)
    author.publish_dataset(
        shards,
        name="bucketed",
        schema=Glyph,
        storage=f"s3://{s3_bucket}/glyphs",
        s3_client_kwargs=s3_server.client_kwargs(),
        family=PEER,
        progress=False,
    )
    by_name = {r.value["name"]: r.value["storage"] for r in author.list_records(PEER_ENTRY)}
    checksums = [{"algorithm": "sha256", "digest": s.sha256} for s in shards]
    assert by_name["hosted"] == {
        "$type": "science.alt.dataset.storageHttp",
        "shards": [{"url": u, "checksum": c} for u, c in zip(urls, checksums, strict=True)],
    }
    s3 = by_name["bucketed"]
    assert s3["$type"] == "science.alt.dataset.storageS3"
    assert (s3["bucket"], s3["endpoint"], s3["region"]) == (
        s3_bucket,
        s3_server.endpoint_url,
        s3_server.region,
    )
    keys = [sh["key"] for sh in s3["shards"]]
    assert keys == [f"glyphs/{Path(s.path).name}" for s in shards]
    assert [sh["checksum"] for sh in s3["shards"]] == checksums
    stored = s3_server.client().get_object(Bucket=s3_bucket, Key=keys[0])["Body"].read()
    assert hashlib.sha256(stored).hexdigest() == shards[0].sha256


def public_read(bucket: str) -> str:
    """A bucket policy letting anyone read the bucket's objects."""
    statement = {
        "Effect": "Allow",
        "Principal": "*",
        "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{bucket}/*",
    }
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


@pytest.mark.devnet
@pytest.mark.peer
@pytest.mark.parametrize("kind", ["blobs", "http", "s3"])
def test_our_peer_records_load_in_the_atdata_07_sdk(
    kind: str,
    author: Client,
    tmp_path: Path,
    devnet: Any,
    peer_python: str,
    s3_server: Any,
    s3_bucket: str,
) -> None:
    """The 0.7 SDK reads what we publish: its schema as a type, the entry's shards from PDS
    blobs, from HTTP URLs, or from S3 through the endpoint the record names."""
    shards = glyph_shards(tmp_path)
    options: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        if kind == "http":
            base = stack.enter_context(file_server(tmp_path))
            options["storage"] = [f"{base}/{Path(s.path).name}" for s in shards]
        elif kind == "s3":
            options["storage"] = f"s3://{s3_bucket}/glyphs"
            options["s3_client_kwargs"] = s3_server.client_kwargs()
            # The 0.7 SDK reads `<endpoint>/<bucket>/<key>` over plain HTTP, unsigned: a
            # bucket shared with its users is publicly readable.
            s3_server.client().put_bucket_policy(Bucket=s3_bucket, Policy=public_read(s3_bucket))
        ref = author.publish_dataset(
            shards, name="glyphs", schema=Glyph, version="1.0.0", family=PEER, **options
        )
        got = peer_read(peer_python, devnet, author.pds_url, str(ref))
    assert got["schema"]["name"] == "peerpub.Glyph"
    assert got["entry"]["name"] == "glyphs"
    want = [{k: plain(v) for k, v in make(i).items()} for i in range(10)]
    assert got["rows"] == want


@pytest.mark.devnet
def test_cli_publishes_with_family_and_refuses_what_it_cannot_hold(
    make_account: Any, tmp_path: Path
) -> None:
    from _fixtures.newcomer import glyphs
    from test_cli import GLYPH, atdata_cli, creds, one_line_error

    bob = make_account(1)
    atdata.write_samples(glyphs(12), str(tmp_path / "g-%06d.tar"), maxcount=5)
    pattern = str(tmp_path / "g-*.tar")
    card = tmp_path / "card.md"
    card.write_text("# Glyphs\n")
    refused = atdata_cli("publish", pattern, "--name", "g", "--schema", GLYPH, "--family", PEER,
                         "--card", str(card), "--split", "train=0", env=creds(bob))  # fmt: skip
    assert refused.returncode == 1
    assert "cannot hold card, splits" in one_line_error(refused)
    schema = atdata_cli("schema", "publish", GLYPH, "--family", PEER, env=creds(bob))
    assert schema.returncode == 0, schema.stderr
    assert schema.stdout.strip().startswith(f"at://{bob.did}/{PEER_SCHEMA}/")
    done = atdata_cli("publish", pattern, "--name", "cli-glyphs", "--schema", GLYPH,
                      "--family", PEER, "--version", "0.3.0", env=creds(bob))  # fmt: skip
    assert done.returncode == 0, done.stderr
    uri = done.stdout.strip()
    assert uri.startswith(f"at://{bob.did}/{PEER_ENTRY}/")
    assert "version 0.3.0" in done.stderr
    client = login(bob)
    assert [r.value["datasetUri"] for r in client.list_records(PEER_LABEL)] == [uri]
    assert len(client.list_records(PEER_SCHEMA)) == 1  # the schema published above, reused
