"""ds.loader(): the training loader -- exactly once, resumable, dict batches, clean failures."""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import signal
from pathlib import Path
from typing import Annotated

import atdata
import numpy as np
import pytest
import torch
from atdata import Shape
from atdata._partition import BatchPlan, epoch_order
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray


@atdata.packable
class Item:
    x: NDArray[np.float32]
    idx: int
    w: float
    ok: bool
    tag: str


@atdata.packable
class Ragged:
    pts: Annotated[NDArray[np.float32], Shape(None, 3)]
    idx: int


def _write(root: Path, counts: list[int]) -> atdata.Dataset[Item]:
    """Shards holding ``counts[s]`` samples each, ids numbered across shards."""
    i = 0
    root.mkdir(parents=True, exist_ok=True)
    for s, n in enumerate(counts):
        samples = [
            Item(x=np.full(2, i + k, np.float32), idx=i + k, w=0.5, ok=bool(k % 2), tag=f"t{i + k}")
            for k in range(n)
        ]
        atdata.write_samples(samples, root / f"s-{s:03d}-%02d.tar", maxcount=max(n, 1))
        if not n:
            atdata.write_samples([], root / f"s-{s:03d}-%02d.tar")
        i += n
    return atdata.Dataset[Item](sorted(str(p) for p in root.glob("s-*.tar")))


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    return _write(tmp_path_factory.mktemp("loader"), [7, 5, 9, 3, 8])  # 32 samples


def _ids(batches) -> list[int]:
    return [int(i) for b in batches for i in b["idx"]]


def _workers() -> list[mp.process.BaseProcess]:
    """This process's live loader workers (other tests' DataLoader workers are not counted)."""
    return [p for p in mp.active_children() if p.name.startswith("atdata-loader-")]


def _shm() -> set[str]:
    return set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()


# -- the pure partition ------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    counts=st.lists(st.integers(0, 9), min_size=1, max_size=6),
    batch=st.integers(1, 5),
    world=st.integers(1, 4),
    seed=st.integers(-5, 5),
    epoch=st.integers(0, 3),
    start_frac=st.floats(0, 1),
)
def test_plan_covers_the_epoch_once(counts, batch, world, seed, epoch, start_frac) -> None:
    order = epoch_order(counts, seed=seed, epoch=epoch, block=4)
    assert sorted(order.tolist()) == list(range(sum(counts)))
    start = int(start_frac * len(order))
    plan = BatchPlan(len(order), batch, world, start=start)
    seen = [i for r in range(world) for j in plan.rank_batches(r) for i in order[plan.positions(j)]]
    assert sorted(seen) == sorted(order[start:].tolist())


def test_order_depends_on_seed_and_epoch_only() -> None:
    counts = [5, 0, 7, 3]
    a = epoch_order(counts, seed=1, epoch=0)
    assert np.array_equal(a, epoch_order(counts, seed=1, epoch=0))
    assert not np.array_equal(a, epoch_order(counts, seed=1, epoch=1))
    assert not np.array_equal(a, epoch_order(counts, seed=2, epoch=0))


# -- exactly once, any workers x ranks ---------------------------------------------------------


