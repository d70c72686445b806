"""Kafka topics: one event family each, with the protobuf message every record of it carries.

Keys: the entity or model a record concerns (ordering is per key). Every topic has a dead-letter topic
`<topic>.dlq` for records its consumers could not decode.
"""

from __future__ import annotations

import logging

from google.protobuf.message import Message
from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from loopline.events.v1 import (
    drift_pb2,
    models_pb2,
    predictions_pb2,
    rollouts_pb2,
    training_jobs_pb2,
    workload_pb2,
)
from loopline_common.kafka_io import DLQ_SUFFIX

log = logging.getLogger(__name__)

WORKLOAD_EVENTS = "loopline.workload.events"
PREDICTIONS = "loopline.predictions"
MODELS = "loopline.models"
DRIFT = "loopline.drift"
TRAINING_JOBS = "loopline.training.jobs"
ROLLOUTS = "loopline.rollouts"

# topic -> (message type, what the key is)
TOPICS: dict[str, tuple[type[Message], str]] = {
    WORKLOAD_EVENTS: (workload_pb2.WorkloadEvent, "the event's primary entity key"),
    PREDICTIONS: (predictions_pb2.PredictionLogBatch, "model name"),
    MODELS: (models_pb2.ModelEvent, "model name"),
    DRIFT: (drift_pb2.DriftDetected, "model name"),
    TRAINING_JOBS: (training_jobs_pb2.TrainingJobChanged, "model name"),
    ROLLOUTS: (rollouts_pb2.RolloutDecision, "model name"),
}


def ensure_topics(
    bootstrap_servers: str, *, partitions: int = 3, replication_factor: int = 1, timeout_seconds: float = 10.0
) -> list[str]:
    """Create every Loopline topic and its dead-letter topic that does not exist yet; return those created."""
    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap_servers,
        client_id="loopline-topics",
        request_timeout_ms=int(timeout_seconds * 1000),
        bootstrap_timeout_ms=int(timeout_seconds * 1000),
    )
    try:
        existing = set(admin.list_topics())
        wanted = [name for topic in TOPICS for name in (topic, topic + DLQ_SUFFIX)]
        missing = [name for name in wanted if name not in existing]
        for name in missing:
            try:
                admin.create_topics([NewTopic(name, partitions, replication_factor)])
            except TopicAlreadyExistsError:  # created meanwhile by another process: fine
                continue
        return missing
    finally:
        admin.close()
