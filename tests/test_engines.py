"""Datasets as Ray Data / Dask collections, and derived datasets written in parallel.

One local Ray cluster (``num_cpus=2``) serves the whole session; its workers import this
module by name (it is on their PYTHONPATH), so the types and lenses below resolve there.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import atdata
import numpy as np
import pytest
from _fixtures.services import login
from atdata import Shape
from atdata.errors import ShardTaskError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

ray = pytest.importorskip("ray")
dask = pytest.importorskip("dask")

HERE = Path(__file__).resolve().parent
ARM_VAR = "ENGINES_TEST_ARM_DIR"  # where the kill-once tests leave their trigger files


@atdata.packable(name="engines.Inner", version="1.0.0")
class Inner:
    x: int
    v: NDArray[np.float32]


@atdata.packable(name="engines.Every", version="1.0.0")
class Every:
    """One field of every kind."""

    img: Annotated[NDArray[np.uint8], Shape(2, 3)]
    rag: NDArray[np.float32]
    opt: NDArray[np.int16] | None
    name: str
    blob: bytes
    i: int
    f: float
    ok: bool
    oi: int | None
    inner: Inner
    oinner: Inner | None
    tags: list[str]
    arrs: list[NDArray[np.float64]]
    d: dict[str, float]
    od: dict[str, int] | None
    anything: Any
    loose: list


@atdata.packable(name="engines.Small", version="1.0.0")
class Small:
    label: int
    caption: str
    image: Annotated[NDArray[np.float32], Shape(4, 4)]


@atdata.packable(name="engines.Label", version="1.0.0")
class Label:
    label: int
    even: bool


@atdata.lens
def small_label(s: Small) -> Label:
    return Label(label=s.label, even=s.label % 2 == 0)


@atdata.packable(name="engines.Fragile", version="1.0.0")
class Fragile:
    """Kills its process once, while being built in a Ray task, when a trigger file exists."""

    label: int

    def __post_init__(self) -> None:
        arm = os.environ.get(ARM_VAR)
        if arm and self.label == 7:
            try:
                os.remove(os.path.join(arm, "kill-write"))
            except FileNotFoundError:
                return
            os._exit(1)


def every(k: int) -> Every:
    rng = np.random.default_rng(k)
    return Every(
        img=rng.integers(0, 255, (2, 3), dtype=np.uint8),
        rag=rng.random(k % 5, dtype=np.float32),
        opt=None if k % 2 else np.arange(k, dtype=np.int16),
        name=f"n{k} \u2713",
        blob=bytes([k % 256]) * (k % 3),
        i=k - 2**40,
        f=k / 3,
        ok=k % 2 == 0,
        oi=None if k % 3 else k,
        inner=Inner(x=k, v=np.ones(k % 4, np.float32)),
        oinner=None if k % 2 else Inner(x=-k, v=np.zeros(2, np.float32)),
        tags=["a"] * (k % 3),
        arrs=[np.ones((k % 3, 2))] * (k % 3),
        d={"a": 1.0, "z": k * 1.0},
        od=None if k % 2 else {"q": k},
        anything={"x": [1, "two"]} if k % 2 else None,
        loose=[1, "a", None],
    )


def same(a: Any, b: Any) -> bool:
    """Deep equality for samples: arrays by dtype, shape and values; types exactly."""
    if isinstance(a, np.ndarray):
        return (
            isinstance(b, np.ndarray)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and np.array_equal(a, b)
        )
    if atdata.is_packable(a):
        return type(a) is type(b) and all(
            same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a)
        )
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def all_same(xs: list[Any], ys: list[Any]) -> bool:
    return len(xs) == len(ys) and all(map(same, xs, ys))


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[str]:
    """The session's local Ray cluster; its workers see this module and the trigger folder."""
    arm = tempfile.mkdtemp(prefix="atdata-engines-")
    os.environ[ARM_VAR] = arm
    path = os.pathsep.join([str(HERE), *filter(None, [os.environ.get("PYTHONPATH")])])
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": path, ARM_VAR: arm}},
    )
    from ray.data.context import DataContext

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.execution_options.preserve_order = True  # rows in storage order, for comparisons
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def ray_rows(rd: Any, cls: type) -> list[Any]:
    out: list[Any] = []
    for batch in rd.iter_batches(batch_format="pyarrow", batch_size=None):
        out.extend(cls.from_arrow(batch))
    return out


@pytest.fixture(scope="module")
def every_shards(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Every], list[str]]:
    samples = [every(k) for k in range(23)]
    root = tmp_path_factory.mktemp("every")
    infos = atdata.write_samples(samples, str(root / "e-%06d.tar"), maxcount=6)
    return samples, [i.path for i in infos]


# --- the column mapping, without an engine -------------------------------------------------


