"""Dataset versions end to end: two authors on two PDSes publish one name in several versions
(one out of order, with allow_older), an AppView on SQLite and one on PostgreSQL index them,
and `@handle/name[@version]` loads through either. Publishing checks read the author's own
repo, so they hold right after a publish, before any AppView has seen it."""

from __future__ import annotations

import secrets
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import atdata
import httpx
import pytest
from _fixtures.local_http import serving_app
from _fixtures.newcomer import (
    Glyph,
    RunningAppView,
    glyphs,
    serving_appview,
    subprocess_env,
    wait_indexed,
)
from _fixtures.services import fresh_database, login, new_account
from atdata import AppViewClient, ResolutionError
from atdata.atmosphere import Client, PublishError, load_dataset
from atdata.devnet import Account, DevnetInfo

pytestmark = pytest.mark.devnet


@dataclass(frozen=True)
class Author:
    account: Account
    client: Client
    #: version -> (uri, cid, number of samples) of what this author published
    versions: dict[str, tuple[str, str, int]]


@dataclass(frozen=True)
class World:
    name: str
    alice: Author  # on the first PDS
    bob: Author  # on the second PDS


def _author(devnet: DevnetInfo, index: int) -> tuple[Account, Client]:
    account = new_account(devnet.pds[index], f"v{secrets.token_hex(3)}")
    return account, login(account)


def _publish(
    client: Client, tmp: Path, name: str, n: int, **kw: Any
) -> atdata.atmosphere.DatasetRef:
    """Publish `n` glyphs (the count tells the versions apart when loaded)."""
    folder = tmp / secrets.token_hex(4)
    folder.mkdir()
    infos = atdata.write_samples(glyphs(n), str(folder / "g-%06d.tar"), maxcount=100)
    return client.publish_dataset(infos, name=name, schema=Glyph, progress=False, **kw)


@pytest.fixture(scope="module")
def world(devnet: DevnetInfo, tmp_path_factory: pytest.TempPathFactory) -> World:
    """alice publishes 1.0.0 and 1.0.1 (automatic), 2.0.0, then 1.5.0 (allow_older);
    bob publishes 0.3.0 of the same name on the other PDS."""
    tmp = tmp_path_factory.mktemp("versions")
    # letters only: PostgreSQL's full text does not match a hyphenated word with digits in it
    name = "digits-" + "".join(secrets.choice("abcdefghijkmnpqrstuvwxyz") for _ in range(6))
    a_account, a_client = _author(devnet, 0)
    b_account, b_client = _author(devnet, 1)
    alice: dict[str, tuple[str, str, int]] = {}
    for n, kw in ((3, {}), (4, {}), (5, {"version": "2.0.0"})):
        ref = _publish(a_client, tmp, name, n, **kw)
        alice[ref.version] = (str(ref), ref.cid, n)
    assert list(alice) == ["1.0.0", "1.0.1", "2.0.0"]  # automatic: next patch, 1.0.0 first
    older = _publish(a_client, tmp, name, 6, version="1.5.0", allow_older=True)
    alice[older.version] = (str(older), older.cid, 6)
    ref = _publish(b_client, tmp, name, 7, version="0.3.0")
    bob = {ref.version: (str(ref), ref.cid, 7)}
    return World(
        name,
        Author(a_account, a_client, alice),
        Author(b_account, b_client, bob),
    )


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def indexed(
    request: pytest.FixtureRequest,
    devnet: DevnetInfo,
    world: World,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningAppView]:
    """An AppView (SQLite, then PostgreSQL) that backfilled every version of `world`."""
    base = tmp_path_factory.mktemp(f"appview-{request.param}")
    database = (
        fresh_database(request.getfixturevalue("postgres_cluster"))
        if request.param == "postgres"
        else nullcontext(f"sqlite:///{base / 'index.sqlite'}")
    )
    with database as db, serving_appview(devnet, base, db) as running:
        for author in (world.alice, world.bob):
            for uri, _, _ in author.versions.values():
                wait_indexed(running.url, uri, timeout=90)
        yield running


# -- publishing: checked against one's own repo ---------------------------------------------


def test_used_and_lower_versions_are_refused_before_anything_is_written(
    world: World, tmp_path: Path
) -> None:
    client = world.alice.client
    before = len(client.list_records("io.atdata.dataset"))
    with pytest.raises(PublishError, match=r"2\.0\.0 is already published"):
        _publish(client, tmp_path, world.name, 2, version="2.0.0")
    with pytest.raises(PublishError, match=r"lower than your newest, 2\.0\.0.*allow_older"):
        _publish(client, tmp_path, world.name, 2, version="1.9.0")
    with pytest.raises(PublishError, match="not a semantic version"):
        _publish(client, tmp_path, world.name, 2, version="v3")
    with pytest.raises(PublishError, match=r"1\.0\.1 is already published"):  # even older
        _publish(client, tmp_path, world.name, 2, version="1.0.1", allow_older=True)
    assert len(client.list_records("io.atdata.dataset")) == before
    # another author's versions are theirs: bob's newest is 0.3.0, not alice's 2.0.0
    assert world.bob.client.list_records("io.atdata.dataset")[0].value["version"] == "0.3.0"


