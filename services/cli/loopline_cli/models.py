"""`loopline models ...`: the model registry (the registry service, over gRPC).

    loopline models list | get NAME [VERSION] | versions NAME | alias NAME ALIAS [VERSION] [--delete]
                    promote NAME [VERSION] [--dry-run] | rollback NAME | archive NAME VERSION
                    stage NAME VERSION STAGE | approve NAME VERSION | audit | lineage NAME VERSION
                    download NAME (VERSION | --alias A) [--kind model|profile | --path P] -o FILE

Every command takes --json (the answer as proto3 JSON). The registry is --registry, else
$LOOPLINE_REGISTRY_TARGET, else the running stack's; the token is --token, else $LOOPLINE_TOKEN, else the
stack's local admin token.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from loopline_sdk import RegistryClient

from loopline.registry.v1 import registry_pb2 as pb
from loopline_cli.stack import Stack
from loopline_cli.tokens import local_token
from loopline_common.errors import LooplineError
from loopline_common.grpc_client import error_from_rpc

F = TypeVar("F", bound=Callable[..., Any])

STAGES = {"none": pb.STAGE_NONE, "staging": pb.STAGE_STAGING, "production": pb.STAGE_PRODUCTION,
          "archived": pb.STAGE_ARCHIVED}
STATUSES = {"ready": pb.VERSION_STATUS_READY, "pending": pb.VERSION_STATUS_PENDING_REGISTRATION,
            "failed": pb.VERSION_STATUS_FAILED_REGISTRATION}


def _stage(value: int) -> str:
    return str(pb.Stage.Name(value)).removeprefix("STAGE_").capitalize()


def _as_dict(message: Message) -> dict[str, Any]:
    return MessageToDict(message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)


class _Registry:
    """A registry client for one command, with the options every command shares."""

    def __init__(self, *, registry: str | None, token: str | None, home: str, timeout: float) -> None:
        self.home = Path(home)
        target = registry or os.environ.get("LOOPLINE_REGISTRY_TARGET") or self._stack_target()
        secret = token or os.environ.get("LOOPLINE_TOKEN") or local_token(self.home)
        self.metadata = (("authorization", f"Bearer {secret}"),) if secret else ()
        # The SDK's registry client: its deadline, token, request id and retry policy (reads only).
        self.sdk = RegistryClient(target, token=secret, timeout=timeout, max_message_bytes=16 * 1024 * 1024)
        self.client = self.sdk.client
        self.stub = self.sdk.stub

    def _stack_target(self) -> str:
        for component in Stack(home=self.home).load():
            if component.name == "registry" and "grpc" in component.urls:
                return component.urls["grpc"]
        raise click.UsageError(
            f"no registry in the stack at {self.home}; start it with `loopline up` or pass --registry"
        )

    def __call__(self, method: str, request: Message, *, read: bool = False) -> Any:
        return self.sdk._read(method, request) if read else self.sdk._write(method, request)


def _fail(exc: LooplineError) -> None:
    command = click.get_current_context().command_path
    click.echo(f"{command}: {exc.code.value}: {exc.message}", err=True)
    for field, problem in sorted(exc.details.items()):
        if field != "request_id" and problem not in exc.message:
            click.echo(f"  {field}: {problem}", err=True)
    sys.exit(1)


def registry_command(func: F) -> F:
    """Add the shared options; pass a `_Registry` as `api`; turn a LooplineError into exit status 1."""

    @click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON.")
    @click.option("--timeout", default=30.0, show_default=True, help="Seconds to wait for an answer.")
    @click.option("--token", default=None, help="API token (default: $LOOPLINE_TOKEN or the stack's admin token).")
    @click.option("--registry", default=None, help="Registry gRPC host:port (default: the running stack's).")
    @click.option("--home", default=lambda: os.environ.get("LOOPLINE_HOME", ".loopline"),
                  show_default="$LOOPLINE_HOME or .loopline", help="The embedded stack to find the registry in.")
    @wraps(func)
    def wrapper(*args: Any, registry: str | None, token: str | None, home: str, timeout: float,
                **kwargs: Any) -> Any:
        api = _Registry(registry=registry, token=token, home=home, timeout=timeout)
        try:
            return func(*args, api=api, **kwargs)
        except LooplineError as exc:
            _fail(exc)
        finally:
            api.client.close()

    return wrapper  # type: ignore[return-value]


def _emit(message: Message, as_json: bool, text: Callable[[], None]) -> None:
    if as_json:
        click.echo(json.dumps(_as_dict(message), indent=2))
    else:
        text()


def _version_line(v: pb.ModelVersion) -> str:
    metrics = " ".join(f"{k}={val:.4g}" for k, val in sorted(v.metrics.items())[:4])
    aliases = ",".join(v.aliases) or "-"
    created = v.created_at.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%d %H:%M") if v.HasField("created_at") else ""
    return f"v{v.version:<5} {_stage(v.stage):<11} {aliases:<22} {created:<17} {metrics}"


@click.group()
def models() -> None:
    """The model registry: versions, aliases, stages, promotion, audit and lineage."""


@models.command("list")
@click.option("--contains", default="", help="Only models whose name contains this.")
@click.option("--limit", default=100, show_default=True, help="At most this many models.")
@registry_command
def list_models(api: _Registry, contains: str, limit: int, as_json: bool) -> None:
    """List registered models."""
    found: list[pb.Model] = []
    token = ""
    while len(found) < limit:
        reply = api("ListModels", pb.ListModelsRequest(page_size=min(limit, 1000), page_token=token,
                                                       name_contains=contains), read=True)
        found.extend(reply.models)
        token = reply.next_page_token
        if not token:
            break
    answer = pb.ListModelsResponse(models=found[:limit])

    def text() -> None:
        for m in answer.models:
            aliases = " ".join(f"{a}=v{v}" for a, v in sorted(m.aliases.items())) or "-"
            click.echo(f"{m.name:<32} latest=v{m.latest_version:<5} {aliases}")

    _emit(answer, as_json, text)


@models.command("get")
@click.argument("name")
@click.argument("version", type=int, required=False)
@registry_command
def get(api: _Registry, name: str, version: int | None, as_json: bool) -> None:
    """Show a model, or one of its versions with metrics, params, lineage and checksum."""
    if version is None:
        reply = api("GetModel", pb.GetModelRequest(model_name=name), read=True)

        def model_text() -> None:
            m = reply.model
            click.echo(f"{m.name}  latest=v{m.latest_version}" + ("  (stale)" if reply.stale else ""))
            for alias, v in sorted(m.aliases.items()):
                click.echo(f"  @{alias:<16} v{v}")
            if m.description:
                click.echo(f"  {m.description}")

        _emit(reply, as_json, model_text)
        return
    answer = api("GetVersion", pb.GetVersionRequest(model_name=name, version=version), read=True)

    def version_text() -> None:
        v = answer.version
        click.echo(f"{name} {_version_line(v)}" + ("  (stale)" if answer.stale else ""))
        click.echo(f"  run {v.lineage.run_id}  registered by {v.registered_by or '-'}  "
                   f"parity={'passed' if v.onnx_parity_passed else 'no'}  approved by {v.approved_by or '-'}")
        click.echo(f"  artifacts {v.artifact_uri}")
        click.echo(f"  sha256 {v.model_sha256 or '-'}")
        for key, value in sorted(v.metrics.items()):
            click.echo(f"  metric {key} = {value:.6g}")

    _emit(answer, as_json, version_text)


@models.command("versions")
@click.argument("name")
@click.option("--alias", default="", help="Only the version holding this alias.")
@click.option("--stage", type=click.Choice(list(STAGES)), default=None)
@click.option("--status", type=click.Choice(list(STATUSES)), default=None)
@click.option("--tag", "tags", multiple=True, help="key=value; repeatable.")
@click.option("--limit", default=100, show_default=True, help="At most this many versions.")
@registry_command
def versions(api: _Registry, name: str, alias: str, stage: str | None, status: str | None,
             tags: tuple[str, ...], limit: int, as_json: bool) -> None:
    """List a model's versions, newest first."""
    wanted = {}
    for item in tags:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter("use key=value", param_hint="--tag")
        wanted[key] = value
    found: list[pb.ModelVersion] = []
    token, total, stale = "", 0, False
    while len(found) < limit:
        reply = api("ListVersions", pb.ListVersionsRequest(
            model_name=name, page_size=min(limit, 1000), page_token=token, alias=alias, tags=wanted,
            stage=STAGES[stage] if stage else None, status=STATUSES[status] if status else None), read=True)
        found.extend(reply.versions)
        total, stale = reply.total_size, reply.stale
        token = reply.next_page_token
        if not token:
            break
    answer = pb.ListVersionsResponse(versions=found[:limit], total_size=total, stale=stale)

    def text() -> None:
        for v in answer.versions:
            click.echo(_version_line(v))
        click.echo(f"{len(answer.versions)} of {total} version(s)" + ("  (stale)" if stale else ""))

    _emit(answer, as_json, text)


