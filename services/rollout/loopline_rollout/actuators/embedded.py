"""The embedded actuator: the inference service holds both tracks and splits traffic by weight; the
controller sets the weight over its admin gRPC API (SetTrafficWeights) and reads what each track serves
(GetTracks). Inference follows the registry's aliases by itself, so "ready" means its challenger track
serves the candidate version."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from loopline.inference.v1 import inference_pb2, inference_pb2_grpc
from loopline_common.errors import NotFound
from loopline_common.grpc_client import ServiceClient
from loopline_rollout.actuators.base import Change
from loopline_rollout.store import RolloutRow

log = logging.getLogger(__name__)


class EmbeddedActuator:
    name = "embedded"

    def __init__(self, *, target: str, targets: dict[str, str], timeout: float, settle_seconds: float = 30.0) -> None:
        self.timeout = timeout
        self.settle_seconds = settle_seconds
        self._targets = dict(targets)
        self._default = target
        self._clients: dict[str, tuple[ServiceClient, inference_pb2_grpc.InferenceAdminServiceStub]] = {}

    def _client(self, model: str) -> tuple[ServiceClient, inference_pb2_grpc.InferenceAdminServiceStub]:
        target = self._targets.get(model, self._default)
        if not target:
            raise NotFound(f"no inference address for model '{model}' (LOOPLINE_ROLLOUT_INFERENCE_TARGET[S])")
        if target not in self._clients:
            client = ServiceClient(service="inference", target=target, timeout=self.timeout, asynchronous=True)
            stub = inference_pb2_grpc.InferenceAdminServiceStub(client.channel)  # type: ignore[no-untyped-call]
            self._clients[target] = (client, stub)
        return self._clients[target]

    async def tracks(self, model: str) -> inference_pb2.GetTracksResponse:
        client, stub = self._client(model)
        return await client.acall(stub.GetTracks, inference_pb2.GetTracksRequest(model_name=model), idempotent=True)

    @staticmethod
    def _version(tracks: inference_pb2.GetTracksResponse, track: str) -> int:
        return next((t.version for t in tracks.tracks if t.track == track), 0)

    async def ready(self, rollout: RolloutRow) -> tuple[bool, str]:
        tracks = await self.tracks(rollout.model_name)
        serving = self._version(tracks, "challenger")
        if serving != rollout.candidate_version:
            what = f"v{serving}" if serving else "nothing"
            return False, f"inference's challenger track serves {what}, waiting for v{rollout.candidate_version}"
        return True, ""

    async def _set(self, change: Change, weight: int, shadow: bool) -> None:
        client, stub = self._client(change.rollout.model_name)
        request = inference_pb2.SetTrafficWeightsRequest(
            model_name=change.rollout.model_name, challenger_weight=weight / 100.0, shadow=shadow,
            actor=change.decision.actor, reason=f"rollout {change.rollout.rollout_id}: {change.decision.reason}"[:500],
        )
        await client.acall(stub.SetTrafficWeights, request, idempotent=True)

    async def prepare(self, change: Change) -> dict[str, Any]:
        return {}  # inference loads the challenger by itself when the alias moves

    async def apply(self, change: Change, *, weight: int, shadow: bool) -> dict[str, Any]:
        await self._set(change, weight, shadow)
        return {}

    async def promote(self, change: Change) -> dict[str, Any]:
        # The registry moved the champion alias; inference loads the candidate on its champion track. Until it
        # does, the canary keeps its share, so users never fall back to the old champion in between.
        rollout = change.rollout
        deadline = time.monotonic() + self.settle_seconds
        while time.monotonic() < deadline:
            if self._version(await self.tracks(rollout.model_name), "champion") == rollout.candidate_version:
                break
            await asyncio.sleep(0.2)
        else:
            log.warning("inference did not load v%s as champion within %.0fs", rollout.candidate_version,
                        self.settle_seconds)
        await self._set(change, 0, False)
        return {}

    async def rollback(self, change: Change) -> dict[str, Any]:
        await self._set(change, 0, False)
        return {}

    async def close(self) -> None:
        for client, _ in self._clients.values():
            await client.aclose()
