"""`/datasets/{did}/{rkey}/croissant.json`: the dataset's Croissant 1.1 JSON-LD, beside its page.

Built by `atdata.croissant` from the indexed dataset and schema records and the author's
handle and PDS, so it is the document `atdata export croissant` writes; `url` is this
AppView's dataset page. A dataset whose shard list is in a manifest blob gets no file objects
here (the index does not fetch manifests): `atdata export croissant` reads the manifest.
"""

from __future__ import annotations

from aiohttp import web
from atdata.croissant import Author, croissant_document
from atdata.errors import LexiconError
from atdata.lexicon import validate_params
from atdata.records import DATASET, Record

from ..db import Store, queries
from ..xrpc import CONTEXT
from .pages import dataset_path

__all__ = ["croissant_json"]

_HEADERS = {"X-Content-Type-Options": "nosniff", "Access-Control-Allow-Origin": "*"}


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=_HEADERS)


async def croissant_json(request: web.Request) -> web.Response:
    """The Croissant document of one indexed dataset (404 when the index has none)."""
    store: Store = request.app[CONTEXT].store
    did, rkey = request.match_info["did"], request.match_info["rkey"]
    uri = f"at://{did}/{DATASET}/{rkey}"
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
    try:
        doc = croissant_document(
            Record(uri, str(found.get("cid", "")), record),
            Record(str(schema.get("uri")), str(schema.get("cid")), schema_record),
            Author(did, author.get("handle"), author.get("pds")),
            page_url=page,
        )
    except (KeyError, TypeError, ValueError) as exc:  # a record the index kept but cannot map
        return _error(422, f"cannot describe {uri} in Croissant: {exc}")
    return web.json_response(doc, content_type="application/ld+json", headers=_HEADERS)
