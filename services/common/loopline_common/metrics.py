"""Prometheus metrics with Loopline's naming: `loopline_<service>_<name>`.

Each service owns one `ServiceMetrics`: a private registry (so tests and several servers in one process
never collide), get-or-create helpers, and the request metrics that both transports record.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.metrics import MetricWrapperBase

M = TypeVar("M", bound=MetricWrapperBase)

# Seconds; from 250 µs (an in-memory model call) to 10 s (a slow upstream).
LATENCY_BUCKETS = (0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def metric_prefix(service: str) -> str:
    return "loopline_" + service.replace("-", "_")


class ServiceMetrics:
    """The metrics of one service, named `loopline_<service>_...`."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.prefix = metric_prefix(service)
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self._metrics: dict[str, MetricWrapperBase] = {}
        self.requests = self.counter(
            "requests_total", "Requests answered, by transport, method and Loopline code",
            ["transport", "method", "code"],
        )
        self.request_seconds = self.histogram(
            "request_duration_seconds", "Server-side request latency by transport and method",
            ["transport", "method"],
        )
        self.in_flight = self.gauge("requests_in_flight", "Requests being served", ["transport"])

    def _get(self, kind: type[M], name: str, doc: str, labels: list[str], **kwargs: Any) -> M:
        if not _NAME.match(name):
            raise ValueError(f"metric name {name!r} must be snake_case")
        full = f"{self.prefix}_{name}"
        existing = self._metrics.get(full)
        if existing is not None:
            if not isinstance(existing, kind) or list(existing._labelnames) != labels:
                raise ValueError(f"metric {full} already exists with another type or labels")
            return existing
        metric = kind(full, doc, labels, registry=self.registry, **kwargs)
        self._metrics[full] = metric
        return metric

    def counter(self, name: str, doc: str, labels: list[str] | None = None) -> Counter:
        if not name.endswith("_total"):
            raise ValueError(f"counter {name!r} must end in _total")
        # prometheus_client appends _total itself; strip ours so the exposed name has it once.
        return self._get(Counter, name[: -len("_total")], doc, labels or [])

    def gauge(self, name: str, doc: str, labels: list[str] | None = None) -> Gauge:
        return self._get(Gauge, name, doc, labels or [])

    def histogram(
        self, name: str, doc: str, labels: list[str] | None = None, buckets: tuple[float, ...] = LATENCY_BUCKETS
    ) -> Histogram:
        return self._get(Histogram, name, doc, labels or [], buckets=buckets)

    def observe_request(self, *, transport: str, method: str, code: str, seconds: float) -> None:
        self.requests.labels(transport, method, code).inc()
        self.request_seconds.labels(transport, method).observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
