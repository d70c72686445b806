"""Kafka I/O on kafka-python: protobuf payloads, keys, a producer that never blocks its caller, and a
consumer loop that commits only after the handler succeeded.

Every record carries a `content-type` header naming its protobuf message type
(`application/x-protobuf; messageType=loopline.events.v1.ModelEvent`). A consumer that receives a record
it cannot decode as the type it expects (wrong or missing header, bytes that do not parse, or a handler
that raises `PoisonMessage`) sends it to the dead-letter topic with the reason and its origin in headers,
commits past it and moves on, so one bad record never stalls a partition. Any other handler error is
retried from the same offset (at-least-once); handlers must therefore be idempotent.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from google.protobuf.message import DecodeError, Message
from kafka import KafkaConsumer, KafkaProducer
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaConfigurationError, KafkaError
from kafka.structs import OffsetAndMetadata, TopicPartition
from prometheus_client import Counter, Gauge

from loopline_common.metrics import ServiceMetrics

log = logging.getLogger(__name__)

M = TypeVar("M", bound=Message)

CONTENT_TYPE_HEADER = "content-type"
# How long one attempt to reach the broker may take before the client tries again (kafka-python's
# default is 30 s, which would make close() and readiness slow while the broker is down).
BOOTSTRAP_TIMEOUT_MS = 3_000
# How long one poll may run once partitions are assigned (see ConsumerLoop.run).
BUSY_POLL_MS = 50
DLQ_SUFFIX = ".dlq"


def content_type(message_type: type[Message]) -> bytes:
    return f"application/x-protobuf; messageType={message_type.DESCRIPTOR.full_name}".encode()


class PoisonMessage(Exception):
    """Raised by a handler for a record that can never be processed: it goes to the dead-letter topic."""


@dataclass(frozen=True)
class _Outgoing:
    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]


def producer_metrics(metrics: ServiceMetrics) -> tuple[Counter, Counter, Gauge]:
    """A producer's metrics, the same for every producer: acknowledged records by topic, dropped records by
    topic and reason, and records waiting in its buffer (the caller sets the gauge's function)."""
    return (
        metrics.counter("kafka_produced_total", "Records acknowledged by Kafka", ["topic"]),
        metrics.counter(
            "kafka_dropped_total", "Records dropped instead of blocking or after failed delivery", ["topic", "reason"]
        ),
        metrics.gauge("kafka_producer_buffered", "Records waiting in the producer buffer"),
    )


class EventProducer:
    """Publishes protobuf messages without ever blocking the caller.

    `publish` puts the record in a bounded in-memory buffer and returns at once; a background thread
    hands records to kafka-python (which batches, retries and, with idempotence, de-duplicates). When the
    buffer is full (the broker is down or slow) the record is dropped and counted in
    `loopline_<service>_kafka_dropped_total{reason="buffer_full"}`; a record the broker finally refused is
    counted with reason="delivery_failed". Records still buffered when the broker comes back are sent.
    Memory stays bounded while the broker is away: at most `max_buffered` records wait here and at most
    `max_unacknowledged` in kafka-python, which gives up on a record after `delivery_timeout_ms` (counted
    as delivery_failed).
    """

    def __init__(
        self,
        *,
        bootstrap_servers: str,
        metrics: ServiceMetrics,
        client_id: str,
        max_buffered: int = 10_000,
        linger_ms: int = 5,
        request_timeout_ms: int = 10_000,
        max_unacknowledged: int = 10_000,
        delivery_timeout_ms: int = 30_000,
    ) -> None:
        if delivery_timeout_ms <= linger_ms:
            raise ValueError("delivery_timeout_ms must exceed linger_ms")
        # kafka-python refuses delivery_timeout_ms < linger_ms + request_timeout_ms.
        request_timeout_ms = min(request_timeout_ms, delivery_timeout_ms - linger_ms)
        self._bootstrap = bootstrap_servers
        # Records handed to kafka-python and not yet acknowledged or given up on. kafka-python's own
        # buffer is unbounded, so this is what keeps memory bounded while the broker is away.
        self._unacknowledged = threading.BoundedSemaphore(max_unacknowledged)
        self._delivery_timeout_ms = delivery_timeout_ms
        self._client_id = client_id
        self._linger_ms = linger_ms
        self._request_timeout_ms = request_timeout_ms
        self._queue: queue.Queue[_Outgoing | None] = queue.Queue(maxsize=max_buffered)
        self._producer: KafkaProducer | None = None
        self._closed = threading.Event()
        self._connected = threading.Event()
        self._produced, self._dropped, self._buffered = producer_metrics(metrics)
        self._buffered.set_function(self._queue.qsize)
        self._thread = threading.Thread(target=self._run, name=f"kafka-producer-{client_id}", daemon=True)
        self._thread.start()

    @property
    def connected(self) -> bool:
        """True once a connection to the broker was made (for readiness)."""
        return self._connected.is_set()

    def publish(
        self, topic: str, message: Message, *, key: str | bytes | None, headers: dict[str, str] | None = None
    ) -> bool:
        """Queue `message` for `topic`; False (and counted) if it was dropped because the buffer is full."""
        return self.publish_bytes(
            topic, message.SerializeToString(), message_type=type(message), key=key, headers=headers
        )

    def publish_bytes(
        self,
        topic: str,
        value: bytes,
        *,
        message_type: type[Message],
        key: str | bytes | None,
        headers: dict[str, str] | None = None,
    ) -> bool:
        """`publish` for a message the caller serialized itself (e.g. a batch encoded in bulk)."""
        record = _Outgoing(
            topic=topic,
            key=key.encode() if isinstance(key, str) else key,
            value=value,
            headers=[
                (CONTENT_TYPE_HEADER, content_type(message_type)),
                *((k, v.encode()) for k, v in (headers or {}).items()),
            ],
        )
        try:
            self._queue.put_nowait(record)
            return True
        except queue.Full:
            self._dropped.labels(topic, "buffer_full").inc()
            return False

    def _connect(self) -> KafkaProducer:
        while not self._closed.is_set():
            try:
                producer = KafkaProducer(
                    bootstrap_servers=self._bootstrap,
                    client_id=self._client_id,
                    acks="all",
                    enable_idempotence=True,
                    linger_ms=self._linger_ms,
                    request_timeout_ms=self._request_timeout_ms,
                    max_block_ms=self._request_timeout_ms,
                    bootstrap_timeout_ms=BOOTSTRAP_TIMEOUT_MS,
                    delivery_timeout_ms=self._delivery_timeout_ms,
                )
                self._connected.set()
                return producer
            except KafkaConfigurationError:
                raise
            except Exception as exc:  # broker not there yet: keep the records, try again
                log.warning("kafka producer cannot connect yet: %s", exc)
                self._closed.wait(1.0)
        raise RuntimeError("producer closed")

    def _run(self) -> None:
        pending: _Outgoing | None = None
        while True:
            if pending is None:
                pending = self._queue.get()
                if pending is None:  # close() sentinel
                    self._queue.task_done()
                    break
            if self._producer is None:
                try:
                    self._producer = self._connect()
                except RuntimeError:
                    break
            record = pending
            # Wait (in this thread only) until kafka-python holds fewer than max_unacknowledged records.
            if not self._unacknowledged.acquire(timeout=0.5):
                if self._closed.is_set():
                    break
                continue
            try:
                future = self._producer.send(record.topic, key=record.key, value=record.value, headers=record.headers)
            except Exception as exc:  # metadata unavailable within max_block_ms: keep the record, retry
                self._unacknowledged.release()
                log.warning("kafka send to %s not accepted yet: %s", record.topic, exc)
                self._closed.wait(0.5)
                if self._closed.is_set():
                    self._dropped.labels(record.topic, "closed").inc()
                    pending = None
                    self._queue.task_done()
                continue
            future.add_callback(lambda _meta, t=record.topic: self._on_delivered(t))
            future.add_errback(lambda exc, t=record.topic: self._on_failed(t, exc))
            pending = None
            self._queue.task_done()
        if self._producer is not None:
            self._producer.flush(timeout=self._request_timeout_ms / 1000)
            self._producer.close(timeout=self._request_timeout_ms / 1000)

    def _on_delivered(self, topic: str) -> None:
        self._unacknowledged.release()
        self._produced.labels(topic).inc()

    def _on_failed(self, topic: str, exc: BaseException) -> None:
        self._unacknowledged.release()
        log.error("kafka delivery to %s failed: %s", topic, exc)
        self._dropped.labels(topic, "delivery_failed").inc()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued record was handed to Kafka and acknowledged; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._queue.all_tasks_done.wait(remaining)
        if self._producer is not None:
            self._producer.flush(timeout=max(0.0, deadline - time.monotonic()))
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Send what is buffered (bounded by `timeout` when the broker is reachable), then stop."""
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=timeout)
        self._thread.join(timeout)
        self._closed.set()
        self._thread.join(1.0)


Handler = Callable[[M, ConsumerRecord], None]


class ConsumerLoop(Generic[M]):
    """Consume `topics` as `group_id`, decode each record as `message_type`, call `handler`, commit.

    Offsets are committed only after the handler returned (at-least-once). Undecodable records and
    records whose handler raised `PoisonMessage` go to `<topic>.dlq`. Any other exception makes the loop
    seek back to the failed record and try again after `retry_backoff_seconds`.
    """

    def __init__(
        self,
        *,
        bootstrap_servers: str,
        group_id: str,
        topics: Sequence[str],
        message_type: type[M],
        handler: Handler[M],
        metrics: ServiceMetrics,
        client_id: str,
        dead_letter_suffix: str = DLQ_SUFFIX,
        retry_backoff_seconds: float = 1.0,
        poll_timeout_ms: int = 500,
        idle_wait_seconds: float = 0.2,
        max_poll_records: int = 500,
        max_poll_interval_ms: int = 300_000,
        session_timeout_ms: int = 10_000,
    ) -> None:
        self.message_type = message_type
        self.handler = handler
        self.topics = list(topics)
        self.dead_letter_suffix = dead_letter_suffix
        self.retry_backoff_seconds = retry_backoff_seconds
        self.poll_timeout_ms = poll_timeout_ms
        self.idle_wait_seconds = idle_wait_seconds
        self._expected_type = content_type(message_type)
        self._consumer_config = {
            "bootstrap_servers": bootstrap_servers,
            "group_id": group_id,
            "client_id": client_id,
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            "max_poll_records": max_poll_records,
            "max_poll_interval_ms": max_poll_interval_ms,
            "session_timeout_ms": session_timeout_ms,
            "heartbeat_interval_ms": max(100, session_timeout_ms // 4),
            "bootstrap_timeout_ms": BOOTSTRAP_TIMEOUT_MS,
        }
        self._bootstrap = bootstrap_servers
        self._client_id = client_id
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._consumer: KafkaConsumer | None = None
        self._dlq: KafkaProducer | None = None
        self._consumed = metrics.counter("kafka_consumed_total", "Records processed and committed", ["topic"])
        self._dead_lettered = metrics.counter(
            "kafka_dead_lettered_total", "Records sent to the dead-letter topic", ["topic", "reason"]
        )
        self._handler_errors = metrics.counter(
            "kafka_handler_errors_total", "Handler failures that will be retried", ["topic"]
        )

    @property
    def assigned(self) -> bool:
        """True once the group gave this consumer its partitions (for readiness)."""
        consumer = self._consumer
        return consumer is not None and bool(consumer.assignment())

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name=f"kafka-consumer-{self._client_id}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def run(self) -> None:
        """Poll and process until `stop()`; safe to run in the calling thread.

        The loop survives the broker: it keeps trying to connect while the broker is not there, and a
        failed poll or commit (broker gone, group rebalancing) is logged and retried; what was not
        committed is delivered again (at-least-once).
        """
        self._consumer = self._connect()
        if self._consumer is None:
            return
        busy = False  # the last poll returned records: wait for the fetch in flight instead of resting
        try:
            while not self._stop.is_set():
                try:
                    # kafka-python sends the next fetch inside poll() and waits for its answer; a broker that
                    # answers an empty fetch at once (noida-db ignores fetch_max_wait_ms) turns every waiting
                    # poll into a busy loop. So, once the group gave us partitions: after records, poll
                    # briefly for the fetch already in flight; when idle, poll without waiting (that sends
                    # one fetch, whose answer the next poll drains) and rest. Joining the group needs polls
                    # that block, so those keep the full timeout.
                    assigned = bool(self._consumer.assignment())
                    if not assigned:
                        timeout_ms = self.poll_timeout_ms
                    else:
                        timeout_ms = min(self.poll_timeout_ms, BUSY_POLL_MS) if busy else 0
                    batches = self._consumer.poll(timeout_ms=timeout_ms)
                    busy = bool(batches)
                    if not batches and assigned:
                        self._stop.wait(self.idle_wait_seconds)
                    for tp, records in batches.items():
                        self._process_partition(tp, records)
                except KafkaError as exc:
                    log.warning("kafka consumer error, retrying: %s", exc)
                    self._stop.wait(self.retry_backoff_seconds)
        finally:
            self._consumer.close()
            if self._dlq is not None:
                self._dlq.close(timeout=5)

    def _connect(self) -> KafkaConsumer | None:
        while not self._stop.is_set():
            try:
                consumer = KafkaConsumer(**self._consumer_config)
                consumer.subscribe(self.topics)
                return consumer
            except KafkaError as exc:  # broker not there yet
                log.warning("kafka consumer cannot connect yet: %s", exc)
                self._stop.wait(self.retry_backoff_seconds)
        return None

    def _process_partition(self, tp: TopicPartition, records: list[ConsumerRecord]) -> None:
        """Process records in order; commit the position after the last one that succeeded."""
        consumer = self._consumer
        if consumer is None:
            raise RuntimeError("the consumer is not running")
        done = 0
        try:
            for record in records:
                if self._stop.is_set():
                    return
                try:
                    self._process(record)
                except Exception:
                    self._handler_errors.labels(tp.topic).inc()
                    log.exception("handler failed on %s[%d]@%d; will retry", tp.topic, tp.partition, record.offset)
                    consumer.seek(tp, record.offset)
                    self._stop.wait(self.retry_backoff_seconds)
                    return
                done += 1
        finally:
            if done:
                consumer.commit({tp: OffsetAndMetadata(records[done - 1].offset + 1, "", -1)})
                self._consumed.labels(tp.topic).inc(done)

    def _process(self, record: ConsumerRecord) -> None:
        headers = dict(record.headers or [])
        if headers.get(CONTENT_TYPE_HEADER) != self._expected_type:
            got = headers.get(CONTENT_TYPE_HEADER, b"none").decode(errors="replace")
            self._dead_letter(record, "wrong_type", f"expected {self._expected_type.decode()}, got {got}")
            return
        try:
            message = self.message_type.FromString(record.value)
        except DecodeError as exc:
            self._dead_letter(record, "undecodable", str(exc))
            return
        try:
            self.handler(message, record)
        except PoisonMessage as exc:
            self._dead_letter(record, "rejected", str(exc))

    def _dead_letter(self, record: ConsumerRecord, reason: str, error: str) -> None:
        """Send the record, untouched, to the dead-letter topic; raises if the broker did not take it."""
        if self._dlq is None:
            self._dlq = KafkaProducer(
                bootstrap_servers=self._bootstrap, client_id=f"{self._client_id}-dlq", acks="all",
                enable_idempotence=True,
            )
        topic = record.topic + self.dead_letter_suffix
        headers = [
            *(record.headers or []),
            ("loopline-dlq-reason", reason.encode()),
            ("loopline-dlq-error", error[:1000].encode()),
            ("loopline-dlq-source", f"{record.topic}/{record.partition}/{record.offset}".encode()),
        ]
        self._dlq.send(topic, key=record.key, value=record.value, headers=headers).get(timeout=10)
        self._dead_lettered.labels(record.topic, reason).inc()
        log.warning("sent %s[%d]@%d to %s: %s", record.topic, record.partition, record.offset, topic, error)
