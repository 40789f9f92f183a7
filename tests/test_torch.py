"""Dataset.torch(): batches as tensors, exactly once per epoch across workers and ranks."""

from __future__ import annotations

from typing import Annotated

import atdata
import numpy as np
import pytest
import torch
from numpy.typing import NDArray
from torch.utils.data import DataLoader


@atdata.packable
class Point:
    x: NDArray[np.float32]
    idx: int
    tag: str


N = 40


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("torch")
    samples = [Point(x=np.full(3, i, np.float32), idx=i, tag=f"t{i}") for i in range(N)]
    atdata.write_samples(samples, root / "p-%03d.tar", maxcount=5)  # 8 shards
    return atdata.Dataset[Point](str(root / "p-*.tar"))


def _indices(batches) -> list[int]:
    return [int(i) for b in batches for i in b["idx"]]


def test_batches_are_dicts_of_tensors_and_lists(dataset) -> None:
    it = dataset.torch(batch_size=8, shuffle=False)
    assert isinstance(it, torch.utils.data.IterableDataset)
    batches = list(DataLoader(it, batch_size=None))
    assert len(batches) == 5
    first = batches[0]
    assert set(first) == {"x", "idx", "tag"}
    assert isinstance(first["x"], torch.Tensor) and first["x"].shape == (8, 3)
    assert first["x"].dtype == torch.float32
    # int fields arrive as tensors (as the training loader gives them), str fields as lists
    assert first["idx"].dtype == torch.int64 and first["idx"].tolist() == list(range(8))
    assert first["tag"][0] == "t0"
    assert _indices(batches) == list(range(N))


def test_unbatched_items(dataset) -> None:
    items = list(dataset.torch(batch_size=None, shuffle=False))
    assert len(items) == N
    assert isinstance(items[3]["x"], torch.Tensor) and items[3]["idx"] == 3


@pytest.mark.parametrize("workers", [0, 2])
def test_each_sample_once_per_epoch_across_workers(dataset, workers) -> None:
    it = dataset.torch(batch_size=4, shuffle=True, seed=1)
    loader = DataLoader(it, batch_size=None, num_workers=workers)
    epoch0 = _indices(loader)
    assert sorted(epoch0) == list(range(N))
    assert _indices(loader) == epoch0  # same epoch, same order
    it.set_epoch(1)
    epoch1 = _indices(DataLoader(it, batch_size=None, num_workers=workers))
    assert sorted(epoch1) == list(range(N)) and epoch1 != epoch0


@pytest.mark.parametrize("world_size", [2, 3, 16])
def test_ranks_partition_the_dataset(dataset, world_size) -> None:
    """16 readers for 8 shards falls back to a sample-level split; still exactly once."""
    seen: list[int] = []
    for rank in range(world_size):
        it = dataset.torch(batch_size=4, seed=5, rank=rank, world_size=world_size)
        seen += _indices(it)
    assert sorted(seen) == list(range(N))


def test_ranks_and_workers_together(dataset) -> None:
    seen: list[int] = []
    for rank in range(2):
        it = dataset.torch(batch_size=3, seed=2, rank=rank, world_size=2)
        seen += _indices(DataLoader(it, batch_size=None, num_workers=2))
    assert sorted(seen) == list(range(N))


def test_bad_rank_is_refused(dataset) -> None:
    with pytest.raises(ValueError, match="rank"):
        dataset.torch(rank=2, world_size=2)


@pytest.mark.slow
def test_spawned_workers_read_a_lens_view(dataset) -> None:
    """Workers started with "spawn" (macOS/Windows default) get the dataset by pickle."""
    view = dataset.as_type(Index)
    loader = DataLoader(
        view.torch(batch_size=5, seed=3),
        batch_size=None,
        num_workers=2,
        multiprocessing_context="spawn",
    )
    assert sorted(_indices(loader)) == list(range(N))


@atdata.packable
class Index:
    idx: int


@atdata.lens
def point_index(p: Point) -> Index:
    return Index(idx=p.idx)


def test_set_epoch_reaches_persistent_workers(dataset) -> None:
    """Issue 12 item 1: with persistent_workers=True every epoch repeated the same order."""
    it = dataset.torch(batch_size=4, seed=1)
    loader = DataLoader(it, batch_size=None, num_workers=2, persistent_workers=True)
    orders = []
    for epoch in range(3):
        it.set_epoch(epoch)
        orders.append(_indices(loader))
    assert all(sorted(o) == list(range(N)) for o in orders)
    assert len({tuple(o) for o in orders}) == 3


def test_order_does_not_depend_on_workers(dataset) -> None:
    it = dataset.torch(batch_size=3, seed=4)
    ref = _indices(DataLoader(it, batch_size=None, num_workers=0))
    assert _indices(DataLoader(it, batch_size=None, num_workers=3)) == ref
    loader = dataset.loader(batch_size=3, seed=4)
    assert _indices(loader) == ref  # the training loader's order, too


@atdata.packable
class Cloud:
    pts: Annotated[NDArray[np.float32], atdata.Shape(None, 3)]
    idx: int


def test_ragged_fields_in_torch_mode(tmp_path, caplog) -> None:
    """Issue 12 item 2: a ragged field failed in the worker with advice for SampleBatch."""
    samples = [Cloud(pts=np.ones((1 + i % 3, 3), np.float32), idx=i) for i in range(8)]
    atdata.write_samples(samples, tmp_path / "c-%02d.tar", maxcount=4)
    ds = atdata.Dataset[Cloud](str(tmp_path / "c-*.tar"))
    batches = list(DataLoader(ds.torch(batch_size=4, shuffle=False), batch_size=None))
    assert isinstance(batches[0]["pts"], list) and batches[0]["pts"][2].shape == (3, 3)
    assert "pad=" in caplog.text  # the advice names what works here
    padded = list(DataLoader(ds.torch(batch_size=4, shuffle=False, pad="max"), batch_size=None))
    assert padded[0]["pts"].shape == (4, 3, 3) and padded[0]["pts_mask"].sum().item() == 7


def test_stateful_dataloader_round_trip(dataset) -> None:
    """torchdata's StatefulDataLoader: stop mid-epoch, restore in a new loader, same order."""
    stateful = pytest.importorskip(
        "torchdata.stateful_dataloader",
        reason="torchdata is not installed beside torch (make venv installs it)",
    )
    for workers in (0, 2):
        full = _indices(
            stateful.StatefulDataLoader(
                dataset.torch(batch_size=3, seed=6), batch_size=None, num_workers=workers
            )
        )
        loader = stateful.StatefulDataLoader(
            dataset.torch(batch_size=3, seed=6), batch_size=None, num_workers=workers
        )
        head = []
        for k, batch in enumerate(loader):
            head += [int(i) for i in batch["idx"]]
            if k == 4:
                break
        state = loader.state_dict()
        again = stateful.StatefulDataLoader(
            dataset.torch(batch_size=3, seed=6), batch_size=None, num_workers=workers
        )
        again.load_state_dict(state)
        assert head + _indices(again) == full, workers


def test_torch_state_refuses_another_dataset(dataset) -> None:
    state = dataset.torch(batch_size=3, seed=6).state_dict()
    with pytest.raises(atdata.LoaderError, match="seed"):
        dataset.torch(batch_size=3, seed=7).load_state_dict(state)
