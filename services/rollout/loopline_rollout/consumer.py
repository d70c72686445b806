"""The model-event consumer: `loopline_common.kafka_io.ConsumerLoop` on every partition of its topics by
manual assignment instead of group membership.

Why: the controller runs as one active instance and must read every model's events anyway, so it gains
nothing from a consumer group's partition sharing, and group membership has a cost after a crash: the
killed member stays in the group until the broker expires it, and the Kafka-wire broker of the embedded
stack (noida-db) does not expire it, so a restarted controller would wait for partitions indefinitely.
Offsets are still committed under the group id, so a restart continues after the last processed event.
"""

from __future__ import annotations

import logging

from kafka import KafkaConsumer
from kafka.errors import KafkaError
from kafka.structs import TopicPartition

from loopline.events.v1 import models_pb2
from loopline_common.kafka_io import ConsumerLoop

log = logging.getLogger(__name__)


class AssignedConsumerLoop(ConsumerLoop[models_pb2.ModelEvent]):
    def _connect(self) -> KafkaConsumer | None:
        while not self._stop.is_set():
            consumer: KafkaConsumer | None = None
            try:
                consumer = KafkaConsumer(**self._consumer_config)
                partitions = []
                for topic in self.topics:
                    ids = consumer.partitions_for_topic(topic)
                    if not ids:
                        raise KafkaError(f"no partitions known for {topic} yet")
                    partitions += [TopicPartition(topic, p) for p in sorted(ids)]
                consumer.assign(partitions)
                return consumer
            except KafkaError as exc:  # broker or topic not there yet
                log.warning("model-event consumer cannot start yet: %s", exc)
                if consumer is not None:
                    consumer.close()
                self._stop.wait(self.retry_backoff_seconds)
        return None
