"""docker/: the compose file validates, and the Dockerfile's install gives a working AppView.

No Docker engine runs on this machine, so the image itself is never built. What is exercised
instead: `docker-compose config` (Debian's docker-compose) parses and resolves compose.yaml;
the Dockerfile's build-stage COPY and RUN instructions are replayed in a temporary folder with
a fresh venv; the runtime stage's ENV and CMD then start `atdata appview serve` from that venv
(following the devnet's PDS), and its HEALTHCHECK command is run against it.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import yaml
from _fixtures.services import stop_process
from atdata.devnet import DevnetInfo, free_ports

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"


# -- a small Dockerfile reader (enough for our own file) ----------------------------------------


@dataclass
class Stage:
    base: str
    name: str | None = None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, op: str) -> list[str]:
        return [arg for o, arg in self.instructions if o == op]


def read_dockerfile(path: Path) -> list[Stage]:
    """Stages with their instructions: continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        op, _, rest = line.partition(" ")
        op, rest = op.upper(), rest.strip()
        if op == "ARG" and not stages:
            key, _, value = rest.partition("=")
            args[key] = value
            continue
        if op == "FROM":
            for key, value in args.items():
                rest = rest.replace("${" + key + "}", value)
            words = rest.split()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=words[0], name=name))
            continue
        stages[-1].instructions.append((op, rest))
    return stages


def env_pairs(arg: str) -> dict[str, str]:
    """`ENV A=1 B=$A:x` -> {"A": "1", "B": "$A:x"} (values not expanded yet)."""
    return dict(word.split("=", 1) for word in shlex.split(arg))


def exec_form(arg: str) -> list[str]:
    return json.loads(arg)


# -- compose ------------------------------------------------------------------------------------


