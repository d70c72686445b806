"""What training leaves in MLflow before it registers a version: a run with metrics and params, and a
logged model holding model.onnx, the reference profile and an MLmodel file with a signature. Made with
MLflow's own client against the real server."""

from __future__ import annotations

import hashlib
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from mlflow import MlflowClient

EXPERIMENT = "registry-tests"
MLMODEL = """\
artifact_path: model
flavors:
  onnx:
    onnx_version: 1.17.0
signature:
  inputs: '[{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 4]}}]'
  outputs: '[{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 1]}}]'
"""


@dataclass(frozen=True)
class Seeded:
    run_id: str
    logged_model_id: str
    model_bytes: bytes
    profile_bytes: bytes

    @property
    def model_sha256(self) -> str:
        return hashlib.sha256(self.model_bytes).hexdigest()


def unique(prefix: str = "m") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def make_run(
    mlflow_uri: str, *, metrics: dict[str, float] | None = None, logged_model: bool = True, size: int = 200_000
) -> Seeded:
    """A finished run with `metrics` and a model; `logged_model=False` logs the files under the run's
    artifact path "model" instead of as an MLflow 3 logged model."""
    client = MlflowClient(mlflow_uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(EXPERIMENT)
    run = client.create_run(experiment_id)
    run_id = run.info.run_id
    for key, value in (metrics or {"roc_auc": 0.85, "log_loss": 0.30}).items():
        client.log_metric(run_id, key, value)
    client.log_param(run_id, "learning_rate", "0.05")
    model_bytes = uuid.uuid4().bytes * (size // 16)  # distinct content per run
    profile_bytes = b'{"features": {"amount": {"mean": 42.0}}}'
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "model.onnx").write_bytes(model_bytes)
        (folder / "reference_profile.pb").write_bytes(profile_bytes)
        (folder / "MLmodel").write_text(MLMODEL)
        model_id = ""
        if logged_model:
            model = client.create_logged_model(experiment_id=experiment_id, name="model", source_run_id=run_id)
            client.log_model_artifacts(model.model_id, str(folder))
            client.finalize_logged_model(model.model_id, "READY")
            model_id = model.model_id
        else:
            client.log_artifacts(run_id, str(folder), "model")
    client.set_terminated(run_id)
    return Seeded(run_id, model_id, model_bytes, profile_bytes)
