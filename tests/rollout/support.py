"""The embedded stack for the rollout tests, from real parts: the session's broker and MLflow server, and a
registry, an inference server, a monitoring service, Prometheus and the rollout controller, each its own
process on 127.0.0.1. Model versions are real ONNX models registered through the registry."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc
import httpx
import numpy as np
import onnxruntime
from loopline_monitoring.profiles import build_profile
from mlflow import MlflowClient

from loopline.inference.v1 import inference_pb2, inference_pb2_grpc
from loopline.registry.v1 import registry_pb2 as rpb
from loopline.rollout.v1 import rollout_pb2 as pb
from loopline.rollout.v1 import rollout_pb2_grpc
from tests.helpers import RunningProcess, free_port, start_process
from tests.inference import models
from tests.registry.clients import RegistryProcess

T = TypeVar("T")
FEATURES = [f"f{i}" for i in range(8)]
MLMODEL = """\
artifact_path: model
flavors:
  onnx:
    onnx_version: 1.17.0
"""


def wait_until(check: Callable[[], T | None], *, timeout: float = 60.0, what: str = "condition",
               every: float = 0.1) -> T:
    """Poll `check` until it returns something truthy (returned), or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except Exception as exc:  # not there yet
            last = exc
        else:
            if last:
                return last
        time.sleep(every)
    raise AssertionError(f"{what} not reached within {timeout}s (last: {last!r})")


def metric(text: str, name: str, **labels: str) -> float | None:
    """One sample of a Prometheus exposition, or None."""
    wanted = {f'{k}="{v}"' for k, v in labels.items()}
    for line in text.splitlines():
        if line.startswith("#") or not (line.startswith(name + "{") or line.startswith(name + " ")):
            continue
        head, _, value = line.rpartition(" ")
        inside = head[len(name):].strip("{}")
        if wanted <= set(inside.split(",")) if inside else not wanted:
            return float(value)
    return None


class RolloutClient:
    """The rollout gRPC API with a bearer token."""

    def __init__(self, target: str, token: str) -> None:
        self.channel = grpc.insecure_channel(target)
        self.stub = rollout_pb2_grpc.RolloutServiceStub(self.channel)  # type: ignore[no-untyped-call]
        self.token = token

    def call(self, method: str, request: Any, *, token: str | None = None) -> Any:
        auth = token if token is not None else self.token
        metadata = (("authorization", f"Bearer {auth}"),) if auth else ()
        return getattr(self.stub, method)(request, metadata=metadata, timeout=30)

    def get(self, model: str) -> pb.GetRolloutResponse:
        response: pb.GetRolloutResponse = self.call("GetRollout", pb.GetRolloutRequest(model_name=model))
        return response

    def close(self) -> None:
        self.channel.close()


@dataclass
class Process:
    proc: RunningProcess
    http: str
    grpc: str

    def stop(self, sig: int = signal.SIGTERM) -> int:
        return self.proc.stop(sig)


def start_service(module: str, prefix: str, env: dict[str, str], *, timeout: float = 90.0) -> Process:
    proc = start_process([sys.executable, "-m", module], {
        f"{prefix}HTTP_PORT": "0", f"{prefix}GRPC_PORT": "0", f"{prefix}READINESS_INTERVAL_SECONDS": "0.2",
        f"{prefix}SHUTDOWN_GRACE_SECONDS": "1", **env,
    })
    try:
        serving = proc.wait_for_log(lambda r: r.get("message") == "serving", timeout=timeout)
    except TimeoutError:
        proc.stop()
        raise
    return Process(proc, f"http://127.0.0.1:{serving['http_port']}", f"127.0.0.1:{serving['grpc_port']}")


def reference_profile(model: str, version: int, onnx_path: Path, *, rows: int = 5000) -> Any:
    rng = np.random.default_rng(version)
    x = rng.normal(size=(rows, len(FEATURES))).astype(np.float32)
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    width = session.get_inputs()[0].shape[1]
    prediction = session.run(None, {"input": x[:, :width]})[0].reshape(-1).astype(np.float64)
    return build_profile(model_name=model, model_version=version,
                        numeric={name: x[:, j].astype(np.float64) for j, name in enumerate(FEATURES)},
                        prediction=prediction, prediction_output="probability")


