"""`loopline` console script."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from pathlib import Path

import click

from loopline_cli.demo import demo
from loopline_cli.drift import drift
from loopline_cli.models import models
from loopline_cli.rollout import rollout
from loopline_cli.stack import Ports, Stack, StackError, component_status
from loopline_cli.train import train

DEFAULT_HOME = ".loopline"


def _stack(home: str, port_offset: int, kafka_port: int, mlflow_port: int, prometheus_port: int,
           only: str | None = None) -> Stack:
    ports = Ports(kafka=kafka_port, mlflow=mlflow_port, prometheus=prometheus_port, offset=port_offset)
    names = [n.strip() for n in only.split(",") if n.strip()] if only else None
    return Stack(home=Path(home), ports=ports, only=names)


home_option = click.option(
    "--home",
    default=lambda: os.environ.get("LOOPLINE_HOME", DEFAULT_HOME),
    show_default=f"$LOOPLINE_HOME or {DEFAULT_HOME}",
    help="Folder for the stack's state, data and logs.",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Loopline: features, training, registry, serving, monitoring and rollouts, in one loop."""


@cli.command()
@home_option
@click.option("--detach", is_flag=True, help="Return once everything is healthy and leave it running.")
@click.option("--port-offset", default=0, show_default=True, help="Added to every default port.")
@click.option("--kafka-port", default=Ports.kafka, show_default=True, help="Kafka-wire broker port.")
@click.option("--mlflow-port", default=Ports.mlflow, show_default=True, help="MLflow server port.")
@click.option("--prometheus-port", default=Ports.prometheus, show_default=True, help="Prometheus port.")
@click.option("--timeout", default=180.0, show_default=True,
              help="Seconds to wait for each stage's health (a first start on a slow machine imports a lot).")
@click.option("--only", default=None, metavar="NAMES",
              help="Start only these components, comma-separated (e.g. kafka,mlflow,registry to run another "
                   "service from your editor); name what they need, nothing is added.")
def up(
    home: str, detach: bool, port_offset: int, kafka_port: int, mlflow_port: int, prometheus_port: int,
    timeout: float, only: str | None,
) -> None:
    """Start the embedded stack on 127.0.0.1 and wait until every part is healthy."""
    try:
        stack = _stack(home, port_offset, kafka_port, mlflow_port, prometheus_port, only)
        components = stack.up(timeout=timeout, progress=lambda line: click.echo(f"  {line}"))
    except StackError as exc:
        click.echo(f"loopline up failed:\n{exc}", err=True)
        sys.exit(1)
    click.echo(f"Loopline is up (state and logs in {stack.home}):")
    for component in components:
        urls = "  ".join(f"{k}={v}" for k, v in component.urls.items())
        click.echo(f"  {component.name:<12} {urls}")
    if detach:
        click.echo("Stop it with `loopline down`.")
        return
    click.echo("Press Ctrl-C to stop.")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    reported: set[str] = set()
    while not stop.wait(2.0):
        for component in components:
            if component.name in reported:
                continue
            if component_status(component)["state"] == "down":
                reported.add(component.name)
                click.echo(f"  {component.name} has stopped; see {component.log}", err=True)
    click.echo("stopping...")
    stopped = stack.down()
    click.echo(f"stopped: {', '.join(stopped) or 'nothing was running'}")


@cli.command()
@home_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output with each component's addresses.")
def status(home: str, as_json: bool) -> None:
    """Show each component's health; exit 1 if any is down or unhealthy, 3 if nothing is running."""
    stack = Stack(home=Path(home))
    rows = stack.status()
    healthy = bool(rows) and all(r["state"] == "healthy" for r in rows)
    if as_json:
        click.echo(json.dumps({"home": str(stack.home), "healthy": healthy, "components": rows}, indent=2))
    elif not rows:
        click.echo(f"no stack is running from {stack.home}")
    else:
        for row in rows:
            urls = "  ".join(f"{k}={v}" for k, v in row["urls"].items())
            click.echo(f"{row['name']:<12} {row['state']:<10} pid={row['pid']:<8} {urls}")
            if row["state"] != "healthy":
                click.echo(f"{'':<12} {row['detail']}")
    sys.exit(0 if healthy else (3 if not rows else 1))


@cli.command()
@home_option
def down(home: str) -> None:
    """Stop everything `up` started, by pid and process group, and leave no process behind."""
    stopped = Stack(home=Path(home)).down()
    click.echo(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


cli.add_command(drift)
cli.add_command(demo)
cli.add_command(train)
cli.add_command(models)
cli.add_command(rollout)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