def test_columns_follow_the_schema(every_shards: Any) -> None:
    import pyarrow as pa
    from atdata._columns import samples_to_table
    from ray.data.extensions import ArrowVariableShapedTensorType

    samples, _ = every_shards
    table = samples_to_table(samples, Every)
    types = {f.name: f.type for f in table.schema}
    assert getattr(types["img"], "shape", None) == (2, 3)  # fixed by the schema
    assert isinstance(types["rag"], ArrowVariableShapedTensorType)
    assert types["name"] == pa.string() and types["blob"] == pa.binary()
    assert types["i"] == pa.int64() and types["f"] == pa.float64() and types["ok"] == pa.bool_()
    assert pa.types.is_struct(types["inner"]) and pa.types.is_list(types["tags"])
    assert pa.types.is_map(types["d"]) and types["anything"] == pa.binary()
    assert table.column("opt").null_count == 11 and table.column("oinner").null_count == 11
    assert all_same(samples, Every.from_arrow(table))
    assert all_same(samples[5:9], Every.from_arrow(table.slice(5, 4)))  # offsets honoured
    frame_back = Every.from_pandas(atdata._columns.samples_to_frame(samples, Every))
    assert all_same(samples, frame_back)


def test_the_sdk_imports_neither_engine_until_asked() -> None:
    code = (
        "import sys, atdata\n"
        "atdata.Dataset\n"
        "print(sorted(m for m in ('ray', 'dask', 'pyarrow', 'pandas') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_missing_columns_and_extras() -> None:
    with pytest.raises(atdata.MissingExtraError, match=r"atdata\[nothing\]"):
        atdata.errors.require_extra("no_such_module_here", "nothing", "a feature")
    import pandas as pd

    with pytest.raises(atdata.SampleValueError, match="no column for field 'caption'"):
        Small.from_pandas(pd.DataFrame({"label": [1]}))
    rows = Label.from_pandas(pd.DataFrame({"label": [1, 2], "even": [False, True], "x": [0, 0]}))
    assert rows == [Label(label=1, even=False), Label(label=2, even=True)]


# Field kinds to draw schemas from: (name, annotation, value strategy)
_ARR = st.integers(0, 4)
MENU: list[tuple[str, Any, Any]] = [
    ("i", int, st.integers(-(2**63), 2**63 - 1)),
    ("f", float, st.floats(allow_nan=False)),
    ("b", bool, st.booleans()),
    ("s", str, st.text(max_size=6)),
    ("y", bytes, st.binary(max_size=6)),
    ("oi", int | None, st.none() | st.integers(-5, 5)),
    ("os", str | None, st.none() | st.text(max_size=3)),
    (
        "fixed",
        Annotated[NDArray[np.int16], Shape(2, 2)],
        st.builds(lambda s: np.arange(4, dtype=np.int16).reshape(2, 2) * s, st.integers(-9, 9)),
    ),
    ("ragged", NDArray[np.float32], st.builds(lambda n: np.full(n, 0.5, np.float32), _ARR)),
    (
        "ragged2",
        Annotated[NDArray[np.uint8], Shape(None, 3)],
        st.builds(lambda n: np.full((n, 3), 7, np.uint8), _ARR),
    ),
    (
        "oarr",
        NDArray[np.float64] | None,
        st.none() | st.builds(lambda n: np.arange(n, dtype=np.float64), _ARR),
    ),
    (
        "mask",
        NDArray[np.bool_],
        st.builds(
            lambda n, b: np.array([b, not b] * n, np.bool_).reshape(n, 2), _ARR, st.booleans()
        ),
    ),
    (
        "zero_d",
        Annotated[NDArray[np.int64], Shape()],
        st.builds(lambda x: np.array(x, np.int64), st.integers(-9, 9)),
    ),
    ("ints", list[int], st.lists(st.integers(-3, 3), max_size=3)),
    (
        "arrs",
        list[NDArray[np.int32]],
        st.lists(st.builds(lambda n: np.ones(n, np.int32), _ARR), max_size=3),
    ),
    ("dct", dict[str, float], st.dictionaries(st.text(max_size=2), st.floats(-1, 1), max_size=2)),
    (
        "inner",
        Inner,
        st.builds(lambda x: Inner(x=x, v=np.ones(x % 3, np.float32)), st.integers(0, 9)),
    ),
    (
        "oinner",
        Inner | None,
        st.none() | st.builds(lambda x: Inner(x=x, v=np.zeros(1, np.float32)), st.integers(0, 9)),
    ),
    (
        "anything",
        Any,
        st.none() | st.integers(-(2**63), 2**63 - 1) | st.lists(st.text(max_size=2), max_size=2),
    ),
]


@st.composite
def schema_and_samples(draw: Any, max_samples: int = 8) -> tuple[type, list[Any]]:
    chosen = draw(st.lists(st.sampled_from(MENU), min_size=1, max_size=6, unique_by=lambda m: m[0]))
    cls = atdata.packable(
        dataclasses.make_dataclass("Drawn", [(name, ann) for name, ann, _ in chosen]),
        name="engines.Drawn",
    )
    n = draw(st.integers(0, max_samples))
    values = st.fixed_dictionaries({name: strat for name, _, strat in chosen})
    return cls, [cls(**draw(values)) for _ in range(n)]


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(schema_and_samples())
def test_arrow_and_pandas_round_trip_any_schema(drawn: tuple[type, list[Any]]) -> None:
    from atdata._columns import samples_to_frame, samples_to_table

    cls, samples = drawn
    assert all_same(samples, cls.from_arrow(samples_to_table(samples, cls)))
    assert all_same(samples, cls.from_pandas(samples_to_frame(samples, cls)))


# Field kinds whose Arrow blocks are built straight from the sample messages (MessageColumns)
COLUMNAR = {"i", "f", "b", "s", "y", "oi", "os", "fixed", "ragged", "ragged2", "mask", "zero_d"}


def _blocks_of(paths: list[str], cls: type, rows_per_block: int | None = None) -> list[Any]:
    """The Arrow blocks a Ray read task makes of these shards (no cluster needed)."""
    from atdata._parts import parts
    from atdata.ray import _read_blocks

    ds = atdata.Dataset(paths, sample_type=cls)
    return [b for part in parts(ds, 2) for b in _read_blocks(part, rows_per_block)]


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.lists(
        st.sampled_from([m for m in MENU if m[0] in COLUMNAR]),
        min_size=1,
        max_size=5,
        unique_by=lambda m: m[0],
    ),
    st.data(),
)
def test_blocks_from_messages_equal_blocks_from_samples(chosen: list[Any], data: Any) -> None:
    # the read tasks build blocks from the messages, without sample objects: the same
    # columns, types and rows as samples_to_table of the decoded samples, whether a block's
    # arrays share one shape (one join) or not (decoded one by one from the first that differs)
    from atdata._columns import MessageColumns, message_columns_apply, samples_to_table

    cls = atdata.packable(
        dataclasses.make_dataclass("Columnar", [(name, ann) for name, ann, _ in chosen]),
        name="engines.Columnar",
    )
    assert message_columns_apply(cls)
    values = st.fixed_dictionaries({name: strat for name, _, strat in chosen})
    samples = [cls(**v) for v in data.draw(st.lists(values, min_size=1, max_size=9))]
    per_block = data.draw(st.sampled_from([None, 1, 3]))
    with tempfile.TemporaryDirectory() as root:
        infos = atdata.write_samples(samples, os.path.join(root, "c-%03d.tar"), maxcount=4)
        blocks = _blocks_of([i.path for i in infos], cls, per_block)
    want = samples_to_table(samples, cls)
    assert all(b.schema == want.schema for b in blocks)
    assert all_same([s for b in blocks for s in cls.from_arrow(b)], samples)
    if per_block is not None:
        assert all(b.num_rows <= per_block for b in blocks)
    # the messages of samples whose arrays share their shapes all go into columns
    columns = MessageColumns(cls, capacity=2)
    arrays = [f.name for f in atdata.sample_fields(cls) if f.kind is atdata.FieldKind.ARRAY]
    one_layout = all(len({getattr(s, a).shape for s in samples}) == 1 for a in arrays)
    taken = [columns.add(s.packed) for s in samples]
    if one_layout:
        assert all(taken)
        assert columns.table().equals(want)