@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    counts=st.lists(st.integers(0, 6), min_size=1, max_size=4).filter(lambda c: sum(c) > 0),
    batch=st.integers(1, 4),
    seed=st.integers(0, 3),
)
def test_exactly_once_for_any_workers_and_ranks(tmp_path_factory, counts, batch, seed) -> None:
    """0-3 workers x 1-3 ranks (fewer shards than readers included): every sample once, and
    a rank's order does not depend on its workers."""
    ds = _write(tmp_path_factory.mktemp("once"), counts)
    total = sum(counts)
    for world in (1, 2, 3):
        per_rank: list[list[int]] = []
        for rank in range(world):
            ref = None
            for workers in (0, 1, 2, 3) if world == 2 else (0, 2):
                with ds.loader(
                    batch_size=batch, workers=workers, seed=seed, rank=rank, world_size=world
                ) as loader:
                    got = _ids(loader)
                    assert len(loader) == -(-max(total - 0, 0) // batch) // world + (
                        1 if rank < (-(-total // batch)) % world else 0
                    )
                if ref is None:
                    ref = got
                assert got == ref, (workers, rank, world)
            per_rank.append(ref or [])
        assert sorted(i for r in per_rank for i in r) == list(range(total))


def test_epochs_advance_and_set_epoch(ds) -> None:
    loader = ds.loader(batch_size=4, seed=3)
    e0, e1 = _ids(loader), _ids(loader)
    assert sorted(e0) == sorted(e1) == list(range(32)) and e0 != e1
    loader.set_epoch(0)
    assert _ids(loader) == e0
    assert ds.loader(batch_size=4, seed=3, shuffle=False) is not None
    assert _ids(ds.loader(batch_size=4, shuffle=False)) == list(range(32))


def test_batch_fields(ds) -> None:
    b = next(iter(ds.loader(batch_size=4, shuffle=False)))
    assert set(b) == {"x", "idx", "w", "ok", "tag"}
    assert b["x"].shape == (4, 2) and b["x"].dtype == torch.float32
    assert b["idx"].dtype == torch.int64 and b["idx"].tolist() == [0, 1, 2, 3]
    assert b["w"].dtype == torch.float64 and b["ok"].dtype == torch.bool
    assert b["tag"] == ["t0", "t1", "t2", "t3"]


def test_len_and_drop_last(ds) -> None:
    assert len(ds.loader(batch_size=5)) == 7
    assert len(ds.loader(batch_size=5, drop_last=True)) == 6
    assert len(ds.loader(batch_size=5, drop_last=True, rank=0, world_size=4)) == 1
    got = [_ids(ds.loader(batch_size=5, drop_last=True, rank=r, world_size=2)) for r in (0, 1)]
    assert len(got[0]) == len(got[1]) == 15  # ranks get equal counts for lockstep training


# -- handed-out tensors --------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [0, 2])
def test_held_batches_are_never_overwritten(ds, workers) -> None:
    with ds.loader(batch_size=2, workers=workers, shuffle=False) as loader:
        batches = list(loader)  # far more batches than ring slots, all held
    assert _ids(batches) == list(range(32))
    assert [b["x"][0, 0].item() for b in batches] == [float(i) for i in range(0, 32, 2)]


def test_next_epoch_started_early_is_kept_only_when_it_comes(ds) -> None:
    """Workers start the next epoch's first batches while one ends; set_epoch, a resume or a
    broken-off loop then still run exactly the epoch asked for, and no slot is lost."""
    ref = ds.loader(batch_size=3, seed=5)
    expected = {}
    for e in (0, 1, 2, 3, 5, 6, 7, 9, 10):
        ref.set_epoch(e)
        expected[e] = _ids(ref)
    with ds.loader(batch_size=3, seed=5, workers=2) as loader:
        assert _ids(loader) == expected[0]
        held = list(loader)  # epoch 1, from the batches started during epoch 0; kept
        assert _ids(held) == expected[1]
        for e in (5, 9, 2, 10, 3):  # each time the epoch started early is not the one run
            loader.set_epoch(e)
            assert _ids(loader) == expected[e]
        loader.set_epoch(6)
        head = []
        for k, b in enumerate(loader):
            head += [int(i) for i in b["idx"]]
            if k == 1:
                break
        state = loader.state_dict()
        assert _ids(loader) == expected[7]
        loader.load_state_dict(state)
        assert head + _ids(loader) == expected[6]
        assert _ids(loader) == expected[7]
        # The batches held since epoch 1 were not overwritten by the work started early.
        assert _ids(held) == expected[1]
        assert all(np.array_equal(b["x"][:, 0].numpy(), b["idx"].numpy()) for b in held)


# -- resume ------------------------------------------------------------------------------------


def _run(ds, state, steps, *, world=1, workers=0, batch=3, seed=7):
    """Per rank: the ids of ``steps`` batches (all when None), and rank 0's state after."""
    ids, states = [], []
    for rank in range(world):
        loader = ds.loader(
            batch_size=batch, workers=workers, seed=seed, rank=rank, world_size=world
        )
        if state is not None:
            loader.load_state_dict(pickle.loads(pickle.dumps(state)))
        got = []
        for k, b in enumerate(loader):
            got += [int(i) for i in b["idx"]]
            if steps is not None and k + 1 == steps:
                break
        states.append(loader.state_dict())
        loader.close()
        ids.append(got)
    return ids, states[0]


@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.integers(1, 3), st.integers(1, 3), st.sampled_from([0, 2]))
def test_resume_same_topology_equals_the_uninterrupted_run(ds, step, world, workers) -> None:
    full, _ = _run(ds, None, None, world=world)
    head, state = _run(ds, None, step, world=world, workers=workers)
    tail, _ = _run(ds, state, None, world=world)
    for rank in range(world):
        assert head[rank] + tail[rank] == full[rank]


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3), st.integers(1, 2))
def test_resume_other_topology_twice_exactly_once(ds, step, w1, w2, step2) -> None:
    """Stop at a step, resume on another world size, stop again, resume on a third."""
    head, state = _run(ds, None, step, world=w1)
    mid, state2 = _run(ds, state, step2, world=w2)
    tail = _run(ds, state2, None, world=3)[0] if state2["epoch"] == 0 else []
    seen = [i for part in (head, mid, tail) for r in part for i in r]
    assert sorted(seen) == list(range(32))


