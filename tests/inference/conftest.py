"""Fixtures: small real ONNX models, and the inference service started as a real process."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import RunningProcess, start_process
from tests.inference import models


@dataclass
class Server:
    proc: RunningProcess
    http_port: int
    grpc_port: int

    @property
    def http(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def base(self) -> str:
        return f"http://{self.http}"


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Models in KServe's storage layout: <dir>/<name>/model.onnx."""
    root = tmp_path_factory.mktemp("models")
    models.lightgbm_model(root / "lgbm" / "model.onnx")
    models.mlp_model(root / "mlp" / "model.onnx", scale=1.0)
    models.mlp_model(root / "mlp2" / "model.onnx", scale=3.0)
    models.identity_model(root / "identity" / "model.onnx")
    return root


def start_server(**env: str) -> Server:
    settings = {
        "LOOPLINE_INFERENCE_HTTP_PORT": "0",
        "LOOPLINE_INFERENCE_GRPC_PORT": "0",
        "LOOPLINE_INFERENCE_READINESS_INTERVAL_SECONDS": "0.1",
        "LOOPLINE_INFERENCE_INTRA_OP_THREADS": "1",
        **{f"LOOPLINE_INFERENCE_{k.upper()}": v for k, v in env.items()},
    }
    proc = start_process([sys.executable, "-m", "loopline_inference"], settings)
    try:
        serving = proc.wait_for_log(lambda r: r.get("message") == "serving", timeout=60)
        proc.wait_for_log(lambda r: r.get("event") == "models_ready", timeout=60)
    except TimeoutError:
        proc.stop()
        raise
    return Server(proc, int(serving["http_port"]), int(serving["grpc_port"]))


@pytest.fixture
def server_factory() -> Iterator:  # type: ignore[type-arg]
    started: list[Server] = []

    def start(**env: str) -> Server:
        server = start_server(**env)
        started.append(server)
        return server

    yield start
    for server in started:
        server.proc.stop()


@pytest.fixture(scope="module")
def lgbm_server(model_dir: Path) -> Iterator[Server]:
    server = start_server(model_name="fraud", model=str(model_dir / "lgbm"))
    yield server
    server.proc.stop()


@pytest.fixture(scope="module")
def identity_server(model_dir: Path) -> Iterator[Server]:
    server = start_server(model_name="identity", model=str(model_dir / "identity"), max_request_bytes="65536")
    yield server
    server.proc.stop()