# -- the AppView: newest wins, one result per (author, name) --------------------------------


def test_search_collapses_versions_to_the_newest(world: World, indexed: RunningAppView) -> None:
    with AppViewClient(indexed.url) as av:
        found = [d for d in av.search(world.name).datasets if d["name"] == world.name]
        got = {d["handle"]: (d["uri"], d["version"], d["versions"]) for d in found}
        assert got == {
            world.alice.account.handle: (world.alice.versions["2.0.0"][0], "2.0.0", 4),
            world.bob.account.handle: (world.bob.versions["0.3.0"][0], "0.3.0", 1),
        }
        every = [
            d
            for d in av.search(world.name, all_versions=True, limit=100).datasets
            if d["name"] == world.name
        ]
        assert sorted(d["version"] for d in every) == ["0.3.0", "1.0.0", "1.0.1", "1.5.0", "2.0.0"]
        assert [d["version"] for d in every if d["newest"]] in (
            ["2.0.0", "0.3.0"],
            ["0.3.0", "2.0.0"],
        )
        mine = av.search(author=world.alice.account.handle, name=world.name, all_versions=True)
        assert len(mine.datasets) == 4


def test_the_dataset_page_lists_the_versions_and_marks_the_one_shown(
    world: World, indexed: RunningAppView
) -> None:
    uri, cid, _ = world.alice.versions["1.5.0"]
    did, _, rkey = uri.removeprefix("at://").split("/")
    page = httpx.get(f"{indexed.url}/datasets/{did}/{rkey}", timeout=10).text
    table = page[page.index("<table class=versions>") :]
    table = table[: table.index("</table>")]
    rows = table.split("<tr")[2:]  # after the header row
    assert [r.split("<td>")[1].split("<")[0] for r in rows] == [
        "2.0.0", "1.5.0 (shown)", "1.0.1", "1.0.0",
    ]  # fmt: skip
    for version, (v_uri, v_cid, n) in world.alice.versions.items():
        row = next(r for r in rows if f"<td>{version}" in r)
        assert v_uri in row and v_cid in row and f">{n}<" in row
    assert "class=shown" in rows[1] and cid in rows[1]


# -- loading @handle/name[@version] ----------------------------------------------------------


def test_handle_name_loads_the_newest_and_a_version_that_version(
    world: World, indexed: RunningAppView
) -> None:
    handle = world.alice.account.handle
    newest = load_dataset(f"@{handle}/{world.name}", appview=indexed.url)
    uri, cid, n = world.alice.versions["2.0.0"]
    assert (newest.uri, newest.cid, newest.version, len(newest)) == (uri, cid, "2.0.0", n)
    assert len(list(newest.ordered())) == n
    older = load_dataset(f"@{handle}/{world.name}@1.0.1", sample_type=Glyph, appview=indexed.url)
    uri, cid, n = world.alice.versions["1.0.1"]
    assert (older.uri, older.cid, older.version) == (uri, cid, "1.0.1")
    assert [g.label for g in older.ordered()] == [g.label for g in glyphs(n)]
    bob = load_dataset(f"@{world.bob.account.handle}/{world.name}", appview=indexed.url)
    assert (bob.version, bob.cid) == ("0.3.0", world.bob.versions["0.3.0"][1])
    # an at:// URI is exactly that record, as before (and reports its version)
    exact = load_dataset(world.alice.versions["1.0.0"][0])
    assert (exact.version, exact.cid) == ("1.0.0", world.alice.versions["1.0.0"][1])


def test_missing_versions_and_no_appview_are_clear_errors(
    world: World, indexed: RunningAppView, monkeypatch: pytest.MonkeyPatch
) -> None:
    handle = world.alice.account.handle
    with pytest.raises(
        ResolutionError, match=r"no version 9\.9\.9.*1\.0\.0, 1\.0\.1, 1\.5\.0, 2\.0\.0"
    ):
        load_dataset(f"@{handle}/{world.name}@9.9.9", appview=indexed.url)
    with pytest.raises(ResolutionError, match="knows no dataset"):
        load_dataset(f"@{handle}/no-such-{world.name}", appview=indexed.url)
    monkeypatch.delenv("ATDATA_APPVIEW", raising=False)
    monkeypatch.setenv("ATDATA_PDS", world.alice.account.pds_url)  # resolves the handle
    # without an AppView, the author's own PDS lists the versions
    assert load_dataset(f"@{handle}/{world.name}").version == "2.0.0"
    assert load_dataset(f"@{handle}/{world.name}@1.0.1").version == "1.0.1"
    with pytest.raises(ResolutionError, match=r"no version 9\.9\.9 in the PDS.*1\.0\.0, 1\.0\.1"):
        load_dataset(f"@{handle}/{world.name}@9.9.9")
    monkeypatch.setenv("ATDATA_APPVIEW", indexed.url)  # the environment's AppView is used
    assert load_dataset(f"@{handle}/{world.name}@1.5.0").version == "1.5.0"


