"""Shared plumbing of the read/write benchmarks: interpreters, datasets, child runs, tables.

Every measured configuration runs in its own child process, so each gets its own peak memory
(``ru_maxrss``) and nothing is shared through imports. The atdata 0.7 peer runs in its Python
3.12 venv (``scripts/ensure-peer-venv.sh``) and ours in a Python 3.12 venv too
(``~/.cache/atdata/bench-venv``, our package installed editable), so both use the same
interpreter version.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("ATDATA_BENCH_CACHE", Path.home() / ".cache" / "atdata"))
BENCH_VENV = CACHE / "bench-venv"
PY312_CANDIDATES = [
    Path.home() / ".pyenv/versions/3.12.1/bin/python3.12",
    Path("/usr/bin/python3.12"),
]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def peer_python() -> str:
    """The peer venv's python, created on first use."""
    proc = subprocess.run(
        ["bash", str(REPO / "scripts" / "ensure-peer-venv.sh")],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"cannot prepare the atdata 0.7 peer venv:\n{proc.stderr[-3000:]}")
    return proc.stdout.strip().splitlines()[-1]


def ours_python() -> str:
    """Python 3.12 with our package (editable) and webdataset, the baseline (made on first use)."""
    py = BENCH_VENV / "bin" / "python"
    if py.exists():
        check = subprocess.run(
            [str(py), "-c", "import webdataset, atdata; print(atdata.__file__)"],
            capture_output=True,
            text=True,
            check=False,
            env=_child_env(str(py)),
        )
        if check.returncode == 0 and str(REPO) in check.stdout:
            return str(py)
    base = next((p for p in PY312_CANDIDATES if p.exists()), None)
    if base is None:
        raise SystemExit("no Python 3.12 found for the benchmark venv (pyenv 3.12.1)")
    log(f"creating {BENCH_VENV} (Python 3.12, atdata editable)")
    subprocess.run([str(base), "-m", "venv", str(BENCH_VENV)], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "-q", "-e", f"{REPO}[bench]"], check=True)
    return str(py)


# -- datasets -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    """A benchmark dataset: its shape, size and sharding."""

    name: str
    samples: int
    per_shard: int
    #: Who writes the shards: "ours" (write_samples) or "peer" (atdata 0.7's quickstart path,
    #: webdataset.TarWriter + as_wds: a pax header per member, arrays not aligned).
    writer: str = "ours"

    @property
    def kind(self) -> str:
        return self.name.split("-")[0].removeprefix("peer")


SPECS = {
    # float32 224x224x3 + label + confidence: ~1 GB in ~100 MB shards.
    "seed": Spec("seed", 1700, 166),
    "seed-quick": Spec("seed-quick", 200, 50),
    # uint8 32x32x3 + int label: 100k samples.
    "small": Spec("small", 100_000, 10_000),
    "small-quick": Spec("small-quick", 10_000, 2_500),
    # seed-shaped samples in shards the peer wrote.
    "peerseed": Spec("peerseed", 500, 100, writer="peer"),
    "peerseed-quick": Spec("peerseed-quick", 200, 50, writer="peer"),
}

# Sample classes, as each implementation declares them (same fields, same wire format).
SAMPLE_TYPES = {
    "seed": """
@atdata.packable
class Sample:
    image: NDArray
    label: str
    confidence: float
""",
    "small": """
@atdata.packable
class Sample:
    image: NDArray
    label: int
""",
}

_GENERATE = """
import sys, numpy as np, atdata
from numpy.typing import NDArray
{sample_type}
kind, n, per, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
rng = np.random.default_rng(0)
def gen():
    for i in range(n):
        if kind == "seed":
            yield Sample(image=rng.random((224, 224, 3), dtype=np.float32), label=f"class_{{i % 10}}",
                         confidence=float(rng.random()))
        else:
            yield Sample(image=rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), label=i % 10)
infos = atdata.write_samples(gen(), out + "/data-%06d.tar", maxcount=per, progress=False)
print(sum(i.samples for i in infos))
"""
_WRITE_OURS = _GENERATE[_GENERATE.index("infos = ") :]
_WRITE_PEER = """
import webdataset as wds
samples = gen()
for shard in range((n + per - 1) // per):
    with wds.writer.TarWriter(out + "/data-%06d.tar" % shard) as sink:
        for i in range(shard * per, min(n, (shard + 1) * per)):
            sink.write({**next(samples).as_wds, "__key__": "sample_%08d" % i})
print(n)
"""


