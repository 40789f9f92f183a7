"""`atdata publish <shards>`: publish shards as an io.atdata.dataset record."""

from __future__ import annotations

import re

import typer

from . import CliError
from ._common import (
    HANDLE_OPTION,
    PASSWORD_OPTION,
    PDS_OPTION,
    PLC_OPTION,
    flatten,
    is_at_uri,
    login,
    note,
    out,
    sample_class,
    use_plc,
)

__all__ = ["parse_split", "publish", "register"]

_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")


def parse_split(text: str, n_shards: int) -> tuple[str, list[int]]:
    """`train=0-7,9` -> ("train", [0..7, 9]); indices must exist."""
    name, sep, spec = text.partition("=")
    if not sep or not name.strip() or not spec.strip():
        raise CliError(f"--split takes name=indices (e.g. train=0-7,9), got {text!r}")
    indices: list[int] = []
    for part in spec.split(","):
        m = _RANGE.match(part.strip())
        if m is None:
            raise CliError(f"--split {text!r}: {part!r} is not an index or a range like 0-7")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        if hi < lo:
            raise CliError(f"--split {text!r}: range {part!r} runs backwards")
        indices.extend(range(lo, hi + 1))
    bad = [i for i in indices if i >= n_shards]
    if bad:
        raise CliError(f"--split {name}: shard index {bad[0]} is out of range (0-{n_shards - 1})")
    return name.strip(), indices


_SHARDS = typer.Argument(
    ...,
    help="Local shard files, brace patterns or globs, in order.",
    show_default=False,
)

_TAGS = typer.Option([], "--tag", help="A tag (repeat, or comma-separate).", show_default=False)

_SPLITS = typer.Option(
    [],
    "--split",
    help="name=shard indices, e.g. --split train=0-7 --split test=8,9.",
    show_default=False,
)

_URLS = typer.Option(
    [],
    "--url",
    help="Shards already hosted over http(s): one URL per shard, in order (instead of --storage).",
    show_default=False,
)


def publish(
    shards: list[str] = _SHARDS,
    name: str = typer.Option(..., "--name", help="Short dataset name, e.g. digits-train."),
    schema: str = typer.Option(
        ...,
        "--schema",
        help="The sample schema: an at:// URI of a published schema, or module:Class "
        "(published first when needed).",
        show_default=False,
    ),
    description: str = typer.Option(None, "--description", "-d", show_default=False),
    tags: list[str] = _TAGS,
    license: str = typer.Option(
        None, "--license", help="SPDX license id, e.g. CC-BY-4.0.", show_default=False
    ),
    splits: list[str] = _SPLITS,
    storage: str = typer.Option(
        "blobs",
        "--storage",
        help="'blobs' (uploaded to your PDS) or s3://bucket/prefix (uploaded with your AWS "
        "configuration).",
    ),
    urls: list[str] = _URLS,
    no_cut: bool = typer.Option(
        False, "--no-cut", help="Refuse shards over the PDS blob limit instead of cutting them."
    ),
    pds: str = PDS_OPTION,
    handle: str = HANDLE_OPTION,
    password: str = PASSWORD_OPTION,
    plc: str = PLC_OPTION,
) -> None:
    """Publish shards with their counts and sha256; prints the dataset's at:// URI on stdout.

    The record is checked against its lexicon before anything is uploaded.

    Examples:

      atdata publish 'out/digits-{000000..000009}.tar' --name digits \\
          --schema mypkg.samples:Digit --tag vision --license CC0-1.0 \\
          --split train=0-7 --split test=8,9

      URI=$(atdata publish out/*.tar --name digits --schema at://did:plc:abc/io.atdata.schema/3kx)

      atdata publish out/*.tar --name digits --schema mypkg:Digit --storage s3://bucket/digits
    """
    from .._sources import LocalShard, expand_sources

    use_plc(plc)
    sources = expand_sources(list(shards))
    remote = [s.name for s in sources if not isinstance(s, LocalShard)]
    if remote:
        raise CliError(f"publish takes local shard files; {remote[0]} is not one")
    paths = [str(s.path) for s in sources]  # type: ignore[attr-defined]
    split_map = dict(parse_split(s, len(paths)) for s in splits)
    if urls and storage != "blobs":
        raise CliError("pass either --url (hosted shards) or --storage, not both")
    if urls and len(urls) != len(paths):
        raise CliError(f"--url: {len(urls)} URL(s) for {len(paths)} shard(s)")
    schema_arg = schema if is_at_uri(schema) else sample_class(schema)
    client = login(pds, handle, password)
    note(f"publishing {len(paths)} shard(s) as {name!r} to {client.pds_url} ...")
    ref = client.publish_dataset(
        paths,
        name=name,
        schema=schema_arg,
        storage=list(urls) if urls else storage,
        description=description,
        tags=flatten(tags),
        license=license,
        splits=split_map or None,
        cut_oversize=not no_cut,
    )
    out(str(ref))


def register(app: typer.Typer) -> None:
    app.command("publish")(publish)
