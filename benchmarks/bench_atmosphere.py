"""Federation-path micro benchmarks: guarded shard streaming and lexicon validation.

1. Reading N small shards over loopback HTTP: `GuardedHttpShard` vs the data path's
   `HttpShard` as the baseline (both stream over one shared httpx client per process; the
   guarded one checks every request's address), both verifying sha256, in the same run:
   the ratio is the guard's cost.
2. Validating an `io.atdata.dataset` record with 1,000 shard entries (records/s).

Run: .venv/bin/python benchmarks/bench_atmosphere.py [--shards 300] [--repeat 5]
Prints medians and the ratio to the baseline.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import http.server
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from atdata._sources import HttpShard
from atdata.atmosphere.resolve import GuardedHttpShard
from atdata.lexicon import default_lexicons


class _Quiet(http.server.SimpleHTTPRequestHandler):
    # HTTP/1.0: one connection per request. With keep-alive, http.server's separate header
    # and body writes meet delayed ACKs (~40 ms a request) and hide what is measured here.
    def log_message(self, *args: Any) -> None:
        pass


def _read_all(shards: list[Any]) -> int:
    total = 0
    for s in shards:
        with s.open() as f:
            total += len(f.read())
    return total


def bench_streaming(n: int, repeat: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="bench-atmo-"))
    shas = []
    for i in range(n):
        data = bytes([i % 256]) * 4096
        (root / f"s{i:05d}.tar").write_bytes(data)
        shas.append(hashlib.sha256(data).hexdigest())
    handler = functools.partial(_Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        results: dict[str, list[float]] = {"HttpShard (baseline)": [], "GuardedHttpShard": []}
        for _ in range(repeat):
            plain = [HttpShard(f"{base}/s{i:05d}.tar", sha256=shas[i]) for i in range(n)]
            t = time.perf_counter()
            _read_all(plain)
            results["HttpShard (baseline)"].append(time.perf_counter() - t)
            guarded = [
                GuardedHttpShard(f"{base}/s{i:05d}.tar", sha256=shas[i], allow_private=True)
                for i in range(n)
            ]
            t = time.perf_counter()
            _read_all(guarded)
            results["GuardedHttpShard"].append(time.perf_counter() - t)
    finally:
        server.shutdown()
        server.server_close()
    base_median = statistics.median(results["HttpShard (baseline)"])
    print(f"reading {n} shards of 4 KiB over loopback HTTP, median of {repeat}:")
    for name, times in results.items():
        med = statistics.median(times)
        print(
            f"  {name:<22} {med * 1000:8.1f} ms  {n / med:8.0f} shards/s  x{base_median / med:.2f}"
        )


def bench_validation(repeat: int) -> None:
    lx = default_lexicons()
    cid = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
    record = {
        "$type": "io.atdata.dataset",
        "name": "bench",
        "schema": {
            "uri": "at://did:plc:abcdefghijklmnopqrstuvwx/io.atdata.schema/3jzfcijpj2z2a",
            "cid": cid,
        },
        "storage": {"$type": "io.atdata.dataset#blobStorage"},
        "shards": [
            {
                "samples": 100,
                "bytes": 4096,
                "sha256": "0" * 64,
                "blob": {
                    "$type": "blob",
                    "ref": {"$link": cid},
                    "mimeType": "application/x-tar",
                    "size": 4096,
                },
            }
            for _ in range(1000)
        ],
        "totals": {"samples": 100_000, "bytes": 4_096_000, "shards": 1000},
        "createdAt": "2026-01-01T00:00:00.000Z",
    }
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        lx.validate_record("io.atdata.dataset", record)
        times.append(time.perf_counter() - t)
    med = statistics.median(times)
    print(f"validating a dataset record with 1,000 blob shards: median {med * 1000:.1f} ms")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shards", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    bench_streaming(args.shards, args.repeat)
    bench_validation(args.repeat)


if __name__ == "__main__":
    main()
