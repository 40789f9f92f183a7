"""Fixtures for the newcomer's path (web page, CLI, README, demo): an AppView run by the real
`atdata appview serve` command, following both devnet PDSes, and a small typed dataset
published from account A on PDS1 (schema + blob dataset + lens) that the AppView has indexed.

The sample types and the lens live in this module so that subprocesses (the CLI) can import
them as `_fixtures.newcomer:Glyph` with `PYTHONPATH=tests`.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import atdata
import httpx
import numpy as np
import pytest
from atdata.devnet import Account, DevnetInfo, free_ports
from numpy.typing import NDArray

from .services import login, new_account, stop_process, stop_when_we_die

TESTS_DIR = Path(__file__).resolve().parents[1]


@atdata.packable(name="newcomer.Glyph", version="1.0.0")
class Glyph:
    """An 8x8 grey-level glyph with its label."""

    image: NDArray[np.uint8]
    label: int
    caption: str


@atdata.packable(name="newcomer.GlyphLabel", version="1.0.0")
class GlyphLabel:
    label: int
    odd: bool


@atdata.lens
def glyph_label(g: Glyph) -> GlyphLabel:
    """Just the label of a glyph, and whether it is odd."""
    return GlyphLabel(label=g.label, odd=g.label % 2 == 1)


def glyphs(n: int, seed: int = 3) -> list[Glyph]:
    rng = np.random.default_rng(seed)
    return [
        Glyph(
            image=rng.integers(0, 16, size=(8, 8), dtype=np.uint8),
            label=i % 10,
            caption=f"glyph {i}",
        )
        for i in range(n)
    ]


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment for `atdata` subprocesses: tests/ importable, fixture settings kept."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS_DIR), env.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


@dataclass(frozen=True)
class RunningAppView:
    url: str
    pid: int
    db: str


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"the AppView exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")
        time.sleep(0.2)


@contextmanager
def serving_appview(devnet: DevnetInfo, base: Path, db: str) -> Iterator[RunningAppView]:
    """`atdata appview serve` on the index `db`, following both devnet PDSes (and backfilling
    what they already hold), on a free port; stopped on exit."""
    (port,) = free_ports(1)
    cmd = [sys.executable, "-m", "atdata.cli", "appview", "serve", "--db", db,
           "--plc", devnet.plc_url, "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    for pds in devnet.pds:
        cmd += ["--firehose", pds.ws_url]
    log = open(base / "appview.log", "wb")  # noqa: SIM115 - closed after the process stops
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=subprocess_env())
    watchdog = stop_when_we_die(proc.pid, signal.SIGINT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/_health", proc)
        yield RunningAppView(url=url, pid=proc.pid, db=db)
    finally:
        stop_process(proc, signal.SIGINT, 20)
        watchdog.kill()
        watchdog.wait()
        log.close()


@pytest.fixture(scope="session")
def appview(
    devnet: DevnetInfo, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningAppView]:
    """`atdata appview serve` (embedded SQLite) following both devnet PDSes, on a free port."""
    base = tmp_path_factory.mktemp("appview")
    with serving_appview(devnet, base, f"sqlite:///{base / 'index.sqlite'}") as running:
        yield running


@dataclass(frozen=True)
class Published:
    """What account A published and the AppView indexed."""

    account: Account
    name: str
    uri: str
    cid: str
    schema_uri: str
    lens_uri: str
    samples: list[Glyph]
    shards: list[atdata.ShardInfo]
    tag: str


def wait_indexed(appview_url: str, uri: str, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        r = httpx.get(f"{appview_url}/xrpc/io.atdata.getDataset", params={"uri": uri}, timeout=5)
        if r.status_code == 200:
            return r.json()
        if time.monotonic() > deadline:
            raise AssertionError(f"{uri} not indexed within {timeout:.0f} s: {r.text[:200]}")
        time.sleep(0.3)


@pytest.fixture(scope="session")
def published(
    devnet: DevnetInfo, appview: RunningAppView, tmp_path_factory: pytest.TempPathFactory
) -> Published:
    """A 30-glyph dataset in 3 shards (train: 0-1, test: 2) with schema and lens, indexed."""
    name = f"nc{secrets.token_hex(3)}"
    account = new_account(devnet.pds[0], name)
    client = login(account)
    samples = glyphs(30)
    out = tmp_path_factory.mktemp("glyphs")
    infos = atdata.write_samples(samples, str(out / "glyphs-%06d.tar"), maxcount=10)
    tag = f"tag{secrets.token_hex(3)}"
    schema_ref = client.publish_schema(Glyph)
    ref = client.publish_dataset(
        infos,
        name=f"glyphs-{name}",
        schema=schema_ref,
        description="Thirty 8x8 glyphs with labels, for the newcomer tests.",
        tags=["glyphs", tag],
        license="CC0-1.0",
        splits={"train": [0, 1], "test": [2]},
        progress=False,
    )
    lens_ref = client.publish_lens(glyph_label, repo_url="https://example.com/atdata-tests.git")
    wait_indexed(appview.url, str(ref))
    return Published(
        account=account,
        name=f"glyphs-{name}",
        uri=str(ref),
        cid=ref.cid,
        schema_uri=str(schema_ref),
        lens_uri=str(lens_ref),
        samples=samples,
        shards=infos,
        tag=tag,
    )
