"""`/datasets/{did}/{rkey}/croissant.json`: the dataset's Croissant 1.1 JSON-LD, beside its page
(and `/entries/{did}/{rkey}/croissant.json` for an entry of the science.alt.dataset network).

Built by `atdata.croissant` from the indexed dataset and schema records and the author's
handle and PDS, so it is the document `atdata export croissant` writes; `url` is this
AppView's dataset page. A dataset whose shard list is in a manifest blob gets no file objects
here (the index does not fetch manifests): `atdata export croissant` reads the manifest.
"""

from __future__ import annotations

from aiohttp import web
from atdata.croissant import Author, croissant_document, peer_croissant_document
from atdata.errors import AtdataError, LexiconError
from atdata.lexicon import validate_params
from atdata.records import DATASET, PEER_ENTRY, Record

from ..db import Store, peer_queries, queries
from ..xrpc import CONTEXT
from .pages import dataset_path

__all__ = ["croissant_json", "entry_croissant_json"]

_HEADERS = {"X-Content-Type-Options": "nosniff", "Access-Control-Allow-Origin": "*"}


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=_HEADERS)


async def croissant_json(request: web.Request) -> web.Response:
    """The Croissant document of one indexed dataset (404 when the index has none)."""
    return await _croissant(request, DATASET)


async def entry_croissant_json(request: web.Request) -> web.Response:
    """The Croissant document of one indexed ``science.alt.dataset.entry``: its version is
    the one its author's newest label naming it gives."""
    return await _croissant(request, PEER_ENTRY)


async def _croissant(request: web.Request, collection: str) -> web.Response:
    store: Store = request.app[CONTEXT].store
    did, rkey = request.match_info["did"], request.match_info["rkey"]
    uri = f"at://{did}/{collection}/{rkey}"
    try:
        validate_params("io.atdata.getDataset", {"uri": uri})
    except LexiconError as exc:
        return _error(400, f"bad dataset address: {exc}")
    found = await store.read(queries.get_dataset, uri)
    if found is None:
        return _error(404, f"no dataset {uri} in this index")
    schema = found.get("schema") or {}
    record, schema_record = found.get("record"), schema.get("record")
    if not isinstance(record, dict) or not isinstance(schema_record, dict):
        return _error(404, f"the index does not hold the records of {uri} and its schema")
    author = found.get("author") or {}
    page = f"{request.scheme}://{request.host}{dataset_path(uri)}"
    dataset = Record(uri, str(found.get("cid", "")), record)
    schema_rec = Record(str(schema.get("uri")), str(schema.get("cid")), schema_record)
    by = Author(did, author.get("handle"), author.get("pds"))
    try:
        if collection == PEER_ENTRY:
            labels = await store.read(peer_queries.labels_of, uri)
            version = next(
                (x.get("version") for x in labels if x.get("did") == did and x.get("version")),
                None,
            )
            doc = peer_croissant_document(dataset, schema_rec, by, version=version, page_url=page)
        else:
            doc = croissant_document(dataset, schema_rec, by, page_url=page)
    except (AtdataError, KeyError, TypeError, ValueError) as exc:  # kept but cannot be mapped
        return _error(422, f"cannot describe {uri} in Croissant: {exc}")
    return web.json_response(doc, content_type="application/ld+json", headers=_HEADERS)