class Traffic:
    """Requests to the inference server from a background thread, at a steady pace, while running."""

    def __init__(self, base: str, model: str, *, rate: float = 80.0, rows: int = 8) -> None:
        self.base = base
        self.model = model
        self.rate = rate
        self.rows = rows
        self.sent = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def body(self, rng: np.random.Generator, rows: int = 1) -> dict[str, Any]:
        data = rng.normal(size=rows * len(FEATURES)).astype(np.float32).tolist()
        return {"inputs": [{"name": "input", "shape": [rows, len(FEATURES)], "datatype": "FP32", "data": data}]}

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self._thread = None

    def _run(self) -> None:
        rng = np.random.default_rng()
        pause = 1.0 / self.rate
        with httpx.Client(base_url=self.base, timeout=10) as http:
            while not self._stop.is_set():
                try:
                    http.post(f"/v2/models/{self.model}/infer", json=self.body(rng, self.rows))
                    self.sent += 1
                except httpx.HTTPError:
                    pass
                self._stop.wait(pause)  # pacing, not synchronisation

    def split(self, n: int) -> dict[str, int]:
        """Send `n` requests now and count the track that answered each."""
        rng = np.random.default_rng()
        counts: dict[str, int] = {}
        with httpx.Client(base_url=self.base, timeout=10) as http:
            for _ in range(n):
                response = http.post(f"/v2/models/{self.model}/infer", json=self.body(rng))
                response.raise_for_status()
                track = response.json()["parameters"]["track"]
                counts[track] = counts.get(track, 0) + 1
        return counts


@dataclass
class Stack:
    """Everything one test module shares."""

    model: str
    folder: Path
    mlflow: str
    broker: str
    tokens_file: Path
    trainer_token: str
    releaser_token: str
    registry: RegistryProcess | None = None
    inference: Process | None = None
    monitoring: Process | None = None
    prometheus: subprocess.Popen[bytes] | None = None
    prometheus_url: str = ""
    rollout: Process | None = None
    rollout_env: dict[str, str] = field(default_factory=dict)
    client: RolloutClient | None = None
    traffic: Traffic | None = None
    onnx: dict[int, Path] = field(default_factory=dict)

    # ---- model versions --------------------------------------------------------------------------
    def make_model(self, kind: str, seed: int) -> Path:
        path = self.folder / "onnx" / f"{kind}-{seed}.onnx"
        if kind == "good":
            models.mlp_model(path, seed=0, scale=1.0 + 0.01 * seed)
        elif kind == "degraded":
            models.mlp_model(path, seed=0, scale=3.0)
        elif kind == "broken":  # expects 4 features where requests send 8: every request it answers fails
            models.mlp_model(path, n_features=4, seed=seed)
        else:
            raise ValueError(kind)
        return path

    def register(self, kind: str, *, challenger: bool = True) -> int:
        """Log a run with a real ONNX model to MLflow and register it (as challenger) through the registry."""
        assert self.registry is not None
        seed = len(self.onnx) + 1
        onnx_path = self.make_model(kind, seed)
        client = MlflowClient(self.mlflow)
        experiment = client.get_experiment_by_name("rollout-tests")
        experiment_id = experiment.experiment_id if experiment else client.create_experiment("rollout-tests")
        run = client.create_run(experiment_id)
        client.log_metric(run.info.run_id, "roc_auc", 0.8)
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            shutil.copy(onnx_path, folder / "model.onnx")
            (folder / "MLmodel").write_text(MLMODEL)
            logged = client.create_logged_model(experiment_id=experiment_id, name="model",
                                                source_run_id=run.info.run_id)
            client.log_model_artifacts(logged.model_id, str(folder))
            client.finalize_logged_model(logged.model_id, "READY")
        client.set_terminated(run.info.run_id)
        # The profile monitoring compares the version's inputs with, written before the version can serve.
        version_guess = self.latest_version() + 1
        profile = reference_profile(self.model, version_guess, onnx_path)
        target = self.folder / "profiles" / self.model / str(version_guess) / "reference_profile.pb"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(profile.SerializeToString())
        response = self.registry.grpc.call("RegisterVersion", rpb.RegisterVersionRequest(
            model_name=self.model, run_id=run.info.run_id, logged_model_id=logged.model_id,
            make_challenger=challenger, reason=f"rollout test: {kind}", idempotency_key=uuid.uuid4().hex,
        ), token=self.trainer_token)
        version = int(response.version.version)
        assert version == version_guess, (version, version_guess)
        self.onnx[version] = onnx_path
        return version

    def latest_version(self) -> int:
        assert self.registry is not None
        try:
            got = self.registry.grpc.call("GetModel", rpb.GetModelRequest(model_name=self.model),
                                          token=self.releaser_token)
        except Exception:
            return 0
        return int(got.model.latest_version)

    def alias(self, alias: str) -> int:
        assert self.registry is not None
        try:
            got = self.registry.grpc.call("ResolveAlias", rpb.ResolveAliasRequest(model_name=self.model, alias=alias),
                                          token=self.releaser_token)
        except Exception:
            return 0
        return int(got.version)

    def lineage(self, version: int) -> rpb.GetLineageResponse:
        assert self.registry is not None
        response: rpb.GetLineageResponse = self.registry.grpc.call(
            "GetLineage", rpb.GetLineageRequest(model_name=self.model, version=version), token=self.releaser_token)
        return response

    # ---- inference -------------------------------------------------------------------------------
    def tracks(self) -> inference_pb2.GetTracksResponse:
        assert self.inference is not None
        with grpc.insecure_channel(self.inference.grpc) as channel:
            stub = inference_pb2_grpc.InferenceAdminServiceStub(channel)  # type: ignore[no-untyped-call]
            response: inference_pb2.GetTracksResponse = stub.GetTracks(
                inference_pb2.GetTracksRequest(model_name=self.model), timeout=10)
        return response

    def serving(self, track: str) -> int:
        return next((int(t.version) for t in self.tracks().tracks if t.track == track), 0)

    # ---- the rollout controller ------------------------------------------------------------------
    def start_rollout_service(self, **overrides: str) -> None:
        env = {**self.rollout_env, **{f"LOOPLINE_ROLLOUT_{k.upper()}": v for k, v in overrides.items()}}
        self.rollout = start_service("loopline_rollout", "LOOPLINE_ROLLOUT_", env)
        url = f"{self.rollout.http}/readyz"
        try:
            wait_until(lambda: httpx.get(url, timeout=5).status_code == 200, timeout=60, what="rollout readiness")
        except AssertionError:
            raise AssertionError(f"rollout not ready: {httpx.get(url, timeout=5).text}\n"
                                 f"{self.rollout.proc.output()[-5000:]}") from None
        if self.client is not None:
            self.client.close()
        self.client = RolloutClient(self.rollout.grpc, self.releaser_token)

    def rollout_metrics(self) -> str:
        assert self.rollout is not None
        return httpx.get(f"{self.rollout.http}/metrics", timeout=10).text

    def wait_phase(self, phases: set[int], *, candidate: int, timeout: float = 90.0) -> pb.GetRolloutResponse:
        assert self.client is not None
        client = self.client

        def reached() -> pb.GetRolloutResponse | None:
            got = client.get(self.model)
            return got if got.rollout.candidate_version == candidate and got.rollout.phase in phases else None

        try:
            return wait_until(reached, timeout=timeout, what=f"rollout of v{candidate} in {phases}", every=0.2)
        except AssertionError:
            assert self.rollout is not None
            print(self.rollout.proc.output()[-6000:])
            raise


