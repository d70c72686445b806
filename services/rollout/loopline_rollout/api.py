"""The rollout calls, transport-neutral, and who may make them. Reads are open; starting and steering a
rollout needs a bearer token of role releaser or admin (the registry's token file format), and the token's
name is recorded as the actor of the decision, with the reason the caller gives."""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from google.protobuf.json_format import ParseDict
from google.protobuf.timestamp_pb2 import Timestamp

from loopline.events.v1 import rollouts_pb2
from loopline.rollout.v1 import rollout_pb2 as pb
from loopline_common.errors import InvalidArgument, PermissionDenied, Unauthenticated
from loopline_rollout.controller import MAX_REASON, Controller
from loopline_rollout.policy import Policy
from loopline_rollout.store import RolloutRow

SERVICE = "loopline.rollout.v1.RolloutService"
STEERING_ROLES = ("releaser", "admin")
PHASES: dict[str, pb.Phase] = {
    "shadow": pb.PHASE_SHADOW, "progressing": pb.PHASE_PROGRESSING, "paused": pb.PHASE_PAUSED,
    "promoted": pb.PHASE_PROMOTED, "rolled_back": pb.PHASE_ROLLED_BACK, "aborted": pb.PHASE_ABORTED,
    "": pb.PHASE_UNSPECIFIED,
}


class TokenConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Caller:
    name: str
    role: str


class Auth:
    def __init__(self, tokens: list[tuple[str, str, str]], *, anonymous: bool = False) -> None:
        self._tokens = tokens
        self.anonymous = anonymous

    @classmethod
    def load(cls, path: str, *, anonymous: bool) -> Auth:
        if not path:
            return cls([], anonymous=anonymous)
        try:
            raw = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise TokenConfigError(f"cannot read the tokens file {path}: {exc}") from None
        if not isinstance(raw, list) or not all(
                isinstance(e, dict) and {"name", "role", "token"} <= set(e) for e in raw):
            raise TokenConfigError(f"{path}: expected a list of {{name, role, token}}")
        return cls([(str(e["name"]), str(e["role"]), str(e["token"])) for e in raw], anonymous=anonymous)

    def steering(self, authorization: str | None, method: str) -> Caller:
        """The caller of a call that changes a rollout; Unauthenticated/PermissionDenied otherwise."""
        if not authorization:
            if self.anonymous:
                return Caller("anonymous", "admin")
            raise Unauthenticated(f"{method} needs a bearer token (role releaser or admin)")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated("authorization must be 'Bearer <token>'")
        for name, role, known in self._tokens:
            if hmac.compare_digest(known.encode(), token.strip().encode()):
                if role not in STEERING_ROLES:
                    raise PermissionDenied(f"{method} needs role releaser or admin; {name} is {role}",
                                           details={"role": role})
                return Caller(name, role)
        raise Unauthenticated("unknown token")


def _ts(seconds: float | None) -> Timestamp | None:
    if seconds is None:
        return None
    ts = Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


def to_message(row: RolloutRow) -> pb.Rollout:
    policy = Policy.from_json(row.policy)
    message = pb.Rollout(
        rollout_id=row.rollout_id, model_name=row.model_name, candidate_version=row.candidate_version,
        champion_version=row.champion_version, phase=PHASES[row.phase], paused_from=PHASES[row.paused_from or ""],
        step=row.step, steps=list(policy.steps), weight=row.weight, failed_checks=row.failed_checks,
        threshold=policy.threshold, inconclusive=row.inconclusive, shadow_passed=row.shadow_passed,
        shadow_iterations=policy.shadow_iterations, interval_seconds=policy.interval_seconds, actuator=row.actuator,
        started_by=row.started_by, actor=row.actor, reason=row.reason,
        pull_request_url=str(row.state().get("pull_request_url", "")),
    )
    message.started_at.FromDatetime(row.started_at)
    message.updated_at.FromDatetime(row.updated_at)
    if row.finished_at is not None:
        message.finished_at.FromDatetime(row.finished_at)
    upcoming = _ts(row.next_analysis_at)
    if upcoming is not None:
        message.next_analysis_at.CopyFrom(upcoming)
    for check in json.loads(row.last_checks or "[]"):
        message.last_checks.append(ParseDict(check, rollouts_pb2.CheckResult()))
    return message


def _reason(reason: str) -> str:
    if len(reason) > MAX_REASON:
        raise InvalidArgument(f"reason is longer than {MAX_REASON} characters", details={"field": "reason"})
    return reason


class RolloutApi:
    def __init__(self, *, controller: Controller, auth: Auth) -> None:
        self.controller = controller
        self.auth = auth
        c = controller
        steer: dict[str, Callable[..., Awaitable[RolloutRow]]] = {
            "PauseRollout": c.pause, "ResumeRollout": c.resume, "AbortRollout": c.abort,
            "PromoteRollout": c.promote,
        }
        self._steer = steer
        self._responses: dict[str, Any] = {
            "PauseRollout": pb.PauseRolloutResponse, "ResumeRollout": pb.ResumeRolloutResponse,
            "AbortRollout": pb.AbortRolloutResponse, "PromoteRollout": pb.PromoteRolloutResponse,
        }

    async def start(self, request: pb.StartRolloutRequest, authorization: str | None) -> pb.StartRolloutResponse:
        caller = self.auth.steering(authorization, "StartRollout")
        row = await self.controller.start_rollout(model=request.model_name, candidate=request.candidate_version,
                                                  actor=caller.name, reason=_reason(request.reason))
        return pb.StartRolloutResponse(rollout=to_message(row))

    async def get(self, request: pb.GetRolloutRequest) -> pb.GetRolloutResponse:
        row, decisions = await self.controller.get(model=request.model_name, rollout_id=request.rollout_id)
        return pb.GetRolloutResponse(rollout=to_message(row), decisions=decisions)

    async def list(self, request: pb.ListRolloutsRequest) -> pb.ListRolloutsResponse:
        if request.page_size < 0:
            raise InvalidArgument("page_size must not be negative", details={"field": "page_size"})
        rows = await self.controller._db(self.controller.store.list_rollouts, model_name=request.model_name,
                                         active_only=request.active_only, limit=min(request.page_size or 50, 1000))
        return pb.ListRolloutsResponse(rollouts=[to_message(r) for r in rows])

    async def steer(self, method: str, request: Any, authorization: str | None) -> Any:
        caller = self.auth.steering(authorization, method)
        if not request.reason.strip():
            raise InvalidArgument(f"{method} needs a reason (it is recorded with your name)",
                                  details={"field": "reason"})
        row = await self._steer[method](model=request.model_name, actor=caller.name, reason=_reason(request.reason))
        return self._responses[method](rollout=to_message(row))