def dataset(spec: Spec, python: str) -> list[str]:
    """The dataset's shard paths, generating them (with our writer) if needed."""
    root = CACHE / "bench-data" / spec.name
    marker = root / "done.json"
    want: dict[str, Any] = {"samples": spec.samples, "per_shard": spec.per_shard, "format": 1}
    if spec.writer != "ours":
        want["writer"] = spec.writer
    if marker.exists() and json.loads(marker.read_text()) == want:
        return sorted(str(p) for p in root.glob("data-*.tar"))
    log(f"generating the {spec.name} dataset ({spec.samples} samples) in {root}")
    root.mkdir(parents=True, exist_ok=True)
    for old in root.glob("data-*.tar"):
        old.unlink()
    code = _GENERATE.format(sample_type=SAMPLE_TYPES[spec.kind])
    if spec.writer == "peer":
        python = peer_python()
        code = code.replace(_WRITE_OURS, _WRITE_PEER)
    subprocess.run(
        [python, "-c", code, spec.kind, str(spec.samples), str(spec.per_shard), str(root)],
        check=True,
        env=_child_env(python),  # each interpreter imports its own atdata
    )
    marker.write_text(json.dumps(want))
    return sorted(str(p) for p in root.glob("data-*.tar"))


# -- child runs ---------------------------------------------------------------------------------


def _child_env(python: str) -> dict[str, str]:
    """The environment of a child run by ``python``: the peer's imports its installed 0.7;
    ours imports this checkout's ``sdk/`` (the shared bench venv's editable install may point
    at another checkout, or one that is gone)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    if python == str(BENCH_VENV / "bin" / "python"):
        env["PYTHONPATH"] = str(REPO / "sdk")
    return env


CHILD_PRELUDE = """
import json, resource, sys, time
def report(times, n, extra=None):
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"times": times, "n": n, "maxrss_kb": rss, **(extra or {})}))
"""


def run_child(python: str, body: str, *args: str) -> dict[str, Any]:
    """Run a measurement in a fresh interpreter; its last stdout line is the JSON result."""
    code = CHILD_PRELUDE + textwrap.dedent(body)
    env = _child_env(python)
    env["PYTHONWARNINGS"] = "ignore"
    proc = subprocess.run(
        [python, "-c", code, *args], capture_output=True, text=True, env=env, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child failed ({python}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


@dataclass
class Result:
    """One configuration's measurements."""

    label: str
    times: list[float]
    samples: int
    nbytes: int
    maxrss_kb: int
    cpu: list[float] = field(default_factory=list)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu) if self.cpu else float("nan")

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.median

    @property
    def mb_per_s(self) -> float:
        return self.nbytes / self.median / 1e6


def table(title: str, results: list[Result], baseline: str) -> str:
    """Medians, throughput, peak memory and the ratio to ``baseline`` of every row."""
    base = next(r for r in results if r.label == baseline)
    lines = [
        f"\n== {title} ==",
        f"{'configuration':<34} {'median s':>9} {'samples/s':>11} {'MB/s':>8} "
        f"{'peak MB':>8} {'x ' + baseline[:14]:>17} {'CPU s':>7}",
    ]
    for r in results:
        lines.append(
            f"{r.label:<34} {r.median:>9.3f} {r.samples_per_s:>11,.0f} {r.mb_per_s:>8,.0f} "
            f"{r.maxrss_kb / 1024:>8,.0f} {base.median / r.median:>16.2f}x {r.cpu_median:>7.3f}"
        )
    return "\n".join(lines)


def shard_bytes(paths: list[str]) -> int:
    return sum(os.path.getsize(p) for p in paths)


def now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")


@dataclass
class Setup:
    """What every ours-vs-peer benchmark run starts from."""

    args: argparse.Namespace
    repeats: int
    ours: str
    peer: str


def bench_setup(name: str, doc: str | None, datasets: str) -> Setup:
    """Parse the shared flags (--quick, --datasets, --repeats), find both interpreters and
    print the run's header line."""
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small subsets (a smoke run)")
    parser.add_argument("--datasets", default=datasets, help="comma list: seed, small, peerseed")
    parser.add_argument("--repeats", type=int, default=None, help="rounds per configuration")
    args = parser.parse_args()
    repeats = args.repeats or (3 if args.quick else 5)
    ours, peer = ours_python(), peer_python()
    print(f"{name} {now()}  repeats={repeats}  python: ours {ours}, peer {peer}")
    return Setup(args, repeats, ours, peer)
