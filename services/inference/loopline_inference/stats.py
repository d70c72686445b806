"""The inference hot path's metrics, kept in plain Python counters and exposed as Prometheus metrics.

prometheus_client's labelled metrics cost several microseconds per observation (a label lookup under a
lock, then a Python loop over the histogram buckets); at tens of thousands of requests per second per
core that is a large share of a request. Here an observation is a dict lookup and a `bisect`, and the
Prometheus families are built only when /metrics is scraped. Everything runs on the event loop thread,
so no locks are needed; a scrape from another thread reads a consistent-enough snapshot (counters only
grow).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from loopline_common.metrics import LATENCY_BUCKETS, ServiceMetrics

# Prediction scores are probabilities or regression outputs; buckets resolve the usual 0..1 range.
SCORE_BUCKETS = (0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
ROWS_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384)


class _Histogram:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    def observe_many(self, values: Any) -> None:
        """Observe every value of a numpy array (vectorised)."""
        import numpy as np

        per_bucket = np.bincount(np.searchsorted(self.bounds, values, side="left"), minlength=len(self.counts))
        counts = self.counts
        for i, n in enumerate(per_bucket.tolist()):
            counts[i] += n
        self.sum += float(values.sum())

    def buckets(self) -> list[tuple[str, float]]:
        out, running = [], 0
        for bound, count in zip(self.bounds, self.counts, strict=False):
            running += count
            out.append((repr(float(bound)), float(running)))
        out.append(("+Inf", float(running + self.counts[-1])))
        return out


class InferenceStats(Collector):
    """Requests, latencies, scores, batch sizes, model loads, weights and prediction-log drops."""

    def __init__(self, metrics: ServiceMetrics) -> None:
        self.prefix = metrics.prefix
        self.requests: dict[tuple[str, str, str, str, str], int] = {}
        self.latency: dict[tuple[str, str, str, str], _Histogram] = {}
        self.scores: dict[tuple[str, str, str], _Histogram] = {}
        self.rows: dict[str, _Histogram] = {}
        self.load_seconds: dict[tuple[str, str, str], float] = {}
        self.weights: dict[tuple[str, str], float] = {}
        self.log_dropped: dict[str, int] = {}
        self.log_records = 0
        self.swaps: dict[str, int] = {}
        metrics.registry.register(self)

    # ---- hot path ----------------------------------------------------------------------------------
    def request(self, model: str, version: str, track: str, protocol: str, status: str, seconds: float) -> None:
        key = (model, version, track, protocol, status)
        self.requests[key] = self.requests.get(key, 0) + 1
        lkey = (model, version, track, protocol)
        hist = self.latency.get(lkey)
        if hist is None:
            hist = self.latency[lkey] = _Histogram(LATENCY_BUCKETS)
        hist.observe(seconds)

    def batch(self, model: str, version: str, track: str, rows: int, scores: Any) -> None:
        hist = self.rows.get(model)
        if hist is None:
            hist = self.rows[model] = _Histogram(ROWS_BUCKETS)
        hist.observe(rows)
        if scores is None:
            return
        skey = (model, version, track)
        shist = self.scores.get(skey)
        if shist is None:
            shist = self.scores[skey] = _Histogram(SCORE_BUCKETS)
        if rows == 1:
            shist.observe(float(scores[0]))
        else:
            shist.observe_many(scores)

    def dropped(self, reason: str, n: int = 1) -> None:
        self.log_dropped[reason] = self.log_dropped.get(reason, 0) + n

    # ---- scrape ------------------------------------------------------------------------------------
    def collect(self) -> Iterator[Any]:
        p = self.prefix
        requests = CounterMetricFamily(
            f"{p}_predict_requests", "Inference requests by model, version, track, protocol and status",
            labels=["model", "version", "track", "protocol", "status"],
        )
        for key, n in list(self.requests.items()):
            requests.add_metric(list(key), n)
        yield requests
        latency = HistogramMetricFamily(
            f"{p}_predict_duration_seconds", "Server-side inference latency (decode, score, encode)",
            labels=["model", "version", "track", "protocol"],
        )
        for lkey, hist in list(self.latency.items()):
            latency.add_metric(list(lkey), hist.buckets(), hist.sum)
        yield latency
        scores = HistogramMetricFamily(
            f"{p}_prediction_score", "Distribution of the model's score (positive-class probability or value)",
            labels=["model", "version", "track"],
        )
        for skey, hist in list(self.scores.items()):
            scores.add_metric(list(skey), hist.buckets(), hist.sum)
        yield scores
        rows = HistogramMetricFamily(f"{p}_batch_rows", "Rows per inference request", labels=["model"])
        for model, hist in list(self.rows.items()):
            rows.add_metric([model], hist.buckets(), hist.sum)
        yield rows
        load = GaugeMetricFamily(
            f"{p}_model_load_seconds", "Time to load and warm up the model version served by each track",
            labels=["model", "version", "track"],
        )
        for key3, seconds in list(self.load_seconds.items()):
            load.add_metric(list(key3), seconds)
        yield load
        weights = GaugeMetricFamily(
            f"{p}_track_weight", "Share of traffic each track answers (0..1)", labels=["model", "track"]
        )
        for key2, weight in list(self.weights.items()):
            weights.add_metric(list(key2), weight)
        yield weights
        swaps = CounterMetricFamily(f"{p}_model_swaps", "Model versions swapped in while serving", labels=["model"])
        for model, n in list(self.swaps.items()):
            swaps.add_metric([model], n)
        yield swaps
        dropped = CounterMetricFamily(
            f"{p}_prediction_log_dropped", "Prediction records not logged (buffer full, encode or send failure)",
            labels=["reason"],
        )
        for reason, n in list(self.log_dropped.items()):
            dropped.add_metric([reason], n)
        yield dropped
        logged = CounterMetricFamily(f"{p}_prediction_log_records", "Prediction records handed to the Kafka producer")
        logged.add_metric([], self.log_records)
        yield logged
