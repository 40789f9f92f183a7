"""Start, find and stop a local ATProto network (PLC + PDSes) on loopback.

One Node process runs `devnet.mjs`; its pid, log, config and ready info live in
a run folder, so a later process (`atdata devnet status`/`down`) finds it again.
The PLC keeps its database in memory, so every start is a fresh, empty network
and the PDS data (in a temporary folder) is thrown away on stop.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .._locks import file_lock
from ._install import DevnetError, cache_root, default_home, install, node_binary

log = logging.getLogger(__name__)

DEFAULT_PLC_PORT = 2582
DEFAULT_PDS_PORTS = (2583, 2584)
DEFAULT_BLOB_LIMIT = 100 * 1024 * 1024
"""Blob upload limit the devnet gives its PDSes (the stock PDS allows 5 MiB)."""
STOCK_BLOB_LIMIT = 5 * 1024 * 1024
"""The reference PDS's own default blob upload limit."""
DEFAULT_ADMIN_PASSWORD = "admin-pass"

_READY = "ATDATA_DEVNET_READY "
_LAUNCHER = Path(__file__).with_name("devnet.mjs")


@dataclass(frozen=True)
class PdsInfo:
    """One PDS of the devnet. `url` is its public (and XRPC) base URL."""

    url: str
    port: int
    handle_domain: str
    did: str = ""
    blob_limit: int = DEFAULT_BLOB_LIMIT

    @property
    def ws_url(self) -> str:
        """Websocket base of this PDS's firehose (`<ws_url>/xrpc/com.atproto.sync.subscribeRepos`)."""
        return f"ws://localhost:{self.port}"

    def handle(self, name: str) -> str:
        """A full handle on this PDS for the first label `name` (3-18 characters)."""
        return f"{name}{self.handle_domain}".lower()


@dataclass(frozen=True)
class DevnetInfo:
    """A running devnet: where its PLC and PDSes listen, and how to reach it as admin."""

    plc_url: str
    pds: list[PdsInfo]
    admin_password: str
    pid: int | None = None
    run_dir: str | None = None
    data_dir: str | None = None
    startup_ms: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready form (what `atdata devnet up --json` prints)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DevnetInfo:
        known = {"plc_url", "admin_password", "pid", "run_dir", "data_dir", "startup_ms"}
        return cls(
            pds=[PdsInfo(**p) for p in data["pds"]],
            **{k: v for k, v in data.items() if k in known},
        )


def default_run_dir(name: str = "default") -> Path:
    """Pid, log and info files of the devnet instance `name`: `<cache>/devnet-run/<name>`.

    Kept apart from the install folder, which a reinstall may replace.
    """
    return cache_root() / "devnet-run" / name


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when nothing listens on `host:port` (checked by binding it).

    SO_REUSEADDR, as servers set it: connections of a stopped server that linger
    in TIME_WAIT do not make the port busy.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_ports(count: int) -> list[int]:
    """`count` distinct ports the kernel reports free on 127.0.0.1 right now."""
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


