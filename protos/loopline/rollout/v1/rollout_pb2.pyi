import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from loopline.events.v1 import rollouts_pb2 as _rollouts_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Phase(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PHASE_UNSPECIFIED: _ClassVar[Phase]
    PHASE_SHADOW: _ClassVar[Phase]
    PHASE_PROGRESSING: _ClassVar[Phase]
    PHASE_PAUSED: _ClassVar[Phase]
    PHASE_PROMOTED: _ClassVar[Phase]
    PHASE_ROLLED_BACK: _ClassVar[Phase]
    PHASE_ABORTED: _ClassVar[Phase]
PHASE_UNSPECIFIED: Phase
PHASE_SHADOW: Phase
PHASE_PROGRESSING: Phase
PHASE_PAUSED: Phase
PHASE_PROMOTED: Phase
PHASE_ROLLED_BACK: Phase
PHASE_ABORTED: Phase

class Rollout(_message.Message):
    __slots__ = ("rollout_id", "model_name", "candidate_version", "champion_version", "phase", "paused_from", "step", "steps", "weight", "failed_checks", "threshold", "inconclusive", "shadow_passed", "shadow_iterations", "interval_seconds", "actuator", "started_at", "updated_at", "next_analysis_at", "finished_at", "started_by", "actor", "reason", "last_checks", "pull_request_url")
    ROLLOUT_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_VERSION_FIELD_NUMBER: _ClassVar[int]
    CHAMPION_VERSION_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    PAUSED_FROM_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    FAILED_CHECKS_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    INCONCLUSIVE_FIELD_NUMBER: _ClassVar[int]
    SHADOW_PASSED_FIELD_NUMBER: _ClassVar[int]
    SHADOW_ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ACTUATOR_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    NEXT_ANALYSIS_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_BY_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    LAST_CHECKS_FIELD_NUMBER: _ClassVar[int]
    PULL_REQUEST_URL_FIELD_NUMBER: _ClassVar[int]
    rollout_id: str
    model_name: str
    candidate_version: int
    champion_version: int
    phase: Phase
    paused_from: Phase
    step: int
    steps: _containers.RepeatedScalarFieldContainer[int]
    weight: int
    failed_checks: int
    threshold: int
    inconclusive: int
    shadow_passed: int
    shadow_iterations: int
    interval_seconds: float
    actuator: str
    started_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    next_analysis_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    started_by: str
    actor: str
    reason: str
    last_checks: _containers.RepeatedCompositeFieldContainer[_rollouts_pb2.CheckResult]
    pull_request_url: str
    def __init__(self, rollout_id: _Optional[str] = ..., model_name: _Optional[str] = ..., candidate_version: _Optional[int] = ..., champion_version: _Optional[int] = ..., phase: _Optional[_Union[Phase, str]] = ..., paused_from: _Optional[_Union[Phase, str]] = ..., step: _Optional[int] = ..., steps: _Optional[_Iterable[int]] = ..., weight: _Optional[int] = ..., failed_checks: _Optional[int] = ..., threshold: _Optional[int] = ..., inconclusive: _Optional[int] = ..., shadow_passed: _Optional[int] = ..., shadow_iterations: _Optional[int] = ..., interval_seconds: _Optional[float] = ..., actuator: _Optional[str] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., next_analysis_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., started_by: _Optional[str] = ..., actor: _Optional[str] = ..., reason: _Optional[str] = ..., last_checks: _Optional[_Iterable[_Union[_rollouts_pb2.CheckResult, _Mapping]]] = ..., pull_request_url: _Optional[str] = ...) -> None: ...

class StartRolloutRequest(_message.Message):
    __slots__ = ("model_name", "candidate_version", "reason")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_VERSION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    candidate_version: int
    reason: str
    def __init__(self, model_name: _Optional[str] = ..., candidate_version: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class StartRolloutResponse(_message.Message):
    __slots__ = ("rollout",)
    ROLLOUT_FIELD_NUMBER: _ClassVar[int]
    rollout: Rollout
    def __init__(self, rollout: _Optional[_Union[Rollout, _Mapping]] = ...) -> None: ...

class GetRolloutRequest(_message.Message):
    __slots__ = ("model_name", "rollout_id")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    ROLLOUT_ID_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    rollout_id: str
    def __init__(self, model_name: _Optional[str] = ..., rollout_id: _Optional[str] = ...) -> None: ...

class GetRolloutResponse(_message.Message):
    __slots__ = ("rollout", "decisions")
    ROLLOUT_FIELD_NUMBER: _ClassVar[int]
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    rollout: Rollout
    decisions: _containers.RepeatedCompositeFieldContainer[_rollouts_pb2.RolloutDecision]
    def __init__(self, rollout: _Optional[_Union[Rollout, _Mapping]] = ..., decisions: _Optional[_Iterable[_Union[_rollouts_pb2.RolloutDecision, _Mapping]]] = ...) -> None: ...

class ListRolloutsRequest(_message.Message):
    __slots__ = ("model_name", "active_only", "page_size")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_ONLY_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    active_only: bool
    page_size: int
    def __init__(self, model_name: _Optional[str] = ..., active_only: _Optional[bool] = ..., page_size: _Optional[int] = ...) -> None: ...

class ListRolloutsResponse(_message.Message):
    __slots__ = ("rollouts",)
    ROLLOUTS_FIELD_NUMBER: _ClassVar[int]
    rollouts: _containers.RepeatedCompositeFieldContainer[Rollout]
    def __init__(self, rollouts: _Optional[_Iterable[_Union[Rollout, _Mapping]]] = ...) -> None: ...

class PauseRolloutRequest(_message.Message):
    __slots__ = ("model_name", "reason")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    reason: str
    def __init__(self, model_name: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class PauseRolloutResponse(_message.Message):
    __slots__ = ("rollout",)
    ROLLOUT_FIELD_NUMBER: _ClassVar[int]
    rollout: Rollout
    def __init__(self, rollout: _Optional[_Union[Rollout, _Mapping]] = ...) -> None: ...

class ResumeRolloutRequest(_message.Message):
    __slots__ = ("model_name", "reason")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    reason: str
    def __init__(self, model_name: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ResumeRolloutResponse(_message.Message):
    __slots__ = ("rollout",)
    ROLLOUT_FIELD_NUMBER: _ClassVar[int]
    rollout: Rollout
    def __init__(self, rollout: _Optional[_Union[Rollout, _Mapping]] = ...) -> None: ...

class AbortRolloutRequest(_message.Message):
    __slots__ = ("model_name", "reason")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    reason: str
    def __init__(self, model_name: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class AbortRolloutResponse(_message.Message):
    __slots__ = ("rollout",)
    ROLLOUT_FIELD_NUMBER: _ClassVar[int]
    rollout: Rollout
    def __init__(self, rollout: _Optional[_Union[Rollout, _Mapping]] = ...) -> None: ...

class PromoteRolloutRequest(_message.Message):
    __slots__ = ("model_name", "reason")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    reason: str
    def __init__(self, model_name: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class PromoteRolloutResponse(_message.Message):
    __slots__ = ("rollout",)
    ROLLOUT_FIELD_NUMBER: _ClassVar[int]
    rollout: Rollout
    def __init__(self, rollout: _Optional[_Union[Rollout, _Mapping]] = ...) -> None: ...
