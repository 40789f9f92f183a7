"""Search under concurrent load: `atdata appview serve --workers N` against a load generator.

The AppView runs as the real command (``--no-follow``) on a synthetic index of ``--datasets``
datasets (bench_search's corpus and query mix: text, text + tag, tag browsing), SQLite and/or
PostgreSQL. The load generator is its own process: C clients, each on its own keep-alive
connection, send a fixed number of searchDatasets requests (over loopback only), bounded in
time. The CPU the AppView's processes used is read from /proc (utime + stime of the serving
processes and their parent) around the measured requests, so "req per CPU-second" holds even
when other work shares the cores; req/s and the latencies do not.

    .venv/bin/python benchmarks/bench_load.py                         # 4,500 datasets, both DBs
    .venv/bin/python benchmarks/bench_load.py --backends sqlite --workers 1 2 --clients 16 32
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_search import Corpus, bulk_load, percentile, postgres

ROOT = Path(__file__).resolve().parents[1]
CLK_TCK = os.sysconf("SC_CLK_TCK")


def query_paths(n: int) -> list[str]:
    """The query mix as request paths (25 results, facets: what the web page and CLI ask)."""
    paths = []
    for _, p in Corpus().queries(n):
        params: list[tuple[str, str]] = [("tag", t) for t in p.tags]
        if p.q:
            params.append(("q", p.q))
        paths.append("/xrpc/io.atdata.searchDatasets?" + urlencode(params))
    return paths


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (after the comm field)
    return total / CLK_TCK


def process_tree(pid: int) -> list[int]:
    out = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            for child in (task / "children").read_text().split():
                out += process_tree(int(child))
    return out


# -- the load generator (its own process) -----------------------------------------------------


async def _generate(url: str, paths: list[str], clients: int, limit_s: float) -> dict[str, Any]:
    import aiohttp

    latencies: list[float] = []
    errors = 0
    queue = iter(paths)
    deadline = time.monotonic() + limit_s

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal errors
        for path in queue:
            if time.monotonic() > deadline:
                return
            t0 = time.perf_counter()
            try:
                async with session.get(url + path) as resp:
                    await resp.read()
                    ok = resp.status == 200
            except aiohttp.ClientError:
                ok = False
            latencies.append(time.perf_counter() - t0)
            errors += not ok

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(clients)))
        wall = time.perf_counter() - started
    return {"latencies": latencies, "errors": errors, "wall": wall}


def generator_main(args: argparse.Namespace) -> None:
    paths = json.loads(sys.stdin.read())
    clients = args.clients[0]
    warm = asyncio.run(_generate(args.url, paths[: args.warmup], clients, args.limit))
    print("ready", flush=True)
    out = asyncio.run(_generate(args.url, paths[args.warmup :], clients, args.limit))
    out["warm_errors"] = warm["errors"]
    print(json.dumps(out), flush=True)


# -- the driver -------------------------------------------------------------------------------


@contextlib.contextmanager
def appview(db_url: str, workers: int) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    import httpx

    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "sdk"), str(ROOT / "appview")])}
    # (--workers only when > 1: the same command then runs an older tree for a baseline)
    proc = subprocess.Popen(
        [sys.executable, "-m", "atdata.cli", "appview", "serve", "--no-follow", "--db", db_url,
         "--port", str(port), *(["--workers", str(workers)] if workers > 1 else [])],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(url + "/_health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the AppView did not start ({db_url}, {workers} workers)")
            time.sleep(0.2)
        time.sleep(0.5 * workers)  # every serving process listening
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def run_load(url: str, server_pid: int, paths: list[str], clients: int, args: Any) -> dict:
    gen = subprocess.Popen(
        [sys.executable, __file__, "--generate", "--url", url, "--clients", str(clients),
         "--warmup", str(args.warmup), "--limit", str(args.limit)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert gen.stdin is not None and gen.stdout is not None
    gen.stdin.write(json.dumps(paths))
    gen.stdin.close()
    assert gen.stdout.readline().strip() == "ready"
    pids = process_tree(server_pid)
    cpu0 = cpu_seconds(pids)
    out = json.loads(gen.stdout.readline())
    cpu = cpu_seconds(pids) - cpu0
    gen.wait(30)
    lat = out["latencies"]
    n = len(lat)
    return {
        "n": n,
        "errors": out["errors"] + out["warm_errors"],
        "rps": n / out["wall"],
        "per_cpu": n / cpu if cpu > 0 else float("inf"),
        "cpu": cpu,
        "p50": statistics.median(lat) * 1000 if lat else float("nan"),
        "p99": percentile(lat, 99) * 1000 if lat else float("nan"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--datasets", type=int, default=4500)
    ap.add_argument("--backends", nargs="+", default=["sqlite", "postgres"])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--clients", type=int, nargs="+", default=[16])
    ap.add_argument("--requests", type=int, default=3000, help="measured requests per row")
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--limit", type=float, default=120.0, help="seconds at most per row")
    ap.add_argument("--pg-url", help="an empty PostgreSQL database instead of a throwaway one")
    # the load generator's own mode (run by the driver in a separate process)
    ap.add_argument("--generate", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.generate:
        generator_main(args)
        return
    from atdata_appview.db import Store

    paths = query_paths(args.warmup + args.requests)
    print(
        f"searchDatasets load: {args.datasets:,} datasets, {args.requests} requests per row "
        f"(+{args.warmup} warm-up), cores: {os.cpu_count()}, loopback"
    )
    rows = []
    pg_ctx = postgres(args.pg_url) if "postgres" in args.backends else contextlib.nullcontext()
    with pg_ctx as pg_db, tempfile.TemporaryDirectory() as tmp:
        for backend in args.backends:
            with contextlib.ExitStack() as stack:
                if backend == "sqlite":
                    url = f"sqlite:///{Path(tmp) / 'load.sqlite'}"
                else:
                    db = pg_db("load")
                    url = stack.enter_context(db) if hasattr(db, "__enter__") else db
                store = Store(url)
                bulk_load(store, Corpus(), args.datasets)
                store.close()
                for workers in args.workers:
                    with appview(url, workers) as (base, proc):
                        for clients in args.clients:
                            r = run_load(base, proc.pid, paths, clients, args)
                            rows.append((backend, workers, clients, r))
                            print(
                                f"  {backend} workers={workers} clients={clients}: "
                                f"{r['rps']:.0f} req/s, {r['per_cpu']:.0f} req/CPU-s, "
                                f"p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms, "
                                f"errors {r['errors']}",
                                flush=True,
                            )
    print("\n| database | workers | clients | req/s | req per CPU-s | p50 ms | p99 ms | errors |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for backend, workers, clients, r in rows:
        print(
            f"| {backend} | {workers} | {clients} | {r['rps']:.0f} | {r['per_cpu']:.0f} | "
            f"{r['p50']:.1f} | {r['p99']:.1f} | {r['errors']} |"
        )


if __name__ == "__main__":
    main()
