"""Kafka I/O against a real Kafka-wire broker (noida-db): groups, commit-after-process, dead letters,
and a producer that never blocks its caller while the broker is down."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.structs import TopicPartition

from loopline.events.v1 import meta_pb2, models_pb2
from loopline_common.kafka_io import CONTENT_TYPE_HEADER, ConsumerLoop, EventProducer, PoisonMessage, content_type
from loopline_common.metrics import ServiceMetrics
from loopline_common.topics import TOPICS, ensure_topics
from tests.helpers import Broker, free_port

DEADLINE = 30.0


def _event(i: int) -> models_pb2.ModelEvent:
    return models_pb2.ModelEvent(
        registered=models_pb2.ModelRegistered(
            meta=meta_pb2.EventMeta(event_id=f"e-{i}", producer="test"), model_name="fraud", version=i
        )
    )


def _topic(broker: Broker, partitions: int = 1) -> str:
    name = f"t-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    admin.create_topics([NewTopic(name, partitions, 1), NewTopic(name + ".dlq", 1, 1)])
    admin.close()
    return name


def _wait_until(condition: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _committed(broker: Broker, group: str, topic: str, partition: int = 0) -> int | None:
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=group, enable_auto_commit=False)
    try:
        return consumer.committed(TopicPartition(topic, partition))
    finally:
        consumer.close()


class Collector:
    """A handler that records what it saw; it can fail on chosen versions a given number of times."""

    def __init__(self, fail: dict[int, int] | None = None, poison: set[int] | None = None) -> None:
        self.seen: list[int] = []
        self.fail = dict(fail or {})
        self.poison = poison or set()
        self.lock = threading.Lock()

    def __call__(self, message: models_pb2.ModelEvent, record) -> None:  # type: ignore[no-untyped-def]
        version = message.registered.version
        if version in self.poison:
            raise PoisonMessage(f"version {version} is not acceptable")
        if self.fail.get(version, 0) > 0:
            self.fail[version] -= 1
            raise RuntimeError(f"transient failure on {version}")
        with self.lock:
            self.seen.append(version)


@pytest.fixture
def run_consumer(broker: Broker) -> Iterator[Callable[..., ConsumerLoop]]:
    loops: list[ConsumerLoop] = []

    def start(topic: str, group: str, handler: Collector) -> ConsumerLoop:
        loop = ConsumerLoop(
            bootstrap_servers=broker.bootstrap, group_id=group, topics=[topic],
            message_type=models_pb2.ModelEvent, handler=handler, metrics=ServiceMetrics(f"c{len(loops)}"),
            client_id=f"test-{group}", retry_backoff_seconds=0.1, max_poll_interval_ms=10_000,
            session_timeout_ms=6_000,
        )
        loop.start()
        loops.append(loop)
        return loop

    yield start
    for loop in loops:
        loop.stop()


def test_produce_and_consume_in_a_group_with_commits(broker: Broker, run_consumer) -> None:  # type: ignore[no-untyped-def]
    topic = _topic(broker, partitions=3)
    metrics = ServiceMetrics("producer")
    producer = EventProducer(bootstrap_servers=broker.bootstrap, metrics=metrics, client_id="p1")
    for i in range(30):
        assert producer.publish(topic, _event(i), key=f"model-{i % 5}")
    assert producer.flush(DEADLINE)

    collector = Collector()
    run_consumer(topic, "g-basic", collector)
    _wait_until(lambda: len(collector.seen) >= 30, "30 records")
    assert sorted(collector.seen) == list(range(30))
    # Same key, same partition, in order.
    by_key: dict[int, list[int]] = {}
    for v in collector.seen:
        by_key.setdefault(v % 5, []).append(v)
    assert all(vs == sorted(vs) for vs in by_key.values())
    text = metrics.exposition().decode()
    assert f'loopline_producer_kafka_produced_total{{topic="{topic}"}} 30.0' in text
    producer.close()


def test_failed_handler_is_retried_and_nothing_is_committed_past_it(broker: Broker, run_consumer) -> None:  # type: ignore[no-untyped-def]
    topic = _topic(broker)
    producer = EventProducer(bootstrap_servers=broker.bootstrap, metrics=ServiceMetrics("p2"), client_id="p2")
    for i in range(6):
        producer.publish(topic, _event(i), key="m")
    assert producer.flush(DEADLINE)
    producer.close()

    # A handler that always fails on record 3: the group's committed offset must stop at 3.
    stuck = Collector(fail={3: 10**6})
    loop = run_consumer(topic, "g-retry", stuck)
    _wait_until(lambda: stuck.seen == [0, 1, 2] and stuck.fail[3] < 10**6 - 2, "retries of record 3")
    loop.stop()
    assert _committed(broker, "g-retry", topic) == 3

    # The next member of the group resumes exactly there: 3 once it succeeds, then the rest.
    resumed = Collector(fail={3: 2})
    run_consumer(topic, "g-retry", resumed)
    _wait_until(lambda: len(resumed.seen) >= 3, "records 3..5")
    assert resumed.seen == [3, 4, 5]
    _wait_until(lambda: _committed(broker, "g-retry", topic) == 6, "commit of offset 6")


def test_poison_records_go_to_the_dead_letter_topic_and_the_partition_moves_on(broker: Broker, run_consumer) -> None:  # type: ignore[no-untyped-def]
    topic = _topic(broker)
    raw = KafkaProducer(bootstrap_servers=broker.bootstrap)
    good = [(CONTENT_TYPE_HEADER, content_type(models_pb2.ModelEvent))]
    raw.send(topic, key=b"m", value=_event(0).SerializeToString(), headers=good)
    raw.send(topic, key=b"m", value=b"\x0a\xff", headers=good)  # truncated: does not parse
    raw.send(topic, key=b"m", value=_event(2).SerializeToString())  # no content-type
    raw.send(topic, key=b"m", value=_event(3).SerializeToString(),
             headers=[(CONTENT_TYPE_HEADER, b"application/x-protobuf; messageType=other.Type")])
    raw.send(topic, key=b"m", value=_event(4).SerializeToString(), headers=good)  # handler rejects it
    raw.send(topic, key=b"m", value=_event(5).SerializeToString(), headers=good)
    raw.flush()
    raw.close()

    collector = Collector(poison={4})
    run_consumer(topic, "g-poison", collector)
    _wait_until(lambda: collector.seen == [0, 5], "the good records")
    _wait_until(lambda: _committed(broker, "g-poison", topic) == 6, "commit past the poison")

    dlq = KafkaConsumer(
        topic + ".dlq", bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest",
        consumer_timeout_ms=int(DEADLINE * 1000), group_id="dlq-reader",
    )
    dead = []
    for record in dlq:
        dead.append(record)
        if len(dead) == 4:
            break
    dlq.close()
    reasons = [dict(r.headers)["loopline-dlq-reason"] for r in dead]
    sources = [dict(r.headers)["loopline-dlq-source"].decode() for r in dead]
    assert reasons == [b"undecodable", b"wrong_type", b"wrong_type", b"rejected"]
    assert sources == [f"{topic}/0/{i}" for i in (1, 2, 3, 4)]
    assert dead[0].value == b"\x0a\xff"  # forwarded untouched


def test_producer_never_blocks_while_the_broker_is_down_and_delivers_what_it_kept(tmp_path: Path) -> None:
    broker = Broker(data_dir=tmp_path / "late-broker", port=free_port())
    metrics = ServiceMetrics("offline")
    producer = EventProducer(
        bootstrap_servers=broker.bootstrap, metrics=metrics, client_id="offline", max_buffered=50,
    )
    topic = "late.topic"
    accepted = [producer.publish(topic, _event(i), key="m") for i in range(500)]
    kept = sum(accepted)
    # The buffer (plus the one record the sender thread holds) bounds what is kept; the rest is dropped
    # at once and counted, instead of blocking the caller.
    assert 50 <= kept <= 51
    assert accepted[:50] == [True] * 50
    dropped = metrics.registry.get_sample_value(
        "loopline_offline_kafka_dropped_total", {"topic": topic, "reason": "buffer_full"}
    )
    assert dropped == 500 - kept

    broker.start()
    try:
        ensure_admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
        ensure_admin.create_topics([NewTopic(topic, 1, 1)])
        ensure_admin.close()
        assert producer.flush(60)
        consumer = KafkaConsumer(
            topic, bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest",
            consumer_timeout_ms=int(DEADLINE * 1000), group_id="late-reader",
        )
        versions = []
        for record in consumer:
            versions.append(models_pb2.ModelEvent.FromString(record.value).registered.version)
            if len(versions) == kept:
                break
        consumer.close()
        assert versions == [i for i, ok in enumerate(accepted) if ok]
    finally:
        producer.close()
        broker.stop()


def test_ensure_topics_creates_every_family_and_its_dead_letter_topic(broker: Broker) -> None:
    ensure_topics(broker.bootstrap)
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    existing = set(admin.list_topics())
    admin.close()
    assert {name for t in TOPICS for name in (t, t + ".dlq")} <= existing
    assert ensure_topics(broker.bootstrap) == []  # idempotent


def test_consumer_waits_for_the_broker_and_survives_its_restart(tmp_path: Path) -> None:
    broker = Broker(data_dir=tmp_path / "flaky-broker", port=free_port())
    topic = "restart.topic"
    collector = Collector()
    loop = ConsumerLoop(
        bootstrap_servers=broker.bootstrap, group_id="g-restart", topics=[topic],
        message_type=models_pb2.ModelEvent, handler=collector, metrics=ServiceMetrics("restart"),
        client_id="restart", retry_backoff_seconds=0.2, max_poll_interval_ms=10_000, session_timeout_ms=6_000,
    )
    loop.start()  # no broker yet: the loop keeps trying instead of dying
    producer = None
    try:
        broker.start()
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
        admin.create_topics([NewTopic(topic, 1, 1), NewTopic(topic + ".dlq", 1, 1)])
        admin.close()
        producer = EventProducer(bootstrap_servers=broker.bootstrap, metrics=ServiceMetrics("rp"), client_id="rp")
        for i in range(5):
            producer.publish(topic, _event(i), key="m")
        _wait_until(lambda: sorted(set(collector.seen)) == list(range(5)), "records before the restart")

        broker.stop()
        broker.start()  # same data folder: offsets and committed positions survive
        for i in range(5, 10):
            producer.publish(topic, _event(i), key="m")
        _wait_until(lambda: sorted(set(collector.seen)) == list(range(10)), "records after the restart", 60)
    finally:
        loop.stop()
        if producer is not None:
            producer.close(timeout=5)
        broker.stop()


def test_producer_stays_bounded_and_non_blocking_when_the_broker_dies(tmp_path: Path) -> None:
    broker = Broker(data_dir=tmp_path / "dying-broker", port=free_port())
    broker.start()
    topic = "dying.topic"
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    admin.create_topics([NewTopic(topic, 1, 1)])
    admin.close()
    metrics = ServiceMetrics("dying")
    producer = EventProducer(
        bootstrap_servers=broker.bootstrap, metrics=metrics, client_id="dying", max_buffered=20,
        max_unacknowledged=20, delivery_timeout_ms=3_000, request_timeout_ms=2_000,
    )
    try:
        assert producer.publish(topic, _event(0), key="m")
        assert producer.flush(DEADLINE)
        broker.stop()
        # The broker is gone: publishing keeps returning at once; what cannot be kept is dropped and counted.
        accepted = [producer.publish(topic, _event(i), key="m") for i in range(1, 2001)]
        assert not all(accepted)
        dropped = sum(
            metrics.registry.get_sample_value("loopline_dying_kafka_dropped_total", {"topic": topic, "reason": r})
            or 0.0
            for r in ("buffer_full", "delivery_failed")
        )
        assert dropped >= accepted.count(False)
        broker.start()
        # Once the broker is back, new records flow again.
        _wait_until(lambda: producer.publish(topic, _event(5000), key="m"), "the buffer to take records again", 60)
        assert producer.flush(60)
        consumer = KafkaConsumer(
            topic, bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest",
            consumer_timeout_ms=int(DEADLINE * 1000), group_id="dying-reader",
        )
        versions = set()
        for record in consumer:
            versions.add(models_pb2.ModelEvent.FromString(record.value).registered.version)
            if 5000 in versions:
                break
        consumer.close()
        assert {0, 5000} <= versions
    finally:
        producer.close(timeout=5)
        broker.stop()
