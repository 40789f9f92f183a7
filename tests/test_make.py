"""The Makefile's promises to the people who run it: `make lint` never reinstalls a venv."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def dry_run(target: str, venv: Path) -> str:
    """What `make <target>` would run with ``venv`` as the venv (make -n: nothing runs)."""
    out = subprocess.run(
        ["make", "-n", "--no-print-directory", "-C", str(ROOT), target, f"VENV={venv}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout


def installed_venv(tmp_path: Path) -> Path:
    """A venv whose install stamp is older than pyproject.toml (as after a dependency change)."""
    venv = tmp_path / "venv"
    venv.mkdir()
    stamp = venv / ".atdata-installed"
    stamp.touch()
    old = (ROOT / "pyproject.toml").stat().st_mtime - 3600
    os.utime(stamp, (old, old))
    return venv


def test_lint_uses_an_installed_venv_as_it_is(tmp_path: Path) -> None:
    venv = installed_venv(tmp_path)
    commands = dry_run("lint", venv)
    assert "pip install" not in commands
    for tool in ("ruff check", "ruff format --check", "mypy"):
        assert f"{venv}/bin/{tool}" in commands


def test_lint_installs_a_venv_that_never_was(tmp_path: Path) -> None:
    assert "pip install" in dry_run("lint", tmp_path / "none-yet")


def test_test_still_reinstalls_after_a_dependency_change(tmp_path: Path) -> None:
    # `make test` (and CI) keep the venv in step with pyproject.toml.
    venv = installed_venv(tmp_path)
    assert "pip install" in dry_run("venv", venv)


def check_markers() -> str:
    """The -m expression `make check` selects its tests with."""
    match = re.search(r'-m "([^"]+)"', dry_run("check", ROOT / ".venv"))
    assert match, "make check selects by marker"
    return match.group(1)


def test_check_leaves_out_every_service() -> None:
    expression = check_markers()
    for marker in ("devnet", "postgres", "browser", "peer", "ray", "slow"):
        assert f"not {marker}" in expression


def test_tests_using_a_service_fixture_are_marked_without_saying_so() -> None:
    # test_atmosphere_appview.py uses the devnet through its fixtures and no explicit marker.
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
        + ["-m", check_markers(), "tests/test_atmosphere_appview.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "deselected" in out.stdout, out.stdout + out.stderr
    assert "::" not in out.stdout, "tests needing the devnet would run in make check"
