"""Read the model events topic as a de-duplicating consumer would."""

from __future__ import annotations

import time
from collections.abc import Callable

from kafka import KafkaConsumer
from kafka.structs import TopicPartition

from loopline.events.v1 import models_pb2
from loopline_common.topics import MODELS, ensure_topics


class ModelEvents:
    """All ModelEvent records of one model seen so far on the topic (raw, and de-duplicated on event_id)."""

    def __init__(self, bootstrap: str, model: str) -> None:
        self.model = model
        self.raw: list[models_pb2.ModelEvent] = []
        self.keys: list[bytes] = []
        # Partitions assigned by hand, read from the start: no group to join.
        ensure_topics(bootstrap)
        self._consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        partitions = self._consumer.partitions_for_topic(MODELS) or set()
        self._consumer.assign([TopicPartition(MODELS, p) for p in sorted(partitions)])
        self._consumer.seek_to_beginning()

    def poll(self) -> int:
        """Read what has arrived; return how many records of this model were new."""
        before = len(self.raw)
        for records in self._consumer.poll(timeout_ms=50).values():
            for record in records:
                event = models_pb2.ModelEvent.FromString(record.value)
                kind = event.WhichOneof("event")
                if kind and getattr(event, kind).model_name == self.model:
                    self.raw.append(event)
                    self.keys.append(record.key)
        return len(self.raw) - before

    @property
    def unique(self) -> list[models_pb2.ModelEvent]:
        seen: set[str] = set()
        out = []
        for event in self.raw:
            kind = event.WhichOneof("event")
            event_id = getattr(event, kind).meta.event_id  # type: ignore[arg-type]
            if event_id not in seen:
                seen.add(event_id)
                out.append(event)
        return out

    def wait_until(self, condition: Callable[[list[models_pb2.ModelEvent]], bool], timeout: float = 30) -> None:
        """Poll until `condition(unique events)` holds; AssertionError with what was seen otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            new = self.poll()
            if condition(self.unique):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"events of {self.model} never matched; saw {[str(e) for e in self.unique]}")
            if not new:
                time.sleep(0.1)  # between polls only: an idle poll keeps a core busy on this broker

    def close(self) -> None:
        self._consumer.close()


def kinds(events: list[models_pb2.ModelEvent]) -> list[str]:
    return [str(e.WhichOneof("event")) for e in events]
