"""Lenses: typed views of one sample type as another, registered by their annotations.

A lens ``A -> B`` has ``get(a) -> b`` and, when bidirectional, ``put(b, a) -> a`` (write a
changed view back into its source). ``Dataset[A].as_type(B)`` looks lenses up in the registry
and composes them along the shortest path when there is no direct one, so a handful of small
lenses covers many type pairs.
"""

from __future__ import annotations

import inspect
import logging
import sys
import typing
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from .errors import LensError
from .records import RecordRef

__all__ = ["Lens", "LensRegistry", "lens", "registry"]

log = logging.getLogger(__name__)

S = TypeVar("S")
V = TypeVar("V")
W = TypeVar("W")


def _type_name(t: Any) -> str:
    return getattr(t, "__qualname__", None) or getattr(t, "__name__", None) or repr(t)


class Lens(Generic[S, V]):
    """A view ``source -> view`` with an optional ``put`` that writes a view back."""

    def __init__(
        self,
        get: Callable[[S], V],
        put: Callable[[V, S], S] | None = None,
        *,
        source: type | None = None,
        view: type | None = None,
        name: str | None = None,
    ) -> None:
        self._get = get
        self._put = put
        self.source = source
        self.view = view
        self.name = name or getattr(get, "__name__", "lens")
        self.__doc__ = getattr(get, "__doc__", None)
        self.__wrapped__ = get

    def get(self, source: S) -> V:
        """The view of ``source``."""
        return self._get(source)

    __call__ = get

    def put(self, view: V, source: S) -> S:
        """``source`` updated from a (possibly changed) ``view``; needs a putter."""
        if self._put is None:
            raise LensError(f"lens {self.name!r} is one-way: it has no putter")
        return self._put(view, source)

    @property
    def bidirectional(self) -> bool:
        return self._put is not None

    def putter(self, fn: Callable[[V, S], S]) -> Lens[S, V]:
        """Decorator adding ``put(view, source) -> source``; returns the lens itself."""
        self._put = fn
        return self

    def compose(self, other: Lens[V, W]) -> Lens[S, W]:
        """``self`` then ``other``: a lens from this lens's source to ``other``'s view."""
        first, second = self, other

        def get(source: S) -> W:
            return second.get(first.get(source))

        put: Callable[[W, S], S] | None = None
        if first.bidirectional and second.bidirectional:

            def put(view: W, source: S) -> S:
                return first.put(second.put(view, first.get(source)), source)

        result: Lens[S, W] = Lens(
            get, put, source=first.source, view=second.view, name=f"{first.name}>>{second.name}"
        )
        result._parts = (first, second)
        return result

    __rshift__ = compose

    _parts: tuple[Lens[Any, Any], Lens[Any, Any]] | None = None
    #: The lens's published io.atdata.lens record, once `Client.publish_lens` wrote it or
    #: `Client.load_lens` loaded it (lineage records it for datasets this lens converted).
    record: RecordRef | None = None

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle by reference (for DataLoader workers started with "spawn").

        ``@lens`` rebinds the function's name to the lens, so the function itself cannot be
        pickled by name; a registered lens is found again by its types in the registry of the
        process that unpickles it (importing the defining module registers it), a composed
        lens by its parts.
        """
        if self._parts is not None:
            return (_compose_parts, self._parts)
        source, view = self.source, self.view
        if source is not None and view is not None and registry.get(source, view) is self:
            return (_registered, (self.source, self.view))
        return (
            Lens,
            (self._get, self._put),
            {"source": self.source, "view": self.view, "name": self.name},
        )

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def __repr__(self) -> str:
        arrow = "<->" if self.bidirectional else "->"
        return f"Lens({self.name}: {_type_name(self.source)} {arrow} {_type_name(self.view)})"


class LensRegistry:
    """Lenses by ``(source type, view type)``; finds the shortest chain between two types."""

    def __init__(self) -> None:
        self._lenses: dict[tuple[type, type], Lens[Any, Any]] = {}

    def register(self, lens_: Lens[Any, Any]) -> Lens[Any, Any]:
        if lens_.source is None or lens_.view is None:
            raise LensError(f"lens {lens_.name!r} needs source and view types to be registered")
        key = (lens_.source, lens_.view)
        if key in self._lenses and self._lenses[key] is not lens_:
            log.debug("replacing lens %r with %r", self._lenses[key], lens_)
        self._lenses[key] = lens_
        return lens_

    def unregister(self, lens_: Lens[Any, Any]) -> None:
        if lens_.source is None or lens_.view is None:
            return  # never registered
        key = (lens_.source, lens_.view)
        if self._lenses.get(key) is lens_:
            del self._lenses[key]

    def get(self, source: type, view: type) -> Lens[Any, Any] | None:
        return self._lenses.get((source, view))

    def from_type(self, source: type) -> list[Lens[Any, Any]]:
        """Every registered lens whose source is ``source``."""
        return [lens_ for (s, _), lens_ in self._lenses.items() if s is source]

    def __iter__(self) -> Iterator[Lens[Any, Any]]:
        return iter(list(self._lenses.values()))

    def __len__(self) -> int:
        return len(self._lenses)

    def find_path(self, source: type, view: type) -> list[Lens[Any, Any]] | None:
        """The shortest chain of lenses from ``source`` to ``view`` (``[]`` when equal)."""
        if source is view:
            return []
        direct = self._lenses.get((source, view))
        if direct is not None:
            return [direct]
        edges: dict[type, list[Lens[Any, Any]]] = {}
        for (s, _), lens_ in self._lenses.items():
            edges.setdefault(s, []).append(lens_)
        previous: dict[type, Lens[Any, Any]] = {}
        seen = {source}
        queue: deque[type] = deque([source])
        while queue:
            node = queue.popleft()
            for lens_ in edges.get(node, ()):
                nxt = lens_.view
                assert nxt is not None
                if nxt in seen:
                    continue
                seen.add(nxt)
                previous[nxt] = lens_
                if nxt is view:
                    path = [lens_]
                    while (before := path[0].source) is not source:
                        assert before is not None  # every lens in the registry has a source
                        path.insert(0, previous[before])
                    return path
                queue.append(nxt)
        return None

    def resolve(self, source: type, view: type) -> Lens[Any, Any]:
        """One lens from ``source`` to ``view`` (composed if needed), or a :class:`LensError`
        that lists the lenses that do exist from ``source``."""
        path = self.find_path(source, view)
        if path is None:
            existing = self.from_type(source)
            listing = ", ".join(
                f"{lens_.name} ({_type_name(source)} -> {_type_name(lens_.view)})"
                for lens_ in existing
            )
            raise LensError(
                f"no lens from {_type_name(source)} to {_type_name(view)}; lenses from "
                f"{_type_name(source)}: {listing or 'none registered'}"
            )
        if not path:
            return Lens(lambda s: s, lambda v, s: v, source=source, view=view, name="identity")
        result = path[0]
        for step in path[1:]:
            result = result.compose(step)
        return result


#: The process-wide registry that ``@atdata.lens`` fills and ``Dataset.as_type`` reads.
registry = LensRegistry()


def _registered(source: type, view: type) -> Lens[Any, Any]:
    found = registry.get(source, view)
    if found is None:
        raise LensError(
            f"no lens {_type_name(source)} -> {_type_name(view)} is registered in this process "
            "(import the module that defines it)"
        )
    return found


def _compose_parts(first: Lens[Any, Any], second: Lens[Any, Any]) -> Lens[Any, Any]:
    return first.compose(second)


def lens_types(
    fn: Callable[..., Any], caller_locals: dict[str, Any] | None = None
) -> tuple[type, type]:
    """The source and view classes of ``def fn(src: A) -> B`` (postponed annotations resolved
    in ``fn``'s module and ``caller_locals``); a `LensError` when they are not classes."""
    try:
        hints = typing.get_type_hints(fn, localns=caller_locals or {})
    except Exception as exc:  # NameError for unresolvable forward references, mostly
        raise LensError(f"cannot resolve the annotations of lens {fn.__name__!r}: {exc}") from exc
    params = list(inspect.signature(fn).parameters)
    if not params:
        raise LensError(f"lens {fn.__name__!r} must take the source sample as its argument")
    source = hints.get(params[0])
    view = hints.get("return")
    if not isinstance(source, type) or not isinstance(view, type):
        raise LensError(
            f"lens {fn.__name__!r} needs class annotations, as in "
            f"`def {fn.__name__}(src: A) -> B` (got {source!r} -> {view!r})"
        )
    return source, view


def lens(fn: Callable[[S], V]) -> Lens[S, V]:
    """Register ``def f(src: A) -> B`` as the lens ``A -> B``; ``@f.putter`` adds ``put``."""
    frame = sys._getframe(1)
    caller_locals = dict(frame.f_locals)
    del frame
    source, view = lens_types(fn, caller_locals)
    result: Lens[S, V] = Lens(fn, source=source, view=view)
    registry.register(result)
    return result


# `atdata.lens.registry` / `atdata.lens.Lens`: the package attribute `atdata.lens` is this function.
for _name, _value in {"registry": registry, "Lens": Lens}.items():
    setattr(lens, _name, _value)
