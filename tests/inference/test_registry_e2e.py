"""End to end with the real registry: the server loads `name@alias` through a registry process over a real
MLflow server (artifact sha256 checked), and follows the champion alias when the registry moves it —
AliasChanged on the real broker — while clients keep sending requests, none of which fails."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as tgrpc
from google.protobuf.message import Message
from loopline_inference.registry import RegistryClient
from loopline_registry.auth import Role, tokens_json
from mlflow import MlflowClient

from loopline.inference.v1 import inference_pb2
from loopline.registry.v1 import registry_pb2 as rpb
from loopline_common.errors import FailedPrecondition
from loopline_common.topics import ensure_topics
from tests.helpers import BIN, Broker, free_port
from tests.inference import models
from tests.inference.conftest import Server, start_server
from tests.inference.test_tracks import admin, metric
from tests.registry.clients import ApiError, GrpcApi, RegistryProcess, start_registry

TRAINER = "trainer-token-" + "t" * 24
RELEASER = "releaser-token-" + "s" * 24
MODEL = "fraud-e2e"
X = np.random.default_rng(5).normal(size=(1, 8)).astype(np.float32)
MLMODEL = "artifact_path: model\nflavors:\n  onnx:\n    onnx_version: 1.17.0\n"


@dataclass
class Registered:
    registry: RegistryProcess
    artifacts: Path
    onnx: dict[int, bytes]

    @property
    def api(self) -> GrpcApi:
        return self.registry.grpc

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.registry.grpc_port}"


def _mlflow(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}", "--artifacts-destination",
         str(folder / "artifacts")],
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true"},
        stdout=open(folder / "mlflow.log", "wb"),  # noqa: SIM115 (closed with the process)
        stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300  # about 10 s on an idle machine
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow exited: {(folder / 'mlflow.log').read_text()[-2000:]}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise TimeoutError("mlflow server not healthy after 300 s")
        time.sleep(0.2)


def _log_run(mlflow: str, onnx_bytes: bytes) -> str:
    """A finished MLflow run holding a logged model with this ONNX file (what training leaves behind)."""
    client = MlflowClient(mlflow)
    experiment = client.get_experiment_by_name("inference-e2e")
    experiment_id = experiment.experiment_id if experiment else client.create_experiment("inference-e2e")
    run_id: str = client.create_run(experiment_id).info.run_id
    client.log_metric(run_id, "roc_auc", 0.9)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "model.onnx").write_bytes(onnx_bytes)
        (Path(tmp) / "MLmodel").write_text(MLMODEL)
        logged = client.create_logged_model(experiment_id=experiment_id, name="model", source_run_id=run_id)
        client.log_model_artifacts(logged.model_id, tmp)
        client.finalize_logged_model(logged.model_id, "READY")
    client.set_terminated(run_id)
    return run_id


def call(api: GrpcApi, method: str, request: Message, token: str) -> Any:
    """A registry call, again while it answers UNAVAILABLE (MLflow starved on a busy machine). Register
    carries an idempotency key and Promote to the same version is a no-op, so a retry is safe."""
    deadline = time.monotonic() + 120
    while True:
        try:
            return api.call(method, request, token, timeout=60)
        except ApiError as exc:
            if exc.code != "UNAVAILABLE" or time.monotonic() > deadline:
                raise


@pytest.fixture(scope="module")
def registered(broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registered]:
    """MLflow + registry; versions 1 (champion), 2 and 3 of a small MLP, each with different weights."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    folder = tmp_path_factory.mktemp("registry-e2e")
    ensure_topics(broker.bootstrap)
    mlflow, url = _mlflow(folder)
    tokens = folder / "tokens.json"
    tokens.write_text(tokens_json([("trainer-bot", Role.TRAINER, TRAINER), ("releaser-bot", Role.RELEASER, RELEASER)]))
    registry = None
    try:
        registry = start_registry(
            [sys.executable, "-m", "loopline_registry"],
            {"LOOPLINE_REGISTRY_MLFLOW_URI": url, "LOOPLINE_REGISTRY_KAFKA_BOOTSTRAP": broker.bootstrap,
             "LOOPLINE_REGISTRY_TOKENS_FILE": str(tokens), "LOOPLINE_REGISTRY_ANONYMOUS_READS": "true",
             "LOOPLINE_REGISTRY_STORE_URL": f"sqlite:///{folder / 'registry.db'}",
             "LOOPLINE_REGISTRY_OUTBOX_POLL_SECONDS": "0.2", "LOOPLINE_REGISTRY_SHUTDOWN_GRACE_SECONDS": "2",
             "LOOPLINE_REGISTRY_MLFLOW_TIMEOUT_SECONDS": "30", "LOOPLINE_REGISTRY_MLFLOW_RETRY_AFTER_SECONDS": "1"},
        )
        onnx: dict[int, bytes] = {}
        for version, scale in ((1, 1.0), (2, 3.0), (3, 5.0)):
            data = models.mlp_model(folder / f"v{version}" / "model.onnx", scale=scale).read_bytes()
            request = rpb.RegisterVersionRequest(model_name=MODEL, run_id=_log_run(url, data), onnx_parity_passed=True,
                                                 idempotency_key=f"e2e-v{version}")
            reply = call(registry.grpc, "RegisterVersion", request, TRAINER)
            assert reply.version.version == version and reply.version.model_sha256 == hashlib.sha256(data).hexdigest()
            onnx[version] = data
        call(registry.grpc, "Promote", rpb.PromoteRequest(model_name=MODEL, version=1, reason="first"), RELEASER)
        yield Registered(registry, folder / "artifacts", onnx)
    finally:
        if registry is not None:
            registry.close()
        os.killpg(mlflow.pid, signal.SIGTERM)
        mlflow.wait(20)


