"""Loopline's Python client SDK: one client per service over gRPC (inference also over REST).

Every client takes the service's address, an optional bearer token and a default deadline; each call
carries a request id; failures raise the server's `loopline_common.errors.LooplineError` subclass; reads
(and writes the server de-duplicates) are retried on UNAVAILABLE and DEADLINE_EXCEEDED with jittered
exponential back-off inside the call's deadline, other writes never. Results are frozen dataclasses.

    from loopline_sdk import Endpoints
    with Endpoints.local().registry() as registry:
        print(registry.aliases("fraud"))
"""

from __future__ import annotations

from dataclasses import dataclass

from loopline_sdk.features import FeatureRow, FeaturesClient, Materialized
from loopline_sdk.inference import InferenceClient, Prediction, Tensor, Tracks, TrackState, entity_tensors
from loopline_sdk.monitoring import CanaryAnalysis, DriftStatus, DriftWindow, FeatureDrift, MonitoringClient
from loopline_sdk.registry import AuditEntry, Lineage, ModelVersion, Promotion, RegistryClient, VersionLineage
from loopline_sdk.rollout import Check, Decision, Rollout, RolloutClient
from loopline_sdk.training import Job, JobSpec, TrainingClient

__all__ = [
    "AuditEntry", "CanaryAnalysis", "Check", "Decision", "DriftStatus", "DriftWindow", "Endpoints", "FeatureDrift",
    "FeatureRow", "FeaturesClient", "InferenceClient", "Job", "JobSpec", "Lineage", "Materialized", "ModelVersion",
    "MonitoringClient", "Prediction", "Promotion", "RegistryClient", "Rollout", "RolloutClient", "Tensor",
    "TrackState", "Tracks", "TrainingClient", "VersionLineage", "entity_tensors",
]


@dataclass(frozen=True)
class Endpoints:
    """Where each service answers (gRPC host:port; inference also its HTTP base URL), and the token to send."""

    registry_target: str = "127.0.0.1:9083"
    features_target: str = "127.0.0.1:9082"
    training_target: str = "127.0.0.1:9085"
    monitoring_target: str = "127.0.0.1:9086"
    inference_target: str = "127.0.0.1:8081"
    inference_url: str = "http://127.0.0.1:8080"
    rollout_target: str = "127.0.0.1:9087"
    token: str | None = None
    timeout: float = 10.0

    @classmethod
    def local(cls, *, offset: int = 0, token: str | None = None) -> Endpoints:
        """The embedded stack's default addresses, shifted by `offset` (loopline up --port-offset)."""

        def at(port: int) -> str:
            return f"127.0.0.1:{port + offset}"

        return cls(registry_target=at(9083), features_target=at(9082), training_target=at(9085),
                   monitoring_target=at(9086), inference_target=at(8081), inference_url=f"http://{at(8080)}",
                   rollout_target=at(9087), token=token)

    def registry(self) -> RegistryClient:
        return RegistryClient(self.registry_target, token=self.token, timeout=self.timeout)

    def features(self) -> FeaturesClient:
        return FeaturesClient(self.features_target, token=self.token, timeout=self.timeout)

    def training(self) -> TrainingClient:
        return TrainingClient(self.training_target, token=self.token, timeout=self.timeout)

    def monitoring(self) -> MonitoringClient:
        return MonitoringClient(self.monitoring_target, token=self.token, timeout=self.timeout)

    def inference(self) -> InferenceClient:
        return InferenceClient(self.inference_target, http_url=self.inference_url, token=self.token)

    def rollout(self) -> RolloutClient:
        return RolloutClient(self.rollout_target, token=self.token, timeout=self.timeout)
