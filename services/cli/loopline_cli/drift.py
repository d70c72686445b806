"""`loopline drift ...`: drift status and reports from the monitoring service (over gRPC)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click
from google.protobuf.json_format import MessageToJson

from loopline.monitoring.v1 import monitoring_pb2, monitoring_pb2_grpc
from loopline_cli.stack import Stack
from loopline_common.errors import LooplineError
from loopline_common.grpc_client import ServiceClient

ALERTS = {monitoring_pb2.ALERT_STATE_OK: "ok", monitoring_pb2.ALERT_STATE_DRIFTING: "drifting"}
TRACKS = {0: "unspecified", 1: "champion", 2: "challenger", 3: "shadow"}


def _target(target: str | None, home: str) -> str:
    """The monitoring service's gRPC address: --target, $LOOPLINE_MONITORING_TARGET, or the running stack's."""
    if target:
        return target
    if os.environ.get("LOOPLINE_MONITORING_TARGET"):
        return os.environ["LOOPLINE_MONITORING_TARGET"]
    for component in Stack(home=Path(home)).load():
        if component.name == "monitoring" and "grpc" in component.urls:
            return component.urls["grpc"]
    raise click.UsageError(
        f"no monitoring service in the stack at {home}; start it with `loopline up` or pass --target"
    )


def _client(target: str, timeout: float) -> tuple[ServiceClient, monitoring_pb2_grpc.MonitoringServiceStub]:
    client = ServiceClient(service="monitoring", target=target, timeout=timeout, max_message_bytes=64 * 1024 * 1024)
    return client, monitoring_pb2_grpc.MonitoringServiceStub(client.channel)  # type: ignore[no-untyped-call]


home_option = click.option(
    "--home", default=lambda: os.environ.get("LOOPLINE_HOME", ".loopline"),
    show_default="$LOOPLINE_HOME or .loopline", help="The embedded stack whose monitoring service to ask.",
)
target_option = click.option("--target", default=None, help="Monitoring gRPC host:port (instead of the stack's).")


@click.group()
def drift() -> None:
    """Drift of deployed models, from the monitoring service."""


@drift.command()
@click.argument("model")
@home_option
@target_option
@click.option("--version", "version", default=0, show_default="every version", help="Only this model version.")
@click.option("--history", default=50, show_default=True, help="Windows of history plotted per version and track.")
@click.option("--out", "out", default=None, help="File to write (default: drift-report-MODEL.html).")
@click.option("--timeout", default=60.0, show_default=True, help="Seconds to wait for the report.")
def report(model: str, home: str, target: str | None, version: int, history: int, out: str | None,
           timeout: float) -> None:
    """Write the HTML drift report of MODEL (plots embedded) to a file."""
    client, stub = _client(_target(target, home), timeout)
    try:
        response = client.call(
            stub.GenerateReport,
            monitoring_pb2.GenerateReportRequest(model_name=model, model_version=version, history=history),
            idempotent=True,
        )
    except LooplineError as exc:
        click.echo(f"loopline drift report: {exc.code.value}: {exc.message}", err=True)
        sys.exit(1)
    finally:
        client.close()
    path = Path(out or f"drift-report-{model}.html")
    path.write_text(response.html)
    click.echo(f"wrote {path} ({len(response.images)} plots); the service saved a copy in {response.saved_to}")


@drift.command()
@click.argument("model")
@home_option
@target_option
@click.option("--json", "as_json", is_flag=True, help="The GetDriftStatus answer as JSON.")
def status(model: str, home: str, target: str | None, as_json: bool) -> None:
    """Alert state and latest window of each version and track of MODEL."""
    client, stub = _client(_target(target, home), 10.0)
    try:
        response = client.call(stub.GetDriftStatus, monitoring_pb2.GetDriftStatusRequest(model_name=model),
                               idempotent=True)
    except LooplineError as exc:
        click.echo(f"loopline drift status: {exc.code.value}: {exc.message}", err=True)
        sys.exit(1)
    finally:
        client.close()
    if as_json:
        click.echo(MessageToJson(response, preserving_proto_field_name=True))
        return
    for s in response.statuses:
        latest = s.latest
        click.echo(
            f"v{s.model_version:<4} {TRACKS.get(s.track, s.track):<11} {ALERTS.get(s.state, '?'):<9} "
            f"windows={s.windows_closed:<5} "
            f"drifted_share={latest.drifted_share:.2f}/{latest.drifted_share_threshold:.2f} open={s.open_window_count}"
        )