def test_blocks_from_messages_are_one_buffer_per_array_column(tmp_path: Path) -> None:
    import pyarrow as pa

    samples = [
        Small(label=i, caption=f"c{i}", image=np.full((4, 4), i, np.float32)) for i in range(10)
    ]
    infos = atdata.write_samples(samples, str(tmp_path / "s-%03d.tar"), maxcount=5)
    (block,) = _blocks_of([i.path for i in infos], Small)
    assert block.num_rows == 10 and block.column("image").num_chunks == 1
    assert all_same(Small.from_arrow(block), samples)
    from atdata._columns import samples_to_table

    assert block.equals(samples_to_table(samples, Small))
    assert isinstance(block.column("label").chunk(0), pa.Int64Array)


def test_message_columns_grow_past_their_capacity() -> None:
    from atdata._columns import MessageColumns, samples_to_table

    samples = [Small(label=i, caption="c", image=np.full((4, 4), i, np.float32)) for i in range(5)]
    columns = MessageColumns(Small, capacity=1)
    assert all(columns.add(s.packed) for s in samples)
    assert not columns.add(b"\x93")  # not a map: refused, nothing taken
    assert columns.table().equals(samples_to_table(samples, Small))
    assert columns.rows == 0


@atdata.packable(name="engines.Captioned", version="1.0.0")
class Captioned:
    label: str
    caption: str
    image: Annotated[NDArray[np.float32], Shape(4, 4)]


def test_blocks_from_messages_raise_the_decoding_error(tmp_path: Path) -> None:
    # a message that does not fit the columns is decoded the usual way: a bad one raises the
    # error naming its shard and sample, as ordered() does
    samples = [Small(label=i, caption="c", image=np.zeros((4, 4), np.float32)) for i in range(6)]
    infos = atdata.write_samples(samples, str(tmp_path / "s-%03d.tar"), maxcount=6)
    with pytest.raises(atdata.DecodeError, match=r"expected str.*s-000\.tar") as raised:
        _blocks_of([i.path for i in infos], Captioned)
    with pytest.raises(atdata.DecodeError) as direct:
        list(atdata.Dataset[Captioned]([i.path for i in infos]).ordered())
    assert str(raised.value) == str(direct.value)


