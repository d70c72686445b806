"""Running the monitoring service as a real process for the tests, and talking to it and to the broker."""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
import httpx
from google.protobuf.message import Message
from kafka import KafkaAdminClient, KafkaConsumer
from kafka.admin import NewTopic
from kafka.structs import TopicPartition

from loopline.monitoring.v1 import monitoring_pb2_grpc
from loopline.profiles.v1 import profile_pb2
from loopline_common.kafka_io import EventProducer
from loopline_common.metrics import ServiceMetrics
from tests.helpers import RunningProcess, start_process

T = TypeVar("T")


def wait_until(check: Callable[[], T | None], *, timeout: float = 60.0, what: str = "condition") -> T:
    """Poll `check` until it returns something truthy (returned), or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except Exception as exc:  # not there yet (e.g. NOT_FOUND before the first window)
            last = exc
        else:
            if last:
                return last
        time.sleep(0.05)
    raise AssertionError(f"{what} not reached within {timeout}s (last: {last!r})")


@dataclass
class Topics:
    predictions: str
    drift: str

    @classmethod
    def create(cls, bootstrap: str, *, partitions: int = 2) -> Topics:
        prefix = f"mon-{uuid.uuid4().hex[:8]}"
        topics = cls(predictions=f"{prefix}.predictions", drift=f"{prefix}.drift")
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="monitoring-tests")
        try:
            admin.create_topics([
                NewTopic(name, partitions, 1)
                for name in (topics.predictions, topics.predictions + ".dlq", topics.drift)
            ])
        finally:
            admin.close()
        return topics


def write_profile(folder: Path, profile: profile_pb2.ReferenceProfile) -> None:
    path = folder / profile.model_name / str(profile.model_version) / "reference_profile.pb"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(profile.SerializeToString())


class Monitoring:
    """A monitoring process with a gRPC stub and an HTTP client."""

    def __init__(self, process: RunningProcess, http_port: int, grpc_port: int) -> None:
        self.process = process
        self.http_url = f"http://127.0.0.1:{http_port}"
        self.grpc_target = f"127.0.0.1:{grpc_port}"
        self.channel = grpc.insecure_channel(self.grpc_target)
        self.stub = monitoring_pb2_grpc.MonitoringServiceStub(self.channel)  # type: ignore[no-untyped-call]
        self.http = httpx.Client(base_url=self.http_url, timeout=30)

    def metric(self, name: str, **labels: str) -> float:
        """The value of one sample of /metrics (0 if absent)."""
        wanted = {f'{k}="{v}"' for k, v in labels.items()}
        for line in self.http.get("/metrics").text.splitlines():
            if not line.startswith(name + "{") and not line.startswith(name + " "):
                continue
            head, _, value = line.rpartition(" ")
            inside = head[len(name):].strip("{}")
            if wanted <= set(inside.split(",")) if inside else not wanted:
                return float(value)
        return 0.0

    def close(self) -> int:
        self.channel.close()
        self.http.close()
        return self.process.stop()


def start_monitoring(env: dict[str, str], *, ready: bool = True) -> Monitoring:
    process = start_process(
        [sys.executable, "-m", "loopline_monitoring"],
        {
            "LOOPLINE_MONITORING_HTTP_PORT": "0",
            "LOOPLINE_MONITORING_GRPC_PORT": "0",
            "LOOPLINE_MONITORING_READINESS_INTERVAL_SECONDS": "0.2",
            "LOOPLINE_MONITORING_SHUTDOWN_GRACE_SECONDS": "1",
            "LOOPLINE_MONITORING_TICK_SECONDS": "0.2",
            "LOOPLINE_MONITORING_MAX_POLL_INTERVAL_MS": "10000",
            **env,
        },
    )
    try:
        serving = process.wait_for_log(lambda r: r.get("message") == "serving", timeout=60)
    except TimeoutError:
        process.stop()
        raise
    monitoring = Monitoring(process, int(serving["http_port"]), int(serving["grpc_port"]))
    if ready:
        try:
            wait_until(lambda: monitoring.http.get("/readyz").status_code == 200, timeout=60, what="readiness")
        except AssertionError as exc:
            monitoring.close()
            raise AssertionError(f"{exc}; its output:\n{process.output()[-4000:]}") from None
    return monitoring


def producer(bootstrap: str) -> EventProducer:
    return EventProducer(bootstrap_servers=bootstrap, metrics=ServiceMetrics("monitoring-tests"), client_id="tests")


def publish(bootstrap: str, topic: str, batches: Iterable[Message], *, key: str) -> int:
    events = producer(bootstrap)
    count = 0
    try:
        for batch in batches:
            assert events.publish(topic, batch, key=key)
            count += 1
        assert events.flush(30)
    finally:
        events.close()
    return count


def read_all(bootstrap: str, topic: str) -> list[Any]:
    """Every record of `topic` up to its current end."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=2000)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        records: list[Any] = []
        deadline = time.monotonic() + 30
        while any(consumer.position(tp) < ends[tp] for tp in partitions):
            if time.monotonic() > deadline:
                raise AssertionError(f"could not read {topic} to its end")
            for batch in consumer.poll(timeout_ms=500).values():
                records += batch
        return records
    finally:
        consumer.close()
