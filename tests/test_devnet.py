"""The local ATProto network: install, lifecycle, accounts, records, blobs, firehose, CLI."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from atdata.cli import EXIT_ABSENT, main
from atdata.devnet import (
    Account,
    Devnet,
    DevnetError,
    DevnetInfo,
    PdsInfo,
    activate_account,
    check_install,
    create_account,
    deactivate_account,
    default_home,
    default_run_dir,
    delete_account,
    free_ports,
    port_is_free,
    update_handle,
)

pytestmark = pytest.mark.devnet

NSID = "io.atdata.test.note"


class Firehose:
    """Every message of one PDS's firehose from cursor 0, parsed, in a queue."""

    def __init__(self, pds: PdsInfo) -> None:
        from atproto import FirehoseSubscribeReposClient, parse_subscribe_repos_message

        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._client = FirehoseSubscribeReposClient(
            {"cursor": 0}, base_uri=f"{pds.ws_url}/xrpc", recv_timeout=None
        )

        def on_message(frame: Any) -> None:
            message = parse_subscribe_repos_message(frame)
            self.events.put((frame.type, message))
            self._client.update_params({"cursor": message.seq})

        self._thread = threading.Thread(target=self._client.start, args=(on_message,), daemon=True)
        self._thread.start()

    def wait_for(self, pred: Callable[[str, Any], bool], what: str, timeout: float = 15.0) -> Any:
        """The first message (after those already consumed) for which `pred` holds."""
        end = time.monotonic() + timeout
        while (left := end - time.monotonic()) > 0:
            try:
                kind, message = self.events.get(timeout=left)
            except queue.Empty:
                break
            if pred(kind, message):
                return message
        raise AssertionError(f"no firehose event for {what} within {timeout} s")

    def stop(self) -> None:
        self._client.stop()
        self._thread.join(10)


@pytest.fixture
def firehose(devnet: DevnetInfo) -> Iterator[Callable[[PdsInfo], Firehose]]:
    started: list[Firehose] = []

    def subscribe(pds: PdsInfo) -> Firehose:
        hose = Firehose(pds)
        started.append(hose)
        return hose

    yield subscribe
    for hose in started:
        hose.stop()


