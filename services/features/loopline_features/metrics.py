"""The features service's own metrics (request latency by method and transport comes from the runtime)."""

from __future__ import annotations

import threading
import time

from loopline_common.metrics import ServiceMetrics

# Seconds; event-time lag of ingestion, from 10 ms to an hour.
LAG_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)


class FeaturesMetrics:
    def __init__(self, metrics: ServiceMetrics) -> None:
        self.base = metrics
        self.ingested = metrics.counter(
            "ingest_events_total", "Raw events handled by the stream ingester, by outcome", ["outcome"]
        )
        self.event_lag = metrics.histogram(
            "ingest_event_lag_seconds", "Processing time minus event time of applied events", buckets=LAG_BUCKETS
        )
        self.online_rows = metrics.counter(
            "online_push_rows_total", "Rows pushed online through push sources", ["feature_view"]
        )
        self.offline_rows = metrics.counter(
            "offline_push_rows_total", "Rows appended to the offline history through push sources", ["feature_view"]
        )
        self.push_errors = metrics.counter("push_errors_total", "Failed pushes (retried)", ["target"])
        self.store_errors = metrics.counter(
            "store_errors_total", "Online or offline store failures answered to callers", ["operation"]
        )
        self.outbox_pending = metrics.gauge("outbox_pending_rows", "Computed rows not yet pushed online")
        self.watermark = metrics.gauge("ingest_watermark_timestamp_seconds", "Newest event time seen by the ingester")
        self._freshness = metrics.gauge(
            "feature_freshness_seconds", "Seconds since the newest event time written online, per feature view",
            ["feature_view"],
        )
        self._newest: dict[str, float] = {}
        self._lock = threading.Lock()

    def mark_fresh(self, view: str, newest_event_seconds: float) -> None:
        """Record that `view` now holds values up to this event time (freshness = now - it)."""
        with self._lock:
            first = view not in self._newest
            if newest_event_seconds > self._newest.get(view, 0.0):
                self._newest[view] = newest_event_seconds
        if first:
            self._freshness.labels(view).set_function(lambda: self.freshness(view))

    def freshness(self, view: str) -> float:
        """Seconds since the newest event time written online for `view`."""
        with self._lock:
            return time.time() - self._newest[view]
