"""`atdata publish <shards>`: publish shards as an io.atdata.dataset record."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer

from .._sources import LocalShard, expand_sources
from ..records import DATASET, PEER_ENTRY
from . import EXIT_INTERRUPTED, CliError
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

_DERIVED = typer.Option(
    [],
    "--derived-from",
    help="A dataset this one was made from: at:// URI, or URI=relation with relation one of "
    "subset, augmented, relabelled, converted, merged, other (repeat for several).",
    show_default=False,
)

_CARD = typer.Option(
    None,
    "--card",
    help="The dataset card: a Markdown file (up to 1 MiB), shown on the AppView's page.",
    show_default=False,
)

_FAMILY = typer.Option(
    "io.atdata",
    "--family",
    help="io.atdata, or science.alt.dataset: the atdata 0.7 network's entry, schema and a "
    "label naming the version (no --card, --split or --derived-from).",
)

_URLS = typer.Option(
    [],
    "--url",
    help="Shards already hosted over http(s): one URL per shard, in order (instead of --storage).",
    show_default=False,
)


def _derivation(text: str) -> str | tuple[str, str]:
    """`URI` or `URI=relation` (at:// URIs hold no `=`)."""
    uri, sep, relation = text.partition("=")
    if not is_at_uri(uri):
        raise CliError(f"--derived-from takes an at:// URI (optionally =relation), got {text!r}")
    return (uri, relation) if sep else uri


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
    card: Path = _CARD,
    derived_from: list[str] = _DERIVED,
    no_cut: bool = typer.Option(
        False, "--no-cut", help="Refuse shards over the PDS blob limit instead of cutting them."
    ),
    version: str = typer.Option(
        None,
        "--version",
        help="Semantic version, e.g. 1.1.0 (default: the next patch after your newest of this "
        "name, 1.0.0 for a new one). A version you already used is refused.",
        show_default=False,
    ),
    allow_older: bool = typer.Option(
        False, "--allow-older", help="Allow a version lower than your newest of this name."
    ),
    family: str = _FAMILY,
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

      atdata publish out/*.tar --name digits --schema mypkg:Digit --version 2.0.0

      atdata publish out/*.tar --name digits --schema mypkg:Digit --family science.alt.dataset
    """

    use_plc(plc)
    sources = expand_sources(list(shards))
    local = [s for s in sources if isinstance(s, LocalShard)]
    if len(local) < len(sources):
        remote = next(s for s in sources if not isinstance(s, LocalShard))
        raise CliError(f"publish takes local shard files; {remote.name} is not one")
    paths = [str(s.path) for s in local]
    split_map = dict(parse_split(s, len(paths)) for s in splits)
    if urls and storage != "blobs":
        raise CliError("pass either --url (hosted shards) or --storage, not both")
    if urls and len(urls) != len(paths):
        raise CliError(f"--url: {len(urls)} URL(s) for {len(paths)} shard(s)")
    schema_arg = schema if is_at_uri(schema) else sample_class(schema)
    client = login(pds, handle, password)
    if no_cut and storage == "blobs" and not urls:
        _refuse_oversize(client, paths)
    watch = _PublishWatch(client)
    try:
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
            card=card,
            derived_from=[_derivation(d) for d in derived_from],
            version=version,
            allow_older=allow_older,
            family=family,
        )
    except KeyboardInterrupt:
        note(watch.interrupted(name))
        if watch.dataset is not None:
            out(watch.dataset)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    note(f"published {name!r} version {ref.version}")
    out(str(ref))


def _refuse_oversize(client: Any, paths: list[str]) -> None:
    """`--no-cut`: refuse a shard over the PDS's blob limit before anything is written."""
    limit = client.blob_limit()
    if limit is None:
        return  # the PDS does not say: its refusal of the first (largest) upload stops it
    for path in paths:
        size = os.path.getsize(path)
        if size > limit:
            raise CliError(
                f"shard {path} is {size} bytes, over this PDS's blob limit of {limit} bytes; "
                "nothing was uploaded (drop --no-cut to cut it between samples, write smaller "
                "shards, or use --storage s3://...)"
            )


class _PublishWatch:
    """Notes what a publish has written, so that an interrupt can say what is published.

    Wraps the client's `upload_blob` and `create_record`. A record write is atomic on the PDS;
    a Ctrl-C during it is held until the PDS answers (a second Ctrl-C does not wait), so the
    answer says for certain whether the dataset record exists.
    """

    def __init__(self, client: Any) -> None:
        self.blobs = 0
        self.records: list[tuple[str, str]] = []
        self.uncertain = False
        upload, create = client.upload_blob, client.create_record

        def upload_blob(*args: Any, **kwargs: Any) -> Any:
            blob = upload(*args, **kwargs)
            self.blobs += 1
            return blob

        def create_record(nsid: str, *args: Any, **kwargs: Any) -> Any:
            self.uncertain = True
            with _sigint_held():
                ref = create(nsid, *args, **kwargs)
                self.records.append((nsid, str(ref)))
                self.uncertain = False
            return ref

        client.upload_blob = upload_blob
        client.create_record = create_record

    @property
    def dataset(self) -> str | None:
        return next((uri for nsid, uri in self.records if nsid in (DATASET, PEER_ENTRY)), None)

    def interrupted(self, name: str) -> str:
        """One line: what an interrupted publish of `name` did and did not publish."""
        if self.dataset is not None:
            return f"interrupted, but only after dataset {name!r} was published: {self.dataset}"
        if self.uncertain:
            return (
                f"interrupted while the PDS was writing a record: dataset {name!r} may or may "
                "not be published (check with `atdata get` on your repo's io.atdata.dataset "
                "records before publishing again)"
            )
        text = f"interrupted: dataset {name!r} was not published (no dataset record was created"
        if self.blobs:
            text += (
                f"; the {self.blobs} blob(s) already uploaded are referenced by nothing "
                "(the PDS lets them expire)"
            )
        text += ")"
        others = [uri for _, uri in self.records]
        if others:
            text += f"; published before the interrupt: {', '.join(others)}"
        return text


@contextlib.contextmanager
def _sigint_held() -> Iterator[None]:
    """Hold a first Ctrl-C until the block ends (then raise it); a second one raises at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    previous = signal.getsignal(signal.SIGINT)

    def hold(signum: int, frame: Any) -> None:
        if pending:
            raise KeyboardInterrupt
        pending.append(signum)

    signal.signal(signal.SIGINT, hold)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if pending:
        raise KeyboardInterrupt


def register(app: typer.Typer) -> None:
    app.command("publish")(publish)
