"""Lenses: registration from annotations, putters, composition, shortest paths, the laws."""

from __future__ import annotations

from dataclasses import dataclass, replace

import atdata
import pytest
from atdata.errors import LensError
from atdata.lens import Lens, LensRegistry, registry
from hypothesis import given
from hypothesis import strategies as st


@dataclass(frozen=True)
class Full:
    name: str
    score: float
    tags: tuple[str, ...]


@dataclass(frozen=True)
class Scored:
    name: str
    score: float


@dataclass(frozen=True)
class Named:
    name: str


@atdata.lens
def full_to_scored(src: Full) -> Scored:
    return Scored(src.name, src.score)


@full_to_scored.putter
def full_to_scored(view: Scored, source: Full) -> Full:  # the putter keeps the lens
    return replace(source, name=view.name, score=view.score)


@atdata.lens
def scored_to_named(src: Scored) -> Named:
    return Named(src.name)


@scored_to_named.putter
def scored_to_named(view: Named, source: Scored) -> Scored:
    return replace(source, name=view.name)


_full = st.builds(
    Full,
    name=st.text(max_size=20),
    score=st.floats(allow_nan=False),
    tags=st.tuples(st.text(max_size=5)),
)
_scored = st.builds(Scored, name=st.text(max_size=20), score=st.floats(allow_nan=False))
_named = st.builds(Named, name=st.text(max_size=20))


def test_decorator_registers_from_annotations() -> None:
    assert isinstance(full_to_scored, Lens)
    assert full_to_scored.source is Full and full_to_scored.view is Scored
    assert registry.get(Full, Scored) is full_to_scored
    assert atdata.lens.registry is registry
    assert full_to_scored(Full("a", 1.0, ())) == Scored("a", 1.0)
    assert full_to_scored.bidirectional


def test_local_classes_with_postponed_annotations() -> None:
    @dataclass
    class A:
        x: int

    @dataclass
    class B:
        y: int

    @atdata.lens
    def a_to_b(src: A) -> B:
        return B(src.x + 1)

    try:
        assert registry.find_path(A, B) == [a_to_b]
        assert a_to_b.get(A(1)) == B(2)
        with pytest.raises(LensError, match="one-way"):
            a_to_b.put(B(3), A(1))
    finally:
        registry.unregister(a_to_b)


def test_bad_annotations_are_refused() -> None:
    with pytest.raises(LensError, match="class annotations"):

        @atdata.lens
        def nothing(src):  # type: ignore[no-untyped-def]
            return src

    with pytest.raises(LensError, match="cannot resolve"):

        @atdata.lens
        def unknown(src: NoSuchType) -> Named:  # type: ignore[name-defined]  # noqa: F821
            return Named("x")


@given(s=_full)
def test_get_put_law(s: Full) -> None:
    """Putting back an unchanged view gives the source back."""
    assert full_to_scored.put(full_to_scored.get(s), s) == s
    assert scored_to_named.put(
        scored_to_named.get(Scored(s.name, s.score)), Scored(s.name, s.score)
    ) == Scored(s.name, s.score)


@given(s=_full, v=_scored)
def test_put_get_law(s: Full, v: Scored) -> None:
    """The view of a put is the view that was put."""
    assert full_to_scored.get(full_to_scored.put(v, s)) == v


@given(s=_full, v=_named)
def test_composed_lens_obeys_the_laws(s: Full, v: Named) -> None:
    both = full_to_scored.compose(scored_to_named)
    assert both.source is Full and both.view is Named
    assert both.get(s) == Named(s.name)
    assert both.put(both.get(s), s) == s
    assert both.get(both.put(v, s)) == v
    assert (full_to_scored >> scored_to_named).get(s) == both.get(s)


def test_composition_of_one_way_lens_is_one_way() -> None:
    one_way = Lens(lambda s: Named(s.name), source=Scored, view=Named, name="nm")
    assert not full_to_scored.compose(one_way).bidirectional
    with pytest.raises(LensError):
        full_to_scored.compose(one_way).put(Named("x"), Full("a", 1.0, ()))


def _types(n: int) -> list[type]:
    return [type(f"T{i}", (), {}) for i in range(n)]


def test_find_path_is_shortest_and_resolve_composes() -> None:
    reg = LensRegistry()
    a, b, c, d, e = _types(5)

    def mk(s: type, v: type, name: str) -> Lens:
        return reg.register(Lens(lambda x, v=v: (v, x), source=s, view=v, name=name))

    mk(a, d, "a_d")
    mk(d, e, "d_e")
    mk(e, c, "e_c")
    mk(a, b, "a_b")
    mk(b, c, "b_c")
    path = reg.find_path(a, c)
    assert [lens.name for lens in path] == ["a_b", "b_c"]
    assert reg.find_path(a, a) == []
    assert reg.find_path(c, a) is None
    composed = reg.resolve(a, c)
    assert composed.get("x") == (c, (b, "x"))
    assert reg.resolve(b, b).get("same") == "same"


def test_no_path_error_lists_lenses_from_the_source() -> None:
    reg = LensRegistry()
    a, b, c, z = _types(4)
    reg.register(Lens(lambda x: x, source=a, view=b, name="first"))
    reg.register(Lens(lambda x: x, source=a, view=c, name="second"))
    with pytest.raises(LensError) as err:
        reg.resolve(a, z)
    msg = str(err.value)
    assert (
        "no lens from T0 to T3" in msg and "first (T0 -> T1)" in msg and "second (T0 -> T2)" in msg
    )
    with pytest.raises(LensError, match="none registered"):
        reg.resolve(z, a)


def test_lenses_pickle_by_reference() -> None:
    """For DataLoader workers started with "spawn": lenses travel by their registered types."""
    import pickle

    assert pickle.loads(pickle.dumps(full_to_scored)) is full_to_scored
    both = full_to_scored >> scored_to_named
    clone = pickle.loads(pickle.dumps(both))
    s = Full("a", 2.0, ("t",))
    assert clone.get(s) == Named("a") and clone.put(Named("b"), s) == Full("b", 2.0, ("t",))
