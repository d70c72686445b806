"""Small adapters over the features and registry services (gRPC through loopline_common's ServiceClient:
deadlines, request ids, safe retries, server errors rebuilt as LooplineErrors)."""

from __future__ import annotations

from dataclasses import dataclass, field

from loopline.features.v1 import features_pb2, features_pb2_grpc
from loopline.registry.v1 import registry_pb2, registry_pb2_grpc
from loopline_common.errors import ErrorCode, InvalidArgument, LooplineError, Unavailable
from loopline_common.grpc_client import ServiceClient

# Big training sets travel as a parquet location, not in messages; answers stay small.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class FeatureServiceInfo:
    name: str
    features: list[str]
    join_keys: list[str]


@dataclass(frozen=True)
class HistoricalFeatures:
    uri: str
    row_count: int
    content_sha256: str
    columns: list[str] = field(default_factory=list)


class FeaturesClient:
    def __init__(self, *, target: str, timeout: float = 10.0) -> None:
        self._client = ServiceClient(service="features", target=target, timeout=timeout,
                                     max_message_bytes=MAX_MESSAGE_BYTES)
        self._stub = features_pb2_grpc.FeaturesServiceStub(self._client.channel)  # type: ignore[no-untyped-call]

    def feature_service(self, name: str) -> FeatureServiceInfo:
        """The feature service `name`; InvalidArgument naming it when it does not exist."""
        try:
            response = self._client.call(self._stub.GetFeatureService, features_pb2.GetFeatureServiceRequest(name=name),
                                         idempotent=True)
        except LooplineError as exc:
            if exc.code == ErrorCode.NOT_FOUND:
                raise InvalidArgument(f"unknown feature service {name!r}: the features service has none by that name",
                                      details={"spec.feature_service": f"unknown feature service {name!r}"}) from None
            if exc.code in (ErrorCode.UNAVAILABLE, ErrorCode.DEADLINE_EXCEEDED):
                raise Unavailable(f"cannot check feature service {name!r}: the features service is unavailable "
                                  f"({exc.message})") from None
            raise
        info = response.feature_service
        join_keys = sorted({key for feature in info.features for key in feature.join_keys})
        return FeatureServiceInfo(name=info.name, features=[f.name for f in info.features], join_keys=join_keys)

    def check_feature_service(self, name: str) -> None:
        self.feature_service(name)

    def historical(self, *, feature_service: str, entity_uri: str, dataset_name: str,
                   timeout: float | None = None) -> HistoricalFeatures:
        request = features_pb2.GetHistoricalFeaturesRequest(
            feature_service=feature_service, entity_uri=entity_uri, dataset_name=dataset_name
        )
        # Same entities, same dataset name: the same training set, so a retry is safe.
        response = self._client.call(self._stub.GetHistoricalFeatures, request, idempotent=True, timeout=timeout)
        return HistoricalFeatures(uri=response.uri, row_count=response.row_count,
                                  content_sha256=response.content_sha256, columns=list(response.columns))

    def close(self) -> None:
        self._client.close()


@dataclass(frozen=True)
class Registration:
    version: int
    created: bool
    challenger_set: bool


class RegistryClient:
    def __init__(self, *, target: str, token: str = "", timeout: float = 60.0) -> None:
        self._client = ServiceClient(service="registry", target=target, token=token or None, timeout=timeout)
        self._stub = registry_pb2_grpc.RegistryServiceStub(self._client.channel)  # type: ignore[no-untyped-call]

    def register(
        self, *, model_name: str, run_id: str, logged_model_id: str, metrics: dict[str, float],
        training_set_hash: str, feature_service: str, code_version: str, parent_version: int, trigger: str,
        reason: str, onnx_parity_passed: bool, tags: dict[str, str], description: str, make_challenger: bool,
        idempotency_key: str,
    ) -> Registration:
        request = registry_pb2.RegisterVersionRequest(
            model_name=model_name, run_id=run_id, logged_model_id=logged_model_id, metrics=metrics,
            training_set_hash=training_set_hash, feature_service=feature_service, code_version=code_version,
            parent_version=parent_version, trigger=trigger, reason=reason, onnx_parity_passed=onnx_parity_passed,
            tags=tags, description=description, make_challenger=make_challenger, idempotency_key=idempotency_key,
        )
        # The idempotency key makes a retry return the first registration: safe to retry.
        response = self._client.call(self._stub.RegisterVersion, request, idempotent=True)
        return Registration(version=response.version.version, created=response.created,
                            challenger_set=response.challenger_set)

    def close(self) -> None:
        self._client.close()
