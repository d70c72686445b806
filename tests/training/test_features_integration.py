"""The training path through the real features service (started from its own environment, .venvs/features,
on the seeded demo history its own generator writes): the feature service is checked at submit, the
training set comes from GetHistoricalFeatures (point-in-time join, parquet, content hash), the model's
inputs are the feature service's features, and the lineage in the registry names both."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import grpc
import onnx
import pytest
from mlflow import MlflowClient

from loopline.features.v1 import features_pb2, features_pb2_grpc
from loopline.registry.v1 import registry_pb2, registry_pb2_grpc
from loopline.training.v1 import training_pb2 as pb
from tests.helpers import REPO, start_process
from tests.training.conftest import READER_TOKEN
from tests.training.support import ApiError, TrainingProcess, final, state_name

pytestmark = pytest.mark.slow
FEATURES_PYTHON = REPO / ".venvs" / "features" / "bin" / "python"


@dataclass
class Deployed:
    training: TrainingProcess
    features_target: str
    transactions: Path
    window: tuple[datetime, datetime]
    training_sets: Path


@pytest.fixture(scope="module")
def deployed(
    training_factory: Callable[..., TrainingProcess], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployed]:
    data = tmp_path_factory.mktemp("features-data")
    generated = subprocess.run(
        [str(FEATURES_PYTHON), "-m", "loopline_features.demo_cli", "history", "--repo-dir", str(REPO / "feature_repo"),
         "--data-dir", str(data), "--days", "10", "--customers", "300", "--merchants", "60", "--seed", "7"],
        capture_output=True, text=True, timeout=300, check=False, cwd=REPO,
    )
    assert generated.returncode == 0, generated.stderr[-3000:]
    summary = json.loads(generated.stdout.strip().splitlines()[-1])
    features = start_process([str(FEATURES_PYTHON), "-m", "loopline_features"], {
        "LOOPLINE_FEATURES_HTTP_PORT": "0", "LOOPLINE_FEATURES_GRPC_PORT": "0",
        "LOOPLINE_FEATURES_REPO_DIR": str(REPO / "feature_repo"), "LOOPLINE_FEATURES_DATA_DIR": str(data),
        "LOOPLINE_FEATURES_ENVIRONMENT": "embedded", "LOOPLINE_FEATURES_SHUTDOWN_GRACE_SECONDS": "2",
    })
    try:
        serving = features.wait_for_log(lambda r: r.get("message") == "serving", timeout=300)
        target = f"127.0.0.1:{serving['grpc_port']}"
        training = training_factory(LOOPLINE_TRAINING_FEATURES_TARGET=target,
                                    LOOPLINE_TRAINING_DRIFT_ENABLED="false")
        window = (datetime.fromisoformat(summary["start"]), datetime.fromisoformat(summary["end"]))
        yield Deployed(training, target, data / "offline" / "transactions.parquet", window, data / "training-sets")
    finally:
        features.stop()


def _spec(deployed: Deployed, feature_service: str = "fraud_v1") -> pb.JobSpec:
    spec = pb.JobSpec(model_name="fraud-features", family="lightgbm", feature_service=feature_service,
                      label="is_fraud", entity_uri=str(deployed.transactions), seed=5, reason="features integration",
                      hyperparameters={"num_boost_round": "80", "num_leaves": "15", "min_child_samples": "10"})
    spec.window.start.FromDatetime(deployed.window[0])
    spec.window.end.FromDatetime(deployed.window[1])
    return spec


def test_an_unknown_feature_service_is_refused(deployed: Deployed) -> None:
    for jobs in (deployed.training.grpc, deployed.training.http):
        with pytest.raises(ApiError) as caught:
            jobs.submit(_spec(deployed, feature_service="fraud_v9"))
        assert caught.value.code == "INVALID_ARGUMENT"
        assert "unknown feature service 'fraud_v9'" in caught.value.message
        assert "spec.feature_service" in caught.value.details


def test_a_job_trains_on_the_training_set_of_the_features_service(
    deployed: Deployed, mlflow_server: str, registry_target: str
) -> None:
    job = deployed.training.grpc.submit(_spec(deployed))
    done = final(deployed.training.grpc, job.job_id, timeout=600)
    assert state_name(done) == "SUCCEEDED", done.error
    # The training set the features service wrote is named by its content hash, which the job recorded.
    written = list(deployed.training_sets.glob("*/*.parquet"))
    assert [p.stem for p in written] == [done.training_set_hash[:16]]
    assert done.training_rows > 1000

    channel = grpc.insecure_channel(deployed.features_target)
    contract = features_pb2_grpc.FeaturesServiceStub(channel).GetFeatureService(
        features_pb2.GetFeatureServiceRequest(name="fraud_v1"), timeout=30).feature_service
    channel.close()
    run = MlflowClient(mlflow_server).get_run(done.mlflow_run_id)
    assert run.data.tags["loopline.training_set_hash"] == done.training_set_hash
    assert set(run.data.params["features"].split(",")) == {f.name for f in contract.features}

    channel = grpc.insecure_channel(registry_target)
    stub = registry_pb2_grpc.RegistryServiceStub(channel)
    metadata = (("authorization", f"Bearer {READER_TOKEN}"),)
    version = stub.GetVersion(registry_pb2.GetVersionRequest(model_name="fraud-features",
                                                             version=done.registered_version),
                              metadata=metadata, timeout=30).version
    assert version.lineage.feature_service == "fraud_v1"
    assert version.lineage.training_set_hash == done.training_set_hash
    chunks = stub.DownloadArtifact(registry_pb2.DownloadArtifactRequest(
        model_name="fraud-features", version=done.registered_version, path="preprocessing.json"),
        metadata=metadata, timeout=60)
    preprocessing = json.loads(b"".join(c.chunk for c in chunks if c.WhichOneof("part") == "chunk"))
    assert {f["name"] for f in preprocessing["features"]} == {f.name for f in contract.features}
    # Serving reads how to enrich a request from the model itself.
    chunks = stub.DownloadArtifact(registry_pb2.DownloadArtifactRequest(
        model_name="fraud-features", version=done.registered_version, kind=registry_pb2.ARTIFACT_KIND_MODEL),
        metadata=metadata, timeout=60)
    model = onnx.load_from_string(b"".join(c.chunk for c in chunks if c.WhichOneof("part") == "chunk"))
    props = {p.key: p.value for p in model.metadata_props}
    assert props["loopline.feature_service"] == "fraud_v1"
    assert set(json.loads(props["loopline.entity_keys"])) == {"customer_id", "merchant_id"}
    assert json.loads(props["loopline.feature_names"]) == [f["name"] for f in preprocessing["features"]]
    channel.close()
