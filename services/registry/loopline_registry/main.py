"""Assemble and run the registry: settings, store, MLflow adapter, cache, core, relay, consumers, both
transports. Everything is built in `main()`; nothing touches disk or network at import time."""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
import threading
import uuid
from collections.abc import Callable
from functools import partial
from typing import Any, NoReturn

from loopline.events.v1 import models_pb2, rollouts_pb2
from loopline.registry.v1 import registry_pb2_grpc
from loopline_common.grpc_server import GrpcServer
from loopline_common.http_app import create_http_app
from loopline_common.kafka_io import ConsumerLoop
from loopline_common.logs import configure_logging
from loopline_common.metrics import ServiceMetrics
from loopline_common.readiness import Readiness
from loopline_common.runner import load_settings_or_exit, serve
from loopline_common.topics import ensure_topics
from loopline_registry.api import SERVICE, RegistryApi
from loopline_registry.auth import TokenAuth, TokenConfigError
from loopline_registry.cache import ReadCache
from loopline_registry.core import CoreConfig, RegistryCore
from loopline_registry.events import invalidating_handler, rollout_handler
from loopline_registry.grpc_api import RegistryServicer
from loopline_registry.http_api import add_routes
from loopline_registry.mlflow_rest import MlflowRest
from loopline_registry.policy import PolicyError, load_policy_file
from loopline_registry.relay import Relay
from loopline_registry.settings import FAULT_POINTS, RegistrySettings
from loopline_registry.store import Store

log = logging.getLogger("loopline_registry")

SERVICE_SLUG = "registry"


def _threadsafe(loop: asyncio.AbstractEventLoop, fn: Callable[[str], None], name: str) -> None:
    loop.call_soon_threadsafe(fn, name)


def _exit(message: str) -> NoReturn:
    print(f"loopline-registry: {message}", file=sys.stderr)
    raise SystemExit(2)


def main() -> None:
    settings = load_settings_or_exit(RegistrySettings)
    configure_logging(service=SERVICE_SLUG, level=settings.log_level)
    # One line per MLflow request is noise (and costs time on the hot path); failures are logged by the core.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    faults = frozenset(p.strip() for p in settings.test_faults.split(",") if p.strip())
    if faults - set(FAULT_POINTS):
        _exit(f"LOOPLINE_REGISTRY_TEST_FAULTS: unknown point(s) {sorted(faults - set(FAULT_POINTS))}")
    try:
        auth = TokenAuth.load(tokens_file=settings.tokens_file, tokens_json=settings.tokens.get_secret_value(),
                              anonymous_reads=settings.anonymous_reads)
        policies = load_policy_file(settings.policy_file)
    except (TokenConfigError, PolicyError) as exc:
        _exit(str(exc))
    if auth.token_count == 0:
        log.warning("no API tokens configured: every mutation will be refused")

    instance = settings.instance_id or socket.gethostname()
    owner = f"{instance}/{uuid.uuid4().hex[:12]}"  # this boot of this instance
    metrics = ServiceMetrics(SERVICE_SLUG)
    readiness = Readiness()

    store = Store(settings.store_url)
    try:
        store.create_schema()
    except Exception as exc:
        _exit(f"cannot open the store {settings.store_url.split('@')[-1]}: {type(exc).__name__}: {exc}")
    readiness.add("store", lambda: asyncio.to_thread(store.ping))

    async def run() -> None:
        mlflow = MlflowRest(base_url=settings.mlflow_uri, timeout=settings.mlflow_timeout_seconds,
                            retry_after=settings.mlflow_retry_after_seconds,
                            artifact_timeout=settings.artifact_timeout_seconds)
        cache = ReadCache(ttl_seconds=settings.cache_ttl_seconds, max_entries=settings.cache_max_entries)
        core = RegistryCore(
            mlflow=mlflow, store=store, cache=cache, policies=policies, metrics=metrics,
            config=CoreConfig(
                champion=settings.champion_alias, challenger=settings.challenger_alias,
                model_file=settings.model_file, profile_file=settings.profile_file,
                models_topic=settings.models_topic, max_artifact_bytes=settings.max_artifact_bytes, owner=owner,
                faults=faults,
            ),
        )
        relay = Relay(
            store=store, bootstrap_servers=settings.kafka_bootstrap, client_id=f"registry-outbox-{instance}",
            owner=owner, instance=instance, recover=core.recover, metrics=metrics,
            poll_seconds=settings.outbox_poll_seconds, kafka_timeout_seconds=settings.kafka_timeout_seconds,
            intent_timeout_seconds=settings.intent_timeout_seconds, faults=faults,
        )
        core.wake_relay = relay.wake
        metrics.gauge("mlflow_available", "1 while MLflow answers, 0 after it failed to").set_function(
            lambda: 1.0 if mlflow.available else 0.0
        )
        metrics.gauge("cache_entries", "Entries in the read cache").set_function(lambda: float(len(cache)))

        loop = asyncio.get_running_loop()
        consumers: list[ConsumerLoop[Any]] = [
            ConsumerLoop(
                bootstrap_servers=settings.kafka_bootstrap, group_id=f"loopline-registry-cache-{instance}",
                topics=[settings.models_topic], message_type=models_pb2.ModelEvent,
                handler=invalidating_handler(partial(_threadsafe, loop, cache.invalidate_model)),
                metrics=metrics, client_id=f"registry-cache-{instance}",
            ),
            ConsumerLoop(
                bootstrap_servers=settings.kafka_bootstrap, group_id="loopline-registry-rollouts",
                topics=[settings.rollouts_topic], message_type=rollouts_pb2.RolloutDecision,
                handler=rollout_handler(store), metrics=metrics, client_id=f"registry-rollouts-{instance}",
            ),
        ]

        def start_consumers() -> None:
            # Topics first, so the consumers are assigned at once rather than at their next metadata refresh.
            try:
                ensure_topics(settings.kafka_bootstrap, timeout_seconds=settings.kafka_timeout_seconds)
            except Exception as exc:
                log.warning("could not create the Kafka topics: %s", type(exc).__name__)
            for consumer in consumers:
                consumer.start()

        api = RegistryApi(core=core, auth=auth)
        app = create_http_app(service=SERVICE_SLUG, metrics=metrics, readiness=readiness,
                              max_request_bytes=settings.max_request_bytes,
                              description="Model registry proxy over MLflow")
        add_routes(app, api)
        server = GrpcServer(metrics=metrics, readiness=readiness, host=settings.host, port=settings.grpc_port,
                            max_message_bytes=settings.max_request_bytes)
        server.add_service(registry_pb2_grpc.add_RegistryServiceServicer_to_server, RegistryServicer(api), SERVICE)

        async def on_start() -> None:
            relay.start()
            threading.Thread(target=start_consumers, name="registry-consumers", daemon=True).start()

        async def on_stop() -> None:
            await relay.stop()
            await asyncio.gather(*(asyncio.to_thread(c.stop, 5.0) for c in consumers))
            await mlflow.close()
            await asyncio.to_thread(store.close)

        await serve(service=SERVICE_SLUG, settings=settings, readiness=readiness, grpc_server=server, http_app=app,
                    on_start=on_start, on_stop=on_stop)

    asyncio.run(run())


if __name__ == "__main__":
    main()
