"""`AppViewClient`: search and look up federated datasets through an atdata AppView (XRPC).

Results are `View` objects: read-only mappings with attribute access (``d.name``,
``d.created_at`` or ``d.createdAt``), so they print and serialise like the JSON they came from.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from ._http import Deadline, describe_http_error, read_body
from .errors import AppViewError, ResolutionError

__all__ = ["AppViewClient", "LensPath", "Page", "SearchResult", "View"]

ENV_URL = "ATDATA_APPVIEW"
DEFAULT_TIMEOUT = 30.0  # seconds for a whole query (a deadline, not a per-read timeout)
MAX_RESPONSE_BYTES = 64 * 1024 * 1024
_CAMEL = re.compile(r"_([a-z])")


def _wrap(value: Any) -> Any:
    if isinstance(value, Mapping) and not isinstance(value, View):
        return View(value)
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    return value


class View(Mapping[str, Any]):
    """A JSON object from the AppView with attribute access.

    A field the AppView omitted (absent optional value) reads as ``None``; snake_case names
    map to the camelCase keys of the wire format.
    """

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Any]) -> None:
        object.__setattr__(self, "_data", dict(data))

    def __getitem__(self, key: str) -> Any:
        return _wrap(self._data[key])

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        data = object.__getattribute__(self, "_data")
        if name in data:
            return _wrap(data[name])
        camel = _CAMEL.sub(lambda m: m.group(1).upper(), name)
        return _wrap(data.get(camel))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("AppView results are read-only")

    def __repr__(self) -> str:
        return f"View({self._data!r})"

    def to_dict(self) -> dict[str, Any]:
        return dict(self._data)


@dataclass(frozen=True, slots=True)
class SearchResult:
    """One page of `AppViewClient.search`: pass ``cursor`` back for the next page."""

    datasets: list[View]
    cursor: str | None
    facets: View


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a list query (schemas or lenses)."""

    items: list[View]
    cursor: str | None

    def __iter__(self) -> Iterator[View]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


LensPath = list[View]


