"""Lineage: what a published dataset was derived from (the record's `derivedFrom`).

Each source is pinned by URI and CID, with a relation saying what was done to it and, for a
conversion through a published lens, that lens's record. A `Dataset` seen through a lens
(`Dataset.as_type`) is a conversion: its lens is found among the author's own published lenses
(by entry point and source hash), or is the one `Client.publish_lens` / `Client.load_lens`
returned in this process.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ..dataset import Dataset
from ..errors import AtdataError
from ..lens import Lens
from ..records import DATASET, Record, RecordRef, StrongRef
from .lens_code import lens_code_ref
from .shards import PublishError

__all__ = ["RELATIONS", "derivation_entries", "lens_leaves"]

log = logging.getLogger(__name__)

#: What a derived dataset did to its source (the lexicon's known values).
RELATIONS = ("subset", "augmented", "relabelled", "converted", "merged", "other")

#: Fetches a record by at:// URI (the client's guarded fetch).
FetchRecord = Callable[[str], Record]


def lens_leaves(lens_: Lens[Any, Any]) -> list[Lens[Any, Any]]:
    """The single lenses a (possibly composed) lens applies, in order."""
    parts = lens_._parts
    if parts is None:
        return [lens_]
    return [leaf for part in parts for leaf in lens_leaves(part)]


def _code_key(lens_: Lens[Any, Any]) -> tuple[str, str] | None:
    try:
        code = lens_code_ref(lens_, repo_url="-", commit="-")
    except (AtdataError, ImportError, OSError, TypeError):
        return None  # defined in __main__ or a closure: it cannot have been published
    return code["entryPoint"], code["sha256"]


class _LensRefs:
    """Finds the published record of a lens: remembered by the client, else in own repo."""

    def __init__(self, own_lenses: Callable[[], Iterable[Record]]) -> None:
        self._own_lenses = own_lenses
        self._by_code: dict[tuple[str, str], RecordRef] | None = None

    def ref(self, lens_: Lens[Any, Any]) -> RecordRef | None:
        leaves = lens_leaves(lens_)
        if len(leaves) != 1:
            log.info("lens %s is a chain of %d lenses: lineage records no lens", lens_, len(leaves))
            return None
        (leaf,) = leaves
        if leaf.record is not None:
            return leaf.record
        key = _code_key(leaf)
        if key is None:
            return None
        if self._by_code is None:
            self._by_code = {}
            for rec in self._own_lenses():
                code = rec.value.get("code")
                if isinstance(code, dict):
                    k = (str(code.get("entryPoint")), str(code.get("sha256")))
                    self._by_code.setdefault(k, rec.ref)
        return self._by_code.get(key)


def _split(item: Any) -> tuple[Any, str | None]:
    """(source, relation) of one `derived_from` item."""
    if isinstance(item, tuple):
        if len(item) != 2 or not isinstance(item[1], str):
            raise PublishError(
                f"derived_from pairs are (dataset or at:// URI, relation), got {item!r}"
            )
        return item[0], item[1]
    return item, None


def _iter_sources(derived_from: Any) -> Iterator[Any]:
    if isinstance(derived_from, str | Dataset | tuple):
        yield derived_from  # one source given bare
    else:
        yield from derived_from


def derivation_entries(
    derived_from: Any, fetch: FetchRecord, own_lenses: Callable[[], Iterable[Record]]
) -> list[dict[str, Any]]:
    """The record's `derivedFrom` list from what `publish_dataset(derived_from=...)` got.

    Items are a `Dataset` loaded by URI (it knows its URI and CID), an at:// URI (a
    `RecordRef` carries its CID; a plain string is fetched to pin it), or a pair
    `(dataset or URI, relation)`. The relation defaults to `converted` for a dataset seen
    through a lens and `other` otherwise. Every source must be an io.atdata.dataset record.
    """
    lenses = _LensRefs(own_lenses)
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for item in _iter_sources(derived_from):
        source, relation = _split(item)
        lens_ref: RecordRef | None = None
        cid: str | None = None
        if isinstance(source, Dataset):
            if not source.uri:
                raise PublishError(
                    f"{source!r} has no at:// URI (it was not loaded from one): "
                    "derived_from takes published datasets"
                )
            uri, cid = source.uri, source.cid
            if source.lens is not None:
                relation = relation or "converted"
                lens_ref = lenses.ref(source.lens)
        elif isinstance(source, str):
            uri = str.__str__(source)
            cid = source.cid if isinstance(source, RecordRef) else None
        else:
            raise PublishError(
                "derived_from takes Datasets, at:// URIs or (source, relation) pairs, "
                f"not {type(source).__name__}"
            )
        relation = relation or "other"
        if relation not in RELATIONS:
            raise PublishError(
                f"unknown lineage relation {relation!r}: use one of {', '.join(RELATIONS)}"
            )
        if not uri.startswith("at://"):
            raise PublishError(f"derived_from needs at:// URIs of datasets, got {uri!r}")
        if cid is None or f"/{DATASET}/" not in uri:
            rec = fetch(uri)
            if rec.value.get("$type", DATASET) != DATASET:
                raise PublishError(f"derived_from: {uri} is not an {DATASET} record")
            uri, cid = rec.uri, rec.cid
        if uri in seen:
            raise PublishError(f"derived_from names {uri} twice")
        seen.add(uri)
        dataset: StrongRef = {"uri": uri, "cid": cid}
        entry: dict[str, Any] = {"dataset": dataset, "relation": relation}
        if lens_ref is not None:
            entry["lens"] = lens_ref.strong_ref()
        out.append(entry)
    return out
