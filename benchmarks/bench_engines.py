"""Ray Data and Dask reads: ours against each engine's own path and single-process ordered().

Usage::

    .venv/bin/python benchmarks/bench_engines.py --quick          # small subsets, ~2 minutes
    .venv/bin/python benchmarks/bench_engines.py                  # 100k small + ~1 GB seed-shaped
    .venv/bin/python benchmarks/bench_engines.py --datasets small --repeats 5

On the shards of ``bench_read.py``, each configuration in its own process (this venv's
Python, which has the ``ray`` and ``dask`` extras):

- ``ordered()``: our single-process reader, the reference (samples/s and CPU-seconds);
- ``to_ray()`` + a trivial ``map_batches``, at ``ray.init(num_cpus=2)``, against
  ``ray.data.read_webdataset`` with the decoder a user would write for our format
  (``Sample.from_bytes`` of the ``.msgpack`` member) and the same map;
- ``to_dask()`` against ``dask.dataframe.from_map`` over a hand-written shard reader
  (tarfile + ``Sample.from_bytes`` into a DataFrame), both on Dask's default scheduler.

Ray starts as we recommend for a small local cluster: ``ray.init(num_cpus=2,
include_dashboard=False, log_to_driver=False)`` with Ray Data's progress bars off (they redraw
from the driver). The trivial map is ``map_batches(fn, batch_format="pyarrow")`` on whole
blocks (Ray's default ``batch_size=None``), what Arrow-minded code writes.

Ray's CPU-seconds are those of every process of the local cluster (the driver and its
descendants: GCS, raylet, workers, the dashboard and runtime-env agents, Ray Data's stats
actor), read from /proc before and after each pass: the read alone, not Ray's start-up. The
first pass of every configuration is a warm-up (Ray worker start, imports) and is not counted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import textwrap

from _common import SAMPLE_TYPES, SPECS, Result, dataset, log, now, shard_bytes, table

PRELUDE = """
import json, os, sys, time
import numpy as np
import atdata
from numpy.typing import NDArray
SAMPLE_TYPE
paths, repeats = sys.argv[1].split(","), int(sys.argv[2])
FIELDS = [f.name for f in atdata.sample_fields(Sample)]
TICK = os.sysconf("SC_CLK_TCK")

