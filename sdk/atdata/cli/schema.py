"""`atdata schema show|publish`: sample schemas from a class or from the network."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import typer

from ..records import DATASET, LENS, SCHEMA
from ..schema import schema_of
from . import CliError
from ._common import (
    APPVIEW_OPTION,
    FETCH_EPILOG,
    HANDLE_OPTION,
    JSON_OPTION,
    PASSWORD_OPTION,
    PDS_OPTION,
    PLC_OPTION,
    absent_when_not_found,
    is_at_uri,
    login,
    out,
    print_json,
    resolve_handle_uri,
    sample_class,
    schema_rows,
    table,
    use_plc,
)

__all__ = ["register", "schema_app"]

schema_app = typer.Typer(
    name="schema",
    help=(
        "Sample schemas (io.atdata.schema records).\n\n"
        "Examples:\n\n"
        "  atdata schema show mypkg.samples:Digit\n\n"
        "  atdata schema show at://did:plc:abc/io.atdata.schema/3kxyz --json\n\n"
        "  atdata schema publish mypkg.samples:Digit   # needs ATDATA_PDS/HANDLE/PASSWORD"
    ),
    no_args_is_help=True,
)


def fetch_schema(uri: str) -> tuple[str, str, dict[str, Any]]:
    """(uri, cid, record) of the schema at `uri`, or of the schema a dataset/lens URI pins."""
    from ..atmosphere import fetch_record

    with absent_when_not_found():
        rec = fetch_record(uri)
        kind = rec.value.get("$type")
        if kind == DATASET:
            ref = rec.value["schema"]
            rec = fetch_record(ref["uri"], ref.get("cid"))
        elif kind == LENS:
            raise CliError(
                f"{uri} is a lens: show its source or target schema "
                f"({rec.value['source']['uri']} -> {rec.value['target']['uri']})"
            )
        elif kind != SCHEMA:
            raise CliError(f"{uri} is a {kind} record, not a schema")
    return rec.uri, rec.cid, rec.value


def print_schema(record: Mapping[str, Any], where: str) -> None:
    out(f"{record.get('name')} {record.get('version')}  ({where})")
    if record.get("description"):
        out(str(record["description"]))
    out()
    out(table(schema_rows(record), ["field", "type", "dtype", "shape"]))
    for nested in record.get("types") or []:
        out()
        out(f"nested {nested.get('name')} {nested.get('version')}:")
        out(table(schema_rows(nested), ["field", "type", "dtype", "shape"]))


@schema_app.command("show", epilog=FETCH_EPILOG)
def show(
    target: str = typer.Argument(
        ...,
        help="module:Class, or the at:// URI of a schema (or of a dataset: its pinned schema).",
        show_default=False,
    ),
    appview: str = APPVIEW_OPTION,
    plc: str = PLC_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Show a schema's fields with their types, dtypes and shapes.

    Examples:

      atdata schema show mypkg.samples:Digit

      atdata schema show at://alice.example.com/io.atdata.schema/3kxyz

      atdata schema show at://did:plc:abc/io.atdata.dataset/3kabc --json
    """
    if is_at_uri(target):
        use_plc(plc)
        uri, cid, record = fetch_schema(resolve_handle_uri(target, appview))
        if as_json:
            print_json({"uri": uri, "cid": cid, "record": record})
        else:
            print_schema(record, f"{uri}, cid {cid}")
        return

    cls = sample_class(target)
    record = schema_of(cls)
    if as_json:
        print_json({"record": record})
    else:
        print_schema(record, f"from {target}, not published")


@schema_app.command("publish")
def publish(
    target: str = typer.Argument(
        ..., help="The @packable class to publish, as module:Class.", show_default=False
    ),
    family: str = typer.Option(
        "io.atdata",
        "--family",
        help="io.atdata, or science.alt.dataset (the atdata 0.7 network's JSON Schema form).",
    ),
    pds: str = PDS_OPTION,
    handle: str = HANDLE_OPTION,
    password: str = PASSWORD_OPTION,
) -> None:
    """Publish a sample class's schema to your PDS; prints its at:// URI (alone, on stdout).

    Publishing identical content again prints the existing record's URI. The same name and
    version with different fields is refused: schemas are immutable, bump the version.

    Examples:

      export ATDATA_PDS=https://pds.example.com ATDATA_HANDLE=alice.example.com

      export ATDATA_PASSWORD=...   # an app password

      SCHEMA=$(atdata schema publish mypkg.samples:Digit)
    """
    cls = sample_class(target)
    client = login(pds, handle, password)
    ref = client.publish_schema(cls, family=family)
    out(str(ref))


def register(app: typer.Typer) -> None:
    app.add_typer(schema_app)
