"""Assemble and run monitoring: settings, state store, profile source, core, the prediction-log consumer,
the ticker, and both transports. Everything is built in `main()`; nothing touches disk or network at
import time."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
from pathlib import Path
from typing import Any, NoReturn

from loopline.monitoring.v1 import monitoring_pb2_grpc
from loopline_common.grpc_server import GrpcServer
from loopline_common.http_app import create_http_app
from loopline_common.kafka_io import ConsumerLoop, EventProducer
from loopline_common.logs import configure_logging
from loopline_common.metrics import ServiceMetrics
from loopline_common.readiness import Readiness
from loopline_common.runner import load_settings_or_exit, serve
from loopline_common.topics import ensure_topics
from loopline_monitoring import wire
from loopline_monitoring.api import SERVICE, MonitoringApi
from loopline_monitoring.core import CoreConfig, MonitoringCore, OfflineSource, ProfileCache, ProfileSource
from loopline_monitoring.features_client import FeaturesOffline
from loopline_monitoring.grpc_api import MonitoringServicer
from loopline_monitoring.http_api import add_routes
from loopline_monitoring.policy import PolicyError, load_policies
from loopline_monitoring.registry_client import DirectoryProfiles, RegistryProfiles
from loopline_monitoring.settings import MonitoringSettings
from loopline_monitoring.store import Store
from loopline_monitoring.telemetry import MonitoringMetrics

log = logging.getLogger("loopline_monitoring")

SERVICE_SLUG = "monitoring"


def _exit(message: str) -> NoReturn:
    print(f"loopline-monitoring: {message}", file=sys.stderr)
    raise SystemExit(2)


class _TestCrash(BaseException):
    """Tests only: unwinds the consumer loop without its handler returning, so the batch's offset is not
    committed although its state is; the consumer still leaves its group on the way out (noida-db, the test
    broker, never evicts a member that died without leaving, where Kafka would after session.timeout.ms)."""


class Ticker:
    """A thread that calls the core's periodic work until stopped."""

    def __init__(self, core: MonitoringCore, *, every: float, skew_every: float) -> None:
        self.core = core
        self.every = every
        self.skew_every = skew_every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="monitoring-ticker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        waited = 0.0
        while not self._stop.wait(self.every):
            try:
                self.core.tick()
            except Exception:
                log.exception("tick failed")
            waited += self.every
            if waited >= self.skew_every:
                waited = 0.0
                try:
                    while self.core.run_skew() and not self._stop.is_set():
                        pass
                except Exception:
                    log.exception("skew check failed")


