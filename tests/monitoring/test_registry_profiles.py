"""Reference profiles from the real registry: an MLflow server and a registry process, a version registered
the way training registers one (its logged model holds model.onnx and reference_profile.pb), then the
monitoring adapter downloads the profile (checksum verified) and the core compares windows with it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from loopline_monitoring import wire
from loopline_monitoring.core import MonitoringCore, ProfileCache, WindowKey
from loopline_monitoring.policy import DriftPolicy, Policies
from loopline_monitoring.registry_client import RegistryProfiles
from loopline_monitoring.store import Store
from loopline_monitoring.telemetry import MonitoringMetrics

from loopline.events.v1 import predictions_pb2
from loopline.registry.v1 import registry_pb2, registry_pb2_grpc
from loopline_common.errors import NotFound, Unauthenticated
from loopline_common.metrics import ServiceMetrics
from tests.helpers import BIN, Broker, RunningProcess, free_port, start_process, stop_group
from tests.monitoring import data

pytestmark = pytest.mark.slow

TRAINER = "trainer-token-" + "t" * 24
READER = "reader-token-" + "r" * 24
MLMODEL = """\
artifact_path: model
flavors:
  onnx:
    onnx_version: 1.17.0
"""


@pytest.fixture(scope="module")
def mlflow_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    with open(folder / "mlflow.log", "wb") as log:
        proc = subprocess.Popen(
            [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
             "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
             "--artifacts-destination", str(folder / "artifacts")],
            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"mlflow exited: {(folder / 'mlflow.log').read_text()[-2000:]}")
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


@pytest.fixture(scope="module")
def registry(mlflow_uri: str, broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A registry process (its own SQLite store); yields its gRPC address."""
    folder = tmp_path_factory.mktemp("registry")
    tokens = folder / "tokens.json"
    tokens.write_text(json.dumps([
        {"name": "trainer-bot", "role": "trainer", "token": TRAINER},
        {"name": "monitoring", "role": "reader", "token": READER},
    ]))
    process: RunningProcess = start_process(
        [sys.executable, "-m", "loopline_registry"],
        {
            "LOOPLINE_REGISTRY_HTTP_PORT": "0", "LOOPLINE_REGISTRY_GRPC_PORT": "0",
            "LOOPLINE_REGISTRY_MLFLOW_URI": mlflow_uri, "LOOPLINE_REGISTRY_KAFKA_BOOTSTRAP": broker.bootstrap,
            "LOOPLINE_REGISTRY_TOKENS_FILE": str(tokens),
            "LOOPLINE_REGISTRY_STORE_URL": f"sqlite:///{folder / 'registry.db'}",
            "LOOPLINE_REGISTRY_PROFILE_FILE": "reference_profile.pb",
            "LOOPLINE_REGISTRY_SHUTDOWN_GRACE_SECONDS": "2",
        },
    )
    try:
        serving = process.wait_for_log(lambda r: r.get("message") == "serving", timeout=90)
    except TimeoutError:
        process.stop()
        raise
    try:
        yield f"127.0.0.1:{serving['grpc_port']}"
    finally:
        process.stop()


def register(mlflow_uri: str, target: str, model: str, profile_bytes: bytes) -> int:
    """What training does: a run, a logged model holding the ONNX file and the profile, a registration."""
    from mlflow import MlflowClient

    client = MlflowClient(mlflow_uri)
    experiment = client.get_experiment_by_name("monitoring-tests")
    experiment_id = experiment.experiment_id if experiment else client.create_experiment("monitoring-tests")
    run_id = client.create_run(experiment_id).info.run_id
    client.log_metric(run_id, "roc_auc", 0.9)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "model.onnx").write_bytes(uuid.uuid4().bytes * 64)
        (folder / "reference_profile.pb").write_bytes(profile_bytes)
        (folder / "MLmodel").write_text(MLMODEL)
        logged = client.create_logged_model(experiment_id=experiment_id, name="model", source_run_id=run_id)
        client.log_model_artifacts(logged.model_id, str(folder))
        client.finalize_logged_model(logged.model_id, "READY")
    client.set_terminated(run_id)
    with grpc.insecure_channel(target) as channel:
        stub = registry_pb2_grpc.RegistryServiceStub(channel)  # type: ignore[no-untyped-call]
        response = stub.RegisterVersion(
            registry_pb2.RegisterVersionRequest(model_name=model, run_id=run_id, logged_model_id=logged.model_id,
                                                feature_service="fraud_v1", trigger="manual"),
            metadata=(("authorization", f"Bearer {TRAINER}"),), timeout=60,
        )
    return int(response.version.version)


def test_profiles_come_from_the_registry_with_their_checksum(mlflow_uri: str, registry: str, tmp_path: Path) -> None:
    model = f"fraud-{uuid.uuid4().hex[:6]}"
    profile = data.reference_profile(model, 0)  # written before registration: version 0
    version = register(mlflow_uri, registry, model, profile.SerializeToString())

    source = RegistryProfiles(target=registry, token=READER, timeout=30)
    try:
        assert source.fetch(model_name=model, version=version) == profile.SerializeToString()
        assert source.feature_service(model_name=model, version=version) == "fraud_v1"
        with pytest.raises(NotFound):
            source.fetch(model_name=model, version=version + 1)
        with pytest.raises(Unauthenticated):
            RegistryProfiles(target=registry, token="", timeout=10).fetch(model_name=model, version=version)

        # the core, fed the prediction log, fetches the profile once and compares windows with it
        store = Store(tmp_path / "state.db")
        core = MonitoringCore(
            store=store, profiles=ProfileCache(source=source, store=store),
            policies=Policies(DriftPolicy.model_validate({"window_records": 300, "window_seconds": 0})),
            metrics=MonitoringMetrics(ServiceMetrics("monitoring")), publisher=None,
        )
        projection = wire.projection()
        for batch in data.batches(model=model, version=version, n=900, batch_size=150):
            core.ingest(projection.FromString(batch.SerializeToString()), fallback_time=0.0)
        windows = core.history(model)[WindowKey(model, version, predictions_pb2.TRACK_CHAMPION)]
        assert [w.window.count for w in windows] == [300, 300, 300]
        assert all(not w.skipped_reason and w.scores for w in windows)
        assert store.profile(model, version) == profile.SerializeToString()  # kept for restarts
    finally:
        source.close()
