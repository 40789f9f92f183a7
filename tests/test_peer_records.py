"""science.alt.dataset records <-> ours (atdata.peer): every schema-body layout and storage kind
the network writes, the lexicons that validate them, and samples decoding across the two SDKs."""

from __future__ import annotations

import base64
import copy
import json
import re
from typing import Any

import msgpack
import numpy as np
import pytest
from _fixtures.peer import run_peer
from atdata import LexiconError, SchemaError
from atdata.lexicon import default_lexicons
from atdata.peer import (
    NDARRAY_SHIM_REF,
    PeerShard,
    PeerStorage,
    entry_storage,
    own_dataset,
    own_schema,
    peer_entry,
    peer_label,
    peer_schema,
    peer_storage,
    storage_kind,
)
from atdata.records import (
    PEER_ENTRY,
    PEER_LABEL,
    PEER_LENS,
    PEER_LENS_VERIFICATION,
    PEER_SCHEMA,
    PEER_STORAGE_EXTERNAL,
    SCHEMA,
)
from atdata.schema import type_from_schema
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

DID = "did:plc:abcdefghijklmnopqrstuvwx"
CID = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
SCHEMA_URI = f"at://{DID}/{PEER_SCHEMA}/3lbqjhf3mzs2a"
ENTRY_URI = f"at://{DID}/{PEER_ENTRY}/3lbqjhf3mzs2b"
SHA = "ab" * 32
NEW_SHIM = "https://json-schema.alt.science/atdata-ndarray-bytes/1.1.0#/$defs/ndarray"

# The JSON Schema of one sample, as the 0.7 SDK describes a class with every field type.
PROPERTIES: dict[str, Any] = {
    "image": {"$ref": NDARRAY_SHIM_REF},
    "label": {"type": "string"},
    "score": {"type": "number"},
    "n": {"type": "integer"},
    "ok": {"type": "boolean"},
    "raw": {"type": "string", "format": "byte", "contentEncoding": "base64"},
    "tags": {"type": "array", "items": {"type": "string"}},
    "note": {"type": "string"},
}
REQUIRED = ["image", "label", "score", "n", "ok", "raw", "tags"]
OWN_FIELDS = [
    {"name": "image", "type": {"kind": "ndarray"}},
    {"name": "label", "type": {"kind": "str"}},
    {"name": "score", "type": {"kind": "float"}},
    {"name": "n", "type": {"kind": "int"}},
    {"name": "ok", "type": {"kind": "bool"}},
    {"name": "raw", "type": {"kind": "bytes"}},
    {"name": "tags", "type": {"kind": "list", "item": {"kind": "str"}}},
    {"name": "note", "type": {"kind": "str", "optional": True}},
]
# A sample of that class packed by the 0.7 SDK (Img(image=arange(6, float32).reshape(2, 3),
# label="cat", score=0.5, n=3, ok=True, raw=b"\0\1", tags=["a", "b"]), note left None).
PEER_PACKED = bytes.fromhex(
    "88a5696d616765c42d033c66340202000000000000000300000000000000000000000000803f00000040"
    "00004040000080400000a040a56c6162656ca3636174a573636f7265cb3fe0000000000000a16e03a26f"
    "6bc3a3726177c4020001a47461677392a161a162a46e6f7465c0"
)


def _record(schema: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "$type": PEER_SCHEMA,
        "name": "Img",
        "version": "1.0.0",
        "schemaType": "jsonSchema",
        "schema": schema,
        "createdAt": "2026-01-02T03:04:05.678901+00:00",
        **extra,
    }


def flattened() -> dict[str, Any]:
    """Layout 1: what the 0.5-0.7 SDK writes."""
    body = {
        "$type": f"{PEER_SCHEMA}#jsonSchemaFormat",
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": copy.deepcopy(PROPERTIES),
        "required": list(REQUIRED),
        "arrayFormatVersions": {"ndarrayBytes": "1.0.0"},
    }
    return _record(body, atdataSchemaVersion=1)


def enveloped() -> dict[str, Any]:
    """Layout 2: the lexicon repository since v0.4.0b1 (the document under `content`)."""
    doc = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": copy.deepcopy(PROPERTIES),
        "required": list(REQUIRED),
    }
    body = {"$type": f"{PEER_SCHEMA}#jsonSchemaFormat", "draft": "draft-07", "content": doc}
    return _record(body, **{"$atdataSchemaVersion": 1})


def nested() -> dict[str, Any]:
    """Layout 3: legacy, the document under `schemaBody`."""
    doc = {"type": "object", "properties": copy.deepcopy(PROPERTIES), "required": list(REQUIRED)}
    return _record({"$type": f"{PEER_SCHEMA}#jsonSchemaFormat", "schemaBody": doc})


LAYOUTS = [flattened, enveloped, nested]


def blob(cid: str = CID, size: int = 10240) -> dict[str, Any]:
    return {"$type": "blob", "ref": {"$link": cid}, "mimeType": "application/x-tar", "size": size}


