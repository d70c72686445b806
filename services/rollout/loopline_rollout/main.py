"""Assemble and run the rollout controller: settings, store, registry client, check source, actuator,
controller loop, outbox relay, model-event consumer, both transports. Nothing runs at import time."""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from pathlib import Path
from typing import NoReturn

from kafka.consumer.fetcher import ConsumerRecord

from loopline.events.v1 import models_pb2
from loopline.rollout.v1 import rollout_pb2_grpc
from loopline_common.grpc_server import GrpcServer
from loopline_common.http_app import create_http_app
from loopline_common.logs import configure_logging
from loopline_common.metrics import ServiceMetrics
from loopline_common.readiness import Readiness
from loopline_common.runner import load_settings_or_exit, serve
from loopline_common.topics import ensure_topics
from loopline_rollout.actuators.base import Actuator
from loopline_rollout.api import SERVICE, Auth, RolloutApi, TokenConfigError
from loopline_rollout.checks import MonitoringSource, Prometheus, PrometheusSource, Source
from loopline_rollout.consumer import AssignedConsumerLoop
from loopline_rollout.controller import Config, Controller
from loopline_rollout.grpc_api import RolloutServicer
from loopline_rollout.http_api import add_routes
from loopline_rollout.policy import Policies, PolicyError, load_policy_file
from loopline_rollout.relay import Relay
from loopline_rollout.settings import RolloutSettings
from loopline_rollout.store import Store
from loopline_rollout.telemetry import Telemetry
from loopline_rollout.upstream import Registry

log = logging.getLogger("loopline_rollout")
SLUG = "rollout"


def _exit(message: str) -> NoReturn:
    print(f"loopline-rollout: {message}", file=sys.stderr)
    raise SystemExit(2)


def build_actuator(settings: RolloutSettings) -> Actuator:
    timeout = settings.upstream_timeout_seconds
    if settings.actuator == "embedded":
        from loopline_rollout.actuators.embedded import EmbeddedActuator

        if not settings.inference_target and not settings.inference_targets:
            _exit("LOOPLINE_ROLLOUT_INFERENCE_TARGET (or _TARGETS) is required with the embedded actuator")
        return EmbeddedActuator(target=settings.inference_target, targets=settings.inference_targets,
                                timeout=timeout)
    if settings.actuator == "kserve":
        from loopline_rollout.actuators.kserve import KServeActuator, api_client

        return KServeActuator(api=api_client(api_url=settings.kserve_api_url, kubeconfig=settings.kserve_kubeconfig),
                              namespace=settings.kserve_namespace, storage_uri=settings.kserve_storage_uri,
                              names=settings.kserve_names, timeout=timeout)
    from loopline_rollout.actuators.git_providers import GitHub, GitLab, GitProvider, PlainGit
    from loopline_rollout.actuators.gitops import GitOpsActuator

    if not settings.gitops_repo:
        _exit("LOOPLINE_ROLLOUT_GITOPS_REPO is required with the gitops actuator")
    token = settings.gitops_token.get_secret_value()
    provider: GitProvider
    if settings.gitops_provider == "git":
        work = Path(settings.gitops_work_dir) if settings.gitops_work_dir else Path("gitops-work")
        provider = PlainGit(remote=settings.gitops_repo, base=settings.gitops_base_branch, work_dir=work / "repo",
                            author=settings.gitops_author)
    elif settings.gitops_provider == "github":
        provider = GitHub(repo=settings.gitops_repo, base=settings.gitops_base_branch, token=token,
                          api_url=settings.gitops_api_url, timeout=timeout)
    else:
        provider = GitLab(project=settings.gitops_repo, base=settings.gitops_base_branch, token=token,
                          api_url=settings.gitops_api_url, timeout=timeout)
    return GitOpsActuator(provider=provider, values_file=settings.gitops_values_file,
                          version_key=settings.gitops_version_key, percent_key=settings.gitops_percent_key)


def build_source(settings: RolloutSettings, policies: Policies) -> Source:
    timeout = settings.upstream_timeout_seconds
    prometheus = Prometheus(settings.prometheus_url, timeout=timeout) if settings.prometheus_url else None
    if policies.uses_promql and prometheus is None:
        _exit("the policies have promql checks: set LOOPLINE_ROLLOUT_PROMETHEUS_URL")
    if settings.check_source == "prometheus":
        if prometheus is None:
            _exit("LOOPLINE_ROLLOUT_PROMETHEUS_URL is required with check_source=prometheus")
        return PrometheusSource(prometheus)
    if not settings.monitoring_target:
        _exit("LOOPLINE_ROLLOUT_MONITORING_TARGET is required with check_source=monitoring")
    return MonitoringSource(target=settings.monitoring_target, timeout=timeout, prometheus=prometheus)


