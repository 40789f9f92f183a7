"""Write throughput: the byte floor, webdataset's TarWriter, the atdata 0.7 peer, and ours.

Usage::

    .venv/bin/python benchmarks/bench_write.py --quick            # seconds
    .venv/bin/python benchmarks/bench_write.py                    # 100k small + ~1 GB seed-shaped
    .venv/bin/python benchmarks/bench_write.py --datasets small --repeats 5

Samples are built in memory before the clock starts (the same random content for every
configuration); what is timed is packing them and writing shards (page cache, no fsync) with
the same shard size. Rounds interleave configurations; each child makes a warm-up pass and a
measured one. The peer and ours run on Python 3.12.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from _common import (
    CACHE,
    SAMPLE_TYPES,
    SPECS,
    Result,
    bench_setup,
    log,
    run_child,
    table,
)

# Builds the samples; shared by every child (the peer and ours spell packable the same way).
SAMPLES = """
import os, shutil, numpy as np, atdata
from numpy.typing import NDArray
{sample_type}
kind, n, per, out, passes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
rng = np.random.default_rng(0)
if kind == "seed":
    samples = [Sample(image=rng.random((224, 224, 3), dtype=np.float32), label=f"class_{{i % 10}}",
                      confidence=float(rng.random())) for i in range(n)]
else:
    samples = [Sample(image=rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), label=i % 10)
               for i in range(n)]
def fresh_dir(p):
    shutil.rmtree(p, ignore_errors=True)
    os.makedirs(p)
    return p
def out_bytes(p):
    return sum(os.path.getsize(os.path.join(p, f)) for f in os.listdir(p))
def timed(write):
    # `passes` runs of write(fresh directory): wall and CPU time of each, then the report.
    times, cpu = [], []
    for _ in range(passes):
        d = fresh_dir(out)
        t, c = time.perf_counter(), time.process_time()
        write(d)
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    report(times, n, {{"cpu": cpu, "bytes": out_bytes(out)}})
"""

RAW_BYTES = """
# The floor: the same number of bytes (as ours produced), written in 1 MB blocks.
total = int(sys.argv[6])
block = bytes(1 << 20)
def write(d):
    with open(os.path.join(d, "raw.bin"), "wb") as f:
        left = total
        while left > 0:
            f.write(block[: min(left, len(block))])
            left -= len(block)
timed(write)
"""

WEBDATASET = """
import webdataset as wds
def write(d):
    with wds.ShardWriter(os.path.join(d, "w-%06d.tar"), maxcount=per, verbose=0) as sink:
        for i, s in enumerate(samples):
            sink.write({{"__key__": f"{{i:08d}}", "msgpack": s.packed}})
timed(write)
"""

WRITE_SAMPLES = """
timed(lambda d: atdata.write_samples(samples, os.path.join(d, "a-%06d.tar"), maxcount=per))
"""


def bench(name: str, repeats: int, ours: str, peer: str, work: Path) -> str:
    spec = SPECS[name]
    st = SAMPLE_TYPES[spec.kind]
    head = SAMPLES.format(sample_type=st)
    base_args = (spec.kind, str(spec.samples), str(spec.per_shard))
    configs = [
        ("webdataset TarWriter (peer-style)", ours, head + WEBDATASET.format()),
        ("peer 0.7 write_samples", peer, head + WRITE_SAMPLES.format()),
        ("ours write_samples", ours, head + WRITE_SAMPLES.format()),
    ]
    results = {label: Result(label, [], spec.samples, 0, 0) for label, *_ in configs}
    raw = Result("raw bytes (write, floor)", [], spec.samples, 0, 0)
    for r in range(repeats):
        log(f"  round {r + 1}/{repeats}")
        for label, python, code in configs:
            out = run_child(python, code, *base_args, str(work / "out"), "2")
            res = results[label]
            res.times.append(out["times"][-1])
            res.cpu.append(out["cpu"][-1])
            res.nbytes = out["bytes"]
            res.maxrss_kb = max(res.maxrss_kb, out["maxrss_kb"])
        ours_bytes = results["ours write_samples"].nbytes
        out = run_child(
            ours, head + RAW_BYTES.format(), *base_args, str(work / "out"), "2", str(ours_bytes)
        )
        raw.times.append(out["times"][-1])
        raw.cpu.append(out["cpu"][-1])
        raw.nbytes = out["bytes"]
        raw.maxrss_kb = max(raw.maxrss_kb, out["maxrss_kb"])
    shutil.rmtree(work / "out", ignore_errors=True)
    rows = [raw, *results.values()]
    by = {r.label: r for r in rows}
    o, p, w = (
        by["ours write_samples"],
        by["peer 0.7 write_samples"],
        by["webdataset TarWriter (peer-style)"],
    )
    lines = [
        table(
            f"write {name}: {spec.samples:,} samples, shards of {spec.per_shard}",
            rows,
            "peer 0.7 write_samples",
        ),
        "ratios (medians):",
        f"  ours/peer samples/s = {p.median / o.median:.2f}x (CPU time {p.cpu_median / o.cpu_median:.2f}x);"
        f" ours/webdataset = {w.median / o.median:.2f}x; ours time / raw write = {o.median / raw.median:.2f}x",
        f"  output MB: ours {o.nbytes / 1e6:,.1f}, peer {p.nbytes / 1e6:,.1f}, webdataset {w.nbytes / 1e6:,.1f}",
    ]
    return "\n".join(lines)


def main() -> None:
    run = bench_setup("bench_write", __doc__, "small,seed")
    args, repeats, ours, peer = run.args, run.repeats, run.ours, run.peer
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="atdata-bench-write-", dir=CACHE) as tmp:
        for kind in args.datasets.split(","):
            name = f"{kind}-quick" if args.quick else kind
            log(f"{name}:")
            print(bench(name, repeats, ours, peer, Path(tmp)), flush=True)


if __name__ == "__main__":
    sys.exit(main())
