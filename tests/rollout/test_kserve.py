"""The KServe actuator against kmock's in-memory Kubernetes API emulator (a real HTTP server speaking the
Kubernetes API and storing objects; no cluster runs here), through the official kubernetes client. The test
plays KServe's controller by writing the InferenceService's status through the same API."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import kmock
import pytest
from kubernetes import client
from loopline_rollout.actuators.base import Change
from loopline_rollout.actuators.kserve import GROUP, PLURAL, VERSION, KServeActuator, api_client
from loopline_rollout.policy import Policy
from loopline_rollout.store import RolloutRow

from loopline.events.v1 import rollouts_pb2 as ev
from loopline_common.errors import FailedPrecondition, NotFound

NAMESPACE = "models"


@dataclass
class Emulator:
    url: str
    handler: kmock.KubernetesEmulator

    def requests(self) -> list[tuple[str, str]]:
        return [(str(r.method).upper().rsplit(".", 1)[-1], str(r.url)) for r in list(self.handler)]


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    ready = threading.Event()
    box: dict[str, Any] = {}

    async def serve() -> None:
        async with kmock.KubernetesEmulator() as handler, kmock.Server(handler) as server:
            handler.resources[f"{GROUP}/{VERSION}/{PLURAL}"] = kmock.ResourceInfo(kind="InferenceService",
                                                                                 namespaced=True)
            box.update(handler=handler, url=str(server.url).rstrip("/"), loop=asyncio.get_running_loop(),
                       stop=asyncio.Event())
            ready.set()
            await box["stop"].wait()

    thread = threading.Thread(target=lambda: asyncio.run(serve()), daemon=True)
    thread.start()
    assert ready.wait(30)
    yield Emulator(box["url"], box["handler"])
    box["loop"].call_soon_threadsafe(box["stop"].set)
    thread.join(10)


def _isvc(name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "InferenceService",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"predictor": {"model": {"modelFormat": {"name": "onnx"}, "storageUri": "models:/fraud/6"},
                               "minReplicas": 1}},
    }


def _row(model: str) -> RolloutRow:
    now = datetime.now(UTC)
    return RolloutRow(rollout_id="r" * 32, model_name=model, candidate_version=7, champion_version=6,
                      phase="progressing", policy=Policy().to_json(), actuator="kserve", started_by="controller",
                      started_at=now, updated_at=now)


def _change(row: RolloutRow, decision: int = ev.DECISION_ADVANCE) -> Change:
    return Change(rollout=row, decision=ev.RolloutDecision(rollout_id=row.rollout_id, decision=decision,  # type: ignore[arg-type]
                                                         reason="step passed"))


def test_a_canary_is_driven_through_the_inference_service(emulator: Emulator) -> None:
    api = api_client(api_url=emulator.url)
    custom = client.CustomObjectsApi(api)
    custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, _isvc("fraud-isvc"))
    actuator = KServeActuator(api=api, namespace=NAMESPACE, storage_uri="models:/{model}/{version}",
                              names={"fraud": "fraud-isvc"}, timeout=10)
    row = _row("fraud")

    def spec() -> dict[str, Any]:
        got: dict[str, Any] = custom.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, "fraud-isvc")
        return got

    async def scenario() -> None:
        await actuator.prepare(_change(row))
        predictor = spec()["spec"]["predictor"]
        assert predictor["model"]["storageUri"] == "models:/fraud/7"
        assert predictor["canaryTrafficPercent"] == 0
        assert predictor["model"]["modelFormat"] == {"name": "onnx"} and predictor["minReplicas"] == 1  # merged
        assert spec()["metadata"]["annotations"]["serving.loopline.dev/candidate-version"] == "7"

        ready, why = await actuator.ready(row)
        assert not ready and "not Ready" in why
        # KServe's controller: the new revision is created, then ready.
        status = {"conditions": [{"type": "Ready", "status": "True"}],
                  "components": {"predictor": {"latestCreatedRevision": "fraud-isvc-predictor-00002",
                                               "latestReadyRevision": "fraud-isvc-predictor-00001"}}}
        custom.patch_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, "fraud-isvc", {"status": status})
        ready, why = await actuator.ready(row)
        assert not ready and "00002" in why
        status["components"]["predictor"]["latestReadyRevision"] = "fraud-isvc-predictor-00002"  # type: ignore[index]
        custom.patch_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, "fraud-isvc", {"status": status})
        assert (await actuator.ready(row)) == (True, "")

        for weight in (10, 50):
            await actuator.apply(_change(row), weight=weight, shadow=False)
            assert spec()["spec"]["predictor"]["canaryTrafficPercent"] == weight
        await actuator.promote(_change(row, ev.DECISION_PROMOTE))
        promoted = spec()["spec"]["predictor"]
        assert "canaryTrafficPercent" not in promoted  # removed: KServe rolls the new revision out at 100%
        assert promoted["model"]["storageUri"] == "models:/fraud/7"

        with pytest.raises(FailedPrecondition):
            await actuator.apply(_change(row), weight=0, shadow=True)

    asyncio.run(scenario())
    patches = [url for method, url in emulator.requests() if method == "PATCH" and "fraud-isvc" in url]
    assert len(patches) >= 4 and all(f"/apis/{GROUP}/{VERSION}/namespaces/{NAMESPACE}/{PLURAL}/" in u
                                     for u in patches)


def test_a_rollback_pins_all_traffic_to_the_previous_revision(emulator: Emulator) -> None:
    api = api_client(api_url=emulator.url)
    custom = client.CustomObjectsApi(api)
    custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, _isvc("scoring"))
    actuator = KServeActuator(api=api, namespace=NAMESPACE, storage_uri="s3://models/{model}/v{version}",
                              names={}, timeout=10)
    row = _row("scoring")

    async def scenario() -> None:
        await actuator.prepare(_change(row))
        await actuator.apply(_change(row), weight=20, shadow=False)
        await actuator.rollback(_change(row, ev.DECISION_ROLLBACK))

    asyncio.run(scenario())
    got = custom.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, "scoring")
    assert got["spec"]["predictor"]["canaryTrafficPercent"] == 0
    assert got["spec"]["predictor"]["model"]["storageUri"] == "s3://models/scoring/v7"


def test_a_missing_inference_service_is_not_found(emulator: Emulator) -> None:
    actuator = KServeActuator(api=api_client(api_url=emulator.url), namespace=NAMESPACE,
                              storage_uri="models:/{model}/{version}", names={}, timeout=10)
    with pytest.raises(NotFound):
        asyncio.run(actuator.ready(_row("nothing-here")))