def main() -> None:
    settings = load_settings_or_exit(RolloutSettings)
    configure_logging(service=SLUG, level=settings.log_level)
    for name in ("httpx", "httpcore", "kafka"):
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        policies = load_policy_file(settings.policy_file)
        auth = Auth.load(settings.tokens_file, anonymous=settings.anonymous_actions)
    except (PolicyError, TokenConfigError) as exc:
        _exit(str(exc))
    if policies.uses_shadow and settings.actuator != "embedded":
        _exit(f"a shadow phase needs the embedded actuator (LOOPLINE_ROLLOUT_ACTUATOR={settings.actuator})")

    metrics = ServiceMetrics(SLUG)
    telemetry = Telemetry(metrics)
    readiness = Readiness()
    store = Store(settings.store_url)
    try:
        store.create_schema()
    except Exception as exc:
        _exit(f"cannot open the store {settings.store_url.split('@')[-1]}: {type(exc).__name__}: {exc}")
    readiness.add("store", lambda: asyncio.to_thread(store.ping))

    async def run() -> None:
        actuator = build_actuator(settings)
        source = build_source(settings, policies)
        registry = Registry(target=settings.registry_target, token=settings.registry_token.get_secret_value(),
                            timeout=settings.upstream_timeout_seconds)
        relay = Relay(store=store, bootstrap_servers=settings.kafka_bootstrap, topic=settings.rollouts_topic,
                      telemetry=telemetry, poll_seconds=settings.outbox_poll_seconds)
        controller = Controller(
            store=store, registry=registry, actuator=actuator, source=source, policies=policies, telemetry=telemetry,
            config=Config(champion_alias=settings.champion_alias, challenger_alias=settings.challenger_alias,
                          tick_seconds=settings.tick_seconds, load_timeout_seconds=settings.load_timeout_seconds,
                          auto_models=tuple(settings.auto_models)),
            wake_relay=relay.wake,
        )
        loop = asyncio.get_running_loop()

        def handle(event: models_pb2.ModelEvent, _record: ConsumerRecord) -> None:
            asyncio.run_coroutine_threadsafe(controller.on_model_event(event), loop).result(timeout=120)

        consumer = AssignedConsumerLoop(
            bootstrap_servers=settings.kafka_bootstrap, group_id=settings.consumer_group,
            topics=[settings.models_topic], message_type=models_pb2.ModelEvent, handler=handle, metrics=metrics,
            client_id="loopline-rollout", max_poll_interval_ms=settings.max_poll_interval_ms,
        )
        readiness.add("model_events", lambda: consumer.assigned)
        api = RolloutApi(controller=controller, auth=auth)
        app = create_http_app(service=SLUG, metrics=metrics, readiness=readiness,
                              max_request_bytes=settings.max_request_bytes,
                              description="Loopline rollout controller: metric-gated canaries")
        add_routes(app, api)
        server = GrpcServer(metrics=metrics, readiness=readiness, host=settings.host, port=settings.grpc_port,
                            max_message_bytes=settings.max_request_bytes)
        server.add_service(rollout_pb2_grpc.add_RolloutServiceServicer_to_server, RolloutServicer(api), SERVICE)
        stop_loop = asyncio.Event()
        loop_task: asyncio.Task[None] | None = None

        def start_consumer() -> None:
            try:
                ensure_topics(settings.kafka_bootstrap, timeout_seconds=settings.upstream_timeout_seconds)
            except Exception as exc:
                log.warning("could not create the Kafka topics: %s", type(exc).__name__)
            consumer.start()

        async def on_start() -> None:
            nonlocal loop_task
            relay.start()
            loop_task = asyncio.create_task(controller.run(stop_loop))
            threading.Thread(target=start_consumer, name="rollout-consumer", daemon=True).start()

        async def on_stop() -> None:
            await asyncio.to_thread(consumer.stop, 5.0)
            stop_loop.set()
            if loop_task is not None:
                await loop_task
            await asyncio.to_thread(relay.stop)
            await actuator.close()
            await source.close()
            await registry.close()
            await asyncio.to_thread(store.close)

        await serve(service=SLUG, settings=settings, readiness=readiness, grpc_server=server, http_app=app,
                    on_start=on_start, on_stop=on_stop)

    asyncio.run(run())


if __name__ == "__main__":
    main()
