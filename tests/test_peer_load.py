"""Loading the peer network's records (`science.alt.dataset.*`) with our SDK, on the devnet.

Records are written as the atdata 0.7 SDK writes them (schemas in each of the three body
forms, entries with each storage kind, labels, lenses), with our own atproto client, then
loaded by URI, by label and by `@handle/name`; batches must equal what was written. The 0.7
SDK itself publishing is tested end to end in tests/test_peer_network*.py.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import atdata
import numpy as np
import pytest
from _fixtures.local_http import file_server, serving
from _fixtures.newcomer import RunningAppView
from _fixtures.peer_records import SCHEMA_FORMS, schema_record
from _fixtures.services import login
from atdata import (
    AppViewClient,
    AppViewError,
    AtdataWarning,
    LensError,
    ResolutionError,
    SchemaError,
    ShardIntegrityError,
    UnsafeURLError,
)
from atdata.atmosphere import Client, ShardCache, load_dataset
from atdata.records import (
    PEER_ENTRY,
    PEER_LABEL,
    PEER_LENS,
    PEER_SCHEMA,
    PEER_STORAGE_BLOBS,
    PEER_STORAGE_EXTERNAL,
    PEER_STORAGE_HTTP,
    PEER_STORAGE_S3,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

SHIM_OLD = "https://alt.science/schemas/atdata-ndarray-bytes/1.0.0#/$defs/ndarray"
SHIM_NEW = "https://json-schema.alt.science/atdata-ndarray-bytes/1.1.0#/$defs/ndarray"
N_PER_SHARD = 5


@atdata.packable(name="PeerScene", version="1.0.0")
class Scene:
    image: NDArray[np.uint8]
    label: str
    score: float


@atdata.packable(name="PeerSceneWrong", version="1.0.0")
class WrongScene:
    image: NDArray[np.uint8]
    label: int
    score: float


def scenes(n: int) -> list[Scene]:
    rng = np.random.default_rng(11)
    return [
        Scene(
            image=rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8),
            label=f"scene-{i}",
            score=i / 7,
        )
        for i in range(n)
    ]


def when(minutes: int) -> str:
    """A datetime the way the 0.7 SDK writes it (`+00:00`, not `Z`), `minutes` after a base."""
    base = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    return (base + dt.timedelta(minutes=minutes)).isoformat()


# -- the three schema-body forms (fixtures: tests/_fixtures/peer_records.py) --------------


def schema_value(form: str) -> dict[str, Any]:
    """A `science.alt.dataset.schema` value for `Scene` in body form `form` (the envelope
    with the newer shim URL: both generations must be recognised)."""
    fields = {
        "image": {"$ref": SHIM_NEW if form == "envelope" else SHIM_OLD},
        "label": {"type": "string"},
        "score": {"type": "number"},
    }
    value = schema_record("PeerScene", form=form, fields=fields, created=when(0))
    value.pop("$type")
    return value


# -- the world: an author with shards, blobs and schemas ----------------------------------


def put(client: Client, collection: str, value: dict[str, Any]) -> str:
    """Write a record as the 0.7 SDK does: createRecord with no lexicon validation."""
    from atproto import models

    out = client.atproto.com.atproto.repo.create_record(
        models.ComAtprotoRepoCreateRecord.Data(
            repo=client.did,
            collection=collection,
            record={"$type": collection, **value},
            validate=False,
        )
    )
    return str(out.uri)


@dataclass
class World:
    alice: Client
    samples: list[Scene]
    paths: list[Path]
    shas: list[str]
    blobs: list[dict[str, Any]]
    schemas: dict[str, str]  # form -> at:// URI

    def entry(self, storage: dict[str, Any], name: str = "scenes", **extra: Any) -> str:
        value = {
            "name": name,
            "schemaRef": self.schemas["flat"],
            "storage": storage,
            "createdAt": when(1),
            "size": {"samples": len(self.samples), "shards": len(self.paths)},
            **extra,
        }
        return put(self.alice, PEER_ENTRY, value)

    def blob_storage(self, checksums: list[dict[str, str]] | None = None) -> dict[str, Any]:
        sums = checksums or [{"algorithm": "sha256", "digest": s} for s in self.shas]
        return {
            "$type": PEER_STORAGE_BLOBS,
            "blobs": [{"blob": b, "checksum": c} for b, c in zip(self.blobs, sums, strict=True)],
        }

    def label(self, name: str, entry: str, version: str | None, minutes: int) -> str:
        value: dict[str, Any] = {"name": name, "datasetUri": entry, "createdAt": when(minutes)}
        if version is not None:
            value["version"] = version
        return put(self.alice, PEER_LABEL, value)


@pytest.fixture(scope="module")
def world(make_account: Any, tmp_path_factory: pytest.TempPathFactory) -> World:
    alice = login(make_account(0))
    root = tmp_path_factory.mktemp("peer-load")
    samples = scenes(2 * N_PER_SHARD)
    infos = atdata.write_samples(samples, str(root / "www" / "s-%06d.tar"), maxcount=N_PER_SHARD)
    paths = [Path(i.path) for i in infos]
    blobs = [alice.upload_blob(p.read_bytes()) for p in paths]
    schemas = {form: put(alice, PEER_SCHEMA, schema_value(form)) for form in SCHEMA_FORMS}
    return World(alice, samples, paths, [i.sha256 for i in infos], blobs, schemas)


def same(got: list[Any], want: list[Scene]) -> bool:
    return len(got) == len(want) and all(
        np.array_equal(g.image, w.image) and g.label == w.label and g.score == w.score
        for g, w in zip(got, want, strict=True)
    )


@pytest.fixture
def no_warnings() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("error", AtdataWarning)
        yield


# -- entries by URI: schema forms and storage kinds ---------------------------------------


@pytest.mark.parametrize("form", SCHEMA_FORMS)
def test_a_blob_entry_loads_with_its_type_built_from_each_schema_form(
    world: World, form: str, no_warnings: None
) -> None:
    value = {
        "name": f"scenes-{form}",
        "schemaRef": world.schemas[form],
        "storage": world.blob_storage(),
        "createdAt": when(1),
    }
    uri = put(world.alice, PEER_ENTRY, value)
    ds = load_dataset(uri)
    assert ds.uri == uri and ds.cid is not None
    assert sorted(f.name for f in atdata.sample_fields(ds.sample_type)) == [
        "image",
        "label",
        "score",
    ]
    assert same(list(ds.ordered()), world.samples)
    typed = load_dataset(uri, sample_type=Scene)  # our own class matches by names and kinds
    assert typed.sample_type is Scene and same(list(typed.ordered()), world.samples)


def test_blob_checksums_the_blob_cid_verifies_them_even_when_none(world: World) -> None:
    none = [{"algorithm": "none", "digest": ""} for _ in world.shas]
    with warnings.catch_warnings():
        warnings.simplefilter("error", AtdataWarning)  # the blob's CID is its sha256
        ds = load_dataset(world.entry(world.blob_storage(none)))
    assert same(list(ds.ordered()), world.samples)
    wrong_sums = [{"algorithm": "sha256", "digest": "0" * 64}] + [
        {"algorithm": "sha256", "digest": s} for s in world.shas[1:]
    ]
    with pytest.raises(ResolutionError, match="shard 0 of .*CID and the record's sha256 disagree"):
        load_dataset(world.entry(world.blob_storage(wrong_sums)))


def test_http_entry_verifies_sha256_and_a_wrong_one_names_the_shard(
    world: World, tmp_path: Path, no_warnings: None
) -> None:
    with file_server(world.paths[0].parent) as base:
        urls = [f"{base}/{p.name}" for p in world.paths]
        good = world.entry(
            {
                "$type": PEER_STORAGE_HTTP,
                "shards": [
                    {"url": u, "checksum": {"algorithm": "sha256", "digest": s}}
                    for u, s in zip(urls, world.shas, strict=True)
                ],
            }
        )
        cache = ShardCache(tmp_path / "cache", max_bytes=1 << 24)
        assert same(list(load_dataset(good, cache=cache).ordered()), world.samples)
        assert len(cache.entries()) == 2  # verified shards are cached as ours are
        bad = world.entry(
            {
                "$type": PEER_STORAGE_HTTP,
                "shards": [
                    {"url": urls[0], "checksum": {"algorithm": "sha256", "digest": world.shas[0]}},
                    {"url": urls[1], "checksum": {"algorithm": "sha256", "digest": "ab" * 32}},
                ],
            }
        )
        with pytest.raises(ShardIntegrityError, match=world.paths[1].name):
            list(load_dataset(bad).ordered())


def test_a_none_checksum_loads_with_one_warning_naming_the_shards(world: World) -> None:
    with file_server(world.paths[0].parent) as base:
        urls = [f"{base}/{p.name}" for p in world.paths]
        uri = world.entry(
            {
                "$type": PEER_STORAGE_HTTP,
                "shards": [
                    {"url": u, "checksum": {"algorithm": "none", "digest": ""}} for u in urls
                ],
            }
        )
        with pytest.warns(AtdataWarning) as caught:
            ds = load_dataset(uri)
            got = list(ds.ordered())
        assert same(got, world.samples)
    said = [str(w.message) for w in caught if issubclass(w.category, AtdataWarning)]
    assert len(said) == 1, said
    assert "2 shard(s) are unverified" in said[0]
    assert all(u in said[0] for u in urls) and "checksum 'none'" in said[0]


def test_external_urls_in_brace_notation(world: World) -> None:
    with file_server(world.paths[0].parent) as base:
        pattern = f"{base}/s-{{000000..000001}}.tar"
        uri = world.entry({"$type": PEER_STORAGE_EXTERNAL, "urls": [pattern]})
        with pytest.warns(AtdataWarning, match="2 shard.*unverified.*none given"):
            ds = load_dataset(uri)
        assert len(ds.shards) == 2
        assert same(list(ds.ordered()), world.samples)


def test_s3_entry_with_endpoint_and_without_it(
    world: World, s3_server: Any, s3_bucket: str, monkeypatch: pytest.MonkeyPatch, no_warnings: None
) -> None:
    s3 = s3_server.client()
    keys = [f"peer/{p.name}" for p in world.paths]
    for key, path in zip(keys, world.paths, strict=True):
        s3.put_object(Bucket=s3_bucket, Key=key, Body=path.read_bytes())
    shards = [
        {"key": k, "checksum": {"algorithm": "sha256", "digest": s}}
        for k, s in zip(keys, world.shas, strict=True)
    ]
    with_endpoint = world.entry(
        {
            "$type": PEER_STORAGE_S3,
            "bucket": s3_bucket,
            "endpoint": s3_server.endpoint_url,
            "region": "us-east-1",
            "shards": shards,
        }
    )
    ds = load_dataset(
        with_endpoint,
        trusted_s3_endpoints=[s3_server.endpoint_url],
        s3_client_kwargs=s3_server.client_kwargs(),
    )
    assert same(list(ds.ordered()), world.samples)
    # no endpoint: AWS itself, i.e. wherever the user's own AWS configuration points
    no_endpoint = world.entry({"$type": PEER_STORAGE_S3, "bucket": s3_bucket, "shards": shards})
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    monkeypatch.setenv("AWS_DEFAULT_REGION", s3_server.region)
    assert same(list(load_dataset(no_endpoint).ordered()), world.samples)


# -- labels and @handle/name --------------------------------------------------------------


def test_a_label_uri_resolves_to_its_entry(world: World, no_warnings: None) -> None:
    entry = world.entry(world.blob_storage(), name="labelled")
    label = world.label("labelled", entry, "1.0.0", minutes=5)
    ds = load_dataset(label)
    assert (ds.uri, ds.version) == (entry, "1.0.0")
    assert same(list(ds.ordered()), world.samples)
    not_entry = world.label("broken", world.schemas["flat"], None, minutes=5)
    with pytest.raises(ResolutionError, match=f"not a {PEER_ENTRY}"):
        load_dataset(not_entry)


def test_handle_name_falls_back_to_the_newest_label(
    world: World, monkeypatch: pytest.MonkeyPatch, no_warnings: None
) -> None:
    monkeypatch.setenv("ATDATA_PDS", world.alice.pds_url)  # resolves handles, no AppView
    monkeypatch.delenv("ATDATA_APPVIEW", raising=False)
    name = f"labels-{secrets.token_hex(3)}"
    first = world.entry(world.blob_storage(), name=name)
    second = world.entry(world.blob_storage(), name=name)
    # the newer label is written first; `Z` and `+00:00` forms compare as times
    world.label(name, second, "2.0.0", minutes=30)
    world.label(name, first, "1.0.0", minutes=10)
    handle = world.alice.handle
    newest = load_dataset(f"@{handle}/{name}")
    assert (newest.uri, newest.version) == (second, "2.0.0")
    older = load_dataset(f"@{handle}/{name}@1.0.0")
    assert (older.uri, older.version) == (first, "1.0.0")
    assert same(list(older.ordered()), world.samples)
    with pytest.raises(ResolutionError, match=f"no version 3.0.0.*nor is there a {PEER_LABEL}"):
        load_dataset(f"@{handle}/{name}@3.0.0")


def test_our_dataset_wins_over_a_label_of_the_same_name_and_says_so(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ATDATA_PDS", world.alice.pds_url)
    monkeypatch.delenv("ATDATA_APPVIEW", raising=False)
    name = f"both-{secrets.token_hex(3)}"
    infos = atdata.write_samples(world.samples[:3], str(world.paths[0].parent / f"{name}-%02d.tar"))
    ours = world.alice.publish_dataset(infos, name=name, schema=Scene, progress=False)
    label = world.label(name, world.entry(world.blob_storage(), name=name), "1.0.0", minutes=60)
    with pytest.warns(AtdataWarning, match="names both") as caught:
        ds = load_dataset(f"@{world.alice.handle}/{name}")
    assert ds.uri == str(ours) and len(list(ds.ordered())) == 3
    assert label in str(caught[0].message)


class _ScriptedAppView(BaseHTTPRequestHandler):
    """An AppView whose searchDatasets lists `server.datasets` and whose resolveLabel answers
    `server.label` (a fault a real AppView gives only when stale or altered)."""

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        srv: Any = self.server
        if url.path.endswith("io.atdata.searchDatasets"):
            self._answer(200, {"datasets": srv.datasets})
        elif url.path.endswith("science.alt.dataset.resolveLabel"):
            srv.asked.append(query)
            self._answer(200, srv.label)
        else:
            self._answer(404, {"error": "MethodNotImplemented"})

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def test_handle_name_through_an_appview_is_checked_on_the_pds(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ATDATA_PDS", world.alice.pds_url)
    name = f"viaav-{secrets.token_hex(3)}"
    entry = world.entry(world.blob_storage(), name=name)
    label = world.label(name, entry, "1.0.0", minutes=3)
    other = world.label(f"{name}-other", entry, "1.0.0", minutes=4)
    rec = world.alice.get_record(label)
    # an AppView indexing both families lists the peer entry in io.atdata.searchDatasets too:
    # that is not an io.atdata dataset of this name
    peer_row = {"uri": entry, "did": world.alice.did, "name": name, "createdAt": when(1)}
    with serving(
        _ScriptedAppView,
        asked=[],
        datasets=[peer_row],
        label={"uri": entry, "cid": rec.cid, "labelUri": label, "label": rec.value},
    ) as av:
        with warnings.catch_warnings():
            warnings.simplefilter("error", AtdataWarning)  # no "names both" warning
            ds = load_dataset(f"@{world.alice.handle}/{name}", appview=av.url)
        assert (ds.uri, ds.version) == (entry, "1.0.0")
        assert av.asked and av.asked[0]["name"] == [name]  # the AppView was asked
        stale = world.alice.get_record(other)
        av.label = {"uri": entry, "cid": stale.cid, "labelUri": other, "label": stale.value}
        with pytest.raises(ResolutionError, match="stale or altered"):
            load_dataset(f"@{world.alice.handle}/{name}", appview=av.url)


def _answered(appview_url: str, nsid: str) -> float:
    """How many 200 answers the AppView's /metrics counts for the XRPC method `nsid`."""
    import httpx

    text = httpx.get(f"{appview_url}/metrics", timeout=10).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("atdata_appview_http_requests_total{")
        and f'route="/xrpc/{nsid}"' in line
        and 'status="200"' in line
    )


