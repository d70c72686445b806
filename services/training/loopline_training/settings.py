"""Settings of the training service (`LOOPLINE_TRAINING_*`) and of the job it runs.

The service hands the job the part of its settings the job needs (`JobSettings`: where MLflow, the
features service and the registry are, the registry token, threads) as environment variables with the
same names, so one variable means the same thing to the service and to its jobs.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from loopline_common.settings import ServiceSettings
from loopline_common.topics import DRIFT, TRAINING_JOBS

ENV_PREFIX = "LOOPLINE_TRAINING_"


class JobSettings(BaseSettings):
    """What a training job reads from its environment."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    mlflow_uri: str = Field(description="MLflow tracking server URL, e.g. http://127.0.0.1:5000")
    registry_target: str = Field("", description="Registry gRPC address host:port (empty: jobs cannot register)")
    registry_token: SecretStr = Field(SecretStr(""), description="API token of role trainer for the registry")
    features_target: str = Field(
        "", description="Features gRPC address host:port; empty: no features service (dataset_uri jobs only)"
    )
    experiment_prefix: str = Field("loopline/", description="MLflow experiment of a model: <prefix><model name>")
    code_version: str = Field("", description="Version of the training code recorded in lineage (default: package "
                              "version and git commit when known)")
    features_timeout_seconds: float = Field(600.0, gt=0, description="Bound on GetHistoricalFeatures")
    registry_timeout_seconds: float = Field(60.0, gt=0, description="Bound on RegisterVersion")
    mlflow_timeout_seconds: float = Field(30.0, gt=0, description="Bound on each MLflow request")
    mlflow_max_retries: int = Field(2, ge=0, le=10, description="Retries of a failed MLflow request")
    metrics_flush_seconds: float = Field(
        2.0, gt=0, description="How often buffered per-iteration metrics go to MLflow (one log_batch per flush)"
    )
    metrics_batch_size: int = Field(
        250, ge=1, le=1000, description="A log_batch goes as soon as this many metrics wait, not only on the "
        "flush timer, so that closing the run has little left to send"
    )


class TrainingSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    store_url: str = Field(
        description="Job store (SQLAlchemy URL): sqlite:////path/training.db embedded, "
        "postgresql+psycopg://user@host/db in a cluster"
    )
    kafka_bootstrap: str = Field(description="Kafka bootstrap servers, host:port[,host:port]")
    mlflow_uri: str = Field(description="MLflow tracking server URL, handed to jobs")
    registry_target: str = Field(
        "", description="Registry gRPC address host:port, handed to jobs; empty: jobs log their model to MLflow "
        "and then fail, saying that no registry is configured"
    )
    registry_token: SecretStr = Field(SecretStr(""), description="Registry API token (role trainer), handed to jobs")
    features_target: str = Field(
        "", description="Features gRPC address host:port; empty: no features service (dataset_uri jobs only)"
    )
    runner: Literal["embedded", "kubernetes"] = Field("embedded", description="Where jobs run")
    max_concurrent_jobs: int = Field(1, ge=1, le=256, description="Jobs running at once (embedded runner)")
    job_threads: int = Field(1, ge=1, le=64, description="Default CPU threads of a job (num_threads)")
    work_dir: str = Field("training-jobs", description="Embedded runner: folder of each job's spec, log and result")
    job_python: str = Field("", description="Embedded runner: interpreter that runs jobs (default: this one)")
    max_attempts: int = Field(
        2, ge=1, le=10, description="Runs of a job at most: one whose process was lost is re-queued until then"
    )
    cancel_grace_seconds: float = Field(10.0, ge=0, description="Between SIGTERM and SIGKILL of a cancelled job")
    features_timeout_seconds: float = Field(10.0, gt=0, description="Bound on the feature-service check at submit")
    jobs_topic: str = Field(TRAINING_JOBS, description="Topic of TrainingJobChanged events")
    progress_event_seconds: float = Field(
        1.0, ge=0, description="At most one progress event per job this often (state changes are always sent)"
    )
    instance_id: str = Field("", description="Stable name of this replica (default: the host name)")
    code_version: str = Field("", description="Handed to jobs as their code version (default: package and git)")
    # Drift-triggered retraining.
    drift_enabled: bool = Field(True, description="Consume DriftDetected and retrain by policy")
    drift_topic: str = Field(DRIFT, description="Topic of DriftDetected events")
    drift_group_id: str = Field("loopline-training-drift", description="Consumer group of the drift consumer")
    drift_cooldown_seconds: float = Field(
        3600.0, ge=0, description="No drift-triggered job for a model sooner than this after its last one"
    )
    drift_min_new_rows: int = Field(
        1000, ge=0, description="Labelled rows newer than the last training window a retrain needs"
    )
    # Kubernetes runner.
    kubernetes_namespace: str = Field("default", description="Namespace of the training Jobs")
    kubernetes_image: str = Field("ghcr.io/loopline/loopline-training:0.1.0", description="Image of a training Job")
    kubernetes_service_account: str = Field("loopline-training-job", description="Service account of a Job's pod")
    kubernetes_cpu_request: str = Field("1", description="CPU request of a Job's container")
    kubernetes_cpu_limit: str = Field("2", description="CPU limit of a Job's container")
    kubernetes_memory_request: str = Field("2Gi", description="Memory request of a Job's container")
    kubernetes_memory_limit: str = Field("4Gi", description="Memory limit of a Job's container")
    kubernetes_backoff_limit: int = Field(0, ge=0, le=10, description="Pod retries of a Job (0: the service retries)")
    kubernetes_ttl_seconds: int = Field(86400, ge=0, description="ttlSecondsAfterFinished of a Job")
    kubernetes_active_deadline_seconds: int = Field(21600, gt=0, description="activeDeadlineSeconds of a Job")
    kubernetes_token_secret: str = Field(
        "loopline-training-registry-token", description="Secret (key `token`) holding the registry token for Jobs"
    )
    kubernetes_instance: str = Field(
        "", description="app.kubernetes.io/instance label of the Jobs (the Helm release); empty: none"
    )
    kubernetes_api_url: str = Field(
        "", description="Kubernetes API URL without auth (tests, kubectl proxy); empty: kubeconfig or in-cluster"
    )
    kubeconfig: str = Field("", description="kubeconfig file; empty and no API URL: the in-cluster service account")
