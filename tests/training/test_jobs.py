"""A LightGBM job and a torch job end to end in the embedded setting: the seeded training set → MLflow run
(params, per-iteration metrics, tags, evaluation report) → ONNX export → parity gate → reference profile
→ registered version with lineage in the real registry → TrainingJobChanged events; then drift on the
registered version retrains it by policy. Both jobs run at once on the shared service (the machine is
shared: one wait for both)."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import grpc
import numpy as np
import onnxruntime
import pandas as pd
import pytest
from kafka import KafkaProducer
from loopline_training import synthetic
from loopline_training.job.encoding import FeatureEncoding
from mlflow import MlflowClient

from loopline.events.v1 import drift_pb2, meta_pb2
from loopline.profiles.v1 import profile_pb2
from loopline.registry.v1 import registry_pb2, registry_pb2_grpc
from loopline.training.v1 import training_pb2 as pb
from loopline_common.kafka_io import CONTENT_TYPE_HEADER, content_type
from loopline_common.topics import DRIFT
from tests.helpers import Broker
from tests.training.conftest import READER_TOKEN
from tests.training.support import (
    JobEvents,
    TrainingProcess,
    final,
    make_spec,
    state_name,
    wait_for,
)

pytestmark = pytest.mark.slow

# The jobs train on the first 30 of the dataset's 40 days, which leaves newer labelled rows for the
# drift-triggered retraining to need.
TRAIN_DAYS = 30


class Finished:
    def __init__(self, lgbm: pb.Job, torch: pb.Job, watched: list[pb.Job], window: tuple[datetime, datetime]) -> None:
        self.jobs = {"lightgbm": lgbm, "torch_mlp": torch}
        self.watched = watched  # WatchJob messages of the LightGBM job, from submit to the end
        self.window = window


@pytest.fixture(scope="module")
def finished(training: TrainingProcess, dataset: tuple[Path, tuple[datetime, datetime]]) -> Finished:
    path, (start, _) = dataset
    window = (start, start + timedelta(days=TRAIN_DAYS))
    lgbm_spec = make_spec(path, window, family="lightgbm")
    lgbm_spec.make_challenger = True
    torch_spec = make_spec(path, window, family="torch_mlp")
    lgbm = training.grpc.submit(lgbm_spec)
    watched: list[pb.Job] = []
    watcher = threading.Thread(target=lambda: watched.extend(training.grpc.watch(lgbm.job_id, timeout=600)),
                               daemon=True)
    watcher.start()
    torch = training.http.submit(torch_spec)  # the HTTP mirror submits just the same
    done_lgbm = final(training.grpc, lgbm.job_id, timeout=600)
    done_torch = final(training.grpc, torch.job_id, timeout=600)
    watcher.join(30)
    return Finished(done_lgbm, done_torch, watched, window)


@pytest.fixture(scope="module")
def registry_stub(registry_target: str) -> Iterator[registry_pb2_grpc.RegistryServiceStub]:
    channel = grpc.insecure_channel(registry_target)
    yield registry_pb2_grpc.RegistryServiceStub(channel)
    channel.close()


def _meta() -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {READER_TOKEN}"),)


@pytest.mark.parametrize("family", ["lightgbm", "torch_mlp"])
def test_job_trains_evaluates_exports_and_registers(
    family: str, finished: Finished, mlflow_server: str, registry_stub: registry_pb2_grpc.RegistryServiceStub,
    dataset: tuple[Path, tuple[datetime, datetime]],
) -> None:
    job = finished.jobs[family]
    assert state_name(job) == "SUCCEEDED", job.error
    assert job.registered_version >= 1 and job.mlflow_run_id and job.logged_model_id
    assert job.attempt == 1 and job.stage == "done" and job.error == ""
    stamps = pd.read_parquet(dataset[0])[synthetic.TIMESTAMP]
    start, end = finished.window
    assert job.training_rows == int(((stamps >= start) & (stamps < end)).sum())
    assert len(job.training_set_hash) == 64
    assert 0.6 < job.metrics["roc_auc"] <= 1.0
    for name in ("pr_auc", "log_loss", "brier", "accuracy", "precision", "recall", "f1"):
        assert name in job.metrics

    # MLflow: params, tags, per-iteration history, evaluation report, parity, logged model.
    client = MlflowClient(mlflow_server)
    run = client.get_run(job.mlflow_run_id)
    assert run.info.status == "FINISHED"
    tags = run.data.tags
    assert tags["loopline.training_set_hash"] == job.training_set_hash
    assert tags["loopline.feature_service"] == "fraud_v1"
    assert tags["loopline.trigger"] == "manual"
    assert tags["loopline.code_version"].startswith("loopline-training")
    assert tags["loopline.onnx_parity"] == "passed"
    assert tags["loopline.registered_version"] == str(job.registered_version)
    params = run.data.params
    assert params["family"] == family and params["seed"] == "11" and params["label"] == "is_fraud"
    assert params["hp_num_threads"] == "1"
    assert run.data.metrics["onnx_parity_max_abs_diff"] <= 1e-5
    assert run.data.metrics["roc_auc"] == pytest.approx(job.metrics["roc_auc"])
    history_key = "early_stopping_binary_logloss" if family == "lightgbm" else "early_stopping_loss"
    history = client.get_metric_history(job.mlflow_run_id, history_key)
    assert len(history) >= 2
    assert sorted(m.step for m in history) == list(range(1, len(history) + 1))
    report = {a.path for a in client.list_artifacts(job.mlflow_run_id, "evaluation")}
    assert {"evaluation/evaluation.png", "evaluation/evaluation.json", "evaluation/report.md"} <= report
    model = client.get_logged_model(job.logged_model_id)
    assert model.source_run_id == job.mlflow_run_id

    # The registry: the version, its lineage, and its files (downloaded through the registry).
    version = registry_stub.GetVersion(
        registry_pb2.GetVersionRequest(model_name=job.spec.model_name, version=job.registered_version),
        metadata=_meta(), timeout=30).version
    assert version.lineage.run_id == job.mlflow_run_id
    assert version.lineage.training_set_hash == job.training_set_hash
    assert version.lineage.feature_service == "fraud_v1"
    assert version.lineage.trigger == "manual"
    assert version.lineage.code_version.startswith("loopline-training")
    assert version.onnx_parity_passed
    assert version.metrics["roc_auc"] == pytest.approx(job.metrics["roc_auc"])
    files_registered = {a.path for a in version.artifacts}
    assert {"model.onnx", "reference_profile.pb", "preprocessing.json", "MLmodel"} <= files_registered
    if family == "lightgbm":  # asked for make_challenger; the default policy has no gates to fail
        assert "challenger" in version.aliases

    def download(**what: object) -> bytes:
        request = registry_pb2.DownloadArtifactRequest(model_name=job.spec.model_name, version=job.registered_version,
                                                       **what)  # type: ignore[arg-type]
        parts = registry_stub.DownloadArtifact(request, metadata=_meta(), timeout=60)
        return b"".join(p.chunk for p in parts if p.WhichOneof("part") == "chunk")

    files = {
        "model": download(kind=registry_pb2.ARTIFACT_KIND_MODEL),
        "profile": download(kind=registry_pb2.ARTIFACT_KIND_REFERENCE_PROFILE),
        "preprocessing": download(path="preprocessing.json"),
    }

    # The reference profile (loopline.profiles.v1.ReferenceProfile): quantile bins with shares, moments and
    # a sample per numeric feature, category shares, and the prediction as the prediction log names it.
    profile = profile_pb2.ReferenceProfile.FromString(files["profile"])
    assert profile.model_name == job.spec.model_name and profile.training_set_hash == job.training_set_hash
    by_name = {f.name: f for f in profile.features}
    amount = by_name["amount"]
    assert amount.kind == profile_pb2.FEATURE_KIND_NUMERIC and amount.count == profile.row_count
    edges = list(amount.numeric.bin_edges)
    assert edges == sorted(edges) and len(amount.numeric.bin_fractions) == len(edges) - 1
    assert sum(amount.numeric.bin_fractions) == pytest.approx(1.0)
    assert len(amount.numeric.sample) == min(profile.row_count - amount.missing, 5000)
    distance = by_name["distance_from_home_km"]
    assert 0 < distance.missing < distance.count  # ~4 % have no home location
    category = by_name["merchant_category"]
    assert category.kind == profile_pb2.FEATURE_KIND_CATEGORICAL
    assert set(category.categorical.frequencies) == set(synthetic.CATEGORIES)
    assert sum(category.categorical.frequencies.values()) + category.categorical.other_fraction == pytest.approx(1)
    assert profile.prediction.name == "probabilities_1"
    assert 0.0 <= profile.prediction.numeric.min <= profile.prediction.numeric.max <= 1.0

    # The exported model runs in ONNX Runtime on raw rows encoded as preprocessing.json says.
    preprocessing = json.loads(files["preprocessing"])
    assert preprocessing["input"] == "input" and preprocessing["dtype"] == "float32"
    encoding = FeatureEncoding(
        features=[f["name"] for f in preprocessing["features"]],
        vocabularies={f["name"]: f["vocabulary"] for f in preprocessing["features"] if f["kind"] == "categorical"},
    )
    assert encoding.vocabularies["merchant_category"] == sorted(synthetic.CATEGORIES)
    # The profile carries the same vocabulary, so monitoring can read a logged code back as its label.
    assert list(category.categorical.input_vocabulary) == encoding.vocabularies["merchant_category"]
    frame = pd.read_parquet(dataset[0]).tail(200)
    session = onnxruntime.InferenceSession(files["model"], providers=["CPUExecutionProvider"])
    metadata = session.get_modelmeta().custom_metadata_map
    assert json.loads(metadata["loopline.feature_names"]) == encoding.features
    assert metadata["loopline.score_output"] == "probabilities"
    assert "loopline.entity_keys" not in metadata  # trained on a dataset file, not a feature service
    label, probabilities = session.run(["label", "probabilities"],
                                       {"input": encoding.matrix(frame).astype(np.float32)})
    assert probabilities.shape == (200, 2) and label.shape == (200,)
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_watch_streams_states_and_progress(finished: Finished) -> None:
    watched = finished.watched
    states = [state_name(j) for j in watched]
    assert states[-1] == "SUCCEEDED"
    assert "RUNNING" in states
    assert states.index("RUNNING") < len(states) - 1
    progress = [j.progress for j in watched if j.progress_total]
    assert progress, "no training progress was streamed"
    assert progress == sorted(progress) and progress[-1] > 0
    assert watched[-1].registered_version == finished.jobs["lightgbm"].registered_version
    assert "roc_auc" in watched[-1].metrics


def test_each_state_change_is_an_event_keyed_by_model(finished: Finished, job_events: JobEvents) -> None:
    job = finished.jobs["lightgbm"]

    def states() -> list[str] | None:
        names = [pb.Job(state=e.state) for e in job_events.of(job.job_id)]
        seen = [state_name(j) for j in names]
        return seen if seen and seen[-1] == "SUCCEEDED" else None

    seen = wait_for(states, timeout=30, what="the job's events")
    collapsed = [s for i, s in enumerate(seen) if i == 0 or s != seen[i - 1]]
    assert collapsed == ["PENDING", "RUNNING", "SUCCEEDED"]
    assert job_events.keys_of(job.job_id) == {job.spec.model_name.encode()}
    last = job_events.of(job.job_id)[-1]
    assert last.registered_version == job.registered_version and last.mlflow_run_id == job.mlflow_run_id
    assert last.family == "lightgbm" and last.trigger == "manual" and last.meta.producer == "training"
    assert any(e.progress > 0 for e in job_events.of(job.job_id))  # progress is published too


def _drift(model: str, version: int, event_id: str) -> drift_pb2.DriftDetected:
    event = drift_pb2.DriftDetected(
        meta=meta_pb2.EventMeta(event_id=event_id, producer="monitoring"), model_name=model, model_version=version,
        drifted_share=0.5, drifted_share_threshold=0.3,
        features=[
            drift_pb2.FeatureDrift(feature="amount", method="psi", score=0.31, threshold=0.2, drifted=True),
            drift_pb2.FeatureDrift(feature="hour_of_day", method="psi", score=0.05, threshold=0.2, drifted=False),
        ],
    )
    event.meta.occurred_at.GetCurrentTime()
    return event


def test_drift_on_the_registered_version_retrains_it_once(
    finished: Finished, training: TrainingProcess, broker: Broker, dataset: tuple[Path, tuple[datetime, datetime]],
) -> None:
    job = finished.jobs["lightgbm"]
    model, version = job.spec.model_name, job.registered_version
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap)

    def publish(event_id: str) -> None:
        event = _drift(model, version, event_id)
        producer.send(DRIFT, key=model.encode(), value=event.SerializeToString(),
                      headers=[(CONTENT_TYPE_HEADER, content_type(drift_pb2.DriftDetected))]).get(timeout=10)

    def decision(event_id: str) -> dict:  # type: ignore[type-arg]
        return training.process.wait_for_log(
            lambda r: r.get("message") == "drift decision" and r.get("event_id") == event_id, timeout=60)

    try:
        first = f"drift-{uuid.uuid4().hex[:8]}"
        publish(first)
        submitted = decision(first)
        assert submitted["decision"] == "submitted", submitted["reason"]
        retrain = training.grpc.list(model_name=model, trigger="drift").jobs
        assert len(retrain) == 1
        spec = retrain[0].spec
        assert spec.trigger == "drift" and spec.parent_version == version
        assert "amount (psi 0.31 > 0.2)" in spec.reason and "hour_of_day" not in spec.reason
        # Same window length, moved to end just after the newest labelled row of the data.
        newest = pd.read_parquet(dataset[0])[synthetic.TIMESTAMP].max().to_pydatetime()
        end = spec.window.end.ToDatetime(tzinfo=newest.tzinfo)
        assert end == newest + timedelta(microseconds=1)
        assert end - spec.window.start.ToDatetime(tzinfo=newest.tzinfo) == finished.window[1] - finished.window[0]
        assert spec.hyperparameters == job.spec.hyperparameters and spec.seed == job.spec.seed

        second = f"drift-{uuid.uuid4().hex[:8]}"
        publish(second)  # a job for the model is pending or running: no duplicate
        skipped = decision(second)
        assert skipped["decision"] == "skipped" and "already" in skipped["reason"]

        assert state_name(training.grpc.cancel(retrain[0].job_id, reason="test over")) in ("CANCELLED", "RUNNING")
        assert state_name(final(training.grpc, retrain[0].job_id, timeout=120)) == "CANCELLED"
        third = f"drift-{uuid.uuid4().hex[:8]}"
        publish(third)  # nothing runs now, but the model is in its cooldown
        cooled = decision(third)
        assert cooled["decision"] == "skipped" and "cooldown" in cooled["reason"]

        publish(first)  # a redelivered event is recognised, not acted on again
        training.process.wait_for_log(
            lambda r: r.get("message") == "drift event seen before" and r.get("event_id") == first, timeout=60)
        assert len(training.grpc.list(model_name=model, trigger="drift").jobs) == 1
    finally:
        producer.close()