def entry(storage: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "$type": PEER_ENTRY,
        "name": "digits",
        "schemaRef": SCHEMA_URI,
        "storage": storage,
        "createdAt": "2026-01-02T03:04:05.678901+00:00",
        **extra,
    }


STORAGES: dict[str, dict[str, Any]] = {
    "blobs": {
        "$type": "science.alt.dataset.storageBlobs",
        "blobs": [{"blob": blob(), "checksum": {"algorithm": "sha256", "digest": SHA}}],
    },
    "http": {
        "$type": "science.alt.dataset.storageHttp",
        "shards": [
            {
                "url": "https://data.example/a-000.tar",
                "checksum": {"algorithm": "none", "digest": ""},
            },
            {
                "url": "https://data.example/a-001.tar",
                "checksum": {"algorithm": "sha256", "digest": SHA},
            },
        ],
    },
    "s3": {
        "$type": "science.alt.dataset.storageS3",
        "bucket": "datasets",
        "endpoint": "http://127.0.0.1:9000",
        "shards": [{"key": "digits/a-000.tar", "checksum": {"algorithm": "sha256", "digest": SHA}}],
    },
    "s3-aws": {
        "$type": "science.alt.dataset.storageS3",
        "bucket": "datasets",
        "region": "us-east-1",
        "shards": [{"key": "digits/a-000.tar", "checksum": {"algorithm": "sha256", "digest": SHA}}],
    },
    "external": {
        "$type": "science.alt.dataset.storageExternal",
        "urls": ["https://data.example/b-{000..002}.tar", "https://data.example/c.tar"],
    },
}


# --- lexicons -------------------------------------------------------------------------------


def test_peer_lexicons_load_with_refs_across_files() -> None:
    lx = default_lexicons()
    for nsid in (PEER_SCHEMA, PEER_ENTRY, PEER_LENS, PEER_LABEL, PEER_LENS_VERIFICATION):
        assert lx.get_def(nsid)["type"] == "record"
    for name in [
        "resolveSchema",
        "resolveLabel",
        "resolveBlobs",
        "getEntry",
        "getEntries",
        "getSchema",
        "listEntries",
        "listSchemas",
        "listLenses",
        "searchLenses",
        "searchDatasets",
        "describeService",
        "getEntryStats",
    ]:
        assert lx.get_def(f"science.alt.dataset.{name}")["type"] == "query", name
    for member in ("storageHttp", "storageS3", "storageBlobs", "storageExternal"):
        assert lx.get_def(f"science.alt.dataset.{member}")["type"] == "object"


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda f: f.__name__)
def test_every_schema_layout_validates(layout: Any) -> None:
    default_lexicons().validate_record(PEER_SCHEMA, layout())


@pytest.mark.parametrize("kind", STORAGES)
def test_every_storage_kind_validates(kind: str) -> None:
    default_lexicons().validate_record(PEER_ENTRY, entry(copy.deepcopy(STORAGES[kind])))


def test_label_lens_and_verification_validate() -> None:
    lx = default_lexicons()
    lx.validate_record(PEER_LABEL, peer_label(name="digits", dataset_uri=ENTRY_URI, version="1"))
    code = {"repository": "https://github.com/a/b", "commit": "a" * 40, "path": "m:get"}
    lens = {
        "$type": PEER_LENS,
        "name": "crop",
        "sourceSchema": SCHEMA_URI,
        "targetSchema": SCHEMA_URI,
        "getterCode": code,
        "putterCode": {**code, "path": "m:put", "language": "python"},
        "createdAt": "2026-01-02T03:04:05Z",
    }
    lx.validate_record(PEER_LENS, lens)
    verification = {
        "lens": f"at://{DID}/{PEER_LENS}/3lbqjhf3mzs2c",
        "lensCommit": CID,
        "verificationMethod": "codeReview",
        "codeHash": {"algorithm": "sha256", "digest": SHA},
        "createdAt": "2026-01-02T03:04:05Z",
    }
    lx.validate_record(PEER_LENS_VERIFICATION, verification)
    with pytest.raises(LexiconError, match="getterCode.commit"):
        lx.validate_record(PEER_LENS, {**lens, "getterCode": {**code, "commit": 5}})


# --- schemas --------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda f: f.__name__)
def test_own_schema_reads_every_layout_and_decodes_a_peer_sample(layout: Any) -> None:
    own = own_schema(layout())
    assert own["fields"] == OWN_FIELDS
    assert (own["$type"], own["name"], own["version"]) == (SCHEMA, "Img", "1.0.0")
    default_lexicons().validate_record(SCHEMA, own)
    sample = type_from_schema(own).from_bytes(PEER_PACKED)
    np.testing.assert_array_equal(sample.image, np.arange(6, dtype=np.float32).reshape(2, 3))
    assert (sample.label, sample.score, sample.n, sample.ok) == ("cat", 0.5, 3, True)
    assert (sample.raw, sample.tags, sample.note) == (b"\0\1", ["a", "b"], None)


