from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TrackState(_message.Message):
    __slots__ = ("track", "version", "source", "sha256", "weight", "load_seconds")
    TRACK_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    LOAD_SECONDS_FIELD_NUMBER: _ClassVar[int]
    track: str
    version: int
    source: str
    sha256: str
    weight: float
    load_seconds: float
    def __init__(self, track: _Optional[str] = ..., version: _Optional[int] = ..., source: _Optional[str] = ..., sha256: _Optional[str] = ..., weight: _Optional[float] = ..., load_seconds: _Optional[float] = ...) -> None: ...

class SetTrafficWeightsRequest(_message.Message):
    __slots__ = ("model_name", "challenger_weight", "shadow", "actor", "reason")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    CHALLENGER_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    SHADOW_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    challenger_weight: float
    shadow: bool
    actor: str
    reason: str
    def __init__(self, model_name: _Optional[str] = ..., challenger_weight: _Optional[float] = ..., shadow: _Optional[bool] = ..., actor: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class SetTrafficWeightsResponse(_message.Message):
    __slots__ = ("previous_challenger_weight", "challenger_weight", "shadow")
    PREVIOUS_CHALLENGER_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    CHALLENGER_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    SHADOW_FIELD_NUMBER: _ClassVar[int]
    previous_challenger_weight: float
    challenger_weight: float
    shadow: bool
    def __init__(self, previous_challenger_weight: _Optional[float] = ..., challenger_weight: _Optional[float] = ..., shadow: _Optional[bool] = ...) -> None: ...

class GetTracksRequest(_message.Message):
    __slots__ = ("model_name",)
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    def __init__(self, model_name: _Optional[str] = ...) -> None: ...

class GetTracksResponse(_message.Message):
    __slots__ = ("model_name", "mode", "tracks", "challenger_weight", "shadow")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    TRACKS_FIELD_NUMBER: _ClassVar[int]
    CHALLENGER_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    SHADOW_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    mode: str
    tracks: _containers.RepeatedCompositeFieldContainer[TrackState]
    challenger_weight: float
    shadow: bool
    def __init__(self, model_name: _Optional[str] = ..., mode: _Optional[str] = ..., tracks: _Optional[_Iterable[_Union[TrackState, _Mapping]]] = ..., challenger_weight: _Optional[float] = ..., shadow: _Optional[bool] = ...) -> None: ...
