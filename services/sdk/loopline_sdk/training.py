"""Training jobs (TrainingService): submit, get, list, cancel, watch."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import grpc

from loopline.events.v1 import training_jobs_pb2
from loopline.training.v1 import training_pb2 as pb
from loopline.training.v1 import training_pb2_grpc as pb_grpc
from loopline_common.grpc_client import error_from_rpc
from loopline_sdk._base import BaseClient, stamp, when

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})


def _state(value: int) -> str:
    return str(training_jobs_pb2.JobState.Name(value)).removeprefix("JOB_STATE_").lower()


@dataclass(frozen=True)
class Job:
    job_id: str
    model_name: str
    family: str
    state: str  # pending | running | succeeded | failed | cancelled
    stage: str
    trigger: str
    reason: str
    progress: int
    progress_total: int
    metrics: dict[str, float]
    registered_version: int
    mlflow_run_id: str
    training_rows: int
    training_set_hash: str
    error: str
    created_at: datetime | None
    finished_at: datetime | None
    parent_version: int

    @property
    def done(self) -> bool:
        return self.state in TERMINAL

    @classmethod
    def from_proto(cls, j: pb.Job) -> Job:
        return cls(job_id=j.job_id, model_name=j.spec.model_name, family=j.spec.family, state=_state(j.state),
                   stage=j.stage, trigger=j.spec.trigger, reason=j.spec.reason, progress=j.progress,
                   progress_total=j.progress_total, metrics=dict(j.metrics), registered_version=j.registered_version,
                   mlflow_run_id=j.mlflow_run_id, training_rows=j.training_rows,
                   training_set_hash=j.training_set_hash, error=j.error,
                   created_at=when(j.created_at, j.HasField("created_at")),
                   finished_at=when(j.finished_at, j.HasField("finished_at")),
                   parent_version=j.spec.parent_version)


@dataclass(frozen=True)
class JobSpec:
    """What to train; the fields a data scientist usually sets (see docs/training.md for the rest)."""

    model_name: str
    family: str  # lightgbm | torch_mlp
    feature_service: str
    label: str
    entity_uri: str = ""
    dataset_uri: str = ""
    window_start: datetime | None = None
    window_end: datetime | None = None
    holdout_fraction: float = 0.0
    early_stopping_fraction: float = 0.0
    hyperparameters: dict[str, str] | None = None
    seed: int = 0
    reason: str = ""
    make_challenger: bool = False
    parent_version: int = 0
    exclude_columns: tuple[str, ...] = ()

    def to_proto(self) -> pb.JobSpec:
        spec = pb.JobSpec(model_name=self.model_name, family=self.family, feature_service=self.feature_service,
                          label=self.label, entity_uri=self.entity_uri, dataset_uri=self.dataset_uri,
                          hyperparameters=self.hyperparameters or {}, seed=self.seed, reason=self.reason,
                          make_challenger=self.make_challenger, parent_version=self.parent_version,
                          exclude_columns=list(self.exclude_columns))
        if self.window_start is not None:
            spec.window.start.CopyFrom(stamp(self.window_start))
        if self.window_end is not None:
            spec.window.end.CopyFrom(stamp(self.window_end))
        if self.holdout_fraction:
            spec.validation.time_holdout.holdout_fraction = self.holdout_fraction
        if self.early_stopping_fraction:
            spec.validation.time_holdout.early_stopping_fraction = self.early_stopping_fraction
        return spec


class TrainingClient(BaseClient):
    service = "training"

    def _stub(self, channel: Any) -> Any:
        return pb_grpc.TrainingServiceStub(channel)  # type: ignore[no-untyped-call]

    def submit(self, spec: JobSpec | pb.JobSpec, *, idempotency_key: str = "") -> Job:
        """Queue a job. With an idempotency key the call is retried safely (the server returns the same job)."""
        message = spec.to_proto() if isinstance(spec, JobSpec) else spec
        reply = self._write("SubmitJob", pb.SubmitJobRequest(spec=message, idempotency_key=idempotency_key),
                            idempotent=bool(idempotency_key))
        return Job.from_proto(reply.job)

    def get(self, job_id: str) -> Job:
        return Job.from_proto(self._read("GetJob", pb.GetJobRequest(job_id=job_id)).job)

    def list(self, *, model: str = "", trigger: str = "", limit: int = 50) -> list[Job]:
        """Jobs, newest first."""
        reply = self._read("ListJobs", pb.ListJobsRequest(model_name=model, trigger=trigger, page_size=limit))
        return [Job.from_proto(j) for j in reply.jobs]

    def cancel(self, job_id: str, *, reason: str = "") -> Job:
        return Job.from_proto(self._write("CancelJob", pb.CancelJobRequest(job_id=job_id, reason=reason),
                                          idempotent=True).job)

    def watch(self, job_id: str, *, timeout: float | None = None) -> Iterator[Job]:
        """The job now and at each change until it finishes (a server stream; not retried)."""
        try:
            for message in self.stub.WatchJob(pb.WatchJobRequest(job_id=job_id), timeout=timeout,
                                              metadata=self.client._metadata()):
                yield Job.from_proto(message.job)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, service=self.service) from None