def expected(data: bytes) -> float:
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return float(session.run(None, {"input": X})[0][0, 0])


@pytest.fixture(scope="module")
def following(registered: Registered, broker: Broker) -> Iterator[Server]:
    server = start_server(
        model_name=MODEL, model=f"{MODEL}@champion", registry_address=registered.target,
        kafka_bootstrap=broker.bootstrap, instance_id="e2e-pod",
    )
    yield server
    server.proc.stop()


def test_loads_name_at_alias_through_the_registry_with_its_checksum(
    registered: Registered, following: Server
) -> None:
    tracks = admin(following).GetTracks(inference_pb2.GetTracksRequest(model_name=MODEL))
    champion = tracks.tracks[0]
    assert (champion.track, champion.version) == ("champion", 1)
    assert champion.sha256 == hashlib.sha256(registered.onnx[1]).hexdigest()
    assert champion.source == f"registry:{MODEL}@champion (version 1)"
    reply = httpx.post(f"{following.base}/v2/models/{MODEL}/infer", json={
        "inputs": [{"name": "input", "shape": [1, 8], "datatype": "FP32", "data": X[0].tolist()}]})
    assert reply.status_code == 200, reply.text
    doc = reply.json()
    assert doc["model_version"] == "1"
    assert doc["outputs"][0]["data"][0] == pytest.approx(expected(registered.onnx[1]), rel=1e-5)


def test_a_tampered_artifact_is_refused(registered: Registered) -> None:
    """Version 3's file changed in MLflow's artifact store after registration: its bytes no longer match
    the sha256 recorded at registration, the download fails and the loader never gets the bytes."""
    stored = [p for p in registered.artifacts.rglob("model.onnx") if p.read_bytes() == registered.onnx[3]]
    assert len(stored) == 1
    stored[0].write_bytes(registered.onnx[3][:-1] + bytes([registered.onnx[3][-1] ^ 1]))
    with pytest.raises(FailedPrecondition, match="checksum mismatch"):
        RegistryClient(registered.target).download(MODEL, 3)
    intact = RegistryClient(registered.target).download(MODEL, 2)
    assert intact.data == registered.onnx[2]


def test_swaps_on_alias_changed_without_failing_a_request(registered: Registered, following: Server) -> None:
    stop = threading.Event()
    seen: dict[str, list[tuple[str, float]]] = {"rest": [], "grpc": []}
    failures: list[str] = []

    def rest_client() -> None:
        body = {"inputs": [{"name": "input", "shape": [1, 8], "datatype": "FP32", "data": X[0].tolist()}]}
        with httpx.Client(base_url=following.base, timeout=10) as client:
            while not stop.is_set():
                try:
                    r = client.post(f"/v2/models/{MODEL}/infer", json=body)
                    if r.status_code != 200:
                        failures.append(f"rest {r.status_code} {r.text}")
                        continue
                    doc = r.json()
                    seen["rest"].append((doc["model_version"], doc["outputs"][0]["data"][0]))
                except Exception as exc:
                    failures.append(f"rest {exc!r}")

    def grpc_client() -> None:
        client = tgrpc.InferenceServerClient(following.grpc)
        inp = tgrpc.InferInput("input", [1, 8], "FP32")
        inp.set_data_from_numpy(X)
        while not stop.is_set():
            try:
                result = client.infer(MODEL, [inp], client_timeout=10)
                seen["grpc"].append((result.get_response().model_version, float(result.as_numpy("probability")[0, 0])))
            except Exception as exc:
                failures.append(f"grpc {exc!r}")
        client.close()

    threads = [threading.Thread(target=rest_client), threading.Thread(target=grpc_client)]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 10
        while min(len(v) for v in seen.values()) < 5:  # both clients are under way on version 1
            assert time.monotonic() < deadline and not failures, failures
            time.sleep(0.01)
        promoted = call(registered.api, "Promote", rpb.PromoteRequest(model_name=MODEL, version=2, reason="e2e swap"),
                        RELEASER)
        assert promoted.champion == 2
        deadline = time.monotonic() + 60
        # Until both clients have had a few answers from version 2 (event on Kafka → download → swap).
        while sum(1 for v, _ in seen["rest"][-5:] if v == "2") < 5 or sum(
                1 for v, _ in seen["grpc"][-5:] if v == "2") < 5:
            assert time.monotonic() < deadline, f"no swap: {seen['rest'][-3:]} {following.proc.output()[-3000:]}"
            assert not failures, failures
            time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join(20)
    assert failures == []
    want = {"1": expected(registered.onnx[1]), "2": expected(registered.onnx[2])}
    for transport, answers in seen.items():
        versions = [v for v, _ in answers]
        first_new = versions.index("2")
        # Each client sends one request at a time: once version 2 answered, version 1 never does again.
        assert set(versions[:first_new]) == {"1"} and set(versions[first_new:]) == {"2"}, transport
        for version, score in answers:
            assert score == pytest.approx(want[version], rel=1e-5), (transport, version)
    tracks = admin(following).GetTracks(inference_pb2.GetTracksRequest(model_name=MODEL))
    assert tracks.tracks[0].version == 2
    assert tracks.tracks[0].sha256 == hashlib.sha256(registered.onnx[2]).hexdigest()
    assert metric(following, "loopline_inference_model_swaps_total", model=MODEL) == 1
    assert metric(following, "loopline_inference_predict_requests_total", model=MODEL, version="2",
                  status="ok") >= 10
    assert metric(following, "loopline_inference_predict_requests_total", model=MODEL, version="1",
                  status="ok") >= 10
