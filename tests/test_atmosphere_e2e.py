"""End to end on the local ATProto network (PLC + PDSes), nothing mocked.

A on PDS1 publishes a schema, a blob dataset and a lens; B on PDS2 resolves the at:// URI and
reads batches equal to what A wrote; a lens view through the published lens; S3 and HTTP
storage round trips; a tampered shard is detected; a record that breaks its lexicon is
refused before anything is written; the stock 5 MiB PDS cuts shards or fails up front.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import atdata
import numpy as np
import pytest
from _fixtures.local_http import file_server
from _fixtures.services import login
from atdata import LensError, LexiconError, ResolutionError, ShardIntegrityError
from atdata.atmosphere import Client, PublishError, ShardCache, fetch_record, load_dataset
from atdata.records import DATASET, LENS, SCHEMA
from numpy.typing import NDArray

pytestmark = pytest.mark.devnet


@atdata.packable(name="e2e.Digit", version="1.0.0")
class Digit:
    label: int
    caption: str
    image: NDArray[np.float32]


@atdata.packable(name="e2e.Label", version="1.0.0")
class Label:
    label: int
    even: bool


@atdata.lens
def digit_label(d: Digit) -> Label:
    """The label of a digit and whether it is even."""
    return Label(label=d.label, even=d.label % 2 == 0)


def digits(n: int, side: int = 4) -> list[Digit]:
    rng = np.random.default_rng(7)
    return [
        Digit(label=i % 10, caption=f"d{i}", image=rng.random((side, side), dtype=np.float32))
        for i in range(n)
    ]


def same(a: Digit, b: Digit) -> bool:
    return a.label == b.label and a.caption == b.caption and np.array_equal(a.image, b.image)


@pytest.fixture
def alice(make_account: Any) -> Client:
    return login(make_account(0))


def test_a_publishes_b_reads_identical_batches(
    alice: Client, make_account: Any, tmp_path: Path
) -> None:
    originals = digits(40)
    infos = atdata.write_samples(originals, str(tmp_path / "d-%04d.tar"), maxcount=12)
    schema_ref = alice.publish_schema(Digit)
    assert alice.publish_schema(Digit) == schema_ref  # identical content: the same record
    assert len(alice.list_records(SCHEMA)) == 1
    ref = alice.publish_dataset(
        infos,
        name="digits",
        schema=Digit,
        description="forty digits",
        tags=["test", "digits"],
        license="CC-BY-4.0",
        splits={"train": [0, 1, 2], "test": [3]},
        progress=False,
    )
    assert ref.startswith(f"at://{alice.did}/{DATASET}/")
    lens_ref = alice.publish_lens(digit_label, repo_url="https://example.com/repo.git")

    # B lives on the other PDS; nothing but the URI travels.
    bob = login(make_account(1))
    assert bob.pds_url != alice.pds_url
    ds = atdata.load_dataset(str(ref), sample_type=Digit)
    assert ds.uri == str(ref) and ds.cid == ref.cid
    assert len(ds) == 40 and ds.sample_type is Digit
    got = [s for batch in ds.ordered(batch_size=8) for s in _unbatch(batch)]
    assert len(got) == 40 and all(same(a, b) for a, b in zip(originals, got, strict=True))

    test_split = load_dataset(str(ref), split="test", sample_type=Digit)
    assert [s.caption for s in test_split.ordered()] == [d.caption for d in originals[36:]]
    with pytest.raises(ResolutionError, match="no split 'dev'"):
        load_dataset(str(ref), split="dev")

    # The lens, from its record: never imported without trust; imported when trusted.
    with pytest.raises(LensError, match="trust=True"):
        bob.load_lens(str(lens_ref))
    loaded = bob.load_lens(str(lens_ref), trust=True)
    assert loaded is digit_label
    code = fetch_record(str(lens_ref)).value["code"]
    assert code["entryPoint"].endswith(":digit_label")
    assert code["sha256"] == hashlib.sha256(Path(__file__).read_bytes()).hexdigest()
    view = ds.as_type(Label)
    labels = [s for s in view.ordered()]
    assert [v.label for v in labels] == [d.label for d in originals]
    assert all(v.even == (v.label % 2 == 0) for v in labels)


def _unbatch(batch: Any) -> list[Digit]:
    n = len(batch.label)
    return [
        Digit(label=int(batch.label[i]), caption=batch.caption[i], image=batch.image[i])
        for i in range(n)
    ]


def test_schema_conflict_pin_and_delete(alice: Client, tmp_path: Path) -> None:
    @atdata.packable(name="e2e.Digit", version="1.0.0")
    class Other:
        label: int

    alice.publish_schema(Digit)
    with pytest.raises(PublishError, match="new version"):
        alice.publish_schema(Other)
    infos = atdata.write_samples(digits(5), str(tmp_path / "p-%04d.tar"))
    ref = alice.publish_dataset(infos, name="pinned", schema=Digit, progress=False)
    assert load_dataset(str(ref), cid=ref.cid).cid == ref.cid
    with pytest.raises(ResolutionError, match="changed"):
        load_dataset(str(ref), cid="bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm")
    # a class whose schema does not match: an error naming the fields (no lens leads there)
    with pytest.raises(atdata.SchemaError, match="field 'caption' .* is missing"):
        load_dataset(str(ref), sample_type=Other)
    # ... unless a registered lens leads to it from a class that matches: read through it
    viewed = load_dataset(str(ref), sample_type=Label)
    assert viewed.sample_type is Label
    assert [s.label for s in viewed.ordered()] == [d.label for d in digits(5)]
    # without a class, the one generated from the schema
    generated = load_dataset(str(ref))
    assert [s.caption for s in generated.ordered()] == [d.caption for d in digits(5)]
    alice.delete(str(ref))
    assert str(ref) not in [r.uri for r in alice.list_records(DATASET)]
    with pytest.raises(ResolutionError, match="not found"):
        load_dataset(str(ref))


def test_a_dataset_deleted_after_loading_says_so_when_read(alice: Client, tmp_path: Path) -> None:
    """Blobs go with the record: reading a Dataset obtained before the deletion names it."""
    infos = atdata.write_samples(digits(6), str(tmp_path / "gone-%04d.tar"), maxcount=3)
    ref = alice.publish_dataset(infos, name="soon-gone", schema=Digit, progress=False)
    ds = load_dataset(str(ref), sample_type=Digit)
    assert len(list(ds)) == 6
    alice.delete(str(ref))
    with pytest.raises(atdata.AtdataError) as err:
        list(ds)
    assert "the dataset was deleted (or its blobs are gone)" in str(err.value)
    assert str(ref) in str(err.value)


def test_handles_resolve_through_the_pds(alice: Client, tmp_path: Path, monkeypatch: Any) -> None:
    infos = atdata.write_samples(digits(3), str(tmp_path / "h-%04d.tar"))
    ref = alice.publish_dataset(infos, name="by-handle", schema=Digit, progress=False)
    by_handle = str(ref).replace(alice.did, alice.handle)
    monkeypatch.delenv("ATDATA_PDS", raising=False)
    with pytest.raises(ResolutionError, match="cannot resolve handle"):
        load_dataset(by_handle)
    ds = load_dataset(by_handle, appview=alice.pds_url)  # any service answering resolveHandle
    assert ds.uri == str(ref)
    assert len(list(ds.ordered())) == 3


def test_invalid_record_is_refused_before_anything_is_written(
    alice: Client, tmp_path: Path, monkeypatch: Any
) -> None:
    infos = atdata.write_samples(digits(4), str(tmp_path / "x-%04d.tar"))
    uploads: list[Any] = []
    real_upload = alice.upload_blob
    monkeypatch.setattr(
        alice, "upload_blob", lambda *a, **k: uploads.append(a) or real_upload(*a, **k)
    )
    with pytest.raises(LexiconError, match="license"):
        alice.publish_dataset(infos, name="bad", schema=Digit, license="x" * 300, progress=False)
    with pytest.raises(LexiconError, match=r"tags\[0\]"):
        alice.publish_dataset(infos, name="bad", schema=Digit, tags=[""], progress=False)
    assert uploads == []
    assert alice.list_records(DATASET) == [] and alice.list_records(SCHEMA) == []
    with pytest.raises(LexiconError, match="name"):
        alice.create_record(LENS, {"createdAt": "2024-01-01T00:00:00Z"})


def test_s3_round_trip(alice: Client, tmp_path: Path, s3_server: Any, s3_bucket: str) -> None:
    originals = digits(20)
    infos = atdata.write_samples(originals, str(tmp_path / "s-%04d.tar"), maxcount=6)
    kwargs = s3_server.client_kwargs()
    ref = alice.publish_dataset(
        infos,
        name="on-s3",
        schema=Digit,
        storage=f"s3://{s3_bucket}/datasets/digits",
        s3_client_kwargs=kwargs,
        progress=False,
    )
    value = alice.get_record(str(ref)).value
    assert value["storage"]["bucket"] == s3_bucket
    assert value["storage"]["endpoint"] == s3_server.endpoint_url
    keys = [o["Key"] for o in s3_server.client().list_objects_v2(Bucket=s3_bucket)["Contents"]]
    assert sorted(keys) == sorted(s["key"] for s in value["shards"])
    ds = load_dataset(
        str(ref),
        sample_type=Digit,
        trusted_s3_endpoints=[s3_server.endpoint_url],
        s3_client_kwargs=kwargs,
    )
    got = list(ds.ordered())
    assert all(same(a, b) for a, b in zip(originals, got, strict=True)) and len(got) == 20


def test_http_storage_tamper_detection_and_cache(alice: Client, tmp_path: Path) -> None:
    root = tmp_path / "www"
    infos = atdata.write_samples(digits(12), str(root.joinpath("w-%04d.tar")), maxcount=4)
    with file_server(root) as base:
        urls = [f"{base}/{Path(i.path).name}" for i in infos]
        ref = alice.publish_dataset(infos, name="web", schema=Digit, storage=urls, progress=False)
        cache = ShardCache(tmp_path / "cache", max_bytes=1 << 20)
        ds = load_dataset(str(ref), sample_type=Digit, cache=cache)
        assert len(list(ds.ordered())) == 12
        assert len(cache.entries()) == 3
        # tamper with the second shard on the server: same size, one byte flipped
        path = Path(infos[1].path)
        data = bytearray(path.read_bytes())
        data[700] ^= 0x01
        path.write_bytes(bytes(data))
        fresh = load_dataset(str(ref), sample_type=Digit)
        with pytest.raises(ShardIntegrityError, match="w-0001.tar"):
            list(fresh.ordered())
        # the cache holds the verified copy, so the cached read is still the original
        assert len(list(load_dataset(str(ref), sample_type=Digit, cache=cache).ordered())) == 12


def test_manifest_for_thousands_of_shards(alice: Client, tmp_path: Path) -> None:
    root = tmp_path / "many"
    originals = digits(1005, side=1)
    infos = atdata.write_samples(originals, str(root / "m-%05d.tar"), maxcount=1)
    with file_server(root) as base:
        urls = [f"{base}/{Path(i.path).name}" for i in infos]
        ref = alice.publish_dataset(infos, name="many", schema=Digit, storage=urls, progress=False)
        value = alice.get_record(str(ref)).value
        assert "shards" not in value and value["manifest"]["mimeType"] == "application/json"
        assert value["totals"] == {
            "samples": 1005,
            "shards": 1005,
            "bytes": sum(i.bytes for i in infos),
        }
        ds = load_dataset(str(ref), sample_type=Digit)
        assert len(ds.shards) == 1005
        assert [s.caption for s in ds.ordered()][-3:] == ["d1002", "d1003", "d1004"]


def test_stock_blob_limit_cuts_or_fails_up_front(
    make_account: Any, small_blob_pds: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    client = login(make_account(pds=small_blob_pds))
    assert client.blob_limit() == 5 * 1024 * 1024
    big = digits(12, side=256)  # 256 KiB images: one 3 MiB+ shard... then enlarge
    big = [Digit(label=d.label, caption=d.caption, image=np.tile(d.image, (2, 1))) for d in big]
    infos = atdata.write_samples(big, str(tmp_path / "big-%04d.tar"), maxsize=1 << 40)
    assert len(infos) == 1 and infos[0].bytes > 5 * 1024 * 1024
    uploads: list[Any] = []
    real_upload = client.upload_blob
    monkeypatch.setattr(
        client, "upload_blob", lambda *a, **k: uploads.append(a) or real_upload(*a, **k)
    )
    with pytest.raises(PublishError, match="nothing was uploaded"):
        client.publish_dataset(infos, name="big", schema=Digit, cut_oversize=False, progress=False)
    assert uploads == []
    ref = client.publish_dataset(
        infos, name="big", schema=Digit, splits={"train": [0]}, progress=False
    )
    value = client.get_record(str(ref)).value
    assert len(value["shards"]) >= 2
    assert all(s["bytes"] <= 5 * 1024 * 1024 for s in value["shards"])
    assert value["splits"] == [{"name": "train", "shards": list(range(len(value["shards"])))}]
    got = list(load_dataset(str(ref), sample_type=Digit, split="train").ordered())
    assert len(got) == 12 and all(same(a, b) for a, b in zip(big, got, strict=True))
    # A PDS that does not state its limit: the real 413 on the first (largest) upload stops it.
    uploads.clear()
    client._blob_limit = None
    with pytest.raises(PublishError, match="nothing was uploaded"):
        client.publish_dataset(infos, name="big2", schema=Digit, progress=False)
    assert len(uploads) == 1


def test_lens_record_code_checks_and_env_login(make_account: Any, monkeypatch: Any) -> None:
    account = make_account(0)
    monkeypatch.setenv("ATDATA_PDS", account.pds_url)
    monkeypatch.setenv("ATDATA_HANDLE", account.handle)
    monkeypatch.setenv("ATDATA_PASSWORD", account.password)
    client = Client().login()  # everything from the environment
    assert client.did == account.did
    monkeypatch.delenv("ATDATA_PDS")
    with pytest.raises(atdata.AtdataError, match="ATDATA_PDS"):
        Client()

    ref = client.publish_lens(digit_label)
    code = fetch_record(str(ref)).value["code"]
    # this file sits in the project's git checkout: path and commit come from git
    assert code["path"] == "tests/test_atmosphere_e2e.py"
    assert len(code["commit"]) == 40
    # a record whose sha256 does not match the local file: never imported
    forged = dict(fetch_record(str(ref)).value)
    forged["code"] = {**code, "sha256": "0" * 64}
    forged_ref = client.create_record(LENS, forged)
    with pytest.raises(LensError, match="not the published code"):
        client.load_lens(str(forged_ref), trust=True)
    # code that is not installed here is not fetched from anywhere
    missing = {**forged, "code": {**code, "entryPoint": "no_such_module_xyz:lens"}}
    with pytest.raises(LensError, match="not installed"):
        client.load_lens(str(client.create_record(LENS, missing)), trust=True)


def test_shards_given_as_paths_record_the_arrays_write_samples_would(
    alice: Client, tmp_path: Path
) -> None:
    # side 4 in the first shard, side 6 in the second: the varying dimensions become -1
    small = atdata.write_samples(digits(4, side=4), str(tmp_path / "a-%04d.tar"))
    large = atdata.write_samples(digits(3, side=6), str(tmp_path / "b-%04d.tar"))
    from_infos = alice.publish_dataset(small + large, name="infos", schema=Digit, progress=False)
    paths = [info.path for info in small + large]
    from_paths = alice.publish_dataset(paths, name="paths", schema=Digit, progress=False)
    arrays = [fetch_record(str(ref)).value["arrays"] for ref in (from_infos, from_paths)]
    assert arrays[0] == arrays[1] == [{"field": "image", "dtype": "<f4", "shape": [-1, -1]}]
