"""Fixtures that start real services on loopback: the ATProto devnet, PostgreSQL, S3.

Every service listens on 127.0.0.1 at a port the kernel reports free, so a
developer's own devnet on the default ports (or another engineer's test run) does
not clash. Each one is stopped at the end of the session, also when a test fails
or the run is interrupted; a watchdog process stops it even when pytest itself is
killed.

The plain context managers (`running_postgres`, `running_moto`) do the work; the
fixtures only wrap them, so the cleanup can be tested on its own.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from atdata.devnet import (
    STOCK_BLOB_LIMIT,
    Account,
    Devnet,
    DevnetInfo,
    PdsInfo,
    check_install,
    create_account,
    default_home,
    free_ports,
    install,
)

log = logging.getLogger("atdata.tests.services")

# -- a watchdog for when pytest dies without running its teardown -----------------

_WATCHDOG = """
import os, signal, sys, time
from atdata.devnet._network import pid_alive as alive
parent, target, sig = (int(a) for a in sys.argv[1:4])
while alive(parent) and alive(target):
    time.sleep(1)
if alive(target):
    os.kill(target, sig)
    end = time.time() + 15
    while alive(target) and time.time() < end:
        time.sleep(0.2)
    if alive(target):
        os.kill(target, signal.SIGKILL)
"""


def stop_when_we_die(pid: int, sig: int = signal.SIGTERM) -> subprocess.Popen[bytes]:
    """Start a small process that sends `sig` to `pid` once this process is gone."""
    return subprocess.Popen(
        [sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(pid), str(int(sig))],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def stop_process(
    proc: subprocess.Popen[Any], sig: int = signal.SIGTERM, timeout: float = 10
) -> None:
    """Send `sig` to a process still running and reap it, killing it after `timeout` s."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _stop_watchdog(watchdog: subprocess.Popen[bytes]) -> None:
    watchdog.kill()
    watchdog.wait()


def _report(config: pytest.Config, message: str) -> None:
    """A line on the terminal (and in the log), shown even with output captured."""
    log.info(message)
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None:
        return
    # past the output capture, or it only shows up in a failed test's report
    suspended = capture.global_and_fixture_disabled() if capture else contextlib.nullcontext()
    with suspended:
        reporter.write_line(f"[services] {message}")


def _report_up(config: pytest.Config, service: str, started: float, where: str) -> None:
    """`<service> up in <seconds> s<where>`: how long a service took to start, and where."""
    _report(config, f"{service} up in {time.monotonic() - started:.1f} s{where}")


@contextlib.contextmanager
def _environ(**values: str) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


# -- ATProto devnet ---------------------------------------------------------------


@pytest.fixture(scope="session")
def devnet(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DevnetInfo]:
    """A fresh PLC + two PDSes (blob limit 100 MiB) for the whole session.

    Installs the devnet into the cache on first use (about 3 minutes, logged).
    Sets ATDATA_PLC_URL and ATDATA_ALLOW_PRIVATE_NETWORK=1 while it runs.
    """
    home = default_home()
    reason = check_install(home)
    if reason is not None:
        _report(request.config, f"installing the devnet into {home} ({reason}) ...")
        started = time.monotonic()
        install(home)
        _report(request.config, f"devnet installed in {time.monotonic() - started:.0f} s")
    plc_port, *pds_ports = free_ports(3)
    net = Devnet(
        home, plc_port, pds_ports, run_dir=tmp_path_factory.mktemp("devnet"), name="pytest"
    )
    started = time.monotonic()
    info = net.up(stop_with_parent=True)
    _report_up(
        request.config,
        "devnet",
        started,
        f": PLC {info.plc_url}, PDS {', '.join(p.url for p in info.pds)}",
    )
    try:
        with _environ(ATDATA_PLC_URL=info.plc_url, ATDATA_ALLOW_PRIVATE_NETWORK="1"):
            yield info
    finally:
        net.down()


@pytest.fixture(scope="session")
def small_blob_pds(
    devnet: DevnetInfo, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PdsInfo]:
    """A third PDS with the stock 5 MiB blob limit, registering DIDs in the devnet's PLC."""
    (port,) = free_ports(1)
    net = Devnet(
        default_home(),
        plc_port=None,
        plc_url=devnet.plc_url,
        pds_ports=(port,),
        handle_domains=(".small.test",),
        blob_limit=STOCK_BLOB_LIMIT,
        run_dir=tmp_path_factory.mktemp("devnet-small"),
    )
    info = net.up(stop_with_parent=True)
    try:
        yield info.pds[0]
    finally:
        net.down()


