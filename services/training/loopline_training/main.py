"""Assemble and run the training service: settings, job store, runner, core, drift consumer, events, both
transports. Everything is built in `main()`; nothing touches disk or network at import time."""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
import threading
from pathlib import Path
from typing import Any, NoReturn

from loopline.events.v1 import drift_pb2
from loopline.training.v1 import training_pb2_grpc
from loopline_common.grpc_server import GrpcServer
from loopline_common.http_app import create_http_app
from loopline_common.kafka_io import ConsumerLoop, EventProducer
from loopline_common.logs import configure_logging
from loopline_common.metrics import ServiceMetrics
from loopline_common.readiness import Readiness
from loopline_common.runner import load_settings_or_exit, serve
from loopline_common.topics import ensure_topics
from loopline_training.api import SERVICE, TrainingApi
from loopline_training.clients import FeaturesClient
from loopline_training.core import CoreConfig, JobService
from loopline_training.drift import DriftPolicy, DriftRetrainer
from loopline_training.grpc_api import TrainingServicer
from loopline_training.http_api import add_routes
from loopline_training.protocol import Outcome, Progress
from loopline_training.runners.base import Runner
from loopline_training.runners.embedded import EmbeddedRunner
from loopline_training.runners.manifest import JobTemplate
from loopline_training.settings import ENV_PREFIX, TrainingSettings
from loopline_training.store import JobStore
from loopline_training.version import code_version

log = logging.getLogger("loopline_training")

SERVICE_SLUG = "training"


def _exit(message: str) -> NoReturn:
    print(f"loopline-training: {message}", file=sys.stderr)
    raise SystemExit(2)


class _Events:
    """Forwards runner events to the core (the runner is built before the core that receives them)."""

    target: JobService | None = None

    def on_progress(self, job_id: str, progress: Progress) -> None:
        if self.target is not None:
            self.target.on_progress(job_id, progress)

    def on_outcome(self, job_id: str, outcome: Outcome) -> None:
        if self.target is not None:
            self.target.on_outcome(job_id, outcome)


def job_environment(settings: TrainingSettings) -> dict[str, str]:
    """What a job needs to know, as the environment variables JobSettings reads (registry token apart)."""
    return {
        f"{ENV_PREFIX}MLFLOW_URI": settings.mlflow_uri,
        f"{ENV_PREFIX}REGISTRY_TARGET": settings.registry_target,
        f"{ENV_PREFIX}FEATURES_TARGET": settings.features_target,
        f"{ENV_PREFIX}CODE_VERSION": code_version(settings.code_version),
        f"{ENV_PREFIX}LOG_LEVEL": settings.log_level,
    }


def build_runner(settings: TrainingSettings, events: _Events) -> Runner:
    env = job_environment(settings)
    if settings.runner == "kubernetes":
        from loopline_training.runners.kubernetes import KubernetesRunner, api_client

        template = JobTemplate(
            namespace=settings.kubernetes_namespace, image=settings.kubernetes_image,
            service_account=settings.kubernetes_service_account, cpu_request=settings.kubernetes_cpu_request,
            cpu_limit=settings.kubernetes_cpu_limit, memory_request=settings.kubernetes_memory_request,
            memory_limit=settings.kubernetes_memory_limit, backoff_limit=settings.kubernetes_backoff_limit,
            ttl_seconds_after_finished=settings.kubernetes_ttl_seconds,
            active_deadline_seconds=settings.kubernetes_active_deadline_seconds,
            token_secret=settings.kubernetes_token_secret, env=env, instance=settings.kubernetes_instance,
        )
        api = api_client(api_url=settings.kubernetes_api_url, kubeconfig=settings.kubeconfig)
        return KubernetesRunner(api=api, template=template, events=events)
    work_dir = Path(settings.work_dir).resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    env[f"{ENV_PREFIX}REGISTRY_TOKEN"] = settings.registry_token.get_secret_value()
    return EmbeddedRunner(
        work_dir=work_dir, events=events, python=settings.job_python or sys.executable, env=env,
        cancel_grace_seconds=settings.cancel_grace_seconds,
    )


