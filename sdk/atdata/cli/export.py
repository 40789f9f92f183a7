"""`atdata export croissant <at-uri>`: a dataset's metadata in formats other tools read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import typer

from ..records import DATASET
from ._common import (
    APPVIEW_OPTION,
    PLC_OPTION,
    absent_when_not_found,
    note,
    resolve_handle_uri,
    use_plc,
)

__all__ = ["croissant", "register"]

export_app = typer.Typer(
    help="Write a dataset's metadata for other tools (Croissant JSON-LD).",
    no_args_is_help=True,
)


_OUTPUT = typer.Option(
    None,
    "--output",
    "-o",
    help="File to write (default: standard output).",
    show_default=False,
    dir_okay=False,
)


def croissant_for(
    uri: str,
    cid: str | None = None,
    appview: str | None = None,
    *,
    wanted: tuple[str, str | None] | None = None,
) -> dict[str, Any]:
    """The Croissant document of the dataset at `uri` (a DID URI), read from its author's PDS.

    The records are CID-checked as `load_dataset` checks them; a manifest blob is fetched for
    its shard list. With an AppView, the document's `url` is the AppView's dataset page.
    `wanted` (name, version) is what an `@handle/name[@version]` asked for, checked on the
    record.
    """
    from ..atmosphere.did import parse_did_document
    from ..atmosphere.identity import parse_at_uri
    from ..atmosphere.resolve import _resolver, check_version
    from ..croissant import Author, croissant_document
    from ..errors import ResolutionError

    at = parse_at_uri(uri)
    if at.collection != DATASET:
        raise ResolutionError(f"{uri} is an {at.collection} record, not an {DATASET}")
    r = _resolver(None)
    dataset = r.fetch_record(uri, cid)
    if wanted is not None:  # the AppView's listing, checked on the author's own record
        check_version(dataset, *wanted)
    did = parse_at_uri(dataset.uri).authority
    ref = dataset.value.get("schema") or {}
    schema = r.fetch_record(str(ref.get("uri")), str(ref.get("cid")))
    pds = r.identity.pds_endpoint(did)
    handle = parse_did_document(did, r.identity.resolve_did(did)).handle
    shards = None
    if "shards" not in dataset.value and "manifest" in dataset.value:
        shards = r.manifest_shards(did, pds, dataset.value["manifest"])
    page = None
    if appview:
        page = f"{appview.rstrip('/')}/datasets/{quote(did, safe=':')}/{quote(dataset.uri.rsplit('/', 1)[-1], safe='')}"
    return croissant_document(
        dataset, schema, Author(did, handle, pds), shards=shards, page_url=page
    )


@export_app.command("croissant")
def croissant(
    uri: str = typer.Argument(
        ...,
        help="at:// URI of a dataset record, or @handle/name[@version] (through the AppView).",
        show_default=False,
    ),
    output: Path = _OUTPUT,
    cid: str = typer.Option(
        None, "--cid", help="Require exactly this version of the record.", show_default=False
    ),
    appview: str = APPVIEW_OPTION,
    plc: str = PLC_OPTION,
) -> None:
    """Write the dataset's Croissant 1.1 JSON-LD (mlcommons.org/croissant), context inline.

    Name, description, license, creator, version, dates, keywords, one FileObject per shard
    (URL, size, sha256), splits and one record set with a field per schema field. With an
    AppView (--appview or ATDATA_APPVIEW) its dataset page is the document's url and a
    handle in the URI is resolved through it. Exit code 3 when the dataset does not exist.

    Examples:

      atdata export croissant at://did:plc:abc/io.atdata.dataset/3kxyz

      atdata export croissant at://alice.example.com/io.atdata.dataset/3kxyz -o croissant.json

      atdata export croissant @alice.example.com/digits@1.1.0 --appview https://appview.example
    """
    from ..atmosphere.resolve import find_version

    use_plc(plc)
    with absent_when_not_found():
        pick = find_version(uri, appview or None) if uri.startswith("@") else None
        uri = resolve_handle_uri(pick.uri if pick else uri, appview)
        doc = croissant_for(uri, cid, appview, wanted=(pick.name, pick.version) if pick else None)
    text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    if output is None:
        typer.echo(text, nl=False)
        return
    output.write_text(text, encoding="utf-8")
    note(f"wrote {output}")


def register(app: typer.Typer) -> None:
    app.add_typer(export_app, name="export")