_account_numbers = itertools.count(1)


def new_account(host: PdsInfo, name: str | None = None, password: str | None = None) -> Account:
    """A new account on `host` named `name` (default: one unique across the session), with
    a random password unless one is given."""
    if name is None:
        name = f"u{next(_account_numbers)}{secrets.token_hex(3)}"
    return create_account(
        host.url, host.handle(name), password or secrets.token_urlsafe(12), f"{name}@example.com"
    )


def login(account: Account) -> Any:
    """An `atdata.atmosphere.Client` logged in as `account`."""
    from atdata.atmosphere import Client

    return Client(account.pds_url).login(account.handle, account.password)


@pytest.fixture(scope="session")
def make_account(devnet: DevnetInfo) -> Callable[..., Account]:
    """Factory: `make_account(pds_index=0, *, pds=None, password=None) -> Account`.

    Handles and emails are unique across the session (every test gets new
    accounts on the shared network). `pds=` takes any PdsInfo, e.g. `small_blob_pds`.
    Session-scoped, so fixtures of any scope can use it.
    """

    def make(
        pds_index: int = 0, *, pds: PdsInfo | None = None, password: str | None = None
    ) -> Account:
        return new_account(pds if pds is not None else devnet.pds[pds_index], password=password)

    return make


# -- PostgreSQL -------------------------------------------------------------------


@dataclass(frozen=True)
class PgCluster:
    """A running throwaway PostgreSQL cluster."""

    port: int
    data_dir: Path
    bin_dir: Path

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the `postgres` database (superuser `postgres`, no password)."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def dsn(self, database: str = "postgres") -> str:
        """libpq connection string for psycopg / psql."""
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={database}"


def postgres_bin_dir() -> Path:
    """Folder of the PostgreSQL 15 server binaries (Debian's layout, else PATH)."""
    debian = Path("/usr/lib/postgresql/15/bin")
    if (debian / "initdb").exists():
        return debian
    found = shutil.which("initdb")
    if found is None:
        raise RuntimeError(
            "PostgreSQL server binaries not found (no /usr/lib/postgresql/15/bin, no initdb on "
            "PATH): run `make system-deps` (apt-get install postgresql-15)"
        )
    return Path(found).parent


def _as_postgres(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run it as the `postgres` user then."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


def _ensure_psycopg() -> None:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "psycopg[binary]>=3.1"], check=True
        )


