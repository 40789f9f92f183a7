"""``GET /metrics`` in the Prometheus text format, through prometheus_client.

The index and ingest values already live in the ingest service's counters and the store, so
they are read on each scrape by a collector (one source of truth, nothing to keep in sync).
HTTP request counts and latencies are prometheus_client metrics of the serving process; with
several serving processes (``--workers N``) they live in prometheus_client's multiprocess
files, and every process's /metrics reports the sum over all of them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, values
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

PREFIX = "atdata_appview"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Request latency buckets (seconds): searches take a few ms; the tail is what matters.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


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


def _gauge(name: str, help_: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}_{name}", help_, value=value)


def _counter(name: str, help_: str, value: float) -> CounterMetricFamily:
    # prometheus_client appends _total to a counter's name
    return CounterMetricFamily(f"{PREFIX}_{name}", help_, value=value)


class _IndexValues(Collector):
    """The values of one scrape (set by `AppMetrics.render`): counts, store, ingest."""

    def __init__(self) -> None:
        self.counts: Mapping[str, int] = {}
        self.store_stats: Mapping[str, int] = {}
        self.ingest: Mapping[str, Any] | None = None
        self.frame_rate = FrameRate()

    def collect(self) -> Iterator[Metric]:
        records = GaugeMetricFamily(
            f"{PREFIX}_index_records", "Visible records in the index by kind.", labels=["kind"]
        )
        for kind, n in self.counts.items():
            records.add_metric([kind], n)
        yield records
        stats = self.store_stats
        yield _counter("store_commits", "Write transactions committed.", stats.get("commits", 0))
        yield _counter(
            "store_records_upserted",
            "Records written (created or updated) since start.",
            stats.get("records_upserted", 0),
        )
        yield _counter(
            "store_records_deleted", "Records deleted since start.", stats.get("records_deleted", 0)
        )
        if self.ingest is not None:
            yield from self._ingest(self.ingest)

    def _ingest(self, ingest: Mapping[str, Any]) -> Iterator[Metric]:
        frames = int(ingest.get("frames", 0))
        yield _gauge(
            "frames_per_second",
            "Firehose frames per second since the last scrape.",
            self.frame_rate.update(frames),
        )
        yield _counter("frames", "Firehose frames received.", frames)
        yield _counter(
            "records_indexed", "Verified records indexed.", int(ingest.get("records_indexed", 0))
        )
        yield _counter(
            "invalid_records",
            "Records skipped because they failed lexicon validation.",
            int(ingest.get("invalid_records", 0)),
        )
        yield _gauge(
            "backfill_queue", "Repos waiting for backfill.", int(ingest.get("backfill_queue") or 0)
        )
        backlog: Mapping[str, Any] = ingest.get("backlog") or {}
        yield _gauge(
            "backlog_repos",
            "Repos awaiting a whole fetch (backfill or resync).",
            int(backlog.get("repos") or 0),
        )
        yield _gauge(
            "backlog_held_events",
            "Firehose events held until their repo's fetch ends.",
            int(backlog.get("heldEvents") or 0),
        )
        hosts: Mapping[str, Mapping[str, Any]] = ingest.get("hosts") or {}
        lag = GaugeMetricFamily(
            f"{PREFIX}_host_lag_seconds",
            "Seconds between now and the last event processed from each host.",
            labels=["host"],
        )
        connected = GaugeMetricFamily(
            f"{PREFIX}_host_connected",
            "1 when the firehose socket of the host is open.",
            labels=["host"],
        )
        seq = GaugeMetricFamily(
            f"{PREFIX}_host_seq", "Last firehose seq processed per host.", labels=["host"]
        )
        for host, state in hosts.items():
            if state.get("lag_seconds") is not None:
                lag.add_metric([host], state["lag_seconds"])
            connected.add_metric([host], 1 if state.get("connected") else 0)
            if state.get("seq") is not None:
                seq.add_metric([host], state["seq"])
        yield from (lag, connected, seq)
        skipped = CounterMetricFamily(
            f"{PREFIX}_skipped", "Commits refused or records skipped, by reason.", labels=["reason"]
        )
        for reason, n in (ingest.get("reasons") or {}).items():
            skipped.add_metric([reason], n)
        yield skipped
        named = {"frames", "records_indexed", "invalid_records", "backfill_queue"}
        for key, value in ingest.items():
            if key in named or isinstance(value, bool) or not isinstance(value, int):
                continue
            yield _counter(f"ingest_{key}", f"Ingest counter {key}.", value)


class AppMetrics:
    """The /metrics registry of one app.

    ``multiprocess_dir``: the folder of prometheus_client's multiprocess files shared by the
    serving processes (``--workers N``); None for a single process."""

    def __init__(self, multiprocess_dir: str | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.values = _IndexValues()
        self.registry.register(self.values)
        request_registry: CollectorRegistry | None = self.registry
        if multiprocess_dir is not None:
            # Values of metrics made from here on are memory-mapped files in the folder
            # (this process's pid in their names); the collector sums all processes'.
            # (prometheus_client finds the folder through this variable)
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = multiprocess_dir
            values.ValueClass = values.MultiProcessValue()
            MultiProcessCollector(self.registry, path=multiprocess_dir)
            request_registry = None
        self.requests = Counter(
            f"{PREFIX}_http_requests",
            "HTTP requests answered, by route and status.",
            ["route", "status"],
            registry=request_registry,
        )
        self.latency = Histogram(
            f"{PREFIX}_http_request_seconds",
            "Time to answer an HTTP request, by route.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=request_registry,
        )

    def observe(self, route: str, status: int, seconds: float) -> None:
        self.requests.labels(route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def render(
        self,
        *,
        counts: Mapping[str, int],
        store_stats: Mapping[str, int],
        ingest: Mapping[str, Any] | None,
    ) -> bytes:
        self.values.counts, self.values.store_stats = counts, store_stats
        self.values.ingest = ingest
        return generate_latest(self.registry)