@atdata.packable(name="engines.Fixed", version="1.0.0")
class Fixed:
    small: int
    wide: int
    negative: int
    score: float
    flag: bool
    caption: str
    missing: int | None
    image: NDArray


def _fixed(i: int, **changes: Any) -> Fixed:
    values: dict[str, Any] = dict(
        small=(i * 37) % 160 - 32,  # positive and negative fixints
        wide=300 + 1000 * i,
        negative=-200 - i,
        score=i / 3,
        flag=i % 2 == 0,
        caption="c",
        missing=None,
        image=np.arange(12, dtype=np.uint8).reshape(3, 4) + i,
    )
    return Fixed(**{**values, **changes})


def _regular_plans(paths: list[str], cls: type) -> list[bool]:
    import mmap

    from atdata._regular import close_quietly, regular_plan

    found = []
    for path in paths:
        with open(path, "rb") as f:
            mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        found.append(regular_plan(mapped, cls) is not None)
        close_quietly(mapped)
    return found


@pytest.mark.parametrize("per_block", [None, 2])
def test_blocks_of_regular_shards_come_from_whole_shard_arrays(
    tmp_path: Path, per_block: int | None
) -> None:
    # shards of same-sized samples are read as 2-D arrays: the same blocks' rows as decoding
    from atdata._columns import samples_to_table

    samples = [_fixed(i) for i in range(7)]
    paths = [
        i.path for i in atdata.write_samples(samples, str(tmp_path / "r-%03d.tar"), maxcount=4)
    ]
    assert _regular_plans(paths, Fixed) == [True, True]
    blocks = _blocks_of(paths, Fixed, per_block)
    want = samples_to_table(samples, Fixed)
    assert all(b.schema == want.schema for b in blocks)
    assert all_same([s for b in blocks for s in Fixed.from_arrow(b)], samples)
    assert all_same(
        [s for b in blocks for s in Fixed.from_arrow(b)],
        list(atdata.Dataset[Fixed](paths).ordered()),
    )


def test_blocks_of_regular_shards_are_verified_against_their_sha256(tmp_path: Path) -> None:
    from atdata._parts import parts
    from atdata.errors import ShardIntegrityError
    from atdata.ray import _read_blocks

    samples = [_fixed(i) for i in range(5)]
    (info,) = atdata.write_samples(samples, str(tmp_path / "r-%03d.tar"))
    assert _regular_plans([info.path], Fixed) == [True]

    def blocks(sha256: str) -> list[Any]:
        shard = atdata._sources.LocalShard(info.path, sha256=sha256, size=info.bytes)
        ds = atdata.Dataset[Fixed]([shard])
        return [b for part in parts(ds, 1) for b in _read_blocks(part, None)]

    assert all_same([s for b in blocks(info.sha256) for s in Fixed.from_arrow(b)], samples)
    with pytest.raises(ShardIntegrityError, match="sha256 mismatch.*r-000.tar"):
        blocks("0" * 64)


@pytest.mark.parametrize(
    "change",
    [
        {"wide": 70000},  # a wider int: the messages differ in size
        {"caption": "d"},  # a string that varies
        {"missing": 3},  # None and an int (of one byte each)
        {"small": 200},  # a fixint and a wider int
        {"image": np.zeros((4, 3), np.uint8)},  # another shape, the same size
    ],
)
def test_blocks_of_shards_that_are_not_regular_are_decoded(
    tmp_path: Path, change: dict[str, Any]
) -> None:
    samples = [_fixed(i) for i in range(5)]
    samples[3] = _fixed(3, **change)
    paths = [i.path for i in atdata.write_samples(samples, str(tmp_path / "r-%03d.tar"))]
    assert _regular_plans(paths, Fixed) == [False]
    blocks = _blocks_of(paths, Fixed)
    assert all_same([s for b in blocks for s in Fixed.from_arrow(b)], samples)


def test_blocks_of_a_regular_looking_shard_with_a_bad_header_raise_as_ordered(
    tmp_path: Path,
) -> None:
    samples = [_fixed(i) for i in range(5)]
    (info,) = atdata.write_samples(samples, str(tmp_path / "r-%03d.tar"))
    data = bytearray(Path(info.path).read_bytes())
    stride = len(data) // 5 // 512 * 512
    data[2 * stride] ^= 1  # the third member's name: its checksum no longer holds
    Path(info.path).write_bytes(bytes(data))
    assert _regular_plans([info.path], Fixed) == [False]
    with pytest.raises(atdata.DecodeError) as raised:
        _blocks_of([info.path], Fixed)
    with pytest.raises(atdata.DecodeError) as direct:
        list(atdata.Dataset[Fixed]([info.path]).ordered())
    assert "checksum" in str(raised.value) and str(raised.value) == str(direct.value)


def test_blocks_of_a_type_with_its_own_post_init_come_from_its_samples() -> None:
    from atdata._columns import message_columns_apply

    assert message_columns_apply(Small)
    assert not message_columns_apply(Fragile)  # __post_init__ may change what it holds
    assert not message_columns_apply(Every)  # nested samples, lists, dicts, Any


