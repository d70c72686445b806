"""The KServe actuator: drives the canary of an InferenceService (serving.kserve.io/v1beta1) through the
Kubernetes API with the official client. KServe splits traffic between the last revision rolled out at 100%
and the newest one by `spec.predictor.canaryTrafficPercent`; it never decides (kserve#3085), this does:

* start: the predictor's storageUri becomes the candidate's, canaryTrafficPercent 0 (a new revision, no traffic);
* ready: the InferenceService reports Ready and its newest revision is the ready one;
* each step: canaryTrafficPercent = the step's weight;
* promote: canaryTrafficPercent removed (KServe then rolls the new revision out at 100%);
* rollback: canaryTrafficPercent 0 (KServe pins all traffic to the previous rolled-out revision).

Patches are JSON merge patches; every patch also sets the annotations naming the rollout and version.
"""

from __future__ import annotations

import asyncio
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from loopline_common.errors import FailedPrecondition, NotFound, Unavailable
from loopline_rollout.actuators.base import Change
from loopline_rollout.store import RolloutRow

GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
ANNOTATION = "serving.loopline.dev/"


def api_client(*, api_url: str = "", kubeconfig: str = "") -> client.ApiClient:
    """A plain URL (tests, `kubectl proxy`), a kubeconfig, or the in-cluster service account."""
    from kubernetes import config

    if api_url:
        configuration = client.Configuration()
        configuration.host = api_url.rstrip("/")
        return client.ApiClient(configuration)
    if kubeconfig:
        made: client.ApiClient = config.new_client_from_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
        return made
    config.load_incluster_config()  # type: ignore[no-untyped-call]
    return client.ApiClient()


class KServeActuator:
    name = "kserve"

    def __init__(self, *, api: client.ApiClient, namespace: str, storage_uri: str, names: dict[str, str],
                 timeout: float) -> None:
        self.api = api
        self.custom = client.CustomObjectsApi(api)
        self.namespace = namespace
        self.storage_uri = storage_uri
        self.names = dict(names)
        self.timeout = timeout

    def _name(self, model: str) -> str:
        return self.names.get(model, model)

    def uri(self, model: str, version: int) -> str:
        return self.storage_uri.format(model=model, version=version)

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs, _request_timeout=self.timeout)
        except ApiException as exc:
            if exc.status == 404:
                raise NotFound(f"InferenceService {self.namespace}/{args[-1]} not found") from None
            raise Unavailable(f"Kubernetes API answered {exc.status}: {exc.reason}") from None
        except Exception as exc:  # connection refused, timeouts
            raise Unavailable(f"Kubernetes API unreachable: {type(exc).__name__}") from None

    async def get(self, model: str) -> dict[str, Any]:
        obj: dict[str, Any] = await asyncio.to_thread(
            self._call, self.custom.get_namespaced_custom_object, GROUP, VERSION, self.namespace, PLURAL,
            self._name(model))
        return obj

    async def _patch(self, change: Change, predictor: dict[str, Any]) -> dict[str, Any]:
        r = change.rollout
        body = {
            "metadata": {"annotations": {ANNOTATION + "rollout-id": r.rollout_id,
                                         ANNOTATION + "candidate-version": str(r.candidate_version),
                                         ANNOTATION + "decision": change.decision.reason[:200]}},
            "spec": {"predictor": predictor},
        }
        name = self._name(r.model_name)
        await asyncio.to_thread(self._call, self.custom.patch_namespaced_custom_object, GROUP, VERSION,
                                self.namespace, PLURAL, name, body)
        return {"inference_service": f"{self.namespace}/{name}"}

    async def ready(self, rollout: RolloutRow) -> tuple[bool, str]:
        obj = await self.get(rollout.model_name)
        predictor = obj.get("spec", {}).get("predictor", {})
        if predictor.get("model", {}).get("storageUri") != self.uri(rollout.model_name, rollout.candidate_version):
            return False, "the InferenceService does not name the candidate yet"
        status = obj.get("status", {})
        conditions = {c.get("type"): c.get("status") for c in status.get("conditions", [])}
        if conditions.get("Ready") != "True":
            return False, "the InferenceService is not Ready"
        component = status.get("components", {}).get("predictor", {})
        latest, ready = component.get("latestCreatedRevision"), component.get("latestReadyRevision")
        if latest and latest != ready:
            return False, f"revision {latest} is not ready yet"
        return True, ""

    async def prepare(self, change: Change) -> dict[str, Any]:
        """Point the predictor at the candidate with no traffic (a new revision)."""
        r = change.rollout
        if r.weight:
            raise FailedPrecondition("deploy only before the first step")
        return await self._patch(change, {"canaryTrafficPercent": 0,
                                          "model": {"storageUri": self.uri(r.model_name, r.candidate_version)}})

    async def apply(self, change: Change, *, weight: int, shadow: bool) -> dict[str, Any]:
        if shadow:
            raise FailedPrecondition("KServe has no shadow traffic; use the embedded actuator for a shadow phase")
        return await self._patch(change, {"canaryTrafficPercent": weight})

    async def promote(self, change: Change) -> dict[str, Any]:
        return await self._patch(change, {"canaryTrafficPercent": None})

    async def rollback(self, change: Change) -> dict[str, Any]:
        return await self._patch(change, {"canaryTrafficPercent": 0})

    async def close(self) -> None:
        await asyncio.to_thread(self.api.close)
