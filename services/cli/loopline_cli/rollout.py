"""`loopline rollout ...`: watch and steer canary rollouts through the rollout service (over gRPC).

Steering (pause, resume, abort, promote, start) is recorded with the caller's token name and the reason
given; the token is --token, $LOOPLINE_ROLLOUT_TOKEN, or the running stack's local releaser token.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click
from google.protobuf.json_format import MessageToJson

from loopline.events.v1 import rollouts_pb2
from loopline.rollout.v1 import rollout_pb2, rollout_pb2_grpc
from loopline_cli.stack import Stack
from loopline_cli.tokens import local_token
from loopline_common.errors import LooplineError
from loopline_common.grpc_client import ServiceClient

OUTCOMES = {1: "pass", 2: "FAIL", 3: "not enough data"}


def _target(target: str | None, home: str) -> str:
    """--target, $LOOPLINE_ROLLOUT_TARGET, or the running stack's rollout service."""
    if target:
        return target
    if os.environ.get("LOOPLINE_ROLLOUT_TARGET"):
        return os.environ["LOOPLINE_ROLLOUT_TARGET"]
    for component in Stack(home=Path(home)).load():
        if component.name == "rollout" and "grpc" in component.urls:
            return component.urls["grpc"]
    raise click.UsageError(f"no rollout service in the stack at {home}; start it with `loopline up` or pass --target")


def _token(token: str | None, home: str) -> str | None:
    return token or os.environ.get("LOOPLINE_ROLLOUT_TOKEN") or local_token(Path(home), "releaser")


def _call(method: str, request: Any, *, target: str, token: str | None = None) -> Any:
    client = ServiceClient(service="rollout", target=target, token=token, timeout=30.0)
    stub = rollout_pb2_grpc.RolloutServiceStub(client.channel)  # type: ignore[no-untyped-call]
    try:
        return client.call(getattr(stub, method), request, idempotent=method in ("GetRollout", "ListRollouts"))
    except LooplineError as exc:
        click.echo(f"loopline rollout: {exc.code.value}: {exc.message}", err=True)
        sys.exit(1)
    finally:
        client.close()


def _phase(value: rollout_pb2.Phase) -> str:
    return rollout_pb2.Phase.Name(value).removeprefix("PHASE_").lower()


def _show(rollout: rollout_pb2.Rollout, decisions: list[rollouts_pb2.RolloutDecision] | None = None) -> None:
    steps = ", ".join(f"{w}%" for w in rollout.steps)
    click.echo(f"{rollout.model_name} v{rollout.candidate_version} (champion v{rollout.champion_version}): "
               f"{_phase(rollout.phase)}, step {rollout.step}/{len(rollout.steps)} [{steps}], canary "
               f"{rollout.weight}%, failed analyses {rollout.failed_checks}/{rollout.threshold}")
    click.echo(f"  rollout {rollout.rollout_id}, actuator {rollout.actuator}, started by {rollout.started_by}")
    if rollout.reason:
        click.echo(f"  last: {rollout.actor}: {rollout.reason}")
    if rollout.pull_request_url:
        click.echo(f"  pull request: {rollout.pull_request_url}")
    for check in rollout.last_checks:
        click.echo(f"  {check.name:<22} {OUTCOMES.get(check.outcome, '?'):<16} {check.value:.4g}  {check.condition}"
                   f"  {check.message}")
    for d in decisions or []:
        name = rollouts_pb2.Decision.Name(d.decision).removeprefix("DECISION_").lower()
        click.echo(f"  - {name:<8} step {d.step} {d.weight:>3}%  {d.actor}: {d.reason}")


home_option = click.option("--home", default=lambda: os.environ.get("LOOPLINE_HOME", ".loopline"),
                           show_default="$LOOPLINE_HOME or .loopline", help="The embedded stack to ask.")
