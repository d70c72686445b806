import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from loopline.events.v1 import meta_pb2 as _meta_pb2
from loopline.events.v1 import predictions_pb2 as _predictions_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FeatureDrift(_message.Message):
    __slots__ = ("feature", "method", "score", "threshold", "p_value", "drifted")
    FEATURE_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    P_VALUE_FIELD_NUMBER: _ClassVar[int]
    DRIFTED_FIELD_NUMBER: _ClassVar[int]
    feature: str
    method: str
    score: float
    threshold: float
    p_value: float
    drifted: bool
    def __init__(self, feature: _Optional[str] = ..., method: _Optional[str] = ..., score: _Optional[float] = ..., threshold: _Optional[float] = ..., p_value: _Optional[float] = ..., drifted: _Optional[bool] = ...) -> None: ...

class DriftWindow(_message.Message):
    __slots__ = ("start", "end", "count")
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    start: _timestamp_pb2.Timestamp
    end: _timestamp_pb2.Timestamp
    count: int
    def __init__(self, start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., count: _Optional[int] = ...) -> None: ...

class DriftDetected(_message.Message):
    __slots__ = ("meta", "model_name", "model_version", "track", "window", "features", "drifted_share", "drifted_share_threshold")
    META_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    TRACK_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    DRIFTED_SHARE_FIELD_NUMBER: _ClassVar[int]
    DRIFTED_SHARE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    meta: _meta_pb2.EventMeta
    model_name: str
    model_version: int
    track: _predictions_pb2.Track
    window: DriftWindow
    features: _containers.RepeatedCompositeFieldContainer[FeatureDrift]
    drifted_share: float
    drifted_share_threshold: float
    def __init__(self, meta: _Optional[_Union[_meta_pb2.EventMeta, _Mapping]] = ..., model_name: _Optional[str] = ..., model_version: _Optional[int] = ..., track: _Optional[_Union[_predictions_pb2.Track, str]] = ..., window: _Optional[_Union[DriftWindow, _Mapping]] = ..., features: _Optional[_Iterable[_Union[FeatureDrift, _Mapping]]] = ..., drifted_share: _Optional[float] = ..., drifted_share_threshold: _Optional[float] = ...) -> None: ...
