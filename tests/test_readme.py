"""Every code block in README.md runs, in order, as a reader following along would run it.

- ```python blocks run in one persistent interpreter (later blocks use names defined earlier,
  as in a notebook); ```bash blocks run with bash, each in a fresh shell that starts from the
  environment the previous blocks exported (so `eval "$(atdata devnet account alice)"` carries
  over to Python). Both run in one scratch folder, with the project's venv first on PATH.
- The README's local network uses well-known ports (PLC 2582, PDS 2583/2584, AppView 8080);
  the test maps them to free ports and gives the network its own instance name, so it never
  meets a developer's own devnet or another test run. That is the only rewriting.
- A block preceded by `<!-- not run: <why> -->` is not run, and must say so in its own text.
  `<!-- dry run -->` runs a make command with `make -n` (running `make test` from inside the
  test suite would recurse; `make demo` itself runs in tests/test_demo.py).
- ```text blocks (diagrams) are not code; ```yaml blocks must parse.
Also: every ATDATA_* environment variable the code reads is in the README's tables.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from atdata.devnet import check_install, default_home, free_ports, install

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
RUN_LANGS = {"python", "bash"}
DATA_LANGS = {"text", "yaml"}
WELL_KNOWN_PORTS = (2582, 2583, 2584, 8080)


@dataclass(frozen=True)
class Block:
    lang: str
    code: str
    line: int  # README line of the first code line
    marker: str | None  # "not run" / "dry run"
    reason: str


_MARKER = re.compile(r"^<!--\s*(not run|dry run)\s*:?\s*(.*?)\s*-->$")


def read_blocks(text: str) -> list[Block]:
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    previous = ""
    while i < len(lines):
        line = lines[i]
        fence = re.match(r"^```(\w*)\s*$", line)
        if fence is None:
            if line.strip():
                previous = line.strip()
            i += 1
            continue
        lang, start = fence.group(1), i + 1
        j = start
        while j < len(lines) and lines[j].rstrip() != "```":
            j += 1
        assert j < len(lines), f"README.md:{i + 1}: unclosed code block"
        m = _MARKER.match(previous)
        blocks.append(
            Block(
                lang=lang,
                code="\n".join(lines[start:j]) + "\n",
                line=start + 1,
                marker=m.group(1) if m else None,
                reason=m.group(2) if m else "",
            )
        )
        previous = ""
        i = j + 1
    return blocks


BLOCKS = read_blocks(README.read_text())


def test_readme_starts_with_the_two_commands() -> None:
    first = next(b for b in BLOCKS if b.lang == "bash")
    commands = [ln.split("#")[0].strip() for ln in first.code.splitlines() if ln.strip()]
    assert commands == ["make demo", "make test"]
    assert first is BLOCKS[0]


def test_blocks_are_known_kinds_and_marked_honestly() -> None:
    assert BLOCKS, "README.md has no code blocks"
    for b in BLOCKS:
        where = f"README.md:{b.line}"
        assert b.lang in RUN_LANGS | DATA_LANGS, f"{where}: block language {b.lang!r}"
        if b.marker == "not run":
            assert b.lang in RUN_LANGS, where
            assert b.reason, f"{where}: say why it is not run"
            assert "not run" in b.code.lower(), f"{where}: the block must say it is not run"
        if b.marker == "dry run":
            assert all(
                ln.split("#")[0].strip().startswith("make ")
                for ln in b.code.splitlines()
                if ln.strip()
            ), f"{where}: only make commands can be dry-run"
        if b.lang == "yaml":
            assert yaml.safe_load(b.code) is not None, where
    runnable = [b for b in BLOCKS if b.lang in RUN_LANGS and b.marker is None]
    assert len(runnable) >= 8, "most of the README must actually run"


def _env_vars_in_code() -> set[str]:
    """ATDATA_* names in string literals of the code, minus Python constants of that name
    (listed in `__all__`) and the devnet launcher's stdout marker."""
    names: set[str] = set()
    constants: set[str] = set()
    for base in (ROOT / "sdk" / "atdata", ROOT / "appview" / "atdata_appview"):
        for path in base.rglob("*.py"):
            text = path.read_text()
            names |= set(re.findall(r"[\"'](ATDATA_[A-Z0-9_]+)[\"']", text))
            constants |= set(re.findall(r"^(ATDATA_[A-Z0-9_]+)\s*[:=]", text, re.MULTILINE))
    return names - constants - {"ATDATA_DEVNET_READY"}


