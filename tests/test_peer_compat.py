"""Two-way compatibility with the real atdata 0.7 (PyPI ``atdata==0.7.0b1``, own venv).

Shards the peer writes (its quickstart path: ``webdataset.TarWriter`` + ``sample.as_wds``) must
read back identically here, and shards we write (TarWriter + ``as_wds``, and
``atdata.write_samples``) must read identically in the peer. Both sides build the same samples
from one generator (source shared below) and describe what they read in the same neutral form
(arrays as dtype string, shape and sha256 of their bytes), so the comparison is exact.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Annotated, Any

import atdata
import numpy as np
import pytest
import torch
import webdataset as wds
from _fixtures.peer import run_peer
from atdata import Shape
from numpy.typing import NDArray

pytestmark = pytest.mark.peer

N = 12  # also spelled out in the peer script of the byte-identity test

# Executed in both interpreters: the samples and the neutral description of values.
SHARED = r"""
import hashlib
import numpy as np

def make(i):
    return dict(
        image=(np.arange(32 * 32 * 3, dtype=np.float32).reshape(32, 32, 3) * (i + 1)) / 7.0,
        big=np.linspace(0, 1, 64 * 64 * 3, dtype=np.float32).reshape(64, 64, 3) + i,
        pixels=((np.arange(8 * 8 * 3) + i) % 251).astype(np.uint8).reshape(8, 8, 3),
        be=(np.arange(6, dtype=">i4").reshape(2, 3) - i).astype(">i4"),
        wide=np.array([i, -i, 2**62], dtype="<i8"),
        mask=(np.arange(5) + i) % 2 == 0,
        scalar=np.array(i * 0.5, dtype="<f8"),
        empty=np.zeros((0, 3), dtype="<f4"),
        maybe=None if i % 2 else np.full((2,), i, dtype=np.float64),
        label=f"class_{i % 3} \u2713",
        count=[2**63 - 1, -(2**63), 2**64 - 1, 0, -1, 127][i % 6],
        score=i / 3,
        flag=bool(i % 2),
        blob=bytes(range(i, i + 10)),
        tags=[i, "t", None, 1.5, True],
        meta={"i": i, "name": "x", "nested": {"k": [1, 2]}},
    )

def describe(v):
    if isinstance(v, np.ndarray):
        return {"nd": [v.dtype.str, list(v.shape), hashlib.sha256(v.tobytes()).hexdigest()]}
    if isinstance(v, (bytes, bytearray, memoryview)):
        return {"bin": bytes(v).hex()}
    if isinstance(v, float):
        return {"float": v.hex()}
    if isinstance(v, list):
        return [describe(x) for x in v]
    if isinstance(v, dict):
        return {"map": [[k, describe(x)] for k, x in v.items()]}
    return v

FIELDS = list(make(0))
"""

PEER_CLASS = r"""
import atdata
from numpy.typing import NDArray

@atdata.packable
class Rich:
    image: NDArray
    big: NDArray
    pixels: NDArray
    be: NDArray
    wide: NDArray
    mask: NDArray
    scalar: NDArray
    empty: NDArray
    maybe: NDArray | None
    label: str
    count: int
    score: float
    flag: bool
    blob: bytes
    tags: list
    meta: dict
"""

exec(SHARED)  # defines make, describe, FIELDS here too


@atdata.packable
class Rich:
    image: Annotated[NDArray[np.float32], Shape(32, 32, 3)]
    big: Annotated[NDArray[np.float32], Shape(None, None, 3)]
    pixels: NDArray[np.uint8]
    be: NDArray[np.int32]
    wide: NDArray[np.int64]
    mask: NDArray[np.bool_]
    scalar: Annotated[NDArray[np.float64], Shape()]
    empty: NDArray
    maybe: NDArray[np.float64] | None
    label: str
    count: int
    score: float
    flag: bool
    blob: bytes
    tags: list
    meta: dict


def expected() -> list[list[Any]]:
    return [[describe(make(i)[f]) for f in FIELDS] for i in range(N)]  # noqa: F821


def described(sample: Any) -> list[Any]:
    return [describe(getattr(sample, f)) for f in FIELDS]  # noqa: F821


def test_shared_samples_are_valid_here() -> None:
    for i in range(N):
        Rich(**make(i))  # noqa: F821


def test_peer_written_shards_read_identically(peer_python: str, tmp_path: Path) -> None:
    shard = tmp_path / "peer-000000.tar"
    code = (
        SHARED
        + PEER_CLASS
        + r"""
import sys, json
import webdataset as wds
with wds.writer.TarWriter(sys.argv[1]) as sink:
    for i in range(int(sys.argv[2])):
        sink.write({**Rich(**make(i)).as_wds, "__key__": f"sample_{i:06d}"})
