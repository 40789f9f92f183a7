"""`atdata appview serve`: run the AppView (index + XRPC + web page) in the foreground."""

from __future__ import annotations

import logging
from typing import Any

import typer

from . import CliError

__all__ = ["appview_app", "register"]

appview_app = typer.Typer(
    name="appview",
    help=(
        "The AppView: follows firehoses, verifies and indexes io.atdata records, answers "
        "searches over XRPC.\n\n"
        "Examples:\n\n"
        "  atdata appview serve                                   # public relay, embedded SQLite\n\n"
        "  atdata appview serve --firehose ws://127.0.0.1:2583 --firehose ws://127.0.0.1:2584 \\\n"
        "      --plc http://127.0.0.1:2582 --port 8080\n\n"
        "  atdata appview serve --db postgresql://appview@db/appview"
    ),
    no_args_is_help=True,
)


def _setting(flag: str, envvar: str, help: str) -> Any:
    """An option of `serve` that falls back to its ATDATA_APPVIEW_* (or other) variable;
    unset, the AppView's own default (named in the help) applies."""
    return typer.Option(None, flag, envvar=envvar, help=help, show_default=False)


_FIREHOSE = typer.Option(
    None,
    "--firehose",
    help="ws(s):// host to follow (a relay or a PDS); repeat for several. Env: "
    "ATDATA_APPVIEW_FIREHOSE (comma-separated). Default: wss://bsky.network.",
    show_default=False,
)


@appview_app.command("serve")
def serve(
    db: str = _setting(
        "--db",
        "ATDATA_APPVIEW_DB",
        "SQLAlchemy URL of the index (sqlite:///path or postgresql://...). "
        "Default: an embedded SQLite file under ~/.local/share/atdata.",
    ),
    firehose: list[str] = _FIREHOSE,
    plc: str = _setting(
        "--plc",
        "ATDATA_PLC_URL",
        "PLC directory URL used to resolve DIDs. Default: https://plc.directory.",
    ),
    host: str = _setting("--host", "ATDATA_APPVIEW_HOST", "Address to listen on [127.0.0.1]."),
    port: int = _setting("--port", "ATDATA_APPVIEW_PORT", "Port to listen on [8080]."),
    connect_timeout: float = _setting(
        "--connect-timeout",
        "ATDATA_APPVIEW_CONNECT_TIMEOUT",
        "Seconds a firehose host has to accept the websocket (TCP connect + handshake) "
        "before the attempt counts as failed and is retried with backoff [10].",
    ),
    max_repo_bytes: int = _setting(
        "--max-repo-bytes",
        "ATDATA_APPVIEW_MAX_REPO_BYTES",
        "Largest repo (getRepo CAR) backfill downloads; a bigger one is skipped and "
        "counted [268435456 = 256 MiB].",
    ),
    header_timeout: float = _setting(
        "--header-timeout",
        "ATDATA_APPVIEW_HEADER_TIMEOUT",
        "Seconds a request's line and headers may take to arrive [10].",
    ),
    keepalive_timeout: float = _setting(
        "--keepalive-timeout",
        "ATDATA_APPVIEW_KEEPALIVE_TIMEOUT",
        "Seconds an idle connection stays open [75].",
    ),
    max_connections: int = _setting(
        "--max-connections",
        "ATDATA_APPVIEW_MAX_CONNECTIONS",
        "Open connections at once; more are answered 503 [1024].",
    ),
    workers: int = _setting(
        "--workers",
        "ATDATA_APPVIEW_WORKERS",
        "Serving processes [1]. With N > 1, one process ingests and N serve HTTP on the "
        "same port and database (SQLite in WAL mode or PostgreSQL).",
    ),
    no_follow: bool = typer.Option(
        False, "--no-follow", help="Serve the existing index without following any firehose."
    ),
) -> None:
    """Serve the index on HTTP and keep it current from the firehose(s).

    Example: atdata appview serve --firehose ws://127.0.0.1:2583 --port 8080
    """
    from atdata_appview.app import serve as run
    from atdata_appview.config import Settings

    try:
        settings = Settings.load(
            db=db,
            firehose=firehose,
            plc=plc,
            host=host,
            port=port,
            connect_timeout=connect_timeout,
            max_repo_bytes=max_repo_bytes,
            header_timeout=header_timeout,
            keepalive_timeout=keepalive_timeout,
            max_connections=max_connections,
            workers=workers,
        )
    except ValueError as exc:
        raise CliError(str(exc)) from None
    if logging.getLogger("atdata_appview").level == logging.NOTSET:
        logging.getLogger("atdata_appview").setLevel(logging.INFO)
    try:
        run(settings, follow=not no_follow)
    except OSError as exc:  # port taken, unreachable database file, ...
        reason = exc.strerror or str(exc)  # "Address already in use", without "[Errno 98]"
        raise CliError(f"cannot serve on {settings.host}:{settings.port}: {reason}") from None


def register(app: typer.Typer) -> None:
    app.add_typer(appview_app)
