"""The AppView's web page: server-rendered search and dataset pages, no build step.

`add_routes(app)` is called by `atdata_appview.app.create_app`; the pages read the same store
and query layer as the XRPC methods.
"""

from __future__ import annotations

from aiohttp import web

from .croissant import croissant_json, entry_croissant_json
from .pages import dataset, dataset_path, entry, index

__all__ = ["add_routes", "dataset_path"]


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", index, name="web-index")
    app.router.add_get("/datasets/{did}/{rkey}", dataset, name="web-dataset")
    app.router.add_get("/entries/{did}/{rkey}", entry, name="web-entry")
    app.router.add_get(
        "/datasets/{did}/{rkey}/croissant.json", croissant_json, name="web-croissant"
    )
    app.router.add_get(
        "/entries/{did}/{rkey}/croissant.json", entry_croissant_json, name="web-entry-croissant"
    )
