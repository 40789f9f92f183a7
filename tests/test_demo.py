"""`make demo` (`python -m atdata.demo`), run as a user runs it: a subprocess.

It must print one line per step, reach a test accuracy above 0.9, finish within 3 minutes
once the network is installed, and leave nothing running: neither when it completes nor when
it is interrupted with Ctrl-C (SIGINT to its process group, as a terminal sends it).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _fixtures.services import stop_process
from atdata.devnet import check_install, default_home, install, port_is_free

pytestmark = pytest.mark.devnet

WARM_LIMIT_S = 180  # the bound for a warm run; a limit, not a benchmark


@pytest.fixture(scope="module", autouse=True)
def network_installed() -> None:
    """Install the devnet first (cold installs take minutes and are not the demo's run time)."""
    if check_install(default_home()) is not None:
        install(default_home())


def processes_mentioning(text: str) -> list[str]:
    """Live processes whose command line mentions `text` (the demo's work folder)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cmdline and state != "Z":
            found.append(f"{entry.name}: {cmdline.strip()}")
    return found


def ports_in(output: str) -> list[int]:
    return sorted({int(p) for p in re.findall(r"http://(?:localhost|127\.0\.0\.1):(\d+)", output)})


def assert_nothing_left(workdir: Path, ports: list[int]) -> None:
    deadline = time.monotonic() + 10
    while processes_mentioning(str(workdir)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert processes_mentioning(str(workdir)) == []
    busy = [p for p in ports if not port_is_free(p)]
    assert busy == [], f"ports still listening: {busy}"


def demo(workdir: Path, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATDATA_")}
    return subprocess.Popen(
        [sys.executable, "-m", "atdata.demo", "--workdir", str(workdir), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,  # its own process group, like a shell job
    )


def test_demo_trains_above_90_percent_and_stops_everything(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    started = time.monotonic()
    proc = demo(workdir)
    try:
        stdout, stderr = proc.communicate(timeout=WARM_LIMIT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
        pytest.fail(f"the demo took over {WARM_LIMIT_S} s:\n{stdout}\n{stderr}")
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, f"{stdout}\n{stderr}"
    lines = stdout.splitlines()
    steps = [line for line in lines if re.match(r"\[\s*\d+/10\] ", line)]
    assert [int(re.match(r"\[\s*(\d+)", s).group(1)) for s in steps] == list(range(1, 11))
    assert all(len(s) < 400 for s in steps), "one readable line per step"
    joined = "\n".join(steps)
    for phrase in ("local ATProto network up", "AppView up", "A published schema",
                   "A published dataset", "indexed", "search 'handwritten digits'",
                   "resolved the URI", "trained a logistic regression"):  # fmt: skip
        assert phrase in joined, phrase
    # the AppView step waits for every record A published, the lens included
    (index_line,) = [s for s in steps if "indexed the records" in s]
    assert "datasets 1, lenses 1)" in index_line, index_line
    (accuracy_line,) = [line for line in lines if line.startswith("test accuracy: ")]
    accuracy = float(accuracy_line.split()[2])
    assert accuracy > 0.9, accuracy_line
    assert lines[-1].startswith("done in ")
    assert elapsed < WARM_LIMIT_S
    assert_nothing_left(workdir, ports_in(stdout))


def test_ctrl_c_stops_everything(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    proc = demo(workdir)
    seen: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            seen.append(line)
            if line.startswith("[ 3/10]"):  # network and AppView are both up
                break
        else:
            pytest.fail("the demo ended before its third step:\n" + "".join(seen))
        assert processes_mentioning(str(workdir)), "the network and AppView should be running"
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        rest, stderr = proc.communicate(timeout=60)
    finally:
        stop_process(proc, signal.SIGKILL)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr
    assert "test accuracy" not in rest
    assert_nothing_left(workdir, ports_in("".join(seen)))


def test_serve_keeps_the_web_page_up_until_ctrl_c(tmp_path: Path) -> None:
    import httpx

    workdir = tmp_path / "demo"
    proc = demo(workdir, "--serve", "--epochs", "3")
    seen: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            seen.append(line)
            if line.startswith("serving: "):
                break
        else:
            pytest.fail("the demo ended without serving:\n" + "".join(seen))
        page_url = re.search(r"web page (http://\S+/)", seen[-1]).group(1)
        uri = re.search(r"dataset (at://\S+)", seen[-1]).group(1)
        listing = httpx.get(page_url, params={"q": "handwritten digits"}, timeout=10)
        assert listing.status_code == 200 and "sklearn-digits" in listing.text
        link = re.search(r"href='(/datasets/[^']+)'", listing.text).group(1)
        page = httpx.get(page_url.rstrip("/") + link, timeout=10)
        assert uri in page.text and "load_dataset" in page.text
        os.killpg(proc.pid, signal.SIGINT)
        rest, stderr = proc.communicate(timeout=60)
    finally:
        stop_process(proc, signal.SIGKILL)
    assert proc.returncode == 0, stderr
    assert "stopped everything the demo started" in rest
    assert_nothing_left(workdir, ports_in("".join(seen)))
