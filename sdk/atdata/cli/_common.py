"""What the data commands (inspect, schema, publish, search, get, load) share: options for
credentials and endpoints, importing `module:Class`, describing samples, output helpers.

Results go to stdout (one URI alone where a script would capture it); progress and notes go
to stderr. Credentials come from options or the environment and are never printed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import importlib.util
import json
import os
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import typer

from .._codec import decode_array
from ..appview_client import AppViewClient
from ..display import dtype_text, shape_text, type_text
from ..errors import ResolutionError
from ..packable import is_packable
from ..records import DATASET
from . import EXIT_ABSENT, CliError

# -- options ----------------------------------------------------------------------------------


def _env_option(flag: str, envvar: str, help: str) -> Any:
    """An option that falls back to an environment variable (its help text names it)."""
    return typer.Option(None, flag, envvar=envvar, help=help, show_default=False, show_envvar=False)


PDS_OPTION = _env_option("--pds", "ATDATA_PDS", "URL of your PDS (env ATDATA_PDS).")
HANDLE_OPTION = _env_option("--handle", "ATDATA_HANDLE", "Your handle or DID (env ATDATA_HANDLE).")
PASSWORD_OPTION = _env_option(
    "--password",
    "ATDATA_PASSWORD",
    "Your (app) password (env ATDATA_PASSWORD; prefer the variable: options show in `ps`).",
)
APPVIEW_OPTION = _env_option(
    "--appview", "ATDATA_APPVIEW", "URL of an AppView (env ATDATA_APPVIEW)."
)
PLC_OPTION = _env_option(
    "--plc",
    "ATDATA_PLC_URL",
    "PLC directory for did:plc (env ATDATA_PLC_URL; default https://plc.directory).",
)
JSON_OPTION = typer.Option(False, "--json", help="Print JSON (for scripts) instead of text.")
CID_OPTION = typer.Option(
    None, "--cid", help="Require exactly this version of the record.", show_default=False
)
#: Help epilog of the commands that fetch a record by at:// URI (get, load, schema show).
FETCH_EPILOG = (
    "Exit code 3 when the record (or the handle in its URI) does not exist. A handle is "
    "resolved through the AppView when one is given."
)


def use_plc(plc: str | None) -> None:
    """The SDK reads the PLC URL from the environment; an explicit option wins."""
    if plc:
        os.environ["ATDATA_PLC_URL"] = plc


def login(pds: str | None, handle: str | None, password: str | None) -> Any:
    """A logged-in `atdata.atmosphere.Client` (messages never include the password)."""
    from ..atmosphere import Client

    if not pds:
        raise CliError("no PDS: pass --pds or set ATDATA_PDS")
    if not handle:
        raise CliError("no account: pass --handle or set ATDATA_HANDLE")
    if not password:
        raise CliError("no password: set ATDATA_PASSWORD (or pass --password)")
    return Client(pds).login(handle, password)


# -- imports ----------------------------------------------------------------------------------


def is_at_uri(text: str) -> bool:
    return text.startswith("at://")


def load_object(spec: str) -> Any:
    """`package.module:Name` or `path/to/file.py:Name` (the current folder is importable)."""
    module_name, sep, qualname = spec.partition(":")
    if not sep or not module_name or not qualname:
        raise CliError(f"expected module:Name (e.g. mypkg.samples:Digit), got {spec!r}")
    if str(Path.cwd()) not in sys.path and "" not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        if module_name.endswith(".py") or "/" in module_name:
            path = Path(module_name)
            if not path.exists():
                raise CliError(f"no such file: {module_name}")
            spec_obj = importlib.util.spec_from_file_location(path.stem, path)
            assert spec_obj is not None and spec_obj.loader is not None
            module = importlib.util.module_from_spec(spec_obj)
            sys.modules[path.stem] = module
            spec_obj.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise CliError(f"cannot import {module_name!r}: {exc}") from exc
    obj: Any = module
    for part in qualname.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise CliError(f"{module_name} has no {qualname!r}") from None
    return obj


def sample_class(spec: str) -> type:
    cls = load_object(spec)
    if not isinstance(cls, type) or not is_packable(cls):
        raise CliError(f"{spec} is not a @atdata.packable sample class")
    return cls


# -- describing samples -----------------------------------------------------------------------


def as_array(value: Any) -> np.ndarray | None:
    """An array value, or bytes that decode as one (schema-free samples keep arrays as bytes)."""
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, bytes | bytearray | memoryview) and len(value) >= 3:
        try:
            return decode_array(bytes(value))
        except Exception:  # not an array: plain bytes
            return None
    return None


def preview(value: Any, width: int = 60) -> str:
    """A short one-line rendering of a field value."""
    arr = as_array(value)
    if arr is not None:
        text = f"{arr.dtype.name}{list(arr.shape)}"
        if arr.size and arr.dtype.kind in "biuf":
            text += f" min={arr.min():.4g} max={arr.max():.4g}"
        return text
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(value)} bytes>"
    text = repr(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def sample_fields(sample: Any) -> dict[str, Any]:
    """Field name -> value for a typed sample or a DictSample."""
    if hasattr(sample, "to_dict") and callable(sample.to_dict):
        return dict(sample.to_dict())

    if dataclasses.is_dataclass(sample):
        return {f.name: getattr(sample, f.name) for f in dataclasses.fields(sample)}
    return dict(vars(sample))


class FieldStats:
    """Kinds, dtypes and shapes seen per field (a dimension that varies shows as `?`)."""

    def __init__(self) -> None:
        self.fields: dict[str, dict[str, Any]] = {}

    def add(self, sample: Any) -> None:
        for name, value in sample_fields(sample).items():
            entry = self.fields.setdefault(name, {"kinds": set(), "dtypes": set(), "shape": None})
            arr = as_array(value)
            if arr is None:
                entry["kinds"].add("none" if value is None else type(value).__name__)
                continue
            entry["kinds"].add("ndarray")
            entry["dtypes"].add(arr.dtype.str)
            shape = list(arr.shape)
            if entry["shape"] is None:
                entry["shape"] = shape
            elif len(entry["shape"]) != len(shape):
                entry["shape"] = "varies"
            elif entry["shape"] != "varies":
                entry["shape"] = [
                    a if a == b else None for a, b in zip(entry["shape"], shape, strict=True)
                ]

    def rows(self) -> list[dict[str, Any]]:
        out = []
        for name, e in self.fields.items():
            kinds = sorted(e["kinds"] - {"none"}) or ["none"]
            shape = e["shape"]
            out.append(
                {
                    "field": name,
                    "type": " | ".join(kinds) + (" | None" if "none" in e["kinds"] else ""),
                    "dtype": ", ".join(sorted(e["dtypes"])),
                    "shape": shape
                    if shape in (None, "varies")
                    else [d if d is not None else None for d in shape],
                }
            )
        return out


# -- output -----------------------------------------------------------------------------------


def out(text: str = "") -> None:
    typer.echo(text)


def note(text: str) -> None:
    typer.echo(text, err=True)


def print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, sort_keys=False, default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return {"dtype": value.dtype.str, "shape": list(value.shape)}
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(value)} bytes>"
    if isinstance(value, set | frozenset):
        return sorted(value)
    return str(value)


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """A plain aligned text table (no colours, so it pipes cleanly)."""
    cells = [[str(r.get(c, "") if r.get(c) is not None else "") for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines += [
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    return "\n".join(lines)


def absent(message: str) -> typer.Exit:
    """Say what is missing on stderr; the caller raises the result (exit code 3)."""
    note(message)
    return typer.Exit(EXIT_ABSENT)


def is_not_found(exc: BaseException) -> bool:
    """A ResolutionError caused by the PDS saying the record does not exist (or an AppView
    listing no such dataset version for @handle/name[@version])."""
    from ..atmosphere.resolve import VersionNotListed

    if isinstance(exc, VersionNotListed):
        return True
    cause = exc.__cause__
    return getattr(cause, "error", None) == "RecordNotFound" or getattr(cause, "status", 0) == 404


@contextlib.contextmanager
def absent_when_not_found() -> Iterator[None]:
    """Within the block, a record (or handle) that does not exist exits with code 3."""
    try:
        yield
    except ResolutionError as exc:
        if is_not_found(exc):
            raise absent(f"not found: {exc}") from None
        raise


_APPVIEW_ADVICE = "to resolve handles through an AppView, pass --appview URL or set ATDATA_APPVIEW"


def resolve_handle_uri(uri: str, appview: str | None) -> str:
    """`at://handle/...` as `at://did/...`; a handle nobody resolves exits 3 ("not found").

    With an AppView (`--appview` or ATDATA_APPVIEW) the handle is looked up in its index
    first, and the DID it names must claim the handle in its own DID document; then (and
    without an AppView) the handle's well-known file and the PDS of ATDATA_PDS are asked.
    """
    from ..atmosphere.identity import IdentityResolver, parse_at_uri

    at = parse_at_uri(uri)
    if at.authority.startswith("did:"):
        return uri
    handle = at.authority.lower()
    services = [os.environ["ATDATA_PDS"]] if os.environ.get("ATDATA_PDS") else []
    identity = IdentityResolver(handle_services=services)
    reasons: list[str] = []
    if appview:
        did = _did_from_appview(appview, handle, uri, identity)
        if did is not None:
            return str(at.with_authority(did))
        reasons.append(f"the AppView {appview} does not know it")
    try:
        did = identity.resolve_handle(handle)
    except ResolutionError as exc:
        reasons.append(str(exc))
        advice = "" if appview else f" ({_APPVIEW_ADVICE})"
        raise absent(f"not found: handle {handle}: {'; '.join(reasons)}{advice}") from None
    return str(at.with_authority(did))


def _did_from_appview(appview: str, handle: str, uri: str, identity: Any) -> str | None:
    """The DID an AppView's index holds for `handle` (checked against its DID document)."""
    from ..atmosphere.did import parse_did_document

    with AppViewClient(appview) as av:
        dids: list[Any] = []
        if f"/{DATASET}/" in uri:
            with contextlib.suppress(ResolutionError):  # not indexed: ask about the author
                dids.append(av.get_dataset(uri).to_dict().get("did"))
        if not dids:
            dids = [d.to_dict().get("did") for d in av.search(author=handle, limit=1).datasets]
        if not dids:
            dids = [s.to_dict().get("did") for s in av.list_schemas(author=handle, limit=1)]
    did = next((d for d in dids if isinstance(d, str) and d.startswith("did:")), None)
    if did is None:
        return None
    claimed = parse_did_document(did, identity.resolve_did(did)).handle
    if claimed != handle:
        raise CliError(
            f"the AppView {appview} maps handle {handle} to {did}, but that DID's document "
            f"claims the handle {claimed!r}"
        )
    return did


def schema_rows(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Rows (field, type, dtype, shape) of an io.atdata.schema record."""
    rows = []
    for f in record.get("fields") or []:
        t = f.get("type") or {}
        rows.append(
            {
                "field": f.get("name"),
                "type": type_text(t),
                "dtype": dtype_text(t.get("dtype")),
                "shape": shape_text(t.get("shape")),
            }
        )
    return rows


def flatten(values: Iterable[str]) -> list[str]:
    """Repeated options that may also hold comma-separated lists: `--tag a,b --tag c`."""
    return [v.strip() for value in values for v in value.split(",") if v.strip()]