def test_ndarray_shims_of_both_url_generations_and_annotations() -> None:
    rec = flattened()
    props = rec["schema"]["properties"]
    props["image"] = {"$ref": NEW_SHIM, "dtype": "float32", "shape": [None, 28, 28]}
    props["mask"] = {
        "$ref": "https://alt.science/schemas/atdata-ndarray-bytes/1.0.0#/$defs/ndarray"
    }
    props["sparse"] = {
        "$ref": "https://alt.science/schemas/atdata-sparse-bytes/1.0.0#/$defs/sparse"
    }
    props["free"] = {"type": "object"}
    props["maybe"] = {"type": ["integer", "null"]}
    fields = {f["name"]: f["type"] for f in own_schema(rec)["fields"]}
    assert fields["image"] == {"kind": "ndarray", "dtype": "<f4", "shape": [-1, 28, 28]}
    assert fields["mask"] == {"kind": "ndarray", "optional": True}
    assert fields["sparse"] == {"kind": "bytes", "optional": True}
    assert fields["free"] == {"kind": "any", "optional": True}
    assert fields["maybe"] == {"kind": "int", "optional": True}


def _nested_arrays(depth: int) -> dict[str, Any]:
    prop: dict[str, Any] = {"type": "string"}
    for _ in range(depth):
        prop = {"type": "array", "items": prop}
    return prop


@pytest.mark.parametrize(
    ("change", "names"),
    [
        (lambda r: r["schema"]["properties"].update({"class": {"type": "string"}}), "'class'"),
        (lambda r: r["schema"]["properties"].update({"x": "string"}), "'x'"),
        (lambda r: r["schema"]["properties"]["image"].update({"dtype": "nope"}), "'image'"),
        (lambda r: r["schema"]["properties"]["tags"].update({"items": [{}]}), "'tags'"),
        (lambda r: r.update({"version": "one"}), "version"),
        (lambda r: r["schema"]["properties"].update({"a" * 129: {}}), "'aaaa"),
        (lambda r: r["schema"]["properties"]["image"].update(shape=[1] * 65), "'image'"),
        (lambda r: r["schema"]["properties"]["image"].update(shape=[2**53]), "'image'"),
        (lambda r: r["schema"]["properties"].update(deep=_nested_arrays(40)), "'deep'"),
        (lambda r: r["schema"].update({"$type": "com.example.avro"}), "com.example.avro"),
        (lambda r: r["schema"]["properties"].update({f"f{i}": {} for i in range(1025)}), "1033"),
        (lambda r: r["schema"].pop("properties"), "no JSON Schema"),
        (lambda r: r["schema"].update({"properties": {}}), "no fields"),
    ],
)
def test_unmappable_schemas_raise_schema_error_naming_the_field(change: Any, names: str) -> None:
    rec = flattened()
    change(rec)
    with pytest.raises(SchemaError, match=names):
        own_schema(rec)


def test_field_order_is_recovered_from_required_after_a_pds_reorders_properties() -> None:
    rec = flattened()
    props = rec["schema"]["properties"]
    # DAG-CBOR map order: shorter keys first, then bytewise
    rec["schema"]["properties"] = {k: props[k] for k in sorted(props, key=lambda k: (len(k), k))}
    assert list(rec["schema"]["properties"])[:3] == ["n", "ok", "raw"]
    assert own_schema(rec)["fields"] == OWN_FIELDS
    rec["schema"]["required"] = ["label", "image", "ghost"]  # ghost: not a property, left out
    names = [f["name"] for f in own_schema(rec)["fields"]]
    assert names == ["label", "image", "n", "ok", "raw", "note", "tags", "score"]


def test_peer_schema_is_the_flattened_layout_and_validates() -> None:
    rec = peer_schema({"name": "Img", "version": "1.0.0", "fields": OWN_FIELDS}, created_at="x")
    assert rec["atdataSchemaVersion"] == 1 and rec["schemaType"] == "jsonSchema"
    assert rec["schema"]["properties"] == PROPERTIES
    assert rec["schema"]["required"] == REQUIRED
    assert rec["schema"]["arrayFormatVersions"] == {"ndarrayBytes": "1.0.0"}
    rec["createdAt"] = "2026-01-02T03:04:05Z"
    default_lexicons().validate_record(PEER_SCHEMA, rec)
    for kind in ({"kind": "dict"}, {"kind": "any"}, {"kind": "sample", "sample": "X"}):
        with pytest.raises(SchemaError, match="'bad'"):
            peer_schema(
                {"name": "A", "version": "1.0.0", "fields": [{"name": "bad", "type": kind}]}
            )


_dtypes = st.sampled_from(["<f4", "<f8", "|u1", "<i8", "|b1", "<f2", "<c8"])
_shapes = st.lists(st.integers(-1, 64), max_size=4)


def _kinds(depth: int = 0) -> st.SearchStrategy[dict[str, Any]]:
    scalar = st.sampled_from(["str", "bytes", "int", "float", "bool"]).map(lambda k: {"kind": k})
    ndarray = st.builds(
        lambda d, s: {"kind": "ndarray", **d, **s},
        st.one_of(st.just({}), _dtypes.map(lambda d: {"dtype": d})),
        st.one_of(st.just({}), _shapes.map(lambda s: {"shape": s})),
    )
    options = [scalar, ndarray, st.just({"kind": "list"})]
    if depth < 2:
        options.append(_kinds(depth + 1).map(lambda t: {"kind": "list", "item": t}))
    return st.one_of(*options)


