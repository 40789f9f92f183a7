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

#: Environment variable for each setting (the CLI documents these too).
ENV = {
    "db": "ATDATA_APPVIEW_DB",
    "firehose": "ATDATA_APPVIEW_FIREHOSE",
    "plc": "ATDATA_PLC_URL",
    "host": "ATDATA_APPVIEW_HOST",
    "port": "ATDATA_APPVIEW_PORT",
    "connect_timeout": "ATDATA_APPVIEW_CONNECT_TIMEOUT",
    "max_repo_bytes": "ATDATA_APPVIEW_MAX_REPO_BYTES",
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
        return cls(
            db=pick(db, "db"),
            firehose=hosts or [DEFAULT_FIREHOSE],
            plc=(pick(plc, "plc") or DEFAULT_PLC).rstrip("/"),
            host=pick(host, "host") or DEFAULT_HOST,
            port=port_value,
            connect_timeout=DEFAULT_CONNECT_TIMEOUT if timeout is None else timeout,
            max_repo_bytes=DEFAULT_MAX_REPO_BYTES if cap is None else int(cap),
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
