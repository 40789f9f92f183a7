"""Lens code references: what a lens record says about its code, and importing that code.

A lens record never carries code: it names an entry point (`module:qualname`), the sha256 of
the module's source file and, when known, the git repository, commit and path. Publishing
reads these from the lens itself and from git; loading imports the named object only when
the caller trusts it and the local file hashes to the published sha256.

What a trusted lens executes: the hash covers the module's own file, nothing else. That file
is found without running any code, and nothing runs unless it matches. After a match the
module is imported as Python imports any submodule: its parent packages' `__init__.py` first
(not hashed: they are the locally installed package, like everything the module imports),
then the hashed bytes themselves (read once, so the file cannot change between check and
execution). Hashing the parents as well would need a record field the lexicons of both
networks lack, and would still not cover the module's own imports.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import logging
import os
import subprocess
import sys
from collections.abc import Mapping
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType
from typing import Any

from ..errors import LensError
from .shards import PublishError, sha256_file

__all__ = ["import_lens", "import_unpinned", "lens_code_ref", "locate_module"]

log = logging.getLogger(__name__)


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
    """Import the object `code["entryPoint"]` names, if trusted and its file's hash matches.

    The module's file is located without importing anything (see `locate_module`), read once
    and hashed; only when the hash matches do its parent packages get imported and the very
    bytes that were hashed get executed as the module. On a mismatch no file has run.
    """
    entry = str(code.get("entryPoint", ""))
    if not trust:
        raise LensError(
            f"lens {uri} names code {entry!r}; it is only imported with trust=True "
            "(read the code first: it runs in your process)"
        )
    module, qualname, spec, origin, source = _local_source(entry)
    got = hashlib.sha256(source).hexdigest()
    if got != code.get("sha256"):
        raise LensError(
            f"lens module {module} ({origin}) has sha256 {got}, but the record {uri} "
            f"says {code.get('sha256')}: not the published code, refusing to import it"
        )
    return _attribute(_exec_verified(module, spec, origin, source), module, qualname)


def import_unpinned(entry: str, *, uri: str = "") -> Any:
    """Import the object `entry` (`module:qualname`) names from a locally installed module,
    with no hash to check it against (records of the peer network pin none).

    The caller has asked for this explicitly; as with `import_lens`, nothing is downloaded
    and the bytes read are the bytes executed.
    """
    module, qualname, spec, origin, source = _local_source(entry)
    log.info("lens %s: running %s from %s, not pinned by any hash", uri, entry, origin)
    return _attribute(_exec_verified(module, spec, origin, source), module, qualname)


def _local_source(entry: str) -> tuple[str, str, ModuleSpec, str, bytes]:
    """Module, qualname, spec, file and source bytes of a locally installed entry point,
    found without running any code."""
    module, _, qualname = entry.partition(":")
    if not module or not qualname or not all(p.isidentifier() for p in module.split(".")):
        raise LensError(f"bad lens entry point {entry!r}")
    spec = locate_module(module)
    origin = spec.origin if spec is not None else None
    if spec is None or not origin or not os.path.isfile(origin):
        raise LensError(f"lens module {module} is not installed locally; nothing is downloaded")
    if not origin.endswith(".py"):
        raise LensError(f"lens module {module} is not Python source ({origin}); refusing it")
    return module, qualname, spec, origin, Path(origin).read_bytes()


def _attribute(mod: ModuleType, module: str, qualname: str) -> Any:
    obj: Any = mod
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise LensError(f"{module} has no attribute {qualname}")
    return obj


def locate_module(module: str) -> ModuleSpec | None:
    """The spec of `module` found without executing any package.

    `importlib.util.find_spec("a.b")` imports `a` to read its `__path__`; here each level is
    asked of the import system's finders (`sys.meta_path`) with the search path of the level
    above, which locates a package without running its `__init__.py`. Packages already
    imported answer from `sys.modules`.
    """
    path: list[str] | None = None
    spec: ModuleSpec | None = None
    parts = module.split(".")
    for depth in range(1, len(parts) + 1):
        name = ".".join(parts[:depth])
        loaded = sys.modules.get(name)
        spec = getattr(loaded, "__spec__", None) if loaded is not None else None
        if spec is None:
            spec = _find_spec(name, path)
        if spec is None:
            return None
        if depth < len(parts):
            if spec.submodule_search_locations is None:
                return None  # a module, not a package: it has no submodules
            path = list(spec.submodule_search_locations)
    return spec


def _find_spec(name: str, path: list[str] | None) -> ModuleSpec | None:
    for finder in sys.meta_path:
        find = getattr(finder, "find_spec", None)
        if find is None:
            continue
        try:
            spec = find(name, path, None)
        except (ImportError, ValueError):
            continue
        if spec is not None:
            return spec
    return None


def _exec_verified(module: str, spec: ModuleSpec, origin: str, source: bytes) -> ModuleType:
    """`module` with `source` (the hashed bytes of `origin`) as its code, parents imported first.

    A module imported before (by the caller, or by a parent's `__init__`) is used when it was
    loaded from the same file; one loaded from elsewhere is refused.
    """
    parent, _, child = module.rpartition(".")
    if parent:
        importlib.import_module(parent)  # the parents' __init__ files: only after the match
    loaded = sys.modules.get(module)
    if loaded is not None:
        where = getattr(loaded, "__file__", None)
        if where is None or not os.path.samefile(where, origin):
            raise LensError(f"lens module {module} is already loaded from {where}, not {origin}")
        return loaded
    mod = importlib.util.module_from_spec(spec)
    sys.modules[module] = mod
    try:
        exec(compile(source, origin, "exec"), mod.__dict__)
    except BaseException:
        sys.modules.pop(module, None)
        raise
    if parent:
        setattr(sys.modules[parent], child, mod)
    return mod