def test_cli_publish_reports_the_version_and_load_get_take_handle_names(
    world: World, indexed: RunningAppView, tmp_path: Path, devnet: DevnetInfo
) -> None:
    handle = world.alice.account.handle

    def cli(*args: str, appview: bool = True) -> subprocess.CompletedProcess[str]:
        extra = ["--appview", indexed.url] if appview else []
        return subprocess.run(
            [sys.executable, "-m", "atdata.cli", *args, *extra],
            capture_output=True,
            text=True,
            timeout=120,
            env=subprocess_env(ATDATA_PLC_URL=devnet.plc_url),
        )

    got = cli("load", f"@{handle}/{world.name}@1.0.0", "--head", "1", "--json")
    assert got.returncode == 0, got.stderr
    assert '"version": "1.0.0"' in got.stdout and world.alice.versions["1.0.0"][1] in got.stdout
    got = cli("get", f"@{handle}/{world.name}")
    assert got.returncode == 0, got.stderr
    assert "version 2.0.0" in got.stdout and world.alice.versions["2.0.0"][1] in got.stdout
    got = cli("search", world.name, "--author", handle)
    line = next(x for x in got.stdout.splitlines() if f"{world.name} " in x)
    assert "2.0.0 (4 versions)" in line and world.alice.versions["2.0.0"][0] in line
    got = cli("search", world.name, "--author", handle, "--all-versions")
    assert sum(f"{world.name} " in x for x in got.stdout.splitlines()) == 4
    got = cli("load", f"@{handle}/{world.name}@7.0.0")
    assert got.returncode == 3 and "no version 7.0.0" in got.stderr

    infos = atdata.write_samples(glyphs(2), str(tmp_path / "g-%06d.tar"), maxcount=100)
    login = [
        "--pds",
        world.alice.account.pds_url,
        "--handle",
        handle,
        "--password",
        world.alice.account.password,
    ]
    publish = [
        "publish",
        infos[0].path,
        "--name",
        f"{world.name}-cli{secrets.token_hex(2)}",  # a new name for each AppView's run
        "--schema",
        "_fixtures.newcomer:Glyph",
        *login,
    ]
    got = cli(*publish, appview=False)
    assert got.returncode == 0, got.stderr
    assert "version 1.0.0" in got.stderr and got.stdout.strip().startswith("at://")
    got = cli(*publish, "--version", "1.0.0", appview=False)
    assert got.returncode != 0 and "1.0.0 is already published" in got.stderr
    got = cli(*publish, appview=False)
    assert got.returncode == 0 and "version 1.0.1" in got.stderr


@contextmanager
def relabelling_appview(real: str, relabel: dict[str, str]) -> Iterator[str]:
    """An AppView relaying the real one, except that its searchDatasets lists the records of
    `relabel`'s URIs under other versions (a lie the real AppView cannot tell)."""
    from aiohttp import web

    async def relay(request: web.Request) -> web.Response:
        nsid = request.match_info["nsid"]
        r = httpx.get(f"{real}/xrpc/{nsid}", params=list(request.query.items()), timeout=10)
        body = r.json()
        if nsid == "io.atdata.searchDatasets" and r.status_code == 200:
            for d in body["datasets"]:
                d["version"] = relabel.get(d["uri"], d["version"])
        return web.json_response(body, status=r.status_code)

    app = web.Application()
    app.router.add_get("/xrpc/{nsid}", relay)
    with serving_app(app) as url:
        yield url


def test_a_version_the_appview_mislabels_is_caught_on_the_authors_record(
    world: World, indexed: RunningAppView
) -> None:
    newest_uri = world.alice.versions["2.0.0"][0]
    handle = world.alice.account.handle
    with (
        relabelling_appview(indexed.url, {newest_uri: "1.0.1"}) as liar,
        pytest.raises(ResolutionError, match=r"listed .* as \S+ 1\.0\.1.*record is \S+ 2\.0\.0"),
    ):
        load_dataset(f"@{handle}/{world.name}@1.0.1", appview=liar)
