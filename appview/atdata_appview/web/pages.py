"""The server-rendered pages: search (`/`), one dataset (`/datasets/{did}/{rkey}`) and one
entry of the peer network (`/entries/{did}/{rkey}`, a `science.alt.dataset.entry`).

They read through the same query layer as XRPC (`db.search_datasets`, `db.queries`), so the
page shows exactly what the API answers. Every value that comes from a record is untrusted and
goes through `_html.h` (or `render`, which escapes); a Content-Security-Policy with a
per-response nonce limits the page to its own inline style and script as a second line.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from aiohttp import web
from atdata.display import dtype_text, human_bytes, shape_text, type_text
from atdata.errors import AtdataError, LexiconError
from atdata.lexicon import validate_params
from atdata.peer import own_schema, storage_kind
from atdata.records import DATASET, PEER_ENTRY

from ..db import BadCursor, SearchParams, Store, peer_queries, queries, search_datasets
from ..db.lineage import get_lineage
from ..db.models import PEER_FAMILY
from ..xrpc import CONTEXT
from ._html import Markup, attr_url, join, render
from .cards import BlobCards, render_card
from .style import CSS, SCRIPT

SEARCH_NSID = "io.atdata.searchDatasets"
GET_DATASET_NSID = "io.atdata.getDataset"
PAGE_SIZE = 20
DESCRIPTION_PREVIEW = 280
DATASET_COLLECTION = DATASET
#: Derivation steps the dataset page shows each way (getLineage serves up to 10).
PAGE_LINEAGE_DEPTH = 3
_BLOB_CARDS = BlobCards()


#: Page path prefix of each collection whose records have a page.
PAGE_PREFIX = {DATASET: "/datasets", PEER_ENTRY: "/entries"}
#: The badge naming where a dataset came from, by its lexicon family.
FAMILY_BADGES = {
    "io.atdata": "io.atdata",
    "science.alt.dataset": "science.alt.dataset · atdata 0.5-0.7 network",
}


def dataset_path(uri: str) -> str:
    """Page path of a dataset at-uri (`at://did/io.atdata.dataset/rkey`, or a peer entry's
    `at://did/science.alt.dataset.entry/rkey`)."""
    did, _, rest = uri.removeprefix("at://").partition("/")
    collection, _, rkey = rest.partition("/")
    prefix = PAGE_PREFIX.get(collection, "/datasets")
    return f"{prefix}/{quote(did, safe=':')}/{quote(rkey, safe='')}"


def _badge(family: Any) -> Markup:
    if not family:
        return Markup("")
    return render(
        " <span class='badge family-{cls}' title='record family'>{text}</span>",
        cls=str(family).replace(".", "-"),
        text=FAMILY_BADGES.get(str(family), str(family)),
    )


# -- layout -----------------------------------------------------------------------------------


def _page(title: str, body: Markup, nonce: str, status: int = 200) -> web.Response:
    doc = render(
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width, initial-scale=1'>"
        "<title>{title} · atdata</title><style nonce='{nonce}'>{css}</style></head>"
        "<body><header><a href='/'>atdata</a><span>federated ML datasets on the AT Protocol"
        "</span></header><main>{body}</main><script nonce='{nonce}'>{script}</script>"
        "</body></html>",
        title=title,
        nonce=nonce,
        css=Markup(CSS),
        body=body,
        script=Markup(SCRIPT),
    )
    csp = (
        f"default-src 'none'; style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; "
        "img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    )
    return web.Response(
        text=doc,
        status=status,
        content_type="text/html",
        charset="utf-8",
        headers={
            "Content-Security-Policy": csp,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        },
    )


def _nonce() -> str:
    return secrets.token_urlsafe(16)


def _search_form(
    q: str, tags: Sequence[str], license: str | None, family: str | None = None
) -> Markup:
    hidden = join(render("<input type=hidden name=tag value='{t}'>", t=t) for t in tags)
    if license:
        hidden = Markup(hidden + render("<input type=hidden name=license value='{v}'>", v=license))
    if family:
        hidden = Markup(hidden + render("<input type=hidden name=family value='{v}'>", v=family))
    return render(
        "<form class=search method=get action='/' role=search>"
        "<input type=search name=q value='{q}' placeholder='Search datasets: names, "
        "descriptions, tags, field names' aria-label='Search datasets' autofocus>"
        "{hidden}<button type=submit>Search</button></form>",
        q=q,
        hidden=hidden,
    )


# -- formatting -------------------------------------------------------------------------------


def _count(n: Any) -> str:
    return f"{n:,}" if isinstance(n, int) else "?"


def _author(d: Mapping[str, Any]) -> str:
    return d.get("handle") or d.get("did") or "?"


def load_snippet(uri: str, splits: Sequence[str], ragged: Sequence[str] = ()) -> str:
    """What a user pastes into a training script (literals via json.dumps: a valid Python str).

    ``ragged``: NDArray fields whose shape is not fixed; they do not stack into a batch array,
    so the snippet says how to read them instead of promising a batch dimension."""
    split = "train" if "train" in splits else (splits[0] if splits else None)
    args = json.dumps(uri) + (f", split={json.dumps(split)}" if split else "")
    if ragged:
        first = ragged[0]
        note = (
            f"    # {', '.join(ragged)}: ragged, so not stacked: read them per sample,\n"
            f"    # e.g. [s.{first} for s in batch.samples]; fixed-shape NDArray fields have\n"
            "    # a leading batch dimension\n"
            "    ...\n"
        )
    else:
        note = "    ...  # NDArray fields arrive stacked: batch.<field> has a leading batch dimension\n"
    return (
        "import atdata\n\n"
        f"ds = atdata.load_dataset({args})\n"
        "for batch in ds.ordered(batch_size=32):\n" + note
    )


def ragged_fields(dataset: Mapping[str, Any]) -> list[str]:
    """NDArray fields of the dataset's schema declared ragged (a ``None`` dimension, written
    -1): their arrays differ in shape from sample to sample, so a batch cannot stack them."""
    record = (dataset.get("schema") or {}).get("record")
    if not isinstance(record, Mapping):
        return []
    out = []
    for f in record.get("fields") or []:
        t = f.get("type") if isinstance(f, Mapping) else None
        if not isinstance(t, Mapping) or t.get("kind") != "ndarray":
            continue
        shape = t.get("shape")
        ragged = isinstance(shape, list) and any(type(d) is not int or d < 0 for d in shape)
        if ragged and isinstance(f.get("name"), str) and f["name"].isidentifier():
            out.append(f["name"])
    return out


# -- search -----------------------------------------------------------------------------------


def _facet_list(
    title: str,
    counts: Mapping[str, Any],
    active: set[str],
    link: Any,
) -> Markup:
    if not counts and not active:
        return Markup("")
    names = list(counts) + sorted(active - set(counts))
    items = join(
        render(
            "<li><a class='{cls}' href='{href}'><span>{name}</span><span>{n}</span></a></li>",
            cls="on" if name in active else "",
            href=link(name),
            name=name,
            n=counts.get(name, ""),
        )
        for name in names
    )
    return render("<h3>{title}</h3><ul>{items}</ul>", title=title, items=items)


def _version_text(d: Mapping[str, Any]) -> str:
    """`` · version 1.2.0 (3 versions)`` for a search result."""
    if not d.get("version"):
        return ""
    n = d.get("versions") or 1
    return f" · version {d['version']}" + (f" ({n} versions)" if n > 1 else "")


def _card(d: Mapping[str, Any]) -> Markup:
    description = d.get("description") or ""
    if len(description) > DESCRIPTION_PREVIEW:
        description = description[:DESCRIPTION_PREVIEW].rstrip() + "…"
    schema = d.get("schema") or {}
    schema_text = (
        f"{schema.get('name')} {schema.get('version') or ''}".strip() if schema.get("name") else ""
    )
    tags = join(render("<span class=tag>{t}</span>", t=t) for t in d.get("tags") or [])
    return render(
        "<article class=card><h2><a href='{href}'>{name}</a>{badge}</h2>"
        "<div class=meta>by {author}{version} · {samples} samples · {size}{license}{schema}</div>"
        "<p>{description}</p><div>{tags}</div><div class='meta uri'>{uri}</div></article>",
        href=dataset_path(str(d.get("uri", ""))),
        name=d.get("name") or "(unnamed)",
        badge=_badge(d.get("family")) if d.get("family") != "io.atdata" else "",
        author=_author(d),
        version=_version_text(d) if d.get("family") != "science.alt.dataset" else "",
        samples=_count(d.get("samples")),
        size=human_bytes(d.get("bytes")),
        license=f" · {d['license']}" if d.get("license") else "",
        schema=f" · schema {schema_text}" if schema_text else "",
        description=description,
        tags=tags,
        uri=d.get("uri", ""),
    )


async def index(request: web.Request) -> web.Response:
    """`/`: the search box, facets and result cards (a GET form: every search is a plain URL)."""
    store: Store = request.app[CONTEXT].store
    raw: dict[str, str | list[str]] = {}
    for key in ("q", "tag", "license", "sort", "cursor", "family"):
        values = [v for v in request.query.getall(key, []) if v.strip()]
        if values:
            raw[key] = values if key == "tag" else values[0]
    q = str(raw.get("q", "")).strip()
    nonce = _nonce()
    try:
        params = validate_params(SEARCH_NSID, raw)
        tags = list(dict.fromkeys(t.strip().lower() for t in params.get("tag", [])))
        license = params.get("license")
        family = params.get("family")
        sort = params.get("sort") or ("relevance" if q else "created")
        page = await store.read(
            search_datasets,
            SearchParams(
                q=q or None,
                tags=tags,
                license=license,
                sort=sort,
                limit=PAGE_SIZE,
                cursor=params.get("cursor"),
                family=family,
            ),
        )
    except (LexiconError, BadCursor) as exc:
        tags = [str(t) for t in raw.get("tag", [])] if isinstance(raw.get("tag"), list) else []
        body = Markup(
            _search_form(q, tags, None)
            + render("<p class=error>Bad search: {msg}</p>", msg=str(exc))
        )
        return _page("Bad search", body, nonce, status=400)

    def url(**changes: Any) -> Markup:
        state: dict[str, Any] = {
            "q": q,
            "tag": tags,
            "license": license,
            "sort": params.get("sort"),
            "family": family,
        }
        state.update(changes)
        pairs = [(k, v) for k, v in state.items() if not isinstance(v, list)]
        pairs += [("tag", t) for t in state["tag"]]
        return attr_url("/", pairs)

    def toggle_tag(tag: str) -> Markup:
        return url(tag=[t for t in tags if t != tag] if tag in tags else [*tags, tag])

    def toggle_license(name: str) -> Markup:
        return url(license=None if name == license else name)

    def toggle_family(name: str) -> Markup:
        return url(family=None if name == family else name)

    facets = page.facets or {}
    side = Markup(
        _facet_list("Tags", facets.get("tags", {}), set(tags), toggle_tag)
        + _facet_list(
            "Licenses", facets.get("licenses", {}), {license} if license else set(), toggle_license
        )
        + _facet_list(
            "Family",
            dict.fromkeys(FAMILY_BADGES, ""),
            {family} if family else set(),
            toggle_family,
        )
    )
    if page.datasets:
        results = join(_card(d) for d in page.datasets)
    else:
        results = render("<p class=empty>No datasets match{what}.</p>", what=f" “{q}”" if q else "")
    more = (
        render(
            "<nav class=pages><a href='{href}'>Next page →</a></nav>", href=url(cursor=page.cursor)
        )
        if page.cursor
        else Markup("")
    )
    heading = f"Results for “{q}”" if q else "Recently published datasets"
    filters = ", ".join(
        [
            *(f"tag {t}" for t in tags),
            *([f"license {license}"] if license else []),
            *([f"family {family}"] if family else []),
        ]
    )
    body = render(
        "{form}<div class=layout><aside>{side}</aside><section><h1>{heading}</h1>"
        "<p class=meta>{filters}</p>{results}{more}</section></div>",
        form=_search_form(q, tags, license, family),
        side=side,
        heading=heading,
        filters=f"Filtered by {filters}" if filters else "",
        results=results,
        more=more,
    )
    return _page(q or "Search", body, nonce)


# -- dataset ----------------------------------------------------------------------------------


def _schema_table(dataset: Mapping[str, Any]) -> Markup:
    schema = dataset.get("schema") or {}
    record = schema.get("record")
    if not isinstance(record, Mapping):
        return render(
            "<p class=empty>The schema {uri} is not in this index yet.</p>",
            uri=schema.get("uri", "(none)"),
        )
    observed = {
        a.get("field"): a
        for a in (dataset.get("record") or {}).get("arrays") or []
        if isinstance(a, Mapping)
    }
    rows = []
    for f in record.get("fields") or []:
        if not isinstance(f, Mapping):
            continue
        t = f.get("type")
        if not isinstance(t, Mapping):
            t = {}
        seen = observed.get(f.get("name"), {})
        dtype, shape = dtype_text(t.get("dtype")), shape_text(t.get("shape"))
        if t.get("kind") == "ndarray" and not dtype and seen.get("dtype"):
            dtype = f"{dtype_text(seen['dtype'])} (observed)"
        if t.get("kind") == "ndarray" and not shape and isinstance(seen.get("shape"), list):
            shape = f"{shape_text(seen['shape'])} (observed)"
        rows.append(
            render(
                "<tr><td><code>{name}</code></td><td>{type}</td><td>{dtype}</td>"
                "<td>{shape}</td></tr>",
                name=f.get("name"),
                type=type_text(t),
                dtype=dtype,
                shape=shape,
            )
        )
    return render(
        "<p class=meta>{name} {version} · <span class=uri>{uri}</span></p><table class=schema>"
        "<thead><tr><th>field</th><th>type</th><th>dtype</th><th>shape</th></tr></thead>"
        "<tbody>{rows}</tbody></table>",
        name=record.get("name", ""),
        version=record.get("version", ""),
        uri=schema.get("uri", ""),
        rows=join(rows),
    )


def _splits(record: Mapping[str, Any]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for split in record.get("splits") or []:
        if isinstance(split, Mapping):
            for i in split.get("shards") or []:
                if isinstance(i, int):
                    out.setdefault(i, []).append(str(split.get("name")))
    return out


def _shards_table(dataset: Mapping[str, Any]) -> Markup:
    shards = dataset.get("shards") or []
    if not shards:
        return Markup("<p class=empty>No shards listed.</p>")
    by_index = _splits(dataset.get("record") or {})
    rows = join(
        render(
            "<tr><td>{i}</td><td>{split}</td><td class=num>{samples}</td><td class=num>{size}</td>"
            "<td class=hash>{sha}</td><td class=hash>{where}</td></tr>",
            i=i,
            split=", ".join(by_index.get(i, [])),
            samples=_count(s.get("samples")),
            size=human_bytes(s.get("size")),
            sha=s.get("sha256", ""),
            where=s.get("url") or (f"blob {s['blob']}" if s.get("blob") else ""),
        )
        for i, s in enumerate(shards)
    )
    return render(
        "<table class=shards><thead><tr><th>#</th><th>split</th><th>samples</th><th>size</th>"
        "<th>sha256</th><th>location</th></tr></thead><tbody>{rows}</tbody></table>",
        rows=rows,
    )


def _versions_table(dataset: Mapping[str, Any]) -> Markup:
    """Every version of this dataset's name, newest first; the one shown is marked."""
    shown = dataset.get("uri")
    rows = join(
        render(
            "<tr{cls}><td>{version}{mark}</td><td>{created}</td><td class=num>{samples}</td>"
            "<td class=hash>{cid}</td><td class=hash><a href='{href}'>{uri}</a></td></tr>",
            cls=Markup(" class=shown") if v.get("uri") == shown else "",
            version=v.get("version", ""),
            mark=" (shown)" if v.get("uri") == shown else "",
            created=v.get("createdAt", ""),
            samples=_count(v.get("samples")),
            cid=v.get("cid", ""),
            href=dataset_path(str(v.get("uri", ""))),
            uri=v.get("uri", ""),
        )
        for v in dataset.get("versions") or []
        if isinstance(v, Mapping)
    )
    return render(
        "<table class=versions><thead><tr><th>version</th><th>published</th><th>samples</th>"
        "<th>record CID</th><th>at:// URI</th></tr></thead><tbody>{rows}</tbody></table>",
        rows=rows,
    )


