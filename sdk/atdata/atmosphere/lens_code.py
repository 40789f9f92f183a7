"""Lens code references: what a lens record says about its code, and importing that code.

A lens record never carries code: it names an entry point (`module:qualname`), the sha256 of
the module's source file and, when known, the git repository, commit and path. Publishing
reads these from the lens itself and from git; loading imports the named object only when
the caller trusts it and the local file hashes to the published sha256.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import LensError
from .shards import PublishError, sha256_file

__all__ = ["import_lens", "lens_code_ref"]


def _entry_point(lens: Any) -> tuple[str, str]:
    fn = getattr(lens, "__wrapped__", lens)
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    if not module or not qualname or "<locals>" in qualname or module == "__main__":
        raise PublishError(
            f"lens {lens!r} must be defined at module level in an importable module "
            f"(got {module}:{qualname})"
        )
    return module, qualname


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None


def lens_code_ref(
    lens: Any, *, repo_url: str | None = None, commit: str | None = None
) -> dict[str, Any]:
    """The `codeRef` of a lens: entry point, file sha256, and repo/commit/path from git."""
    module, qualname = _entry_point(lens)
    mod = importlib.import_module(module)
    source_file = inspect.getsourcefile(mod)
    if not source_file:
        raise PublishError(f"cannot find the source file of module {module}")
    code: dict[str, Any] = {
        "entryPoint": f"{module}:{qualname}",
        "sha256": sha256_file(source_file),
    }
    folder = Path(source_file).resolve().parent
    top = _git(["rev-parse", "--show-toplevel"], folder)
    if top:
        repo_url = repo_url or _remote_uri(_git(["remote", "get-url", "origin"], folder), top)
        commit = commit or _git(["rev-parse", "HEAD"], folder)
        code["path"] = str(Path(source_file).resolve().relative_to(Path(top).resolve()))
    if repo_url:
        code["repository"] = repo_url
    if commit:
        code["commit"] = commit
    return code


def _remote_uri(remote: str | None, top: str) -> str | None:
    """A git remote as a URI: local paths and scp-like `user@host:path` are not URIs."""
    if not remote or "://" in remote:
        return remote or None
    user_host, sep, path = remote.partition(":")
    if sep and "@" in user_host and "/" not in user_host:
        return f"ssh://{user_host}/{path.lstrip('/')}"
    return (Path(top) / remote).resolve().as_uri()


def import_lens(code: Mapping[str, Any], *, trust: bool, uri: str = "") -> Any:
    """Import the object `code["entryPoint"]` names, if trusted and its file's hash matches."""
    entry = str(code.get("entryPoint", ""))
    if not trust:
        raise LensError(
            f"lens {uri} names code {entry!r}; it is only imported with trust=True "
            "(read the code first: it runs in your process)"
        )
    module, _, qualname = entry.partition(":")
    if not module or not qualname:
        raise LensError(f"bad lens entry point {entry!r}")
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError) as e:
        raise LensError(f"lens module {module} is not importable here: {e}") from e
    if spec is None or not spec.origin or not os.path.isfile(spec.origin):
        raise LensError(f"lens module {module} is not installed locally; nothing is downloaded")
    got = sha256_file(spec.origin)
    if got != code.get("sha256"):
        raise LensError(
            f"lens module {module} ({spec.origin}) has sha256 {got}, but the record {uri} "
            f"says {code.get('sha256')}: not the published code, refusing to import it"
        )
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise LensError(f"{module} has no attribute {qualname}")
    return obj
