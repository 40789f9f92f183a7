"""`make demo`: the end-to-end walk-through (grown by later work).

For now the local layer: define a sample type, write a small sharded dataset, read it back in
order and shuffled, batch it, and view it through a lens, printing what each step did.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Annotated

import numpy as np
from numpy.typing import NDArray

import atdata


@atdata.packable
class DigitSample:
    """A tiny image with its class and a confidence."""

    image: Annotated[NDArray[np.uint8], atdata.Shape(8, 8)]
    label: int
    confidence: float


@atdata.packable
class LabelView:
    """Only what a label-statistics job needs."""

    label: int
    confident: bool


@atdata.lens
def label_view(src: DigitSample) -> LabelView:
    return LabelView(label=src.label, confident=src.confidence >= 0.5)


def _samples(n: int, seed: int = 0) -> list[DigitSample]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        label = i % 10
        image = (rng.random((8, 8)) * 64).astype(np.uint8)
        image[label % 8, :] = 255  # a visible stripe per class
        out.append(DigitSample(image=image, label=label, confidence=float(rng.random())))
    return out


def run(workdir: Path, n: int = 1000, per_shard: int = 250) -> dict[str, object]:
    """Do the walk-through in ``workdir``; returns the facts it printed (for tests)."""
    facts: dict[str, object] = {}
    print(f"1. Write {n} DigitSample records into shards of {per_shard}")
    t = time.perf_counter()
    infos = atdata.write_samples(_samples(n), workdir / "digits-%06d.tar", maxcount=per_shard)
    took = time.perf_counter() - t
    for info in infos:
        print(
            f"   {Path(info.path).name}: {info.samples} samples, {info.bytes:,} bytes, "
            f"sha256 {info.sha256[:16]}..., arrays {info.arrays}"
        )
    print(f"   wrote {n} samples in {took * 1000:.0f} ms")
    facts["shards"] = len(infos)

    pattern = str(workdir / f"digits-{{000000..{len(infos) - 1:06d}}}.tar")
    ds = atdata.Dataset[DigitSample](pattern, sample_count=n)
    print(f"\n2. Read it back: {ds!r}")
    first = ds.head(3)
    for s in first:
        print(
            f"   label={s.label} confidence={s.confidence:.2f} image {s.image.shape} {s.image.dtype}"
        )
    t = time.perf_counter()
    count = sum(1 for _ in ds.ordered())
    print(f"   ordered(): {count} samples in {(time.perf_counter() - t) * 1000:.1f} ms")
    facts["ordered"] = count

    print("\n3. Batches (arrays stacked, other fields as lists)")
    batches = list(ds.ordered(batch_size=64))
    b = batches[0]
    print(
        f"   {len(batches)} batches of up to 64; first: image {b.image.shape}, labels {b.label[:8]}..."
    )
    facts["batches"] = len(batches)

    print("\n4. Shuffled (shard order and a 200-sample buffer, seeded)")
    order = [s.label for s in ds.shuffled(buffer=200, seed=7)]
    again = [s.label for s in ds.shuffled(buffer=200, seed=7)]
    print(f"   first labels {order[:12]}; same seed, same order: {order == again}")
    facts["shuffled"] = len(order)

    print("\n5. A lens view: DigitSample -> LabelView")
    view = ds.as_type(LabelView)
    confident = [0] * 10
    for batch in view.ordered(batch_size=100):
        for label, ok in zip(batch.label, batch.confident, strict=True):
            confident[label] += ok
    print(f"   confident samples per class: {confident}")
    facts["confident"] = sum(confident)
    print("\nDone.")
    return facts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="atdata walk-through")
    parser.add_argument("--dir", type=Path, default=None, help="keep the shards here")
    parser.add_argument("--samples", type=int, default=1000)
    args = parser.parse_args(argv)
    if args.dir is not None:
        args.dir.mkdir(parents=True, exist_ok=True)
        run(args.dir, args.samples)
        return
    with tempfile.TemporaryDirectory(prefix="atdata-demo-") as tmp:
        run(Path(tmp), args.samples)


if __name__ == "__main__":
    main()