def test_handle_name_through_our_appview_uses_its_resolve_label(
    world: World, appview: RunningAppView, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ATDATA_PDS", raising=False)  # the AppView path needs no handle lookup
    name = f"ourav-{secrets.token_hex(3)}"
    first = world.entry(world.blob_storage(), name=name)
    second = world.entry(world.blob_storage(), name=name)
    world.label(name, first, "1.0.0", minutes=10)
    newest = world.label(name, second, "1.1.0", minutes=20)
    nsid = f"{PEER_LABEL.rpartition('.')[0]}.resolveLabel"
    with AppViewClient(appview.url) as av:  # wait until the AppView has indexed both labels
        deadline = time.monotonic() + 30
        last: Exception | None = None
        while True:
            try:
                if av.query(nsid, handle=world.alice.handle, name=name)["labelUri"] == newest:
                    break
            except (AppViewError, ResolutionError) as e:
                last = e
            assert time.monotonic() < deadline, f"the AppView did not index the labels: {last}"
            time.sleep(0.2)
    before = _answered(appview.url, nsid)
    ds = load_dataset(f"@{world.alice.handle}/{name}", appview=appview.url)
    assert (ds.uri, ds.version) == (second, "1.1.0")
    older = load_dataset(f"@{world.alice.handle}/{name}@1.0.0", appview=appview.url)
    assert (older.uri, older.version) == (first, "1.0.0")
    assert _answered(appview.url, nsid) == before + 2  # the AppView answered both


# -- sample types and lenses ---------------------------------------------------------------


def test_a_schema_ref_by_name_at_version_is_resolved_by_name_and_version(world: World) -> None:
    name = f"Named{secrets.token_hex(3)}"
    value = {**schema_value("flat"), "name": name, "version": "2.0.0"}
    put(world.alice, PEER_SCHEMA, {**value, "version": "1.0.0", "createdAt": when(9)})
    put(world.alice, PEER_SCHEMA, value)
    entry = put(
        world.alice,
        PEER_ENTRY,
        {
            "name": "by-name",
            "schemaRef": f"at://{world.alice.did}/{PEER_SCHEMA}/{name}@2.0.0",
            "storage": world.blob_storage(),
            "createdAt": when(1),
        },
    )
    ds = load_dataset(entry)
    assert ds.sample_type.__atdata_version__ == "2.0.0"
    assert same(list(ds.ordered()), world.samples)


def test_a_sample_type_that_does_not_match_the_schema_is_refused(world: World) -> None:
    uri = world.entry(world.blob_storage())
    with pytest.raises(SchemaError, match=r"field 'label': int here, str in the schema"):
        load_dataset(uri, sample_type=WrongScene)


def put_lens_module(
    world: World,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    source: str,
    *,
    name: str,
    getter: str,
    putter: str | None = None,
    target: str = "flat",
) -> tuple[str, str]:
    """A lens module of `source` importable under a fresh name, and alice's peer lens record
    naming its `getter`/`putter` (flat schema -> `target`): (module name, record URI)."""
    module = f"peerlens_{secrets.token_hex(4)}"
    (tmp_path / f"{module}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    code = {"repository": "https://example.com/lenses", "commit": "0" * 40}
    uri = put(
        world.alice,
        PEER_LENS,
        {
            "name": name,
            "sourceSchema": world.schemas["flat"],
            "targetSchema": world.schemas[target],
            "getterCode": {**code, "path": f"{module}:{getter}"},
            "putterCode": {**code, "path": f"{module}:{putter or getter}"},
            "createdAt": when(2),
        },
    )
    return module, uri


def test_a_peer_lens_is_imported_only_with_trust_unpinned(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module, uri = put_lens_module(
        world,
        tmp_path,
        monkeypatch,
        "def get(s):\n    return s.upper()\n\n\ndef put(view, s):\n    return view.lower()\n",
        name="shout",
        getter="get",
        putter="put",
        target="envelope",
    )
    for trust in (False, True):
        with pytest.raises(LensError, match='pins no hash.*trust="unpinned"'):
            world.alice.load_lens(uri, trust=trust)
    assert module not in sys.modules  # nothing ran
    with pytest.warns(AtdataWarning, match="does not pin by a hash"):
        lens = world.alice.load_lens(uri, trust="unpinned")
    assert lens.get("abc") == "ABC" and lens.put("XY", "ab") == "xy"
    assert lens not in list(atdata.lens.registry)  # no class annotations: not found by type
    sys.modules.pop(module, None)


LENS_MODULE = """
import atdata
import numpy as np
from numpy.typing import NDArray


@atdata.packable(name="PeerLensScene", version="1.0.0")
class Scene:
    image: NDArray[np.uint8]
    label: str
    score: float


@atdata.packable(name="PeerLensCaption", version="1.0.0")
class Caption:
    text: str


def caption(s: Scene) -> Caption:
    return Caption(text=s.label.upper())
"""


def test_an_annotated_peer_lens_is_registered_for_as_type_and_sample_type(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 0.7-style lens module (plain function between packable classes, as the network's
    code references name them): once loaded, datasets find it by type like our lenses."""
    module, uri = put_lens_module(
        world, tmp_path, monkeypatch, LENS_MODULE, name="caption", getter="caption"
    )
    entry = world.entry(world.blob_storage())
    with pytest.warns(AtdataWarning, match="does not pin by a hash"):
        lens = world.alice.load_lens(uri, trust="unpinned")
    mod = sys.modules[module]
    try:
        assert (lens.source, lens.view) == (mod.Scene, mod.Caption)
        want = [s.label.upper() for s in world.samples]
        viewed = load_dataset(entry, sample_type=mod.Scene).as_type(mod.Caption)
        assert [c.text for c in viewed.ordered()] == want
        direct = load_dataset(entry, sample_type=mod.Caption)  # read as Scene, viewed
        assert direct.sample_type is mod.Caption
        assert [c.text for c in direct.ordered()] == want
    finally:
        atdata.lens.registry.unregister(lens)
        sys.modules.pop(module, None)


# -- without a network ---------------------------------------------------------------------


def test_shard_digest_and_kind_rules() -> None:
    from atdata.atmosphere.peer_resolve import _sha256, peer_differences
    from atdata.peer import PeerShard

    sha = hashlib.sha256(b"x").hexdigest()
    unverified: list[str] = []
    assert (
        _sha256(PeerShard(url="u", algorithm="sha256", digest=sha.upper()), "u", "s", unverified)
        == sha
    )
    assert _sha256(PeerShard(url="a"), "a", "s", unverified) is None
    assert (
        _sha256(PeerShard(url="b", algorithm="blake3", digest="ab"), "b", "s", unverified) is None
    )
    assert unverified == [
        "a (checksum 'none' or none given)",
        "b (blake3 checksum, which this SDK does not compute)",
    ]
    with pytest.raises(ResolutionError, match="not 64 hex digits"):
        _sha256(PeerShard(url="c", algorithm="sha256", digest="xyz"), "c", "s", unverified)
    own = {
        "fields": [
            {"name": "score", "type": {"kind": "float"}},
            {"name": "image", "type": {"kind": "ndarray"}},
            {"name": "label", "type": {"kind": "str", "optional": True}},
        ]
    }
    assert peer_differences(Scene, own) == []  # any order, any dtype for the shim
    assert peer_differences(WrongScene, own) == ["field 'label': int here, str in the schema"]


_ZONES = [
    dt.UTC,
    dt.timezone(dt.timedelta(hours=2)),
    dt.timezone(dt.timedelta(hours=-7, minutes=-30)),
]


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2100, 1, 1)),
            st.sampled_from(_ZONES),
            st.booleans(),
        ),
        min_size=1,
        max_size=8,
        unique_by=lambda t: t[0],
    )
)
def test_the_newest_label_is_the_latest_instant_whatever_the_datetime_spelling(
    times: list[tuple[dt.datetime, dt.tzinfo, bool]],
) -> None:
    from atdata.atmosphere.peer_resolve import newest_label
    from atdata.records import Record

    labels = []
    for i, (naive, zone, zulu) in enumerate(times):
        instant = naive.replace(tzinfo=dt.UTC)
        text = instant.astimezone(zone).isoformat()
        if zulu and zone is dt.UTC:
            text = text.replace("+00:00", "Z")
        labels.append(
            Record(f"at://did:plc:x/{PEER_LABEL}/{i}", "c", {"name": "n", "createdAt": text})
        )
    newest = max(range(len(times)), key=lambda i: times[i][0])
    assert newest_label(labels, "n", None) is labels[newest]
    assert newest_label(labels, "other", None) is None


def test_the_cli_loads_gets_and_exports_a_peer_entry_by_uri_and_label_name(world: World) -> None:
    import subprocess

    from _fixtures.newcomer import subprocess_env

    name = f"cli-{secrets.token_hex(3)}"
    uri = world.entry(world.blob_storage(), name=name)
    world.label(name, uri, "1.0.0", minutes=1)

    def cli(*args: str) -> Any:
        env = subprocess_env(ATDATA_PDS=world.alice.pds_url)  # resolves the handle
        env.pop("ATDATA_APPVIEW", None)
        got = subprocess.run(
            [sys.executable, "-m", "atdata.cli", *args],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
        assert got.returncode == 0, got.stderr
        return json.loads(got.stdout)

    loaded = cli("load", uri, "--head", "2", "--json")
    assert loaded["uri"] == uri and loaded["samples"] == len(world.samples)
    assert len(loaded["head"]) == 2
    fetched = cli("get", f"@{world.alice.handle}/{name}@1.0.0", "--json")
    assert fetched["uri"] == uri and fetched["value"]["$type"] == PEER_ENTRY
    # Croissant of the entry a label names: the label's version, the blobs' URLs and sha256
    doc = cli("export", "croissant", f"@{world.alice.handle}/{name}@1.0.0")
    assert (doc["identifier"], doc["name"], doc["version"]) == (uri, name, "1.0.0")
    files = [f for f in doc["distribution"] if f["@type"] == "cr:FileObject"]
    assert [f["sha256"] for f in files] == world.shas
    assert all("com.atproto.sync.getBlob" in f["contentUrl"] for f in files)
    assert [f["contentSize"] for f in files] == [f"{b['size']} B" for b in world.blobs]
    fields = next(r for r in doc["recordSet"] if r["@id"] == "samples")["field"]
    assert [f["name"] for f in fields] == ["image", "label", "score"]
    assert cli("export", "croissant", uri)["identifier"] == uri


def test_an_untrusted_s3_endpoint_in_a_peer_entry_gets_no_credentials() -> None:
    from atdata._sources import S3Shard
    from atdata.atmosphere.peer_resolve import entry_shard_sources
    from atdata.records import Record
    from botocore import UNSIGNED

    value = {
        "storage": {
            "$type": PEER_STORAGE_S3,
            "bucket": "b",
            "endpoint": "https://93.184.216.34:9000",
            "shards": [{"key": "k.tar", "checksum": {"algorithm": "none", "digest": ""}}],
        }
    }
    keys = {"aws_access_key_id": "mine", "aws_secret_access_key": "secret"}
    options = {
        "did": "did:plc:x",
        "pds": "https://pds.example",
        "allow_private": False,
        "s3_client_kwargs": keys,
        "timeout": 5.0,
    }
    entry = Record(f"at://did:plc:x/{PEER_ENTRY}/1", "c", value)
    (shard,), unverified = entry_shard_sources(entry, trusted_endpoints=(), **options)
    assert isinstance(shard, S3Shard)
    kwargs = shard.client_kwargs
    assert "aws_access_key_id" not in kwargs and kwargs["config"].signature_version is UNSIGNED
    assert unverified == ["s3://b/k.tar (checksum 'none' or none given)"]
    trusted = ["https://93.184.216.34:9000"]
    (shard,), _ = entry_shard_sources(entry, trusted_endpoints=trusted, **options)
    assert isinstance(shard, S3Shard) and shard.client_kwargs["aws_access_key_id"] == "mine"


@pytest.mark.parametrize(
    "storage",
    [
        {"$type": PEER_STORAGE_HTTP, "shards": [{"url": "http://127.0.0.1:8/a.tar"}]},
        {"$type": PEER_STORAGE_EXTERNAL, "urls": ["https://10.0.0.{1..2}/a.tar"]},
        {
            "$type": PEER_STORAGE_S3,
            "bucket": "b",
            "endpoint": "http://169.254.169.254",
            "shards": [{"key": "k.tar"}],
        },
    ],
    ids=["http", "external", "s3-endpoint"],
)
def test_peer_shards_pass_the_network_guard(storage: dict[str, Any]) -> None:
    """An entry from the network naming a private, loopback or link-local address is refused
    before any request, as our records are (unless ATDATA_ALLOW_PRIVATE_NETWORK)."""
    from atdata.atmosphere.peer_resolve import entry_shard_sources
    from atdata.records import Record

    entry = Record(f"at://did:plc:x/{PEER_ENTRY}/1", "c", {"storage": storage})
    with pytest.raises(UnsafeURLError, match="refusing"):
        entry_shard_sources(
            entry,
            did="did:plc:x",
            pds="https://pds.example",
            allow_private=False,
            trusted_endpoints=(),
            s3_client_kwargs=None,
            timeout=5.0,
        )


@settings(max_examples=150, deadline=None)
@given(
    link=st.one_of(
        st.text(max_size=70).map(lambda t: "bafkrei" + t),
        st.from_regex(r"bafkrei[a-z2-7]{0,60}", fullmatch=True),
    ),
    checksum=st.one_of(
        st.none(),
        st.fixed_dictionaries(
            {
                "algorithm": st.sampled_from(["sha256", "none", "blake3", ""]),
                "digest": st.text(max_size=70),
            }
        ),
    ),
)
def test_any_blob_cid_and_checksum_give_a_verified_source_or_a_resolution_error(
    link: str, checksum: Any
) -> None:
    from atdata.atmosphere.peer_resolve import entry_shard_sources
    from atdata.records import Record

    item: dict[str, Any] = {"blob": {"$type": "blob", "ref": {"$link": link}, "size": 10}}
    if checksum is not None:
        item["checksum"] = checksum
    entry = Record(
        f"at://did:plc:x/{PEER_ENTRY}/1",
        "c",
        {"storage": {"$type": PEER_STORAGE_BLOBS, "blobs": [item]}},
    )
    try:
        sources, unverified = entry_shard_sources(
            entry,
            did="did:plc:x",
            pds="http://127.0.0.1:9",
            allow_private=True,
            trusted_endpoints=(),
            s3_client_kwargs=None,
            timeout=5.0,
        )
    except ResolutionError:
        return
    (source,) = sources
    assert source.sha256 is not None and len(source.sha256) == 64 and unverified == []


def test_offline_loads_of_peer_records_say_they_are_for_ours_only(tmp_path: Path) -> None:
    for collection in (PEER_ENTRY, PEER_LABEL):
        with pytest.raises(
            ResolutionError,
            match=r"offline loads are for io.atdata.dataset records only: .* schema by URI with no CID",
        ):
            load_dataset(f"at://did:plc:x/{collection}/1", offline=True, cache=tmp_path)
