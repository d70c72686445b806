"""gRPC transport of `loopline.features.v1.FeaturesService`: translate protos, call the core."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import grpc
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from loopline.common.v1 import types_pb2
from loopline.features.v1 import features_pb2, features_pb2_grpc
from loopline_common.errors import InvalidArgument
from loopline_features.backend import FeatureServiceDescription
from loopline_features.core import FeaturesCore

SERVICE_NAME = features_pb2.DESCRIPTOR.services_by_name["FeaturesService"].full_name


def from_value(value: types_pb2.Value) -> Any:
    kind = value.WhichOneof("kind")
    return None if kind is None else getattr(value, kind)


_VALUE_FIELD: dict[type, str] = {bool: "bool_value", int: "int64_value", float: "double_value", str: "string_value"}


def _time(ts: Timestamp) -> datetime | None:
    if not ts.seconds and not ts.nanos:
        return None
    return ts.ToDatetime(tzinfo=UTC)


def _selection(request: Any) -> tuple[str | None, list[str] | None]:
    which = request.WhichOneof("features")
    if which == "feature_service":
        return request.feature_service, None
    if which == "feature_refs":
        return None, list(request.feature_refs.refs)
    raise InvalidArgument("name a feature service or give feature_refs")


def describe(info: FeatureServiceDescription) -> features_pb2.FeatureServiceInfo:
    features = []
    for f in info.features:
        item = features_pb2.FeatureInfo(
            ref=f.ref, feature_view=f.feature_view, name=f.name, value_type=f.value_type,
            join_keys=list(f.join_keys), on_demand=f.on_demand,
        )
        if f.ttl_seconds is not None:
            item.ttl.CopyFrom(Duration(seconds=int(f.ttl_seconds)))
        features.append(item)
    return features_pb2.FeatureServiceInfo(
        name=info.name, description=info.description, tags=info.tags, features=features
    )


class FeaturesServicer(features_pb2_grpc.FeaturesServiceServicer):
    def __init__(self, core: FeaturesCore) -> None:
        self.core = core

    async def GetOnlineFeatures(
        self, request: features_pb2.GetOnlineFeaturesRequest, context: grpc.aio.ServicerContext
    ) -> features_pb2.GetOnlineFeaturesResponse:
        service, refs = _selection(request)
        entities = []
        request_data = []
        any_request_data = False
        for row in request.entities:
            entities.append({k: from_value(v) for k, v in row.join_keys.items()})
            data = {k: from_value(v) for k, v in row.request_data.items()} if row.request_data else {}
            any_request_data = any_request_data or bool(data)
            request_data.append(data)
        result = self.core.get_online_features(
            feature_service=service, refs=refs, entities=entities,
            request_data=request_data if any_request_data else None,
        )
        # Built in place with add() (no intermediate messages to copy): this loop is most of the cost of
        # a large response.
        response = features_pb2.GetOnlineFeaturesResponse(feature_names=result.feature_names)
        stamps: dict[float, tuple[int, int]] = {}
        for values, statuses, times in zip(result.values, result.statuses, result.event_times, strict=True):
            add = response.results.add().values.add
            for value, status, seconds in zip(values, statuses, times, strict=True):
                item = add(status=status)
                field = _VALUE_FIELD.get(type(value))
                if value is None:
                    item.value.SetInParent()
                elif field is None:  # any other scalar (bytes, ...) as text
                    item.value.string_value = str(value)
                else:
                    setattr(item.value, field, value)
                if seconds is not None:
                    parts = stamps.get(seconds)
                    if parts is None:
                        whole = math.floor(seconds)
                        parts = stamps[seconds] = (whole, round((seconds - whole) * 1e9) % 1_000_000_000)
                    item.event_time.seconds, item.event_time.nanos = parts
        return response

    async def GetHistoricalFeatures(
        self, request: features_pb2.GetHistoricalFeaturesRequest, context: grpc.aio.ServicerContext
    ) -> features_pb2.GetHistoricalFeaturesResponse:
        service, refs = _selection(request)
        rows = []
        for i, row in enumerate(request.rows):
            when = _time(row.event_time)
            if when is None:
                raise InvalidArgument(f"row {i} has no event_time", details={"row": str(i)})
            rows.append(({k: from_value(v) for k, v in row.values.items()}, when))
        done = await self.core.get_historical_features(
            feature_service=service, refs=refs, rows=rows, entity_uri=request.entity_uri,
            dataset_name=request.dataset_name,
        )
        return features_pb2.GetHistoricalFeaturesResponse(
            uri=done.uri, row_count=done.row_count, content_sha256=done.content_sha256, columns=done.columns
        )

    async def Materialize(
        self, request: features_pb2.MaterializeRequest, context: grpc.aio.ServicerContext
    ) -> features_pb2.MaterializeResponse:
        done = await self.core.materialize(
            start=_time(request.start_time), end=_time(request.end_time), feature_views=list(request.feature_views)
        )
        response = features_pb2.MaterializeResponse(feature_views=done.feature_views)
        if done.start is not None:
            response.start_time.FromDatetime(done.start)
        response.end_time.FromDatetime(done.end)
        return response

    async def ListFeatureServices(
        self, request: features_pb2.ListFeatureServicesRequest, context: grpc.aio.ServicerContext
    ) -> features_pb2.ListFeatureServicesResponse:
        return features_pb2.ListFeatureServicesResponse(
            feature_services=[describe(s) for s in self.core.list_feature_services()]
        )

    async def GetFeatureService(
        self, request: features_pb2.GetFeatureServiceRequest, context: grpc.aio.ServicerContext
    ) -> features_pb2.GetFeatureServiceResponse:
        return features_pb2.GetFeatureServiceResponse(
            feature_service=describe(self.core.get_feature_service(name=request.name))
        )