def main() -> None:
    settings = load_settings_or_exit(MonitoringSettings)
    configure_logging(service=SERVICE_SLUG, level=settings.log_level)
    try:
        policies = load_policies(settings.policy_file)
    except PolicyError as exc:
        _exit(str(exc))
    if settings.registry_target and settings.profile_dir:
        _exit("set LOOPLINE_MONITORING_REGISTRY_TARGET or LOOPLINE_MONITORING_PROFILE_DIR, not both")

    metrics = ServiceMetrics(SERVICE_SLUG)
    readiness = Readiness()
    state_dir = Path(settings.state_dir)
    try:
        store = Store(state_dir / "state.db")
    except Exception as exc:
        _exit(f"cannot open the state store in {state_dir}: {type(exc).__name__}: {exc}")
    readiness.add("store", lambda: asyncio.to_thread(store.ping))

    registry: RegistryProfiles | None = None
    source: ProfileSource | None = None
    if settings.registry_target:
        registry = RegistryProfiles(
            target=settings.registry_target, token=settings.registry_token.get_secret_value(),
            timeout=settings.upstream_timeout_seconds,
        )
        source = registry
    elif settings.profile_dir:
        source = DirectoryProfiles(settings.profile_dir)
    else:
        log.warning("no registry and no profile folder: drift cannot be computed, only canary figures")
    offline: OfflineSource | None = None
    features: FeaturesOffline | None = None
    if settings.features_target:
        if registry is None:
            _exit("the skew check needs the registry (for each version's feature service)")
        features = FeaturesOffline(
            target=settings.features_target, token=settings.features_token.get_secret_value(),
            timeout=settings.upstream_timeout_seconds,
            feature_service=lambda model, version: registry.feature_service(model_name=model, version=version),
        )
        offline = features

    producer = EventProducer(bootstrap_servers=settings.kafka_bootstrap, metrics=metrics, client_id="monitoring")
    core = MonitoringCore(
        store=store,
        profiles=ProfileCache(source=source, store=store, retry_seconds=settings.profile_retry_seconds),
        policies=policies,
        metrics=MonitoringMetrics(metrics),
        publisher=producer,
        offline=offline,
        config=CoreConfig(
            drift_topic=settings.drift_topic, canary_window_seconds=settings.canary_window_seconds,
            canary_retention_seconds=settings.canary_retention_seconds,
            canary_min_records=settings.canary_min_records, canary_max_records=settings.canary_max_records,
            canary_gauge_seconds=max(settings.tick_seconds, 10.0 if settings.tick_seconds >= 1 else 1.0),
            decision_threshold=settings.decision_threshold,
            skew_sample_rate=settings.skew_sample_rate if offline is not None else 0.0,
            skew_batch=settings.skew_batch,
        ),
    )

    handled = 0
    crashed = threading.Event()

    def handle(batch: Any, record: Any) -> None:
        nonlocal handled
        core.ingest(batch, fallback_time=(record.timestamp or 0) / 1000.0)
        handled += 1
        if handled == settings.test_crash_after_batches:
            log.warning("test fault: stopping after %d batches, before the last one's offset is committed", handled)
            crashed.set()
            raise _TestCrash

    consumer: ConsumerLoop[Any] = ConsumerLoop(
        bootstrap_servers=settings.kafka_bootstrap, group_id=settings.consumer_group,
        topics=[settings.predictions_topic], message_type=wire.projection(), handler=handle, metrics=metrics,
        client_id="monitoring", max_poll_interval_ms=settings.max_poll_interval_ms,
    )
    readiness.add("consumer", lambda: consumer.assigned)
    # Not the producer: it connects with its first event and never blocks (events wait in the outbox).
    ticker = Ticker(core, every=settings.tick_seconds, skew_every=settings.skew_interval_seconds)

    api = MonitoringApi(core=core, reports_dir=state_dir / "reports")
    app = create_http_app(service=SERVICE_SLUG, metrics=metrics, readiness=readiness,
                          max_request_bytes=settings.max_request_bytes,
                          description="Drift, training–serving skew and canary comparison from the prediction log")
    add_routes(app, api)
    server = GrpcServer(metrics=metrics, readiness=readiness, host=settings.host, port=settings.grpc_port,
                        max_message_bytes=max(settings.max_request_bytes, 64 * 1024 * 1024))
    server.add_service(monitoring_pb2_grpc.add_MonitoringServiceServicer_to_server, MonitoringServicer(api), SERVICE)

    def exit_after_test_crash() -> None:
        crashed.wait()
        consumer.stop(10.0)  # the consumer left its group as the fault unwound its loop
        os._exit(3)

    if settings.test_crash_after_batches:
        threading.Thread(target=exit_after_test_crash, name="test-crash", daemon=True).start()

    def start_consumer() -> None:
        # Topics first, so the consumer is assigned at once rather than at its next metadata refresh.
        try:
            ensure_topics(settings.kafka_bootstrap)
        except Exception as exc:
            log.warning("could not create the Kafka topics: %s", type(exc).__name__)
        consumer.start()

    async def on_start() -> None:
        threading.Thread(target=start_consumer, name="monitoring-consumer-start", daemon=True).start()
        ticker.start()

    async def on_stop() -> None:
        await asyncio.to_thread(consumer.stop, 10.0)
        await asyncio.to_thread(ticker.stop)
        await asyncio.to_thread(core.tick)
        await asyncio.to_thread(producer.close, 5.0)
        if registry is not None:
            registry.close()
        if features is not None:
            features.close()
        await asyncio.to_thread(store.close)

    asyncio.run(serve(service=SERVICE_SLUG, settings=settings, readiness=readiness, grpc_server=server,
                      http_app=app, on_start=on_start, on_stop=on_stop))


if __name__ == "__main__":
    main()
