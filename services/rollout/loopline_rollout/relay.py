"""The outbox relay: publishes recorded decisions to the rollouts topic (acks=all), oldest first, and marks
them sent. A publish whose acknowledgement is lost is sent again with the same event id; the registry and
other consumers de-duplicate on it. Records carry `loopline_common.kafka_io`'s content-type header."""

from __future__ import annotations

import logging
import threading

from kafka import KafkaProducer

from loopline.events.v1 import rollouts_pb2
from loopline_common.kafka_io import CONTENT_TYPE_HEADER, content_type
from loopline_rollout.store import Store
from loopline_rollout.telemetry import Telemetry

log = logging.getLogger(__name__)


class Relay:
    def __init__(self, *, store: Store, bootstrap_servers: str, topic: str, telemetry: Telemetry,
                 poll_seconds: float, timeout_seconds: float = 10.0) -> None:
        self.store = store
        self.bootstrap = bootstrap_servers
        self.topic = topic
        self.telemetry = telemetry
        self.poll_seconds = poll_seconds
        self.timeout = timeout_seconds
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._producer: KafkaProducer | None = None
        self._thread = threading.Thread(target=self._run, name="rollout-relay", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(self.timeout + 5)

    def _send(self, batch: list[tuple[int, str, bytes]]) -> list[int]:
        if self._producer is None:
            self._producer = KafkaProducer(
                bootstrap_servers=self.bootstrap, client_id="loopline-rollout-relay", acks="all",
                enable_idempotence=True, request_timeout_ms=int(self.timeout * 1000),
                max_block_ms=int(self.timeout * 1000), bootstrap_timeout_ms=3000,
            )
        header = [(CONTENT_TYPE_HEADER, content_type(rollouts_pb2.RolloutDecision))]
        futures = [(seq, self._producer.send(self.topic, key=model.encode(), value=payload, headers=header))
                   for seq, model, payload in batch]
        acked = []
        for seq, future in futures:
            try:
                future.get(timeout=self.timeout)
            except Exception as exc:  # later ones may still be fine; this one is retried next round
                log.warning("decision %s not acknowledged: %s", seq, exc)
                break  # keep the order: nothing after a failed record is marked sent
            acked.append(seq)
        self.telemetry.published.inc(len(acked))
        return acked

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.store.publish_unsent(self._send)
                self.telemetry.unsent.set(self.store.unsent())
            except Exception as exc:  # broker or store away: keep the decisions, try again
                log.warning("publishing decisions failed: %s: %s", type(exc).__name__, exc)
                if self._producer is not None:
                    self._producer.close(timeout=1)
                    self._producer = None
            self._wake.wait(self.poll_seconds)
            self._wake.clear()
        if self._producer is not None:
            try:
                self.store.publish_unsent(self._send)
            except Exception as exc:
                log.warning("final publish failed: %s", exc)
            self._producer.close(timeout=self.timeout)
