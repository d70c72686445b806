"""The registry's core: reads (cached) and writes (through the outbox) over MLflow, transport-neutral.

Every write follows one path (`_run_op`): record the changes as intents in the store, make the MLflow
writes, then commit them with their audit entries in one transaction (which puts their events in the
outbox) and wake the relay. A process that dies in between leaves intents that `recover` later resolves
by asking MLflow whether each change happened. Writes to one model are serialized within the process.

Functions take keyword-only arguments and return protobuf messages; authorization happens in `api`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import posixpath
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from loopline.registry.v1 import registry_pb2 as pb
from loopline_common.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    LooplineError,
    NotFound,
    Unavailable,
)
from loopline_common.logs import current_request_id
from loopline_common.metrics import ServiceMetrics
from loopline_registry import convert as cv
from loopline_registry import policy as pol
from loopline_registry.artifacts import Download, artifact_relpath, scan_artifacts
from loopline_registry.auth import Principal
from loopline_registry.cache import Key, ReadCache
from loopline_registry.mlflow_rest import MlflowRest, UpstreamError
from loopline_registry.relay import fault
from loopline_registry.store import AuditRecord, Change, Store

log = logging.getLogger(__name__)

T = TypeVar("T")
Step = Callable[[], Awaitable[None]]

SIGNATURE_TAG_LIMIT = 50_000
ARTIFACTS_TAG_LIMIT = 90_000
STAGE_NAMES: dict[int, str] = {
    pb.STAGE_NONE: "None", pb.STAGE_STAGING: "Staging", pb.STAGE_PRODUCTION: "Production",
    pb.STAGE_ARCHIVED: "Archived",
}
ALLOWED_TRANSITIONS = {
    (pb.STAGE_NONE, pb.STAGE_STAGING),
    (pb.STAGE_STAGING, pb.STAGE_PRODUCTION),
    (pb.STAGE_PRODUCTION, pb.STAGE_ARCHIVED),
    (pb.STAGE_NONE, pb.STAGE_ARCHIVED),
    (pb.STAGE_STAGING, pb.STAGE_ARCHIVED),
}


@dataclass(frozen=True)
class CoreConfig:
    champion: str
    challenger: str
    model_file: str
    profile_file: str
    models_topic: str
    max_artifact_bytes: int
    owner: str
    faults: frozenset[str] = frozenset()


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


def _unb64(token: str, prefix: str) -> str:
    try:
        text = base64.urlsafe_b64decode(token.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidArgument("page_token is not one this service issued", details={"field": "page_token"}) from None
    if not text.startswith(prefix):
        raise InvalidArgument("page_token is not one this service issued", details={"field": "page_token"})
    return text[len(prefix):]


class RegistryCore:
    def __init__(
        self,
        *,
        mlflow: MlflowRest,
        store: Store,
        cache: ReadCache,
        config: CoreConfig,
        policies: pol.PolicyFile,
        metrics: ServiceMetrics,
        wake_relay: Callable[[], None] = lambda: None,
    ) -> None:
        self.mlflow = mlflow
        self.store = store
        self.cache = cache
        self.config = config
        self.policies = policies
        self.wake_relay = wake_relay
        self._locks: dict[str, asyncio.Lock] = {}
        reads = metrics.counter("cache_reads_total", "Cached reads by kind and outcome (hit, miss, stale)",
                                ["kind", "outcome"])
        self._reads = {
            (kind, outcome): reads.labels(kind, outcome)
            for kind in ("model", "versions", "version", "alias")
            for outcome in ("hit", "miss", "stale")
        }
        self._refused = metrics.counter("promotions_refused_total", "Promotions refused by the policy")

    # ---- plumbing --------------------------------------------------------------------------------
    @staticmethod
    async def _db(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except LooplineError:
            raise
        except Exception:
            log.exception("store call %s failed", getattr(fn, "__name__", fn))
            raise Unavailable("the registry's store is unavailable; try again") from None

    def _lock(self, model: str) -> asyncio.Lock:
        lock = self._locks.get(model)
        if lock is None:
            lock = self._locks[model] = asyncio.Lock()
        return lock

    def _require_mlflow(self) -> None:
        if not self.mlflow.available:
            raise Unavailable(
                "MLflow is unreachable; writes are refused until it answers again",
                details={"retry_after_seconds": str(self.mlflow.retry_after)},
            )

    @staticmethod
    def translate(exc: UpstreamError, *, what: str) -> LooplineError:
        """Loopline's error for an MLflow failure about `what` (MLflow's own message is only logged)."""
        log.info("mlflow: %s (%s)", exc.detail, what)
        if exc.kind == "not_found":
            return NotFound(f"{what} not found")
        if exc.kind == "exists":
            return AlreadyExists(f"{what} already exists")
        if exc.kind == "invalid":
            return InvalidArgument(f"MLflow refused the request about {what}")
        return Unavailable(f"MLflow is unavailable (while reading or writing {what}); try again")

    async def _cached(self, key: Key, fetch: Callable[[], Awaitable[T]], *, what: str) -> tuple[T, bool]:
        """(value, stale): a fresh cached value, else MLflow's answer, else (MLflow down) the cached one."""
        entry, fresh = self.cache.lookup(key)
        kind = key[0]
        if entry is not None and (fresh or not self.mlflow.available):
            stale = not fresh
            self._reads[(kind, "stale" if stale else "hit")].inc()
            return entry.value, stale
        generation = self.cache.generation(key[1])
        try:
            value = await fetch()
        except UpstreamError as exc:
            if exc.kind == "unavailable" and entry is not None:
                self._reads[(kind, "stale")].inc()
                return entry.value, True
            raise self.translate(exc, what=what) from None
        self._reads[(kind, "miss")].inc()
        self.cache.put(key, value, generation=generation)
        return value, False

    async def _run_op(self, model: str, changes: Sequence[Change], steps: Sequence[Callable[[], Awaitable[None]]],
                      *, what: str) -> None:
        """Record, apply and commit `changes` (one MLflow step each); shielded from caller cancellation."""
        task = asyncio.ensure_future(self._op_body(model, list(changes), list(steps), what=what))
        await asyncio.shield(task)

    async def _op_body(self, model: str, changes: list[Change], steps: list[Callable[[], Awaitable[None]]],
                       *, what: str) -> None:
        for change in changes:
            change.owner = self.config.owner
            change.topic = "" if change.kind == "approved" else self.config.models_topic
            change.request_id = change.request_id or current_request_id()
        await self._db(self.store.add_intents, changes)
        done = 0
        failure: UpstreamError | None = None
        try:
            for step in steps:
                await step()
                done += 1
        except UpstreamError as exc:
            failure = exc
        finally:
            self.cache.invalidate_model(model)
        if done:
            fault(self.config.faults, "after_mlflow_write")
            await self._db(self.store.commit_changes, changes[:done])
            self.wake_relay()
        if failure is not None:
            rest = changes[done:]
            if failure.applied_unknown:
                await self._db(self.store.set_state, [rest[0].id], "unknown")
                rest = rest[1:]
                self.wake_relay()
            await self._db(self.store.set_state, [c.id for c in rest], "abandoned")
            raise self.translate(failure, what=what)

    def _change(self, principal: Principal, *, op: str, kind: str, model: str, reason: str, op_id: str,
                **fields: Any) -> Change:
        return Change(op_id=op_id, op=op, kind=kind, model_name=model, actor=principal.name,
                      role=principal.role_label, reason=reason, **fields)

    def _alias_change(
        self, principal: Principal, *, op: str, op_id: str, model: str, alias: str, old: int, new: int, reason: str,
        extra_after: dict[str, Any] | None = None,
    ) -> tuple[Change, Step]:
        change = self._change(
            principal, op=op, kind="alias", model=model, reason=reason, op_id=op_id, alias=alias,
            version=new or old, previous_version=old, new_version=new,
        )
        change.audit_before = {"alias": alias, "version": old or None}
        change.audit_after = {"alias": alias, "version": new or None, **(extra_after or {})}

        async def step() -> None:
            if new:
                await self.mlflow.set_alias(model, alias, new)
            else:
                await self.mlflow.delete_alias(model, alias)

        return change, step

    def _archive_changes(self, principal: Principal, *, op: str, op_id: str, model: str, version: int,
                         aliases: list[str], reason: str) -> tuple[list[Change], list[Callable[[], Awaitable[None]]]]:
        changes: list[Change] = []
        steps: list[Callable[[], Awaitable[None]]] = []
        for alias in sorted(aliases):
            change, step = self._alias_change(principal, op=op, op_id=op_id, model=model, alias=alias, old=version,
                                              new=0, reason=reason)
            changes.append(change)
            steps.append(step)
        archived = self._change(principal, op=op, kind="archived", model=model, reason=reason, op_id=op_id,
                                version=version)
        archived.audit_before = {"archived": False, "aliases": sorted(aliases)}
        archived.audit_after = {"archived": True, "aliases": []}

        async def archive_step() -> None:
            await self.mlflow.set_version_tag(model, version, cv.TAG_ARCHIVED_BY, principal.name)
            await self.mlflow.set_version_tag(model, version, cv.TAG_ARCHIVED, "true")

        changes.append(archived)
        steps.append(archive_step)
        return changes, steps

    async def _fresh_model(self, model: str) -> dict[str, Any]:
        try:
            return await self.mlflow.get_model(model)
        except UpstreamError as exc:
            raise self.translate(exc, what=f"model {model}") from None

    async def _fresh_version(self, model: str, version: int) -> dict[str, Any]:
        try:
            return await self.mlflow.get_version(model, version)
        except UpstreamError as exc:
            if exc.kind in ("not_found", "invalid"):
                await self._fresh_model(model)  # says "model not found" when that is the reason
                raise NotFound(f"model {model} has no version {version}") from None
            raise self.translate(exc, what=f"model {model} version {version}") from None

    def _version_message(self, raw: dict[str, Any], *, aliases: list[str] | None = None,
                         run: dict[str, Any] | None = None) -> pb.ModelVersion:
        return cv.model_version(raw, aliases=aliases, champion=self.config.champion,
                                challenger=self.config.challenger, run=run)

    # ---- reads -----------------------------------------------------------------------------------
    async def list_models(self, *, page_size: int, page_token: str, name_contains: str) -> pb.ListModelsResponse:
        size = cv.check_page_size(page_size)
        cv.check_text(name_contains, "name_contains", 128)
        token = _unb64(page_token, "m:") if page_token else ""
        try:
            data = await self.mlflow.search_models(max_results=size, page_token=token, name_contains=name_contains)
        except UpstreamError as exc:
            raise self.translate(exc, what="the model list") from None
        response = pb.ListModelsResponse(
            models=[cv.model_message(m) for m in data.get("registered_models", [])],
        )
        next_token = str(data.get("next_page_token", ""))
        if next_token:
            response.next_page_token = _b64("m:" + next_token)
        return response

    async def get_model(self, *, model_name: str) -> pb.GetModelResponse:
        cv.check_model_name(model_name)

        async def fetch() -> pb.Model:
            return cv.model_message(await self.mlflow.get_model(model_name))

        model, stale = await self._cached(("model", model_name), fetch, what=f"model {model_name}")
        return pb.GetModelResponse(model=model, stale=stale)

    async def _all_versions(self, model_name: str) -> tuple[list[pb.ModelVersion], bool]:
        async def fetch() -> list[pb.ModelVersion]:
            raw_model = await self.mlflow.get_model(model_name)
            held: dict[int, list[str]] = {}
            for alias, version in cv.aliases_of(raw_model).items():
                held.setdefault(version, []).append(alias)
            raws = await self.mlflow.search_versions(model_name)
            return [self._version_message(r, aliases=held.get(cv.version_number(r), [])) for r in raws]

        return await self._cached(("versions", model_name), fetch, what=f"model {model_name}")

    async def list_versions(
        self, *, model_name: str, page_size: int, page_token: str, alias: str, tags: dict[str, str], status: int,
        stage: int,
    ) -> pb.ListVersionsResponse:
        cv.check_model_name(model_name)
        size = cv.check_page_size(page_size)
        if alias:
            cv.check_alias(alias)
        below = 0
        if page_token:
            try:
                below = int(_unb64(page_token, "v:"))
            except ValueError:
                raise InvalidArgument("page_token is not one this service issued",
                                      details={"field": "page_token"}) from None
        versions, stale = await self._all_versions(model_name)
        matching = [
            v for v in versions
            if (not alias or alias in v.aliases)
            and (not status or v.status == status)
            and (not stage or v.stage == stage)
            and all(v.tags.get(k) == value for k, value in tags.items())
        ]
        page = [v for v in matching if not below or v.version < below][:size]
        response = pb.ListVersionsResponse(versions=page, total_size=len(matching), stale=stale)
        if page and page[-1].version > min(v.version for v in matching):
            response.next_page_token = _b64(f"v:{page[-1].version}")
        return response

    async def get_version(self, *, model_name: str, version: int) -> pb.GetVersionResponse:
        cv.check_model_name(model_name)
        cv.check_version(version)

        async def fetch() -> pb.ModelVersion:
            try:
                raw = await self.mlflow.get_version(model_name, version)
            except UpstreamError as exc:
                if exc.kind in ("not_found", "invalid"):
                    await self.mlflow.get_model(model_name)  # raises not_found for an unknown model
                    raise NotFound(f"model {model_name} has no version {version}") from None
                raise
            run = await self._run_or_none(str(raw.get("run_id", "") or ""))
            return self._version_message(raw, run=run)

        message, stale = await self._cached(
            ("version", model_name, str(version)), fetch, what=f"model {model_name}"
        )
        return pb.GetVersionResponse(version=message, stale=stale)

    async def _run_or_none(self, run_id: str) -> dict[str, Any] | None:
        if not run_id:
            return None
        try:
            return await self.mlflow.get_run(run_id)
        except UpstreamError as exc:
            if exc.kind in ("not_found", "invalid"):
                return None
            raise

    async def resolve_alias(self, *, model_name: str, alias: str) -> pb.ResolveAliasResponse:
        cv.check_model_name(model_name)
        cv.check_alias(alias)

        async def fetch() -> pb.ResolveAliasResponse:
            try:
                raw = await self.mlflow.get_version_by_alias(model_name, alias)
            except UpstreamError as exc:
                # the alias was validated above, so MLflow's "invalid" means the alias does not exist
                if exc.kind == "invalid":
                    raise NotFound(f"model {model_name} has no alias {alias}") from None
                raise
            tags = cv.tags_of(raw)
            uri = tags.get(cv.TAG_ARTIFACT_URI) or cv._source_uri(raw)
            if not uri:
                uri = await self.mlflow.get_download_uri(model_name, cv.version_number(raw))
            return pb.ResolveAliasResponse(
                model_name=model_name, alias=alias, version=cv.version_number(raw), artifact_uri=uri,
                model_sha256=tags.get(cv.TAG_MODEL_SHA256, ""),
                model_file=tags.get(cv.TAG_MODEL_FILE, self.config.model_file), run_id=str(raw.get("run_id", "")),
                stage=cv.stage_of(tags=tags, aliases=list(raw.get("aliases", []) or [alias]),
                                  champion=self.config.champion, challenger=self.config.challenger),
            )

        resolved, stale = await self._cached(("alias", model_name, alias), fetch, what=f"model {model_name}")
        if not stale:
            return resolved
        flagged = pb.ResolveAliasResponse()
        flagged.CopyFrom(resolved)
        flagged.stale = True
        return flagged

    # ---- registration ----------------------------------------------------------------------------
    async def register_version(
        self, *, principal: Principal, model_name: str, run_id: str, logged_model_id: str, artifact_path: str,
        metrics: dict[str, float], training_set_hash: str, feature_service: str, code_version: str,
        parent_version: int, trigger: str, reason: str, onnx_parity_passed: bool, tags: dict[str, str],
        description: str, make_challenger: bool, idempotency_key: str,
    ) -> pb.RegisterVersionResponse:
        cv.check_model_name(model_name)
        if not cv.RUN_ID.match(run_id):
            raise InvalidArgument("run_id must be an MLflow run id", details={"field": "run_id"})
        if logged_model_id and not cv.RUN_ID.match(logged_model_id):
            raise InvalidArgument("logged_model_id must be an MLflow logged model id",
                                  details={"field": "logged_model_id"})
        relative = artifact_relpath(artifact_path, field="artifact_path") if artifact_path else ""
        if len(metrics) > cv.MAX_METRICS:
            raise InvalidArgument(f"at most {cv.MAX_METRICS} metrics", details={"field": "metrics"})
        for name in metrics:
            if not cv.TAG_KEY.match(name):
                raise InvalidArgument(f"metric name {name[:60]!r} is invalid", details={"field": "metrics"})
        cv.check_tags(tags)
        if trigger not in cv.TRIGGERS:
            raise InvalidArgument("trigger must be manual, drift or schedule", details={"field": "trigger"})
        if parent_version < 0:
            raise InvalidArgument("parent_version must not be negative", details={"field": "parent_version"})
        for value, name in ((training_set_hash, "training_set_hash"), (feature_service, "feature_service"),
                            (code_version, "code_version"), (idempotency_key, "idempotency_key"),
                            (description, "description")):
            cv.check_text(value, name)
        cv.check_reason(reason)
        self._require_mlflow()

        async with self._lock(model_name):
            if idempotency_key:
                existing = await self._registered(model_name, idempotency_key)
                if existing is not None:
                    return pb.RegisterVersionResponse(version=self._version_message(existing, aliases=None),
                                                      created=False)
            try:
                run = await self._run_or_none(run_id)
            except UpstreamError as exc:
                raise self.translate(exc, what=f"run {run_id}") from None
            if run is None:
                raise NotFound(f"run {run_id} not found")
            artifact_uri, source, model_id = await self._source_of(run, logged_model_id, relative)
            files, signature = await self._scan_artifacts(artifact_uri)
            recorded = dict(metrics) or cv.run_metrics(run)
            experiment_id = str(run.get("info", {}).get("experiment_id", ""))
            registration_id = idempotency_key or uuid.uuid4().hex
            model_sha = next((f["sha256"] for f in files if f["path"] == self.config.model_file), "")
            lineage = {
                "experiment_id": experiment_id, "logged_model_id": model_id,
                "training_set_hash": training_set_hash, "feature_service": feature_service,
                "code_version": code_version, "parent_version": str(parent_version or ""), "trigger": trigger,
                "reason": reason,
            }
            version_tags = {
                **tags,
                **{cv.TAG_LINEAGE + k: v for k, v in lineage.items() if v},
                **{cv.TAG_METRIC + k: repr(float(v)) for k, v in recorded.items()},
                cv.TAG_PARITY: "passed" if onnx_parity_passed else "failed",
                cv.TAG_ARTIFACT_URI: artifact_uri,
                cv.TAG_MODEL_FILE: self.config.model_file,
                cv.TAG_REGISTRATION: registration_id,
                cv.TAG_REGISTERED_BY: principal.name,
            }
            if model_sha:
                version_tags[cv.TAG_MODEL_SHA256] = model_sha
            artifacts_json = json.dumps(files, separators=(",", ":"))
            if len(artifacts_json) <= ARTIFACTS_TAG_LIMIT:
                version_tags[cv.TAG_ARTIFACTS] = artifacts_json
            if signature and len(signature) <= SIGNATURE_TAG_LIMIT:
                version_tags[cv.TAG_SIGNATURE] = signature

            op_id = uuid.uuid4().hex
            change = self._change(principal, op="register", kind="registered", model=model_name, reason=reason,
                                  op_id=op_id)
            change.data = {
                "run_id": run_id, "metrics": recorded, "tags": tags, "trigger": trigger,
                "parent_version": parent_version, "registration_id": registration_id,
            }
            change.audit_before = {}
            change.audit_after = {
                "run_id": run_id, "source": source, "artifact_uri": artifact_uri, "model_sha256": model_sha,
                "metrics": recorded, "lineage": {k: v for k, v in lineage.items() if v},
                "onnx_parity_passed": onnx_parity_passed,
            }
            created: dict[str, Any] = {}

            async def create() -> None:
                try:
                    await self.mlflow.create_model(model_name)
                except UpstreamError as exc:
                    if exc.kind != "exists":
                        raise
                raw = await self.mlflow.create_version(
                    name=model_name, source=source, run_id=run_id, tags=version_tags, description=description,
                    model_id=model_id,
                )
                created.update(raw)
                change.version = cv.version_number(raw)
                change.audit_after["version"] = change.version

            await self._run_op(model_name, [change], [create], what=f"a new version of {model_name}")
            message = self._version_message(created, aliases=[])
            response = pb.RegisterVersionResponse(version=message, created=True)
            if make_challenger:
                evaluation = await self._evaluate(model_name, message.version, include_approval=False)
                response.evaluation.CopyFrom(evaluation)
                if evaluation.passed:
                    current = cv.aliases_of(await self._fresh_model(model_name)).get(self.config.challenger, 0)
                    alias_change, step = self._alias_change(
                        principal, op="make_challenger", op_id=op_id, model=model_name,
                        alias=self.config.challenger, old=current, new=message.version, reason=reason,
                        extra_after={"evaluation": _as_dict(evaluation)},
                    )
                    await self._run_op(model_name, [alias_change], [step], what=f"the challenger of {model_name}")
                    response.challenger_set = True
                    response.version.aliases.append(self.config.challenger)
                    response.version.stage = pb.STAGE_STAGING
            return response

    async def _registered(self, model_name: str, registration_id: str) -> dict[str, Any] | None:
        escaped = registration_id.replace("'", "\\'")
        try:
            found = await self.mlflow.search_versions(
                model_name, filter_extra=f"tags.`{cv.TAG_REGISTRATION}` = '{escaped}'"
            )
        except UpstreamError as exc:
            if exc.kind == "not_found":
                return None
            raise self.translate(exc, what=f"model {model_name}") from None
        return found[0] if found else None

    async def _source_of(self, run: dict[str, Any], logged_model_id: str, relative: str) -> tuple[str, str, str]:
        """(artifact URI, MLflow version source, logged model id) of what to register from `run`."""
        info = run.get("info", {})
        run_id = str(info.get("run_id", ""))
        if relative:
            uri = str(info.get("artifact_uri", "")).rstrip("/") + "/" + relative
            return uri, uri, ""
        if not logged_model_id:
            try:
                models = await self.mlflow.logged_models_of_run(
                    experiment_id=str(info.get("experiment_id", "")), run_id=run_id
                )
            except UpstreamError as exc:
                raise self.translate(exc, what=f"the logged models of run {run_id}") from None
            if len(models) != 1:
                raise InvalidArgument(
                    f"run {run_id} has {len(models)} logged models: give logged_model_id or artifact_path",
                    details={"field": "logged_model_id"},
                )
            logged_model_id = str(models[0].get("info", {}).get("model_id", ""))
        try:
            model = await self.mlflow.get_logged_model(logged_model_id)
        except UpstreamError as exc:
            raise self.translate(exc, what=f"logged model {logged_model_id}") from None
        model_info = model.get("info", {})
        if str(model_info.get("source_run_id", "")) != run_id:
            raise InvalidArgument(f"logged model {logged_model_id} was not logged by run {run_id}",
                                  details={"field": "logged_model_id"})
        return str(model_info.get("artifact_uri", "")), f"models:/{logged_model_id}", logged_model_id

    async def _scan_artifacts(self, artifact_uri: str) -> tuple[list[dict[str, Any]], str]:
        try:
            return await scan_artifacts(self.mlflow, artifact_uri, max_bytes=self.config.max_artifact_bytes)
        except UpstreamError as exc:
            raise self.translate(exc, what=f"the artifacts at {artifact_uri}") from None

    # ---- aliases ---------------------------------------------------------------------------------
    async def set_alias(self, *, principal: Principal, model_name: str, alias: str, version: int,
                        reason: str) -> pb.SetAliasResponse:
        cv.check_model_name(model_name)
        cv.check_alias(alias)
        cv.check_version(version)
        cv.check_reason(reason)
        if alias == self.config.champion:
            raise FailedPrecondition(f"the {alias} alias moves only through Promote and Rollback",
                                     details={"alias": alias})
        self._require_mlflow()
        async with self._lock(model_name):
            current = cv.aliases_of(await self._fresh_model(model_name)).get(alias, 0)
            raw = await self._fresh_version(model_name, version)
            if cv.is_archived(cv.tags_of(raw)):
                raise FailedPrecondition(f"{model_name} v{version} is archived: it cannot hold an alias")
            if current == version:
                return pb.SetAliasResponse(previous_version=current, version=version, changed=False)
            change, step = self._alias_change(principal, op="set_alias", op_id=uuid.uuid4().hex, model=model_name,
                                              alias=alias, old=current, new=version, reason=reason)
            await self._run_op(model_name, [change], [step], what=f"alias {alias} of {model_name}")
        return pb.SetAliasResponse(previous_version=current, version=version, changed=True)

    async def delete_alias(self, *, principal: Principal, model_name: str, alias: str,
                           reason: str) -> pb.DeleteAliasResponse:
        cv.check_model_name(model_name)
        cv.check_alias(alias)
        cv.check_reason(reason)
        if alias == self.config.champion:
            raise FailedPrecondition(
                f"the {alias} alias moves only through Promote and Rollback (archive the champion to retire it)",
                details={"alias": alias},
            )
        self._require_mlflow()
        async with self._lock(model_name):
            current = cv.aliases_of(await self._fresh_model(model_name)).get(alias, 0)
            if not current:
                return pb.DeleteAliasResponse(previous_version=0, changed=False)
            change, step = self._alias_change(principal, op="delete_alias", op_id=uuid.uuid4().hex,
                                              model=model_name, alias=alias, old=current, new=0, reason=reason)
            await self._run_op(model_name, [change], [step], what=f"alias {alias} of {model_name}")
        return pb.DeleteAliasResponse(previous_version=current, changed=True)

    # ---- promotion -------------------------------------------------------------------------------
    async def _policy_spec(self, model_name: str) -> tuple[pol.PolicySpec, str]:
        stored = await self._db(self.store.get_policy, model_name)
        if stored is not None:
            return pol.spec_from_json(stored), "api"
        if model_name in self.policies.models:
            return self.policies.models[model_name], "file"
        if self.policies.default is not None:
            return self.policies.default, "file"
        return pol.PolicySpec(), "default"

    async def _facts(self, model_name: str, raw: dict[str, Any]) -> pol.Facts:
        tags = cv.tags_of(raw)
        metrics = cv.recorded_metrics(tags)
        if not metrics:
            run = await self._run_or_none(str(raw.get("run_id", "") or ""))
            metrics = cv.run_metrics(run) if run else {}
        return pol.Facts(
            version=cv.version_number(raw), metrics=metrics, archived=cv.is_archived(tags),
            onnx_parity_passed=tags.get(cv.TAG_PARITY) == "passed", approved_by=tags.get(cv.TAG_APPROVED_BY, ""),
        )

    async def _evaluate(self, model_name: str, version: int, *, include_approval: bool,
                        aliases: dict[str, int] | None = None) -> pb.PromotionEvaluation:
        if aliases is None:
            aliases = cv.aliases_of(await self._fresh_model(model_name))
        try:
            candidate = await self._facts(model_name, await self._fresh_version(model_name, version))
            champion_version = aliases.get(self.config.champion, 0)
            champion = (
                await self._facts(model_name, await self._fresh_version(model_name, champion_version))
                if champion_version else None
            )
        except UpstreamError as exc:
            raise self.translate(exc, what=f"model {model_name}") from None
        spec, _ = await self._policy_spec(model_name)
        return pol.evaluate(spec=spec, candidate=candidate, champion=champion, include_approval=include_approval)

    async def _candidate(self, model_name: str, version: int, aliases: dict[str, int]) -> int:
        if version:
            return cv.check_version(version)
        challenger = aliases.get(self.config.challenger, 0)
        if not challenger:
            raise FailedPrecondition(f"{model_name} has no {self.config.challenger}: give a version")
        return challenger

    async def evaluate_promotion(self, *, model_name: str, version: int) -> pb.EvaluatePromotionResponse:
        cv.check_model_name(model_name)
        if version < 0:
            cv.check_version(version)
        aliases = cv.aliases_of(await self._fresh_model(model_name))
        candidate = await self._candidate(model_name, version, aliases)
        evaluation = await self._evaluate(model_name, candidate, include_approval=True, aliases=aliases)
        return pb.EvaluatePromotionResponse(evaluation=evaluation)

    async def _refuse(self, principal: Principal, model_name: str, evaluation: pb.PromotionEvaluation,
                      *, action: str, reason: str) -> LooplineError:
        self._refused.inc()
        await self._db(
            self.store.add_audit, actor=principal.name, role=principal.role_label, action=action + "_refused",
            model_name=model_name, version=evaluation.version, reason=reason,
            after={"evaluation": _as_dict(evaluation)},
            request_id=current_request_id(),
        )
        message, details = pol.refusal(evaluation, model=model_name)
        return FailedPrecondition(message, details=details)

    async def promote(self, *, principal: Principal, model_name: str, version: int,
                      reason: str) -> pb.PromoteResponse:
        cv.check_model_name(model_name)
        if version < 0:
            cv.check_version(version)
        cv.check_reason(reason)
        self._require_mlflow()
        async with self._lock(model_name):
            aliases = cv.aliases_of(await self._fresh_model(model_name))
            candidate = await self._candidate(model_name, version, aliases)
            current = aliases.get(self.config.champion, 0)
            evaluation = await self._evaluate(model_name, candidate, include_approval=True, aliases=aliases)
            if current == candidate:
                return pb.PromoteResponse(previous_champion=current, champion=candidate, changed=False,
                                          evaluation=evaluation)
            if not evaluation.passed:
                raise await self._refuse(principal, model_name, evaluation, action="promote", reason=reason)
            op_id = uuid.uuid4().hex
            evidence = {"evaluation": _as_dict(evaluation)}
            changes, steps = [], []
            change, step = self._alias_change(principal, op="promote", op_id=op_id, model=model_name,
                                              alias=self.config.champion, old=current, new=candidate, reason=reason,
                                              extra_after=evidence)
            changes.append(change)
            steps.append(step)
            if aliases.get(self.config.challenger) == candidate:
                change, step = self._alias_change(principal, op="promote", op_id=op_id, model=model_name,
                                                  alias=self.config.challenger, old=candidate, new=0, reason=reason)
                changes.append(change)
                steps.append(step)
            await self._run_op(model_name, changes, steps, what=f"the champion of {model_name}")
        return pb.PromoteResponse(previous_champion=current, champion=candidate, changed=True, evaluation=evaluation)

    async def rollback(self, *, principal: Principal, model_name: str, reason: str) -> pb.RollbackResponse:
        cv.check_model_name(model_name)
        cv.check_reason(reason)
        self._require_mlflow()
        async with self._lock(model_name):
            current = cv.aliases_of(await self._fresh_model(model_name)).get(self.config.champion, 0)
            if not current:
                raise FailedPrecondition(f"{model_name} has no {self.config.champion} to roll back")
            history = await self._db(self.store.changes_of, model_name=model_name, kind="alias",
                                     alias=self.config.champion)
            stack: list[int] = []
            for change in history:
                if change.op == "rollback":
                    if stack:
                        stack.pop()
                else:
                    stack.append(change.new_version)
            if stack and stack[-1] == current:
                stack.pop()
            target = next((v for v in reversed(stack) if v and v != current), 0)
            if not target:
                raise FailedPrecondition(f"{model_name} has no previous {self.config.champion} to roll back to")
            raw = await self._fresh_version(model_name, target)
            if cv.is_archived(cv.tags_of(raw)):
                raise FailedPrecondition(
                    f"the previous {self.config.champion} of {model_name}, v{target}, is archived: promote a version "
                    "instead", details={"previous_champion": str(target)},
                )
            change, step = self._alias_change(principal, op="rollback", op_id=uuid.uuid4().hex, model=model_name,
                                              alias=self.config.champion, old=current, new=target, reason=reason)
            await self._run_op(model_name, [change], [step], what=f"the champion of {model_name}")
        return pb.RollbackResponse(from_version=current, to_version=target)

    # ---- archive and stages ----------------------------------------------------------------------
    async def archive(self, *, principal: Principal, model_name: str, version: int,
                      reason: str) -> pb.ArchiveResponse:
        response, removed = await self._transition(principal=principal, model_name=model_name, version=version,
                                                   stage=pb.STAGE_ARCHIVED, reason=reason, op="archive")
        return pb.ArchiveResponse(version=response.version, removed_aliases=removed)

    async def transition_stage(self, *, principal: Principal, model_name: str, version: int, stage: int,
                               reason: str) -> pb.TransitionStageResponse:
        response, _ = await self._transition(principal=principal, model_name=model_name, version=version,
                                             stage=stage, reason=reason, op="transition_stage")
        return response

    async def _transition(self, *, principal: Principal, model_name: str, version: int, stage: int,
                          reason: str, op: str) -> tuple[pb.TransitionStageResponse, list[str]]:
        """Move a version to `stage` if the transition is allowed; also the aliases the version lost."""
        cv.check_model_name(model_name)
        cv.check_version(version)
        cv.check_reason(reason)
        if stage not in STAGE_NAMES:
            raise InvalidArgument("stage must be STAGE_NONE, STAGE_STAGING, STAGE_PRODUCTION or STAGE_ARCHIVED",
                                  details={"field": "stage"})
        self._require_mlflow()
        async with self._lock(model_name):
            aliases = cv.aliases_of(await self._fresh_model(model_name))
            raw = await self._fresh_version(model_name, version)
            tags = cv.tags_of(raw)
            held = [a for a, v in aliases.items() if v == version]
            current = cv.stage_of(tags=tags, aliases=held, champion=self.config.champion,
                                  challenger=self.config.challenger)
            if (current, stage) not in ALLOWED_TRANSITIONS:
                allowed = sorted(STAGE_NAMES[to] for frm, to in ALLOWED_TRANSITIONS if frm == current)
                raise FailedPrecondition(
                    f"{model_name} v{version} cannot move from {STAGE_NAMES[current]} to {STAGE_NAMES[stage]}: "
                    + (f"from {STAGE_NAMES[current]} it may move to {' or '.join(allowed)}" if allowed
                       else f"{STAGE_NAMES[current]} is final"),
                    details={"from_stage": STAGE_NAMES[current], "to_stage": STAGE_NAMES[stage],
                             "allowed": ",".join(allowed)},
                )
            op_id = uuid.uuid4().hex
            changes: list[Change] = []
            steps: list[Callable[[], Awaitable[None]]] = []
            response = pb.TransitionStageResponse(from_stage=current, to_stage=stage)  # type: ignore[arg-type]
            removed: list[str] = []
            if stage == pb.STAGE_STAGING:
                previous = aliases.get(self.config.challenger, 0)
                change, step = self._alias_change(principal, op=op, op_id=op_id, model=model_name,
                                                  alias=self.config.challenger, old=previous, new=version,
                                                  reason=reason)
                changes, steps = [change], [step]
                response.demoted_version = previous
            elif stage == pb.STAGE_PRODUCTION:
                evaluation = await self._evaluate(model_name, version, include_approval=True, aliases=aliases)
                response.evaluation.CopyFrom(evaluation)
                if not evaluation.passed:
                    raise await self._refuse(principal, model_name, evaluation, action=op, reason=reason)
                previous = aliases.get(self.config.champion, 0)
                evidence = {"evaluation": _as_dict(evaluation)}
                change, step = self._alias_change(principal, op=op, op_id=op_id, model=model_name,
                                                  alias=self.config.champion, old=previous, new=version,
                                                  reason=reason, extra_after=evidence)
                changes.append(change)
                steps.append(step)
                change, step = self._alias_change(principal, op=op, op_id=op_id, model=model_name,
                                                  alias=self.config.challenger, old=version, new=0, reason=reason)
                changes.append(change)
                steps.append(step)
                if previous:
                    others = [a for a, v in aliases.items() if v == previous and a != self.config.champion]
                    more, more_steps = self._archive_changes(principal, op=op, op_id=op_id, model=model_name,
                                                             version=previous, aliases=others, reason=reason)
                    changes += more
                    steps += more_steps
                    response.archived_version = previous
            else:  # archived
                changes, steps = self._archive_changes(principal, op=op, op_id=op_id, model=model_name,
                                                       version=version, aliases=held, reason=reason)
                removed = sorted(held)
            await self._run_op(model_name, changes, steps, what=f"{model_name} v{version}")
            after = await self._fresh_version(model_name, version)
            response.version.CopyFrom(self._version_message(after))
        return response, removed

    async def approve(self, *, principal: Principal, model_name: str, version: int,
                      reason: str) -> pb.ApproveVersionResponse:
        cv.check_model_name(model_name)
        cv.check_version(version)
        cv.check_reason(reason)
        self._require_mlflow()
        async with self._lock(model_name):
            raw = await self._fresh_version(model_name, version)
            tags = cv.tags_of(raw)
            if cv.is_archived(tags):
                raise FailedPrecondition(f"{model_name} v{version} is archived: it cannot be approved")
            change = self._change(principal, op="approve", kind="approved", model=model_name, reason=reason,
                                  op_id=uuid.uuid4().hex, version=version)
            change.audit_before = {"approved_by": tags.get(cv.TAG_APPROVED_BY) or None}
            change.audit_after = {"approved_by": principal.name}

            async def step() -> None:
                await self.mlflow.set_version_tag(model_name, version, cv.TAG_APPROVED_BY, principal.name)

            await self._run_op(model_name, [change], [step], what=f"{model_name} v{version}")
            after = await self._fresh_version(model_name, version)
        return pb.ApproveVersionResponse(version=self._version_message(after))

    # ---- policies --------------------------------------------------------------------------------
    async def get_policy(self, *, model_name: str) -> pb.GetPolicyResponse:
        cv.check_model_name(model_name)
        spec, source = await self._policy_spec(model_name)
        return pb.GetPolicyResponse(policy=pol.spec_to_proto(spec, source=source))

    async def set_policy(self, *, principal: Principal, model_name: str, policy: pb.PromotionPolicy,
                         reason: str) -> pb.SetPolicyResponse:
        cv.check_model_name(model_name)
        cv.check_reason(reason)
        try:
            spec = pol.spec_from_proto(policy)
        except pol.PolicyError as exc:
            raise InvalidArgument(str(exc), details={"field": "policy"}) from None
        await self._db(self.store.set_policy, model_name=model_name, policy_json=pol.spec_to_json(spec),
                       actor=principal.name, role=principal.role_label, reason=reason,
                       request_id=current_request_id())
        return pb.SetPolicyResponse(policy=pol.spec_to_proto(spec, source="api"))

    # ---- lineage and audit -----------------------------------------------------------------------
    async def get_lineage(self, *, model_name: str, version: int) -> pb.GetLineageResponse:
        got = await self.get_version(model_name=model_name, version=version)
        message = got.version
        response = pb.GetLineageResponse(version=message, lineage=message.lineage)
        if message.lineage.run_id:
            try:
                run = await self._run_or_none(message.lineage.run_id)
            except UpstreamError:
                run = None  # MLflow down: the rest of the lineage is still worth answering
            if run is not None:
                response.run.CopyFrom(cv.run_summary(run))
        changes = await self._db(self.store.changes_of, model_name=model_name, kind="alias")
        open_spans: dict[str, pb.AliasSpan] = {}
        for change in changes:
            if change.new_version == version and change.previous_version != version:
                span = response.aliases.add(alias=change.alias, granted_by=change.actor)
                span.from_time.FromDatetime(change.created_at)
                open_spans[change.alias] = span
            elif change.previous_version == version and change.new_version != version:
                span = open_spans.pop(change.alias) if change.alias in open_spans else response.aliases.add(
                    alias=change.alias)
                span.to_time.FromDatetime(change.created_at)
                span.revoked_by = change.actor
        revoked = [c.id for c in changes if c.previous_version == version and c.new_version != version]
        history = await self._db(self.store.list_audit, model_name=model_name, version=version, limit=1000,
                                 oldest_first=True, change_ids=revoked)
        for record in history:
            entry = response.history.add()
            entry.CopyFrom(_audit_message(record))
            if record.action.startswith("rollout."):
                details = json.loads(record.after or "{}")
                decision = response.rollout_decisions.add(
                    rollout_id=str(details.get("rollout_id", "")), decision=str(details.get("decision", "")),
                    step=int(details.get("step", 0)), weight=int(details.get("weight", 0)), actor=record.actor,
                    reason=record.reason, champion_version=int(details.get("champion_version", 0)),
                )
                decision.occurred_at.FromDatetime(record.occurred_at)
        return response

    async def list_audit(self, *, model_name: str, actor: str, action: str, since: datetime | None,
                         until: datetime | None, page_size: int, page_token: str) -> pb.ListAuditEntriesResponse:
        if model_name:
            cv.check_model_name(model_name)
        cv.check_text(actor, "actor", 256)
        cv.check_text(action, "action", 64)
        size = cv.check_page_size(page_size)
        before_id = 0
        if page_token:
            try:
                before_id = int(_unb64(page_token, "a:"))
            except ValueError:
                raise InvalidArgument("page_token is not one this service issued",
                                      details={"field": "page_token"}) from None
        records = await self._db(self.store.list_audit, model_name=model_name, actor=actor, action=action,
                                 since=since, until=until, before_id=before_id, limit=size + 1)
        response = pb.ListAuditEntriesResponse(entries=[_audit_message(r) for r in records[:size]])
        if len(records) > size:
            response.next_page_token = _b64(f"a:{records[size - 1].id}")
        return response

    # ---- artifacts -------------------------------------------------------------------------------
    async def download(self, *, model_name: str, version: int, alias: str, kind: int, path: str) -> Download:
        cv.check_model_name(model_name)
        if version:
            cv.check_version(version)
        elif alias:
            version = (await self.resolve_alias(model_name=model_name, alias=alias)).version
        else:
            raise InvalidArgument("give a version or an alias", details={"field": "version"})
        if path:
            relative = artifact_relpath(path, field="path")
        elif kind == pb.ARTIFACT_KIND_MODEL:
            relative = ""
        elif kind == pb.ARTIFACT_KIND_REFERENCE_PROFILE:
            relative = self.config.profile_file
        else:
            raise InvalidArgument("give an artifact kind or a path", details={"field": "kind"})
        message = (await self.get_version(model_name=model_name, version=version)).version
        if not relative:
            relative = self.config.model_file
        if not message.artifact_uri:
            raise FailedPrecondition(f"{model_name} v{version} has no artifact location")
        try:
            root = self.mlflow.artifact_path(message.artifact_uri)
        except UpstreamError:
            raise FailedPrecondition(
                f"the artifacts of {model_name} v{version} are not served by MLflow's artifact proxy"
            ) from None
        recorded = {a.path: a for a in message.artifacts}
        if recorded and relative not in recorded:
            raise NotFound(f"{model_name} v{version} has no artifact {relative}")
        if relative in recorded:
            size, expected = recorded[relative].size_bytes, recorded[relative].sha256
        else:
            size, expected = await self._artifact_size(root, relative, model_name, version), ""
        return Download(model_name=model_name, version=version, path=relative, size_bytes=size,
                        expected_sha256=expected, _chunks=self._artifact_bytes(posixpath.join(root, relative)))

    async def _artifact_size(self, root: str, relative: str, model_name: str, version: int) -> int:
        folder, name = posixpath.split(relative)
        try:
            items = await self.mlflow.list_artifacts(posixpath.join(root, folder) if folder else root)
        except UpstreamError as exc:
            raise self.translate(exc, what=f"the artifacts of {model_name} v{version}") from None
        for item in items:
            if str(item.get("path", "")).rsplit("/", 1)[-1] == name and not item.get("is_dir"):
                return int(item.get("file_size", 0) or 0)
        raise NotFound(f"{model_name} v{version} has no artifact {relative}")

    async def _artifact_bytes(self, path: str) -> AsyncIterator[bytes]:
        try:
            async for chunk in self.mlflow.stream_artifact(path):
                yield chunk
        except UpstreamError as exc:
            raise self.translate(exc, what=f"artifact {path}") from None

    # ---- recovery (called by the relay) ----------------------------------------------------------
    async def recover(self, change: Change) -> None:
        """Resolve an open change: commit it if MLflow shows it happened, else abandon it. Leaves it open
        when MLflow cannot be asked."""
        try:
            applied = await self._applied(change)
        except UpstreamError as exc:
            if exc.kind == "unavailable":
                return
            applied = False
        if applied:
            await self._db(self.store.commit_changes, [change])
        else:
            await self._db(self.store.set_state, [change.id], "abandoned")
            change.state = "abandoned"
        self.cache.invalidate_model(change.model_name)

    async def _applied(self, change: Change) -> bool:
        model = change.model_name
        if change.kind == "alias":
            try:
                raw = await self.mlflow.get_model(model)
            except UpstreamError as exc:
                if exc.kind == "not_found":
                    return False
                raise
            return cv.aliases_of(raw).get(change.alias, 0) == change.new_version
        if change.kind == "registered":
            found = await self._registered(model, str(change.data.get("registration_id", "")))
            if found is None:
                return False
            change.version = cv.version_number(found)
            change.audit_after["version"] = change.version
            return True
        try:
            tags = cv.tags_of(await self.mlflow.get_version(model, change.version))
        except UpstreamError as exc:
            if exc.kind in ("not_found", "invalid"):
                return False
            raise
        if change.kind == "archived":
            return cv.is_archived(tags)
        if change.kind == "approved":
            return tags.get(cv.TAG_APPROVED_BY) == change.actor
        return False


def _as_dict(message: Message) -> dict[str, Any]:
    return MessageToDict(message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)


def _audit_message(record: AuditRecord) -> pb.AuditEntry:
    entry = pb.AuditEntry(
        id=record.entry_id, actor=record.actor, role=record.role, action=record.action,
        model_name=record.model_name, version=record.version, alias=record.alias, reason=record.reason,
        before=record.before, after=record.after, request_id=record.request_id,
    )
    entry.occurred_at.FromDatetime(record.occurred_at)
    return entry
