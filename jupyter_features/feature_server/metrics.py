"""Prometheus metrics of the feature server: requests, latency, errors, reads per view.

With several worker processes, ``PROMETHEUS_MULTIPROC_DIR`` is set before any worker
starts (see cli.py); each worker then writes its values to files there and ``/metrics``
sums every worker's (prometheus-client's multiprocess mode).
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["Metrics", "multiprocess_dir"]

PREFIX = "jupyter_features_server"
#: Latency buckets, seconds: a read is sub-millisecond unless the server is queueing.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir")


class Metrics:
    """The server's metrics; label children are cached, so a request costs a few dict lookups."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.multiprocess = multiprocess_dir() is not None
        own = CollectorRegistry(auto_describe=True)
        self.registry = own
        if self.multiprocess:
            from prometheus_client.multiprocess import MultiProcessCollector

            self.registry = CollectorRegistry()
            MultiProcessCollector(self.registry)
        self.requests = Counter(
            f"{PREFIX}_requests",
            "HTTP requests answered, by route and status",
            ["route", "status"],
            registry=own,
        )
        self.latency = Histogram(
            f"{PREFIX}_request_duration_seconds", "Time to answer a request, by route", ["route"],
            buckets=BUCKETS, registry=own,
        )  # fmt: skip
        self.errors = Counter(
            f"{PREFIX}_errors", "Requests answered with an error, by route, status and error type",
            ["route", "status", "type"], registry=own,
        )  # fmt: skip
        self.in_flight = Gauge(
            f"{PREFIX}_requests_in_flight", "Read requests being answered now", registry=own,
            multiprocess_mode="livesum",
        )  # fmt: skip
        self.view_reads = Counter(
            f"{PREFIX}_view_reads", "Reads of a feature view (one per request that asked for it)", ["view"],
            registry=own,
        )  # fmt: skip
        self.view_entities = Counter(
            f"{PREFIX}_view_entities", "Entities read from a feature view", ["view"], registry=own
        )
        self._children: dict[tuple[Any, ...], Any] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            if len(self._children) > 10_000:  # labels are bounded; this is a guard, not a cache policy
                self._children.clear()
            child = self._children[key] = metric.labels(*labels)
        return child

    def request(self, route: str, status: int, seconds: float, error_type: str | None = None) -> None:
        self._child(self.requests, route, str(status)).inc()
        self._child(self.latency, route).observe(seconds)
        if error_type is not None:
            self._child(self.errors, route, str(status), error_type).inc()

    def views_read(self, views: list[str], entities: int) -> None:
        for view in views:
            self._child(self.view_reads, view).inc()
            self._child(self.view_entities, view).inc(entities)

    def exposition(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def close(self) -> None:
        """Forget this worker's live gauges (its in-flight count) as it exits."""
        if self.multiprocess:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid())
