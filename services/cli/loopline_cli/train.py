"""`loopline train ...`: submit, list, inspect, cancel and watch training jobs (the training service, over
gRPC). Only protos and gRPC here: the CLI never imports a training library."""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import click
import grpc
from google.protobuf.json_format import MessageToDict, ParseDict, ParseError

from loopline.events.v1 import training_jobs_pb2
from loopline.training.v1 import training_pb2, training_pb2_grpc
from loopline_cli.stack import Stack
from loopline_common.errors import LooplineError
from loopline_common.grpc_client import ServiceClient, error_from_rpc

STATES = ("pending", "running", "succeeded", "failed", "cancelled")
TERMINAL = {training_jobs_pb2.JOB_STATE_SUCCEEDED, training_jobs_pb2.JOB_STATE_FAILED,
            training_jobs_pb2.JOB_STATE_CANCELLED}
SUMMARY_METRICS = ("roc_auc", "pr_auc", "log_loss", "f1")


def _target(target: str | None, home: str) -> str:
    """The training service's gRPC address: --target, $LOOPLINE_TRAINING_TARGET, or the running stack's."""
    if target:
        return target
    if os.environ.get("LOOPLINE_TRAINING_TARGET"):
        return os.environ["LOOPLINE_TRAINING_TARGET"]
    for component in Stack(home=Path(home)).load():
        if component.name == "training" and "grpc" in component.urls:
            return component.urls["grpc"]
    raise click.UsageError(f"no training service in the stack at {home}; start it with `loopline up` or pass --target")


class _Session:
    def __init__(self, target: str, timeout: float) -> None:
        self.client = ServiceClient(service="training", target=target, timeout=timeout)
        self.stub = training_pb2_grpc.TrainingServiceStub(self.client.channel)  # type: ignore[no-untyped-call]

    def __enter__(self) -> _Session:
        return self

    def __exit__(self, *_: object) -> None:
        self.client.close()


def _fail(command: str, exc: LooplineError) -> None:
    click.echo(f"loopline train {command}: {exc.code.value}: {exc.message}", err=True)
    for field, problem in sorted(exc.details.items()):
        if field != "request_id" and problem not in exc.message:
            click.echo(f"  {field}: {problem}", err=True)
    sys.exit(1)


def _state(job: training_pb2.Job) -> str:
    return str(training_jobs_pb2.JobState.Name(job.state)).removeprefix("JOB_STATE_").lower()


def _as_dict(job: training_pb2.Job) -> dict[str, Any]:
    return MessageToDict(job, preserving_proto_field_name=True)


def _when(job: training_pb2.Job) -> str:
    return job.created_at.ToDatetime().strftime("%Y-%m-%d %H:%M:%S") if job.HasField("created_at") else ""


home_option = click.option(
    "--home", default=lambda: os.environ.get("LOOPLINE_HOME", ".loopline"),
    show_default="$LOOPLINE_HOME or .loopline", help="The embedded stack whose training service to ask.",
)
target_option = click.option("--target", default=None, help="Training gRPC host:port (instead of the stack's).")
timeout_option = click.option("--timeout", default=30.0, show_default=True, help="Seconds to wait for an answer.")


@click.group()
def train() -> None:
    """Training jobs: LightGBM and PyTorch models, tracked in MLflow, registered with lineage."""


def _load_spec(path: str | None) -> dict[str, Any]:
    if path is None:
        return {}
    text = sys.stdin.read() if path == "-" else Path(path).read_text()
    try:
        data = json.loads(text)
    except ValueError:
        try:
            import yaml
        except ImportError:
            raise click.UsageError(f"{path} is not JSON (YAML needs PyYAML installed)") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise click.UsageError(f"{path} is neither JSON nor YAML: {exc}") from None
    if not isinstance(data, dict):
        raise click.UsageError(f"{path} must hold one job spec (an object)")
    spec = dict(data.get("spec", data))
    # YAML's conveniences, turned into what the proto3 JSON mapping expects: hyperparameters are text,
    # times are RFC 3339 strings.
    if isinstance(spec.get("hyperparameters"), dict):
        spec["hyperparameters"] = {str(k): str(v) for k, v in spec["hyperparameters"].items()}
    for holder, key in ((spec.get("window"), "start"), (spec.get("window"), "end"),
                        ((spec.get("validation") or {}).get("time_holdout"), "holdout_start")):
        if isinstance(holder, dict) and isinstance(holder.get(key), datetime):
            holder[key] = _timestamp(holder[key].isoformat(), key)
    return spec


def _timestamp(value: str, option: str) -> str:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 time", param_hint=option) from None
    if moment.tzinfo is None:
        return moment.isoformat() + "Z"
    return moment.isoformat()