class AppViewClient:
    """Client of one AppView. ``url`` defaults to ``$ATDATA_APPVIEW``.

    >>> av = AppViewClient("http://127.0.0.1:8080")          # doctest: +SKIP
    >>> hits = av.search("handwritten digits", tags=["vision"])  # doctest: +SKIP
    >>> hits.datasets[0].uri                                  # doctest: +SKIP
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        client: httpx.Client | None = None,
    ) -> None:
        url = url or os.environ.get(ENV_URL)
        if not url:
            raise AppViewError(f"no AppView URL: pass one or set ${ENV_URL}")
        if not url.startswith(("http://", "https://")):
            raise AppViewError(f"AppView URL must be http(s)://, got {url!r}")
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._own_client = client is None
        self._client = client or httpx.Client(timeout=timeout)

    # -- plumbing ----------------------------------------------------------------------------

    def close(self) -> None:
        if self._own_client:
            self._client.close()

    def __enter__(self) -> AppViewClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def query(self, nsid: str, **params: Any) -> dict[str, Any]:
        """Call any XRPC query; ``None`` params are left out, lists repeat the key."""
        items: list[tuple[str, str]] = []
        for key, value in params.items():
            if value is None:
                continue
            values = value if isinstance(value, list | tuple) else [value]
            items.extend((key, _param(v)) for v in values)
        url = f"{self.url}/xrpc/{nsid}"
        deadline = Deadline(self.timeout)
        try:
            with self._client.stream(
                "GET", url, params=tuple(items), timeout=deadline.timeout()
            ) as resp:
                status = resp.status_code
                raw = read_body(
                    resp,
                    url,
                    deadline=deadline,
                    max_bytes=MAX_RESPONSE_BYTES,
                    too_large=AppViewError,
                    too_slow=AppViewError,
                )
        except httpx.HTTPError as exc:
            raise AppViewError(
                f"AppView {self.url} unreachable: GET {url}: {describe_http_error(exc)}"
            ) from exc
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if status == 200:
            if not isinstance(body, dict):
                raise AppViewError(f"AppView {url} answered HTTP 200 without a JSON object")
            return body
        if isinstance(body, dict):
            error, message = body.get("error"), body.get("message")
        else:
            error, message = None, raw[:200].decode(errors="replace")
        text = f"{nsid}: {error or 'HTTP ' + str(status)}: {message or ''}".rstrip(": ")
        if status == 404:
            raise ResolutionError(text)
        raise AppViewError(text, status=status, error=error)

    # -- queries -----------------------------------------------------------------------------

    def search(
        self,
        q: str | None = None,
        tags: Sequence[str] | None = None,
        schema: str | None = None,
        author: str | None = None,
        license: str | None = None,
        min_samples: int | None = None,
        max_samples: int | None = None,
        sort: str = "relevance",
        limit: int = 25,
        cursor: str | None = None,
        name: str | None = None,
        all_versions: bool = False,
        family: str | None = None,
    ) -> SearchResult:
        """Full-text search (all words must match) with filters; see io.atdata.searchDatasets.

        One result per (author, name): its newest version, with ``versions`` (how many);
        ``all_versions=True`` lists every version. ``name`` matches a dataset name exactly.
        ``family`` keeps one record family: ``"io.atdata"``, or ``"science.alt.dataset"``
        (entries of the existing atdata network); each result's ``family`` says which."""
        body = self.query(
            "io.atdata.searchDatasets",
            q=q or None,
            tag=list(tags) if tags else None,
            schema=schema,
            author=author,
            license=license,
            minSamples=min_samples,
            maxSamples=max_samples,
            sort=sort,
            limit=limit,
            cursor=cursor,
            name=name,
            allVersions=True if all_versions else None,
            family=family,
        )
        return SearchResult(
            datasets=[View(d) for d in body.get("datasets", [])],
            cursor=body.get("cursor"),
            facets=View(body.get("facets") or {"tags": {}, "licenses": {}}),
        )

    def iter_search(self, q: str | None = None, **kwargs: Any) -> Iterator[View]:
        """Every match, following cursors page by page."""
        cursor = kwargs.pop("cursor", None)
        while True:
            page = self.search(q, cursor=cursor, **kwargs)
            yield from page.datasets
            if not page.cursor:
                return
            cursor = page.cursor

    def get_dataset(self, uri: str) -> View:
        """A dataset with its record, schema, author, shards and lenses (ResolutionError if
        the AppView does not hold it)."""
        return View(self.query("io.atdata.getDataset", uri=uri))

    def get_lineage(self, uri: str, depth: int = 3) -> View:
        """A dataset's lineage across PDSes: ``ancestors`` (what it was derived from) and
        ``descendants`` (what was derived from it), each item ``{uri, cid, name, handle,
        version, relation, depth}``, up to ``depth`` (at most 10) steps each way."""
        return View(self.query("io.atdata.getLineage", uri=uri, depth=depth))

    def list_schemas(
        self,
        name: str | None = None,
        author: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page:
        body = self.query(
            "io.atdata.listSchemas", name=name, author=author, limit=limit, cursor=cursor
        )
        return Page([View(s) for s in body.get("schemas", [])], body.get("cursor"))

    def get_schema(self, uri: str) -> View:
        return View(self.query("io.atdata.getSchema", uri=uri))

    def list_lenses(
        self,
        source: str | None = None,
        target: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page:
        body = self.query(
            "io.atdata.listLenses", source=source, target=target, limit=limit, cursor=cursor
        )
        return Page([View(x) for x in body.get("lenses", [])], body.get("cursor"))

    def find_lens_path(self, source: str, target: str) -> LensPath | None:
        """The shortest chain of lenses source -> target schema (``[]`` if equal, None if none)."""
        body = self.query("io.atdata.findLensPath", source=source, target=target)
        return [View(x) for x in body["path"]] if body.get("found") else None

    def describe(self) -> View:
        """Counts, followed hosts, cursors and lag (io.atdata.describeService)."""
        return View(self.query("io.atdata.describeService"))


def _param(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
