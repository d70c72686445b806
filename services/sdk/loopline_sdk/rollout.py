"""Rollouts (RolloutService): watch and steer the canaries the controller runs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from loopline.events.v1 import rollouts_pb2
from loopline.rollout.v1 import rollout_pb2 as pb
from loopline.rollout.v1 import rollout_pb2_grpc as pb_grpc
from loopline_sdk._base import BaseClient, when

ENDED = frozenset({"promoted", "rolled_back", "aborted"})


def _phase(value: int) -> str:
    return str(pb.Phase.Name(value)).removeprefix("PHASE_").lower()


def _decision(value: int) -> str:
    return str(rollouts_pb2.Decision.Name(value)).removeprefix("DECISION_").lower()


def _outcome(value: int) -> str:
    return str(rollouts_pb2.CheckOutcome.Name(value)).removeprefix("CHECK_OUTCOME_").lower()


@dataclass(frozen=True)
class Check:
    name: str
    outcome: str  # pass | fail | not_enough_data
    value: float
    condition: str
    message: str

    @classmethod
    def from_proto(cls, c: rollouts_pb2.CheckResult) -> Check:
        return cls(name=c.name, outcome=_outcome(c.outcome), value=c.value, condition=c.condition, message=c.message)


@dataclass(frozen=True)
class Decision:
    rollout_id: str
    decision: str  # started | advance | hold | promote | rollback | pause | resume | abort
    step: int
    weight: int
    candidate_version: int
    champion_version: int
    actor: str
    reason: str
    occurred_at: datetime | None
    checks: tuple[Check, ...]

    @classmethod
    def from_proto(cls, d: rollouts_pb2.RolloutDecision) -> Decision:
        return cls(rollout_id=d.rollout_id, decision=_decision(d.decision), step=d.step, weight=d.weight,
                   candidate_version=d.candidate_version, champion_version=d.champion_version, actor=d.actor,
                   reason=d.reason, occurred_at=when(d.meta.occurred_at, d.meta.HasField("occurred_at")),
                   checks=tuple(Check.from_proto(c) for c in d.checks))


@dataclass(frozen=True)
class Rollout:
    rollout_id: str
    model_name: str
    candidate_version: int
    champion_version: int
    phase: str  # shadow | progressing | paused | promoted | rolled_back | aborted
    step: int
    steps: tuple[int, ...]
    weight: int
    failed_checks: int
    threshold: int
    interval_seconds: float
    started_at: datetime | None
    finished_at: datetime | None
    started_by: str
    reason: str
    last_checks: tuple[Check, ...]

    @property
    def ended(self) -> bool:
        return self.phase in ENDED

    @classmethod
    def from_proto(cls, r: pb.Rollout) -> Rollout:
        return cls(rollout_id=r.rollout_id, model_name=r.model_name, candidate_version=r.candidate_version,
                   champion_version=r.champion_version, phase=_phase(r.phase), step=r.step, steps=tuple(r.steps),
                   weight=r.weight, failed_checks=r.failed_checks, threshold=r.threshold,
                   interval_seconds=r.interval_seconds, started_at=when(r.started_at, r.HasField("started_at")),
                   finished_at=when(r.finished_at, r.HasField("finished_at")), started_by=r.started_by,
                   reason=r.reason, last_checks=tuple(Check.from_proto(c) for c in r.last_checks))


class RolloutClient(BaseClient):
    service = "rollout"

    def _stub(self, channel: Any) -> Any:
        return pb_grpc.RolloutServiceStub(channel)  # type: ignore[no-untyped-call]

    def get(self, model: str, *, rollout_id: str = "") -> tuple[Rollout, list[Decision]]:
        """A rollout (by id, else the model's active or latest one) with every decision, oldest first."""
        r = self._read("GetRollout", pb.GetRolloutRequest(model_name=model, rollout_id=rollout_id))
        return Rollout.from_proto(r.rollout), [Decision.from_proto(d) for d in r.decisions]

    def list(self, *, model: str = "", active_only: bool = False, limit: int = 50) -> list[Rollout]:
        """Rollouts, newest first."""
        r = self._read("ListRollouts", pb.ListRolloutsRequest(model_name=model, active_only=active_only,
                                                             page_size=limit))
        return [Rollout.from_proto(x) for x in r.rollouts]

    def start(self, model: str, *, version: int = 0, reason: str = "") -> Rollout:
        return Rollout.from_proto(self._write("StartRollout", pb.StartRolloutRequest(
            model_name=model, candidate_version=version, reason=reason)).rollout)

    def pause(self, model: str, *, reason: str = "") -> Rollout:
        return Rollout.from_proto(self._write("PauseRollout", pb.PauseRolloutRequest(
            model_name=model, reason=reason)).rollout)

    def resume(self, model: str, *, reason: str = "") -> Rollout:
        return Rollout.from_proto(self._write("ResumeRollout", pb.ResumeRolloutRequest(
            model_name=model, reason=reason)).rollout)

    def abort(self, model: str, *, reason: str = "") -> Rollout:
        return Rollout.from_proto(self._write("AbortRollout", pb.AbortRolloutRequest(
            model_name=model, reason=reason)).rollout)

    def promote(self, model: str, *, reason: str = "") -> Rollout:
        return Rollout.from_proto(self._write("PromoteRollout", pb.PromoteRolloutRequest(
            model_name=model, reason=reason)).rollout)