def _lens_load_note(lens: Mapping[str, Any]) -> Markup:
    """How to import a lens's code: a peer lens pins no hash of it, so trust is asked for."""
    trust = '"unpinned"' if lens.get("family") == PEER_FAMILY else "True"
    return render(
        "<div class=meta><code>client.load_lens(&quot;{uri}&quot;, trust={trust})</code></div>",
        uri=str(lens.get("uri", "")),
        trust=trust,
    )


def _lens_list(items: Sequence[Mapping[str, Any]], direction: str) -> Markup:
    if not items:
        return render("<p class=empty>No lenses {d} this schema.</p>", d=direction)
    return render(
        "<ul class=lenses>{items}</ul>",
        items=join(
            render(
                "<li><b>{name}</b>{badge} {description}<div class='meta uri'>{uri}<br>"
                "{source} → {target}</div>{load}</li>",
                name=x.get("name") or "lens",
                badge=_badge(x.get("family")),
                load=_lens_load_note(x),
                description=x.get("description") or "",
                uri=x.get("uri", ""),
                source=x.get("source", "?"),
                target=x.get("target", "?"),
            )
            for x in items
            if isinstance(x, Mapping)
        ),
    )


async def _card_section(found: Mapping[str, Any]) -> Markup:
    """The rendered card (inline, or the blob fetched from the author's PDS), or nothing."""
    record = found.get("record") or {}
    text = record.get("card")
    if not isinstance(text, str) and record.get("cardBlob") is not None:
        author = found.get("author") or {}
        try:
            text = await _BLOB_CARDS.text(record, str(found.get("did", "")), author.get("pds"))
        except AtdataError as exc:
            return render(
                "<h2>Card</h2><p class=empty>The card could not be fetched from the author's "
                "PDS: {why}</p>",
                why=str(exc),
            )
    if not isinstance(text, str) or not text.strip():
        return Markup("")
    return render("<h2>Card</h2><article class='card dataset-card'>{html}</article>",
                  html=render_card(text))  # fmt: skip


