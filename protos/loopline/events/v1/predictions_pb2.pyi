import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from loopline.common.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Track(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRACK_UNSPECIFIED: _ClassVar[Track]
    TRACK_CHAMPION: _ClassVar[Track]
    TRACK_CHALLENGER: _ClassVar[Track]
    TRACK_SHADOW: _ClassVar[Track]
TRACK_UNSPECIFIED: Track
TRACK_CHAMPION: Track
TRACK_CHALLENGER: Track
TRACK_SHADOW: Track

class PredictionRecord(_message.Message):
    __slots__ = ("request_id", "time", "model_name", "model_version", "track", "entity_ids", "features", "outputs", "latency_us", "protocol", "status")
    class EntityIdsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class FeaturesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _types_pb2.Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_types_pb2.Value, _Mapping]] = ...) -> None: ...
    class OutputsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    TRACK_FIELD_NUMBER: _ClassVar[int]
    ENTITY_IDS_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_US_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    time: _timestamp_pb2.Timestamp
    model_name: str
    model_version: int
    track: Track
    entity_ids: _containers.ScalarMap[str, str]
    features: _containers.MessageMap[str, _types_pb2.Value]
    outputs: _containers.ScalarMap[str, float]
    latency_us: int
    protocol: str
    status: str
    def __init__(self, request_id: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., model_name: _Optional[str] = ..., model_version: _Optional[int] = ..., track: _Optional[_Union[Track, str]] = ..., entity_ids: _Optional[_Mapping[str, str]] = ..., features: _Optional[_Mapping[str, _types_pb2.Value]] = ..., outputs: _Optional[_Mapping[str, float]] = ..., latency_us: _Optional[int] = ..., protocol: _Optional[str] = ..., status: _Optional[str] = ...) -> None: ...

class PredictionLogBatch(_message.Message):
    __slots__ = ("batch_id", "producer_instance", "records")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    PRODUCER_INSTANCE_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    batch_id: str
    producer_instance: str
    records: _containers.RepeatedCompositeFieldContainer[PredictionRecord]
    def __init__(self, batch_id: _Optional[str] = ..., producer_instance: _Optional[str] = ..., records: _Optional[_Iterable[_Union[PredictionRecord, _Mapping]]] = ...) -> None: ...
