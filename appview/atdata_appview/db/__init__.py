"""The AppView's index: SQL models, migrations, the ingest write API and the query layer."""

from __future__ import annotations

from .engine import default_db_url, make_engine, migrate
from .search import BadCursor, SearchPage, SearchParams, search_datasets
from .store import RepoInfo, Store, Transaction

__all__ = [
    "BadCursor",
    "RepoInfo",
    "SearchPage",
    "SearchParams",
    "Store",
    "Transaction",
    "default_db_url",
    "make_engine",
    "migrate",
    "search_datasets",
]