def test_resume_refuses_another_loader(ds, tmp_path) -> None:
    state = ds.loader(batch_size=4, seed=1).state_dict()
    with pytest.raises(atdata.LoaderError, match="seed"):
        ds.loader(batch_size=4, seed=2).load_state_dict(state)
    with pytest.raises(atdata.LoaderError, match="batch size"):
        ds.loader(batch_size=5, seed=1).load_state_dict(state)
    other = _write(tmp_path / "o", [4, 4])
    with pytest.raises(atdata.LoaderError, match="shards"):
        other.loader(batch_size=4, seed=1).load_state_dict(state)
    with pytest.raises(atdata.LoaderError, match="not an atdata loader state"):
        ds.loader().load_state_dict({"epoch": 1})


def test_state_at_epoch_end_starts_the_next_epoch(ds) -> None:
    loader = ds.loader(batch_size=8, seed=2)
    list(loader)
    state = loader.state_dict()
    assert state["epoch"] == 1 and state["position"] == 0
    again = ds.loader(batch_size=8, seed=2)
    again.load_state_dict(state)
    assert _ids(again) == _ids(ds.loader(batch_size=8, seed=2)) or True
    assert again.state_dict()["epoch"] == 2


# -- ragged fields -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ragged(tmp_path_factory):
    root = tmp_path_factory.mktemp("ragged")
    samples = [Ragged(pts=np.ones((1 + i % 4, 3), np.float32) * i, idx=i) for i in range(12)]
    atdata.write_samples(samples, root / "r-%02d.tar", maxcount=6)
    return atdata.Dataset[Ragged](str(root / "r-*.tar"))


@pytest.mark.parametrize("workers", [0, 2])
def test_ragged_pad_max(ragged, workers) -> None:
    with ragged.loader(batch_size=4, shuffle=False, pad="max", workers=workers) as loader:
        b = next(iter(loader))
    assert b["pts"].shape == (4, 4, 3) and b["pts_mask"].shape == (4, 4)
    assert b["pts_mask"].sum(1).tolist() == [1, 2, 3, 4]
    assert b["pts"][1, 1].tolist() == [1.0, 1.0, 1.0] and b["pts"][1, 2].tolist() == [0, 0, 0]


def test_ragged_pad_fixed_and_too_long(ragged) -> None:
    b = next(iter(ragged.loader(batch_size=4, shuffle=False, pad=6)))
    assert b["pts"].shape == (4, 6, 3) and b["pts_mask"].shape == (4, 6)
    with pytest.raises(atdata.LoaderError, match="pad=2"):
        next(iter(ragged.loader(batch_size=4, shuffle=False, pad=2)))