_field_names = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True).filter(
    lambda n: n not in {"if", "in", "is", "or", "as", "def", "for", "and", "not", "del"}
)


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    names=st.lists(_field_names, min_size=1, max_size=6, unique=True),
    data=st.data(),
    version=st.from_regex(r"(0|[1-9][0-9]?)\.(0|[1-9])\.(0|[1-9])(-rc\.[1-9])?", fullmatch=True),
)
def test_round_trip_own_schema_of_peer_schema(names: list[str], data: Any, version: str) -> None:
    fields = []
    for n in names:
        t = data.draw(_kinds())
        if data.draw(st.booleans()):
            t = {**t, "optional": True}
        fields.append({"name": n, "type": t})
    fields.sort(key=lambda f: f["type"].get("optional", False))  # the order the format keeps
    own = {
        "$type": SCHEMA,
        "name": "Sample",
        "version": version,
        "fields": fields,
        "createdAt": "2026-01-02T03:04:05Z",
    }
    peer = peer_schema(own)
    default_lexicons().validate_record(PEER_SCHEMA, peer)
    assert own_schema(peer) == own
    assert own_schema(json.loads(json.dumps(peer))) == own


# --- storage and entries --------------------------------------------------------------------


def test_entry_storage_of_every_kind() -> None:
    b = entry_storage(entry(STORAGES["blobs"]))
    assert b.kind == "blobs" and b.shards[0].blob_cid == CID and b.shards[0].sha256 == SHA
    h = entry_storage(entry(STORAGES["http"]))
    assert [s.url for s in h.shards] == [
        "https://data.example/a-000.tar",
        "https://data.example/a-001.tar",
    ]
    assert [(s.algorithm, s.digest) for s in h.shards] == [(None, None), ("sha256", SHA)]
    s3 = entry_storage(entry(STORAGES["s3"]))
    assert (s3.kind, s3.bucket, s3.endpoint, s3.region) == (
        "s3",
        "datasets",
        "http://127.0.0.1:9000",
        None,
    )
    assert s3.shards == (PeerShard(key="digits/a-000.tar", algorithm="sha256", digest=SHA),)
    aws = entry_storage(STORAGES["s3-aws"])  # the storage member alone works too
    assert (aws.endpoint, aws.region) == (None, "us-east-1")
    ext = entry_storage(entry(STORAGES["external"]))
    assert [s.url for s in ext.shards] == [
        "https://data.example/b-000.tar",
        "https://data.example/b-001.tar",
        "https://data.example/b-002.tar",
        "https://data.example/c.tar",
    ]
    assert all(s.sha256 is None for s in ext.shards)


@pytest.mark.parametrize("kind", ["blobs", "http", "s3", "external"])
def test_storage_kind_is_read_by_member_name_as_the_0_7_sdk_and_the_index_read_it(
    kind: str,
) -> None:
    """`nsid#main` names the same member (and the 0.7 SDK matches on the member's name): the
    SDK loads what the AppView indexes and shows (it refused these as unknown kinds)."""
    from atdata_appview.db.extract import peer_shards

    plain = STORAGES[kind]
    qualified = {**plain, "$type": plain["$type"] + "#main"}
    assert storage_kind(qualified) == storage_kind(plain) == kind
    assert entry_storage(qualified) == entry_storage(plain)
    assert [r.url for r in peer_shards(qualified)] == [r.url for r in peer_shards(plain)]
    assert storage_kind({"$type": "science.alt.dataset.storageFtp"}) is None
    assert storage_kind({}) is None


def test_bare_legacy_blobs_are_read() -> None:
    st_ = {"$type": "science.alt.dataset.storageBlobs", "blobs": [blob(), blob()]}
    assert [s.blob_cid for s in entry_storage(st_).shards] == [CID, CID]


@pytest.mark.parametrize(
    ("storage", "path"),
    [
        ({"$type": "science.alt.dataset.storageFtp"}, "storage.$type"),
        ({"$type": "science.alt.dataset.storageHttp", "shards": []}, "storage.shards"),
        ({"$type": "science.alt.dataset.storageHttp", "shards": [{"url": 3}]}, "shards[0].url"),
        ({"$type": "science.alt.dataset.storageS3", "shards": [{"key": "k"}]}, "storage.bucket"),
        ({"$type": "science.alt.dataset.storageBlobs", "blobs": [{"blob": {}}]}, "blobs[0].blob"),
        ({"$type": "science.alt.dataset.storageExternal", "urls": ["a", 1]}, "urls[1]"),
    ],
)
def test_malformed_storage_raises_lexicon_error_with_path(storage: Any, path: str) -> None:
    with pytest.raises(LexiconError, match=path.replace("[", r"\[").replace("$", r"\$")):
        entry_storage(entry(storage))