def tree_cpu():
    '''CPU-seconds of this process and all its descendants (live, plus reaped children).'''
    parent, cpu = {}, {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                rest = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parent[int(pid)] = int(rest[1])
        cpu[int(pid)] = sum(int(x) for x in rest[11:15]) / TICK
    me, total, frontier = os.getpid(), 0.0, [os.getpid()]
    seen = set()
    while frontier:
        p = frontier.pop()
        if p in seen:
            continue
        seen.add(p)
        if p == me:  # this process exactly (/proc counts 10 ms ticks), plus reaped children
            t = os.times()
            total += time.process_time() + t.children_user + t.children_system
        else:
            total += cpu.get(p, 0.0)
        frontier.extend(c for c, pp in parent.items() if pp == p)
    return total

def measure(one_pass):
    times, cpus, n = [], [], 0
    for i in range(repeats + 1):
        c, t = tree_cpu(), time.perf_counter()
        n = one_pass()
        if i:  # pass 0 warms up
            times.append(time.perf_counter() - t)
            cpus.append(tree_cpu() - c)
    print(json.dumps({"times": times, "cpu": cpus, "n": n}))
"""

ORDERED = """
ds = atdata.Dataset[Sample](paths)
def one_pass():
    n = 0
    for s in ds.ordered():
        n += s.label is not None  # the trivial map: touch a field
    return n
measure(one_pass)
"""

RAY = """
import ray
from ray.data.context import DataContext
ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
DataContext.get_current().enable_progress_bars = False
mode = sys.argv[3]

def decode(sample):  # what a user writes for our format: the .msgpack member, our class
    s = Sample.from_bytes(sample["msgpack"])
    return {f: getattr(s, f) for f in FIELDS}

def trivial(batch):
    return batch

def one_pass():
    if mode == "idle":  # the cluster doing nothing for 2 s: its background CPU
        time.sleep(2.0)
        return -1
    if mode == "ours":
        rd = atdata.Dataset[Sample](paths).to_ray()
    else:
        rd = ray.data.read_webdataset(paths, decoder=decode)
    n = 0
    for b in rd.map_batches(trivial, batch_format="pyarrow").iter_batches(
        batch_size=None, batch_format="pyarrow"
    ):
        n += b.num_rows
    return n
measure(one_pass)
"""

DASK = """
import tarfile
import dask.dataframe as dd
import pandas as pd
mode = sys.argv[3]

def handwritten(path):  # a shard reader a user writes without atdata's Dask support
    rows = []
    with tarfile.open(path) as tf:
        for m in tf:
            if m.name.endswith(".msgpack"):
                s = Sample.from_bytes(tf.extractfile(m).read())
                rows.append({f: getattr(s, f) for f in FIELDS})
    return pd.DataFrame(rows, columns=FIELDS)

meta = handwritten(paths[0]).iloc[:0]

def one_pass():
    if mode == "ours":
        ddf = atdata.Dataset[Sample](paths).to_dask()
    else:
        ddf = dd.from_map(handwritten, paths, meta=meta)
    return int(ddf.map_partitions(len).compute().sum())
measure(one_pass)
"""


def run(body: str, kind: str, paths: list[str], repeats: int, *extra: str) -> dict:
    code = PRELUDE.replace("SAMPLE_TYPE", SAMPLE_TYPES[kind]) + textwrap.dedent(body)
    env = dict(os.environ, PYTHONWARNINGS="ignore", RAY_DEDUP_LOGS="0")
    proc = subprocess.run(
        [sys.executable, "-c", code, ",".join(paths), str(repeats), *extra],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench(name: str, repeats: int) -> str:
    spec = SPECS[name]
    paths = dataset(spec, sys.executable)
    nbytes = shard_bytes(paths)
    for p in paths:  # into the page cache
        with open(p, "rb") as f:
            while f.read(1 << 22):
                pass
    configs = [
        ("ordered() (1 process)", ORDERED, ()),
        ("to_ray() + map", RAY, ("ours",)),
        ("ray read_webdataset + map", RAY, ("webdataset",)),
        ("to_dask()", DASK, ("ours",)),
        ("dask from_map, hand reader", DASK, ("handwritten",)),
    ]
    idle = run(RAY, spec.kind, paths, 2, "idle")
    idle_rate = statistics.median(idle["cpu"]) / 2.0
    results = []
    for label, body, extra in configs:
        log(f"  {name}: {label}")
        got = run(body, spec.kind, paths, repeats, *extra)
        if got["n"] != spec.samples:
            raise RuntimeError(f"{label} read {got['n']} samples, not {spec.samples}")
        results.append(Result(label, got["times"], got["n"], nbytes, 0, got["cpu"]))
    out = [table(f"{name}: {spec.samples} samples, {len(paths)} shards", results, results[0].label)]
    base_cpu = results[0].cpu_median / results[0].samples
    ours_ray, their_ray = results[1], results[2]
    ours_dask, their_dask = results[3], results[4]
    out.append(
        f"to_ray / read_webdataset: {their_ray.median / ours_ray.median:.2f}x samples/s;  "
        f"to_ray CPU-s per sample / ordered(): "
        f"{ours_ray.cpu_median / ours_ray.samples / base_cpu:.2f}x;  "
        f"to_dask / hand-written from_map: {their_dask.median / ours_dask.median:.2f}x;  "
        f"idle Ray cluster: {idle_rate:.3f} CPU-s per s"
    )
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small subsets (a smoke run)")
    parser.add_argument("--datasets", default="small,seed", help="comma list: small, seed")
    parser.add_argument("--repeats", type=int, default=None, help="counted passes per config")
    args = parser.parse_args()
    repeats = args.repeats or (2 if args.quick else 3)
    print(
        f"bench_engines {now()}  repeats={repeats}  python {sys.executable}  cpus {os.cpu_count()}"
    )
    for name in args.datasets.split(","):
        print(bench(f"{name}-quick" if args.quick else name, repeats), flush=True)


if __name__ == "__main__":
    main()
