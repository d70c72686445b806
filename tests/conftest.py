"""Shared fixtures: real processes on 127.0.0.1, started and stopped by the tests."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import Broker, RunningProcess, running_broker, start_process


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """One Kafka-wire broker (noida-db) for the session; tests use their own topics and groups."""
    with running_broker(tmp_path_factory.mktemp("kafka")) as b:
        yield b


@pytest.fixture
def probe_factory(tmp_path: Path) -> Iterator:  # type: ignore[type-arg]
    """Start the probe service (tests/common/probe_service.py) as a real process; stopped at teardown."""
    started: list[RunningProcess] = []

    def start(*, ready: bool = True, **env: str) -> tuple[RunningProcess, int, int, Path]:
        ready_file = tmp_path / f"ready-{len(started)}"
        if ready:
            ready_file.touch()
        proc = start_process(
            [sys.executable, "-m", "tests.common.probe_service"],
            {
                "LOOPLINE_PROBE_HTTP_PORT": "0",
                "LOOPLINE_PROBE_GRPC_PORT": "0",
                "LOOPLINE_PROBE_READY_FILE": str(ready_file),
                "LOOPLINE_PROBE_READINESS_INTERVAL_SECONDS": "0.1",
                **env,
            },
        )
        started.append(proc)
        serving = proc.wait_for_log(lambda r: r.get("message") == "serving")
        return proc, int(serving["http_port"]), int(serving["grpc_port"]), ready_file

    yield start
    for proc in started:
        proc.stop()