def _lineage_list(items: Sequence[Mapping[str, Any]], empty: str) -> Markup:
    if not items:
        return render("<p class=empty>{empty}</p>", empty=empty)
    rows = join(
        render(
            "<tr><td>{depth}</td><td>{relation}</td><td>{name}</td><td>{author}</td>"
            "<td>{version}</td><td class=hash>{uri}</td><td class=hash>{lens}</td></tr>",
            depth=x.get("depth", ""),
            relation=x.get("relation", ""),
            name=(
                render(
                    "<a href='{href}'>{name}</a>",
                    href=dataset_path(str(x.get("uri", ""))),
                    name=x.get("name") or "(unnamed)",
                )
                if x.get("indexed")
                else "(not in this index)"
            ),
            author=x.get("handle") or "",
            version=x.get("version") or "",
            uri=x.get("uri", ""),
            lens=x.get("lens") or "",
        )
        for x in items
        if isinstance(x, Mapping)
    )
    return render(
        "<table class=lineage><thead><tr><th>steps</th><th>relation</th><th>dataset</th>"
        "<th>author</th><th>version</th><th>at:// URI</th><th>lens</th></tr></thead>"
        "<tbody>{rows}</tbody></table>",
        rows=rows,
    )


# -- peer entries -----------------------------------------------------------------------------

