"""The outbox relay: publishes committed changes to Kafka (acks=all) and marks them sent, and recovers
changes whose process died between the MLflow write and the commit.

It runs as one task in the service's event loop; the blocking parts (the store, kafka-python) run in a
worker thread. Each round: recover open changes (asking MLflow whether they happened), then publish what
is pending, oldest first. A publish whose acknowledgement is lost is simply sent again later with the same
event id. Records carry the `content-type` header of `loopline_common.kafka_io`, so `ConsumerLoop`
consumers read them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from kafka import KafkaProducer

from loopline.events.v1 import models_pb2
from loopline_common.kafka_io import CONTENT_TYPE_HEADER, content_type
from loopline_common.metrics import ServiceMetrics
from loopline_registry.events import EVENT_ID_HEADER, build_event
from loopline_registry.store import Change, Store, utcnow

log = logging.getLogger(__name__)

FAULT_EXIT_CODE = 70


def fault(points: frozenset[str], point: str) -> None:
    """Tests only: exit the process at once (no cleanup, no flush) if `point` is configured."""
    if point in points:
        log.warning("test fault: exiting at %s", point, extra={"event": "fault", "point": point})
        for handler in logging.getLogger().handlers:
            handler.flush()
        os._exit(FAULT_EXIT_CODE)


class Relay:
    def __init__(
        self,
        *,
        store: Store,
        bootstrap_servers: str,
        client_id: str,
        owner: str,
        instance: str,
        recover: Callable[[Change], Awaitable[None]],
        metrics: ServiceMetrics,
        poll_seconds: float,
        kafka_timeout_seconds: float,
        intent_timeout_seconds: float,
        faults: frozenset[str] = frozenset(),
    ) -> None:
        self.store = store
        self.bootstrap = bootstrap_servers
        self.client_id = client_id
        self.owner = owner
        self.instance = instance
        self.recover = recover
        self.poll_seconds = poll_seconds
        self.kafka_timeout = kafka_timeout_seconds
        self.intent_timeout = intent_timeout_seconds
        self.faults = faults
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._producer: KafkaProducer | None = None
        self._published = metrics.counter("events_published_total", "Model events acknowledged by Kafka", ["kind"])
        self._pending = metrics.gauge("outbox_pending", "Committed changes not yet acknowledged by Kafka")
        self._recovered = metrics.counter("outbox_recovered_total", "Open changes resolved by recovery", ["outcome"])
        self.rounds = 0

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self) -> None:
        """One last publish round (bounded), then stop."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, self.kafka_timeout + 5)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()
        if self._producer is not None:
            await asyncio.to_thread(self._producer.close, 5)

    async def _run(self) -> None:
        while True:
            try:
                await self.round()
            except Exception:
                log.exception("outbox relay round failed; retrying")
            if self._stopping:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_seconds)
            self._wake.clear()

    async def round(self) -> None:
        await self._recover_open()
        sent = await asyncio.to_thread(self.store.publish_pending, self._send)
        if sent:
            log.info("published %d model event(s)", sent, extra={"event": "published", "count": sent})
        counts = await asyncio.to_thread(self.store.count_states)
        self._pending.set(counts.get("pending", 0))
        self.rounds += 1

    async def _recover_open(self) -> None:
        older_than = utcnow() - timedelta(seconds=self.intent_timeout)
        open_changes = await asyncio.to_thread(
            self.store.recoverable, owner=self.owner, instance=self.instance, older_than=older_than
        )
        for change in open_changes:
            before = change.state
            await self.recover(change)  # sets change.state to pending/done/abandoned, or leaves it open
            if change.state != before:
                self._recovered.labels(change.state).inc()
                log.info(
                    "recovered change %s (%s %s) as %s", change.event_id, change.op, change.kind, change.state,
                    extra={"event": "recovered", "event_id": change.event_id, "state": change.state},
                )

    # ---- publishing (worker thread) --------------------------------------------------------------
    def _connect(self) -> KafkaProducer:
        if self._producer is None:
            timeout_ms = int(self.kafka_timeout * 1000)
            self._producer = KafkaProducer(
                bootstrap_servers=self.bootstrap,
                client_id=self.client_id,
                acks="all",
                enable_idempotence=True,
                linger_ms=0,
                request_timeout_ms=timeout_ms,
                max_block_ms=timeout_ms,
                delivery_timeout_ms=timeout_ms + 1000,
            )
        return self._producer

    def _send(self, items: list[Change]) -> list[int]:
        """Publish `items` in order; return the ids Kafka acknowledged."""
        fault(self.faults, "before_publish")
        try:
            producer = self._connect()
        except Exception as exc:
            log.warning("kafka not reachable for the outbox: %s", type(exc).__name__)
            return []
        header = content_type(models_pb2.ModelEvent)
        futures: list[tuple[Change, Any]] = []
        for change in items:
            event = build_event(change)
            if event is None:  # nothing to publish (should not be pending): mark it handled
                futures.append((change, None))
                continue
            try:
                future = producer.send(
                    change.topic, key=change.model_name.encode(), value=event.SerializeToString(),
                    headers=[(CONTENT_TYPE_HEADER, header), (EVENT_ID_HEADER, change.event_id.encode())],
                )
            except Exception as exc:
                log.warning("outbox publish not accepted: %s", type(exc).__name__)
                break
            futures.append((change, future))
        acked: list[int] = []
        for change, future in futures:
            if future is None:
                acked.append(change.id)
                continue
            try:
                future.get(timeout=self.kafka_timeout)
            except Exception as exc:
                log.warning("outbox publish of %s failed: %s", change.event_id, type(exc).__name__)
                break  # keep order: later records wait for this one
            acked.append(change.id)
            self._published.labels(change.kind).inc()
        if acked:
            fault(self.faults, "after_publish")
        return acked