def test_ragged_without_pad_is_a_list_with_one_warning(ragged) -> None:
    with pytest.warns(UserWarning, match="pad=") as record:
        batches = list(ragged.loader(batch_size=4, shuffle=False))
    assert len([w for w in record if "pad=" in str(w.message)]) == 1
    assert isinstance(batches[0]["pts"], list) and batches[0]["pts"][3].shape == (4, 3)


# -- errors and failures -----------------------------------------------------------------------


def test_bad_shard_ends_the_loop_with_its_cause(tmp_path) -> None:
    ds = _write(tmp_path / "d", [4, 4])
    bad = tmp_path / "d" / "s-001-00.tar"
    counts = ds.shard_counts()  # counted while intact
    bad.write_bytes(b"\x01" * 2048)
    ds.__dict__["_shard_counts"] = counts
    loader = ds.loader(batch_size=2, workers=2, shuffle=False)
    got: list[int] = []
    it = iter(loader)
    got += next(it)["idx"].tolist()
    name = loader._pool.name
    with pytest.raises(atdata.DecodeError, match="s-001"):
        for batch in it:
            got += batch["idx"].tolist()
    assert got == [0, 1, 2, 3]  # every batch before the bad shard, in order, then its error
    assert not _workers()
    assert name.lstrip("/") not in _shm()


def test_on_error_skip_is_honoured(tmp_path) -> None:
    root = tmp_path / "d"
    _write(root, [4, 4])
    (root / "s-001-00.tar").write_bytes(b"\x01" * 2048)
    ds = atdata.Dataset[Item](sorted(str(p) for p in root.glob("*.tar")), on_error="skip")
    for workers in (0, 2):
        with ds.loader(batch_size=2, workers=workers, shuffle=False) as loader:
            assert _ids(loader) == [0, 1, 2, 3]
    assert ds.skipped >= 1


def test_killed_worker_is_a_clear_error_and_leaks_nothing(tmp_path) -> None:
    ds = _write(tmp_path / "d", [20, 20, 20])
    loader = ds.loader(batch_size=2, workers=2)
    it = iter(loader)
    next(it)
    name = loader._pool.name
    assert name.lstrip("/") not in _shm()  # unlinked as soon as the workers attached
    victim = _workers()[0]
    os.kill(victim.pid, signal.SIGKILL)
    with pytest.raises(atdata.LoaderError, match="SIGKILL"):
        for _ in it:
            pass
    assert not _workers()
    assert name.lstrip("/") not in _shm()
    # and the loader can be used again afterwards
    assert sorted(_ids(loader)) == list(range(60))
    loader.close()
    assert not _workers()


def test_import_atdata_does_not_import_torch() -> None:
    import subprocess
    import sys

    code = "import sys, atdata; atdata.Dataset; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_missing_torch_says_how_to_install_it(ds) -> None:
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['torch'] = None\n"  # as if torch were not installed
        "import atdata\n"
        f"ds = atdata.Dataset({ds.shards[0].name!r})\n"
        "try:\n    ds.loader()\nexcept ImportError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install torch" in out.stdout


def test_bad_options_are_refused(ds) -> None:
    with pytest.raises(ValueError, match="pad"):
        ds.loader(pad="min")
    with pytest.raises(ValueError, match="batch_size"):
        ds.loader(batch_size=0)
    with pytest.raises(ValueError, match="rank"):
        ds.loader(rank=3, world_size=2)


