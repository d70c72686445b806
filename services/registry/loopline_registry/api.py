"""The registry's calls, transport-neutral: each takes its request message and the caller, checks the
caller's role, and calls the core. The gRPC servicer and the HTTP routes both call `RegistryApi.call`, so a
call means the same thing, and is refused the same way, on both transports.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from google.protobuf.message import Message

from loopline.registry.v1 import registry_pb2 as pb
from loopline_registry.artifacts import Download
from loopline_registry.auth import Principal, Role, TokenAuth
from loopline_registry.core import RegistryCore
from loopline_registry.mlflow_rest import UpstreamError

SERVICE = "loopline.registry.v1.RegistryService"

# The role each call needs; roles are ordered (reader < trainer < releaser < admin).
ROLES: dict[str, Role] = {
    "ListModels": Role.READER,
    "GetModel": Role.READER,
    "ListVersions": Role.READER,
    "GetVersion": Role.READER,
    "ResolveAlias": Role.READER,
    "EvaluatePromotion": Role.READER,
    "GetPolicy": Role.READER,
    "GetLineage": Role.READER,
    "ListAuditEntries": Role.READER,
    "DownloadArtifact": Role.READER,
    "RegisterVersion": Role.TRAINER,
    "SetAlias": Role.RELEASER,
    "DeleteAlias": Role.RELEASER,
    "Promote": Role.RELEASER,
    "Rollback": Role.RELEASER,
    "Archive": Role.RELEASER,
    "TransitionStage": Role.RELEASER,
    "ApproveVersion": Role.RELEASER,
    "SetPolicy": Role.ADMIN,
}
MUTATIONS = tuple(name for name, role in ROLES.items() if role > Role.READER)


def _time(request: Message, field: str) -> datetime | None:
    return getattr(request, field).ToDatetime(tzinfo=UTC) if request.HasField(field) else None


class RegistryApi:
    def __init__(self, *, core: RegistryCore, auth: TokenAuth) -> None:
        self.core = core
        self.auth = auth
        c = core
        self._unary: dict[str, Callable[[Any, Principal], Awaitable[Message]]] = {
            "ListModels": lambda r, p: c.list_models(
                page_size=r.page_size, page_token=r.page_token, name_contains=r.name_contains),
            "GetModel": lambda r, p: c.get_model(model_name=r.model_name),
            "ListVersions": lambda r, p: c.list_versions(
                model_name=r.model_name, page_size=r.page_size, page_token=r.page_token, alias=r.alias,
                tags=dict(r.tags), status=r.status, stage=r.stage),
            "GetVersion": lambda r, p: c.get_version(model_name=r.model_name, version=r.version),
            "ResolveAlias": lambda r, p: c.resolve_alias(model_name=r.model_name, alias=r.alias),
            "EvaluatePromotion": lambda r, p: c.evaluate_promotion(model_name=r.model_name, version=r.version),
            "GetPolicy": lambda r, p: c.get_policy(model_name=r.model_name),
            "GetLineage": lambda r, p: c.get_lineage(model_name=r.model_name, version=r.version),
            "ListAuditEntries": lambda r, p: c.list_audit(
                model_name=r.model_name, actor=r.actor, action=r.action, since=_time(r, "since"),
                until=_time(r, "until"), page_size=r.page_size, page_token=r.page_token),
            "RegisterVersion": lambda r, p: c.register_version(
                principal=p, model_name=r.model_name, run_id=r.run_id, logged_model_id=r.logged_model_id,
                artifact_path=r.artifact_path, metrics=dict(r.metrics), training_set_hash=r.training_set_hash,
                feature_service=r.feature_service, code_version=r.code_version, parent_version=r.parent_version,
                trigger=r.trigger, reason=r.reason, onnx_parity_passed=r.onnx_parity_passed, tags=dict(r.tags),
                description=r.description, make_challenger=r.make_challenger, idempotency_key=r.idempotency_key),
            "SetAlias": lambda r, p: c.set_alias(
                principal=p, model_name=r.model_name, alias=r.alias, version=r.version, reason=r.reason),
            "DeleteAlias": lambda r, p: c.delete_alias(
                principal=p, model_name=r.model_name, alias=r.alias, reason=r.reason),
            "Promote": lambda r, p: c.promote(principal=p, model_name=r.model_name, version=r.version,
                                              reason=r.reason),
            "Rollback": lambda r, p: c.rollback(principal=p, model_name=r.model_name, reason=r.reason),
            "Archive": lambda r, p: c.archive(principal=p, model_name=r.model_name, version=r.version,
                                              reason=r.reason),
            "TransitionStage": lambda r, p: c.transition_stage(
                principal=p, model_name=r.model_name, version=r.version, stage=r.stage, reason=r.reason),
            "ApproveVersion": lambda r, p: c.approve(principal=p, model_name=r.model_name, version=r.version,
                                                     reason=r.reason),
            "SetPolicy": lambda r, p: c.set_policy(principal=p, model_name=r.model_name, policy=r.policy,
                                                   reason=r.reason),
        }

    def principal(self, method: str, authorization: str | None) -> Principal:
        """Authenticate the caller and check the role `method` needs (raises Unauthenticated/PermissionDenied)."""
        caller = self.auth.authenticate(authorization)
        self.auth.authorize(caller, ROLES[method], method=f"{SERVICE.rsplit('.', 1)[-1]}.{method}")
        return caller

    async def call(self, method: str, request: Message, authorization: str | None) -> Message:
        caller = self.principal(method, authorization)
        try:
            return await self._unary[method](request, caller)
        except UpstreamError as exc:  # the core translates what it expects; this catches the rest
            raise RegistryCore.translate(exc, what="the request") from None

    async def download(self, request: pb.DownloadArtifactRequest, authorization: str | None) -> Download:
        self.principal("DownloadArtifact", authorization)
        try:
            return await self.core.download(
                model_name=request.model_name, version=request.version, alias=request.alias, kind=request.kind,
                path=request.path,
            )
        except UpstreamError as exc:
            raise RegistryCore.translate(exc, what="the artifact") from None
