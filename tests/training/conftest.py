"""Fixtures of the training tests: one real MLflow server, one registry (the real service, from the
developer environment) and one training service per session, on the session's Kafka-wire broker; a
seeded dataset; more training services on demand. Every process started here is stopped here, and so is
every job process a test leaves behind."""

from __future__ import annotations

import json
import os
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psutil
import pytest
from loopline_training import synthetic

from loopline.training.v1 import training_pb2 as pb
from tests.helpers import Broker, RunningProcess, free_port, start_process
from tests.training.support import (
    DEV_BIN,
    GrpcJobs,
    HttpJobs,
    JobEvents,
    TrainingProcess,
    final,
    http_service,
    job_processes,
    make_spec,
    start_training,
)

# The MLflow client in this process must fail fast too, should the server go away.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")

TRAINER_TOKEN = "trainer-token-" + "t" * 24
READER_TOKEN = "reader-token-" + "r" * 24


@dataclass(frozen=True)
class Infrastructure:
    mlflow_url: str
    registry_target: str


@pytest.fixture(scope="session")
def infrastructure(broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Infrastructure]:
    """A real MLflow server (SQLite backend, proxied artifacts) and the registry service (real, from .venv),
    started side by side for the whole session; the trainer token may register."""
    folder = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [
        str(DEV_BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}", "--artifacts-destination",
        str(folder / "artifacts"),
    ]
    registry_dir = tmp_path_factory.mktemp("registry")
    tokens = registry_dir / "tokens.json"
    tokens.write_text(json.dumps([
        {"name": "training-tests", "role": "trainer", "token": TRAINER_TOKEN},
        {"name": "training-tests-reader", "role": "reader", "token": READER_TOKEN},
    ]))
    with http_service(argv, {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}, url + "/health",
                      folder / "mlflow.log", timeout=180, wait=False) as wait_for_mlflow:
        # The registry starts while MLflow does (it asks MLflow only when called).
        registry: RunningProcess = start_process([str(DEV_BIN / "python"), "-m", "loopline_registry"], {
            "LOOPLINE_REGISTRY_HTTP_PORT": "0", "LOOPLINE_REGISTRY_GRPC_PORT": "0",
            "LOOPLINE_REGISTRY_MLFLOW_URI": url, "LOOPLINE_REGISTRY_KAFKA_BOOTSTRAP": broker.bootstrap,
            "LOOPLINE_REGISTRY_STORE_URL": f"sqlite:///{registry_dir / 'registry.db'}",
            "LOOPLINE_REGISTRY_TOKENS_FILE": str(tokens), "LOOPLINE_REGISTRY_INSTANCE_ID": "training-tests",
            "LOOPLINE_REGISTRY_MLFLOW_TIMEOUT_SECONDS": "10", "LOOPLINE_REGISTRY_SHUTDOWN_GRACE_SECONDS": "2",
        })
        try:
            wait_for_mlflow()
            serving = registry.wait_for_log(lambda r: r.get("message") == "serving", timeout=120)
            yield Infrastructure(url, f"127.0.0.1:{serving['grpc_port']}")
        finally:
            registry.stop()


@pytest.fixture(scope="session")
def mlflow_server(infrastructure: Infrastructure) -> str:
    return infrastructure.mlflow_url


@pytest.fixture(scope="session")
def registry_target(infrastructure: Infrastructure) -> str:
    return infrastructure.registry_target


@pytest.fixture(scope="session")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, tuple[datetime, datetime]]:
    """The seeded fraud-like dataset (small: the machine is shared) and the window covering it."""
    frame = synthetic.transactions(rows=4000, seed=5, days=40)
    path = synthetic.write(tmp_path_factory.mktemp("data") / "transactions.parquet", frame)
    return path, synthetic.window_of(frame)


