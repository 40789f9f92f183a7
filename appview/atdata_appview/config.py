"""AppView settings: command-line options override environment variables override defaults."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from .backfill import DEFAULT_MAX_REPO_BYTES
from .firehose import DEFAULT_CONNECT_TIMEOUT

DEFAULT_FIREHOSE = "wss://bsky.network"
DEFAULT_PLC = "https://plc.directory"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_KEEPALIVE_TIMEOUT = 75.0
DEFAULT_MAX_CONNECTIONS = 1024
DEFAULT_WORKERS = 1

#: Environment variable for each setting (the CLI documents these too).
ENV = {
    "db": "ATDATA_APPVIEW_DB",
    "firehose": "ATDATA_APPVIEW_FIREHOSE",
    "plc": "ATDATA_PLC_URL",
    "host": "ATDATA_APPVIEW_HOST",
    "port": "ATDATA_APPVIEW_PORT",
    "connect_timeout": "ATDATA_APPVIEW_CONNECT_TIMEOUT",
    "max_repo_bytes": "ATDATA_APPVIEW_MAX_REPO_BYTES",
    "header_timeout": "ATDATA_APPVIEW_HEADER_TIMEOUT",
    "keepalive_timeout": "ATDATA_APPVIEW_KEEPALIVE_TIMEOUT",
    "max_connections": "ATDATA_APPVIEW_MAX_CONNECTIONS",
    "workers": "ATDATA_APPVIEW_WORKERS",
}


@dataclass(slots=True)
class Settings:
    """Everything `serve` needs. ``db=None`` means the embedded SQLite file."""

    db: str | None = None
    firehose: list[str] = field(default_factory=lambda: [DEFAULT_FIREHOSE])
    plc: str = DEFAULT_PLC
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT  # firehose TCP connect + handshake
    max_repo_bytes: int = DEFAULT_MAX_REPO_BYTES  # largest repo backfill downloads
    #: seconds a request's line and headers may take to arrive, from their first byte
    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    #: seconds an idle connection (before or between requests) stays open
    keepalive_timeout: float = DEFAULT_KEEPALIVE_TIMEOUT
    #: open connections at once (over all serving processes); more are answered 503
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    #: serving processes; 1: one process ingests and serves, N > 1: one ingests, N serve
    workers: int = DEFAULT_WORKERS

    @classmethod
    def load(
        cls,
        *,
        db: str | None = None,
        firehose: list[str] | None = None,
        plc: str | None = None,
        host: str | None = None,
        port: int | None = None,
        connect_timeout: float | None = None,
        max_repo_bytes: int | None = None,
        header_timeout: float | None = None,
        keepalive_timeout: float | None = None,
        max_connections: int | None = None,
        workers: int | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Settings:
        env = os.environ if environ is None else environ

        def pick(value: str | None, key: str) -> str | None:
            return value if value not in (None, "") else (env.get(ENV[key]) or None)

        hosts = list(firehose or [])
        if not hosts and env.get(ENV["firehose"]):
            hosts = [h.strip() for h in env[ENV["firehose"]].replace(",", " ").split() if h.strip()]
        for h in hosts:
            if "://" in h and not h.startswith(("ws://", "wss://", "http://", "https://")):
                raise ValueError(f"firehose host {h!r} must be a ws(s):// (or http(s)://) URL")
        port_text = port if port is not None else env.get(ENV["port"])
        try:
            port_value = int(port_text) if port_text not in (None, "") else DEFAULT_PORT
        except ValueError:
            raise ValueError(f"port {port_text!r} is not a number") from None
        timeout = _positive(connect_timeout, env.get(ENV["connect_timeout"]), float, "timeout")
        cap = _positive(max_repo_bytes, env.get(ENV["max_repo_bytes"]), int, "max repo bytes")

        header = _positive(header_timeout, env.get(ENV["header_timeout"]), float, "header timeout")
        idle = _positive(
            keepalive_timeout, env.get(ENV["keepalive_timeout"]), float, "keepalive timeout"
        )
        conns = _positive(max_connections, env.get(ENV["max_connections"]), int, "max connections")
        procs = _positive(workers, env.get(ENV["workers"]), int, "workers")
        return cls(
            db=pick(db, "db"),
            firehose=hosts or [DEFAULT_FIREHOSE],
            plc=(pick(plc, "plc") or DEFAULT_PLC).rstrip("/"),
            host=pick(host, "host") or DEFAULT_HOST,
            port=port_value,
            connect_timeout=DEFAULT_CONNECT_TIMEOUT if timeout is None else timeout,
            max_repo_bytes=DEFAULT_MAX_REPO_BYTES if cap is None else int(cap),
            header_timeout=DEFAULT_HEADER_TIMEOUT if header is None else header,
            keepalive_timeout=DEFAULT_KEEPALIVE_TIMEOUT if idle is None else idle,
            max_connections=DEFAULT_MAX_CONNECTIONS if conns is None else int(conns),
            workers=DEFAULT_WORKERS if procs is None else int(procs),
        )


def _positive(
    given: float | None, text: str | None, kind: type[float] | type[int], what: str
) -> float | None:
    """An option's value, else its variable's text parsed as `kind` (None: neither); > 0."""
    value = given
    if value is None and text not in (None, ""):
        try:
            value = kind(str(text))
        except ValueError:
            raise ValueError(f"{what} {text!r} is not a number") from None
    if value is not None and value <= 0:
        raise ValueError(f"{what} must be positive, got {value!r}")
    return value