# --- reading: Ray and Dask against ordered() ------------------------------------------------


def test_to_ray_equals_ordered_for_every_kind(ray_cluster: str, every_shards: Any) -> None:
    samples, paths = every_shards
    ds = atdata.Dataset[Every](paths)
    assert all_same(list(ds.ordered()), samples)
    rd = ds.to_ray(rows_per_block=4)
    assert rd.count() == len(samples)
    assert all_same(ray_rows(rd, Every), samples)
    grouped = ds.to_ray(shards_per_task=3)  # groups of shards per read task
    assert all_same(ray_rows(grouped, Every), samples)
    # Ray's pandas batches too, except what pandas cannot carry: Any (stays msgpack bytes)
    # and the nulls of optional arrays (Ray gives empty arrays)
    via_pandas = [
        s
        for df in rd.iter_batches(batch_format="pandas", batch_size=None)
        for s in Every.from_pandas(df)
    ]
    names = [f.name for f in dataclasses.fields(Every) if f.name not in ("anything", "opt")]
    assert len(via_pandas) == len(samples)
    for got, want in zip(via_pandas, samples, strict=True):
        assert all(same(getattr(got, n), getattr(want, n)) for n in names)


def test_to_dask_equals_ordered_for_every_kind(every_shards: Any) -> None:
    samples, paths = every_shards
    ds = atdata.Dataset[Every](paths)
    ddf = ds.to_dask()
    assert ddf.npartitions == len(paths)
    assert str(ddf.dtypes["img"]) == "object" and str(ddf.dtypes["i"]) == "int64"
    frame = ddf.compute(scheduler="sync")
    assert isinstance(frame["img"].iloc[0], np.ndarray)
    assert all_same(Every.from_pandas(frame), samples)
    assert all_same(ds.to_dask_bag().compute(scheduler="sync"), samples)


class _Drift:
    """Pickles to other bytes every time, as a dataset holding such state may."""

    count = 0

    def __reduce__(self) -> tuple[Any, ...]:
        _Drift.count += 1
        return (_Drift, (), {"n": _Drift.count})


def test_to_dask_names_partitions_without_pickling_the_dataset(every_shards: Any) -> None:
    # Dask refused a dataset that did not pickle to the same bytes twice ("Failed to tokenize
    # deterministically"), which a hypothesis run hit now and then
    samples, paths = every_shards
    ds = atdata.Dataset[Every](paths)
    vars(ds)["drift"] = _Drift()
    with dask.config.set({"tokenize.ensure-deterministic": True}):
        ddf = ds.to_dask()
    assert all_same(Every.from_pandas(ddf.compute(scheduler="sync")), samples)


@settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck))
@given(schema_and_samples(max_samples=7))
def test_to_ray_and_to_dask_equal_ordered_any_schema(
    ray_cluster: str, drawn: tuple[type, list[Any]]
) -> None:
    cls, samples = drawn
    with tempfile.TemporaryDirectory() as root:
        infos = atdata.write_samples(samples, os.path.join(root, "d-%03d.tar"), maxcount=3)
        if not infos:
            return
        ds = atdata.Dataset([i.path for i in infos], sample_type=cls)
        want = list(ds.ordered())
        assert all_same(want, samples)
        assert all_same(ray_rows(ds.to_ray(rows_per_block=2), cls), want)
        assert all_same(cls.from_pandas(ds.to_dask().compute(scheduler="sync")), want)


def test_lens_views_reach_ray_and_dask(ray_cluster: str, tmp_path: Path) -> None:
    small = [
        Small(label=i, caption=f"c{i}", image=np.full((4, 4), i, np.float32)) for i in range(9)
    ]
    infos = atdata.write_samples(small, str(tmp_path / "s-%03d.tar"), maxcount=4)
    view = atdata.Dataset[Small]([i.path for i in infos]).as_type(Label)
    want = [small_label(s) for s in small]
    assert ray_rows(view.to_ray(), Label) == want
    assert Label.from_pandas(view.to_dask().compute(scheduler="sync")) == want


def test_schema_free_datasets_read_too(ray_cluster: str, tmp_path: Path) -> None:
    small = [
        Small(label=i, caption=f"c{i}", image=np.full((4, 4), i, np.float32)) for i in range(5)
    ]
    infos = atdata.write_samples(small, str(tmp_path / "s-%03d.tar"), maxcount=2)
    loose = atdata.Dataset([i.path for i in infos])
    rows = loose.to_ray().take_all()
    assert [r["caption"] for r in rows] == [s.caption for s in small]
    # without a schema an array stays its wire bytes (as DictSample holds it)
    assert np.array_equal(atdata._codec.decode_array(rows[3]["image"]), small[3].image)
    frame = loose.to_dask().compute(scheduler="sync")
    assert list(frame["label"]) == list(range(5))


def test_corrupt_shard_fails_the_ray_read_with_its_name(ray_cluster: str, tmp_path: Path) -> None:
    small = [Small(label=i, caption="c", image=np.zeros((4, 4), np.float32)) for i in range(4)]
    (info,) = atdata.write_samples(small, str(tmp_path / "s-%03d.tar"))
    ds = atdata.Dataset[Small](
        [atdata._sources.LocalShard(info.path, sha256="0" * 64, size=info.bytes)]
    )
    with pytest.raises(Exception, match="s-000.tar"):
        ds.to_ray().take_all()


