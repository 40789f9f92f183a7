"""Feeding a GPU: the training loader against DataLoader paths, with the node's floors.

Usage (from the repository root; no install needed, so it runs on an offline GPU node)::

    PYTHONPATH=sdk python benchmarks/bench_gpu_feed.py --quick     # seconds, CPU is fine
    PYTHONPATH=sdk python benchmarks/bench_gpu_feed.py             # 16-core GPU node sizes
    PYTHONPATH=sdk python benchmarks/bench_gpu_feed.py --workers 0,2 --repeats 7 --datasets seed

Two datasets: seed-shaped (float32 224x224x3 + int label, batches of 32) and small (uint8
32x32x3 + int label, batches of 256). Rows:

* floors: the shards' bytes read by N processes (``readinto``); the shards copied from the
  page cache (mapped, as loader workers hold them) into batch slots a sample at a time by N
  processes, the one copy the loader makes, so about the most N workers can deliver here,
  memory bandwidth included (medians of 5, alternating; on a shared machine this swings with
  what else runs); and a pinned host-to-device copy (CUDA only);
* ``ours``: ``ds.loader(batch_size, workers=N, device=...)`` in storage order and shuffled;
* ``ds.torch() + DataLoader``: the DataLoader-compatible path (``pin_memory`` on CUDA);
* ``webdataset + DataLoader``: webdataset with msgpack decoding and its own batching.

Every configuration runs ``--repeats`` times (with ``--quick`` the DataLoader baselines once), the configurations alternating within each round
so that load from other processes spreads over all of them; each run makes one warm-up epoch
(worker start, page cache: a one-time cost a training loop pays once, not per epoch) and times
the next ones back to back, as a training loop runs them (``--quick``: as many as fill 0.3 s,
since its epochs last milliseconds); the same epochs and the same consumer (the batch's
images counted) for every worker count. Medians are printed with the ratio to ``ours`` with 0 workers,
the CPU-seconds per epoch of the training process and of its workers (from ``/proc``), peak
RSS of the training process and of its workers, and the shared memory of the loader's ring;
then each worker count's ratio to 0 workers next to the copy floor's ratio (the ceiling). Without CUDA, batches stay in host memory (the rate a GPU could
be fed at, minus the DMA copy).
"""

from __future__ import annotations

import argparse
import operator
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import atdata
import numpy as np
from numpy.typing import NDArray

CACHE = Path(os.environ.get("ATDATA_BENCH_CACHE", Path.home() / ".cache" / "atdata"))


@atdata.packable
class Seed:
    image: NDArray[np.float32]
    label: int


@atdata.packable
class Small:
    image: NDArray[np.uint8]
    label: int


@dataclass(frozen=True)
class Spec:
    name: str
    cls: type
    shape: tuple[int, ...]
    dtype: Any
    samples: int
    shards: int
    batch: int


FULL = {
    "seed": Spec("seed", Seed, (224, 224, 3), np.float32, 8192, 128, 32),
    "small": Spec("small", Small, (32, 32, 3), np.uint8, 400_000, 40, 256),
}
QUICK = {
    "seed": Spec("seed-quick", Seed, (224, 224, 3), np.float32, 384, 8, 32),
    "small": Spec("small-quick", Small, (32, 32, 3), np.uint8, 10_000, 4, 256),
}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def shards(spec: Spec) -> list[str]:
    """The dataset's shards, written once (with our writer) under the benchmark cache."""
    root = CACHE / "bench-data" / f"gpu-feed-{spec.name}"
    marker = root / f"done-{spec.samples}-{spec.shards}"
    if not marker.exists():
        log(f"generating {spec.name}: {spec.samples:,} samples in {spec.shards} shards")
        root.mkdir(parents=True, exist_ok=True)
        for old in root.glob("*"):
            old.unlink()
        rng = np.random.default_rng(0)
        per = -(-spec.samples // spec.shards)

        def gen() -> Any:
            for i in range(spec.samples):
                if spec.dtype == np.float32:
                    image = rng.random(spec.shape, dtype=np.float32)
                else:
                    image = rng.integers(0, 256, spec.shape, dtype=np.uint8)
                yield spec.cls(image=image, label=i % 1000)

        atdata.write_samples(gen(), root / "data-%06d.tar", maxcount=per, progress=False)
        marker.touch()
    return sorted(str(p) for p in root.glob("data-*.tar"))


# -- measurements -----------------------------------------------------------------------------


@dataclass
class Row:
    label: str
    workers: int | None
    times: list[float] = field(default_factory=list)
    rss_main: int = 0  # KiB
    rss_workers: int = 0  # KiB, the largest worker
    shm: int = 0  # bytes
    cpu_main: list[float] = field(default_factory=list)  # CPU-s per epoch, per run
    cpu_workers: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.times) if self.times else float("nan")

    def cpu(self) -> tuple[float, float]:
        """Median CPU-seconds per epoch: (training process, workers)."""
        return statistics.median(self.cpu_main), statistics.median(self.cpu_workers)


