"""The two transports of the features API, normalized so tests can assert the same thing over both."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import grpc
import httpx

from loopline.common.v1 import types_pb2
from loopline.features.v1 import features_pb2, features_pb2_grpc
from loopline_common.errors import GRPC_ERROR_DETAIL_KEY

STATUS = {1: "PRESENT", 2: "NOT_FOUND", 3: "EXPIRED"}


@dataclass
class Online:
    feature_names: list[str]
    values: list[list[Any]]
    statuses: list[list[str]]
    event_times: list[list[float | None]]


@dataclass
class CallError(Exception):
    code: str  # Loopline code
    message: str


def to_value(value: Any) -> types_pb2.Value:
    if isinstance(value, bool):
        return types_pb2.Value(bool_value=value)
    if isinstance(value, int):
        return types_pb2.Value(int64_value=value)
    if isinstance(value, float):
        return types_pb2.Value(double_value=value)
    return types_pb2.Value(string_value=value)


def from_value(value: types_pb2.Value) -> Any:
    kind = value.WhichOneof("kind")
    return None if kind is None else getattr(value, kind)


class GrpcClient:
    def __init__(self, target: str) -> None:
        self.channel = grpc.insecure_channel(target)
        self.stub = features_pb2_grpc.FeaturesServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def _call(self, method: str, request: Any, timeout: float = 60.0) -> Any:
        try:
            return getattr(self.stub, method)(request, timeout=timeout)
        except grpc.RpcError as exc:
            detail = dict(exc.trailing_metadata() or ()).get(GRPC_ERROR_DETAIL_KEY)
            code = types_pb2.ErrorDetail.FromString(detail).code if detail else exc.code().name
            raise CallError(code, exc.details() or "") from None

    def online(self, *, entities: list[dict[str, Any]], feature_service: str | None = None,
               features: list[str] | None = None, request_data: list[dict[str, Any]] | None = None,
               timeout: float = 60.0) -> Online:
        request = features_pb2.GetOnlineFeaturesRequest()
        if feature_service is not None:
            request.feature_service = feature_service
        if features is not None:
            request.feature_refs.refs.extend(features)
        for i, row in enumerate(entities):
            item = request.entities.add()
            for k, v in row.items():
                item.join_keys[k].CopyFrom(to_value(v))
            for k, v in (request_data[i] if request_data else {}).items():
                item.request_data[k].CopyFrom(to_value(v))
        reply = self._call("GetOnlineFeatures", request, timeout)
        values, statuses, times = [], [], []
        for vector in reply.results:
            values.append([from_value(v.value) for v in vector.values])
            statuses.append([STATUS[v.status] for v in vector.values])
            times.append([
                v.event_time.seconds + v.event_time.nanos / 1e9 if v.HasField("event_time") else None
                for v in vector.values
            ])
        return Online(list(reply.feature_names), values, statuses, times)

    def historical(self, *, rows: list[tuple[dict[str, Any], datetime]], feature_service: str | None = None,
                   features: list[str] | None = None, dataset_name: str = "test") -> dict[str, Any]:
        request = features_pb2.GetHistoricalFeaturesRequest(dataset_name=dataset_name)
        if feature_service is not None:
            request.feature_service = feature_service
        if features is not None:
            request.feature_refs.refs.extend(features)
        for values, when in rows:
            item = request.rows.add()
            for k, v in values.items():
                item.values[k].CopyFrom(to_value(v))
            item.event_time.FromDatetime(when)
        reply = self._call("GetHistoricalFeatures", request, 120.0)
        return {"uri": reply.uri, "row_count": reply.row_count, "content_sha256": reply.content_sha256,
                "columns": list(reply.columns)}

    def materialize(self, *, start: datetime | None = None, end: datetime | None = None,
                    feature_views: list[str] | None = None) -> list[str]:
        request = features_pb2.MaterializeRequest(feature_views=feature_views or [])
        if start is not None:
            request.start_time.FromDatetime(start)
        if end is not None:
            request.end_time.FromDatetime(end)
        return list(self._call("Materialize", request, 120.0).feature_views)

    def feature_service(self, name: str) -> dict[str, Any]:
        info = self._call("GetFeatureService", features_pb2.GetFeatureServiceRequest(name=name)).feature_service
        return {
            "name": info.name,
            "features": [
                {"ref": f.ref, "value_type": f.value_type, "on_demand": f.on_demand,
                 "ttl_seconds": f.ttl.seconds if f.HasField("ttl") else None, "join_keys": list(f.join_keys)}
                for f in info.features
            ],
        }

    def list_services(self) -> list[str]:
        reply = self._call("ListFeatureServices", features_pb2.ListFeatureServicesRequest())
        return [s.name for s in reply.feature_services]


class HttpClient:
    def __init__(self, base: str) -> None:
        self.client = httpx.Client(base_url=base, timeout=120.0)

    def close(self) -> None:
        self.client.close()

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None, timeout: float = 120.0) -> Any:
        try:
            response = self.client.request(method, path, json=body, timeout=timeout)
        except httpx.TimeoutException as exc:  # the client's deadline, named as gRPC names it
            raise CallError("DEADLINE_EXCEEDED", str(exc)) from None
        if response.status_code >= 400:
            error = response.json()["error"]
            raise CallError(error["code"], error["message"])
        return response.json()

    def online(self, *, entities: list[dict[str, Any]], feature_service: str | None = None,
               features: list[str] | None = None, request_data: list[dict[str, Any]] | None = None,
               timeout: float = 60.0) -> Online:
        body: dict[str, Any] = {"entities": entities}
        if feature_service is not None:
            body["feature_service"] = feature_service
        if features is not None:
            body["features"] = features
        if request_data is not None:
            body["request_data"] = request_data
        reply = self._call("POST", "/v1/online-features", body, timeout)
        return Online(
            reply["feature_names"],
            [r["values"] for r in reply["results"]],
            [r["statuses"] for r in reply["results"]],
            [[None if t is None else datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp()
              for t in r["event_times"]] for r in reply["results"]],
        )

    def historical(self, *, rows: list[tuple[dict[str, Any], datetime]], feature_service: str | None = None,
                   features: list[str] | None = None, dataset_name: str = "test") -> dict[str, Any]:
        body: dict[str, Any] = {
            "rows": [{"values": v, "event_time": t.isoformat()} for v, t in rows], "dataset_name": dataset_name,
        }
        if feature_service is not None:
            body["feature_service"] = feature_service
        if features is not None:
            body["features"] = features
        return dict(self._call("POST", "/v1/historical-features", body))

    def materialize(self, *, start: datetime | None = None, end: datetime | None = None,
                    feature_views: list[str] | None = None) -> list[str]:
        body: dict[str, Any] = {"feature_views": feature_views or []}
        if start is not None:
            body["start_time"] = start.isoformat()
        if end is not None:
            body["end_time"] = end.isoformat()
        return list(self._call("POST", "/v1/materialize", body)["feature_views"])

    def feature_service(self, name: str) -> dict[str, Any]:
        info = self._call("GET", f"/v1/feature-services/{name}")["feature_service"]
        return {
            "name": info["name"],
            "features": [
                {"ref": f["ref"], "value_type": f["value_type"], "on_demand": f["on_demand"],
                 "ttl_seconds": None if f["ttl_seconds"] is None else int(f["ttl_seconds"]),
                 "join_keys": f["join_keys"]}
                for f in info["features"]
            ],
        }

    def list_services(self) -> list[str]:
        return [s["name"] for s in self._call("GET", "/v1/feature-services")["feature_services"]]