# --- writing ---------------------------------------------------------------------------------


def test_write_dataset_reads_back_and_numbers_shards_in_order(
    ray_cluster: str, every_shards: Any, tmp_path: Path
) -> None:
    samples, paths = every_shards
    rd = atdata.Dataset[Every](paths).to_ray(rows_per_block=3)
    infos = atdata.ray.write_dataset(rd, Every, str(tmp_path / "out" / "p-%06d.tar"), maxcount=5)
    assert [Path(i.path).name for i in infos] == [f"p-{n:06d}.tar" for n in range(5)]
    assert [i.samples for i in infos] == [5, 5, 5, 5, 3]
    assert sorted(os.listdir(tmp_path / "out")) == [Path(i.path).name for i in infos]
    back = list(atdata.Dataset[Every]([i.path for i in infos]).ordered())
    assert all_same(back, samples)
    assert infos[0].arrays["img"] == {"dtype": "|u1", "shape": [2, 3]}
    import hashlib

    assert infos[2].sha256 == hashlib.sha256(Path(infos[2].path).read_bytes()).hexdigest()


def jitter(row: dict[str, Any]) -> dict[str, Any]:
    """Early rows finish last: unordered execution would reorder them."""
    import time

    time.sleep(0.05 if row["label"] < 6 else 0.0)
    return row


def test_write_dataset_keeps_the_dataset_order_without_being_asked(
    ray_cluster: str, tmp_path: Path
) -> None:
    from ray.data.context import DataContext

    ctx = DataContext.get_current()
    ctx.execution_options.preserve_order = False
    try:
        rd = ray.data.from_items([{"label": i} for i in range(24)], override_num_blocks=8)
        rd = rd.map(jitter)
        infos = atdata.ray.write_dataset(rd, Fragile, str(tmp_path / "o-%03d.tar"), maxcount=3)
        assert ctx.execution_options.preserve_order is False  # restored
    finally:
        ctx.execution_options.preserve_order = True
    labels = [s.label for s in atdata.Dataset[Fragile]([i.path for i in infos])]
    assert labels == list(range(24)) and [i.samples for i in infos] == [3] * 8


def test_write_dataset_to_s3(
    ray_cluster: str, tmp_path: Path, s3_server: Any, s3_bucket: str
) -> None:
    small = [
        Small(label=i, caption=f"c{i}", image=np.full((4, 4), i, np.float32)) for i in range(7)
    ]
    rd = ray.data.from_items(
        [{"label": s.label, "caption": s.caption, "image": s.image} for s in small]
    )
    kwargs = s3_server.client_kwargs()
    infos = atdata.ray.write_dataset(
        rd, Small, f"s3://{s3_bucket}/derived", maxcount=3, client_kwargs=kwargs
    )
    assert [i.path for i in infos] == [
        f"s3://{s3_bucket}/derived/part-{n:06d}.tar" for n in range(3)
    ]
    keys = [o["Key"] for o in s3_server.client().list_objects_v2(Bucket=s3_bucket)["Contents"]]
    assert sorted(keys) == [f"derived/part-{n:06d}.tar" for n in range(3)]  # no staging left
    back = atdata.Dataset[Small](f"s3://{s3_bucket}/derived/", client_kwargs=kwargs)
    assert all_same(list(back.ordered()), small)
    assert all_same(ray_rows(back.to_ray(), Small), small)  # credentials travel in the sources
    mapped = back.map_shards(
        relabel, out=f"s3://{s3_bucket}/mapped", engine="ray", client_kwargs=kwargs
    )
    # shard 2 holds only label 6, which relabel drops: no output shard for it
    assert [i.path.rsplit("/", 1)[1] for i in mapped] == ["part-000000.tar", "part-000001.tar"]


def test_killed_write_task_leaves_no_partial_shard(ray_cluster: str, tmp_path: Path) -> None:
    rows = [{"label": i} for i in range(20)]
    rd = ray.data.from_items(rows)
    Path(os.environ[ARM_VAR], "kill-write").touch()  # the task building label 7 dies, once
    infos = atdata.ray.write_dataset(rd, Fragile, str(tmp_path / "out" / "f-%04d.tar"), maxcount=4)
    assert not Path(os.environ[ARM_VAR], "kill-write").exists()  # it did die
    assert sorted(os.listdir(tmp_path / "out")) == [Path(i.path).name for i in infos]
    assert [s.label for s in atdata.Dataset[Fragile]([i.path for i in infos])] == list(range(20))


def peer_labels(peer_python: str, paths: list[str]) -> Any:
    from _fixtures.peer import run_peer

    code = textwrap.dedent(
        """
        import hashlib, json, sys
        import atdata
        from numpy.typing import NDArray

        @atdata.packable
        class Small:
            label: int
            caption: str
            image: NDArray

        ds = atdata.Dataset[Small](sys.argv[1])
        print(json.dumps([[s.label, s.caption, hashlib.sha256(s.image.tobytes()).hexdigest()]
                          for s in ds.ordered()]))
        """
    )
    return [row for p in paths for row in run_peer(peer_python, code, p)]


