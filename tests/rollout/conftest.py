"""Fixtures of the rollout tests: the session's MLflow server and registry tokens (shared with the registry
tests), and the embedded stack of one module, started once and stopped at its end."""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from loopline_registry.auth import Role

from loopline.registry.v1 import registry_pb2 as rpb
from tests.helpers import Broker, running_broker
from tests.registry.clients import start_registry
from tests.registry.conftest import mlflow_server, token, tokens_file  # noqa: F401 - fixtures used here
from tests.rollout.support import (
    Stack,
    Traffic,
    start_prometheus,
    start_service,
    stop_prometheus,
    wait_until,
)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """This module's own broker. The registry's consumer groups have fixed names, earlier tests SIGKILL
    registries, and noida-db (unlike Apache Kafka) never evicts a killed group member: on the session's
    broker this module's registry could be left without partitions and never record a decision."""
    with running_broker(tmp_path_factory.mktemp("rollout-kafka")) as b:
        yield b



# Monitoring's drift policy for the tests: small windows, so the input-drift check has data within seconds.
DRIFT_POLICY = {"default": {"window_records": 300, "window_seconds": 0, "min_window_records": 100,
                            "prediction_triggers": False, "drift_share": 0.5, "cooldown_seconds": 0}}


def build_stack(folder: Path, *, mlflow: str, broker: Broker, tokens: Path, policy: dict[str, object],
                prometheus: bool = True) -> Stack:
    model = f"fraud-{uuid.uuid4().hex[:8]}"
    stack = Stack(model=model, folder=folder, mlflow=mlflow, broker=broker.bootstrap, tokens_file=tokens,
                  trainer_token=token(Role.TRAINER), releaser_token=token(Role.RELEASER))
    try:
        (folder / "profiles").mkdir(parents=True, exist_ok=True)
        stack.registry = start_registry([sys.executable, "-m", "loopline_registry"], {
            "LOOPLINE_REGISTRY_MLFLOW_URI": mlflow, "LOOPLINE_REGISTRY_KAFKA_BOOTSTRAP": broker.bootstrap,
            "LOOPLINE_REGISTRY_TOKENS_FILE": str(tokens), "LOOPLINE_REGISTRY_ANONYMOUS_READS": "true",
            "LOOPLINE_REGISTRY_STORE_URL": f"sqlite:///{folder / 'registry.db'}",
            "LOOPLINE_REGISTRY_INSTANCE_ID": f"rollout-tests-{model}",
            "LOOPLINE_REGISTRY_READINESS_INTERVAL_SECONDS": "0.2",
            "LOOPLINE_REGISTRY_OUTBOX_POLL_SECONDS": "0.2", "LOOPLINE_REGISTRY_SHUTDOWN_GRACE_SECONDS": "1",
        })
        # The first version is the champion before anything serves.
        first = stack.register("good", challenger=False)
        stack.registry.grpc.call("Promote", rpb.PromoteRequest(model_name=model, version=first, reason="first"),
                                 token=stack.releaser_token)
        stack.inference = start_service("loopline_inference", "LOOPLINE_INFERENCE_", {
            "LOOPLINE_INFERENCE_MODEL_NAME": model, "LOOPLINE_INFERENCE_MODEL": f"{model}@champion",
            "LOOPLINE_INFERENCE_CHALLENGER": f"{model}@challenger",
            "LOOPLINE_INFERENCE_REGISTRY_ADDRESS": f"127.0.0.1:{stack.registry.grpc_port}",
            "LOOPLINE_INFERENCE_KAFKA_BOOTSTRAP": broker.bootstrap, "LOOPLINE_INFERENCE_READY_WITHOUT_MODEL": "true",
            "LOOPLINE_INFERENCE_INTRA_OP_THREADS": "1", "LOOPLINE_INFERENCE_INSTANCE_ID": f"rollout-tests-{model}",
        })
        wait_until(lambda: stack.serving("champion") == first, timeout=60, what="inference serving the champion")
        (folder / "drift-policy.json").write_text(json.dumps(DRIFT_POLICY))
        stack.monitoring = start_service("loopline_monitoring", "LOOPLINE_MONITORING_", {
            "LOOPLINE_MONITORING_KAFKA_BOOTSTRAP": broker.bootstrap,
            "LOOPLINE_MONITORING_STATE_DIR": str(folder / "monitoring"),
            "LOOPLINE_MONITORING_PROFILE_DIR": str(folder / "profiles"),
            "LOOPLINE_MONITORING_POLICY_FILE": str(folder / "drift-policy.json"),
            "LOOPLINE_MONITORING_CONSUMER_GROUP": f"monitoring-{model}",
            "LOOPLINE_MONITORING_CANARY_MIN_RECORDS": "100",
            "LOOPLINE_MONITORING_TICK_SECONDS": "0.2", "LOOPLINE_MONITORING_MAX_POLL_INTERVAL_MS": "10000",
        })
        if prometheus:
            stack.prometheus, stack.prometheus_url = start_prometheus(
                folder / "prometheus", [stack.inference.http.removeprefix("http://")])
        (folder / "rollout-policy.json").write_text(json.dumps(policy))
        stack.rollout_env = {
            "LOOPLINE_ROLLOUT_KAFKA_BOOTSTRAP": broker.bootstrap,
            "LOOPLINE_ROLLOUT_STORE_URL": f"sqlite:///{folder / 'rollout.db'}",
            "LOOPLINE_ROLLOUT_REGISTRY_TARGET": f"127.0.0.1:{stack.registry.grpc_port}",
            "LOOPLINE_ROLLOUT_REGISTRY_TOKEN": stack.releaser_token,
            "LOOPLINE_ROLLOUT_TOKENS_FILE": str(tokens),
            "LOOPLINE_ROLLOUT_POLICY_FILE": str(folder / "rollout-policy.json"),
            "LOOPLINE_ROLLOUT_MONITORING_TARGET": stack.monitoring.grpc,
            "LOOPLINE_ROLLOUT_INFERENCE_TARGET": stack.inference.grpc,
            "LOOPLINE_ROLLOUT_PROMETHEUS_URL": stack.prometheus_url,
            "LOOPLINE_ROLLOUT_AUTO_MODELS": json.dumps([model]),
            "LOOPLINE_ROLLOUT_CONSUMER_GROUP": f"rollout-{model}",
            # a killed controller's group membership ends within seconds, not minutes
            "LOOPLINE_ROLLOUT_MAX_POLL_INTERVAL_MS": "10000",
            "LOOPLINE_ROLLOUT_TICK_SECONDS": "0.1", "LOOPLINE_ROLLOUT_UPSTREAM_TIMEOUT_SECONDS": "5",
            "LOOPLINE_ROLLOUT_LOAD_TIMEOUT_SECONDS": "60", "LOOPLINE_ROLLOUT_OUTBOX_POLL_SECONDS": "0.2",
        }
        stack.start_rollout_service()
        stack.traffic = Traffic(stack.inference.http, model)
    except BaseException:
        teardown_stack(stack)
        raise
    return stack


def teardown_stack(stack: Stack) -> None:
    if stack.traffic is not None:
        stack.traffic.stop()
    if stack.client is not None:
        stack.client.close()
    for process in (stack.rollout, stack.monitoring, stack.inference):
        if process is not None:
            process.stop()
    stop_prometheus(stack.prometheus)
    if stack.registry is not None:
        stack.registry.close()


@pytest.fixture(scope="module")
def stack_factory(mlflow_server: str, broker: Broker, tokens_file: Path,  # noqa: F811
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Stack]]:
    started: list[Stack] = []

    def make(policy: dict[str, object], **kwargs: bool) -> Stack:
        stack = build_stack(tmp_path_factory.mktemp("rollout-stack"), mlflow=mlflow_server, broker=broker,
                            tokens=tokens_file, policy=policy, **kwargs)
        started.append(stack)
        return stack

    yield make
    for stack in started:
        teardown_stack(stack)
