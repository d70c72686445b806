"""`loopline demo data`: the demo workload's history into the offline store, live events into Kafka.

The generator lives in the features service package (it needs feast to read the feature repo's streaming
views), so this command runs it in the features environment (.venvs/features) as a subprocess: the CLI
itself never imports feast.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import httpx

from loopline_cli.stack import _find_repo


def _features_python(repo: Path) -> str:
    python = repo / ".venvs" / "features" / "bin" / "python"
    if not python.exists():
        raise click.ClickException(f"{python} is missing: run `make setup` (it builds the features environment)")
    return str(python)


def _run(argv: list[str], repo: Path) -> dict[str, object]:
    result = subprocess.run(argv, cwd=repo, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise click.ClickException(f"{' '.join(argv[2:4])} failed:\n{result.stderr[-3000:]}")
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) if lines else {}


def _run_scenario(once: bool, profile: str, home: str | None, port_offset: int, reports: str | None,
                  as_json: bool) -> None:
    from loopline_cli.scenario import PROFILES, Scenario, default_home, result_json

    where = Path(home) if home else default_home()
    scenario = Scenario(profile=PROFILES[profile], home=where, port_offset=port_offset,
                        reports=Path(reports) if reports else where.parent / "reports", echo=click.echo)
    try:
        result = scenario.run()
        click.echo("")
        for outcome in result.outcomes:
            click.echo(f"  {'ok  ' if outcome.ok else 'FAIL'} {outcome.name}: {outcome.detail}")
        for name, seconds in result.figures().items():
            click.echo(f"  {name.replace('_', ' ')}: {seconds:.1f} s")
        if result.report:
            click.echo(f"report: {result.report}")
        if as_json:
            click.echo(json.dumps(result_json(result)))
        click.echo("the demo " + ("succeeded: every expected outcome happened" if result.ok
                                  else f"FAILED{': ' + result.error if result.error else ''}"))
        if not once:
            _explore(scenario)
    finally:
        scenario.close()
    sys.exit(0 if result.ok else 1)


def _explore(scenario: object) -> None:
    """Keep the stack up and say where everything is, until Ctrl-C."""
    import signal
    import threading

    from loopline_cli.scenario import Scenario

    if not isinstance(scenario, Scenario):
        return
    scenario.stop_feeds()
    stack = scenario.stack
    if stack is None:
        return
    click.echo("\nThe stack stays up for exploring (Ctrl-C stops it):")
    for component in stack.load():
        click.echo(f"  {component.name:<12} " + "  ".join(f"{k}={v}" for k, v in component.urls.items()))
    e = scenario.endpoints
    click.echo(f"""
  MLflow UI          {stack.addresses()['mlflow']}  (experiment loopline/fraud: runs, metrics, evaluation plots)
  models             LOOPLINE_HOME={stack.home} loopline models versions fraud
  rollouts           grpcurl -plaintext {e.rollout_target} loopline.rollout.v1.RolloutService/ListRollouts
  drift              LOOPLINE_HOME={stack.home} loopline drift status fraud
  predict (REST)     curl -s {e.inference_url}/v2/models/fraud/infer -d '{{"inputs": [
                       {{"name": "customer_id", "datatype": "BYTES", "shape": [1], "data": ["C000001"]}},
                       {{"name": "merchant_id", "datatype": "BYTES", "shape": [1], "data": ["M00001"]}}]}}'
  predict (Python)   from loopline_sdk import Endpoints, entity_tensors
                     Endpoints.local().inference().infer("fraud", entity_tensors([{{"customer_id": "C000001",
                         "merchant_id": "M00001"}}]), protocol="grpc")""")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(1.0):
        pass
    click.echo("stopping...")


@click.group(invoke_without_command=True)
@click.option("--once", is_flag=True, help="Exit when the scenario ends (default: keep the stack up until Ctrl-C).")
@click.option("--profile", type=click.Choice(["default", "short"]), default="default", show_default=True,
              help="short: small data, second-scale windows and canary steps (CI).")
@click.option("--home", default=None, help="The demo stack's home (wiped first) [default: $LOOPLINE_HOME/demo].")
@click.option("--port-offset", default=0, show_default=True, help="Added to every default port.")
@click.option("--reports", default=None, help="Where the report goes [default: the home's parent/reports].")
@click.option("--json", "as_json", is_flag=True, help="Also print the result as one JSON line.")
@click.pass_context
def demo(ctx: click.Context, once: bool, profile: str, home: str | None, port_offset: int, reports: str | None,
         as_json: bool) -> None:
    """The closed-loop demo: with no subcommand, run the whole scenario (drift, retrain, canary, promotion,
    rollback) on a fresh embedded stack, print the timeline and write the report; exit 0 only if every
    expected outcome happened. `demo data` writes or streams the demo workload only."""
    if ctx.invoked_subcommand is None:
        _run_scenario(once, profile, home, port_offset, reports, as_json)


@demo.command("run")
@click.option("--once", is_flag=True, help="Exit when the scenario ends (default: keep the stack up until Ctrl-C).")
@click.option("--profile", type=click.Choice(["default", "short"]), default="default", show_default=True)
@click.option("--home", default=None, help="The demo stack's home (wiped first) [default: $LOOPLINE_HOME/demo].")
@click.option("--port-offset", default=0, show_default=True)
@click.option("--reports", default=None, help="Where the report goes [default: the home's parent/reports].")
@click.option("--json", "as_json", is_flag=True, help="Also print the result as one JSON line.")
def run(once: bool, profile: str, home: str | None, port_offset: int, reports: str | None, as_json: bool) -> None:
    """The same as `loopline demo` with no subcommand."""
    _run_scenario(once, profile, home, port_offset, reports, as_json)


@demo.command("data")
@click.option("--home", default=lambda: os.environ.get("LOOPLINE_HOME", ".loopline"),
              show_default="$LOOPLINE_HOME or .loopline",
              help="The stack's home; the history goes to <home>/features.")
@click.option("--days", default=14.0, show_default=True, help="Days of history to write.")
@click.option("--customers", default=1000, show_default=True)
@click.option("--merchants", default=150, show_default=True)
@click.option("--seed", default=7, show_default=True, help="Same seed, same data.")
@click.option("--drift", default=0.0, show_default=True, type=click.FloatRange(0.0, 1.0),
              help="0 = reference world; 1 = higher amounts, more online categories, new merchants.")
@click.option("--history/--no-history", default=True, show_default=True, help="Write the offline history.")
@click.option("--materialize/--no-materialize", default=True, show_default=True,
              help="Ask the running features service to load the history into the online store.")
@click.option("--features-url", default="http://127.0.0.1:8082", show_default=True)
@click.option("--stream", "stream_seconds", default=0.0, show_default=True,
              help="Then publish live events for this many seconds (0: none).")
@click.option("--rate", default=20.0, show_default=True, type=click.FloatRange(min=0.1), help="Live events per second.")
@click.option("--bootstrap", default="127.0.0.1:9092", show_default=True, help="Kafka bootstrap servers.")
def data(home: str, days: float, customers: int, merchants: int, seed: int, drift: float, history: bool,
         materialize: bool, features_url: str, stream_seconds: float, rate: float, bootstrap: str) -> None:
    """Write a seeded history of card transactions to the offline store and/or stream live ones to Kafka."""
    repo = _find_repo()
    python = _features_python(repo)
    common = ["--customers", str(customers), "--merchants", str(merchants), "--seed", str(seed), "--drift", str(drift)]
    if history:
        data_dir = Path(home).resolve() / "features"
        summary = _run([python, "-m", "loopline_features.demo_cli", "history", "--repo-dir",
                        str(repo / "feature_repo"), "--data-dir", str(data_dir), "--days", str(days), *common], repo)
        click.echo(f"history: {summary.get('transactions')} transactions ({summary.get('fraud')} fraud) "
                   f"from {summary.get('start')} to {summary.get('end')} in {data_dir}")
        if materialize:
            try:
                response = httpx.post(f"{features_url}/v1/materialize", json={}, timeout=600)
                response.raise_for_status()
                click.echo(f"materialized: {', '.join(response.json()['feature_views'])}")
            except httpx.HTTPError as exc:
                click.echo(f"not materialized ({exc}); start the stack and run "
                           f"`curl -XPOST {features_url}/v1/materialize -d '{{}}'`", err=True)
    if stream_seconds > 0:
        click.echo(f"streaming {rate:g} events/s for {stream_seconds:g} s to {bootstrap} ...")
        summary = _run([python, "-m", "loopline_features.demo_cli", "stream", "--bootstrap", bootstrap,
                        "--rate", str(rate), "--seconds", str(stream_seconds), *common], repo)
        click.echo(f"published {summary.get('published')} events to {summary.get('topic')}")
    if not history and stream_seconds <= 0:
        click.echo("nothing to do: give --history or --stream SECONDS", err=True)
        sys.exit(2)