@pytest.mark.peer
def test_written_shards_load_in_the_peer(
    ray_cluster: str, peer_python: str, tmp_path: Path
) -> None:
    import hashlib

    small = [
        Small(label=i, caption=f"c{i}", image=np.full((4, 4), i, np.float32)) for i in range(6)
    ]
    rd = ray.data.from_items(
        [{"label": s.label, "caption": s.caption, "image": s.image} for s in small]
    )
    infos = atdata.ray.write_dataset(rd, Small, str(tmp_path / "p-%04d.tar"), maxcount=4)
    want = [[s.label, s.caption, hashlib.sha256(s.image.tobytes()).hexdigest()] for s in small]
    assert peer_labels(peer_python, [i.path for i in infos]) == want


# --- map_shards --------------------------------------------------------------------------------


def relabel(s: Small) -> Small | None:
    if s.label % 3 == 0:
        return None
    return Small(label=s.label * 10, caption=s.caption.upper(), image=s.image + 1)


def relabel_batch(batch: list[Small]) -> list[Small]:
    return [r for r in map(relabel, batch) if r is not None]


@pytest.mark.parametrize("engine", ["processes", "ray"])
def test_map_shards_equals_a_sequential_map(engine: str, ray_cluster: str, tmp_path: Path) -> None:
    small = [
        Small(label=i, caption=f"c{i}", image=np.full((4, 4), i, np.float32)) for i in range(14)
    ]
    infos = atdata.write_samples(small, str(tmp_path / "in-%03d.tar"), maxcount=3)
    ds = atdata.Dataset[Small]([i.path for i in infos])
    want = [r for r in map(relabel, ds.ordered()) if r is not None]
    out = ds.map_shards(
        relabel, out=str(tmp_path / "out-%03d.tar"), sample_type=Small, engine=engine
    )
    assert all_same(list(atdata.Dataset[Small]([i.path for i in out]).ordered()), want)
    # input shard 0 holds labels 0,1,2 -> kept; keys are the source's
    with tarfile.open(out[0].path) as tf:
        assert [m.name for m in tf.getmembers()] == ["00000001.msgpack", "00000002.msgpack"]
    batched = ds.map_shards(
        relabel_batch, out=str(tmp_path / "b-%03d.tar"), engine=engine, batched=True, batch_size=2
    )
    assert all_same(list(atdata.Dataset[Small]([i.path for i in batched]).ordered()), want)


def test_map_shards_skips_empty_outputs_and_names_failures(
    ray_cluster: str, tmp_path: Path
) -> None:
    small = [Small(label=i, caption=f"c{i}", image=np.zeros((4, 4), np.float32)) for i in range(6)]
    infos = atdata.write_samples(small, str(tmp_path / "in-%03d.tar"), maxcount=2)
    ds = atdata.Dataset[Small]([i.path for i in infos])
    out = ds.map_shards(lambda s: s if s.label >= 4 else None, out=str(tmp_path / "o-%03d.tar"))
    assert [Path(i.path).name for i in out] == ["o-002.tar"]  # named by input shard
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("o-")) == ["o-002.tar"]

    def explode(s: Small) -> Small:
        if s.label == 3:
            raise RuntimeError("boom")
        return s

    for engine in ("processes", "ray"):
        with pytest.raises(ShardTaskError, match=r"sample '00000003' of shard .*in-001.tar.*boom"):
            ds.map_shards(explode, out=str(tmp_path / f"x{engine}-%03d.tar"), engine=engine)
        assert not list(tmp_path.glob(f"x{engine}-001.tar"))
    assert not list(tmp_path.glob(".atdata-partial-*"))


def die_once(s: Small) -> Small:
    if s.label == 4:
        try:
            os.remove(os.path.join(os.environ[ARM_VAR], "kill-map"))
        except FileNotFoundError:
            return s
        os._exit(1)
    return s


def test_killed_map_task_is_rewritten_not_appended(ray_cluster: str, tmp_path: Path) -> None:
    small = [Small(label=i, caption=f"c{i}", image=np.zeros((4, 4), np.float32)) for i in range(9)]
    infos = atdata.write_samples(small, str(tmp_path / "in-%03d.tar"), maxcount=3)
    ds = atdata.Dataset[Small]([i.path for i in infos])
    Path(os.environ[ARM_VAR], "kill-map").touch()
    out = ds.map_shards(die_once, out=str(tmp_path / "o-%03d.tar"), engine="ray")
    assert not Path(os.environ[ARM_VAR], "kill-map").exists()
    assert [i.samples for i in out] == [3, 3, 3]
    assert all_same(list(atdata.Dataset[Small]([i.path for i in out]).ordered()), small)
    assert not list(tmp_path.glob(".atdata-partial-*"))


# --- types defined in a script's __main__ -----------------------------------------------------