def pid_alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie counts as gone); also the test watchdog's check."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is dead for our purposes
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def _is_launcher(pid: int) -> bool:
    """Guards against pid reuse: the process must still be our launcher."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return pid_alive(pid)
    return _LAUNCHER.name.encode() in cmdline


class Devnet:
    """A local ATProto network: an in-memory PLC directory and N reference PDSes.

    >>> net = Devnet(plc_port=32582, pds_ports=(32583, 32584))  # doctest: +SKIP
    >>> info = net.up()                                         # doctest: +SKIP
    >>> net.down()                                              # doctest: +SKIP

    `plc_port=None` with `plc_url=` runs PDSes only, registering their accounts in
    an already running PLC (e.g. a PDS with other settings beside a devnet).
    `stop_with_parent=True` in `up()` makes the network exit when this process
    dies, so a killed test run or demo leaves nothing behind.
    """

    def __init__(
        self,
        home: str | Path | None = None,
        plc_port: int | None = DEFAULT_PLC_PORT,
        pds_ports: Sequence[int] = DEFAULT_PDS_PORTS,
        *,
        plc_url: str | None = None,
        handle_domains: Sequence[str] | None = None,
        blob_limit: int = DEFAULT_BLOB_LIMIT,
        admin_password: str = DEFAULT_ADMIN_PASSWORD,
        run_dir: str | Path | None = None,
        name: str = "default",
    ) -> None:
        self.home = Path(home) if home is not None else default_home()
        if plc_port is None and not plc_url:
            raise DevnetError("give plc_port (start a PLC) or plc_url (use a running one)")
        self.plc_port = plc_port
        self.plc_url = plc_url if plc_port is None else f"http://localhost:{plc_port}"
        self.pds_ports = tuple(int(p) for p in pds_ports)
        if handle_domains is None:
            handle_domains = [f".pds{i + 1}.test" for i in range(len(self.pds_ports))]
        self.handle_domains = [d if d.startswith(".") else "." + d for d in handle_domains]
        if len(self.handle_domains) != len(self.pds_ports):
            raise DevnetError("give one handle domain per PDS port")
        ports = [*([plc_port] if plc_port else []), *self.pds_ports]
        if len(set(ports)) != len(ports):
            raise DevnetError(f"devnet ports must be distinct, got {ports}")
        if blob_limit <= 0:
            raise DevnetError("blob_limit must be positive")
        self.blob_limit = int(blob_limit)
        self.admin_password = admin_password
        self.run_dir = Path(run_dir) if run_dir is not None else default_run_dir(name)
        self._proc: subprocess.Popen[bytes] | None = None

    # -- files in the run folder -------------------------------------------------
    @property
    def log_path(self) -> Path:
        return self.run_dir / "devnet.log"

    @property
    def _pid_path(self) -> Path:
        return self.run_dir / "devnet.pid"

    @property
    def _info_path(self) -> Path:
        return self.run_dir / "devnet.json"

    def _locked(self) -> contextlib.AbstractContextManager[None]:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        return file_lock(self.run_dir / ".lock")

    def install(self) -> Path:
        """Install Node 22 and the PDS/PLC packages into `home` unless already there."""
        return install(self.home)

    def status(self) -> DevnetInfo | None:
        """The running network's info, or None when it is not running."""
        try:
            pid = int(self._pid_path.read_text())
        except (OSError, ValueError):
            return None
        if self._proc is not None and self._proc.pid == pid:
            alive = self._proc.poll() is None
        else:
            alive = pid_alive(pid) and _is_launcher(pid)
        if not alive:
            return None
        try:
            return DevnetInfo.from_dict(json.loads(self._info_path.read_text()))
        except (OSError, ValueError, KeyError, TypeError):
            return None  # started but not ready yet (or being stopped)

    def up(self, *, timeout: float = 120.0, stop_with_parent: bool = False) -> DevnetInfo:
        """Start the network (installing first if needed) and wait until it serves.

        When this run folder's network already runs with the same ports, its info
        is returned instead. Raises `DevnetError` naming a busy port or quoting the
        launcher's log when it does not come up within `timeout` seconds.
        """
        with self._locked():
            running = self.status()
            if running is not None:
                ports = [p.port for p in running.pds]
                if ports == list(self.pds_ports) and running.plc_url == self.plc_url:
                    log.info("devnet already running (pid %s)", running.pid)
                    return running
                raise DevnetError(
                    f"another devnet runs from {self.run_dir} (pid {running.pid}, PLC "
                    f"{running.plc_url}, PDS ports {ports}); stop it first (`atdata devnet down`)"
                )
            self._clear_state()
            self.install()
            busy = [
                p
                for p in [*([self.plc_port] if self.plc_port else []), *self.pds_ports]
                if not port_is_free(p)
            ]
            if busy:
                raise DevnetError(
                    f"port(s) {', '.join(map(str, busy))} on 127.0.0.1 are in use: another "
                    "devnet may be running (`atdata devnet status`), or choose other ports"
                )
            return self._start(timeout, stop_with_parent)

    def _start(self, timeout: float, stop_with_parent: bool) -> DevnetInfo:
        data_dir = Path(tempfile.mkdtemp(prefix="atdata-devnet-"))
        config = {
            "modules": str(self.home),
            "dataDir": str(data_dir),
            "plcPort": self.plc_port,
            "plcUrl": self.plc_url,
            "pds": [
                {"port": port, "handleDomain": domain, "blobLimit": self.blob_limit}
                for port, domain in zip(self.pds_ports, self.handle_domains, strict=True)
            ],
            "adminPassword": self.admin_password,
            "parentPid": os.getpid() if stop_with_parent else None,
        }
        config_path = self.run_dir / "config.json"
        config_path.write_text(json.dumps(config, indent=2))
        started = time.monotonic()
        with open(self.log_path, "wb") as log_file:
            proc = subprocess.Popen(
                [str(node_binary(self.home)), str(_LAUNCHER), str(config_path)],
                cwd=self.home,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C in the caller's terminal is not ours
            )
        self._proc = proc
        self._pid_path.write_text(str(proc.pid))
        try:
            ready = self._wait_ready(proc, started + timeout)
        except BaseException:
            self._stop_pid(proc.pid, grace=5.0)
            shutil.rmtree(data_dir, ignore_errors=True)
            self._clear_state()
            raise
        info = DevnetInfo(
            plc_url=ready["plcUrl"],
            pds=[
                PdsInfo(
                    url=p["url"],
                    port=p["port"],
                    handle_domain=p["handleDomain"],
                    did=p["did"],
                    blob_limit=p["blobLimit"],
                )
                for p in ready["pds"]
            ],
            admin_password=ready["adminPassword"],
            pid=proc.pid,
            run_dir=str(self.run_dir),
            data_dir=str(data_dir),
            startup_ms=ready["startupMs"],
        )
        self._info_path.write_text(json.dumps(info.to_dict(), indent=2))
        log.info(
            "devnet up in %.1f s: PLC %s, PDS %s",
            time.monotonic() - started,
            info.plc_url,
            ", ".join(p.url for p in info.pds),
        )
        return info

    def _wait_ready(self, proc: subprocess.Popen[bytes], deadline: float) -> dict[str, Any]:
        while True:
            text = self.log_path.read_text(errors="replace")
            for line in text.splitlines():
                if line.startswith(_READY):
                    return json.loads(line[len(_READY) :])
            if proc.poll() is not None:
                raise DevnetError(
                    f"the devnet exited with code {proc.returncode} before it was ready; "
                    f"end of {self.log_path}:\n{_tail(text)}"
                )
            if time.monotonic() > deadline:
                raise DevnetError(
                    f"the devnet was not ready in time; end of {self.log_path}:\n{_tail(text)}"
                )
            time.sleep(0.1)

    def down(self, *, grace: float = 15.0) -> bool:
        """Stop the network (SIGTERM, then SIGKILL after `grace` s); True if it was running."""
        with self._locked():
            try:
                data_dir = json.loads(self._info_path.read_text()).get("data_dir")
            except (OSError, ValueError, AttributeError):
                data_dir = None
            try:
                pid = int(self._pid_path.read_text())
            except (OSError, ValueError):
                pid = None
            was_running = pid is not None and (
                (self._proc is not None and self._proc.poll() is None)
                or (pid_alive(pid) and _is_launcher(pid))
            )
            if was_running and pid is not None:
                self._stop_pid(pid, grace)
            if data_dir:
                shutil.rmtree(data_dir, ignore_errors=True)
            self._clear_state()
            return was_running

    def _stop_pid(self, pid: int, grace: float) -> None:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        if self._proc is not None and self._proc.pid == pid:
            try:
                self._proc.wait(grace)
            except subprocess.TimeoutExpired:
                log.warning("devnet pid %s ignored SIGTERM for %.0f s; killing it", pid, grace)
                self._proc.kill()
                self._proc.wait()
            return
        deadline = time.monotonic() + grace
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if pid_alive(pid):
            log.warning("devnet pid %s ignored SIGTERM for %.0f s; killing it", pid, grace)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            while pid_alive(pid):
                time.sleep(0.05)

    def _clear_state(self) -> None:
        for path in (self._pid_path, self._info_path):
            path.unlink(missing_ok=True)

    def __enter__(self) -> DevnetInfo:
        return self.up(stop_with_parent=True)

    def __exit__(self, *exc: object) -> None:
        self.down()


def _tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])
