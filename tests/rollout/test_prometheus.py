"""Checks read from the real Prometheus HTTP API: Prometheus scrapes a small exporter of the inference and
monitoring metric names, and the Prometheus source turns them into check values (or "not enough data")."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from loopline_rollout.checks import NOT_ENOUGH, Context, Prometheus, PrometheusSource, analyze, render_query
from loopline_rollout.policy import CheckSpec

from tests.rollout.support import start_prometheus, stop_prometheus, wait_until


class Exporter:
    """Serves a /metrics text the test changes as it goes."""

    def __init__(self) -> None:
        self.text = ""
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = exporter.text.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"


def _series(name: str, value: float, **labels: str) -> str:
    inside = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return f"{name}{{{inside}}} {value}"


def exposition(ok: int, failed: int) -> str:
    requests, duration = "loopline_inference_predict_requests_total", "loopline_inference_predict_duration_seconds"
    challenger = {"model": "fraud", "version": "7", "track": "challenger", "protocol": "rest"}
    lines = [
        f"# TYPE {requests} counter",
        _series(requests, ok, **challenger, status="ok"),
        _series(requests, failed, model="fraud", version="6", track="", protocol="rest", status="INTERNAL"),
        _series(requests, ok * 4, model="fraud", version="6", track="champion", protocol="rest", status="ok"),
        f"# TYPE {duration} histogram",
    ]
    for le, share in (("0.01", 0.5), ("0.05", 0.98), ("0.25", 1.0), ("+Inf", 1.0)):
        lines.append(_series(f"{duration}_bucket", int(ok * share), **challenger, le=le))
    lines += [
        _series(f"{duration}_count", ok, **challenger),
        _series(f"{duration}_sum", ok * 0.01, **challenger),
        "# TYPE loopline_monitoring_canary_prediction_psi gauge",
        'loopline_monitoring_canary_prediction_psi{model="fraud"} 0.31',
        "# TYPE loopline_monitoring_canary_records gauge",
        f'loopline_monitoring_canary_records{{model="fraud",track="champion",version="6"}} {ok * 4}',
        f'loopline_monitoring_canary_records{{model="fraud",track="challenger",version="7"}} {ok}',
        "# TYPE loopline_monitoring_drifted_share gauge",
        'loopline_monitoring_drifted_share{model="fraud",version="7",track="challenger"} 0.125',
        "# TYPE loopline_monitoring_drift_alert gauge",
        'loopline_monitoring_drift_alert{model="fraud",version="7",track="challenger"} 0',
    ]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Exporter, str]]:
    exporter = Exporter()
    exporter.text = exposition(0, 0)
    proc, url = start_prometheus(tmp_path_factory.mktemp("prometheus"), [exporter.target])
    yield exporter, url
    stop_prometheus(proc)
    exporter.server.shutdown()


CHECKS = (
    CheckSpec(name="error-rate", type="error-rate", max=0.05, min_samples=100),
    CheckSpec(name="latency-p99", type="latency-p99", max=0.2, min_samples=100),
    CheckSpec(name="prediction-psi", type="prediction-psi", max=0.2, min_samples=100),
    CheckSpec(name="input-drift", type="input-drift", max=0.5, min_samples=0),
    CheckSpec(name="shadow-agreement", type="shadow-agreement", min=0.9, min_samples=0, phases=("progressing",)),
    CheckSpec(name="challenger-share", type="promql", min=0.1, max=0.3, min_samples=0,
              query='sum(loopline_inference_predict_requests_total{model="{{model}}",track="challenger"}) / '
                    'sum(loopline_inference_predict_requests_total{model="{{model}}"})'),
)
CTX = Context(model="fraud", candidate=7, champion=6, phase="progressing", window_seconds=30, step_started_at=0)


def test_checks_read_from_prometheus(prometheus: tuple[Exporter, str]) -> None:
    exporter, url = prometheus

    def run() -> dict[str, tuple[str, float]]:
        async def go() -> dict[str, tuple[str, float]]:
            source = PrometheusSource(Prometheus(url, timeout=10))
            try:
                return {o.name: (o.result, o.value) for o in await analyze(source, CHECKS, CTX)}
            finally:
                await source.close()
        return asyncio.run(go())

    # Before there is traffic: nothing to judge, and that is not a pass.
    wait_until(lambda: httpx.get(f"{url}/api/v1/query", params={"query": "up"}).json()["data"]["result"],
               timeout=30, what="a first scrape")
    early = run()
    assert early["error-rate"][0] == NOT_ENOUGH and early["latency-p99"][0] == NOT_ENOUGH
    assert early["shadow-agreement"][0] == NOT_ENOUGH  # no such series at all

    # Traffic grows: 1000 challenger requests, 20 failed requests without a track.
    exporter.text = exposition(1000, 20)
    outcomes = wait_until(lambda: (r := run())["error-rate"][0] != NOT_ENOUGH and r, timeout=30,
                          what="the counters' increase over the window")
    result, value = outcomes["error-rate"]
    assert result == "pass" and 0 < value <= 0.05  # errors without a track count against the challenger
    # p99 falls in the (0.05, 0.25] bucket: 0.05 + (0.99 - 0.98) / 0.02 * 0.2 = 0.15 by interpolation
    assert outcomes["latency-p99"][0] == "pass" and abs(outcomes["latency-p99"][1] - 0.15) < 1e-6
    assert outcomes["prediction-psi"] == ("fail", 0.31)
    assert outcomes["input-drift"] == ("pass", 0.125)
    assert outcomes["challenger-share"][0] == "pass"
    assert abs(outcomes["challenger-share"][1] - 1000 / 5020) < 1e-6


def test_query_templates() -> None:
    assert render_query('x{model="{{model}}",version="{{ version }}"}[{{interval}}] {{champion}}', CTX) == (
        'x{model="fraud",version="7"}[30s] 6')
