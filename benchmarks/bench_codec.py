"""Per-sample encode/decode cost: ours vs the atdata 0.7 peer, same samples, same run.

Usage::

    .venv/bin/python benchmarks/bench_codec.py [--repeats 7]

Both sides run on Python 3.12 (ours from the benchmark venv, the peer from its own venv), each
in its own process, alternating for ``--rounds`` rounds so that load from other processes hits
both alike; loops are timed in process CPU time. It prints the median microseconds per sample
over all timed loops and the ratio peer/ours. The messages decoded are the ones the writing side
produced (ours decodes our messages, the peer its own), so the figure includes what each
writer's layout costs its reader.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _common import ours_python, peer_python

CHILD = r"""
import json, sys, time, statistics
import numpy as np, atdata
from numpy.typing import NDArray

@atdata.packable
class Small:
    image: NDArray
    label: int

@atdata.packable
class Seed:
    image: NDArray
    label: str
    confidence: float

rng = np.random.default_rng(0)
cases = {
    "small (uint8 32x32x3 + int)": Small(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), 7),
    "seed (float32 224x224x3 + str + float)": Seed(
        rng.random((224, 224, 3), dtype=np.float32), "class_3", 0.5
    ),
}
repeats = int(sys.argv[1])
out = {}

def timed(fn, n):
    times = []
    for _ in range(repeats):
        t = time.process_time()
        for _ in range(n):
            fn()
        times.append((time.process_time() - t) / n * 1e6)
    return statistics.median(times)

for name, sample in cases.items():
    cls = type(sample)
    n = 20000 if cls is Small else 500
    msg = sample.packed
    out[name] = {
        "encode": timed(lambda: sample.packed, n),
        "decode": timed(lambda: cls.from_bytes(msg), n),
        "decode+touch": timed(lambda: float(cls.from_bytes(msg).image.sum()), max(n // 10, 50)),
    }
print(json.dumps(out))
"""


def run(python: str, repeats: int) -> dict[str, dict[str, float]]:
    proc = subprocess.run(
        [python, "-c", CHILD, str(repeats)], capture_output=True, text=True, check=True
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    pythons = {"ours": ours_python(), "peer": peer_python()}
    runs: dict[str, list[dict[str, dict[str, float]]]] = {"ours": [], "peer": []}
    for _ in range(args.rounds):
        for side, python in pythons.items():
            runs[side].append(run(python, args.repeats))
    ours, peer = (
        {
            case: {op: statistics.median(r[case][op] for r in runs[side]) for op in ops}
            for case, ops in runs[side][0].items()
        }
        for side in ("ours", "peer")
    )
    print(f"{'case':42} {'op':13} {'peer us':>9} {'ours us':>9} {'peer/ours':>9}")
    for case, ops in ours.items():
        for op, us in ops.items():
            theirs = peer[case][op]
            print(f"{case:42} {op:13} {theirs:9.2f} {us:9.2f} {theirs / us:8.2f}x")


if __name__ == "__main__":
    main()
