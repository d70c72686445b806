"""Fixtures of the features service tests: demo data in real Feast stores, the service as a real process.

These tests run in the features environment (.venvs/features), the only one with feast.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

import tests.helpers
from tests.helpers import REPO, Broker, RunningProcess, absent, free_port, running_broker, start_process

FEATURE_REPO = REPO / "feature_repo"
REDIS_DB = 13  # a database of the machine's Redis that nothing else here uses


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """The session broker; noida-db lives in the dev environment, not in this one."""
    if not (tests.helpers.BIN / "noida-db").exists():
        tests.helpers.BIN = REPO / ".venv" / "bin"
    with running_broker(tmp_path_factory.mktemp("kafka")) as b:
        yield b


@dataclass
class Store:
    """One Feast store environment: embedded (SQLite online) or cluster (Redis online)."""

    kind: str
    data_dir: Path
    env: dict[str, str]

    @property
    def environment(self) -> str:
        return "embedded" if self.kind == "sqlite" else "cluster"


def make_store(kind: str, data_dir: Path, *, redis_url: str = f"127.0.0.1:6379,db={REDIS_DB}") -> Store:
    env = {}
    if kind == "redis":
        env = {
            "LOOPLINE_FEATURES_REGISTRY": str(data_dir / "registry.db"),
            "LOOPLINE_FEATURES_REDIS": redis_url,
        }
        os.environ.update(env)  # the store config is expanded from the environment, here and in the service
    return Store(kind, data_dir, env)


def flush_redis(db: int = REDIS_DB, port: int = 6379) -> None:
    redis.Redis(host="127.0.0.1", port=port, db=db).flushdb()


@dataclass
class Service:
    proc: RunningProcess
    http: str
    grpc: str
    store: Store

    def stop(self) -> int:
        return self.proc.stop()

    def metric(self, name: str, **labels: str) -> float | None:
        """The sample of `name` with exactly these labels on the service's /metrics, or None."""
        text = httpx.get(f"{self.http}/metrics", timeout=10).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and sample.labels == labels:
                    return float(sample.value)
        return None


def start_service(store: Store, **settings: str) -> Service:
    env = {
        "LOOPLINE_FEATURES_HTTP_PORT": "0",
        "LOOPLINE_FEATURES_GRPC_PORT": "0",
        "LOOPLINE_FEATURES_REPO_DIR": str(FEATURE_REPO),
        "LOOPLINE_FEATURES_DATA_DIR": str(store.data_dir),
        "LOOPLINE_FEATURES_ENVIRONMENT": store.environment,
        "LOOPLINE_FEATURES_READINESS_INTERVAL_SECONDS": "0.2",
        "LOOPLINE_FEATURES_SHUTDOWN_GRACE_SECONDS": "2",
        **store.env,
        **{f"LOOPLINE_FEATURES_{k.upper()}": v for k, v in settings.items()},
    }
    proc = start_process([sys.executable, "-m", "loopline_features"], env)
    try:
        serving = proc.wait_for_log(lambda r: r.get("message") == "serving", timeout=300)
    except TimeoutError:
        proc.stop()
        raise
    return Service(proc, f"http://127.0.0.1:{serving['http_port']}", f"127.0.0.1:{serving['grpc_port']}", store)


@dataclass
class PrivateRedis:
    port: int
    proc: subprocess.Popen[bytes]

    def freeze(self) -> None:
        """SIGSTOP: the kernel still accepts connections, but no command is ever answered (a hung store)."""
        self.proc.send_signal(signal.SIGSTOP)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A redis-server of this test's own (so it can be stopped without touching the machine's Redis)."""
    binary = shutil.which("redis-server")
    if binary is None:
        absent("redis-server is not installed")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("redis-server did not start") from None
            time.sleep(0.05)
    server = PrivateRedis(port, proc)
    yield server
    server.stop()
