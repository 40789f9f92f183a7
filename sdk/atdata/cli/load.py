"""`atdata load <at-uri>`: resolve a dataset and read its first samples."""

from __future__ import annotations

import typer

from ..display import type_text
from ..schema import schema_of
from . import CliError
from ._common import (
    APPVIEW_OPTION,
    CID_OPTION,
    FETCH_EPILOG,
    JSON_OPTION,
    PLC_OPTION,
    absent_when_not_found,
    note,
    out,
    preview,
    print_json,
    resolve_handle_uri,
    sample_class,
    sample_fields,
    use_plc,
)

__all__ = ["load", "register"]


def load(
    uri: str = typer.Argument(
        ...,
        help="at:// URI of an io.atdata.dataset record, or @handle/name (the newest version) "
        "or @handle/name@1.1.0 (through the AppView).",
        show_default=False,
    ),
    head: int = typer.Option(5, "--head", "-n", min=0, help="How many samples to print."),
    split: str = typer.Option(
        None, "--split", help="Only this split (train, test, ...).", show_default=False
    ),
    sample_type: str = typer.Option(
        None,
        "--type",
        "-t",
        help=(
            "Your @packable class (module:Class): it must match the published schema, or a "
            "registered lens must lead to it from a class that does."
        ),
        show_default=False,
    ),
    cid: str = CID_OPTION,
    appview: str = APPVIEW_OPTION,
    plc: str = PLC_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Resolve a dataset by at:// URI and print its first samples (shards checked by sha256).

    Examples:

      atdata load at://did:plc:abc/io.atdata.dataset/3kxyz --head 5

      atdata load at://did:plc:abc/io.atdata.dataset/3kxyz --split test --type mypkg:Digit

      atdata load at://did:plc:abc/io.atdata.dataset/3kxyz --head 100 --json

      atdata load @alice.example.com/digits@1.1.0 --appview https://appview.example
    """
    from ..atmosphere import load_dataset

    use_plc(plc)
    cls = sample_class(sample_type) if sample_type else None
    if not uri.startswith("@"):  # @handle/name[@version] goes through the AppView's listing
        uri = resolve_handle_uri(uri, appview)
    with absent_when_not_found():
        ds = load_dataset(uri, sample_type=cls, split=split, cid=cid, appview=appview)
    if cls is not None and ds.sample_type is not cls:
        raise CliError(_mismatch(sample_type, cls, ds.sample_type))
    count = ds.sample_count
    note(
        f"{ds.sample_type.__name__}: {count if count is not None else '?'} samples in "
        f"{len(ds.shards)} shard(s), {ds.uri} version {ds.version}, record cid {ds.cid}"
    )
    samples = ds.head(head)
    if as_json:
        print_json(
            {
                "uri": ds.uri,
                "cid": ds.cid,
                "version": ds.version,
                "samples": count,
                "shards": len(ds.shards),
                "head": [{k: preview(v) for k, v in sample_fields(s).items()} for s in samples],
            }
        )
        return
    for i, sample in enumerate(samples):
        out(
            f"[{i}] " + "  ".join(f"{k}={preview(v, 40)}" for k, v in sample_fields(sample).items())
        )


def _mismatch(spec: str, wanted: type, published: type) -> str:
    """One line: which fields of `--type` differ from the published schema's."""

    def fields(cls: type) -> dict[str, str]:
        return {f["name"]: type_text(f["type"]) for f in schema_of(cls)["fields"]}

    ours, theirs = fields(wanted), fields(published)
    diffs = [
        f"{name}: {ours.get(name, 'absent')} here, {theirs.get(name, 'absent')} published"
        for name in dict.fromkeys([*theirs, *ours])
        if ours.get(name) != theirs.get(name)
    ]
    return (
        f"--type {spec} does not match the dataset's schema ("
        + ("; ".join(diffs) or "field order or nested types differ")
        + "); leave out --type to read it as published"
    )


def register(app: typer.Typer) -> None:
    app.command("load", epilog=FETCH_EPILOG)(load)