def _listening_addresses(port: int) -> set[str]:
    """Local IPv4/IPv6 addresses with a LISTEN socket on `port` (from /proc/net/tcp*)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as handle:
            next(handle)
            for line in handle:
                local, state = line.split()[1], line.split()[3]
                address, port_hex = local.rsplit(":", 1)
                if state == "0A" and int(port_hex, 16) == port:
                    found.add(address)
    return found


# -- the session network ------------------------------------------------------------


def test_devnet_is_installed_and_serves_on_loopback_only(devnet: DevnetInfo) -> None:
    assert check_install(default_home()) is None
    assert os.environ["ATDATA_PLC_URL"] == devnet.plc_url
    assert os.environ["ATDATA_ALLOW_PRIVATE_NETWORK"] == "1"
    assert len(devnet.pds) == 2
    assert httpx.get(f"{devnet.plc_url}/_health").status_code == 200
    ports = [int(devnet.plc_url.rsplit(":", 1)[1])]
    for pds, domain in zip(devnet.pds, (".pds1.test", ".pds2.test"), strict=True):
        described = httpx.get(f"{pds.url}/xrpc/com.atproto.server.describeServer").json()
        assert described["availableUserDomains"] == [domain]
        assert described["did"] == pds.did == f"did:web:localhost%3A{pds.port}"
        assert pds.blob_limit == 100 * 1024 * 1024
        ports.append(pds.port)
    for port in ports:  # 127.0.0.1 in /proc/net/tcp's little-endian hex
        assert _listening_addresses(port) == {"0100007F"}, port


def test_account_record_and_cross_pds_resolution(
    devnet: DevnetInfo, make_account: Callable[..., Account], firehose: Callable[..., Firehose]
) -> None:
    from atproto import IdResolver, models

    hose = firehose(devnet.pds[0])
    alice, bob = make_account(0), make_account(1)
    assert alice.handle.endswith(".pds1.test") and bob.handle.endswith(".pds2.test")
    assert alice.did.startswith("did:plc:") and alice.did != bob.did

    resolver = IdResolver(plc_url=devnet.plc_url)
    assert resolver.did.resolve(alice.did).get_pds_endpoint() == devnet.pds[0].url
    assert resolver.did.resolve(bob.did).get_pds_endpoint() == devnet.pds[1].url

    client = alice.client()
    record = {
        "$type": NSID,
        "text": "hello",
        "count": 3,
        "createdAt": client.get_current_time_iso(),
    }
    out = client.com.atproto.repo.put_record(
        models.ComAtprotoRepoPutRecord.Data(
            repo=alice.did, collection=NSID, rkey="first", record=record
        )
    )
    # anyone can read it from the PDS the PLC names, without a session
    got = httpx.get(
        f"{devnet.pds[0].url}/xrpc/com.atproto.repo.getRecord",
        params={"repo": alice.did, "collection": NSID, "rkey": "first"},
    ).json()
    assert got["value"] == record and got["cid"] == out.cid

    commit = hose.wait_for(
        lambda kind, m: (
            kind == "#commit"
            and m.repo == alice.did
            and any(op.path == f"{NSID}/first" and op.action == "create" for op in m.ops)
        ),
        "alice's create",
    )
    op = next(op for op in commit.ops if op.path == f"{NSID}/first")
    assert str(op.cid) == out.cid


def test_floats_are_rejected_by_the_pds(make_account: Callable[..., Account]) -> None:
    from atproto import models
    from atproto_client.exceptions import BadRequestError

    alice = make_account()
    with pytest.raises(BadRequestError):
        alice.client().com.atproto.repo.create_record(
            models.ComAtprotoRepoCreateRecord.Data(
                repo=alice.did, collection=NSID, record={"$type": NSID, "x": 0.5}
            )
        )


def _upload(account: Account, size: int) -> httpx.Response:
    client = account.client()
    token = client._session.access_jwt  # the raw upload, to see the HTTP status
    return httpx.post(
        f"{account.pds_url}/xrpc/com.atproto.repo.uploadBlob",
        content=b"\0" * size,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/x-tar"},
        timeout=60,
    )


def test_blob_limits(
    make_account: Callable[..., Account], small_blob_pds: PdsInfo, devnet: DevnetInfo
) -> None:
    six_mib = 6 * 1024 * 1024
    big = make_account(0)
    assert _upload(big, six_mib).status_code == 200

    assert small_blob_pds.blob_limit == 5 * 1024 * 1024
    small = make_account(pds=small_blob_pds)
    assert small.handle.endswith(".small.test")
    refused = _upload(small, six_mib)
    assert refused.status_code == 413, refused.text
    assert _upload(small, 5 * 1024 * 1024).status_code == 200

    # the small PDS registers its DIDs in the session's PLC
    from atproto import IdResolver

    doc = IdResolver(plc_url=devnet.plc_url).did.resolve(small.did)
    assert doc.get_pds_endpoint() == small_blob_pds.url


def test_account_admin_helpers_emit_firehose_events(
    devnet: DevnetInfo, make_account: Callable[..., Account], firehose: Callable[..., Firehose]
) -> None:
    from atproto import IdResolver

    hose = firehose(devnet.pds[1])
    acct = make_account(1)

    renamed = update_handle(acct, devnet.pds[1].handle(f"r{acct.handle.split('.')[0]}"))
    hose.wait_for(
        lambda kind, m: kind == "#identity" and m.did == acct.did and m.handle == renamed.handle,
        "the handle change",
    )
    data = IdResolver(plc_url=devnet.plc_url).did.resolve_atproto_data(acct.did)
    assert data.handle == renamed.handle

    deactivate_account(renamed)
    hose.wait_for(
        lambda kind, m: (
            kind == "#account" and m.did == acct.did and not m.active and m.status == "deactivated"
        ),
        "deactivation",
    )
    activate_account(renamed)
    hose.wait_for(
        lambda kind, m: kind == "#account" and m.did == acct.did and m.active, "reactivation"
    )

    with pytest.raises(DevnetError, match="HTTP 401"):
        delete_account(renamed.pds_url, acct.did, "wrong-password")
    delete_account(renamed.pds_url, acct.did, devnet.admin_password)
    hose.wait_for(
        lambda kind, m: kind == "#account" and m.did == acct.did and m.status == "deleted",
        "deletion",
    )
    with pytest.raises(DevnetError, match="login as"):
        renamed.client()


def test_create_account_errors_are_clear(
    devnet: DevnetInfo, make_account: Callable[..., Account]
) -> None:
    taken = make_account(0)
    with pytest.raises(DevnetError, match="Handle already taken"):
        create_account(devnet.pds[0].url, taken.handle, "pw-123456", "other@example.com")
    with pytest.raises(DevnetError, match="handle domain"):
        create_account(devnet.pds[0].url, "someone.pds2.test", "pw-123456", "x@example.com")


# -- lifecycle of a Devnet of our own (PLC only: quick to start) ----------------------


def test_lifecycle_status_idempotent_up_busy_ports_and_down(tmp_path: Path) -> None:
    plc_port, pds_port = free_ports(2)
    net = Devnet(plc_port=plc_port, pds_ports=(), run_dir=tmp_path / "run")
    assert net.status() is None
    info = net.up(stop_with_parent=True)
    try:
        assert info.plc_url == f"http://localhost:{plc_port}" and info.pds == []
        assert net.status() == info
        assert net.up() == info  # already running: same network, no second process
        # another run folder on the same port: a clear error, nothing started
        with pytest.raises(DevnetError, match=f"port\\(s\\) {plc_port} .* in use"):
            Devnet(plc_port=plc_port, pds_ports=(), run_dir=tmp_path / "other").up()
        # a different network from the same run folder is refused
        with pytest.raises(DevnetError, match="another devnet runs"):
            Devnet(plc_port=pds_port, pds_ports=(), run_dir=tmp_path / "run").up()
        # a second manager (as `atdata devnet status` in another process) finds it
        assert Devnet(plc_port=plc_port, pds_ports=(), run_dir=tmp_path / "run").status() == info
    finally:
        assert net.down() is True
    assert net.status() is None
    assert net.down() is False
    assert port_is_free(plc_port)
    assert not Path(info.data_dir or "").exists()


def test_devnet_dies_with_its_parent(tmp_path: Path) -> None:
    plc_port, pds_port = free_ports(2)
    script = (
        "import sys, time\n"
        "from atdata.devnet import Devnet\n"
        f"info = Devnet(plc_port={plc_port}, pds_ports=({pds_port},), run_dir={str(tmp_path)!r}).up("
        "stop_with_parent=True)\n"
        "print(info.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        node_pid = int(parent.stdout.readline())  # type: ignore[union-attr]
        assert not port_is_free(pds_port)
        data_dir = Path(json.loads((tmp_path / "devnet.json").read_text())["data_dir"])
        assert data_dir.is_dir()
    finally:
        parent.send_signal(signal.SIGKILL)  # no cleanup code of the parent runs
        parent.wait()
    deadline = time.monotonic() + 20
    while _alive(node_pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(node_pid)
    assert port_is_free(plc_port) and port_is_free(pds_port)
    assert not data_dir.exists()  # the launcher removes its own data on the way out


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_down_kills_a_devnet_that_ignores_sigterm(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    net = Devnet(plc_port=port, pds_ports=(), run_dir=tmp_path)
    info = net.up(stop_with_parent=True)
    assert info.pid is not None
    os.kill(info.pid, signal.SIGSTOP)  # a stopped process cannot act on SIGTERM
    started = time.monotonic()
    assert net.down(grace=1.0) is True
    assert 1.0 <= time.monotonic() - started < 10
    assert not _alive(info.pid)
    assert port_is_free(port)


def test_install_reuses_a_ready_install_with_the_same_pins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, devnet: DevnetInfo
) -> None:
    # a fresh cache whose "prewarm" folder is the session's install: install() must
    # take it (hard links, no npm run) and leave a usable install behind
    (tmp_path / "devnet-prewarm").symlink_to(default_home().resolve())
    monkeypatch.setenv("ATDATA_CACHE", str(tmp_path))
    home = tmp_path / "devnet"
    assert check_install(home) == "not installed"
    started = time.monotonic()
    out = _cli("devnet", "install", env={"ATDATA_CACHE": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    assert time.monotonic() - started < 60
    assert f"devnet installed in {home}" in out.stdout
    assert check_install(home) is None

    # a stamp from other pins means "reinstall"
    stamp = home / ".atdata-devnet-installed"
    stamp.write_text(json.dumps({"node": "22.0.0", "lock": "0" * 64}))
    assert check_install(home) == "installed with other pins"
    shutil.rmtree(home)  # 50k hard links: not left for pytest's tmp rotation


def test_constructor_rejects_bad_settings() -> None:
    with pytest.raises(DevnetError, match="distinct"):
        Devnet(plc_port=4000, pds_ports=(4000, 4001))
    with pytest.raises(DevnetError, match="plc_url"):
        Devnet(plc_port=None, pds_ports=(4001,))
    with pytest.raises(DevnetError, match="one handle domain per PDS"):
        Devnet(plc_port=4000, pds_ports=(4001, 4002), handle_domains=(".a.test",))


def test_check_install_reports_a_missing_install(tmp_path: Path) -> None:
    assert check_install(tmp_path) == "not installed"


# -- CLI -----------------------------------------------------------------------------


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "atdata.cli", *args],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def cli_name() -> Iterator[str]:
    """A devnet instance name of its own (run folder under the cache), removed afterwards."""
    name = f"pytest-{os.getpid()}-{time.monotonic_ns()}"
    yield name
    _cli("devnet", "down", "--name", name)
    shutil.rmtree(default_run_dir(name), ignore_errors=True)


def test_cli_devnet_up_status_account_down(cli_name: str) -> None:
    plc, pds = free_ports(2)
    absent = _cli("devnet", "status", "--name", cli_name)
    assert absent.returncode == EXIT_ABSENT and "not running" in absent.stderr
    assert absent.stdout == ""

    up = _cli(
        "devnet", "up", "--name", cli_name, "--plc-port", str(plc), "--pds-port", str(pds),
        "--blob-limit-mib", "5", "--json",
    )  # fmt: skip
    assert up.returncode == 0, up.stderr
    info = json.loads(up.stdout)
    assert info["plc_url"] == f"http://localhost:{plc}"
    assert info["pds"][0]["blob_limit"] == 5 * 1024 * 1024
    # `up` returned, and the network keeps running in the background
    assert httpx.get(f"http://localhost:{pds}/xrpc/_health").status_code == 200

    exports = f"export ATDATA_PLC_URL=http://localhost:{plc} ATDATA_ALLOW_PRIVATE_NETWORK=1\n"
    status = _cli("devnet", "status", "--name", cli_name)
    assert status.returncode == 0 and f"http://localhost:{pds}" in status.stderr
    assert status.stdout == exports  # people's text on stderr: `eval "$(...)"` works

    # `up` again is a no-op that prints the running one's exports, whatever ports were asked
    again = _cli("devnet", "up", "--name", cli_name)
    assert again.returncode == 0, again.stderr
    assert again.stdout == exports and "other ports than asked" in again.stderr
    shell = subprocess.run(
        ["bash", "-c", f'eval "$({sys.executable} -m atdata.cli devnet up --name {cli_name} '
         f'--plc-port {plc} --pds-port {pds})" && echo "$ATDATA_PLC_URL"'],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert shell.returncode == 0 and shell.stdout == f"http://localhost:{plc}\n", shell.stderr
    # another instance name on the same ports finds it too
    other = _cli("devnet", "up", "--name", f"{cli_name}-b", "--plc-port", str(plc),
                 "--pds-port", str(pds))  # fmt: skip
    assert other.returncode == 0, other.stderr
    assert other.stdout == exports and f"instance {cli_name!r}" in other.stderr

    account = _cli("devnet", "account", "carol", "--name", cli_name)
    assert account.returncode == 0, account.stderr
    env = dict(
        line.removeprefix("export ").split("=", 1)
        for line in account.stdout.splitlines()
        if line.startswith("export ATDATA_PDS=") or line.startswith("export ATDATA_HANDLE=")
        or line.startswith("export ATDATA_PASSWORD=")
    )  # fmt: skip
    assert env["ATDATA_HANDLE"] == "carol.pds1.test"
    Account(did="", handle=env["ATDATA_HANDLE"], password=env["ATDATA_PASSWORD"],
            pds_url=env["ATDATA_PDS"]).client()  # fmt: skip

    again = _cli("devnet", "account", "carol", "--name", cli_name)
    assert again.returncode == 1
    assert (
        again.stderr.strip().startswith("error: ") and len(again.stderr.strip().splitlines()) == 1
    )
    assert "Handle already taken" in again.stderr

    down = _cli("devnet", "down", "--name", cli_name)
    assert down.returncode == 0 and "stopped" in down.stdout
    assert port_is_free(plc) and port_is_free(pds)
    assert _cli("devnet", "status", "--name", cli_name).returncode == EXIT_ABSENT


def test_cli_errors_are_one_line_and_debug_shows_the_traceback(
    capsys: pytest.CaptureFixture[str], cli_name: str
) -> None:
    assert main(["devnet", "account", "dave", "--name", cli_name]) == 1
    err = capsys.readouterr().err
    assert err == "error: the devnet is not running: start it with `atdata devnet up`\n"

    assert main(["--debug", "devnet", "account", "dave", "--name", cli_name]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "CliError" in err

    assert main(["devnet", "no-such-command"]) == 2
    assert "No such command" in capsys.readouterr().err
    assert main(["devnet", "up", "--plc-port", "not-a-number"]) == 2
    assert main(["--help"]) == 0
    assert "devnet" in capsys.readouterr().out
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("atdata ")


def test_cli_port_in_use_is_a_clear_error(cli_name: str, devnet: DevnetInfo) -> None:
    busy = devnet.pds[0].port
    out = _cli("devnet", "up", "--name", cli_name, "--plc-port", str(busy), "--pds-port", "1")
    assert out.returncode == 1
    assert out.stderr.splitlines()[-1].startswith(f"error: port(s) {busy} on 127.0.0.1 are in use")