target_option = click.option("--target", default=None, help="Rollout service gRPC host:port (instead of the stack's).")
token_option = click.option("--token", default=None, help="Bearer token (role releaser or admin).")
reason_option = click.option("--reason", required=True, help="Why; recorded with your identity.")


@click.group()
def rollout() -> None:
    """Canary rollouts: status, and pause / resume / abort / promote by hand."""


@rollout.command()
@click.argument("model")
@home_option
@target_option
@click.option("--json", "as_json", is_flag=True, help="The GetRollout answer as JSON.")
@click.option("--history", is_flag=True, help="Every decision of the rollout.")
def status(model: str, home: str, target: str | None, as_json: bool, history: bool) -> None:
    """The active (else the latest) rollout of MODEL."""
    response = _call("GetRollout", rollout_pb2.GetRolloutRequest(model_name=model), target=_target(target, home))
    if as_json:
        click.echo(MessageToJson(response, preserving_proto_field_name=True))
        return
    _show(response.rollout, list(response.decisions) if history else None)


def _steer(method: str, request: Any, home: str, target: str | None, token: str | None) -> None:
    response = _call(method, request, target=_target(target, home), token=_token(token, home))
    _show(response.rollout)


@rollout.command()
@click.argument("model")
@reason_option
@home_option
@target_option
@token_option
def pause(model: str, reason: str, home: str, target: str | None, token: str | None) -> None:
    """Stop analysing MODEL's rollout and hold its weight."""
    _steer("PauseRollout", rollout_pb2.PauseRolloutRequest(model_name=model, reason=reason), home, target, token)


@rollout.command()
@click.argument("model")
@reason_option
@home_option
@target_option
@token_option
def resume(model: str, reason: str, home: str, target: str | None, token: str | None) -> None:
    """Continue MODEL's paused rollout from its step."""
    _steer("ResumeRollout", rollout_pb2.ResumeRolloutRequest(model_name=model, reason=reason), home, target, token)


@rollout.command()
@click.argument("model")
@reason_option
@home_option
@target_option
@token_option
def abort(model: str, reason: str, home: str, target: str | None, token: str | None) -> None:
    """End MODEL's rollout now: the canary weight returns to 0."""
    _steer("AbortRollout", rollout_pb2.AbortRolloutRequest(model_name=model, reason=reason), home, target, token)


@rollout.command()
@click.argument("model")
@reason_option
@home_option
@target_option
@token_option
def promote(model: str, reason: str, home: str, target: str | None, token: str | None) -> None:
    """Skip MODEL's remaining steps and promote its candidate now."""
    _steer("PromoteRollout", rollout_pb2.PromoteRolloutRequest(model_name=model, reason=reason), home, target, token)


@rollout.command()
@click.argument("model")
@click.option("--version", "version", default=0, show_default="the challenger", help="Version to roll out.")
@click.option("--reason", default="", help="Why.")
@home_option
@target_option
@token_option
def start(model: str, version: int, reason: str, home: str, target: str | None, token: str | None) -> None:
    """Start a rollout of MODEL by hand (the controller starts one by itself for a new challenger)."""
    _steer("StartRollout", rollout_pb2.StartRolloutRequest(model_name=model, candidate_version=version,
                                                           reason=reason), home, target, token)


@rollout.command(name="list")
@click.option("--model", default="", help="Only this model.")
@click.option("--active", is_flag=True, help="Only active rollouts.")
@home_option
@target_option
def list_rollouts(model: str, active: bool, home: str, target: str | None) -> None:
    """Rollouts, newest first."""
    response = _call("ListRollouts", rollout_pb2.ListRolloutsRequest(model_name=model, active_only=active),
                     target=_target(target, home))
    for r in response.rollouts:
        click.echo(f"{r.rollout_id[:12]}  {r.model_name:<20} v{r.candidate_version:<5} {_phase(r.phase):<12} "
                   f"step {r.step}/{len(r.steps)} {r.weight:>3}%  {r.reason[:80]}")