@train.command()
@click.argument("spec_file", required=False)
@click.option("--model", help="Registered model name.")
@click.option("--family", type=click.Choice(["lightgbm", "torch_mlp"]), help="Model family.")
@click.option("--feature-service", help="Feature service, e.g. fraud_v1.")
@click.option("--label", help="Label column.")
@click.option("--entities", help="Parquet of labelled rows (join keys, event_timestamp, label).")
@click.option("--dataset", help="Parquet already holding features, label and timestamps.")
@click.option("--start", help="Training window start (ISO 8601).")
@click.option("--end", help="Training window end, exclusive (ISO 8601).")
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE", help="Hyperparameter (repeatable).")
@click.option("--seed", type=int, help="Seed of every random choice.")
@click.option("--reason", help="Why this job runs.")
@click.option("--challenger", is_flag=True, default=None, help="Make the new version the challenger if it passes.")
@click.option("--idempotency-key", default="", help="A retry with the same key returns the same job.")
@click.option("--watch", "then_watch", is_flag=True, help="Watch the job until it finishes.")
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON.")
@home_option
@target_option
@timeout_option
def submit(
    spec_file: str | None, model: str | None, family: str | None, feature_service: str | None, label: str | None,
    entities: str | None, dataset: str | None, start: str | None, end: str | None, params: tuple[str, ...],
    seed: int | None, reason: str | None, challenger: bool | None, idempotency_key: str, then_watch: bool,
    as_json: bool, home: str, target: str | None, timeout: float,
) -> None:
    """Submit a job from SPEC_FILE (a JobSpec as JSON or YAML; `-` reads stdin) and/or options."""
    data = _load_spec(spec_file)
    overrides = {"model_name": model, "family": family, "feature_service": feature_service, "label": label,
                 "entity_uri": entities, "dataset_uri": dataset, "seed": seed, "reason": reason,
                 "make_challenger": challenger}
    data.update({k: v for k, v in overrides.items() if v is not None})
    if start or end:
        window = dict(data.get("window") or {})
        if start:
            window["start"] = _timestamp(start, "--start")
        if end:
            window["end"] = _timestamp(end, "--end")
        data["window"] = window
    for item in params:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{item!r} is not NAME=VALUE", param_hint="--param")
        data.setdefault("hyperparameters", {})[name] = value
    try:
        spec = ParseDict(data, training_pb2.JobSpec())
    except ParseError as exc:
        raise click.UsageError(f"invalid job spec: {exc}") from None
    with _Session(_target(target, home), timeout) as session:
        try:
            response = session.client.call(
                session.stub.SubmitJob, training_pb2.SubmitJobRequest(spec=spec, idempotency_key=idempotency_key),
                idempotent=bool(idempotency_key),
            )
        except LooplineError as exc:
            _fail("submit", exc)
            return
    job = response.job
    if as_json:
        click.echo(json.dumps(_as_dict(job), indent=2))
    else:
        note = "" if response.created else " (already submitted with this idempotency key)"
        click.echo(f"submitted job {job.job_id}: {job.spec.family} for {job.spec.model_name}{note}")
    if then_watch:
        _watch(job.job_id, _target(target, home), home)


@train.command(name="list")
@click.option("--state", "states", multiple=True, type=click.Choice(STATES), help="Only jobs in this state.")
@click.option("--model", default="", help="Only jobs of this model.")
@click.option("--trigger", default="", type=click.Choice(["", "manual", "drift", "schedule"]),
              help="Only jobs with this trigger.")
@click.option("--limit", default=20, show_default=True, help="At most this many jobs.")
@click.option("--json", "as_json", is_flag=True, help="Print the jobs as JSON.")
@home_option
@target_option
@timeout_option
def list_jobs(states: tuple[str, ...], model: str, trigger: str, limit: int, as_json: bool, home: str,
              target: str | None, timeout: float) -> None:
    """Jobs, newest first."""
    request = training_pb2.ListJobsRequest(
        states=[f"JOB_STATE_{s.upper()}" for s in states],
        model_name=model, trigger=trigger, page_size=limit,
    )
    with _Session(_target(target, home), timeout) as session:
        try:
            response = session.client.call(session.stub.ListJobs, request, idempotent=True)
        except LooplineError as exc:
            _fail("list", exc)
            return
    if as_json:
        click.echo(json.dumps([_as_dict(j) for j in response.jobs], indent=2))
        return
    if not response.jobs:
        click.echo("no jobs")
        return
    click.echo(f"{'JOB':<32}  {'STATE':<9}  {'MODEL':<24}  {'FAMILY':<9}  {'TRIGGER':<8}  {'CREATED':<19}  VERSION")
    for job in response.jobs:
        version = str(job.registered_version) if job.registered_version else "-"
        click.echo(f"{job.job_id:<32}  {_state(job):<9}  {job.spec.model_name[:24]:<24}  {job.spec.family:<9}  "
                   f"{job.spec.trigger:<8}  {_when(job):<19}  {version}")


