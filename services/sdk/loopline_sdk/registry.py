"""The model registry (RegistryService): versions, aliases, promotion, lineage, audit."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from loopline.registry.v1 import registry_pb2 as pb
from loopline.registry.v1 import registry_pb2_grpc as pb_grpc
from loopline_sdk._base import BaseClient, stamp, when


def _stage(value: int) -> str:
    return str(pb.Stage.Name(value)).removeprefix("STAGE_").lower()


@dataclass(frozen=True)
class Lineage:
    run_id: str
    training_set_hash: str
    feature_service: str
    code_version: str
    parent_version: int
    trigger: str
    reason: str

    @classmethod
    def from_proto(cls, m: pb.Lineage) -> Lineage:
        return cls(run_id=m.run_id, training_set_hash=m.training_set_hash, feature_service=m.feature_service,
                   code_version=m.code_version, parent_version=m.parent_version, trigger=m.trigger, reason=m.reason)


@dataclass(frozen=True)
class ModelVersion:
    model_name: str
    version: int
    stage: str  # none | staging | production | archived
    aliases: tuple[str, ...]
    created_at: datetime | None
    metrics: dict[str, float]
    tags: dict[str, str]
    lineage: Lineage
    onnx_parity_passed: bool
    model_sha256: str
    registered_by: str

    @classmethod
    def from_proto(cls, m: pb.ModelVersion) -> ModelVersion:
        return cls(model_name=m.model_name, version=m.version, stage=_stage(m.stage), aliases=tuple(m.aliases),
                   created_at=when(m.created_at, m.HasField("created_at")), metrics=dict(m.metrics),
                   tags=dict(m.tags), lineage=Lineage.from_proto(m.lineage), onnx_parity_passed=m.onnx_parity_passed,
                   model_sha256=m.model_sha256, registered_by=m.registered_by)


@dataclass(frozen=True)
class Model:
    name: str
    latest_version: int
    aliases: dict[str, int]
    stale: bool = False


@dataclass(frozen=True)
class Gate:
    name: str
    passed: bool
    message: str


@dataclass(frozen=True)
class Promotion:
    previous_champion: int
    champion: int
    changed: bool
    passed: bool
    gates: tuple[Gate, ...]


@dataclass(frozen=True)
class AliasChange:
    alias: str
    previous_version: int
    version: int
    changed: bool


@dataclass(frozen=True)
class AliasSpan:
    alias: str
    start: datetime | None
    end: datetime | None
    granted_by: str
    revoked_by: str


@dataclass(frozen=True)
class RolloutRecord:
    rollout_id: str
    decision: str
    step: int
    weight: int
    actor: str
    reason: str
    occurred_at: datetime | None


@dataclass(frozen=True)
class AuditEntry:
    occurred_at: datetime | None
    actor: str
    action: str
    model_name: str
    version: int
    alias: str
    reason: str
    before: str
    after: str

    @classmethod
    def from_proto(cls, e: pb.AuditEntry) -> AuditEntry:
        return cls(occurred_at=when(e.occurred_at, e.HasField("occurred_at")), actor=e.actor, action=e.action,
                   model_name=e.model_name, version=e.version, alias=e.alias, reason=e.reason, before=e.before,
                   after=e.after)


@dataclass(frozen=True)
class VersionLineage:
    """Where a version came from (run, data, code, parent, trigger) and what happened to it."""

    version: ModelVersion
    lineage: Lineage
    run_id: str
    run_status: str
    run_metrics: dict[str, float]
    aliases: tuple[AliasSpan, ...]
    rollouts: tuple[RolloutRecord, ...]
    history: tuple[AuditEntry, ...] = field(default_factory=tuple)


class RegistryClient(BaseClient):
    """Reads need no token on the embedded stack; writes need one of the right role (trainer, releaser, admin)."""

    service = "registry"

    def _stub(self, channel: Any) -> Any:
        return pb_grpc.RegistryServiceStub(channel)  # type: ignore[no-untyped-call]

    # ---- reads ---------------------------------------------------------------------------------------
    def get_model(self, name: str) -> Model:
        reply = self._read("GetModel", pb.GetModelRequest(model_name=name))
        m = reply.model
        return Model(name=m.name, latest_version=m.latest_version, aliases=dict(m.aliases), stale=reply.stale)

    def aliases(self, name: str) -> dict[str, int]:
        """The model's aliases: {"champion": 3, "challenger": 4}."""
        return self.get_model(name).aliases

    def resolve(self, name: str, alias: str) -> int:
        """The version holding `alias` (raises NotFound when no version holds it)."""
        return int(self._read("ResolveAlias", pb.ResolveAliasRequest(model_name=name, alias=alias)).version)

    def get_version(self, name: str, version: int) -> ModelVersion:
        reply = self._read("GetVersion", pb.GetVersionRequest(model_name=name, version=version))
        return ModelVersion.from_proto(reply.version)

    def list_versions(self, name: str, *, limit: int = 100) -> list[ModelVersion]:
        """Versions, newest first."""
        found: list[ModelVersion] = []
        token = ""
        while len(found) < limit:
            reply = self._read("ListVersions", pb.ListVersionsRequest(model_name=name, page_size=min(limit, 1000),
                                                                      page_token=token))
            found.extend(ModelVersion.from_proto(v) for v in reply.versions)
            token = reply.next_page_token
            if not token:
                break
        return found[:limit]

    def lineage(self, name: str, version: int) -> VersionLineage:
        r = self._read("GetLineage", pb.GetLineageRequest(model_name=name, version=version))
        return VersionLineage(
            version=ModelVersion.from_proto(r.version), lineage=Lineage.from_proto(r.lineage),
            run_id=r.run.run_id, run_status=r.run.status, run_metrics=dict(r.run.metrics),
            aliases=tuple(AliasSpan(alias=s.alias, start=when(s.from_time, s.HasField("from_time")),
                                    end=when(s.to_time, s.HasField("to_time")), granted_by=s.granted_by,
                                    revoked_by=s.revoked_by) for s in r.aliases),
            rollouts=tuple(RolloutRecord(rollout_id=d.rollout_id, decision=d.decision, step=d.step, weight=d.weight,
                                         actor=d.actor, reason=d.reason,
                                         occurred_at=when(d.occurred_at, d.HasField("occurred_at")))
                           for d in r.rollout_decisions),
            history=tuple(AuditEntry.from_proto(e) for e in r.history),
        )

    def audit(self, *, model: str = "", action: str = "", since: datetime | None = None,
              limit: int = 200) -> list[AuditEntry]:
        """Audit entries, newest first."""
        request = pb.ListAuditEntriesRequest(model_name=model, action=action, page_size=min(limit, 1000))
        if since is not None:
            request.since.CopyFrom(stamp(since))
        entries: list[AuditEntry] = []
        while len(entries) < limit:
            reply = self._read("ListAuditEntries", request)
            entries.extend(AuditEntry.from_proto(e) for e in reply.entries)
            if not reply.next_page_token:
                break
            request.page_token = reply.next_page_token
        return entries[:limit]

    # ---- writes --------------------------------------------------------------------------------------
    def set_alias(self, name: str, alias: str, version: int, *, reason: str = "") -> AliasChange:
        # Setting an alias to a version is idempotent: a retry leaves the same state.
        r = self._write("SetAlias", pb.SetAliasRequest(model_name=name, alias=alias, version=version, reason=reason),
                        idempotent=True)
        return AliasChange(alias=alias, previous_version=r.previous_version, version=r.version, changed=r.changed)

    def delete_alias(self, name: str, alias: str, *, reason: str = "") -> AliasChange:
        r = self._write("DeleteAlias", pb.DeleteAliasRequest(model_name=name, alias=alias, reason=reason),
                        idempotent=True)
        return AliasChange(alias=alias, previous_version=r.previous_version, version=0, changed=r.changed)

    def promote(self, name: str, version: int = 0, *, reason: str = "") -> Promotion:
        """Make `version` (0: the challenger) champion if it passes the promotion policy."""
        # With an explicit version a retry finds it champion already (changed=False); with 0 it would not.
        r = self._write("Promote", pb.PromoteRequest(model_name=name, version=version, reason=reason),
                        idempotent=bool(version))
        e = r.evaluation
        return Promotion(previous_champion=r.previous_champion, champion=r.champion, changed=r.changed,
                         passed=e.passed, gates=tuple(Gate(g.name, g.passed, g.message) for g in e.gates))