def test_own_dataset_view() -> None:
    rec = entry(STORAGES["http"], tags=["vision"], size={"samples": 100, "bytes": 2048})
    view = own_dataset(rec, DID)
    assert view["did"] == DID and view["schemaUri"] == SCHEMA_URI and view["tags"] == ["vision"]
    assert view["storage"] == {"kind": "http"}
    assert view["shards"] == [
        {"url": "https://data.example/a-000.tar"},
        {
            "url": "https://data.example/a-001.tar",
            "sha256": SHA,
            "checksum": {"algorithm": "sha256", "digest": SHA},
        },
    ]
    assert view["totals"] == {"shards": 2, "samples": 100, "bytes": 2048}
    b = own_dataset(entry(STORAGES["blobs"]), DID)["shards"][0]
    assert (b["cid"], b["blob"], b["sha256"]) == (CID, blob(), SHA)
    s3 = own_dataset(entry(STORAGES["s3"]), DID)
    assert s3["storage"] == {
        "kind": "s3",
        "bucket": "datasets",
        "endpoint": "http://127.0.0.1:9000",
    }
    assert s3["shards"][0]["key"] == "digits/a-000.tar"
    assert s3["shards"][0]["url"] == "s3://datasets/digits/a-000.tar"


@pytest.mark.parametrize("kind", ["blobs", "http", "s3", "s3-aws"])
def test_peer_storage_reverses_entry_storage(kind: str) -> None:
    assert peer_storage(entry_storage(STORAGES[kind])) == STORAGES[kind]


def test_peer_entry_and_label_validate() -> None:
    storage = PeerStorage(
        "blobs", (PeerShard(blob_cid=CID, blob=blob(), algorithm="sha256", digest=SHA),)
    )
    rec = peer_entry(
        name="digits",
        schema_uri=SCHEMA_URI,
        storage=storage,
        description="d",
        tags=["vision"],
        license="MIT",
        samples=10,
        size_bytes=10240,
        metadata={"split": "train"},
    )
    default_lexicons().validate_record(PEER_ENTRY, rec)
    assert rec["size"] == {"shards": 1, "samples": 10, "bytes": 10240}
    assert entry_storage(rec) == storage
    label = peer_label(name="digits", dataset_uri=ENTRY_URI, version="1.0.0")
    default_lexicons().validate_record(PEER_LABEL, label)


# --- against the real 0.7 SDK ---------------------------------------------------------------

_PEER_SCRIPT = r"""
import json, sys
import numpy as np
from typing import Optional
from numpy.typing import NDArray
import atdata
from atdata.atmosphere.schema import SchemaPublisher
from atdata._schema_codec import _schema_to_type

@atdata.packable
class Img:
    image: NDArray
    label: str
    score: float
    n: int
    ok: bool
    raw: bytes
    tags: list[str]
    note: Optional[str] = None

record = SchemaPublisher.__new__(SchemaPublisher)._build_schema_record(
    Img, name=None, version="1.0.0", description="d", metadata=None).to_record()
ours = json.loads(sys.argv[1])
Theirs = _schema_to_type(ours["record"])
got = Theirs.from_bytes(bytes.fromhex(ours["packed"]))
print(json.dumps({"record": record, "read": [got.label, got.n, got.image.tolist(), got.tags]}))
"""


@pytest.mark.peer
def test_schemas_cross_between_the_sdks(peer_python: str) -> None:
    own = {"name": "Img", "version": "1.0.0", "fields": OWN_FIELDS}
    ours_type = type_from_schema(own)
    sample = ours_type(
        image=np.eye(2, dtype=np.float32),
        label="dog",
        score=1.5,
        n=7,
        ok=False,
        raw=b"x",
        tags=[],
        note=None,
    )
    arg = json.dumps({"record": peer_schema(own), "packed": sample.packed.hex()})
    out = run_peer(peer_python, _PEER_SCRIPT, arg)
    # theirs -> ours: the record their SDK writes gives our fields, and validates
    default_lexicons().validate_record(PEER_SCHEMA, out["record"])
    assert own_schema(out["record"])["fields"] == OWN_FIELDS
    # ours -> theirs: their SDK builds a type from our record and decodes our sample
    assert out["read"] == ["dog", 7, [[1.0, 0.0], [0.0, 1.0]], []]


# --- validation tolerance: what the network writes beyond its lexicons ----------------------


def _metadata_forms(meta: dict[str, Any]) -> list[Any]:
    packed = msgpack.packb(meta)
    return [meta, packed, {"$bytes": base64.b64encode(packed).decode()}]


