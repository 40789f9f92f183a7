"""`atdata delete`: delete one's own records (datasets, schemas, lenses), after asking.

Everything is checked before anything is deleted: every record must exist and be in the
logged-in account's repository, and a schema that one's own datasets still reference is kept
unless `--force`. Deleted URIs go to stdout, one a line; the plan and warnings to stderr.
"""

from __future__ import annotations

import sys
from typing import Any

import typer

from ..appview_client import AppViewClient
from ..errors import AppViewError, ResolutionError
from ..records import DATASET, SCHEMA
from . import CliError
from ._common import (
    APPVIEW_OPTION,
    HANDLE_OPTION,
    PASSWORD_OPTION,
    PDS_OPTION,
    PLC_OPTION,
    absent,
    is_not_found,
    login,
    note,
    out,
    use_plc,
)

__all__ = ["delete", "register"]

_URIS = typer.Argument(
    None,
    help="at:// URIs of your records (or, with --all-versions, one dataset name).",
    show_default=False,
)


def delete(
    targets: list[str] = _URIS,
    all_versions: bool = typer.Option(
        False,
        "--all-versions",
        help="Delete every io.atdata.dataset record of the NAME given, in your repository.",
    ),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    force: bool = typer.Option(
        False, "--force", help="Delete a schema even though your own datasets reference it."
    ),
    pds: str = PDS_OPTION,
    handle: str = HANDLE_OPTION,
    password: str = PASSWORD_OPTION,
    appview: str = APPVIEW_OPTION,
    plc: str = PLC_OPTION,
) -> None:
    """Delete your own records; prints each deleted URI on stdout.

    Asks first (`--yes` skips the question). Records of other accounts are refused; so is a
    schema your own datasets still use, unless `--force` (with an AppView, datasets of other
    authors that use it are counted in a warning). Exit code 3 when a record does not exist.

    Examples:

      atdata delete at://did:plc:abc/io.atdata.dataset/3kxyz

      atdata delete --all-versions digits --yes

      atdata delete at://did:plc:abc/io.atdata.schema/3kabc --force --appview http://127.0.0.1:8080
    """
    use_plc(plc)
    targets = list(targets or [])
    if not targets:
        raise CliError("name at least one at:// URI (or --all-versions NAME)")
    if all_versions and len(targets) != 1:
        raise CliError("--all-versions takes one dataset name")
    client = login(pds, handle, password)
    if all_versions:
        uris = _versions(client, targets[0])
    else:
        uris = [_own_uri(client, t) for t in targets]
        for uri in uris:
            _check_exists(client, uri)
    uris = list(dict.fromkeys(uris))
    _check_schemas(client, uris, force, appview)

    note(f"to delete from {client.did}:")
    for uri in uris:
        note(f"  {uri}")
    if not yes:
        try:
            confirmed = typer.confirm(f"delete {len(uris)} record(s)?", default=False, err=True)
        except typer.Abort:
            confirmed = False
        if not sys.stdin.isatty():
            note("")  # the answer was not echoed: end the question's line
        if not confirmed:
            raise CliError("nothing deleted (pass --yes to delete without the question)")
    for uri in uris:
        client.delete(uri)
        out(uri)
    note(f"deleted {len(uris)} record(s)")


def _own_uri(client: Any, target: str) -> str:
    """`target` with the account's DID as authority; another account's record is refused."""
    from ..atmosphere.identity import parse_at_uri

    if not target.startswith("at://"):
        raise CliError(f"{target!r} is not an at:// URI (for a dataset name use --all-versions)")
    at = parse_at_uri(target)
    mine = {client.did, (client.handle or "").lower()}
    if at.authority not in mine and at.authority.lower() not in mine:
        raise CliError(
            f"{target} belongs to {at.authority}, not to you ({client.did}): "
            "you can delete only your own records; nothing was deleted"
        )
    return str(at.with_authority(client.did))


def _check_exists(client: Any, uri: str) -> None:
    try:
        client.get_record(uri)
    except ResolutionError as exc:
        if _not_found(exc):
            raise absent(f"not found: {uri} (nothing was deleted)") from None
        raise


def _not_found(exc: BaseException) -> bool:
    response = getattr(exc.__cause__, "response", None)
    error = getattr(getattr(response, "content", None), "error", None)
    return error == "RecordNotFound" or is_not_found(exc) or "RecordNotFound" in str(exc)


def _versions(client: Any, name: str) -> list[str]:
    """Every dataset record named `name` in the account's repository (exit 3 when none)."""
    uris = [r.uri for r in client.iter_records(DATASET) if r.value.get("name") == name]
    if not uris:
        raise absent(f"not found: no dataset named {name!r} in {client.did}")
    return uris


def _check_schemas(client: Any, uris: list[str], force: bool, appview: str | None) -> None:
    """Refuse to orphan one's own datasets; warn about other authors' the AppView knows."""
    schemas = [u for u in uris if f"/{SCHEMA}/" in u]
    if not schemas:
        return
    going = set(uris)
    users: dict[str, list[str]] = {s: [] for s in schemas}
    for rec in client.iter_records(DATASET):
        ref = (rec.value.get("schema") or {}).get("uri")
        if ref in users and rec.uri not in going:
            users[ref].append(rec.uri)
    for schema, datasets in users.items():
        if not datasets:
            continue
        shown = ", ".join(datasets[:3]) + (
            f" and {len(datasets) - 3} more" if len(datasets) > 3 else ""
        )
        if not force:
            raise CliError(
                f"schema {schema} is used by {len(datasets)} of your datasets ({shown}); "
                "they could no longer be loaded: delete them first, or pass --force; "
                "nothing was deleted"
            )
        note(f"warning: {len(datasets)} of your datasets use {schema} ({shown})")
    if appview:
        _warn_other_authors(appview, schemas, client.did)


def _warn_other_authors(appview: str, schemas: list[str], did: str) -> None:
    try:
        with AppViewClient(appview) as av:
            for schema in schemas:
                others = [d for d in av.iter_search(schema=schema) if d.to_dict().get("did") != did]
                if others:
                    note(
                        f"warning: the AppView {appview} knows {len(others)} dataset(s) of other "
                        f"authors that use {schema}; they could no longer be loaded"
                    )
    except AppViewError as exc:
        note(f"warning: could not ask the AppView {appview} who else uses the schema: {exc}")


def register(app: typer.Typer) -> None:
    app.command("delete")(delete)
