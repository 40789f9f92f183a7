"""``GET /metrics`` in the Prometheus text exposition format (version 0.0.4).

Hand-written rather than prometheus_client: the values already live in the ingest service's
counters and the store; rendering them on scrape keeps one source of truth.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterable, Mapping
from typing import Any

PREFIX = "atdata_appview"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _name(raw: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", raw)


def _fmt(value: float) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")
    return repr(float(value)) if isinstance(value, float) else str(int(value))


class Exposition:
    """Collects metric families and renders them; one HELP/TYPE block per family."""

    def __init__(self) -> None:
        self._lines: list[str] = []
        self._seen: set[str] = set()

    def add(
        self,
        name: str,
        kind: str,
        help_: str,
        samples: Iterable[tuple[Mapping[str, str], float]],
    ) -> None:
        full = f"{PREFIX}_{_name(name)}"
        if full in self._seen:
            return
        self._seen.add(full)
        self._lines.append(f"# HELP {full} {help_}")
        self._lines.append(f"# TYPE {full} {kind}")
        for labels, value in samples:
            label_text = ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items())
            self._lines.append(
                f"{full}{{{label_text}}} {_fmt(value)}" if label_text else f"{full} {_fmt(value)}"
            )

    def one(self, name: str, kind: str, help_: str, value: float) -> None:
        self.add(name, kind, help_, [({}, value)])

    def render(self) -> str:
        return "\n".join(self._lines) + "\n"


class FrameRate:
    """frames/s between consecutive scrapes (also available as rate() of the counter)."""

    def __init__(self) -> None:
        self._last: tuple[float, int] | None = None
        self.value = 0.0

    def update(self, frames: int) -> float:
        now = time.monotonic()
        if self._last is not None and now - self._last[0] >= 0.5:
            self.value = max(0.0, (frames - self._last[1]) / (now - self._last[0]))
        if self._last is None or now - self._last[0] >= 0.5:
            self._last = (now, frames)
        return self.value


def render(
    *,
    counts: Mapping[str, int],
    store_stats: Mapping[str, int],
    ingest: Mapping[str, Any] | None,
    frame_rate: FrameRate,
) -> str:
    out = Exposition()
    out.add(
        "index_records",
        "gauge",
        "Visible records in the index by kind.",
        [({"kind": k}, v) for k, v in counts.items()],
    )
    out.one(
        "store_commits_total",
        "counter",
        "Write transactions committed.",
        store_stats.get("commits", 0),
    )
    out.one(
        "store_records_upserted_total",
        "counter",
        "Records written (created or updated) since start.",
        store_stats.get("records_upserted", 0),
    )
    out.one(
        "store_records_deleted_total",
        "counter",
        "Records deleted since start.",
        store_stats.get("records_deleted", 0),
    )
    if ingest is not None:
        frames = int(ingest.get("frames", 0))
        out.one(
            "frames_per_second",
            "gauge",
            "Firehose frames per second since the last scrape.",
            frame_rate.update(frames),
        )
        out.one("frames_total", "counter", "Firehose frames received.", frames)
        out.one(
            "records_indexed_total",
            "counter",
            "Verified records indexed.",
            int(ingest.get("records_indexed", 0)),
        )
        out.one(
            "invalid_records_total",
            "counter",
            "Records skipped because they failed lexicon validation.",
            int(ingest.get("invalid_records", 0)),
        )
        out.one(
            "backfill_queue",
            "gauge",
            "Repos waiting for backfill.",
            int(ingest.get("backfill_queue", 0) or 0),
        )
        hosts = ingest.get("hosts") or {}
        out.add(
            "host_lag_seconds",
            "gauge",
            "Seconds between now and the last event processed from each host.",
            [
                ({"host": h}, s["lag_seconds"])
                for h, s in hosts.items()
                if s.get("lag_seconds") is not None
            ],
        )
        out.add(
            "host_connected",
            "gauge",
            "1 when the firehose socket of the host is open.",
            [({"host": h}, bool(s.get("connected"))) for h, s in hosts.items()],
        )
        out.add(
            "host_seq",
            "gauge",
            "Last firehose seq processed per host.",
            [({"host": h}, s["seq"]) for h, s in hosts.items() if s.get("seq") is not None],
        )
        reasons = ingest.get("reasons") or {}
        out.add(
            "skipped_total",
            "counter",
            "Commits refused or records skipped, by reason.",
            [({"reason": r}, n) for r, n in reasons.items()],
        )
        for key, value in ingest.items():
            if isinstance(value, bool) or not isinstance(value, int):
                continue
            out.one(f"ingest_{key}_total", "counter", f"Ingest counter {key}.", value)
    return out.render()