def test_entry_metadata_as_object_bytes_or_dollar_bytes() -> None:
    lx = default_lexicons()
    for form in _metadata_forms({"split": "train", "custom": {"n": 3}}):
        rec = entry(copy.deepcopy(STORAGES["http"]), metadata=form)
        before = copy.deepcopy(rec)
        lx.validate_record(PEER_ENTRY, rec)
        assert rec == before  # validated as is: nothing rewritten in the caller's record
    big = b"\x00" * 100_001
    for form, path in [
        (big, "metadata"),
        ({"$bytes": base64.b64encode(big).decode()}, "metadata"),
        ({"$bytes": "not base64!"}, r"metadata\.\$bytes"),
        ({"$bytes": 5}, r"metadata\.\$bytes"),
        ("a string", "metadata"),
        (["a", "list"], "metadata"),
        ({"ratio": 0.5}, r"metadata\.ratio"),
    ]:
        with pytest.raises(LexiconError, match=rf"{PEER_ENTRY}: {path}: "):
            lx.validate_record(PEER_ENTRY, entry(copy.deepcopy(STORAGES["http"]), metadata=form))


def test_both_schema_version_spellings_and_plus_zero_datetimes() -> None:
    lx = default_lexicons()
    for key in ("atdataSchemaVersion", "$atdataSchemaVersion"):
        rec = flattened()
        rec.pop("atdataSchemaVersion")
        rec[key] = 1
        rec["createdAt"] = "2026-01-02T03:04:05+00:00"
        lx.validate_record(PEER_SCHEMA, rec)
        rec[key] = 0
        with pytest.raises(LexiconError, match=rf"{re.escape(key)}: 0 is below the minimum"):
            lx.validate_record(PEER_SCHEMA, rec)


def test_name_at_version_record_keys_in_references() -> None:
    lx = default_lexicons()
    rec = entry(STORAGES["http"], schemaRef=f"at://{DID}/{PEER_SCHEMA}/Img@1.0.0")
    lx.validate_record(PEER_ENTRY, rec)
    assert rec["schemaRef"].endswith("Img@1.0.0")
    label = peer_label(name="d", dataset_uri=f"at://{DID}/{PEER_ENTRY}/digits@2.0.0")
    lx.validate_record(PEER_LABEL, label)
    for bad in ("Img 1.0.0", "not a uri", f"at://{DID}/{PEER_SCHEMA}/a@b/c"):
        with pytest.raises(LexiconError, match=r"schemaRef: "):
            lx.validate_record(PEER_ENTRY, {**rec, "schemaRef": bad})


def test_bare_legacy_blobs_validate() -> None:
    storage = {"$type": "science.alt.dataset.storageBlobs", "blobs": [blob(), blob()]}
    default_lexicons().validate_record(PEER_ENTRY, entry(storage))
    storage["blobs"][1] = {"$type": "blob", "ref": {"$link": CID}, "mimeType": "x/y"}
    with pytest.raises(LexiconError, match=r"storage\.blobs\[1\]\.blob\.size"):
        default_lexicons().validate_record(PEER_ENTRY, entry(storage))


def _drop(path: list[Any]) -> Any:
    def change(rec: dict[str, Any]) -> None:
        node: Any = rec
        for p in path[:-1]:
            node = node[p]
        del node[path[-1]]

    return change


@pytest.mark.parametrize(
    ("layout", "change", "path"),
    [
        (flattened, lambda r: r.update(version="1.0"), "version"),
        (flattened, lambda r: r.update(version="v1.0.0"), "version"),
        (flattened, _drop(["schema", "properties"]), "schema"),
        (flattened, lambda r: r["schema"].update(content={}), "schema"),
        (flattened, lambda r: r["schema"].update(properties=[]), r"schema\.properties"),
        (flattened, lambda r: r["schema"]["properties"].update(x=1), r"schema\.properties\.x"),
        (flattened, lambda r: r["schema"].update(required="image"), r"schema\.required"),
        (enveloped, lambda r: r["schema"].update(content=[]), r"schema\.content"),
        (enveloped, _drop(["schema", "content", "properties"]), r"schema\.content\.properties"),
        (
            enveloped,
            lambda r: r["schema"]["content"].update(required=[1]),
            r"schema\.content\.required",
        ),
        (
            nested,
            lambda r: r["schema"]["schemaBody"]["properties"].update(y="s"),
            r"schema\.schemaBody\.properties\.y",
        ),
        (flattened, lambda r: r.update(schemaType=3), "schemaType"),
        (flattened, _drop(["schemaType"]), "schemaType"),
    ],
)
def test_invalid_peer_schemas_name_the_path(layout: Any, change: Any, path: str) -> None:
    rec = layout()
    change(rec)
    with pytest.raises(LexiconError, match=rf"{PEER_SCHEMA}: {path}: "):
        default_lexicons().validate_record(PEER_SCHEMA, rec)


def test_another_schema_format_passes_the_open_union() -> None:
    rec = flattened()
    rec["schema"] = {"$type": "com.example.avro#schema", "avsc": "{}"}
    default_lexicons().validate_record(PEER_SCHEMA, rec)


# --- property tests of the parsers ----------------------------------------------------------

PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.text(max_size=8)
)
_json = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=12,
)
_maybe_float = st.one_of(_json, st.floats(allow_nan=False), st.binary(max_size=8))


@PROPERTY
@given(meta=st.dictionaries(st.text(max_size=8), _json, max_size=5))
def test_any_metadata_in_any_form_validates(meta: dict[str, Any]) -> None:
    for form in _metadata_forms(meta):
        default_lexicons().validate_record(PEER_ENTRY, entry(STORAGES["s3"], metadata=form))


