"""Engines and migrations: one place that knows SQLite from PostgreSQL connection details."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")


def default_db_url() -> str:
    """The embedded SQLite file used when no ``--db`` is given (under the user's data dir)."""
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    path = base / "atdata" / "appview.sqlite"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def normalize_url(url: str) -> str:
    """Accept plain ``postgresql://`` URLs and route them to the psycopg 3 driver."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def make_engine(url: str) -> Engine:
    """Create an engine tuned for the index: WAL + foreign keys on SQLite, a pool on both."""
    url = normalize_url(url)
    if make_url(url).get_backend_name() == "sqlite":
        database = make_url(url).database
        if not database or database == ":memory:":
            raise ValueError("the AppView needs a SQLite file, not an in-memory database")
        Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=8,
            max_overflow=8,
        )

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA cache_size=-65536")
            cur.execute("PRAGMA mmap_size=1073741824")
            cur.execute("PRAGMA temp_store=MEMORY")
            cur.close()

        return engine
    # Searches are small, latency-bound queries: parallel workers cost more to start (ms)
    # than they save, and they compete with ingest for the same cores.
    return create_engine(
        url,
        pool_size=8,
        max_overflow=8,
        pool_pre_ping=True,
        connect_args={"options": "-c max_parallel_workers_per_gather=0"},
    )


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema up to ``revision`` with the Alembic scripts shipped in this package."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
    log.info("index schema at %s", revision)
