"""Hostile shards read the ways a user reads them, each in a fresh process with a deadline.

Every shard of `_fixtures.hostile` must end within 10 s (the import included), through
`Dataset` (memory-mapped and with ATDATA_MMAP=0), over HTTP with the sha256 and size a record
would give, and through `atdata inspect`: cleanly, or with an `atdata.AtdataError` subclass.
No hang, no raw Python exception.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from _fixtures.hostile import hostile_shards, sample, truncated_at_member_boundary
from _fixtures.local_http import file_server
from _fixtures.newcomer import subprocess_env

DEADLINE = 10.0
#: Shards also read over HTTP: the loops and the cuts, where a network stream differs most.
OVER_HTTP = (
    "pax-size-negative-before-directory",
    "pax-size-negative-before-unknown-type",
    "truncated-at-member-boundary",
    "huge-pax-header",
)

# Exit 0: read to the end; 3: an AtdataError (its class and message on stdout). A raw
# exception exits 1 with a traceback.
_READ = """
import sys
import atdata
from atdata._sources import HttpShard
target = sys.argv[1]
if target.startswith("http"):
    target = HttpShard(target, sha256=sys.argv[2], size=int(sys.argv[3]))
try:
    n = sum(1 for _ in atdata.Dataset(target))
except atdata.AtdataError as exc:
    print(type(exc).__name__, exc)
    sys.exit(3)
print("samples", n)
"""


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hostile")
    for name, data in hostile_shards().items():
        (root / f"{name}.tar").write_bytes(data)
    return root


@pytest.fixture(scope="module")
def http_root(shard_dir: Path) -> Iterator[str]:
    with file_server(shard_dir) as url:
        yield url


def _run(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            args,
            capture_output=True,
            text=True,
            env=subprocess_env(**env),
            timeout=DEADLINE,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{args[-1]} did not end within {DEADLINE} s (stderr: {exc.stderr!r:.500})")


def _check_read(done: subprocess.CompletedProcess[str], what: str) -> None:
    assert done.returncode in (0, 3), f"{what}: raw exception\n{done.stderr[-3000:]}"
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert len(done.stderr.splitlines()) <= 10, f"{what} logged too much:\n{done.stderr[:3000]}"


def _check_inspect(done: subprocess.CompletedProcess[str], what: str) -> None:
    assert done.returncode in (0, 1), f"{what}: exit {done.returncode}\n{done.stderr[-3000:]}"
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert len(done.stderr.splitlines()) <= 10, f"{what} logged too much:\n{done.stderr[:3000]}"
    if done.returncode:  # the one-line error names the shard: it is a DecodeError's
        assert what in done.stderr.strip().splitlines()[-1], done.stderr


@pytest.mark.slow
def test_every_hostile_shard_ends_in_time_with_samples_or_an_atdata_error(
    shard_dir: Path, http_root: str
) -> None:
    jobs = []
    for name in hostile_shards():
        path = str(shard_dir / f"{name}.tar")
        jobs.append(("mmap", name, [sys.executable, "-c", _READ, path], {}))
        jobs.append(("no-mmap", name, [sys.executable, "-c", _READ, path], {"ATDATA_MMAP": "0"}))
        jobs.append(("inspect", name, [sys.executable, "-m", "atdata.cli", "inspect", path], {}))
        if name in OVER_HTTP:
            data = (shard_dir / f"{name}.tar").read_bytes()
            url = f"{http_root}/{name}.tar"
            sha = hashlib.sha256(data).hexdigest()
            jobs.append(("http", name, [sys.executable, "-c", _READ, url, sha, str(len(data))], {}))

    def run(job: tuple[str, str, list[str], dict[str, str]]) -> tuple[str, str, object]:
        how, name, args, env = job
        return how, name, _run(args, **env)

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(run, jobs))
    outcomes = {}
    for how, name, done in results:
        assert isinstance(done, subprocess.CompletedProcess)
        if how == "inspect":
            _check_inspect(done, name)
        else:
            _check_read(done, f"{name} ({how})")
        outcomes[(how, name)] = done.stdout.strip().splitlines()[-1] if done.stdout else ""
    # The loops and the cuts are decode errors everywhere.
    for name in OVER_HTTP:
        for how in ("mmap", "no-mmap", "http"):
            assert outcomes[(how, name)].startswith("DecodeError"), (how, name, outcomes)
    # The flood of unknown members is read past, with its two good samples.
    assert outcomes[("mmap", "unknown-type-flood")] == "samples 2"
    assert outcomes[("no-mmap", "unknown-type-flood")] == "samples 2"


def test_truncated_shard_is_an_error_unless_asked_for(tmp_path: Path) -> None:
    cut = tmp_path / "cut.tar"
    cut.write_bytes(truncated_at_member_boundary())
    done = _run([sys.executable, "-m", "atdata.cli", "inspect", str(cut)])
    assert done.returncode == 1
    assert "cut.tar" in done.stderr and "truncated" in done.stderr
    done = _run([sys.executable, "-m", "atdata.cli", "inspect", str(cut), "--allow-truncated"])
    assert done.returncode == 0, done.stderr
    assert "5 samples" in done.stdout
    assert "no end-of-archive" in done.stderr  # still said


def test_allow_truncated_reads_what_is_there_unless_the_size_is_known(tmp_path: Path) -> None:
    import atdata
    from atdata._sources import LocalShard
    from atdata.errors import DecodeError

    cut = tmp_path / "cut.tar"
    data = truncated_at_member_boundary()
    cut.write_bytes(data)
    with pytest.raises(DecodeError, match="truncated") as err:
        list(atdata.Dataset(str(cut)))
    assert err.value.shard == str(cut)
    assert len(list(atdata.Dataset(str(cut), allow_truncated=True))) == 5
    # A record gives the shard's sha256 and size: a shard shorter than those is an error even
    # when truncation is allowed.
    whole = data + sample("005") + bytes(1024)
    for sha, size in ((hashlib.sha256(whole).hexdigest(), None), (None, len(whole))):
        source = LocalShard(cut, sha256=sha, size=size)
        with pytest.raises(DecodeError) as err:
            list(atdata.Dataset(source, allow_truncated=True))
        assert err.value.shard == str(cut)


def test_allow_truncated_reaches_counting_the_loader_and_parts(tmp_path: Path) -> None:
    import atdata
    from atdata._parts import keyed_samples, parts
    from atdata.errors import DecodeError

    cut = tmp_path / "cut.tar"
    cut.write_bytes(truncated_at_member_boundary())
    with pytest.raises(DecodeError, match="truncated"):
        atdata.Dataset(str(cut)).shard_counts()
    ds = atdata.Dataset(str(cut), allow_truncated=True)
    assert ds.shard_counts() == [5]
    with ds.loader(batch_size=1, workers=0, shuffle=False) as loader:
        assert len(list(loader)) == 5
    assert [key for part in parts(ds) for _, key, _ in keyed_samples(part)] == [
        f"{i:03d}" for i in range(5)
    ]
