"""Read throughput: the byte floor, webdataset, the atdata 0.7 peer, and ours, on the same shards.

Usage::

    .venv/bin/python benchmarks/bench_read.py --quick            # seconds: small subsets
    .venv/bin/python benchmarks/bench_read.py                    # ~1 GB seed-shaped + 100k small
                                                                 # + 500 seed-shaped, peer-written
    .venv/bin/python benchmarks/bench_read.py --datasets small --repeats 7

Each configuration runs in its own process (Python 3.12 for the peer and for ours), the shards
are read once beforehand so every configuration reads from the page cache, and the medians of
``--repeats`` passes are compared. Batched configurations touch every field of every batch, so
lazy stacking is paid for. ``peerseed`` shards are written by the peer (webdataset.TarWriter +
``as_wds``: a pax header per member, arrays not aligned), as shards from 0.7 users are.
"""

from __future__ import annotations

import statistics
import sys

from _common import (
    SAMPLE_TYPES,
    SPECS,
    Result,
    bench_setup,
    dataset,
    log,
    run_child,
    shard_bytes,
    table,
)

#: Measured passes per child (after its warm-up pass).
PASSES = 3

RAW_BYTES = """
import numpy as np
paths, repeats = sys.argv[1].split(","), int(sys.argv[2])
raw = np.empty((4 << 20) + 64, dtype=np.uint8)
off = (-raw.ctypes.data) % 64
buf = memoryview(raw[off:off + (4 << 20)])
times, cpu = [], []
for _ in range(repeats):
    t, c = time.perf_counter(), time.process_time()
    for p in paths:
        with open(p, "rb", buffering=0) as f:
            while f.readinto(buf):
                pass
    times.append(time.perf_counter() - t)
    cpu.append(time.process_time() - c)
report(times, 0, {"cpu": cpu})
"""

WEBDATASET = """
import webdataset as wds
paths, repeats = sys.argv[1].split(","), int(sys.argv[2])
times, cpu = [], []
for _ in range(repeats):
    t, c = time.perf_counter(), time.process_time()
    n = 0
    for sample in wds.WebDataset(paths, shardshuffle=False):
        n += 1
    times.append(time.perf_counter() - t)
    cpu.append(time.process_time() - c)
report(times, n, {"cpu": cpu})
"""

# The same loop for the peer and for ours: both spell the API the same way.
ATDATA = """
import numpy as np, atdata
from numpy.typing import NDArray
{sample_type}
paths, repeats, batch = sys.argv[1].split(","), int(sys.argv[2]), sys.argv[3]
# A brace pattern over the shards (the form both implementations accept).
pattern = paths[0].rsplit("-", 1)[0] + "-{{%s..%s}}.tar" % (
    paths[0].rsplit("-", 1)[1][:-4], paths[-1].rsplit("-", 1)[1][:-4])
batch_size = None if batch == "none" else int(batch)
fields = list(Sample.__dataclass_fields__)
times, cpu = [], []
for _ in range(repeats):
    ds = atdata.Dataset[Sample](pattern)
    t, c = time.perf_counter(), time.process_time()
    n = 0
    if batch_size is None:
        for s in ds.ordered():
            n += 1
    else:
        for b in ds.ordered(batch_size=batch_size):
            for f in fields:
                getattr(b, f)
            n += len(b.samples)
    times.append(time.perf_counter() - t)
    cpu.append(time.process_time() - c)
report(times, n, {{"cpu": cpu}})
"""


def bench(name: str, repeats: int, ours: str, peer: str) -> str:
    spec = SPECS[name]
    paths = dataset(spec, ours)
    nbytes = shard_bytes(paths)
    arg = ",".join(paths)
    code = ATDATA.format(sample_type=SAMPLE_TYPES[spec.kind])
    configs = [
        ("raw bytes (readinto, floor)", ours, RAW_BYTES, ()),
        ("webdataset raw samples", ours, WEBDATASET, ()),
        ("peer 0.7 ordered()", peer, code, ("none",)),
        ("ours ordered()", ours, code, ("none",)),
        ("peer 0.7 ordered(batch_size=32)", peer, code, ("32",)),
        ("ours ordered(batch_size=32)", ours, code, ("32",)),
    ]
    run_child(ours, RAW_BYTES, arg, "1")  # warm the page cache
    results = {label: Result(label, [], 0, nbytes, 0) for label, *_ in configs}
    # Rounds interleave the configurations so that load from other processes on a shared
    # machine spreads over all of them; each child makes a warm-up pass, then PASSES measured
    # ones whose median is that round's figure (a quick pass lasts a few milliseconds).
    for r in range(repeats):
        log(f"  round {r + 1}/{repeats}")
        for label, python, body, extra in configs:
            out = run_child(python, body, arg, str(PASSES + 1), *extra)
            res = results[label]
            res.times.append(statistics.median(out["times"][1:]))
            res.cpu.append(statistics.median(out["cpu"][1:]))
            res.samples = out["n"] or spec.samples
            res.maxrss_kb = max(res.maxrss_kb, out["maxrss_kb"])
    results_list = list(results.values())
    by = results
    raw = by["raw bytes (readinto, floor)"]
    lines = [
        table(
            f"read {name}: {len(paths)} shards, {nbytes / 1e6:,.0f} MB, {spec.samples:,} samples",
            results_list,
            "peer 0.7 ordered()",
        ),
        "ratios (medians):",
    ]
    for mode in ("ordered()", "ordered(batch_size=32)"):
        ours_r, peer_r = by[f"ours {mode}"], by[f"peer 0.7 {mode}"]
        lines.append(
            f"  {mode:<24} ours/peer samples/s = {ours_r.samples_per_s / peer_r.samples_per_s:5.2f}x"
            f"   ours time / raw bytes time = {ours_r.median / raw.median:5.2f}x"
            f"   (CPU-time ratio ours/peer {peer_r.cpu_median / ours_r.cpu_median:5.2f}x)"
            f"   peak MB ours {ours_r.maxrss_kb / 1024:,.0f} vs peer {peer_r.maxrss_kb / 1024:,.0f}"
        )
    wds_r = by["webdataset raw samples"]
    lines.append(
        f"  webdataset raw / raw bytes time = {wds_r.median / raw.median:.2f}x; "
        f"ours ordered() vs webdataset raw samples/s = "
        f"{by['ours ordered()'].samples_per_s / wds_r.samples_per_s:.2f}x"
    )
    return "\n".join(lines)


def main() -> None:
    run = bench_setup("bench_read", __doc__, "seed,small,peerseed")
    args, repeats, ours, peer = run.args, run.repeats, run.ours, run.peer
    for kind in args.datasets.split(","):
        name = f"{kind}-quick" if args.quick else kind
        log(f"{name}:")
        print(bench(name, repeats, ours, peer), flush=True)


if __name__ == "__main__":
    sys.exit(main())
