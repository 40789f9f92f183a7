"""Lens code named by a record: located without running anything, imported only on a match."""

from __future__ import annotations

import hashlib
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from atdata.atmosphere import import_lens
from atdata.atmosphere.lens_code import locate_module
from atdata.errors import LensError


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path, Path]]:
    """A fresh package `<name>.sub` whose `__init__.py` leaves a marker file when it runs."""
    name = f"lenspkg_{uuid.uuid4().hex[:8]}"
    root = tmp_path / name
    root.mkdir()
    marker = tmp_path / "init-ran"
    (root / "__init__.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    (root / "sub.py").write_text("def double(x):\n    return 2 * x\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name, root / "sub.py", marker
    for mod in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        del sys.modules[mod]


def _code(entry: str, path: Path) -> dict[str, Any]:
    return {"entryPoint": entry, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def test_a_mismatched_hash_runs_no_file_not_even_the_parent_package(package: Any) -> None:
    name, sub, marker = package
    code = {**_code(f"{name}.sub:double", sub), "sha256": "0" * 64}
    with pytest.raises(LensError, match="not the published code"):
        import_lens(code, trust=True, uri="at://did:plc:x/io.atdata.lens/1")
    assert not marker.exists()  # pkg/__init__.py did not run
    assert name not in sys.modules and f"{name}.sub" not in sys.modules


def test_locating_a_submodule_imports_nothing(package: Any) -> None:
    name, sub, marker = package
    spec = locate_module(f"{name}.sub")
    assert spec is not None and Path(str(spec.origin)) == sub
    assert locate_module(f"{name}.missing") is None
    assert not marker.exists() and name not in sys.modules


def test_a_matching_hash_imports_the_parents_then_the_module(package: Any) -> None:
    name, sub, marker = package
    double = import_lens(_code(f"{name}.sub:double", sub), trust=True)
    assert double(21) == 42
    assert marker.exists()  # the parent package ran, after the match
    assert sys.modules[f"{name}.sub"].double is double
    assert sys.modules[name].sub is sys.modules[f"{name}.sub"]
    # a second load finds the module already imported from the same file
    assert import_lens(_code(f"{name}.sub:double", sub), trust=True) is double


def test_untrusted_missing_and_malformed_entry_points_are_refused(package: Any) -> None:
    name, sub, marker = package
    with pytest.raises(LensError, match="trust=True"):
        import_lens(_code(f"{name}.sub:double", sub), trust=False)
    with pytest.raises(LensError, match="not installed"):
        import_lens({"entryPoint": f"{name}.nope:f", "sha256": "0" * 64}, trust=True)
    with pytest.raises(LensError, match="not installed"):
        import_lens({"entryPoint": "no_such_module_xyz.sub:f", "sha256": "0" * 64}, trust=True)
    for bad in ("double", f"{name}..sub:double", f"{name}.sub:", "os.path/../x:f"):
        with pytest.raises(LensError, match="bad lens entry point"):
            import_lens({"entryPoint": bad, "sha256": "0" * 64}, trust=True)
    with pytest.raises(LensError, match="has no attribute"):
        import_lens(_code(f"{name}.sub:triple", sub), trust=True)