@models.command("alias")
@click.argument("name")
@click.argument("alias")
@click.argument("version", type=int, required=False)
@click.option("--delete", is_flag=True, help="Remove the alias.")
@click.option("--reason", default="", help="Why (kept in the audit log).")
@registry_command
def alias_command(api: _Registry, name: str, alias: str, version: int | None, delete: bool, reason: str,
                  as_json: bool) -> None:
    """Resolve NAME@ALIAS, point it at VERSION, or --delete it."""
    if delete:
        removed = api("DeleteAlias", pb.DeleteAliasRequest(model_name=name, alias=alias, reason=reason))
        _emit(removed, as_json, lambda: click.echo(
            f"{name}@{alias} removed (was v{removed.previous_version})" if removed.changed
            else f"{name}@{alias} did not exist"))
    elif version is not None:
        moved = api("SetAlias", pb.SetAliasRequest(model_name=name, alias=alias, version=version, reason=reason))
        _emit(moved, as_json, lambda: click.echo(
            f"{name}@{alias} -> v{moved.version}" + (f" (was v{moved.previous_version})" if moved.changed
                                                     else " (unchanged)")))
    else:
        resolved = api("ResolveAlias", pb.ResolveAliasRequest(model_name=name, alias=alias), read=True)
        _emit(resolved, as_json, lambda: click.echo(
            f"{name}@{alias} = v{resolved.version}  {_stage(resolved.stage)}  {resolved.artifact_uri}  "
            f"sha256={resolved.model_sha256 or '-'}" + ("  (stale)" if resolved.stale else "")))