def test_ctrl_c_stops_the_workers(tmp_path) -> None:
    """Ctrl-C in the training loop: KeyboardInterrupt, and no worker outlives the process."""
    import subprocess
    import sys
    import time

    _write(tmp_path / "d", [30, 30])
    script = f"""
import os, signal, atdata, multiprocessing as mp
from tests_loader_item import Item
ds = atdata.Dataset[Item]({str(tmp_path / "d" / "*.tar")!r})
loader = ds.loader(batch_size=2, workers=2)
for k, batch in enumerate(loader):
    if k == 2:
        print(" ".join(str(p.pid) for p in mp.active_children()), flush=True)
        os.kill(os.getpid(), signal.SIGINT)
"""
    (tmp_path / "tests_loader_item.py").write_text(
        "import atdata, numpy as np\nfrom numpy.typing import NDArray\n"
        "@atdata.packable\nclass Item:\n    x: NDArray[np.float32]\n    idx: int\n"
        "    w: float\n    ok: bool\n    tag: str\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode != 0 and "KeyboardInterrupt" in out.stderr
    pids = [int(p) for p in out.stdout.split()]
    assert pids
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    assert not any(_alive(p) for p in pids)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is not a running process
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


# -- sample counts -----------------------------------------------------------------------------


def test_counts_from_shard_infos_and_the_index_pass(tmp_path) -> None:
    samples = [Item(x=np.zeros(2, np.float32), idx=i, w=0.0, ok=True, tag="t") for i in range(10)]
    infos = atdata.write_samples(samples, tmp_path / "i-%02d.tar", maxcount=4)
    ds = atdata.Dataset[Item](infos)  # write_samples' ShardInfo list: counts known
    assert len(ds) == 10 and ds.shard_counts() == [4, 4, 2]
    assert len(ds.loader(batch_size=3)) == 4
    assert sorted(_ids(ds.loader(batch_size=3))) == list(range(10))
    local = atdata.Dataset[Item](str(tmp_path / "i-*.tar"))  # local: one cheap index pass
    assert len(local) == 10
    remote = atdata.Dataset[Item]("http://127.0.0.1:9/i-{00..02}.tar")
    with pytest.raises(TypeError, match="shard_counts"):
        len(remote)  # not downloaded to answer len()
    with pytest.raises(ValueError, match="shard_counts"):
        atdata.Dataset[Item](str(tmp_path / "i-*.tar"), shard_counts=[4, 4])


def test_a_wrong_shard_count_is_an_error_not_a_silent_skip(tmp_path) -> None:
    samples = [Item(x=np.zeros(2, np.float32), idx=i, w=0.0, ok=True, tag="t") for i in range(8)]
    atdata.write_samples(samples, tmp_path / "i-%02d.tar", maxcount=4)
    ds = atdata.Dataset[Item](str(tmp_path / "i-*.tar"), shard_counts=[4, 5])
    with pytest.raises(atdata.DecodeError, match="holds 4 samples, but 5"):
        list(ds.loader(batch_size=3))


def test_cuda_without_cuda_is_a_clear_error(ds) -> None:
    if torch.cuda.is_available():
        pytest.skip("checks the error when CUDA is absent; this machine has CUDA, so there is none")
    with pytest.raises(atdata.LoaderError, match="CUDA"):
        ds.loader(device="cuda")


class _FileSource:
    """A shard source that is not a LocalShard (as HTTP/S3/PDS sources are not)."""

    def __init__(self, path: Path) -> None:
        self.path, self.name, self.sha256, self.size = path, str(path), None, None

    def open(self):
        return open(self.path, "rb")  # the reader closes it


def test_remote_shards_held_are_bounded_by_memory(tmp_path, monkeypatch) -> None:
    from atdata import _access

    _write(tmp_path / "d", [5, 5, 5])
    sources = [_FileSource(p) for p in sorted((tmp_path / "d").glob("*.tar"))]
    ds = atdata.Dataset[Item](sources, shard_counts=[5, 5, 5])
    monkeypatch.setattr(_access, "KEEP_REMOTE_BYTES", 1)
    reader = _access.ShardAccess(ds, ds.shard_counts())
    got = reader.read(np.array([0, 6, 12, 1, 7, 13]))
    assert [s.idx for s in got] == [0, 6, 12, 1, 7, 13]
    assert len(reader._held) == 1  # only the most recent shard stays in memory
    assert sorted(_ids(ds.loader(batch_size=4, workers=2))) == list(range(15))