def test_every_environment_variable_is_documented() -> None:
    text = README.read_text()
    documented = set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)`", text, re.MULTILINE))
    missing = sorted(_env_vars_in_code() - documented)
    assert missing == [], f"not in the README's configuration tables: {missing}"
    for aws in ("AWS_ENDPOINT_URL", "AWS_REGION"):
        assert aws in documented


# -- running it -------------------------------------------------------------------------------

_RUNNER = textwrap.dedent(
    """
    import json, os, sys, traceback
    reply = os.fdopen(int(sys.argv[1]), "w", buffering=1)
    namespace = {"__name__": "__main__"}
    for command in sys.stdin:
        request = json.loads(command)
        os.environ.clear()
        os.environ.update(request["env"])
        source = "\\n" * (request["line"] - 1) + request["code"]
        try:
            exec(compile(source, "README.md", "exec"), namespace)
        except BaseException:
            reply.write(json.dumps({"ok": False, "error": traceback.format_exc()}) + "\\n")
        else:
            reply.write(json.dumps({"ok": True}) + "\\n")
        sys.stdout.flush()
        sys.stderr.flush()
    """
)


class Session:
    """A persistent Python interpreter and a chain of bash shells sharing env and folder."""

    def __init__(self, workdir: Path, env: dict[str, str], ports: dict[int, int]) -> None:
        self.workdir = workdir
        self.env = env
        self.ports = ports
        self.groups: list[int] = []  # process groups of bash blocks (background jobs live there)
        read_fd, write_fd = os.pipe()
        self.log = open(workdir / "python.log", "w")  # noqa: SIM115 - closed in close()
        self.python = subprocess.Popen(
            [sys.executable, "-c", _RUNNER, str(write_fd)],
            stdin=subprocess.PIPE,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=workdir,
            env=env,
            pass_fds=(write_fd,),
            start_new_session=True,
        )
        os.close(write_fd)
        self.replies = os.fdopen(read_fd, "r")

    def remap(self, code: str) -> str:
        return re.sub(
            r"\b(" + "|".join(map(str, self.ports)) + r")\b",
            lambda m: str(self.ports[int(m.group(1))]),
            code,
        )

    def run_python(self, block: Block) -> None:
        saved = re.match(r"# file: (\S+)\n", block.code)
        if saved is not None:
            (self.workdir / saved.group(1)).write_text(self.remap(block.code))
            return
        assert self.python.stdin is not None
        request = {"env": self.env, "line": block.line, "code": self.remap(block.code)}
        self.python.stdin.write(json.dumps(request) + "\n")
        self.python.stdin.flush()
        answer = self.replies.readline()
        if not answer:
            pytest.fail(f"README.md:{block.line}: the interpreter died\n{self._tail('python.log')}")
        result = json.loads(answer)
        if not result["ok"]:
            pytest.fail(
                f"README.md:{block.line}: python block failed\n{result['error']}\n"
                f"output:\n{self._tail('python.log')}"
            )

    def run_bash(self, block: Block, dry: bool = False) -> None:
        code = self.remap(block.code)
        if dry:
            code = re.sub(r"^make ", "make -n -C " + str(ROOT) + " ", code, flags=re.MULTILINE)
        env_out = self.workdir / ".env.json"
        dump = (
            "import json, os; path = os.environ.pop('README_ENV_OUT'); "
            "json.dump(dict(os.environ), open(path, 'w'))"
        )
        script = (
            f"set -euo pipefail\n{code}\n"
            f'README_ENV_OUT={shlex.quote(str(env_out))} {shlex.quote(sys.executable)} -c "{dump}"\n'
        )
        log_path = self.workdir / f"bash-{block.line}.log"
        with open(log_path, "w") as log:
            proc = subprocess.Popen(
                ["bash", "-c", script],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env=self.env,
                start_new_session=True,
            )
            self.groups.append(proc.pid)
            try:
                code_ = proc.wait(timeout=300)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                pytest.fail(f"README.md:{block.line}: bash block took over 300 s")
        if code_ != 0:
            pytest.fail(
                f"README.md:{block.line}: bash block exited with {code_}\n"
                f"{log_path.read_text()[-4000:]}"
            )
        self.env = json.loads(env_out.read_text())

    def _tail(self, name: str) -> str:
        self.log.flush()
        return (self.workdir / name).read_text(errors="replace")[-4000:]

    def close(self) -> None:
        if self.python.stdin is not None:
            self.python.stdin.close()
        try:
            self.python.wait(30)
        except subprocess.TimeoutExpired:
            self.python.kill()
            self.python.wait()
        self.replies.close()
        self.log.close()
        for group in self.groups:  # background jobs the README started (the AppView)
            for sig in (signal.SIGINT, signal.SIGKILL):
                try:
                    os.killpg(group, sig)
                except ProcessLookupError:
                    break
                if sig == signal.SIGINT:
                    import time

                    time.sleep(1.0)


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    if check_install(default_home()) is not None:
        install(default_home())
    ports = dict(zip(WELL_KNOWN_PORTS, free_ports(len(WELL_KNOWN_PORTS)), strict=True))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ATDATA_", "AWS_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(Path(sys.executable).parent.parent)
    name = f"readme-{secrets.token_hex(3)}"
    env["ATDATA_DEVNET_NAME"] = name
    if os.environ.get("ATDATA_CACHE"):
        env["ATDATA_CACHE"] = os.environ["ATDATA_CACHE"]
    work = tmp_path / "reader"
    work.mkdir()
    s = Session(work, env, ports)
    try:
        yield s
    finally:
        s.close()
        subprocess.run(
            [sys.executable, "-m", "atdata.cli", "devnet", "down", "--name", name],
            capture_output=True,
            env=env,
            timeout=60,
        )


@pytest.mark.devnet
def test_every_block_runs_in_order(session: Session) -> None:
    ran = 0
    for block in BLOCKS:
        if block.lang not in RUN_LANGS or block.marker == "not run":
            continue
        if block.lang == "python":
            session.run_python(block)
        else:
            session.run_bash(block, dry=block.marker == "dry run")
        ran += 1
    assert ran >= 8


@pytest.mark.devnet
def test_documented_metrics_are_served(appview: object, published: object) -> None:
    """Every metric the README's table names is in the AppView's /metrics (HELP lines)."""
    import httpx

    text = README.read_text()
    table = text[text.index("| metric | meaning |") :].split("\n\n", 1)[0]
    documented = set(re.findall(r"`(atdata_appview_[a-z_]+)", table))
    assert len(documented) >= 10
    served = httpx.get(f"{appview.url}/metrics", timeout=10).text  # type: ignore[attr-defined]
    helped = set(re.findall(r"^# HELP (\S+) ", served, re.MULTILINE))
    assert documented <= helped, sorted(documented - helped)
