"""The prediction log's Kafka producer, on librdkafka (confluent-kafka).

Same contract as the shared `loopline_common.kafka_io.EventProducer` — `publish_bytes` never blocks, the
buffer is bounded, records that cannot be delivered are dropped and counted under the same metrics
(`loopline_inference_kafka_dropped_total{reason="buffer_full"|"delivery_failed"}`,
`..._kafka_produced_total`, `..._kafka_producer_buffered`), and logging resumes by itself when the broker
is back — but built for the one producer that runs beside a hot request path.

Why not the shared producer here: on a one-core pod, kafka-python's network thread and the hand-off thread
in front of it are Python threads; together they took about 6 µs of CPU per logged request and fought
the event loop for the GIL, which is most of what the log cost (bench/inference.py). librdkafka's
threads are native and never take the GIL; `produce` is one C call that copies the batch into its
queue, and delivery reports are served by `poll` on the caller's thread, once per flush. Every other Kafka client in
Loopline goes through `loopline_common.kafka_io`.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer
from google.protobuf.message import Message

from loopline_common.kafka_io import content_type, producer_metrics
from loopline_common.metrics import ServiceMetrics
from loopline_common.topics import PREDICTIONS

log = logging.getLogger(__name__)


class LogProducer:
    """A non-blocking, bounded producer of already-serialized protobuf batches."""

    def __init__(
        self,
        *,
        bootstrap_servers: str,
        metrics: ServiceMetrics,
        client_id: str,
        max_buffered: int = 2_000,
        max_buffered_bytes: int = 64 << 20,
        delivery_timeout_ms: int = 30_000,
        linger_ms: int = 5,
    ) -> None:
        self._config: dict[str, Any] = {
            "bootstrap.servers": bootstrap_servers,
            "client.id": client_id,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": linger_ms,
            # A batch the broker has not acknowledged by then is given up on (and counted).
            "message.timeout.ms": delivery_timeout_ms,
            # librdkafka's queue is the bound: batches queued or in flight, in number and in bytes.
            "queue.buffering.max.messages": max_buffered,
            "queue.buffering.max.kbytes": max(1, max_buffered_bytes >> 10),
            "error_cb": self._on_error,
            "logger": log,
        }
        self._produced, self._dropped, self._buffered = producer_metrics(metrics)
        self._producer = Producer(self._config)
        self._buffered.set_function(lambda: len(self._producer))
        self._fatal = False
        self._said = 0.0

    def publish_bytes(
        self, topic: str, value: bytes, *, message_type: type[Message], key: str | bytes | None
    ) -> bool:
        """Queue one serialized message; False (and counted) when the buffer is full."""
        if self._fatal:
            self._renew()
        try:
            self._producer.produce(
                topic, value=value, key=key, headers=[("content-type", content_type(message_type))],
                on_delivery=self._on_delivery,
            )
        except BufferError:
            self._dropped.labels(topic, "buffer_full").inc()
            return False
        except KafkaException as exc:  # refused locally (e.g. larger than message.max.bytes)
            self._say("kafka refused a prediction-log batch: %s", exc)
            self._dropped.labels(topic, "rejected").inc()
            return False
        return True

    def poll(self) -> None:
        """Serve delivery reports (and librdkafka's logs); the log calls this once per flush."""
        self._producer.poll(0)

    def close(self, timeout: float = 10.0) -> None:
        """Deliver what is buffered, waiting at most `timeout` seconds (the rest is counted as dropped)."""
        left = self._producer.flush(timeout)
        if left:
            log.warning("prediction log: %d batches not delivered at shutdown", left)
            self._dropped.labels(PREDICTIONS, "closed").inc(left)

    # ---- callbacks (run inside poll/flush, on the caller's thread) --------------------------------------
    def _on_delivery(self, err: KafkaError | None, msg: Any) -> None:
        if err is None:
            self._produced.labels(msg.topic()).inc()
            return
        self._say("kafka delivery to %s failed: %s", msg.topic(), err)
        self._dropped.labels(msg.topic(), "delivery_failed").inc()

    def _on_error(self, err: KafkaError) -> None:
        # Broker down or unreachable: librdkafka reconnects by itself; batches wait up to message.timeout.ms.
        if err.fatal():
            self._fatal = True
        self._say("kafka producer: %s", err)

    def _renew(self) -> None:
        """After a fatal error (an idempotent producer whose state the broker lost) start a new producer;
        what the old one still held is counted as dropped."""
        old, self._producer = self._producer, Producer(self._config)
        self._fatal = False
        left = len(old)
        if left:
            self._dropped.labels(PREDICTIONS, "delivery_failed").inc(left)
        log.warning("kafka producer restarted after a fatal error", extra={"dropped": left})

    def _say(self, text: str, *args: Any) -> None:
        """Warn at most once every 10 s: a broker away for minutes must not flood the log."""
        now = time.monotonic()
        if now - self._said >= 10.0:
            self._said = now
            log.warning(text, *args)
