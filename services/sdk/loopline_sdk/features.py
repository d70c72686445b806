"""Features (FeaturesService): online features, materialization, feature services."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from loopline.common.v1 import types_pb2
from loopline.features.v1 import features_pb2 as pb
from loopline.features.v1 import features_pb2_grpc as pb_grpc
from loopline_sdk._base import BaseClient, stamp, when

Scalar = str | int | float | bool | None


def _value(v: types_pb2.Value) -> Scalar:
    kind = v.WhichOneof("kind")
    return None if kind is None else getattr(v, kind)


def _set(target: types_pb2.Value, value: Scalar) -> None:
    if isinstance(value, bool):
        target.bool_value = value
    elif isinstance(value, int):
        target.int64_value = value
    elif isinstance(value, float):
        target.double_value = value
    elif value is not None:
        target.string_value = str(value)


@dataclass(frozen=True)
class FeatureRow:
    """One entity's features by name, with each value's status (present, not_found, expired)."""

    values: dict[str, Scalar]
    status: dict[str, str]


@dataclass(frozen=True)
class Materialized:
    feature_views: tuple[str, ...]
    start: datetime | None
    end: datetime | None


class FeaturesClient(BaseClient):
    service = "features"

    def _stub(self, channel: Any) -> Any:
        return pb_grpc.FeaturesServiceStub(channel)  # type: ignore[no-untyped-call]

    def online(self, feature_service: str, entities: list[dict[str, Scalar]],
               request_data: list[dict[str, Scalar]] | None = None) -> list[FeatureRow]:
        """Online features of a feature service for each entity row (join keys, plus request data if any)."""
        request = pb.GetOnlineFeaturesRequest(feature_service=feature_service)
        for i, keys in enumerate(entities):
            row = request.entities.add()
            for name, value in keys.items():
                _set(row.join_keys[name], value)
            for name, value in (request_data[i] if request_data else {}).items():
                _set(row.request_data[name], value)
        reply = self._read("GetOnlineFeatures", request)
        names = list(reply.feature_names)
        rows = []
        for vector in reply.results:
            values = {n: _value(fv.value) for n, fv in zip(names, vector.values, strict=True)}
            status = {n: str(pb.FeatureStatus.Name(fv.status)).removeprefix("FEATURE_STATUS_").lower()
                      for n, fv in zip(names, vector.values, strict=True)}
            rows.append(FeatureRow(values=values, status=status))
        return rows

    def materialize(self, *, start: datetime | None = None, end: datetime | None = None,
                    feature_views: list[str] | None = None, timeout: float = 600.0) -> Materialized:
        """Load the offline history into the online store (idempotent: the same rows again)."""
        request = pb.MaterializeRequest(feature_views=feature_views or [])
        if start is not None:
            request.start_time.CopyFrom(stamp(start))
        if end is not None:
            request.end_time.CopyFrom(stamp(end))
        r = self._write("Materialize", request, idempotent=True, timeout=timeout)
        return Materialized(feature_views=tuple(r.feature_views), start=when(r.start_time, r.HasField("start_time")),
                            end=when(r.end_time, r.HasField("end_time")))

    def feature_services(self) -> list[str]:
        return [s.name for s in self._read("ListFeatureServices", pb.ListFeatureServicesRequest()).feature_services]