def _gates(evaluation: pb.PromotionEvaluation) -> None:
    for gate in evaluation.gates:
        click.echo(f"  [{'pass' if gate.passed else 'FAIL'}] {gate.name}: {gate.message}")


@models.command("promote")
@click.argument("name")
@click.argument("version", type=int, required=False)
@click.option("--reason", default="", help="Why (kept in the audit log).")
@click.option("--dry-run", is_flag=True, help="Only check the promotion policy's gates.")
@registry_command
def promote(api: _Registry, name: str, version: int | None, reason: str, dry_run: bool, as_json: bool) -> None:
    """Make VERSION (default: the challenger) champion, if it passes the promotion policy."""
    if dry_run:
        checked = api("EvaluatePromotion", pb.EvaluatePromotionRequest(model_name=name, version=version or 0),
                      read=True)

        def dry_text() -> None:
            e = checked.evaluation
            click.echo(f"{name} v{e.version}: {'would pass' if e.passed else 'would be refused'}"
                       + (f" (champion v{e.champion_version})" if e.champion_version else ""))
            _gates(e)

        _emit(checked, as_json, dry_text)
        return
    done = api("Promote", pb.PromoteRequest(model_name=name, version=version or 0, reason=reason))

    def text() -> None:
        if done.changed:
            click.echo(f"{name}: champion v{done.previous_champion or '-'} -> v{done.champion}")
        else:
            click.echo(f"{name}: v{done.champion} is already champion")
        _gates(done.evaluation)

    _emit(done, as_json, text)


