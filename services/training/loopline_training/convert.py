"""Between job records, API messages and events."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from google.protobuf.json_format import MessageToJson, Parse
from google.protobuf.timestamp_pb2 import Timestamp

from loopline.events.v1 import meta_pb2, training_jobs_pb2
from loopline.training.v1 import training_pb2 as pb
from loopline_training.store import JobRecord

PRODUCER = "training"

STATE_ENUM: dict[str, int] = {
    "PENDING": training_jobs_pb2.JOB_STATE_PENDING,
    "RUNNING": training_jobs_pb2.JOB_STATE_RUNNING,
    "SUCCEEDED": training_jobs_pb2.JOB_STATE_SUCCEEDED,
    "FAILED": training_jobs_pb2.JOB_STATE_FAILED,
    "CANCELLED": training_jobs_pb2.JOB_STATE_CANCELLED,
}
STATE_NAME: dict[int, str] = {v: k for k, v in STATE_ENUM.items()}


def spec_to_json(spec: pb.JobSpec) -> str:
    return MessageToJson(spec, preserving_proto_field_name=True, indent=None, sort_keys=True)


def spec_from_json(data: str) -> pb.JobSpec:
    return Parse(data, pb.JobSpec())


def timestamp(seconds: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(datetime.fromtimestamp(seconds, tz=UTC))
    return stamp


def job_message(record: JobRecord) -> pb.Job:
    job = pb.Job(
        job_id=record.job_id,
        spec=spec_from_json(record.spec),
        state=STATE_ENUM[record.state],  # type: ignore[arg-type]
        created_at=timestamp(record.created_at),
        updated_at=timestamp(record.updated_at),
        error=record.error,
        mlflow_run_id=record.mlflow_run_id,
        registered_version=record.registered_version,
        stage=record.stage,
        progress=record.progress,
        progress_total=record.progress_total,
        metrics=record.metrics,
        runner=record.runner,
        attempt=record.attempt,
        training_set_hash=record.training_set_hash,
        training_rows=record.training_rows,
        cancel_requested=record.cancel_requested,
        logged_model_id=record.logged_model_id,
    )
    if record.started_at is not None:
        job.started_at.CopyFrom(timestamp(record.started_at))
    if record.finished_at is not None:
        job.finished_at.CopyFrom(timestamp(record.finished_at))
    return job


def job_event(record: JobRecord, *, request_id: str = "") -> training_jobs_pb2.TrainingJobChanged:
    meta = meta_pb2.EventMeta(
        event_id=uuid.uuid4().hex, occurred_at=timestamp(record.updated_at), producer=PRODUCER, request_id=request_id
    )
    return training_jobs_pb2.TrainingJobChanged(
        meta=meta,
        job_id=record.job_id,
        model_name=record.model_name,
        family=record.family,
        state=STATE_ENUM[record.state],  # type: ignore[arg-type]
        trigger=record.trigger,
        reason=record.reason,
        progress=record.progress,
        metrics=record.metrics,
        mlflow_run_id=record.mlflow_run_id,
        registered_version=record.registered_version,
        error=record.error,
    )