_RECORDS = {PEER_ENTRY: lambda: entry(copy.deepcopy(STORAGES["blobs"])), PEER_SCHEMA: flattened}
_RECORDS |= {PEER_LABEL: lambda: peer_label(name="d", dataset_uri=ENTRY_URI)}


@PROPERTY
@given(data=st.data())
def test_validation_of_junk_raises_only_lexicon_errors(data: Any) -> None:
    nsid = data.draw(st.sampled_from(sorted(_RECORDS)))
    rec = _RECORDS[nsid]()
    for _ in range(data.draw(st.integers(1, 3))):
        node = rec
        while True:  # walk down to some object, then replace or add one of its keys
            keys = [k for k, v in node.items() if isinstance(v, dict)]
            if not keys or data.draw(st.booleans()):
                break
            node = node[data.draw(st.sampled_from(keys))]
        names = st.text(max_size=6)
        key = data.draw(st.one_of(st.sampled_from(sorted(node)), names) if node else names)
        node[key] = data.draw(_maybe_float)
    try:
        default_lexicons().validate_record(nsid, rec)
    except LexiconError as exc:
        assert exc.path is not None and str(exc).startswith(nsid)


_field_schema = st.recursive(
    st.one_of(
        st.fixed_dictionaries(
            {"type": st.sampled_from(["string", "integer", "number", "boolean", "null", "x"])},
            optional={"format": st.sampled_from(["byte", "date"])},
        ),
        st.builds(lambda r: {"$ref": r}, st.sampled_from([NDARRAY_SHIM_REF, NEW_SHIM, "#/a", ""])),
        st.fixed_dictionaries(
            {"$ref": st.just(NEW_SHIM)},
            optional={
                "dtype": st.sampled_from(["float32", "<i8", "uint8", "O", "nope", 3]),
                "shape": st.lists(st.one_of(st.none(), st.integers(-3, 9)), max_size=3),
            },
        ),
        _json,
    ),
    lambda inner: st.fixed_dictionaries(
        {"type": st.just("array")}, optional={"items": st.one_of(inner, st.lists(inner))}
    ),
    max_leaves=4,
)


@PROPERTY
@given(
    props=st.dictionaries(
        st.one_of(st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True), st.text(max_size=4)),
        _field_schema,
        max_size=5,
    ),
    required=st.one_of(st.none(), st.lists(st.text(max_size=4), max_size=3)),
    layout=st.sampled_from(LAYOUTS),
    name=st.text(max_size=12),
)
def test_own_schema_maps_or_raises_schema_error(
    props: dict[str, Any], required: Any, layout: Any, name: str
) -> None:
    rec = layout()
    body = rec["schema"].get("content") or rec["schema"].get("schemaBody") or rec["schema"]
    body["properties"] = props
    if required is None:
        body.pop("required", None)
    else:
        body["required"] = required
    rec["name"] = name
    try:
        own = own_schema(rec)
    except SchemaError:
        return
    default_lexicons().validate_record(SCHEMA, own)
    sample_type = type_from_schema(own)
    assert [f["name"] for f in own["fields"]] == list(props)
    assert sample_type.__atdata_name__ == own["name"]


_storage_junk = st.fixed_dictionaries(
    {
        "$type": st.sampled_from(
            [
                "science.alt.dataset.storageBlobs",
                "science.alt.dataset.storageHttp",
                "science.alt.dataset.storageS3",
                "science.alt.dataset.storageExternal",
                "x",
            ]
        )
    },
    optional={
        "blobs": st.one_of(_json, st.lists(st.one_of(st.just(blob()), _json), max_size=3)),
        "shards": st.one_of(
            _json,
            st.lists(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "url": st.one_of(st.just("https://a/b.tar"), _json),
                        "key": _json,
                        "checksum": st.one_of(
                            st.just({"algorithm": "sha256", "digest": SHA}),
                            st.just({"algorithm": "none", "digest": ""}),
                            _json,
                        ),
                    },
                ),
                max_size=3,
            ),
        ),
        "urls": st.lists(st.one_of(st.just("https://a/{0..2}.tar"), _json), max_size=3),
        "bucket": _json,
    },
)


@PROPERTY
@given(storage=_storage_junk)
def test_entry_storage_reads_or_raises_lexicon_error(storage: dict[str, Any]) -> None:
    try:
        got = entry_storage(entry(storage))
    except LexiconError as exc:
        assert exc.path and exc.path.startswith("storage")
        return
    assert got.shards
    for s in got.shards:
        assert sum(x is not None for x in (s.url, s.blob_cid, s.key)) == 1
        assert (s.algorithm is None) == (s.digest is None)


