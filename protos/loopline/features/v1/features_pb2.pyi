import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from loopline.common.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FeatureStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FEATURE_STATUS_UNSPECIFIED: _ClassVar[FeatureStatus]
    FEATURE_STATUS_PRESENT: _ClassVar[FeatureStatus]
    FEATURE_STATUS_NOT_FOUND: _ClassVar[FeatureStatus]
    FEATURE_STATUS_EXPIRED: _ClassVar[FeatureStatus]
FEATURE_STATUS_UNSPECIFIED: FeatureStatus
FEATURE_STATUS_PRESENT: FeatureStatus
FEATURE_STATUS_NOT_FOUND: FeatureStatus
FEATURE_STATUS_EXPIRED: FeatureStatus

class FeatureRefs(_message.Message):
    __slots__ = ("refs",)
    REFS_FIELD_NUMBER: _ClassVar[int]
    refs: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, refs: _Optional[_Iterable[str]] = ...) -> None: ...

class EntityRow(_message.Message):
    __slots__ = ("join_keys", "request_data")
    class JoinKeysEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _types_pb2.Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_types_pb2.Value, _Mapping]] = ...) -> None: ...
    class RequestDataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _types_pb2.Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_types_pb2.Value, _Mapping]] = ...) -> None: ...
    JOIN_KEYS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_DATA_FIELD_NUMBER: _ClassVar[int]
    join_keys: _containers.MessageMap[str, _types_pb2.Value]
    request_data: _containers.MessageMap[str, _types_pb2.Value]
    def __init__(self, join_keys: _Optional[_Mapping[str, _types_pb2.Value]] = ..., request_data: _Optional[_Mapping[str, _types_pb2.Value]] = ...) -> None: ...

class FeatureValue(_message.Message):
    __slots__ = ("value", "status", "event_time")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    EVENT_TIME_FIELD_NUMBER: _ClassVar[int]
    value: _types_pb2.Value
    status: FeatureStatus
    event_time: _timestamp_pb2.Timestamp
    def __init__(self, value: _Optional[_Union[_types_pb2.Value, _Mapping]] = ..., status: _Optional[_Union[FeatureStatus, str]] = ..., event_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class FeatureVector(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedCompositeFieldContainer[FeatureValue]
    def __init__(self, values: _Optional[_Iterable[_Union[FeatureValue, _Mapping]]] = ...) -> None: ...

class GetOnlineFeaturesRequest(_message.Message):
    __slots__ = ("feature_service", "feature_refs", "entities")
    FEATURE_SERVICE_FIELD_NUMBER: _ClassVar[int]
    FEATURE_REFS_FIELD_NUMBER: _ClassVar[int]
    ENTITIES_FIELD_NUMBER: _ClassVar[int]
    feature_service: str
    feature_refs: FeatureRefs
    entities: _containers.RepeatedCompositeFieldContainer[EntityRow]
    def __init__(self, feature_service: _Optional[str] = ..., feature_refs: _Optional[_Union[FeatureRefs, _Mapping]] = ..., entities: _Optional[_Iterable[_Union[EntityRow, _Mapping]]] = ...) -> None: ...

class GetOnlineFeaturesResponse(_message.Message):
    __slots__ = ("feature_names", "results")
    FEATURE_NAMES_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    feature_names: _containers.RepeatedScalarFieldContainer[str]
    results: _containers.RepeatedCompositeFieldContainer[FeatureVector]
    def __init__(self, feature_names: _Optional[_Iterable[str]] = ..., results: _Optional[_Iterable[_Union[FeatureVector, _Mapping]]] = ...) -> None: ...

class HistoricalRow(_message.Message):
    __slots__ = ("values", "event_time")
    class ValuesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _types_pb2.Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_types_pb2.Value, _Mapping]] = ...) -> None: ...
    VALUES_FIELD_NUMBER: _ClassVar[int]
    EVENT_TIME_FIELD_NUMBER: _ClassVar[int]
    values: _containers.MessageMap[str, _types_pb2.Value]
    event_time: _timestamp_pb2.Timestamp
    def __init__(self, values: _Optional[_Mapping[str, _types_pb2.Value]] = ..., event_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetHistoricalFeaturesRequest(_message.Message):
    __slots__ = ("feature_service", "feature_refs", "rows", "entity_uri", "dataset_name")
    FEATURE_SERVICE_FIELD_NUMBER: _ClassVar[int]
    FEATURE_REFS_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    ENTITY_URI_FIELD_NUMBER: _ClassVar[int]
    DATASET_NAME_FIELD_NUMBER: _ClassVar[int]
    feature_service: str
    feature_refs: FeatureRefs
    rows: _containers.RepeatedCompositeFieldContainer[HistoricalRow]
    entity_uri: str
    dataset_name: str
    def __init__(self, feature_service: _Optional[str] = ..., feature_refs: _Optional[_Union[FeatureRefs, _Mapping]] = ..., rows: _Optional[_Iterable[_Union[HistoricalRow, _Mapping]]] = ..., entity_uri: _Optional[str] = ..., dataset_name: _Optional[str] = ...) -> None: ...

class GetHistoricalFeaturesResponse(_message.Message):
    __slots__ = ("uri", "row_count", "content_sha256", "columns")
    URI_FIELD_NUMBER: _ClassVar[int]
    ROW_COUNT_FIELD_NUMBER: _ClassVar[int]
    CONTENT_SHA256_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    uri: str
    row_count: int
    content_sha256: str
    columns: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, uri: _Optional[str] = ..., row_count: _Optional[int] = ..., content_sha256: _Optional[str] = ..., columns: _Optional[_Iterable[str]] = ...) -> None: ...

