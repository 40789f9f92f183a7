"""Fixtures for the atdata 0.7 peer: the PyPI package in its own Python 3.12 venv.

Its import name is also ``atdata``, so it only ever runs in a subprocess of that venv.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
ENSURE = REPO / "scripts" / "ensure-peer-venv.sh"


@pytest.fixture(scope="session")
def peer_python() -> str:
    """Path of the peer venv's python (created on first use by scripts/ensure-peer-venv.sh)."""
    proc = subprocess.run(
        ["bash", str(ENSURE)], capture_output=True, text=True, timeout=1800, check=False
    )
    if proc.returncode != 0:
        pytest.fail(f"could not prepare the atdata 0.7 peer venv:\n{proc.stderr[-4000:]}")
    return proc.stdout.strip().splitlines()[-1]


def run_peer(peer_python: str, code: str, *args: str, cwd: Path | None = None) -> Any:
    """Run ``code`` in the peer interpreter; its last stdout line is parsed as JSON."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    proc = subprocess.run(
        [peer_python, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        raise AssertionError(f"peer script failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    lines = proc.stdout.strip().splitlines()
    return json.loads(lines[-1]) if lines else None