print(json.dumps("ok"))
"""
    )
    run_peer(peer_python, code, str(shard), str(N))
    want = expected()

    # Member by member, independently of our Dataset.
    with tarfile.open(shard) as tf:
        members = [m for m in tf.getmembers() if m.isfile()]
        assert [m.name for m in members] == [f"sample_{i:06d}.msgpack" for i in range(N)]
        got = [described(Rich.from_bytes(tf.extractfile(m).read())) for m in members]
    assert got == want

    # Through Dataset[T] (ordered, then batched) and schema-free DictSample.
    ds = atdata.Dataset[Rich](str(shard))
    assert [described(s) for s in ds.ordered()] == want
    batch = next(iter(ds.ordered(batch_size=4)))
    assert batch.image.shape == (4, 32, 32, 3) and batch.image.dtype == np.float32
    assert batch.label == [make(i)["label"] for i in range(4)]  # noqa: F821
    # The training loader copies the (unaligned) arrays straight into its batch slots.
    for workers in (0, 2):
        with ds.loader(batch_size=4, shuffle=False, workers=workers) as loader:
            first = next(iter(loader))
        assert np.array_equal(first["image"].numpy(), batch.image)
        assert first["label"] == batch.label
        assert first["be"].dtype == torch.int32  # big-endian on the wire, native here
        assert np.array_equal(first["be"].numpy(), batch.be)
    loose = list(atdata.Dataset(str(shard)).ordered())
    assert loose[0].keys() == FIELDS  # noqa: F821
    assert describe(loose[1].array("be")) == want[1][FIELDS.index("be")]  # noqa: F821


def peer_read(peer_python: str, shard: Path) -> list[list[Any]]:
    code = (
        SHARED
        + PEER_CLASS
        + r"""
import sys, json
ds = atdata.Dataset[Rich](sys.argv[1])
print(json.dumps([[describe(getattr(s, f)) for f in FIELDS] for s in ds.ordered()]))
"""
    )
    return run_peer(peer_python, code, str(shard))


def test_our_shards_read_identically_in_the_peer(peer_python: str, tmp_path: Path) -> None:
    samples = [Rich(**make(i)) for i in range(N)]  # noqa: F821
    by_tarwriter = tmp_path / "ours-tw-000000.tar"
    with wds.writer.TarWriter(str(by_tarwriter)) as sink:
        for i, s in enumerate(samples):
            sink.write({**s.as_wds, "__key__": f"sample_{i:06d}"})
    assert peer_read(peer_python, by_tarwriter) == expected()

    infos = atdata.write_samples(samples, str(tmp_path / "ours-ws-%06d.tar"), maxcount=5)
    assert [i.samples for i in infos] == [5, 5, 2]
    got = []
    for info in infos:
        got += peer_read(peer_python, Path(info.path))
    assert got == expected()


SMALL = [f for f in FIELDS if f not in ("image", "big")]  # noqa: F821


def test_packed_bytes_match_the_peer_for_small_samples(peer_python: str) -> None:
    """Without large arrays (which we align) our message is byte-identical to the peer's."""
    code = (
        SHARED
        + PEER_CLASS
        + r"""
import json
from dataclasses import make_dataclass
Small = atdata.packable(
    make_dataclass("Small", [(f, Rich.__annotations__[f]) for f in FIELDS[2:]])
)
print(json.dumps([Small(**{f: make(i)[f] for f in FIELDS[2:]}).packed.hex() for i in range(12)]))
"""
    )
    theirs = run_peer(peer_python, code)
    assert FIELDS[2:] == SMALL  # noqa: F821
    Small = atdata.packable(
        type("Small", (), {"__annotations__": {f: Rich.__annotations__[f] for f in SMALL}})
    )
    ours = [Small(**{f: make(i)[f] for f in SMALL}).packed.hex() for i in range(N)]  # noqa: F821
    assert ours == theirs


def test_peer_keys_and_scalar_handling(peer_python: str) -> None:
    """Facts we rely on: the peer's keys are unique strings; numpy scalars become Python ones."""
    code = r"""
import json, numpy as np, atdata, msgpack
@atdata.packable
class S:
    x: float
    n: int
keys = {S(1.0, 1).as_wds["__key__"] for _ in range(1000)}
print(json.dumps([len(keys), msgpack.unpackb(S(np.float32(0.5), np.int64(3)).packed)]))
"""
    n_keys, values = run_peer(peer_python, code)
    assert n_keys == 1000
    assert values == {"x": 0.5, "n": 3}

    @atdata.packable
    class S:
        x: float
        n: int

    assert json.loads(json.dumps(atdata.DictSample.from_bytes(S(0.5, 3).packed).to_dict())) == (
        values
    )
