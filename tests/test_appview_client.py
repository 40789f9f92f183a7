"""`atdata.AppViewClient` against a served AppView, and `atdata appview serve` as a process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import atdata
import httpx
import pytest
from _fixtures.appview_index import (
    DATASET,
    LENS,
    SCHEMA,
    ServedApp,
    dataset_record,
    free_port,
    lens_record,
    run,
    schema_record,
)
from atdata_appview.db import Store

A = "did:plc:alice"
S1, S2 = f"at://{A}/{SCHEMA}/one", f"at://{A}/{SCHEMA}/two"


@pytest.fixture
def url(tmp_path: Path, serve_store: Callable[..., ServedApp]) -> str:
    store = Store(f"sqlite:///{tmp_path / 'client.sqlite'}")

    async def seed() -> None:
        async with store.transaction() as tx:
            tx.set_repo(A, handle="alice.test")
            tx.upsert_record(A, SCHEMA, "one", "c1", schema_record("One", fields=("pixels",)))
            tx.upsert_record(A, SCHEMA, "two", "c2", schema_record("Two"))
            tx.upsert_record(A, LENS, "l", "cl", lens_record("one-to-two", S1, S2))
            for i in range(12):
                rec = dataset_record(
                    f"galaxy survey {i}",
                    description="telescope images",
                    tags=("astronomy",) if i % 2 else ("vision",),
                    samples=100 * (i + 1),
                    schema=S1,
                    created=f"2026-03-{i + 1:02d}T00:00:00.000Z",
                )
                tx.upsert_record(A, DATASET, f"g{i}", f"c{i}", rec, f"r{i:02d}")

    run(seed())
    yield serve_store(store).url
    store.close()


def test_search_returns_attribute_views_cursor_and_facets(url: str) -> None:
    with atdata.AppViewClient(url) as av:
        res = av.search("galaxy", tags=["astronomy"], limit=4, sort="samples")
        assert [d.name for d in res.datasets] == [f"galaxy survey {i}" for i in (11, 9, 7, 5)]
        first = res.datasets[0]
        assert first.uri == f"at://{A}/{DATASET}/g11" and first.handle == "alice.test"
        assert first.samples == 1200 and first.created_at == first.createdAt
        assert first.schema.name == "One" and first.schema.uri == S1
        assert first.tags == ["astronomy"] and first["license"] == "MIT"
        assert res.cursor and res.facets.tags == {"astronomy": 6}
        nxt = av.search("galaxy", tags=["astronomy"], limit=4, sort="samples", cursor=res.cursor)
        assert [d.samples for d in nxt.datasets] == [400, 200]
        assert nxt.cursor is None
        every = list(av.iter_search("telescope", limit=5))
        assert len(every) == len({d.uri for d in every}) == 12
        assert av.search(min_samples=1100).datasets[0].samples in (1100, 1200)


def test_lookups(url: str) -> None:
    av = atdata.AppViewClient(url)
    try:
        ds = av.get_dataset(f"at://{A}/{DATASET}/g3")
        assert ds.record["name"] == "galaxy survey 3" and ds.schema.fields == ["pixels"]
        assert len(ds.shards) == 1 and ds.lenses["from"][0]["name"] == "one-to-two"
        assert ds.author.handle == "alice.test"
        schemas = av.list_schemas()
        assert {s.name for s in schemas} == {"One", "Two"} and schemas.cursor is None
        assert av.get_schema(S1).versions[0]["version"] == "1.0.0"
        assert [x.name for x in av.list_lenses(source=S1)] == ["one-to-two"]
        assert [x.target for x in av.find_lens_path(S1, S2)] == [S2]
        assert av.find_lens_path(S2, S1) is None
        assert av.find_lens_path(S1, S1) == []
        assert av.describe().counts["datasets"] == 12
    finally:
        av.close()


def test_errors_are_typed(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    av = atdata.AppViewClient(url)
    with pytest.raises(atdata.ResolutionError, match="NotFound"):
        av.get_dataset(f"at://{A}/{DATASET}/missing")
    with pytest.raises(atdata.AppViewError, match="limit") as info:
        av.search(limit=1000)
    assert info.value.status == 400 and info.value.error == "InvalidRequest"
    with pytest.raises(atdata.AppViewError, match="unreachable"):
        atdata.AppViewClient(f"http://127.0.0.1:{free_port()}").search("x")
    monkeypatch.delenv("ATDATA_APPVIEW", raising=False)
    with pytest.raises(atdata.AppViewError, match="ATDATA_APPVIEW"):
        atdata.AppViewClient()
    monkeypatch.setenv("ATDATA_APPVIEW", url + "/")
    assert atdata.AppViewClient().url == url
    with pytest.raises(atdata.AppViewError, match="http"):
        atdata.AppViewClient("ftp://example.com")


def _wait_healthy(base: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(
                f"server exited: {proc.stderr.read().decode() if proc.stderr else ''}"
            )
        try:
            if httpx.get(f"{base}/_health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("AppView did not become healthy")


def test_cli_serve_uses_options_and_environment(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "ATDATA_APPVIEW_DB": f"sqlite:///{tmp_path / 'cli.sqlite'}",
        "ATDATA_APPVIEW_PORT": str(port),
    }
    cmd = [sys.executable, "-m", "atdata.cli", "appview", "serve", "--no-follow"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_healthy(base, proc)
        described = atdata.AppViewClient(base).describe()
        assert described.counts["datasets"] == 0 and described.hosts == []
        assert (tmp_path / "cli.sqlite").exists()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)


def test_cli_serve_rejects_bad_settings_in_one_line(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "atdata.cli", "appview", "serve", "--firehose", "ftp://x",
           "--db", f"sqlite:///{tmp_path / 'x.sqlite'}"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0 and "ftp://x" in done.stderr


def test_cli_serve_on_a_taken_port_fails_in_one_line_before_announcing(tmp_path: Path) -> None:
    """Was: 'AppView on ...' logged first, as if serving, then the bind error."""
    import socket

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        db = tmp_path / "taken.sqlite"
        cmd = [sys.executable, "-m", "atdata.cli", "appview", "serve", "--no-follow",
               "--host", "127.0.0.1", "--port", str(port), "--db", f"sqlite:///{db}"]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"127.0.0.1:{port}" in lines[0] and "in use" in lines[0], lines[0]
    assert "AppView on" not in done.stderr + done.stdout
    assert not db.exists()  # nothing was started before the bind failed


def test_cli_serve_announces_itself_once_listening(tmp_path: Path) -> None:
    port = free_port()
    cmd = [sys.executable, "-m", "atdata.cli", "appview", "serve", "--no-follow",
           "--port", str(port), "--db", f"sqlite:///{tmp_path / 'up.sqlite'}"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_healthy(f"http://127.0.0.1:{port}", proc)
    finally:
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=30)
    assert f"AppView on http://127.0.0.1:{port}" in err