def _worker_rss() -> int:
    """The largest RSS (KiB) among this process's children (loader or DataLoader workers)."""
    best = 0
    me = os.getpid()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().split()
            if int(stat[3]) != me:
                continue
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    best = max(best, int(line.split()[1]))
        except (OSError, IndexError, ValueError):
            continue
    return best


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _tree_cpu(pids: list[int]) -> float:
    """CPU-seconds (user + system) used so far by these processes (gone ones count 0)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            rest = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        total += (int(rest[11]) + int(rest[12])) / tick
    return total


def _children() -> list[int]:
    me = os.getpid()
    out = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]) == me:
                    out.append(int(pid))
            except (OSError, IndexError, ValueError):
                continue
    return out


#: Timed epochs run at least this long in all (set by --min-time): quick epochs last
#: milliseconds, too short to time one by one on a shared machine.
MIN_TIME = [0.0]


def _epochs(iterate: Any, epochs: int, device: Any, row: Row) -> None:
    """One warm-up epoch, then the median time of ``epochs`` timed ones (more while they add
    up to less than ``MIN_TIME`` seconds) into ``row``, with the CPU-seconds per epoch of
    this process and of its children (the workers) over the timed ones."""
    import torch

    n = iterate()  # warm-up: worker start, page cache, mappings
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)
    workers = _children()
    times: list[float] = []
    work0, main0 = _tree_cpu(workers), time.process_time()
    t = time.perf_counter()
    # Back to back, as a training loop runs them: nothing between one epoch's last batch and
    # the next one's ``for``, so workers that start the next epoch early gain only what they
    # would gain in training, and the in-process path loses nothing to a pause either.
    while len(times) < epochs or sum(times) < MIN_TIME[0]:
        n = iterate()
        if device is not None and device.type == "cuda":
            torch.cuda.synchronize(device)
        now = time.perf_counter()
        times.append(now - t)
        t = now
    row.cpu_main.append((time.process_time() - main0) / len(times))
    row.cpu_workers.append((_tree_cpu(workers) - work0) / len(times))
    # After the timed epochs: scanning /proc costs the training process milliseconds.
    row.rss_workers = max(row.rss_workers, _worker_rss())
    row.rss_main = max(row.rss_main, _rss())
    assert n > 0
    row.times.append(statistics.median(times))


def run_ours(
    ds: Any, spec: Spec, workers: int, shuffle: bool, device: Any, epochs: int, row: Row
) -> None:
    loader = ds.loader(batch_size=spec.batch, workers=workers, shuffle=shuffle, device=device)

    def epoch() -> int:
        n = 0
        for batch in loader:
            n += batch["image"].shape[0]
        return n

    try:
        _epochs(epoch, epochs, device, row)
        row.shm = loader.ring_bytes
    finally:
        loader.close()


def run_torch(ds: Any, spec: Spec, workers: int, device: Any, epochs: int, row: Row) -> None:
    batches = ds.torch(batch_size=spec.batch, shuffle=False)
    _feed_torch(batches, operator.itemgetter("image"), workers, device, epochs, row)


def _wds_decode(sample: dict[str, Any]) -> tuple[Any, int]:
    s = _WDS_CLS[0].from_bytes(sample["msgpack"])
    return s.image, s.label


_WDS_CLS: list[type] = [Seed]


def run_webdataset(
    paths: list[str], spec: Spec, workers: int, device: Any, epochs: int, row: Row
) -> None:
    import webdataset as wds

    _WDS_CLS[0] = spec.cls
    pipeline = (
        wds.WebDataset(paths, shardshuffle=False, workersplitter=wds.split_by_worker)
        .map(_wds_decode)
        .batched(spec.batch)
    )
    _feed_torch(pipeline, operator.itemgetter(0), workers, device, epochs, row)


def _feed_torch(
    batches: Any, image_of: Callable[[Any], Any], workers: int, device: Any, epochs: int, row: Row
) -> None:
    """Time epochs of torch's DataLoader over an iterable of batches (`image_of` picks a
    batch's images) with the same settings for every contender: pinned memory and a
    non-blocking copy on CUDA."""
    from torch.utils.data import DataLoader

    cuda = device is not None and device.type == "cuda"
    loader = DataLoader(
        batches,
        batch_size=None,
        num_workers=workers,
        pin_memory=cuda,
        prefetch_factor=4 if workers else None,
        persistent_workers=workers > 0,
    )

    def epoch() -> int:
        n = 0
        for batch in loader:
            image = image_of(batch)
            if cuda:
                image = image.to(device, non_blocking=True)
            n += image.shape[0]
        return n

    _epochs(epoch, epochs, device, row)


def floor_read(paths: list[str], procs: int) -> float:
    """Seconds for ``procs`` processes to read every shard's bytes once (split between them)."""
    import multiprocessing as mp

    def read(mine: list[str]) -> None:
        buf = memoryview(bytearray(4 << 20))
        for p in mine:
            with open(p, "rb", buffering=0) as f:
                while f.readinto(buf):
                    pass

    ctx = mp.get_context("fork")
    t = time.perf_counter()
    jobs = [ctx.Process(target=read, args=(paths[i::procs],)) for i in range(procs)]
    for j in jobs:
        j.start()
    for j in jobs:
        j.join()
    return time.perf_counter() - t


