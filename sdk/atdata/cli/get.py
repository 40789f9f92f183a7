"""`atdata get <at-uri>`: one atdata record, fetched from its author's PDS."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import typer

from ..display import dtype_text, human_bytes, shape_text
from ..records import DATASET, LENS, SCHEMA
from ..versions import record_version
from ._common import (
    APPVIEW_OPTION,
    CID_OPTION,
    FETCH_EPILOG,
    JSON_OPTION,
    PLC_OPTION,
    absent_when_not_found,
    out,
    print_json,
    resolve_handle_uri,
    schema_rows,
    table,
    use_plc,
)

__all__ = ["get", "register"]


def _header(title: str, uri: str, cid: str, v: Mapping[str, Any]) -> None:
    out(f"{title}  ({uri})")
    out(f"cid {cid}")
    if v.get("description"):
        out(str(v["description"]))


def _dataset(uri: str, cid: str, v: Mapping[str, Any]) -> None:
    totals = v.get("totals") or {}
    _header(str(v.get("name")), uri, cid, v)
    out(f"version {record_version(v)}")
    out(
        f"{totals.get('samples')} samples, {human_bytes(totals.get('bytes'))}, "
        f"{totals.get('shards')} shard(s); storage {str((v.get('storage') or {}).get('$type', '?')).rsplit('#', 1)[-1]}"
    )
    if v.get("tags"):
        out("tags: " + ", ".join(map(str, v["tags"])))
    if v.get("license"):
        out(f"license: {v['license']}")
    schema = v.get("schema") or {}
    out(f"schema: {schema.get('uri')} (cid {schema.get('cid')})")
    for split in v.get("splits") or []:
        out(f"split {split.get('name')}: shards {split.get('shards')}")
    arrays = v.get("arrays") or []
    if arrays:
        out()
        out(
            table(
                [
                    {**a, "dtype": dtype_text(a.get("dtype")), "shape": shape_text(a.get("shape"))}
                    for a in arrays
                ],
                ["field", "dtype", "shape"],
            )
        )
    shards = v.get("shards") or []
    if shards:
        out()
        rows = [
            {
                "#": i,
                "samples": s.get("samples"),
                "size": human_bytes(s.get("bytes")),
                "sha256": s.get("sha256"),
            }
            for i, s in enumerate(shards)
        ]
        out(table(rows, ["#", "samples", "size", "sha256"]))
    elif v.get("manifest"):
        out("shards: listed in a manifest blob")


def _schema(uri: str, cid: str, v: Mapping[str, Any]) -> None:
    _header(f"{v.get('name')} {v.get('version')}", uri, cid, v)
    out()
    out(table(schema_rows(v), ["field", "type", "dtype", "shape"]))


def _lens(uri: str, cid: str, v: Mapping[str, Any]) -> None:
    code = v.get("code") or {}
    _header(str(v.get("name")), uri, cid, v)
    out(f"source: {(v.get('source') or {}).get('uri')}")
    out(f"target: {(v.get('target') or {}).get('uri')}")
    out(f"code: {code.get('entryPoint')} sha256 {code.get('sha256')}")
    if code.get("repository"):
        out(f"repository: {code.get('repository')} {code.get('commit') or ''}".rstrip())


def get(
    uri: str = typer.Argument(
        ...,
        help="at:// URI of a dataset, schema or lens record, or @handle/name[@version] of a "
        "dataset (through the AppView, else the author's PDS; the entry of a "
        "science.alt.dataset label of that name when the author has no dataset of it).",
        show_default=False,
    ),
    cid: str = CID_OPTION,
    appview: str = APPVIEW_OPTION,
    plc: str = PLC_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Fetch a record from its author's PDS (checked against its CID) and describe it.

    Examples:

      atdata get at://did:plc:abc/io.atdata.dataset/3kxyz

      atdata get at://alice.example.com/io.atdata.schema/3kabc --json

      atdata get @alice.example.com/digits@1.1.0 --appview https://appview.example
    """
    from ..atmosphere import fetch_record
    from ..atmosphere.peer_resolve import LabelPick
    from ..atmosphere.resolve import check_version, find_named

    use_plc(plc)
    with absent_when_not_found():
        found = find_named(uri, appview or None) if uri.startswith("@") else None
        if isinstance(found, LabelPick):  # a science.alt.dataset label: the entry it names
            uri, found = found.entry_uri, None
        pick = found
        uri = resolve_handle_uri(pick.uri if pick else uri, appview)
        rec = fetch_record(uri, cid)
        if pick is not None:  # the AppView's listing, checked on the author's own record
            check_version(rec, pick.name, pick.version)
    if as_json:
        print_json({"uri": rec.uri, "cid": rec.cid, "value": rec.value})
        return
    kind = rec.value.get("$type")
    show = {
        DATASET: _dataset,
        SCHEMA: _schema,
        LENS: _lens,
    }.get(str(kind))
    if show is None:
        print_json({"uri": rec.uri, "cid": rec.cid, "value": rec.value})
    else:
        show(rec.uri, rec.cid, rec.value)


def register(app: typer.Typer) -> None:
    app.command("get", epilog=FETCH_EPILOG)(get)