SCRIPT = """
import sys
from typing import Annotated

import numpy as np
from numpy.typing import NDArray

import atdata


@atdata.packable(name="script.Point", version="1.0.0")
class Point:
    xy: Annotated[NDArray[np.float32], atdata.Shape(2)]
    tag: str


def shift(p):
    return Point(xy=p.xy + 1, tag=p.tag)


if __name__ == "__main__":
    import ray

    root = sys.argv[2]
    pts = [Point(xy=np.array([i, -i], np.float32), tag=f"t{i}") for i in range(6)]
    infos = atdata.write_samples(pts, root + "/p-%02d.tar", maxcount=2)
    ds = atdata.Dataset[Point]([i.path for i in infos])
    ray.init(address=sys.argv[1], log_to_driver=False)
    from ray.data.context import DataContext
    DataContext.get_current().execution_options.preserve_order = True
    DataContext.get_current().enable_progress_bars = False
    rows = [p for b in ds.to_ray().iter_batches(batch_format="pyarrow", batch_size=None)
            for p in Point.from_arrow(b)]
    mapped = ds.map_shards(shift, out=root + "/m-%02d.tar", engine="ray")
    frame = ds.to_dask().compute(scheduler="processes", num_workers=2)
    bag = ds.to_dask_bag().compute(scheduler="processes", num_workers=2)
    print([p.tag for p in rows] == [p.tag for p in pts],
          [float(p.xy[0]) for p in atdata.Dataset[Point]([i.path for i in mapped])],
          list(frame["tag"]) == [p.tag for p in pts],
          [p.tag for p in bag] == [p.tag for p in pts])
"""


def test_types_defined_in_a_scripts_main_work_in_tasks(ray_cluster: str, tmp_path: Path) -> None:
    script = tmp_path / "job.py"
    script.write_text(SCRIPT)
    env = dict(os.environ)
    env.pop(ARM_VAR, None)
    proc = subprocess.run(
        [sys.executable, str(script), ray_cluster, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "True [1.0, 2.0, 3.0, 4.0, 5.0, 6.0] True True"


# --- a dataset resolved by at:// URI from the devnet -----------------------------------------


@pytest.mark.devnet
def test_ray_job_over_a_published_dataset(
    ray_cluster: str, make_account: Any, tmp_path: Path
) -> None:
    account = make_account(0)
    alice = login(account)
    small = [
        Small(label=i, caption=f"c{i}", image=np.full((4, 4), i, np.float32)) for i in range(10)
    ]
    rows = ray.data.from_items(
        [{"label": s.label, "caption": s.caption, "image": s.image} for s in small]
    )
    infos = atdata.ray.write_dataset(rows, Small, str(tmp_path / "d-%04d.tar"), maxcount=3)
    ref = alice.publish_dataset(  # write_dataset's result, as it is
        infos,
        name="engines",
        schema=Small,
        splits={"train": [0, 1, 2], "test": [3]},
        progress=False,
    )
    train = atdata.load_dataset(str(ref), split="train", sample_type=Small)
    assert all_same(ray_rows(train.to_ray(), Small), small[:9])
    labels = train.as_type(Label).to_ray().map(lambda r: {"twice": r["label"] * 2}).take_all()
    assert [r["twice"] for r in labels] == [2 * i for i in range(9)]
    frame = atdata.load_dataset(str(ref), split="test", sample_type=Small).to_dask().compute()
    assert list(frame["caption"]) == ["c9"]

    # a derived dataset written by Ray tasks, published with its lineage
    derived = train.map_shards(relabel, out=str(tmp_path / "r-%04d.tar"), engine="ray")
    derived_ref = alice.publish_dataset(
        derived, name="engines-relabelled", schema=Small, derived_from=[(train, "relabelled")]
    )
    (origin,) = alice.get_record(str(derived_ref)).value["derivedFrom"]
    assert str(ref) in json.dumps(origin) and "relabelled" in json.dumps(origin)
    got = atdata.load_dataset(str(derived_ref), sample_type=Small)
    assert all_same(list(got.ordered()), [r for r in map(relabel, small[:9]) if r is not None])


def test_read_tasks_group_small_shards(tmp_path: Path) -> None:
    # a Ray task costs CPU of its own: small shards are read several to a task, as many
    # tasks as CPUs where there are enough shards, about 256 MB to a task
    from atdata._sources import LocalShard
    from atdata.ray import _default_shards_per_task

    mb = 1 << 20
    assert _default_shards_per_task([LocalShard("x", size=31 * mb)] * 10, cpus=2) == 5
    assert _default_shards_per_task([LocalShard("x", size=31 * mb)] * 10, cpus=64) == 1
    assert _default_shards_per_task([LocalShard("x", size=100 * mb)] * 11, cpus=2) == 3
    assert _default_shards_per_task([LocalShard("x", size=2 * mb)] * 1000, cpus=8) == 125
    assert _default_shards_per_task([LocalShard("x")] * 10, cpus=2) == 1  # no such file
    (tmp_path / "a.tar").write_bytes(b"\0" * 1024)
    assert _default_shards_per_task([LocalShard(tmp_path / "a.tar")] * 4, cpus=2) == 2