def _copy_shards(
    mine: list[str], sample_bytes: int, batch: int, passes: int, barrier: Any, out: Any
) -> None:
    """Copy the mapped shards, a sample's bytes at a time, into the rows of two batch slots
    of shared memory (as a loader worker fills a slot): a warm-up pass (page-cache pages
    mapped, as a worker keeps its shards), then, once every process is ready, ``passes``
    timed ones; ``(start, end)`` go to ``out``."""
    import mmap

    maps = []
    for p in mine:
        with open(p, "rb") as f:
            maps.append(np.frombuffer(mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ), np.uint8))
    ring = np.frombuffer(mmap.mmap(-1, 2 * batch * sample_bytes), np.uint8)
    ring[:] = 0
    rows = ring.reshape(2 * batch, sample_bytes)

    def one_pass() -> None:
        k = 0
        for m in maps:
            for off in range(0, len(m) - sample_bytes + 1, sample_bytes):
                np.copyto(rows[k % (2 * batch)], m[off : off + sample_bytes])
                k += 1

    one_pass()
    barrier.wait()
    start = time.perf_counter()
    for _ in range(passes):
        one_pass()
    out.put((start, time.perf_counter()))


def floor_copy(paths: list[str], procs: int, spec: Spec, passes: int) -> float:
    """GB/s of ``procs`` processes together copying every shard's bytes ``passes`` times from
    the page cache (mapped) into batch slots, a sample at a time: the one copy a loader makes,
    so about the most ``procs`` loader workers can deliver here (memory bandwidth included)."""
    import multiprocessing as mp

    sample_bytes = int(np.prod(spec.shape)) * np.dtype(spec.dtype).itemsize
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    barrier = ctx.Barrier(procs)
    jobs = [
        ctx.Process(
            target=_copy_shards,
            args=(paths[i::procs], sample_bytes, spec.batch, passes, barrier, out),
        )
        for i in range(procs)
    ]
    for j in jobs:
        j.start()
    spans = [out.get() for _ in jobs]
    for j in jobs:
        j.join()
    copied = sum(os.path.getsize(p) // sample_bytes * sample_bytes for p in paths) * passes
    return copied / (max(end for _, end in spans) - min(start for start, _ in spans)) / 1e9


def floor_h2d(device: Any, nbytes: int = 256 << 20) -> float:
    """GB/s of one pinned host-to-device copy."""
    import torch

    host = torch.empty(nbytes, dtype=torch.uint8).pin_memory()
    dev = torch.empty(nbytes, dtype=torch.uint8, device=device)
    dev.copy_(host, non_blocking=True)
    torch.cuda.synchronize(device)
    times = []
    for _ in range(5):
        t = time.perf_counter()
        dev.copy_(host, non_blocking=True)
        torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t)
    return nbytes / statistics.median(times) / 1e9


