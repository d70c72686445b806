"""`loopline up / status / down` with the real broker, MLflow server and (when installed) Prometheus."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest
from kafka import KafkaAdminClient

from loopline_cli.stack import SERVICES, Ports, ServiceSpec, Stack, group_members
from loopline_common.topics import TOPICS
from tests.helpers import REPO, free_port, stack_port_offset

LOOPLINE = str(Path(sys.executable).parent / "loopline")
HAS_PROMETHEUS = shutil.which("prometheus") is not None


def _offset() -> int:
    """A port offset whose ports (broker, MLflow, Prometheus and every service's) are all free right now."""
    return stack_port_offset(low=10000, span=6000)


def _loopline(*args: str, home: Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LOOPLINE, *args, "--home", str(home)], capture_output=True, text=True, timeout=timeout, cwd=REPO
    )


def _status(home: Path) -> tuple[int, dict]:  # type: ignore[type-arg]
    result = _loopline("status", "--json", home=home)
    return result.returncode, json.loads(result.stdout)


def _recorded_groups(home: Path) -> list[tuple[int, float]]:
    state = json.loads((home / "stack.json").read_text())
    return [(c["pid"], c["started_at"]) for c in state["components"]]


def _nothing_left(groups: list[tuple[int, float]]) -> bool:
    return all(not group_members(pgid, since=since) for pgid, since in groups)


def _wait_for(condition, what: str, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_detached_stack_up_status_kill_and_down(tmp_path: Path) -> None:
    home = tmp_path / "stack"
    offset = _offset()
    up = _loopline("up", "--detach", "--port-offset", str(offset), home=home)
    groups: list[tuple[int, float]] = []
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        groups = _recorded_groups(home)
        code, status = _status(home)
        assert code == 0, status
        names = [c["name"] for c in status["components"]]
        services = [spec.name for spec in SERVICES]
        assert names == ["kafka", "mlflow", *services] + (["prometheus"] if HAS_PROMETHEUS else [])
        assert all(c["state"] == "healthy" for c in status["components"])
        addresses = {c["name"]: c["urls"] for c in status["components"]}
        kafka = addresses["kafka"]["bootstrap"]
        assert kafka == f"127.0.0.1:{Ports.kafka + offset}"

        admin = KafkaAdminClient(bootstrap_servers=kafka)
        assert set(TOPICS) | {t + ".dlq" for t in TOPICS} <= set(admin.list_topics())
        admin.close()
        assert httpx.get(addresses["mlflow"]["ui"] + "/health").text.strip() == "OK"
        if HAS_PROMETHEUS:
            targets_url = addresses["prometheus"]["ui"] + "/api/v1/targets"

            def all_scraped() -> bool:
                targets = httpx.get(targets_url).json()["data"]["activeTargets"]
                up = {t["labels"]["job"] for t in targets if t["health"] == "up"}
                return {"mlflow", "prometheus", *services} <= up

            _wait_for(all_scraped, "prometheus to scrape mlflow and every service")

        # A crashed component shows as down, and status fails.
        mlflow_pid = next(c["pid"] for c in status["components"] if c["name"] == "mlflow")
        os.kill(mlflow_pid, signal.SIGKILL)
        _wait_for(lambda: _status(home)[0] == 1, "status to notice the crash")
        code, status = _status(home)
        mlflow = next(c for c in status["components"] if c["name"] == "mlflow")
        assert mlflow["state"] == "down" and "mlflow.log" in mlflow["detail"]

        # A second `up` on a running stack is refused, not doubled.
        again = _loopline("up", "--detach", "--port-offset", str(offset), home=home)
        assert again.returncode == 1 and "already running" in again.stderr
    finally:
        down = _loopline("down", home=home)
    assert down.returncode == 0, down.stderr
    assert _nothing_left(groups)
    assert not (home / "stack.json").exists()
    assert _loopline("status", home=home).returncode == 3
    assert (home / "logs" / "mlflow.log").exists()


def test_foreground_up_stops_everything_on_ctrl_c(tmp_path: Path) -> None:
    home = tmp_path / "fg"
    refused = _loopline("up", "--only", "kafka,nonesuch", home=home)
    assert refused.returncode == 1 and "unknown component(s): nonesuch" in refused.stderr
    proc = subprocess.Popen(  # a part of the stack (--only) is enough to show the foreground life cycle
        [LOOPLINE, "up", "--home", str(home), "--port-offset", str(_offset()), "--only", "kafka,mlflow,registry"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO,
    )
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "Press Ctrl-C" in line:
            break
    assert any("Press Ctrl-C" in line for line in lines), "".join(lines)
    assert [c["name"] for c in _status(home)[1]["components"]] == ["kafka", "mlflow", "registry"]
    groups = _recorded_groups(home)
    assert all(group_members(pgid, since=since) for pgid, since in groups)
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, rest
    assert "stopped: registry, mlflow, kafka" in rest
    assert _nothing_left(groups)


def test_stack_runs_services_and_checks_both_transports(tmp_path: Path) -> None:
    """The service path of the stack, with the common library's probe service standing in as a service."""
    ready_file = tmp_path / "probe-ready"
    ready_file.touch()
    offset = _offset()
    probe = ServiceSpec(  # spec ports are shifted by the offset like every default port
        name="probe", module="tests.common.probe_service",
        http_port=free_port() - offset, grpc_port=free_port() - offset,
        env=lambda addresses: {"LOOPLINE_PROBE_READY_FILE": str(ready_file), "PYTHONPATH": str(REPO)},
    )
    stack = Stack(home=tmp_path / "svc", ports=Ports(offset=offset), services=[probe],
                  only=["kafka", "probe", "prometheus"])
    try:
        components = stack.up(timeout=90)
        assert [c.name for c in components][:2] == ["kafka", "probe"]
        rows = {r["name"]: r for r in stack.status()}
        assert rows["probe"]["state"] == "healthy"
        assert "SERVING" in str(rows["probe"]["detail"])
        if HAS_PROMETHEUS:
            config = json.loads((tmp_path / "svc" / "prometheus" / "prometheus.yml").read_text())
            assert {"job_name": "probe", "metrics_path": "/metrics",
                    "static_configs": [{"targets": [f"127.0.0.1:{probe.http_port + stack.ports.offset}"]}]} in config[
                "scrape_configs"
            ]
        ready_file.unlink()  # the service turns unready: status says so
        _wait_for(lambda: {r["name"]: r for r in stack.status()}["probe"]["state"] == "unhealthy", "unready probe")
    finally:
        groups = [(c.pid, c.started_at) for c in stack.load()]
        stack.down()
    assert _nothing_left(groups)


def test_a_component_that_cannot_start_fails_up_and_leaves_nothing(tmp_path: Path) -> None:
    offset = _offset()
    broken = ServiceSpec(
        name="broken", module="loopline_no_such_module", http_port=free_port() - offset,
        grpc_port=free_port() - offset,
    )
    stack = Stack(home=tmp_path / "broken", ports=Ports(offset=offset), services=[broken], only=["kafka", "broken"])
    with pytest.raises(Exception, match="broken exited during start-up"):
        stack.up(timeout=90)
    assert not (tmp_path / "broken" / "stack.json").exists()
    assert not [p for p in psutil.process_iter(["cmdline"]) if str(tmp_path) in " ".join(p.info["cmdline"] or [])]