@PROPERTY
@given(
    prefix=st.from_regex(r"https://[a-z]{1,5}\.example/[a-z_-]{0,6}", fullmatch=True),
    lo=st.integers(0, 50),
    n=st.integers(1, 20),
    width=st.integers(1, 4),
)
def test_brace_ranges_expand_in_order(prefix: str, lo: int, n: int, width: int) -> None:
    hi = lo + n - 1
    spec = f"{prefix}{{{lo:0{width}d}..{hi:0{width}d}}}.tar"
    urls = [s.url for s in entry_storage({"$type": PEER_STORAGE_EXTERNAL, "urls": [spec]}).shards]
    assert len(urls) == n and urls[0].startswith(prefix) and urls[-1].endswith(f"{hi}.tar")
    assert urls == sorted(urls, key=lambda u: int(u[len(prefix) : -4]))


def test_records_nested_past_the_stack_are_checked_not_a_crash() -> None:
    meta: dict[str, Any] = {}
    node = meta
    for _ in range(5000):
        node["a"] = {}
        node = node["a"]
    default_lexicons().validate_record(PEER_ENTRY, entry(STORAGES["http"], metadata=meta))
    node["x"] = 0.5  # a float at the bottom is found and named
    with pytest.raises(LexiconError, match=r"metadata(\.a){5000}\.x: floats"):
        default_lexicons().validate_record(PEER_ENTRY, entry(STORAGES["http"], metadata=meta))
    rec = flattened()
    rec["schema"]["properties"]["deep"] = _nested_arrays(5000)
    default_lexicons().validate_record(PEER_SCHEMA, rec)  # indexable (its field names are)
    with pytest.raises(SchemaError, match="'deep'"):  # but no sample type is built from it
        own_schema(rec)
    fields: Any = {"kind": "str"}
    for _ in range(5000):
        fields = {"kind": "list", "item": fields}
    own = {"name": "A", "version": "1.0.0", "fields": [{"name": "x", "type": fields}]}
    own["createdAt"] = "2026-01-02T03:04:05Z"
    with pytest.raises(LexiconError, match="nested too deeply"):
        default_lexicons().validate_record(SCHEMA, own)


_hex64 = st.text("0123456789abcdef", min_size=64, max_size=64)
_checksums = st.one_of(st.tuples(st.none(), st.none()), st.tuples(st.just("sha256"), _hex64))
_cids = st.sampled_from([CID, "bafkreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm"])


def _shard(kind: str) -> st.SearchStrategy[PeerShard]:
    def make(where: str, checksum: tuple[str | None, str | None]) -> PeerShard:
        alg, digest = checksum
        if kind == "blobs":
            return PeerShard(blob_cid=where, blob=blob(where), algorithm=alg, digest=digest)
        if kind == "s3":
            return PeerShard(key=where, algorithm=alg, digest=digest)
        return PeerShard(url=where, algorithm=alg, digest=digest)

    where = {
        "blobs": _cids,
        "s3": st.from_regex(r"[a-z0-9/_.-]{1,30}", fullmatch=True),
        "http": st.from_regex(r"https://[a-z]{1,8}\.example/[a-z0-9_-]{1,12}\.tar", fullmatch=True),
    }[kind]
    return st.builds(make, where, _checksums)


@st.composite
def _storages(draw: Any) -> PeerStorage:
    kind = draw(st.sampled_from(["blobs", "s3", "http"]))
    shards = tuple(draw(st.lists(_shard(kind), min_size=1, max_size=4)))
    if kind != "s3":
        return PeerStorage(kind, shards)
    endpoint = draw(st.sampled_from([None, "http://127.0.0.1:9000"]))
    region = draw(st.sampled_from([None, "eu-west-1"]))
    return PeerStorage("s3", shards, bucket="bkt", endpoint=endpoint, region=region)


@PROPERTY
@given(
    storage=_storages(),
    name=st.text(min_size=1, max_size=40),
    tags=st.lists(st.text(max_size=20), max_size=5),
    samples=st.one_of(st.none(), st.integers(0, 2**40)),
)
def test_peer_entry_round_trips_through_entry_storage(
    storage: PeerStorage, name: str, tags: list[str], samples: int | None
) -> None:
    rec = peer_entry(name=name, schema_uri=SCHEMA_URI, storage=storage, tags=tags, samples=samples)
    default_lexicons().validate_record(PEER_ENTRY, rec)
    assert entry_storage(json.loads(json.dumps(rec))) == storage
    view = own_dataset(rec, DID)
    assert view["totals"]["shards"] == len(storage.shards)
    assert [s.get("sha256") for s in view["shards"]] == [s.sha256 for s in storage.shards]


@pytest.mark.parametrize(
    "urls",
    [
        ["https://h.example/s-{0..999999999}.tar"],  # one huge range: refused before it is built
        [
            "https://h.example/{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}"
            "{a,b}{a,b}{a,b}{a,b}.tar"
        ],  # 2**17 through products of small lists
        ["https://h.example/s-{0..60000}.tar", "https://h.example/t-{0..60000}.tar"],  # in total
    ],
)
def test_brace_notation_from_the_network_is_bounded(urls: list[str]) -> None:
    with pytest.raises(LexiconError, match=r"storage\.urls\[\d\]: .*at most 100000 URLs"):
        entry_storage({"$type": PEER_STORAGE_EXTERNAL, "urls": urls})