def start_prometheus(folder: Path, targets: list[str]) -> tuple[subprocess.Popen[bytes], str]:
    """The real Prometheus, scraping `targets` (host:port) every second."""
    binary = shutil.which("prometheus")
    if binary is None:
        raise RuntimeError("prometheus is not installed (apt-get install prometheus)")
    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
              "scrape_configs": [{"job_name": f"t{i}", "static_configs": [{"targets": [t]}]}
                                 for i, t in enumerate(targets)]}
    (folder / "prometheus.yml").write_text(json.dumps(config))
    proc = subprocess.Popen(
        [binary, f"--config.file={folder / 'prometheus.yml'}", f"--storage.tsdb.path={folder / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=open(folder / "prometheus.log", "wb"), stderr=subprocess.STDOUT,  # noqa: SIM115
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: httpx.get(f"{url}/-/ready", timeout=2).status_code == 200, timeout=60,
               what="prometheus readiness")
    return proc, url


def stop_prometheus(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@contextmanager
def running_mlflow(folder: Path) -> Iterator[str]:
    """An MLflow server (SQLite, proxied artifacts, one worker) for scripts outside pytest (the benchmark)."""
    import os

    port = free_port()
    log = open(folder / "mlflow.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1", "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
         "--artifacts-destination", str(folder / "artifacts")],
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: httpx.get(url + "/health", timeout=2).status_code == 200, timeout=180,
                   what="mlflow health")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()