@models.command("rollback")
@click.argument("name")
@click.option("--reason", default="", help="Why (kept in the audit log).")
@registry_command
def rollback(api: _Registry, name: str, reason: str, as_json: bool) -> None:
    """Move the champion back to the previous champion."""
    done = api("Rollback", pb.RollbackRequest(model_name=name, reason=reason))
    _emit(done, as_json, lambda: click.echo(f"{name}: champion v{done.from_version} -> v{done.to_version}"))


@models.command("archive")
@click.argument("name")
@click.argument("version", type=int)
@click.option("--reason", default="", help="Why (kept in the audit log).")
@registry_command
def archive(api: _Registry, name: str, version: int, reason: str, as_json: bool) -> None:
    """Archive a version: it loses its aliases and is never promoted again."""
    done = api("Archive", pb.ArchiveRequest(model_name=name, version=version, reason=reason))
    _emit(done, as_json, lambda: click.echo(
        f"{name} v{version} archived" + (f"; removed {', '.join(done.removed_aliases)}" if done.removed_aliases
                                         else "")))


@models.command("stage")
@click.argument("name")
@click.argument("version", type=int)
@click.argument("stage", type=click.Choice(list(STAGES), case_sensitive=False))
@click.option("--reason", default="", help="Why (kept in the audit log).")
@registry_command
def stage(api: _Registry, name: str, version: int, stage: str, reason: str, as_json: bool) -> None:
    """Move a version to another stage (None -> Staging -> Production -> Archived)."""
    done = api("TransitionStage", pb.TransitionStageRequest(model_name=name, version=version,
                                                            stage=STAGES[stage.lower()], reason=reason))

    def text() -> None:
        click.echo(f"{name} v{version}: {_stage(done.from_stage)} -> {_stage(done.to_stage)}")
        if done.archived_version:
            click.echo(f"  v{done.archived_version} (the previous Production version) archived")
        if done.demoted_version:
            click.echo(f"  v{done.demoted_version} (the previous Staging version) back to None")
        if done.evaluation.gates:
            _gates(done.evaluation)

    _emit(done, as_json, text)


@models.command("approve")
@click.argument("name")
@click.argument("version", type=int)
@click.option("--reason", default="", help="Why (kept in the audit log).")
@registry_command
def approve(api: _Registry, name: str, version: int, reason: str, as_json: bool) -> None:
    """Record your approval of a version (for policies that require one)."""
    done = api("ApproveVersion", pb.ApproveVersionRequest(model_name=name, version=version, reason=reason))
    _emit(done, as_json, lambda: click.echo(f"{name} v{version} approved by {done.version.approved_by}"))


