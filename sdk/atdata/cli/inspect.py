"""`atdata inspect <shards>`: what a set of local or remote shards holds."""

from __future__ import annotations

from typing import Any

import typer

from ..display import dtype_text, human_bytes, shape_text
from ._common import (
    JSON_OPTION,
    FieldStats,
    out,
    preview,
    print_json,
    sample_class,
    sample_fields,
    table,
)

__all__ = ["inspect", "register"]


_SHARDS = typer.Argument(
    ...,
    help="Shard files, brace patterns (data-{000000..000009}.tar), globs, http(s):// or "
    "s3:// URLs.",
    show_default=False,
)


def inspect(
    shards: list[str] = _SHARDS,
    sample_type: str = typer.Option(
        None,
        "--type",
        "-t",
        help="Decode as this @packable class (module:Class); default: schema-free samples.",
        show_default=False,
    ),
    head: int = typer.Option(3, "--head", "-n", min=0, help="How many samples to preview."),
    allow_truncated: bool = typer.Option(
        False,
        "--allow-truncated",
        help="Read shards cut short at a sample boundary (no end-of-archive blocks) up to "
        "where they end, instead of failing.",
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Count samples and bytes, list fields with dtypes and shapes, preview the first samples.

    Reads every sample once (the count is exact) and checks each tar as it goes: a shard
    that is corrupt or cut short is an error (exit 1).

    Examples:

      atdata inspect out/digits-000000.tar

      atdata inspect 'out/digits-{000000..000003}.tar' --head 5

      atdata inspect 'out/*.tar' --type mypkg.samples:Digit --json
    """
    from .._sources import expand_sources
    from ..dataset import Dataset, _default_type

    cls = sample_class(sample_type) if sample_type else _default_type()
    sources = expand_sources(list(shards))
    ds: Dataset[Any] = Dataset(sources, sample_type=cls, allow_truncated=allow_truncated)
    stats = FieldStats()
    previews: list[dict[str, Any]] = []
    per_shard: list[dict[str, Any]] = []
    for source in sources:
        count = 0
        # Dataset's per-shard stage: errors name the shard and the sample key.
        for key, sample in ds.iter_shard(source, keys=True):
            stats.add(sample)
            if len(previews) < head:
                previews.append({"key": key, "fields": sample_fields(sample)})
            count += 1
        size = source.size
        if size is None and hasattr(source, "path"):
            size = source.path.stat().st_size
        per_shard.append({"shard": source.name, "samples": count, "bytes": size})

    total_samples = sum(s["samples"] for s in per_shard)
    sizes = [s["bytes"] for s in per_shard]
    total_bytes = sum(sizes) if all(isinstance(b, int) for b in sizes) else None
    fields = stats.rows()
    if as_json:
        print_json(
            {
                "shards": per_shard,
                "samples": total_samples,
                "bytes": total_bytes,
                "fields": fields,
                "preview": [
                    {"key": p["key"], "fields": {k: preview(v) for k, v in p["fields"].items()}}
                    for p in previews
                ],
            }
        )
        return
    out(
        f"{len(per_shard)} shard(s), {total_samples} samples, {human_bytes(total_bytes)}"
        + (f" ({total_bytes} bytes)" if total_bytes is not None else "")
    )
    if len(per_shard) > 1:
        out()
        out(
            table(
                [{**s, "bytes": human_bytes(s["bytes"])} for s in per_shard],
                ["shard", "samples", "bytes"],
            )
        )
    out()
    out(
        table(
            [
                {
                    **f,
                    "dtype": ", ".join(dtype_text(d) for d in f["dtype"].split(", ") if d),
                    "shape": shape_text(f["shape"]),
                }
                for f in fields
            ],
            ["field", "type", "dtype", "shape"],
        )
    )
    for p in previews:
        out()
        out(f"[{p['key']}]")
        for name, value in p["fields"].items():
            out(f"  {name}: {preview(value)}")


def register(app: typer.Typer) -> None:
    app.command("inspect")(inspect)
