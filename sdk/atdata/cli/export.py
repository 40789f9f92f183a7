"""`atdata export croissant <at-uri>`: a dataset's metadata in formats other tools read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import typer

from ..records import DATASET, PEER_ENTRY, PEER_LABEL
from ._common import (
    APPVIEW_OPTION,
    PLC_OPTION,
    absent_when_not_found,
    note,
    resolve_handle_uri,
    use_plc,
)

if TYPE_CHECKING:
    from ..atmosphere.resolve import Resolver
    from ..croissant import Author

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
    from ..atmosphere.identity import parse_at_uri
    from ..atmosphere.resolve import _resolver, check_version
    from ..croissant import croissant_document
    from ..errors import ResolutionError

    at = parse_at_uri(uri)
    if at.collection in (PEER_ENTRY, PEER_LABEL):
        return _peer_croissant(uri, cid, appview)
    if at.collection != DATASET:
        raise ResolutionError(
            f"{uri} is an {at.collection} record, not an {DATASET} (or {PEER_ENTRY}, {PEER_LABEL})"
        )
    r = _resolver(None)
    dataset = r.fetch_record(uri, cid)
    if wanted is not None:  # the AppView's listing, checked on the author's own record
        check_version(dataset, *wanted)
    did = parse_at_uri(dataset.uri).authority
    ref = dataset.value.get("schema") or {}
    schema = r.fetch_record(str(ref.get("uri")), str(ref.get("cid")))
    author = _author(r, did)
    shards = None
    if "shards" not in dataset.value and "manifest" in dataset.value:
        shards = r.manifest_shards(did, str(author.pds), dataset.value["manifest"])
    return croissant_document(
        dataset, schema, author, shards=shards, page_url=_page(appview, dataset.uri)
    )


def _author(r: Resolver, did: str) -> Author:
    """The author's DID, handle (from the DID document) and PDS, for the document's creator."""
    from ..atmosphere.did import parse_did_document
    from ..croissant import Author

    handle = parse_did_document(did, r.identity.resolve_did(did)).handle
    return Author(did, handle, r.identity.pds_endpoint(did))


def _page(appview: str | None, uri: str) -> str | None:
    """The AppView's page of the record at `uri` (None without an AppView)."""
    if not appview:
        return None
    from ..atmosphere.identity import parse_at_uri

    at = parse_at_uri(uri)
    prefix = "entries" if at.collection == PEER_ENTRY else "datasets"
    rkey = quote(uri.rsplit("/", 1)[-1], safe="")
    return f"{appview.rstrip('/')}/{prefix}/{quote(at.authority, safe=':')}/{rkey}"


def _peer_croissant(uri: str, cid: str | None, appview: str | None) -> dict[str, Any]:
    """The Croissant document of a `science.alt.dataset` entry, or of the entry a label
    names (the label's version is the document's), records checked as `load_dataset` does."""
    from ..atmosphere.identity import parse_at_uri
    from ..atmosphere.peer_resolve import label_entry_uri, peer_schema
    from ..atmosphere.resolve import _resolver
    from ..croissant import peer_croissant_document
    from ..errors import ResolutionError

    r = _resolver(None)
    version = None
    if parse_at_uri(uri).collection == PEER_LABEL:
        label = r.fetch_record(uri, cid)
        if label.value.get("$type") != PEER_LABEL:
            raise ResolutionError(f"{label.uri} is not a {PEER_LABEL} record")
        given = label.value.get("version")
        version = given if isinstance(given, str) else None
        uri, cid = label_entry_uri(label), None
    entry = r.fetch_record(uri, cid)
    if entry.value.get("$type") != PEER_ENTRY:
        raise ResolutionError(f"{entry.uri} is not a {PEER_ENTRY} record")
    schema, _ = peer_schema(r, entry)
    did = parse_at_uri(entry.uri).authority
    return peer_croissant_document(
        entry, schema, _author(r, did), version=version, page_url=_page(appview, entry.uri)
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
    from ..atmosphere.peer_resolve import LabelPick
    from ..atmosphere.resolve import find_named

    use_plc(plc)
    with absent_when_not_found():
        found = find_named(uri, appview or None) if uri.startswith("@") else None
        if isinstance(found, LabelPick):  # a science.alt.dataset label: described with its entry
            uri, found = found.label.uri, None
        pick = found
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
