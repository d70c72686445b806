"""The registry's Kafka consumers: `loopline_common.kafka_io.ConsumerLoop`, made quiet when idle.

Against the embedded broker (noida-db), kafka-python 3 keeps a core busy for as long as it is inside
`poll()` with nothing to read (measured here: 60-90% of a core per idle consumer), and ConsumerLoop polls
back to back. Once the consumer has its partitions, `QuietConsumerLoop` polls briefly and waits
`idle_wait_seconds` after an empty poll: both registry consumers together then use under 10% of a core,
for at most that much more latency. It only wraps the consumer that ConsumerLoop creates; the loop's
logic (commit after processing, dead letters, retries) is untouched. To be removed once ConsumerLoop
waits between empty polls itself.
"""

from __future__ import annotations

import threading
from typing import Any, TypeVar

from google.protobuf.message import Message
from kafka import KafkaConsumer

from loopline_common.kafka_io import ConsumerLoop

M = TypeVar("M", bound=Message)

BUSY_POLL_MS = 50


class _QuietPolls:
    """A KafkaConsumer whose `poll` waits after coming back empty (once partitions are assigned)."""

    def __init__(self, consumer: KafkaConsumer, stop: threading.Event, idle_wait: float) -> None:
        self._consumer = consumer
        self._stop = stop
        self._idle_wait = idle_wait

    def poll(self, timeout_ms: int = 0, **kwargs: Any) -> Any:
        if not self._consumer.assignment():  # joining the group needs polls that block
            return self._consumer.poll(timeout_ms=timeout_ms, **kwargs)
        batches = self._consumer.poll(timeout_ms=min(timeout_ms, BUSY_POLL_MS), **kwargs)
        if not batches:
            self._stop.wait(self._idle_wait)
        return batches

    def __getattr__(self, name: str) -> Any:
        return getattr(self._consumer, name)


class QuietConsumerLoop(ConsumerLoop[M]):
    def __init__(self, *, idle_wait_seconds: float = 0.5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.idle_wait_seconds = idle_wait_seconds

    def _connect(self) -> Any:
        consumer = super()._connect()
        if consumer is None:
            return None
        return _QuietPolls(consumer, self._stop, self.idle_wait_seconds)
