"""The closed loop, end to end, in the short profile: `loopline demo --once --profile short` on a fresh
embedded stack (every service a real process, a real broker and MLflow), then its outcomes.

One run serves every test here (module fixture): drift injected -> DriftDetected on v1 -> a drift-triggered
retrain registers v2 -> challenger -> the rollout controller canaries and promotes it -> a deliberately bad
challenger (torch MLP on shuffled labels) is canaried and rolled back; final aliases; no prediction lost
between inference's log and monitoring's count; the report. The CLI's exit status is 0 only when every
expected outcome happened, so a missing step fails here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import REPO, stack_port_offset

LOOPLINE = str(Path(sys.executable).parent / "loopline")
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def _offset() -> int:
    return stack_port_offset(low=17000, span=7000)


@dataclass
class Run:
    code: int
    result: dict[str, Any]
    output: str
    reports: Path


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    base = tmp_path_factory.mktemp("loop")
    reports = base / "reports"
    argv = [LOOPLINE, "demo", "--once", "--profile", "short", "--home", str(base / "demo"), "--port-offset",
            str(_offset()), "--reports", str(reports), "--json"]
    try:
        done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=560, check=False)
    except subprocess.TimeoutExpired as exc:
        # The demo was killed: stop the stack it left behind, or its services load the rest of the run.
        subprocess.run([LOOPLINE, "down", "--home", str(base / "demo")], cwd=REPO, capture_output=True, timeout=60,
                       check=False)
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        pytest.fail(f"the demo did not finish in {exc.timeout:.0f} s:\n{out[-4000:]}")
    lines = [x for x in done.stdout.splitlines() if x.startswith('{"profile"')]
    assert lines, f"no result from the demo (exit {done.returncode}):\n{done.stdout[-4000:]}\n{done.stderr[-3000:]}"
    return Run(code=done.returncode, result=json.loads(lines[-1]), output=done.stdout, reports=reports)


def _outcomes(run: Run) -> dict[str, dict[str, Any]]:
    return {o["name"]: o for o in run.result["outcomes"]}


def test_every_expected_outcome_and_exit_zero(run: Run) -> None:
    failed = [f"{o['name']}: {o['detail']}" for o in run.result["outcomes"] if not o["ok"]]
    assert not run.result["error"], f"{run.result['error']}\n{run.output[-4000:]}"
    assert not failed, "\n".join(failed)
    assert run.result["ok"] and run.code == 0


def test_the_loop_happened_in_order(run: Run) -> None:
    events = [(e["kind"], e["text"]) for e in run.result["timeline"]]

    def at(kind: str, after: int = 0, text: str = "") -> int:
        for i in range(after, len(events)):
            if events[i][0] == kind and text in events[i][1]:
                return i
        raise AssertionError(f"{kind} {text!r} missing after position {after}: {[k for k, _ in events]}")

    injected = at("drift.injected")
    detected = at("drift.detected", injected)
    retrained = at("model.registered", detected, "(drift")  # registered by the drift-triggered job
    canary = at("rollout.started", retrained)
    promoted = at("rollout.promote", canary)
    bad = at("model.registered", retrained, "(manual")  # the torch model on shuffled labels
    bad_canary = at("rollout.started", max(bad, promoted))
    at("rollout.rollback", bad_canary)
    assert _outcomes(run)["events in order"]["ok"], _outcomes(run)["events in order"]["detail"]
    assert _outcomes(run)["no drift before the shift"]["ok"]


def test_final_aliases_and_serving(run: Run) -> None:
    assert _outcomes(run)["final aliases"]["ok"], _outcomes(run)["final aliases"]["detail"]
    assert _outcomes(run)["inference serves v2 only"]["ok"], _outcomes(run)["inference serves v2 only"]["detail"]


def test_no_prediction_lost_between_inference_and_monitoring(run: Run) -> None:
    lost = _outcomes(run)["no prediction lost"]
    assert lost["ok"], lost["detail"]
    assert _outcomes(run)["every answer logged"]["ok"], _outcomes(run)["every answer logged"]["detail"]


def test_report_written_with_plots(run: Run) -> None:
    report = Path(run.result["report"])
    assert report.is_file() and report.parent.parent == run.reports
    page = report.read_text()
    for section in ("Event timeline", "Drift over time", "Canaries", "Latency and errors per track", "Models",
                    "Lineage"):
        assert section in page
    for image in ("timeline.png", "drift.png", "canaries.png", "latency.png", "models.png"):
        png = report.parent / image
        assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", image
    assert set(run.result["figures"]) >= {"drift_to_promoted", "bad_to_rolled_back"}