def main() -> None:
    settings = load_settings_or_exit(TrainingSettings)
    configure_logging(service=SERVICE_SLUG, level=settings.log_level)
    instance = settings.instance_id or socket.gethostname()
    metrics = ServiceMetrics(SERVICE_SLUG)
    readiness = Readiness()

    store = JobStore(settings.store_url)
    try:
        store.create_schema()
    except Exception as exc:
        _exit(f"cannot open the job store {settings.store_url.split('@')[-1]}: {type(exc).__name__}: {exc}")
    readiness.add("store", lambda: asyncio.to_thread(store.ping))

    events = _Events()
    try:
        runner = build_runner(settings, events)
    except Exception as exc:
        _exit(f"cannot set up the {settings.runner} runner: {type(exc).__name__}: {exc}")
    if not settings.registry_target:
        log.warning("no registry configured (LOOPLINE_TRAINING_REGISTRY_TARGET): jobs will fail to register")
    features = FeaturesClient(target=settings.features_target, timeout=settings.features_timeout_seconds) \
        if settings.features_target else None
    producer = EventProducer(bootstrap_servers=settings.kafka_bootstrap, metrics=metrics,
                             client_id=f"training-{instance}")
    # Events wait in the producer's buffer while the broker is away; Kafka readiness is the drift
    # consumer's assignment (the producer connects at its first event).
    core = JobService(
        store=store, runner=runner, metrics=metrics, producer=producer,
        check_feature_service=features.check_feature_service if features is not None else None,
        config=CoreConfig(
            owner=instance, max_concurrent_jobs=settings.max_concurrent_jobs, max_attempts=settings.max_attempts,
            default_threads=settings.job_threads, jobs_topic=settings.jobs_topic,
            progress_event_seconds=settings.progress_event_seconds, check_files=settings.runner == "embedded",
            features_available=features is not None,
        ),
    )
    events.target = core

    consumers: list[ConsumerLoop[Any]] = []
    if settings.drift_enabled:
        retrainer = DriftRetrainer(
            store=store, submit=lambda spec: core.submit(spec=spec)[0],
            policy=DriftPolicy(cooldown_seconds=settings.drift_cooldown_seconds,
                               min_new_rows=settings.drift_min_new_rows),
        )
        drift_consumer: ConsumerLoop[drift_pb2.DriftDetected] = ConsumerLoop(
            bootstrap_servers=settings.kafka_bootstrap, group_id=settings.drift_group_id,
            topics=[settings.drift_topic], message_type=drift_pb2.DriftDetected, handler=retrainer.handle,
            metrics=metrics, client_id=f"training-drift-{instance}",
        )
        consumers.append(drift_consumer)
        readiness.add("drift_consumer", lambda: drift_consumer.assigned)

    def start_consumers() -> None:
        # Topics first, so the consumer is assigned at once rather than at its next metadata refresh.
        try:
            ensure_topics(settings.kafka_bootstrap)
        except Exception as exc:
            log.warning("could not create the Kafka topics: %s", type(exc).__name__)
        for consumer in consumers:
            consumer.start()

    api = TrainingApi(core=core)
    app = create_http_app(service=SERVICE_SLUG, metrics=metrics, readiness=readiness,
                          max_request_bytes=settings.max_request_bytes,
                          description="Training jobs: LightGBM and PyTorch, tracked in MLflow, exported to ONNX")
    add_routes(app, api)
    server = GrpcServer(metrics=metrics, readiness=readiness, host=settings.host, port=settings.grpc_port,
                        max_message_bytes=settings.max_request_bytes)
    server.add_service(training_pb2_grpc.add_TrainingServiceServicer_to_server, TrainingServicer(api), SERVICE)

    async def on_start() -> None:
        core.feed.bind(asyncio.get_running_loop())
        await asyncio.to_thread(core.recover)
        core.start()
        threading.Thread(target=start_consumers, name="training-consumers", daemon=True).start()

    async def on_stop() -> None:
        core.stop()
        await asyncio.to_thread(runner.close)
        for consumer in consumers:
            await asyncio.to_thread(consumer.stop, 5.0)
        await asyncio.to_thread(producer.close, 5.0)
        if features is not None:
            features.close()
        await asyncio.to_thread(store.close)

    asyncio.run(serve(service=SERVICE_SLUG, settings=settings, readiness=readiness, grpc_server=server, http_app=app,
                      on_start=on_start, on_stop=on_stop))


if __name__ == "__main__":
    main()
