from loopline.events.v1 import meta_pb2 as _meta_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Decision(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DECISION_UNSPECIFIED: _ClassVar[Decision]
    DECISION_STARTED: _ClassVar[Decision]
    DECISION_ADVANCE: _ClassVar[Decision]
    DECISION_HOLD: _ClassVar[Decision]
    DECISION_PROMOTE: _ClassVar[Decision]
    DECISION_ROLLBACK: _ClassVar[Decision]
    DECISION_PAUSE: _ClassVar[Decision]
    DECISION_RESUME: _ClassVar[Decision]
    DECISION_ABORT: _ClassVar[Decision]

class CheckOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CHECK_OUTCOME_UNSPECIFIED: _ClassVar[CheckOutcome]
    CHECK_OUTCOME_PASS: _ClassVar[CheckOutcome]
    CHECK_OUTCOME_FAIL: _ClassVar[CheckOutcome]
    CHECK_OUTCOME_NOT_ENOUGH_DATA: _ClassVar[CheckOutcome]
DECISION_UNSPECIFIED: Decision
DECISION_STARTED: Decision
DECISION_ADVANCE: Decision
DECISION_HOLD: Decision
DECISION_PROMOTE: Decision
DECISION_ROLLBACK: Decision
DECISION_PAUSE: Decision
DECISION_RESUME: Decision
DECISION_ABORT: Decision
CHECK_OUTCOME_UNSPECIFIED: CheckOutcome
CHECK_OUTCOME_PASS: CheckOutcome
CHECK_OUTCOME_FAIL: CheckOutcome
CHECK_OUTCOME_NOT_ENOUGH_DATA: CheckOutcome

class CheckResult(_message.Message):
    __slots__ = ("name", "outcome", "value", "condition", "message")
    NAME_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    CONDITION_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    name: str
    outcome: CheckOutcome
    value: float
    condition: str
    message: str
    def __init__(self, name: _Optional[str] = ..., outcome: _Optional[_Union[CheckOutcome, str]] = ..., value: _Optional[float] = ..., condition: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class RolloutDecision(_message.Message):
    __slots__ = ("meta", "rollout_id", "model_name", "candidate_version", "champion_version", "step", "weight", "decision", "checks", "actor", "reason", "failed_checks", "threshold", "actuator", "pull_request_url")
    META_FIELD_NUMBER: _ClassVar[int]
    ROLLOUT_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_VERSION_FIELD_NUMBER: _ClassVar[int]
    CHAMPION_VERSION_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    CHECKS_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    FAILED_CHECKS_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    ACTUATOR_FIELD_NUMBER: _ClassVar[int]
    PULL_REQUEST_URL_FIELD_NUMBER: _ClassVar[int]
    meta: _meta_pb2.EventMeta
    rollout_id: str
    model_name: str
    candidate_version: int
    champion_version: int
    step: int
    weight: int
    decision: Decision
    checks: _containers.RepeatedCompositeFieldContainer[CheckResult]
    actor: str
    reason: str
    failed_checks: int
    threshold: int
    actuator: str
    pull_request_url: str
    def __init__(self, meta: _Optional[_Union[_meta_pb2.EventMeta, _Mapping]] = ..., rollout_id: _Optional[str] = ..., model_name: _Optional[str] = ..., candidate_version: _Optional[int] = ..., champion_version: _Optional[int] = ..., step: _Optional[int] = ..., weight: _Optional[int] = ..., decision: _Optional[_Union[Decision, str]] = ..., checks: _Optional[_Iterable[_Union[CheckResult, _Mapping]]] = ..., actor: _Optional[str] = ..., reason: _Optional[str] = ..., failed_checks: _Optional[int] = ..., threshold: _Optional[int] = ..., actuator: _Optional[str] = ..., pull_request_url: _Optional[str] = ...) -> None: ...