@train.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON.")
@home_option
@target_option
@timeout_option
def get(job_id: str, as_json: bool, home: str, target: str | None, timeout: float) -> None:
    """One job: state, progress, metrics, MLflow run and registered version."""
    with _Session(_target(target, home), timeout) as session:
        try:
            job = session.client.call(session.stub.GetJob, training_pb2.GetJobRequest(job_id=job_id),
                                      idempotent=True).job
        except LooplineError as exc:
            _fail("get", exc)
            return
    if as_json:
        click.echo(json.dumps(_as_dict(job), indent=2))
        return
    rows = [
        ("job", job.job_id), ("state", _state(job)), ("stage", job.stage), ("model", job.spec.model_name),
        ("family", job.spec.family), ("trigger", f"{job.spec.trigger}: {job.spec.reason}".rstrip(": ")),
        ("attempt", str(job.attempt)), ("created", _when(job)),
        ("progress", f"{job.progress}/{job.progress_total}" if job.progress_total else "-"),
        ("training set",
         f"{job.training_rows} rows, sha256 {job.training_set_hash[:16]}" if job.training_rows else "-"),
        ("mlflow run", job.mlflow_run_id or "-"),
        ("version", str(job.registered_version) if job.registered_version else "-"),
    ]
    if job.error:
        rows.append(("error", job.error))
    for name, value in rows:
        click.echo(f"{name:<13} {value}")
    for name, value in sorted(job.metrics.items()):
        click.echo(f"  {name:<24} {value:.6g}")


@train.command()
@click.argument("job_id")
@click.option("--reason", default="", help="Why the job is cancelled.")
@home_option
@target_option
@timeout_option
def cancel(job_id: str, reason: str, home: str, target: str | None, timeout: float) -> None:
    """Cancel a pending or running job."""
    with _Session(_target(target, home), timeout) as session:
        try:
            request = training_pb2.CancelJobRequest(job_id=job_id, reason=reason)
            job = session.client.call(session.stub.CancelJob, request, idempotent=True).job
        except LooplineError as exc:
            _fail("cancel", exc)
            return
    verb = "cancelled" if job.state == training_jobs_pb2.JOB_STATE_CANCELLED else "cancelling"
    click.echo(f"{verb} job {job.job_id}")


def _bar(done: int, total: int, width: int = 30) -> str:
    filled = min(width, int(width * done / total)) if total else 0
    return "[" + "#" * filled + "." * (width - filled) + "]"


def _line(job: training_pb2.Job) -> str:
    unit = "epochs" if job.spec.family == "torch_mlp" else "iterations"
    text = f"{_state(job):<9} {job.stage:<13}"
    if job.progress_total:
        text += f" {_bar(job.progress, job.progress_total)} {job.progress}/{job.progress_total} {unit}"
    shown = [f"{k}={job.metrics[k]:.4g}" for k in sorted(job.metrics) if "loss" in k or k in SUMMARY_METRICS][:3]
    return text + ("  " + " ".join(shown) if shown else "")


def _watch(job_id: str, target: str, home: str) -> None:
    tty = sys.stdout.isatty()
    channel = grpc.insecure_channel(target)
    stub = training_pb2_grpc.TrainingServiceStub(channel)  # type: ignore[no-untyped-call]
    last: training_pb2.Job | None = None
    printed = ""
    try:
        for message in stub.WatchJob(training_pb2.WatchJobRequest(job_id=job_id)):
            last = message.job
            line = _line(last)
            if line == printed:
                continue
            printed = line
            if tty:
                click.echo("\r\033[K" + line, nl=False)
            else:
                click.echo(line)
    except grpc.RpcError as exc:
        if tty:
            click.echo()
        _fail("watch", error_from_rpc(exc, service="training"))
    finally:
        channel.close()
    if tty:
        click.echo()
    if last is None:
        sys.exit(1)
    summary = f"job {last.job_id} {_state(last)}"
    if last.registered_version:
        summary += f": registered {last.spec.model_name} version {last.registered_version}"
    metrics = "  ".join(f"{k}={last.metrics[k]:.4f}" for k in SUMMARY_METRICS if k in last.metrics)
    click.echo(summary + (f" ({metrics})" if metrics else ""))
    if last.error:
        click.echo(f"error: {last.error}", err=True)
    sys.exit(0 if last.state == training_jobs_pb2.JOB_STATE_SUCCEEDED else 1)


@train.command()
@click.argument("job_id")
@home_option
@target_option
def watch(job_id: str, home: str, target: str | None) -> None:
    """Follow a job until it finishes, with a progress bar; exit 0 if it succeeded, 1 if not."""
    _watch(job_id, _target(target, home), home)
