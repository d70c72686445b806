"""Model events built from committed changes, and the handlers of the events the registry consumes.

An event is built from its change row alone, so a retry (after a crash, or a publish whose
acknowledgement was lost) sends the same `event_id`, and consumers that de-duplicate on it see each change
exactly once.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from google.protobuf.json_format import MessageToDict
from google.protobuf.timestamp_pb2 import Timestamp
from kafka.consumer.fetcher import ConsumerRecord

from loopline.events.v1 import meta_pb2, models_pb2, rollouts_pb2
from loopline_registry.store import Change, Store

log = logging.getLogger(__name__)

PRODUCER = "registry"
EVENT_ID_HEADER = "loopline-event-id"


def build_event(change: Change) -> models_pb2.ModelEvent | None:
    """The ModelEvent of a change, or None for changes without one (approvals)."""
    occurred = Timestamp()
    occurred.FromDatetime(change.created_at.astimezone(UTC).replace(tzinfo=None))
    meta = meta_pb2.EventMeta(
        event_id=change.event_id, occurred_at=occurred, producer=PRODUCER, request_id=change.request_id
    )
    if change.kind == "alias":
        return models_pb2.ModelEvent(
            alias_changed=models_pb2.AliasChanged(
                meta=meta, model_name=change.model_name, alias=change.alias,
                previous_version=change.previous_version, new_version=change.new_version, actor=change.actor,
                reason=change.reason,
            )
        )
    if change.kind == "registered":
        data = change.data
        return models_pb2.ModelEvent(
            registered=models_pb2.ModelRegistered(
                meta=meta, model_name=change.model_name, version=change.version, run_id=str(data.get("run_id", "")),
                metrics={k: float(v) for k, v in dict(data.get("metrics", {})).items()},
                tags={k: str(v) for k, v in dict(data.get("tags", {})).items()},
                trigger=str(data.get("trigger", "")), reason=change.reason,
                parent_version=int(data.get("parent_version", 0)),
            )
        )
    if change.kind == "archived":
        return models_pb2.ModelEvent(
            archived=models_pb2.VersionArchived(
                meta=meta, model_name=change.model_name, version=change.version, actor=change.actor,
                reason=change.reason,
            )
        )
    return None


def model_of(event: models_pb2.ModelEvent) -> str:
    kind = event.WhichOneof("event")
    return "" if kind is None else str(getattr(event, kind).model_name)


def invalidating_handler(invalidate: Callable[[str], None]) -> Callable[[models_pb2.ModelEvent, ConsumerRecord], None]:
    """A handler for the models topic that invalidates the cache of each event's model (from any writer)."""

    def handle(event: models_pb2.ModelEvent, _record: ConsumerRecord) -> None:
        name = model_of(event)
        if name:
            invalidate(name)

    return handle


def rollout_handler(store: Store) -> Callable[[rollouts_pb2.RolloutDecision, ConsumerRecord], None]:
    """A handler for the rollouts topic: each decision becomes an audit entry against its candidate
    version (de-duplicated on the event id, so redelivery is harmless)."""

    def handle(decision: rollouts_pb2.RolloutDecision, _record: ConsumerRecord) -> None:
        if not decision.model_name or not decision.meta.event_id:
            return
        occurred = (
            decision.meta.occurred_at.ToDatetime(tzinfo=UTC)
            if decision.meta.HasField("occurred_at") else datetime.now(UTC)
        )
        details = MessageToDict(decision, preserving_proto_field_name=True)
        details.pop("meta", None)
        store.add_audit(
            actor=decision.actor or "rollout", role="rollout",
            action="rollout." + rollouts_pb2.Decision.Name(decision.decision).removeprefix("DECISION_").lower(),
            model_name=decision.model_name, version=decision.candidate_version, reason=decision.reason,
            after=json.loads(json.dumps(details)), request_id=decision.meta.request_id, occurred_at=occurred,
            source_event_id=decision.meta.event_id,
        )

    return handle