@pytest.fixture(scope="session")
def training_env(mlflow_server: str, broker: Broker, registry_target: str) -> dict[str, str]:
    return {
        "LOOPLINE_TRAINING_KAFKA_BOOTSTRAP": broker.bootstrap,
        "LOOPLINE_TRAINING_MLFLOW_URI": mlflow_server,
        "LOOPLINE_TRAINING_REGISTRY_TARGET": registry_target,
        "LOOPLINE_TRAINING_REGISTRY_TOKEN": TRAINER_TOKEN,
        "LOOPLINE_TRAINING_READINESS_INTERVAL_SECONDS": "0.2",
        "LOOPLINE_TRAINING_SHUTDOWN_GRACE_SECONDS": "2",
        "LOOPLINE_TRAINING_CANCEL_GRACE_SECONDS": "5",
        "LOOPLINE_TRAINING_PROGRESS_EVENT_SECONDS": "0.5",
        "LOOPLINE_TRAINING_JOB_THREADS": "1",
        "LOOPLINE_TRAINING_LOG_LEVEL": "INFO",
    }


def _stop_jobs(work_dir: Path) -> None:
    """End the job processes a test left running (found by their work folder: ours alone)."""
    leftovers = job_processes(work_dir)
    for proc in leftovers:
        proc.kill()
    psutil.wait_procs(leftovers, timeout=10)


@pytest.fixture(scope="session")
def training_factory(
    training_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., TrainingProcess]]:
    """Start a training service: `start(work_dir=None, store_url=None, **env)`; stopped at session end
    (tests may stop theirs earlier), with any job process it left."""
    started: list[TrainingProcess] = []

    def start(*, work_dir: Path | None = None, store_url: str | None = None, **env: str) -> TrainingProcess:
        folder = work_dir or tmp_path_factory.mktemp("training")
        service = start_training({
            **training_env,
            "LOOPLINE_TRAINING_STORE_URL": store_url or f"sqlite:///{folder / 'training.db'}",
            "LOOPLINE_TRAINING_DRIFT_GROUP_ID": f"training-tests-{uuid.uuid4().hex[:8]}",
            **env,
        }, folder / "jobs")
        started.append(service)
        return service

    yield start
    for service in started:
        if service.alive():
            service.stop()
        _stop_jobs(service.work_dir)


@pytest.fixture(scope="session")
def training(training_factory: Callable[..., TrainingProcess]) -> TrainingProcess:
    """The session's shared training service (SQLite store, embedded runner, two jobs at once)."""
    return training_factory(LOOPLINE_TRAINING_MAX_CONCURRENT_JOBS="2", LOOPLINE_TRAINING_DRIFT_MIN_NEW_ROWS="200")


@dataclass(frozen=True)
class FailedJobs:
    """Two jobs of one model that failed fast on their data (their labels are not 0/1)."""

    first: pb.Job
    second: pb.Job
    spec: pb.JobSpec
    idempotency_key: str


@pytest.fixture(scope="session")
def failed_jobs(training: TrainingProcess, tmp_path_factory: pytest.TempPathFactory) -> FailedJobs:
    """Run once, shared by the tests that need finished jobs without paying for training."""
    frame = synthetic.transactions(rows=300, seed=2, days=5)
    frame[synthetic.LABEL] = frame[synthetic.LABEL] * 2 + 1  # 1 and 3
    path = synthetic.write(tmp_path_factory.mktemp("bad") / "bad_labels.parquet", frame)
    spec = make_spec(path, synthetic.window_of(frame), model="fraud-bad-labels")
    key = f"bad-labels-{uuid.uuid4().hex[:8]}"
    first = training.grpc.submit(spec, idempotency_key=key)
    second = training.http.submit(spec)
    return FailedJobs(final(training.grpc, first.job_id), final(training.grpc, second.job_id), spec, key)


@pytest.fixture(params=["grpc", "http"])
def jobs(request: pytest.FixtureRequest, training: TrainingProcess) -> GrpcJobs | HttpJobs:
    """The shared service through one transport; tests using it run once per transport."""
    return training.grpc if request.param == "grpc" else training.http


@pytest.fixture(scope="session")
def job_events(broker: Broker) -> Iterator[JobEvents]:
    events = JobEvents(broker.bootstrap)
    yield events
    events.close()


def python() -> str:
    return sys.executable
