from loopline.events.v1 import meta_pb2 as _meta_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ModelRegistered(_message.Message):
    __slots__ = ("meta", "model_name", "version", "run_id", "metrics", "tags", "trigger", "reason", "parent_version")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    META_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    PARENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    meta: _meta_pb2.EventMeta
    model_name: str
    version: int
    run_id: str
    metrics: _containers.ScalarMap[str, float]
    tags: _containers.ScalarMap[str, str]
    trigger: str
    reason: str
    parent_version: int
    def __init__(self, meta: _Optional[_Union[_meta_pb2.EventMeta, _Mapping]] = ..., model_name: _Optional[str] = ..., version: _Optional[int] = ..., run_id: _Optional[str] = ..., metrics: _Optional[_Mapping[str, float]] = ..., tags: _Optional[_Mapping[str, str]] = ..., trigger: _Optional[str] = ..., reason: _Optional[str] = ..., parent_version: _Optional[int] = ...) -> None: ...

class AliasChanged(_message.Message):
    __slots__ = ("meta", "model_name", "alias", "previous_version", "new_version", "actor", "reason")
    META_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_VERSION_FIELD_NUMBER: _ClassVar[int]
    NEW_VERSION_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    meta: _meta_pb2.EventMeta
    model_name: str
    alias: str
    previous_version: int
    new_version: int
    actor: str
    reason: str
    def __init__(self, meta: _Optional[_Union[_meta_pb2.EventMeta, _Mapping]] = ..., model_name: _Optional[str] = ..., alias: _Optional[str] = ..., previous_version: _Optional[int] = ..., new_version: _Optional[int] = ..., actor: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class VersionArchived(_message.Message):
    __slots__ = ("meta", "model_name", "version", "actor", "reason")
    META_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    meta: _meta_pb2.EventMeta
    model_name: str
    version: int
    actor: str
    reason: str
    def __init__(self, meta: _Optional[_Union[_meta_pb2.EventMeta, _Mapping]] = ..., model_name: _Optional[str] = ..., version: _Optional[int] = ..., actor: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ModelEvent(_message.Message):
    __slots__ = ("registered", "alias_changed", "archived")
    REGISTERED_FIELD_NUMBER: _ClassVar[int]
    ALIAS_CHANGED_FIELD_NUMBER: _ClassVar[int]
    ARCHIVED_FIELD_NUMBER: _ClassVar[int]
    registered: ModelRegistered
    alias_changed: AliasChanged
    archived: VersionArchived
    def __init__(self, registered: _Optional[_Union[ModelRegistered, _Mapping]] = ..., alias_changed: _Optional[_Union[AliasChanged, _Mapping]] = ..., archived: _Optional[_Union[VersionArchived, _Mapping]] = ...) -> None: ...
