"""Croissant 1.1 export: `atdata export croissant` against a dataset published on the devnet,
the AppView's `/datasets/<did>/<rkey>/croissant.json`, and the builder on records the devnet
fixture does not publish (S3 storage, a manifest's shard list, lineage). Every document is
validated by `mlcroissant`; any error or warning it reports fails the test.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import httpx
import mlcroissant as mlc
import pytest
from _fixtures.newcomer import Published, RunningAppView
from atdata.croissant import CROISSANT_CONTEXT, Author, croissant_document
from atdata.records import Record
from test_cli import atdata_cli


def validated(doc: dict[str, Any], missing: str | None = None) -> mlc.Dataset:
    """`doc` loaded by mlcroissant, which must report no error and no warning (but the
    one saying that the recommended property `missing` is absent, when given)."""
    ds = mlc.Dataset(
        jsonld=copy.deepcopy(doc)
    )  # (it edits the context) raises mlc.ValidationError listing every error
    issues = ds.metadata.ctx.issues
    assert not issues.errors, issues.report()
    allowed = {f'Property "https://schema.org/{missing}" is recommended, but does not exist.'}
    assert not {w for w, _ in issues._warnings} - allowed, issues.report()
    return ds


def check_published(doc: dict[str, Any], published: Published) -> None:
    did = published.uri.split("/")[2]
    assert doc["@context"] == CROISSANT_CONTEXT  # inline: nothing to fetch
    assert doc["conformsTo"] == "http://mlcommons.org/croissant/1.1"
    assert doc["name"] == published.name
    assert doc["identifier"] == published.uri
    assert doc["license"] == ["https://spdx.org/licenses/CC0-1.0.html"]
    assert doc["creator"]["identifier"] == did
    assert doc["creator"]["name"] == published.account.handle
    assert set(doc["keywords"]) == {"glyphs", published.tag}
    assert published.uri in doc["citeAs"]
    files = [f for f in doc["distribution"] if f["@type"] == "cr:FileObject"]
    assert [(f["sha256"], f["contentSize"]) for f in files] == [
        (s.sha256, f"{s.bytes} B") for s in published.shards
    ]
    assert {f["encodingFormat"] for f in files} == {"application/x-tar"}
    for f in files:  # the content URL serves exactly the shard
        assert httpx.get(f["contentUrl"]).status_code == 200
    splits = next(r for r in doc["recordSet"] if r.get("dataType") == "cr:Split")
    assert [d["splits/name"] for d in splits["data"]] == ["train", "test"]
    samples = next(r for r in doc["recordSet"] if r["@id"] == "samples")
    fields = {f["name"]: f for f in samples["field"]}
    assert {"image", "label", "caption"} <= set(fields)
    assert fields["image"]["isArray"] is True
    assert fields["image"]["dataType"] == "cr:UInt8"
    assert "prov:wasDerivedFrom" not in doc  # no lineage in this record


def test_export_help_has_examples() -> None:
    done = atdata_cli("export", "croissant", "--help")
    assert done.returncode == 0, done.stderr
    assert "Examples:" in done.stdout
    assert "atdata export croissant" in done.stdout


@pytest.mark.devnet
def test_cli_export_writes_valid_croissant(
    published: Published, appview: RunningAppView, tmp_path: Path
) -> None:
    done = atdata_cli("export", "croissant", published.uri)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    check_published(doc, published)
    assert doc["url"] == published.uri  # no AppView: the at:// URI stands in for a page
    validated(doc)

    # through the AppView, by handle, into a file: the page is the document's url
    by_handle = published.uri.replace(published.uri.split("/")[2], published.account.handle)
    target = tmp_path / "croissant.json"
    done = atdata_cli("export", "croissant", by_handle, "-o", str(target), "--appview", appview.url)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    doc = json.loads(target.read_text())
    check_published(doc, published)
    did, rkey = published.uri.split("/")[2], published.uri.split("/")[-1]
    assert doc["url"] == f"{appview.url}/datasets/{did}/{rkey}"
    validated(doc)

    gone = atdata_cli("export", "croissant", f"at://{did}/io.atdata.dataset/3zzzzzzzzzzzz")
    assert gone.returncode == 3, gone.stderr

    # by @handle/name@version through the AppView: the same record
    named = f"@{published.account.handle}/{published.name}@1.0.0"
    done = atdata_cli("export", "croissant", named, "--appview", appview.url)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["identifier"] == published.uri
    unseen = atdata_cli("export", "croissant", named[:-5] + "9.9.9", "--appview", appview.url)
    assert unseen.returncode == 3, unseen.stderr


@pytest.mark.devnet
def test_appview_serves_valid_croissant_beside_the_page(
    published: Published, appview: RunningAppView
) -> None:
    did, rkey = published.uri.split("/")[2], published.uri.split("/")[-1]
    page = httpx.get(f"{appview.url}/datasets/{did}/{rkey}")
    assert f"href='/datasets/{did}/{rkey}/croissant.json'" in page.text  # the page links it
    answer = httpx.get(f"{appview.url}/datasets/{did}/{rkey}/croissant.json")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/ld+json")
    doc = answer.json()
    check_published(doc, published)
    assert doc["url"] == f"{appview.url}/datasets/{did}/{rkey}"
    validated(doc)
    # the CLI writes the same document, given the same page
    cli = atdata_cli("export", "croissant", published.uri, "--appview", appview.url)
    assert json.loads(cli.stdout) == doc

    missing = httpx.get(f"{appview.url}/datasets/{did}/3zzzzzzzzzzzz/croissant.json")
    assert missing.status_code == 404
    assert "error" in missing.json()
    bad = httpx.get(f"{appview.url}/datasets/not-a-did/x/croissant.json")
    assert bad.status_code == 400


@pytest.mark.devnet
def test_a_derived_dataset_exports_its_lineage(published: Published, make_account: Any) -> None:
    from atdata.atmosphere import Client

    account = make_account(1)  # another author, on the other PDS
    client = Client(account.pds_url).login(account.handle, account.password)
    subset = client.publish_dataset(
        published.shards[:1],
        name=f"{published.name}-subset",
        schema=published.schema_uri,
        license="CC0-1.0",
        derived_from=[(published.uri, "subset")],
        progress=False,
    )
    done = atdata_cli("export", "croissant", str(subset))
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert [d["@id"] for d in doc["prov:wasDerivedFrom"]] == [published.uri]
    assert len([f for f in doc["distribution"] if f["@type"] == "cr:FileObject"]) == 1
    validated(doc)


SCHEMA = Record(
    "at://did:plc:abc/io.atdata.schema/3s",
    "bafyreischema",
    {
        "$type": "io.atdata.schema",
        "name": "Frame",
        "version": "1.0.0",
        "fields": [
            {"name": "pixels", "type": {"kind": "ndarray", "dtype": "<f4", "shape": [-1, 3]}},
            {"name": "depth", "type": {"kind": "ndarray"}},
            {"name": "labels", "type": {"kind": "list", "item": {"kind": "int"}}},
            {"name": "raw", "type": {"kind": "bytes", "optional": True}},
            {"name": "meta", "type": {"kind": "sample", "sample": "Meta"}},
        ],
        "types": [
            {
                "name": "Meta",
                "version": "1.0.0",
                "fields": [{"name": "camera", "type": {"kind": "str"}}],
            }
        ],
        "createdAt": "2026-01-02T03:04:05.000Z",
    },
)


def s3_dataset(**extra: Any) -> Record:
    value = {
        "$type": "io.atdata.dataset",
        "name": "frames",
        "schema": {"uri": SCHEMA.uri, "cid": SCHEMA.cid},
        "storage": {
            "$type": "io.atdata.dataset#s3Storage",
            "bucket": "frames",
            "endpoint": "http://127.0.0.1:9000",
        },
        "totals": {"samples": 4, "bytes": 20, "shards": 2},
        "arrays": [{"field": "depth", "dtype": "<u2", "shape": [4, 4]}],
        "createdAt": "2026-01-02T03:04:05.000Z",
        **extra,
    }
    return Record("at://did:plc:abc/io.atdata.dataset/3d", "bafyreidataset", value)


MANIFEST_SHARDS = [
    {"samples": 2, "bytes": 10, "sha256": "a" * 64, "key": "p/frames-0.tar"},
    {"samples": 2, "bytes": 10, "sha256": "b" * 64, "key": "p/frames-1.tar"},
]


def test_builder_covers_s3_manifests_arrays_nesting_and_lineage() -> None:
    source = "at://did:plc:xyz/io.atdata.dataset/3src"
    ds = s3_dataset(
        license="MIT OR Apache-2.0",
        derivedFrom=[{"dataset": {"uri": source, "cid": "bafyreisrc"}, "relation": "subset"}],
    )
    doc = croissant_document(ds, SCHEMA, Author("did:plc:abc"), shards=MANIFEST_SHARDS)
    validated(doc)
    assert doc["version"] == "0.0.0"  # a record without a version
    assert doc["creator"]["name"] == "did:plc:abc"
    assert doc["license"] == [
        "https://spdx.org/licenses/MIT.html",
        "https://spdx.org/licenses/Apache-2.0.html",
    ]
    assert doc["prov:wasDerivedFrom"][0]["@id"] == source
    urls = [f["contentUrl"] for f in doc["distribution"] if f["@type"] == "cr:FileObject"]
    assert urls == ["http://127.0.0.1:9000/frames/p/frames-0.tar",
                    "http://127.0.0.1:9000/frames/p/frames-1.tar"]  # fmt: skip
    (samples,) = doc["recordSet"]  # no splits: one record set
    fields = {f["name"]: f for f in samples["field"]}
    assert (fields["pixels"]["dataType"], fields["pixels"]["arrayShape"]) == ("cr:Float32", "-1,3")
    # no declared dtype/shape: the ones observed while writing
    assert (fields["depth"]["dataType"], fields["depth"]["arrayShape"]) == ("cr:UInt16", "4,4")
    assert fields["labels"]["isArray"] is True
    assert fields["labels"]["dataType"] == "sc:Integer"
    assert [f["name"] for f in fields["meta"]["subField"]] == ["camera"]

    # a record without a license or lineage
    plain = croissant_document(s3_dataset(), SCHEMA, Author("did:plc:abc"), shards=[])
    validated(plain, missing="license")  # a record without a license: only a warning
    assert "prov:wasDerivedFrom" not in plain