def _when(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@models.command("audit")
@click.option("--model", default="", help="Only entries about this model.")
@click.option("--actor", default="", help="Only entries by this actor.")
@click.option("--action", default="", help="Only this action (e.g. promote; 'rollout.*' for a prefix).")
@click.option("--since", default=None, help="ISO 8601 time (UTC unless given).")
@click.option("--until", default=None, help="ISO 8601 time (UTC unless given).")
@click.option("--limit", default=50, show_default=True, help="At most this many entries, newest first.")
@registry_command
def audit(api: _Registry, model: str, actor: str, action: str, since: str | None, until: str | None,
          limit: int, as_json: bool) -> None:
    """The audit log: who did what, when, why, before and after."""
    request = pb.ListAuditEntriesRequest(model_name=model, actor=actor, action=action, page_size=min(limit, 1000))
    for field, value in (("since", _when(since)), ("until", _when(until))):
        if value is not None:
            getattr(request, field).FromDatetime(value)
    entries: list[pb.AuditEntry] = []
    while len(entries) < limit:
        reply = api("ListAuditEntries", request, read=True)
        entries.extend(reply.entries)
        if not reply.next_page_token:
            break
        request.page_token = reply.next_page_token
    answer = pb.ListAuditEntriesResponse(entries=entries[:limit])

    def text() -> None:
        for e in answer.entries:
            when = e.occurred_at.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%d %H:%M:%S")
            what = f"{e.model_name} v{e.version}" + (f" @{e.alias}" if e.alias else "")
            click.echo(f"{when}  {e.actor:<16} {e.action:<18} {what:<36} {e.before} -> {e.after}"
                       + (f"  ({e.reason})" if e.reason else ""))

    _emit(answer, as_json, text)


@models.command("lineage")
@click.argument("name")
@click.argument("version", type=int)
@registry_command
def lineage(api: _Registry, name: str, version: int, as_json: bool) -> None:
    """Where a version came from and what happened to it."""
    reply = api("GetLineage", pb.GetLineageRequest(model_name=name, version=version), read=True)

    def text() -> None:
        run, data = reply.run, reply.lineage
        click.echo(f"{name} v{version} ({_stage(reply.version.stage)})")
        click.echo(f"  run        {run.run_id or data.run_id}  experiment {run.experiment_id}  {run.status}")
        click.echo(f"  data       training set {data.training_set_hash or '-'}  features {data.feature_service or '-'}")
        click.echo(f"  code       {data.code_version or '-'}  parent v{data.parent_version or '-'}  "
                   f"trigger {data.trigger or '-'}  {data.reason}")
        for span in reply.aliases:
            start = span.from_time.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%d %H:%M") if span.HasField(
                "from_time") else "?"
            end = span.to_time.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%d %H:%M") if span.HasField(
                "to_time") else "now"
            click.echo(f"  @{span.alias:<12} {start} -> {end}")
        for d in reply.rollout_decisions:
            click.echo(f"  rollout {d.rollout_id} step {d.step} weight {d.weight}%: {d.decision} ({d.reason})")

    _emit(reply, as_json, text)


@models.command("download")
@click.argument("name")
@click.argument("version", type=int, required=False)
@click.option("--alias", default="", help="Download the version holding this alias.")
@click.option("--kind", type=click.Choice(["model", "profile"]), default="model", show_default=True)
@click.option("--path", "artifact_path", default="", help="Another file below the version's artifacts.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), required=True)
@registry_command
def download(api: _Registry, name: str, version: int | None, alias: str, kind: str, artifact_path: str,
             output: str, as_json: bool) -> None:
    """Download an artifact and check its sha256 against the one recorded at registration."""
    import grpc

    request = pb.DownloadArtifactRequest(
        model_name=name, version=version or 0, alias=alias, path=artifact_path,
        kind=pb.ARTIFACT_KIND_MODEL if kind == "model" else pb.ARTIFACT_KIND_REFERENCE_PROFILE,
    )
    digest = hashlib.sha256()
    header = pb.ArtifactHeader()
    trailer = pb.ArtifactTrailer()
    try:
        with open(output, "wb") as out:
            for part in api.stub.DownloadArtifact(request, timeout=api.client.timeout, metadata=api.metadata):
                which = part.WhichOneof("part")
                if which == "header":
                    header = part.header
                elif which == "chunk":
                    digest.update(part.chunk)
                    out.write(part.chunk)
                else:
                    trailer = part.trailer
    except grpc.RpcError as exc:
        Path(output).unlink(missing_ok=True)
        raise error_from_rpc(exc, service="registry") from None
    if header.expected_sha256 and digest.hexdigest() != header.expected_sha256:
        Path(output).unlink(missing_ok=True)
        click.echo(f"checksum mismatch: got {digest.hexdigest()}, registered {header.expected_sha256}", err=True)
        sys.exit(1)
    _emit(trailer, as_json, lambda: click.echo(
        f"{output}: {trailer.size_bytes} bytes of {name} v{header.version} {header.path}, sha256 {trailer.sha256}"))