@contextlib.contextmanager
def running_postgres() -> Iterator[PgCluster]:
    """initdb + pg_ctl start on 127.0.0.1 at a free port (fsync off); stop and delete after."""
    bin_dir = postgres_bin_dir()
    base = Path(tempfile.mkdtemp(prefix="atdata-pg-"))
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
    data = base / "data"
    watchdog = None
    try:
        subprocess.run(
            _as_postgres(
                [str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                 "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"]
            ),
            check=True,
            capture_output=True,
        )  # fmt: skip
        (port,) = free_ports(1)
        options = (
            f"-h 127.0.0.1 -p {port} -k {base} -c fsync=off -c synchronous_commit=off "
            "-c full_page_writes=off"
        )
        start = subprocess.run(
            _as_postgres(
                [str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options,
                 "-l", str(base / "server.log"), "-w", "-t", "60", "start"]
            ),
            capture_output=True,
            text=True,
        )  # fmt: skip
        if start.returncode != 0:
            server_log = (base / "server.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"pg_ctl start failed: {start.stderr.strip()}\n{server_log}")
        postmaster = int((data / "postmaster.pid").read_text().split()[0])
        # SIGINT = PostgreSQL's "fast shutdown"
        watchdog = stop_when_we_die(postmaster, signal.SIGINT)
        yield PgCluster(port=port, data_dir=data, bin_dir=bin_dir)
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(
                _as_postgres(
                    [str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]
                ),
                capture_output=True,
            )
        if watchdog is not None:
            _stop_watchdog(watchdog)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_cluster(request: pytest.FixtureRequest) -> Iterator[PgCluster]:
    """One throwaway PostgreSQL 15 cluster for the session."""
    _ensure_psycopg()
    started = time.monotonic()
    with running_postgres() as cluster:
        _report_up(request.config, "PostgreSQL", started, f" on 127.0.0.1:{cluster.port}")
        yield cluster


@pytest.fixture(scope="session")
def postgres_url(postgres_cluster: PgCluster) -> str:
    """SQLAlchemy URL (`postgresql+psycopg://...`) of the session cluster's `postgres` database."""
    return postgres_cluster.url


@contextlib.contextmanager
def fresh_database(cluster: PgCluster) -> Iterator[str]:
    """CREATE a uniquely named database; its SQLAlchemy URL; DROP it (forcefully) after."""
    import psycopg

    name = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{cluster.port}/{name}"
    finally:
        with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_database(postgres_cluster: PgCluster) -> Iterator[str]:
    """A fresh, empty database for one test; its SQLAlchemy URL. Dropped afterwards."""
    with fresh_database(postgres_cluster) as url:
        yield url


# -- S3-compatible server ---------------------------------------------------------


@dataclass(frozen=True)
class S3Server:
    """A running S3-compatible server (moto_server): where it is and how to sign for it."""

    endpoint_url: str
    access_key: str = "testing"
    secret_key: str = "testing"
    region: str = "us-east-1"
    pid: int | None = None

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `boto3.client("s3", **...)` (path-style addressing)."""
        from botocore.config import Config

        return {
            "endpoint_url": self.endpoint_url,
            "aws_access_key_id": self.access_key,
            "aws_secret_access_key": self.secret_key,
            "region_name": self.region,
            "config": Config(s3={"addressing_style": "path"}),
        }

    def client(self) -> Any:
        """A boto3 S3 client for this server."""
        import boto3

        return boto3.client("s3", **self.client_kwargs())


def _moto_binary() -> str:
    beside = Path(sys.executable).with_name("moto_server")
    if beside.exists():
        return str(beside)
    found = shutil.which("moto_server")
    if found is None:
        raise RuntimeError("moto_server not found: pip install 'moto[server]' (the dev extra)")
    return found


@contextlib.contextmanager
def running_moto(timeout: float = 60.0) -> Iterator[S3Server]:
    """`moto_server` on 127.0.0.1 at a free port; stopped (and its data gone) afterwards."""
    import httpx

    (port,) = free_ports(1)
    # moto logs every request: into a file, since an unread pipe would fill and block it
    fd, log_name = tempfile.mkstemp(prefix="atdata-moto-", suffix=".log")
    log_path = Path(log_name)
    with os.fdopen(fd, "wb") as log_file:
        proc = subprocess.Popen(
            [_moto_binary(), "-H", "127.0.0.1", "-p", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    watchdog = stop_when_we_die(proc.pid)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                err = log_path.read_text(errors="replace")
                raise RuntimeError(f"moto_server exited with {proc.returncode}: {err[-2000:]}")
            try:
                httpx.get(f"{url}/moto-api/", timeout=2)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"moto_server did not answer on {url} in {timeout} s"
                    ) from None
                time.sleep(0.1)
        yield S3Server(endpoint_url=url, pid=proc.pid)
    finally:
        stop_process(proc)
        _stop_watchdog(watchdog)
        log_path.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def s3_server(request: pytest.FixtureRequest) -> Iterator[S3Server]:
    """A real S3-compatible server (moto_server, in memory) on loopback for the session."""
    started = time.monotonic()
    with running_moto() as server:
        _report_up(request.config, "S3 (moto_server)", started, f" at {server.endpoint_url}")
        yield server


@contextlib.contextmanager
def fresh_bucket(server: S3Server) -> Iterator[str]:
    """Create a uniquely named bucket; empty and delete it afterwards."""
    client = server.client()
    name = f"t-{secrets.token_hex(8)}"
    client.create_bucket(Bucket=name)
    try:
        yield name
    finally:
        paginator = client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=name):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                client.delete_objects(Bucket=name, Delete={"Objects": keys})
        client.delete_bucket(Bucket=name)


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> Iterator[str]:
    """A new, empty bucket for one test (name only); emptied and deleted afterwards."""
    with fresh_bucket(s3_server) as name:
        yield name