def compose_config() -> dict:
    out = subprocess.run(
        ["docker-compose", "-f", str(DOCKER / "compose.yaml"), "config"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return yaml.safe_load(out.stdout)


@pytest.fixture(scope="module")
def compose() -> dict:
    if shutil.which("docker-compose") is None:
        pytest.fail(
            "docker-compose is missing: run `make system-deps` (apt package docker-compose)"
        )
    return compose_config()


def test_compose_has_the_whole_stack(compose: dict) -> None:
    services = compose["services"]
    assert {"appview", "postgres", "s3", "plc", "pds"} <= set(services)
    appview = services["appview"]
    assert appview["build"]["dockerfile"] == "docker/Dockerfile"
    assert Path(appview["build"]["context"]) == ROOT
    env = appview["environment"]
    assert env["ATDATA_APPVIEW_DB"].startswith("postgresql+psycopg://")
    assert env["ATDATA_APPVIEW_DB"].endswith("@postgres:5432/appview")
    assert env["ATDATA_APPVIEW_FIREHOSE"].startswith("ws://")
    assert env["ATDATA_PLC_URL"] == "http://plc:2582"
    assert services["pds"]["environment"]["PDS_DID_PLC_URL"] == "http://plc:2582"
    assert services["pds"]["environment"]["PDS_BLOBSTORE_S3_ENDPOINT"] == "http://s3:9000"
    assert appview["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_compose_volumes_are_named(compose: dict) -> None:
    declared = set(compose["volumes"])
    assert {"pgdata", "s3data", "pdsdata", "appview-data"} <= declared
    for name in ("postgres", "s3", "pds", "appview"):
        mounts = compose["services"][name]["volumes"]
        # short syntax "source:target[:mode]": a named volume's source is not a path
        sources = [m.split(":")[0] for m in mounts]
        named = [s for s in sources if not s.startswith(("/", "."))]
        assert named and all(s in declared for s in named), name


def test_compose_secrets_come_from_the_environment() -> None:
    env = {**os.environ, "POSTGRES_PASSWORD": "s3cret-pg", "PDS_JWT_SECRET": "jwt-xyz"}
    out = subprocess.run(
        ["docker-compose", "-f", str(DOCKER / "compose.yaml"), "config"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    cfg = yaml.safe_load(out.stdout)
    assert ":s3cret-pg@postgres" in cfg["services"]["appview"]["environment"]["ATDATA_APPVIEW_DB"]
    assert cfg["services"]["pds"]["environment"]["PDS_JWT_SECRET"] == "jwt-xyz"


def test_compose_refuses_a_broken_file(tmp_path: Path) -> None:
    """The validation step can fail: a service with an unknown key is rejected."""
    broken = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    broken["services"]["appview"]["heathcheck"] = {"test": ["CMD", "true"]}
    path = tmp_path / "compose.yaml"
    path.write_text(yaml.safe_dump(broken))
    shutil.copy(DOCKER / "postgres-init.sql", tmp_path)
    out = subprocess.run(
        ["docker-compose", "-f", str(path), "config"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode != 0
    assert "heathcheck" in out.stderr


# -- Dockerfile ---------------------------------------------------------------------------------


def test_dockerfile_is_slim_non_root_and_health_checked() -> None:
    stages = read_dockerfile(DOCKER / "Dockerfile")
    assert len(stages) == 2, "a build stage and a runtime stage"
    runtime = stages[-1]
    assert runtime.base.endswith("-slim")
    users = runtime.all("USER")
    assert users and users[-1] not in ("root", "0")
    (check,) = runtime.all("HEALTHCHECK")
    assert "/_health" in check
    assert runtime.all("COPY") == ["--from=build /opt/venv /opt/venv"], "only the venv"
    assert exec_form(runtime.all("CMD")[-1]) == ["atdata", "appview", "serve"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Replay the build stage: COPY from the repository, RUN with /src and /opt/venv relocated."""
    stages = read_dockerfile(DOCKER / "Dockerfile")
    build = stages[0]
    base = tmp_path_factory.mktemp("dockerfile")
    src, venv = base / "src", base / "venv"
    relocate = {"/src": str(src), "/opt/venv": str(venv)}

    def here(path: str) -> str:
        for old, new in relocate.items():
            if path == old or path.startswith(old + "/"):
                return new + path[len(old) :]
        raise AssertionError(f"unexpected path {path} in the Dockerfile")

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "VIRTUAL_ENV"))}
    for op, arg in build.instructions:
        if op == "ENV":
            env.update(env_pairs(arg))
            # the pip cache only saves downloads; resolution and install are the same
            env.pop("PIP_NO_CACHE_DIR", None)
        elif op == "COPY":
            *sources, dest = arg.split()
            target = Path(here(dest))
            for s in sources:
                origin = ROOT / s
                if origin.is_dir():
                    shutil.copytree(
                        origin, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
                    )
                else:
                    target.mkdir(parents=True, exist_ok=True)
                    shutil.copy(origin, target / origin.name)
        elif op == "RUN":
            command = arg
            for old, new in relocate.items():
                command = command.replace(old, new)
            # `python` in the image is the base image's interpreter: here, the system python3
            command = command.replace("python -m venv", f"{shutil.which('python3')} -m venv")
            done = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", command],
                env=env,
                cwd=base,
                capture_output=True,
                text=True,
                timeout=900,
            )
            assert done.returncode == 0, f"RUN {arg}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        else:
            raise AssertionError(f"build stage instruction {op} is not replayed by this test")
    assert (venv / "bin" / "atdata").exists()
    return {"venv": venv, "base": base}


def test_dockerfile_install_serves_the_appview(
    installed: dict[str, Path], devnet: DevnetInfo
) -> None:
    venv, base = installed["venv"], installed["base"]
    runtime = read_dockerfile(DOCKER / "Dockerfile")[-1]
    # the installed package is the copy, not the editable checkout
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import atdata, atdata_appview; "
         "print(atdata.__file__); print(atdata_appview.__file__)"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert all(str(venv) in p for p in where), where

    env = {k: v for k, v in os.environ.items() if not k.startswith("ATDATA_")}
    for arg in runtime.all("ENV"):
        for key, value in env_pairs(arg).items():
            value = value.replace("$PATH", env["PATH"]).replace("/opt/venv", str(venv))
            env[key] = value.replace("sqlite:////data/", f"sqlite:///{base}/")
    assert env["ATDATA_APPVIEW_DB"] == f"sqlite:///{base}/index.sqlite"
    (port,) = free_ports(1)
    env.update(
        ATDATA_APPVIEW_HOST="127.0.0.1",
        ATDATA_APPVIEW_PORT=str(port),
        ATDATA_APPVIEW_FIREHOSE=devnet.pds[0].ws_url,
        ATDATA_PLC_URL=devnet.plc_url,
    )
    cmd = exec_form(runtime.all("CMD")[-1])
    proc = subprocess.Popen(
        cmd, env=env, cwd=base, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            try:
                health = httpx.get(f"{url}/_health", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the AppView did not listen within 60 s"
                time.sleep(0.3)
        assert health.status_code == 200
        assert health.json() == {"status": "ok"}

        check = runtime.all("HEALTHCHECK")[0]
        probe = exec_form(check[check.index("CMD") + 3 :].strip())
        ok = subprocess.run(probe, env=env, capture_output=True, text=True, timeout=30)
        assert ok.returncode == 0, ok.stderr

        described = httpx.get(f"{url}/xrpc/io.atdata.describeService", timeout=5).json()
        assert devnet.pds[0].ws_url in json.dumps(described)
        page = httpx.get(f"{url}/", timeout=5)
        assert page.status_code == 200 and "<form" in page.text
    finally:
        stop_process(proc, signal.SIGINT, 20)

    # the health check fails once nothing listens: it can tell a dead AppView apart
    dead = subprocess.run(probe, env=env, capture_output=True, text=True, timeout=30)
    assert dead.returncode != 0