STORAGE_KINDS = {
    "blobs": "blobs in the author's repository (fetched with com.atproto.sync.getBlob)",
    "http": "HTTP(S) URLs",
    "s3": "an S3 bucket",
    "external": "external URLs (the older storageExternal form)",
}


def _storage_section(record: Mapping[str, Any]) -> Markup:
    """Where the entry's shards are, as its ``storage`` says."""
    storage = record.get("storage")
    if not isinstance(storage, Mapping):
        return Markup("<p class=empty>The record names no storage.</p>")
    kind = storage_kind(storage)
    detail = ""
    if kind == "s3":
        endpoint = storage.get("endpoint") or "AWS"
        region = f", region {storage['region']}" if storage.get("region") else ""
        detail = f" {storage.get('bucket', '?')} at {endpoint}{region}"
    return render(
        "<p>Stored as {what}{detail} <span class=meta>({kind})</span></p>{shards}",
        what=STORAGE_KINDS.get(kind or "", "an unknown kind of storage"),
        detail=detail,
        kind=storage.get("$type", "?"),
        shards=_peer_shards_table(storage),
    )


def _checksum_text(checksum: Any) -> str:
    if not isinstance(checksum, Mapping):
        return ""
    algorithm = checksum.get("algorithm")
    if algorithm == "none":
        return "none (not verified)"
    return f"{algorithm}:{checksum.get('digest', '')}"


