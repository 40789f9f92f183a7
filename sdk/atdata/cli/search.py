"""`atdata search <query>`: find datasets through an AppView."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import typer

from ..appview_client import AppViewClient
from ..display import human_bytes
from . import CliError
from ._common import (
    APPVIEW_OPTION,
    JSON_OPTION,
    absent,
    flatten,
    out,
    print_json,
    table,
)

__all__ = ["register", "search"]


_TAGS = typer.Option(
    [],
    "--tag",
    help="Only datasets with this tag (repeat: all must match).",
    show_default=False,
)


def search(
    query: str = typer.Argument(
        None, help="Words to match (names, descriptions, tags, field names).", show_default=False
    ),
    tags: list[str] = _TAGS,
    license: str = typer.Option(None, "--license", help="SPDX license id.", show_default=False),
    author: str = typer.Option(None, "--author", help="A DID or handle.", show_default=False),
    schema: str = typer.Option(
        None, "--schema", help="at:// URI of the sample schema.", show_default=False
    ),
    sort: str = typer.Option("relevance", "--sort", help="relevance, created or samples."),
    limit: int = typer.Option(25, "--limit", min=1, max=100, help="At most this many results."),
    all_versions: bool = typer.Option(
        False,
        "--all-versions",
        help="List every version (default: one line per author and name, its newest).",
    ),
    family: str = typer.Option(
        None,
        "--family",
        help="Only one record family: io.atdata, or science.alt.dataset (entries of the "
        "atdata 0.5-0.7 network). Default: both.",
        show_default=False,
    ),
    appview: str = APPVIEW_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Search the datasets an AppView has indexed.

    Prints one line per dataset (name, newest version and how many, author, samples, size,
    at:// URI; an entry of the science.alt.dataset network has no version: its labels name
    them); --all-versions prints every version. Exit code 3 when
    nothing matches, so a script can wait for a dataset to be indexed.

    Examples:

      atdata search digits --appview http://127.0.0.1:8080

      atdata search --tag vision --license CC0-1.0

      atdata search "handwritten digits" --json | jq -r '.datasets[0].uri'
    """

    if not appview:
        raise CliError("no AppView: pass --appview or set ATDATA_APPVIEW")
    with AppViewClient(appview) as client:
        result = client.search(
            query or None,
            tags=flatten(tags) or None,
            license=license,
            author=author,
            schema=schema,
            sort=sort,
            limit=limit,
            all_versions=all_versions,
            family=family,
        )
    hits = [d.to_dict() for d in result.datasets]
    if as_json:
        print_json({"datasets": hits, "cursor": result.cursor, "facets": result.facets.to_dict()})
    else:
        rows = [
            {
                "name": d.get("name"),
                "version": _version_text(d, all_versions),
                "author": d.get("handle") or d.get("did"),
                "samples": d.get("samples"),
                "size": human_bytes(d.get("bytes")),
                "uri": d.get("uri"),
            }
            for d in hits
        ]
        if rows:
            out(table(rows, ["name", "version", "author", "samples", "size", "uri"]))
    if not hits:
        raise absent("no datasets match")


def _version_text(d: Mapping[str, Any], all_versions: bool) -> str:
    if d.get("family") == "science.alt.dataset":
        return "(entry)"  # versioned by labels, not by the record
    if all_versions or (d.get("versions") or 1) == 1:
        return str(d.get("version"))
    return f"{d.get('version')} ({d.get('versions')} versions)"


def register(app: typer.Typer) -> None:
    app.command("search")(search)
