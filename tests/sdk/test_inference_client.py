"""The SDK's inference client against a real inference server (a small LightGBM ONNX model): typed answers
over gRPC and REST, errors as LooplineError, and retries only where they are safe (retryable status and a
call allowed to retry), counted on the server's own request counter."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from loopline_sdk import InferenceClient, Tensor

from loopline_common.errors import InvalidArgument, NotFound, Unavailable
from loopline_common.grpc_client import RetryPolicy
from tests.helpers import RunningProcess, start_process
from tests.inference import models

ROW = [0.3, -1.2, 0.8, 0.0, 1.5, -0.4, 0.2, 0.9]


@dataclass
class Served:
    proc: RunningProcess
    grpc: str
    http: str


def _start(**env: str) -> Served:
    settings = {"LOOPLINE_INFERENCE_HTTP_PORT": "0", "LOOPLINE_INFERENCE_GRPC_PORT": "0",
                "LOOPLINE_INFERENCE_READINESS_INTERVAL_SECONDS": "0.1", "LOOPLINE_INFERENCE_INTRA_OP_THREADS": "1",
                **{f"LOOPLINE_INFERENCE_{k.upper()}": v for k, v in env.items()}}
    proc = start_process([sys.executable, "-m", "loopline_inference"], settings)
    serving = proc.wait_for_log(lambda r: r.get("message") == "serving", timeout=60)
    return Served(proc, f"127.0.0.1:{serving['grpc_port']}", f"http://127.0.0.1:{serving['http_port']}")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder: Path = tmp_path_factory.mktemp("sdk-model")
    models.lightgbm_model(folder / "model.onnx")
    server = _start(model_name="fraud", model=str(folder))
    server.proc.wait_for_log(lambda r: r.get("event") == "models_ready", timeout=60)
    yield server
    server.proc.stop()


@pytest.fixture(scope="module")
def unready() -> Iterator[Served]:
    """A server whose model cannot load (its registry is not there): it answers UNAVAILABLE."""
    server = _start(model_name="fraud", model="fraud@champion", registry_address="127.0.0.1:9",
                    ready_without_model="true")
    yield server
    server.proc.stop()


def _count(server: Served, status: str, protocol: str) -> float:
    total = 0.0
    for line in httpx.get(f"{server.http}/metrics", timeout=10).text.splitlines():
        if line.startswith("loopline_inference_predict_requests_total{") and f'status="{status}"' in line \
                and f'protocol="{protocol}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def _input(rows: int = 1) -> list[Tensor]:
    return [Tensor(name="input", datatype="FP32", shape=(rows, 8), data=ROW * rows)]


def test_grpc_and_rest_give_the_same_typed_answer(served: Served) -> None:
    with InferenceClient(served.grpc, http_url=served.http) as client:
        by_grpc = client.infer("fraud", _input(2), protocol="grpc")
        by_rest = client.infer("fraud", _input(2), protocol="rest", request_id="sdk-test-1")
    for answer in (by_grpc, by_rest):
        assert answer.model_name == "fraud" and answer.track == "champion"
        assert answer.shapes["probabilities"] == (2, 2)
        assert len(answer.scores("probabilities")) == 2
    assert by_grpc.protocol == "grpc" and by_rest.protocol == "rest"
    assert by_rest.request_id == "sdk-test-1"
    assert by_grpc.scores("probabilities") == pytest.approx(by_rest.scores("probabilities"), abs=1e-6)
    assert 0.0 <= by_grpc.scores("probabilities")[0] <= 1.0


def test_tracks_are_typed(served: Served) -> None:
    with InferenceClient(served.grpc) as client:
        tracks = client.tracks("fraud")
    assert tracks.model_name == "fraud" and tracks.challenger_weight == 0.0
    assert [t.track for t in tracks.tracks][:1] == ["champion"]


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
def test_bad_input_raises_and_is_never_retried(served: Served, protocol: str) -> None:
    before = _count(served, "INVALID_ARGUMENT", protocol)
    bad = [Tensor(name="input", datatype="FP32", shape=(1, 7), data=ROW[:7])]
    with InferenceClient(served.grpc, http_url=served.http) as client, pytest.raises(InvalidArgument):
        client.infer("fraud", bad, protocol=protocol, retry=True)
    assert _count(served, "INVALID_ARGUMENT", protocol) == before + 1
    with InferenceClient(served.grpc, http_url=served.http) as client, pytest.raises(NotFound):
        client.infer("no-such-model", _input(), protocol=protocol, retry=True)


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
def test_unavailable_is_retried_with_backoff_only_when_allowed(unready: Served, protocol: str) -> None:
    policy = RetryPolicy(max_attempts=3, initial_backoff=0.01, max_backoff=0.05)
    with InferenceClient(unready.grpc, http_url=unready.http, retry=policy, timeout=20) as client:
        before = _count(unready, "UNAVAILABLE", protocol)
        with pytest.raises(Unavailable):
            client.infer("fraud", _input(), protocol=protocol, retry=True)
        assert _count(unready, "UNAVAILABLE", protocol) == before + 3
        with pytest.raises(Unavailable):
            client.infer("fraud", _input(), protocol=protocol, retry=False)
        assert _count(unready, "UNAVAILABLE", protocol) == before + 4


def test_a_server_that_is_not_there_is_unavailable() -> None:
    policy = RetryPolicy(max_attempts=2, initial_backoff=0.01, max_backoff=0.02)
    with InferenceClient("127.0.0.1:9", http_url="http://127.0.0.1:9", retry=policy, timeout=3) as client:
        with pytest.raises(Unavailable):
            client.infer("fraud", _input(), protocol="grpc")
        with pytest.raises(Unavailable):
            client.infer("fraud", _input(), protocol="rest")
