"""Assemble and run the features service: Feast backend, gRPC + HTTP, and the stream ingester."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import sqlite3
from pathlib import Path

from loopline.events.v1 import workload_pb2
from loopline.features.v1 import features_pb2_grpc
from loopline_common.grpc_server import GrpcServer
from loopline_common.http_app import create_http_app
from loopline_common.kafka_io import ConsumerLoop
from loopline_common.logs import configure_logging

# prometheus_client (through loopline_common.metrics) is imported before feast (through
# loopline_features.backend): importing feast sets PROMETHEUS_MULTIPROC_DIR, which must not switch this
# process's own metrics to multiprocess files.
from loopline_common.metrics import ServiceMetrics
from loopline_common.readiness import Readiness
from loopline_common.runner import load_settings_or_exit, serve
from loopline_features import grpc_api, http_api
from loopline_features.backend import FeastBackend
from loopline_features.core import FeaturesCore
from loopline_features.ingest import Ingester, Pusher, StreamState
from loopline_features.metrics import FeaturesMetrics
from loopline_features.settings import FeaturesSettings

SERVICE = "features"
log = logging.getLogger(__name__)


def main() -> None:
    settings = load_settings_or_exit(FeaturesSettings)
    configure_logging(service=SERVICE, level=settings.log_level)
    metrics = ServiceMetrics(SERVICE)
    features_metrics = FeaturesMetrics(metrics)
    readiness = Readiness()

    backend = FeastBackend(
        repo_dir=settings.repo_dir, data_dir=settings.data_dir, environment=settings.environment,
        max_entities=settings.max_entities, store_timeout_seconds=settings.store_timeout_seconds,
    )
    counts = backend.apply()
    log.info("feature repo applied", extra={"event": "applied", **counts, "environment": settings.environment})
    core = FeaturesCore(
        backend=backend, metrics=features_metrics, training_sets_root=settings.training_sets_root(),
        max_historical_rows=settings.max_historical_rows,
    )

    async def online_store_ready() -> bool:
        return await asyncio.to_thread(backend.ping)

    readiness.add("online_store", online_store_ready)

    consumer: ConsumerLoop[workload_pb2.WorkloadEvent] | None = None
    pusher: Pusher | None = None
    if settings.kafka_bootstrap:
        views = backend.stream_views()
        state_path = settings.data_dir / "stream-state.db"
        state = StreamState(path=state_path, views=views, allowed_lateness_seconds=settings.allowed_lateness_seconds)
        features_metrics.watermark.set_function(lambda: state_watermark(state_path))
        pusher = Pusher(
            state_path=state_path, views=views,
            push=lambda source, frame, offline: backend.push(source, frame, offline=offline),
            metrics=features_metrics, push_interval_seconds=settings.push_interval_seconds,
            offline_flush_seconds=settings.offline_flush_seconds,
        )
        features_metrics.outbox_pending.set_function(pusher.pending)
        consumer = ConsumerLoop(
            bootstrap_servers=settings.kafka_bootstrap, group_id=settings.ingest_group, topics=[settings.ingest_topic],
            message_type=workload_pb2.WorkloadEvent, handler=Ingester(state=state, metrics=features_metrics),
            metrics=metrics, client_id="loopline-features-ingest", max_poll_interval_ms=settings.max_poll_interval_ms,
        )
        readiness.add("kafka_consumer", lambda: consumer is not None and consumer.assigned)

    app = create_http_app(
        service=SERVICE, metrics=metrics, readiness=readiness, max_request_bytes=settings.max_request_bytes,
        description="Online features, training sets and materialization over the Feast feature repo.",
    )
    http_api.add_routes(app, core)
    server = GrpcServer(
        metrics=metrics, readiness=readiness, host=settings.host, port=settings.grpc_port,
        max_message_bytes=settings.max_request_bytes,
    )
    server.add_service(
        features_pb2_grpc.add_FeaturesServiceServicer_to_server, grpc_api.FeaturesServicer(core),
        grpc_api.SERVICE_NAME,
    )

    async def on_start() -> None:
        if pusher is not None and consumer is not None:
            pusher.start()
            consumer.start()

    async def on_stop() -> None:
        if consumer is not None:
            await asyncio.to_thread(consumer.stop)
        if pusher is not None:
            await asyncio.to_thread(pusher.stop)

    backend.warm_up()
    if settings.gc_freeze:
        freeze_heap()
    service = serve(service=SERVICE, settings=settings, readiness=readiness, grpc_server=server, http_app=app,
                    on_start=on_start, on_stop=on_stop)
    if settings.uvloop:
        import uvloop

        uvloop.run(service)
    else:
        asyncio.run(service)


def freeze_heap() -> None:
    """Collect once, then move every live object to the collector's permanent generation.

    By now the process holds feast, pandas, pyarrow and the registry: some 200,000 tracked objects that
    live as long as it does. A full (oldest-generation) collection walks all of them and takes hundreds
    of milliseconds, and whichever request is running then waits; frozen, they are never walked, so a
    full collection only sees what was allocated since (caches, buffers) and stays short.
    """
    gc.collect()
    gc.freeze()


def state_watermark(path: Path) -> float:
    """Newest event time seen by the ingester (epoch seconds; 0 before the first event)."""
    with contextlib.closing(sqlite3.connect(path, timeout=5)) as conn:
        row = conn.execute("SELECT MAX(value) FROM meta WHERE key LIKE 'watermark:%'").fetchone()
    return int(row[0]) / 1e6 if row and row[0] is not None else 0.0