class MaterializeRequest(_message.Message):
    __slots__ = ("start_time", "end_time", "feature_views")
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    FEATURE_VIEWS_FIELD_NUMBER: _ClassVar[int]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    feature_views: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., feature_views: _Optional[_Iterable[str]] = ...) -> None: ...

class MaterializeResponse(_message.Message):
    __slots__ = ("feature_views", "start_time", "end_time")
    FEATURE_VIEWS_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    feature_views: _containers.RepeatedScalarFieldContainer[str]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    def __init__(self, feature_views: _Optional[_Iterable[str]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListFeatureServicesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListFeatureServicesResponse(_message.Message):
    __slots__ = ("feature_services",)
    FEATURE_SERVICES_FIELD_NUMBER: _ClassVar[int]
    feature_services: _containers.RepeatedCompositeFieldContainer[FeatureServiceInfo]
    def __init__(self, feature_services: _Optional[_Iterable[_Union[FeatureServiceInfo, _Mapping]]] = ...) -> None: ...

class GetFeatureServiceRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetFeatureServiceResponse(_message.Message):
    __slots__ = ("feature_service",)
    FEATURE_SERVICE_FIELD_NUMBER: _ClassVar[int]
    feature_service: FeatureServiceInfo
    def __init__(self, feature_service: _Optional[_Union[FeatureServiceInfo, _Mapping]] = ...) -> None: ...

class FeatureServiceInfo(_message.Message):
    __slots__ = ("name", "description", "tags", "features")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    tags: _containers.ScalarMap[str, str]
    features: _containers.RepeatedCompositeFieldContainer[FeatureInfo]
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., tags: _Optional[_Mapping[str, str]] = ..., features: _Optional[_Iterable[_Union[FeatureInfo, _Mapping]]] = ...) -> None: ...

class FeatureInfo(_message.Message):
    __slots__ = ("ref", "feature_view", "name", "value_type", "ttl", "join_keys", "on_demand")
    REF_FIELD_NUMBER: _ClassVar[int]
    FEATURE_VIEW_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_TYPE_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    JOIN_KEYS_FIELD_NUMBER: _ClassVar[int]
    ON_DEMAND_FIELD_NUMBER: _ClassVar[int]
    ref: str
    feature_view: str
    name: str
    value_type: str
    ttl: _duration_pb2.Duration
    join_keys: _containers.RepeatedScalarFieldContainer[str]
    on_demand: bool
    def __init__(self, ref: _Optional[str] = ..., feature_view: _Optional[str] = ..., name: _Optional[str] = ..., value_type: _Optional[str] = ..., ttl: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., join_keys: _Optional[_Iterable[str]] = ..., on_demand: _Optional[bool] = ...) -> None: ...
