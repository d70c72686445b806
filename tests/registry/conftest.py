"""Fixtures for the registry tests: one real MLflow server per session, the session's Kafka-wire broker,
a Postgres database of their own, tokens for each role, and registry processes started on demand."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from loopline_registry.auth import Role, tokens_json

from tests.helpers import BIN, Broker, absent, free_port, stop_group
from tests.registry.clients import GrpcApi, HttpApi, RegistryProcess, start_registry

# The MLflow client in this process must fail fast too, should the server go away.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
# No telemetry: there is no internet here, and its thread races on os.environ with MLflow's HTTP calls.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

PG_ADMIN_URL = os.environ.get("LOOPLINE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")

TOKENS = {
    Role.READER: ("reader-bot", "reader-token-" + "r" * 24),
    Role.TRAINER: ("trainer-bot", "trainer-token-" + "t" * 24),
    Role.RELEASER: ("releaser-bot", "releaser-token-" + "s" * 24),
    Role.ADMIN: ("admin-bot", "admin-token-" + "a" * 24),
}


def token(role: Role) -> str:
    return TOKENS[role][1]


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real MLflow server (SQLite backend, proxied artifacts) for the whole session."""
    folder = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    proc = subprocess.Popen(
        [
            str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
            "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
            "--artifacts-destination", str(folder / "artifacts"),
        ],
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        stdout=open(folder / "mlflow.log", "wb"),  # noqa: SIM115 (closed with the process)
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited: {(folder / 'mlflow.log').read_text()[-2000:]}")
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("mlflow server not healthy after 120 s")
            time.sleep(0.2)
        yield url
    finally:
        stop_group(proc)


@pytest.fixture(scope="session")
def tokens_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("secrets") / "tokens.json"
    path.write_text(tokens_json([(name, role, value) for role, (name, value) in TOKENS.items()]))
    return path


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A database of its own on the machine's Postgres, dropped at the end of the session."""
    import psycopg

    name = f"loopline_registry_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        absent(f"Postgres is not reachable at {PG_ADMIN_URL}: {exc}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def registry_env(mlflow_server: str, broker: Broker, tokens_file: Path) -> dict[str, str]:
    return {
        "LOOPLINE_REGISTRY_MLFLOW_URI": mlflow_server,
        "LOOPLINE_REGISTRY_KAFKA_BOOTSTRAP": broker.bootstrap,
        "LOOPLINE_REGISTRY_TOKENS_FILE": str(tokens_file),
        "LOOPLINE_REGISTRY_READINESS_INTERVAL_SECONDS": "0.2",
        "LOOPLINE_REGISTRY_OUTBOX_POLL_SECONDS": "0.2",
        "LOOPLINE_REGISTRY_MLFLOW_TIMEOUT_SECONDS": "10",
        "LOOPLINE_REGISTRY_MLFLOW_RETRY_AFTER_SECONDS": "1",
        "LOOPLINE_REGISTRY_SHUTDOWN_GRACE_SECONDS": "2",
    }


def launch(env: dict[str, str], tmp: Path, *, store_url: str | None = None, instance: str | None = None,
           **extra: str) -> RegistryProcess:
    """Start a registry process (SQLite store in `tmp` unless `store_url` is given) and wait until it serves."""
    return start_registry(
        [sys.executable, "-m", "loopline_registry"],
        {
            **env,
            "LOOPLINE_REGISTRY_STORE_URL": store_url or f"sqlite:///{tmp / f'registry-{uuid.uuid4().hex[:6]}.db'}",
            "LOOPLINE_REGISTRY_INSTANCE_ID": instance or f"test-{uuid.uuid4().hex[:8]}",
            **extra,
        },
    )


@pytest.fixture
def registry_factory(registry_env: dict[str, str], tmp_path: Path) -> Iterator:  # type: ignore[type-arg]
    """Start registry processes for one test: `start(store_url=None, instance=None, **env)`; each is
    stopped when the test ends (a test may stop or kill its own earlier)."""
    started: list[RegistryProcess] = []

    def start(**kwargs: str | None) -> RegistryProcess:
        registry = launch(registry_env, tmp_path, **kwargs)  # type: ignore[arg-type]
        started.append(registry)
        return registry

    yield start
    for registry in started:
        registry.close()


@pytest.fixture(scope="session")
def registry(registry_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    """The session's shared registry (SQLite store, anonymous reads off)."""
    shared = launch(registry_env, tmp_path_factory.mktemp("registry"))
    yield shared
    shared.close()


@pytest.fixture(params=["grpc", "http"])
def api(request: pytest.FixtureRequest, registry: RegistryProcess) -> GrpcApi | HttpApi:
    """The shared registry through one transport; tests using it run once per transport."""
    return registry.grpc if request.param == "grpc" else registry.http