def _peer_shards(storage: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(location, checksum) of each shard the storage lists."""
    kind = storage_kind(storage)
    if kind == "external":
        return [(str(u), "") for u in storage.get("urls") or []]
    out = []
    for item in storage.get("blobs" if kind == "blobs" else "shards") or []:
        if not isinstance(item, Mapping):
            continue
        if kind == "blobs":
            blob = item.get("blob", item)
            ref = blob.get("ref") if isinstance(blob, Mapping) else None
            where = f"blob {ref.get('$link') if isinstance(ref, Mapping) else ref}"
        elif kind == "s3":
            where = f"s3://{storage.get('bucket', '?')}/{item.get('key', '?')}"
        else:
            where = str(item.get("url", "?"))
        out.append((where, _checksum_text(item.get("checksum"))))
    return out


def _peer_shards_table(storage: Mapping[str, Any]) -> Markup:
    shards = _peer_shards(storage)
    if not shards:
        return Markup("<p class=empty>No shards listed.</p>")
    rows = join(
        render(
            "<tr><td>{i}</td><td class=hash>{where}</td><td class=hash>{checksum}</td></tr>",
            i=i,
            where=where,
            checksum=checksum,
        )
        for i, (where, checksum) in enumerate(shards)
    )
    return render(
        "<table class=shards><thead><tr><th>#</th><th>location</th><th>checksum</th></tr>"
        "</thead><tbody>{rows}</tbody></table>",
        rows=rows,
    )


def _peer_schema_table(found: Mapping[str, Any]) -> Markup:
    """The entry's schema, its JSON Schema read as our fields (NDArray fields recognised by
    the ndarray shim's ``$ref``), shown with the table our schemas get."""
    schema = dict(found.get("schema") or {})
    record = schema.get("record")
    if isinstance(record, Mapping):
        try:
            schema["record"] = own_schema(dict(record))
        except (AtdataError, KeyError, TypeError, ValueError) as exc:
            return render(
                "<p class=empty>The schema {uri} cannot be read: {why}</p>",
                uri=schema.get("uri", ""),
                why=str(exc),
            )
    return _schema_table({**found, "schema": schema})


def _labels_table(labels: Sequence[Mapping[str, Any]]) -> Markup:
    if not labels:
        return Markup("<p class=empty>No label names this entry.</p>")
    rows = join(
        render(
            "<tr><td><b>{name}</b>{latest}</td><td>{version}</td><td>{created}</td>"
            "<td>{description}</td><td class=hash>{uri}</td></tr>",
            name=x.get("name", ""),
            latest=" (latest)" if x.get("latest") else "",
            version=x.get("version", ""),
            created=x.get("createdAt", ""),
            description=x.get("description", ""),
            uri=x.get("uri", ""),
        )
        for x in labels
    )
    return render(
        "<p class=meta>A label names a version of an entry; the newest label of a name "
        "(by its creation time) is that name's latest.</p><table class=labels><thead><tr>"
        "<th>label</th><th>version</th><th>created</th><th>description</th><th>at:// URI</th>"
        "</tr></thead><tbody>{rows}</tbody></table>",
        rows=rows,
    )


def _entry_body(found: Mapping[str, Any], labels: Sequence[Mapping[str, Any]]) -> Markup:
    """A ``science.alt.dataset.entry``: what it says, its schema, storage, labels and how to
    load it with this SDK."""
    uri = str(found.get("uri", ""))
    record = found.get("record") or {}
    return render(
        "{form}<article class=card><h1 class=name>{name}{badge}</h1>"
        "<div class=meta>by {author} · {samples} samples · {size}{license} · published {created}"
        "</div><p class=description>{description}</p><div>{tags}</div>"
        "<p class='uri at-uri'>{uri}</p><p class=meta>record CID <code>{cid}</code></p></article>"
        "<h2>Load it</h2><div class=snippet><button type=button>copy</button>"
        "<pre id=load-snippet>{snippet}</pre></div>"
        "<p class=meta>or from a shell: <code>atdata load {uri} --head 5</code> · metadata for "
        "other tools: <a href='{croissant}'>Croissant JSON-LD</a></p>"
        "<h2>Labels</h2>{labels}<h2>Schema</h2>{schema}<h2>Storage</h2>{storage}"
        "<h2>Lenses from this schema</h2>{lenses_from}<h2>Lenses to this schema</h2>{lenses_to}",
        **_page_values(found, uri),
        snippet=load_snippet(uri, []),
        croissant=dataset_path(uri) + "/croissant.json",
        labels=_labels_table(labels),
        schema=_peer_schema_table(found),
        storage=_storage_section(record if isinstance(record, Mapping) else {}),
    )


def _page_values(found: Mapping[str, Any], uri: str) -> dict[str, Any]:
    """What the pages of both families show alike: the heading and meta line's values, the
    tags and the lenses from and to the schema."""
    lenses = found.get("lenses") or {}
    return {
        "form": _search_form("", [], None),
        "name": found.get("name") or "(unnamed)",
        "badge": _badge(found.get("family")),
        "author": _author(found),
        "samples": _count(found.get("samples")),
        "size": human_bytes(found.get("bytes")),
        "license": f" · {found['license']}" if found.get("license") else "",
        "created": found.get("createdAt", "?"),
        "description": found.get("description") or "",
        "tags": join(render("<span class=tag>{t}</span>", t=t) for t in found.get("tags") or []),
        "uri": uri,
        "cid": found.get("cid", ""),
        "lenses_from": _lens_list(lenses.get("from") or [], "from"),
        "lenses_to": _lens_list(lenses.get("to") or [], "to"),
    }


async def dataset(request: web.Request) -> web.Response:
    """One dataset: description, schema table, shards, lenses, at:// URI and a load snippet."""
    return await _record_page(request, DATASET_COLLECTION)


async def entry(request: web.Request) -> web.Response:
    """One entry of the peer network: the same page, with its storage and labels."""
    return await _record_page(request, PEER_ENTRY)


async def _record_page(request: web.Request, collection: str) -> web.Response:
    store: Store = request.app[CONTEXT].store
    did, rkey = request.match_info["did"], request.match_info["rkey"]
    uri = f"at://{did}/{collection}/{rkey}"
    nonce = _nonce()
    try:  # the same check getDataset's uri gets (an at-uri, no NUL) before the database
        validate_params(GET_DATASET_NSID, {"uri": uri})
    except LexiconError as exc:
        body = Markup(
            _search_form("", [], None)
            + render("<p class=error>Bad dataset address: {msg}</p>", msg=str(exc))
        )
        return _page("Bad dataset address", body, nonce, status=400)
    found = await store.read(queries.get_dataset, uri)
    if found is None:
        body = Markup(
            _search_form("", [], None)
            + render("<p class=error>No dataset {uri} in this index.</p>", uri=uri)
        )
        return _page("Not found", body, nonce, status=404)
    if collection == PEER_ENTRY:
        labels = await store.read(peer_queries.labels_of, uri)
        return _page(str(found.get("name") or "Entry"), _entry_body(found, labels), nonce)
    lineage = await store.read(get_lineage, uri, PAGE_LINEAGE_DEPTH) or {}
    card = await _card_section(found)
    record = found.get("record") or {}
    split_names = [str(s.get("name")) for s in record.get("splits") or [] if isinstance(s, Mapping)]
    body = render(
        "{form}<article class=card><h1 class=name>{name}{badge}</h1>"
        "<div class=meta>by {author} · version {version}{newest} · {samples} samples · {size}"
        " · {nshards} shards{license} · published {created}</div><p class=description>{description}</p><div>{tags}</div>"
        "<p class='uri at-uri'>{uri}</p><p class=meta>record CID <code>{cid}</code>{splits}</p>"
        "</article>{card}"
        "<h2>Load it</h2><div class=snippet><button type=button>copy</button>"
        "<pre id=load-snippet>{snippet}</pre></div>"
        "<p class=meta>or from a shell: <code>atdata load {uri} --head 5</code> · metadata for "
        "other tools: <a href='{croissant}'>Croissant JSON-LD</a></p>"
        "<h2>Versions</h2>{versions}<h2>Schema</h2>{schema}<h2>Shards</h2>{shards}"
        "<h2>Lenses from this schema</h2>{lenses_from}<h2>Lenses to this schema</h2>{lenses_to}"
        "<h2>Derived from</h2>{ancestors}<h2>Derived from this dataset</h2>{descendants}",
        **_page_values(found, uri),
        version=found.get("version", ""),
        newest=" (newest)" if found.get("newest") else "",
        versions=_versions_table(found),
        nshards=len(found.get("shards") or []),
        splits=f" · splits: {', '.join(split_names)}" if split_names else "",
        snippet=load_snippet(uri, split_names, ragged_fields(found)),
        croissant=dataset_path(uri) + "/croissant.json",
        schema=_schema_table(found),
        shards=_shards_table(found),
        card=card,
        ancestors=_lineage_list(
            lineage.get("ancestors") or [], "Not derived from other datasets, as far as it says."
        ),
        descendants=_lineage_list(
            lineage.get("descendants") or [],
            "No dataset in this index says it was derived from this one.",
        ),
    )
    return _page(str(found.get("name") or "Dataset"), body, nonce)
