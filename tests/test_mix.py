"""atdata.mix(): datasets in set proportions, deterministic across workers and ranks."""

from __future__ import annotations

import atdata
import numpy as np
import pytest
from atdata.mix import apportion, schedule
from hypothesis import given, settings
from hypothesis import strategies as st


@atdata.packable
class Tok:
    src: int
    idx: int


@atdata.packable
class Other:
    src: int
    idx: int
    extra: str


@atdata.lens
def other_to_tok(o: Other) -> Tok:
    return Tok(src=o.src, idx=o.idx)


def _make(root, src: int, n: int, cls=Tok):
    root.mkdir(parents=True, exist_ok=True)
    extra = {"extra": "x"} if cls is Other else {}
    samples = [cls(src=src, idx=i, **extra) for i in range(n)]
    atdata.write_samples(samples, root / "p-%03d.tar", maxcount=97)
    return atdata.Dataset[cls](str(root / "p-*.tar"))


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    root = tmp_path_factory.mktemp("mix")
    return [_make(root / "a", 0, 900), _make(root / "b", 1, 300), _make(root / "c", 2, 50)]


@settings(max_examples=40, deadline=None)
@given(
    weights=st.lists(st.floats(0.01, 1), min_size=2, max_size=5),
    seed=st.integers(0, 10_000),
    epoch=st.integers(0, 5),
)
def test_schedule_shares_hold_for_every_seed(weights, seed, epoch) -> None:
    w = np.asarray(weights) / sum(weights)
    quotas = apportion(10_000, w)
    assert quotas.sum() == 10_000 and np.all(np.abs(quotas - w * 10_000) < 1)
    seq = schedule(quotas, np.random.default_rng([seed, epoch]))
    share = np.bincount(seq, minlength=len(w)) / len(seq)
    assert np.all(np.abs(share - w) <= 0.01)
    # and each half of the epoch is close too: the draws are spread, not clumped
    half = np.bincount(seq[:5000], minlength=len(w)) / 5000
    assert np.all(np.abs(half - w) <= 0.01)


@pytest.mark.parametrize(("workers", "world"), [(0, 1), (2, 2)])
def test_loader_over_a_mix_realises_the_weights(parts, workers, world) -> None:
    m = atdata.mix(parts, [0.6, 0.3, 0.1], seed=3, epoch_samples=10_000)
    assert len(m) == 10_000
    srcs: list[int] = []
    for rank in range(world):
        with m.loader(batch_size=100, workers=workers, rank=rank, world_size=world) as loader:
            for b in loader:
                srcs += b["src"].tolist()
    share = np.bincount(srcs, minlength=3) / len(srcs)
    assert len(srcs) == 10_000 and np.all(np.abs(share - [0.6, 0.3, 0.1]) <= 0.01)


def test_mix_order_is_the_same_for_any_topology(parts) -> None:
    m = atdata.mix(parts, [1, 1, 1], seed=1, epoch_samples=600)

    def keys(world, workers):
        out = []
        loaders = [
            m.loader(batch_size=7, workers=workers, rank=r, world_size=world) for r in range(world)
        ]
        per = [
            [(int(s), int(i)) for b in ld for s, i in zip(b["src"], b["idx"], strict=True)]
            for ld in loaders
        ]
        for ld in loaders:
            ld.close()
        # interleave ranks' batches back into the global order
        batches = [[p[k : k + 7] for k in range(0, len(p), 7)] for p in per]
        for j in range(max(len(b) for b in batches)):
            for r in range(world):
                if j < len(batches[r]):
                    out += batches[r][j]
        return out

    assert keys(1, 0) == keys(3, 0) == keys(2, 2)


def test_stop_first_and_longest(parts) -> None:
    first = atdata.mix(parts[:2], [0.5, 0.5])
    assert len(first) == 600 and first.quotas() == [300, 300]
    srcs = [s.src for s in first.ordered()]
    assert srcs.count(1) == 300 and srcs.count(0) == 300
    longest = atdata.mix(parts[:2], [0.5, 0.5], stop="longest")
    assert len(longest) == 1800
    seen_b = [s.idx for s in longest.shuffled(seed=2) if s.src == 1]
    assert len(seen_b) == 900 and sorted(set(seen_b)) == list(range(300))  # cycled 3 times
    # each lap through the short dataset is exactly once, freshly shuffled
    laps = [seen_b[i : i + 300] for i in range(0, 900, 300)]
    assert all(sorted(lap) == list(range(300)) for lap in laps)


def test_mix_resumes_exactly(parts) -> None:
    m = atdata.mix(parts, [0.5, 0.3, 0.2], epoch_samples=500, seed=4)
    full = [
        int(i) * 10 + int(s)
        for b in m.loader(batch_size=16)
        for s, i in zip(b["src"], b["idx"], strict=True)
    ]
    loader = m.loader(batch_size=16)
    head = []
    for k, b in enumerate(loader):
        head += [int(i) * 10 + int(s) for s, i in zip(b["src"], b["idx"], strict=True)]
        if k == 6:
            break
    state = loader.state_dict()
    again = atdata.mix(parts, [0.5, 0.3, 0.2], epoch_samples=500, seed=4).loader(batch_size=16)
    again.load_state_dict(state)
    tail = [int(i) * 10 + int(s) for b in again for s, i in zip(b["src"], b["idx"], strict=True)]
    assert head + tail == full
    other = atdata.mix(parts, [0.4, 0.4, 0.2], epoch_samples=500, seed=4).loader(batch_size=16)
    with pytest.raises(atdata.LoaderError, match="shards"):
        other.load_state_dict(state)


def test_different_sample_types_are_refused_unless_viewed(tmp_path, parts) -> None:
    other = _make(tmp_path / "o", 5, 20, cls=Other)
    with pytest.raises(atdata.SchemaError, match="as_type"):
        atdata.mix([parts[0], other], [0.5, 0.5])
    m = atdata.mix([parts[0], other.as_type(Tok)], [0.5, 0.5])
    assert {s.src for s in m.ordered()} == {0, 5}


def test_bad_weights_are_refused(parts) -> None:
    with pytest.raises(ValueError, match="weights"):
        atdata.mix(parts[:2], [1])
    with pytest.raises(ValueError, match="weights"):
        atdata.mix(parts[:2], [0, 0])
    with pytest.raises(ValueError, match="stop"):
        atdata.mix(parts[:2], [1, 1], stop="shortest")