# -- the run ------------------------------------------------------------------------------------


def bench(spec: Spec, args: argparse.Namespace, device: Any) -> str:
    paths = shards(spec)
    ds = atdata.Dataset[spec.cls](paths)
    ds.shard_counts()  # the index pass, outside the timings
    floor_read(paths, 1)  # into the page cache
    nbytes = spec.samples * int(np.prod(spec.shape)) * np.dtype(spec.dtype).itemsize
    workers = [int(w) for w in args.workers.split(",")]
    rows: list[tuple[Row, Any]] = []
    for w in workers:
        rows.append(
            (
                Row("ours loader", w),
                lambda r, w=w: run_ours(ds, spec, w, False, device, args.epochs, r),
            )
        )
    for w in workers:
        rows.append(
            (
                Row("ours loader shuffled", w),
                lambda r, w=w: run_ours(ds, spec, w, True, device, args.epochs, r),
            )
        )
    if not args.ours_only:
        for w in workers:
            rows.append(
                (
                    Row("ds.torch() + DataLoader", w),
                    lambda r, w=w: run_torch(ds, spec, w, device, args.epochs, r),
                )
            )
        try:
            import webdataset  # noqa: F401
        except ImportError:
            log("webdataset is not installed: its rows are left out")
        else:
            for w in workers:
                rows.append(
                    (
                        Row("webdataset + DataLoader", w),
                        lambda r, w=w: run_webdataset(paths, spec, w, device, args.epochs, r),
                    )
                )
    floors: list[tuple[str, float]] = []
    for r in range(args.repeats):
        log(f"  {spec.name}: round {r + 1}/{args.repeats}")
        for row, fn in rows:
            # --quick: the DataLoader baselines once (they are the slow rows), ours every round.
            if r == 0 or not (args.quick and not row.label.startswith("ours")):
                fn(row)
    copy_passes = 10 if args.quick else 2
    for n in sorted({max(1, w) for w in workers}):
        floors.append((f"bytes read by {n} process(es)", nbytes / floor_read(paths, n) / 1e9))
    counts = sorted({max(1, w) for w in workers})
    rates: dict[int, list[float]] = {n: [] for n in counts}
    for _ in range(5):  # alternating, medians of 5: the ceiling the loader is judged against
        for n in counts:
            rates[n].append(floor_copy(paths, n, spec, copy_passes))
    copy_rate = {n: statistics.median(rates[n]) for n in counts}
    for n in counts:
        floors.append((f"page cache -> slots, {n} process(es)", copy_rate[n]))
    if device is not None and device.type == "cuda":
        floors.append(("pinned host-to-device copy", floor_h2d(device)))
    base = (
        next(row for row, _ in rows if row.label == "ours loader" and row.workers == 0)
        if 0 in workers
        else rows[0][0]
    )
    lines = [
        f"\n== {spec.name}: {spec.samples:,} samples {spec.shape} {np.dtype(spec.dtype).name}, "
        f"{len(paths)} shards, {nbytes / 1e9:.2f} GB, batches of {spec.batch} ==",
        f"{'configuration':<28} {'workers':>7} {'median s':>9} {'GB/s':>7} {'samples/s':>11} "
        f"{'x ours w0':>9} {'CPU main':>8} {'CPU wrk':>8} {'RSS MB':>7} {'worker RSS':>10} "
        f"{'shm MB':>7}",
    ]
    for label, gbs in floors:
        lines.append(f"{'floor: ' + label:<45} {gbs:>7.2f}")
    for row, _ in rows:
        lines.append(
            f"{row.label:<28} {row.workers:>7} {row.median:>9.3f} {nbytes / row.median / 1e9:>7.2f} "
            f"{spec.samples / row.median:>11,.0f} {base.median / row.median:>8.2f}x "
            f"{row.cpu()[0]:>8.3f} {row.cpu()[1]:>8.3f} "
            f"{row.rss_main / 1024:>7,.0f} {row.rss_workers / 1024:>10,.0f} {row.shm / 2**20:>7,.0f}"
        )
    lines.append(
        "CPU main / CPU wrk: CPU-seconds per epoch of the training process / of all its workers"
    )
    ours = {row.workers: row for row, _ in rows if row.label == "ours loader"}
    if 0 in ours and 1 in copy_rate:
        for w in sorted(ours):
            if w and w in copy_rate:
                lines.append(
                    f"ours {w} workers / 0 workers: {ours[0].median / ours[w].median:.2f}x; "
                    f"ceiling (page cache -> slots, {w} processes / 1): "
                    f"{copy_rate[w] / copy_rate[1]:.2f}x; ours {w} workers reach "
                    f"{nbytes / ours[w].median / 1e9 / copy_rate[w]:.0%} of the "
                    f"{w}-process copy, 0 workers {nbytes / ours[0].median / 1e9 / copy_rate[1]:.0%} "
                    "of the 1-process copy"
                )
    lines.append(
        "per-run times (s): "
        + "; ".join(
            f"{row.label} w{row.workers}: " + ", ".join(f"{t:.3f}" for t in row.times)
            for row, _ in rows
        )
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="small datasets, workers 0,2 (seconds)"
    )
    parser.add_argument("--datasets", default="seed,small", help="comma list: seed, small")
    parser.add_argument(
        "--workers", default=None, help="comma list (default 0,2,4,8,14; quick 0,2)"
    )
    parser.add_argument("--repeats", type=int, default=5, help="alternating rounds (medians)")
    parser.add_argument("--epochs", type=int, default=None, help="timed epochs per run")
    parser.add_argument(
        "--min-time",
        type=float,
        default=None,
        help="more timed epochs per run until they add up to this many seconds (quick: 0.3)",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:n]")
    parser.add_argument("--ours-only", action="store_true", help="leave out the DataLoader rows")
    args = parser.parse_args()
    args.workers = args.workers or ("0,2" if args.quick else "0,2,4,8,14")
    args.epochs = args.epochs or (2 if args.quick else 1)
    MIN_TIME[0] = args.min_time if args.min_time is not None else (0.3 if args.quick else 0.0)
    import torch

    if args.device == "auto":
        device = torch.device("cuda") if torch.cuda.is_available() else None
    else:
        device = None if args.device == "cpu" else torch.device(args.device)
    specs = QUICK if args.quick else FULL
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"bench_gpu_feed {time.strftime('%Y-%m-%d %H:%M:%S')}  device={device or 'cpu (no CUDA)'}  "
        f"cores={os.cpu_count()}  load={load:.1f}  repeats={args.repeats}  epochs={args.epochs}  "
        f"torch {torch.__version__}"
    )
    for name in args.datasets.split(","):
        print(bench(specs[name], args, device), flush=True)


if __name__ == "__main__":
    main()
