"""Offline loads: a dataset loaded once with a shard cache loads again with the network
stopped (`ATDATA_OFFLINE=1` or `offline=True`), from the records and shard list kept beside
the cached shards, every shard still checked by sha256; what is missing is named in one error.

The offline run is a subprocess with no network at all: in its own network namespace when the
machine allows one (`unshare -rn`: not even loopback), and always under an audit hook that
fails on any socket connect or name lookup.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import atdata
import pytest
from _fixtures.newcomer import Published, RunningAppView, subprocess_env
from atdata.atmosphere.cache import ShardCache
from atdata.atmosphere.offline import OfflineStore, version_alias

OFFLINE_RUN = r"""
import json, sys
def no_network(event, args):
    if event in ("socket.connect", "socket.getaddrinfo", "socket.gethostbyname", "socket.bind"):
        raise RuntimeError(f"the offline load used the network: {event} {args}")
sys.addaudithook(no_network)
import atdata
spec = json.loads(sys.argv[1])
try:
    ds = atdata.load_dataset(spec.pop("source"), **spec)
    got = {"uri": ds.uri, "cid": ds.cid, "labels": [s.label for s in ds.ordered()],
           "counts": ds.__dict__.get("_shard_counts"), "version": ds.version}
except Exception as e:
    got = {"error": type(e).__name__, "message": str(e)}
print(json.dumps(got))
"""


def _no_network_prefix() -> list[str]:
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "-rn", "true"], capture_output=True).returncode == 0:
        return [unshare, "-rn"]
    return []


def offline_load(source: str, *, env: dict[str, str] | None = None, **kwargs: object) -> dict:
    """`atdata.load_dataset(source, **kwargs)` in a subprocess with no network."""
    settings = {
        "ATDATA_OFFLINE": "1",
        "ATDATA_PLC_URL": "http://127.0.0.1:9",  # nothing answers there, nor may anything be asked
        **(env or {}),
    }
    environment = subprocess_env(**settings)
    environment.pop("ATDATA_APPVIEW", None)
    done = subprocess.run(
        [
            *_no_network_prefix(),
            sys.executable,
            "-c",
            OFFLINE_RUN,
            json.dumps({"source": source, **kwargs}),
        ],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.devnet
def test_a_pinned_dataset_loads_offline_after_one_cached_load(
    published: Published, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    labels = [g.label for g in published.samples]
    online = atdata.load_dataset(published.uri, cid=published.cid, cache=cache)
    assert [s.label for s in online.ordered()] == labels  # reads every shard into the cache
    # the record's per-shard counts are known (no index pass), online as offline
    assert online.__dict__["_shard_counts"] == [s.samples for s in published.shards]
    kept = OfflineStore(ShardCache(cache))
    assert kept.record(published.cid) is not None
    assert kept.shard_list(published.cid) is not None

    got = offline_load(published.uri, cid=published.cid, cache=str(cache))
    assert got == {"uri": published.uri, "cid": published.cid, "labels": labels,
                   "counts": [s.samples for s in published.shards],
                   "version": online.version}  # fmt: skip
    test = offline_load(published.uri, cid=published.cid, cache=str(cache), split="test")
    assert test["labels"] == labels[20:]

    # not pinned: nothing says which version, so nothing is guessed
    unpinned = offline_load(published.uri, cache=str(cache))
    assert unpinned["error"] == "ResolutionError"
    assert "cid=" in unpinned["message"]

    # a shard gone from the cache is named, with what to run to fetch it
    third = published.shards[2]
    (cache / f"{third.sha256}.tar").unlink()
    missing = offline_load(published.uri, cid=published.cid, cache=str(cache))
    assert missing["error"] == "ResolutionError", missing
    assert f"shard 2 (sha256 {third.sha256}" in missing["message"]
    assert "shard 0" not in missing["message"]
    assert f"atdata.load_dataset({published.uri!r}, cid={published.cid!r}" in missing["message"]
    # the other split still loads: only what it needs must be there
    train = offline_load(published.uri, cid=published.cid, cache=str(cache), split="train")
    assert train["labels"] == labels[:20]

    # a cached shard whose bytes changed (same size) fails its sha256 check as online
    first = cache / f"{published.shards[0].sha256}.tar"
    data = bytearray(first.read_bytes())
    data[600] ^= 0xFF
    first.write_bytes(bytes(data))
    bad = offline_load(published.uri, cid=published.cid, cache=str(cache), split="train")
    assert bad["error"] == "ShardIntegrityError", bad


@pytest.mark.devnet
def test_offline_with_an_empty_cache_names_the_record_to_fetch(
    published: Published, tmp_path: Path
) -> None:
    empty = offline_load(published.uri, cid=published.cid, cache=str(tmp_path / "empty"))
    assert empty["error"] == "ResolutionError"
    assert f"does not hold the dataset record {published.uri}" in empty["message"]


@pytest.mark.devnet
def test_offline_true_reads_the_default_cache_under_atdata_cache(
    published: Published, tmp_path: Path
) -> None:
    root = tmp_path / "atdata-cache"
    online = atdata.load_dataset(published.uri, cache=root / "shards", split="test")
    assert len(list(online.ordered())) == 10
    # offline=True without ATDATA_OFFLINE; no cache=: the one ATDATA_CACHE says
    got = offline_load(published.uri, cid=published.cid, split="test", offline=True,
                       env={"ATDATA_OFFLINE": "0", "ATDATA_CACHE": str(root)})  # fmt: skip
    assert got["labels"] == [g.label for g in published.samples][20:]


@pytest.mark.devnet
def test_handle_name_at_version_loads_offline_once_seen(
    published: Published, appview: RunningAppView, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    handle = published.account.handle
    pinned = f"@{handle}/{published.name}@1.0.0"
    online = atdata.load_dataset(pinned, appview=appview.url, cache=cache, split="test")
    assert (online.uri, online.cid, online.version) == (published.uri, published.cid, "1.0.0")
    labels = [s.label for s in online.ordered()]

    got = offline_load(pinned, cache=str(cache), split="test")
    assert (got["uri"], got["cid"], got["labels"]) == (published.uri, published.cid, labels)
    # the handle is matched case-insensitively, as handles are
    upper = offline_load(pinned.replace(handle, handle.upper()), cache=str(cache), split="test")
    assert upper["labels"] == labels
    # "the newest" and a version never loaded cannot be known offline
    for source in (f"@{handle}/{published.name}", f"@{handle}/{published.name}@2.0.0"):
        refused = offline_load(source, cache=str(cache), split="test")
        assert refused["error"] == "ResolutionError", refused
        assert "never loaded" in refused["message"]


def test_version_alias_keys_only_pinned_versions() -> None:
    assert version_alias("@Alice.Test/mnist@1.2.0") == "@alice.test/mnist@1.2.0"
    assert version_alias("@alice.test/mnist") is None  # the newest: not a pin
    assert version_alias("at://did:plc:x/io.atdata.dataset/3k") is None
