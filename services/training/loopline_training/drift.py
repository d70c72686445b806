"""Drift-triggered retraining: a DriftDetected event becomes a retraining job when the policy allows it.

The policy, for the event's model:
  1. no second job while one is pending or running;
  2. a cooldown since the model's last drift-triggered job;
  3. a template: the newest successful job of the model (its spec is reused, the window moved forward);
  4. minimum new data: at least `min_new_rows` labelled rows newer than the template's window.
The new job keeps the template's window length and ends it just after the newest labelled row; it has
trigger "drift", a reason naming the drifted features, and the drifted version as its
parent. Every decision (submitted or skipped, and why) is recorded under the event id, so a redelivered
event is recognised and not acted on twice.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pyarrow.compute as pc  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]
from google.protobuf.timestamp_pb2 import Timestamp

from loopline.events.v1 import drift_pb2
from loopline.training.v1 import training_pb2 as pb
from loopline_common.errors import LooplineError
from loopline_common.kafka_io import PoisonMessage
from loopline_training.convert import spec_from_json
from loopline_training.spec import local_path
from loopline_training.store import ACTIVE, SUCCEEDED, DriftDecision, JobRecord, JobStore

log = logging.getLogger(__name__)

SUBMITTED = "submitted"
SKIPPED = "skipped"


@dataclass(frozen=True)
class DriftPolicy:
    cooldown_seconds: float
    min_new_rows: int


def rows_since(uri: str, timestamp_column: str, since: datetime) -> tuple[int, datetime | None]:
    """How many rows of a parquet file have a timestamp at or after `since`, and the newest timestamp."""
    table = pq.read_table(local_path(uri), columns=[timestamp_column])
    column = table.column(timestamp_column)
    naive = column.type.tz is None  # naive timestamps are UTC
    mask = pc.greater_equal(column, since.replace(tzinfo=None) if naive else since)
    count = int(pc.sum(pc.cast(mask, "int64")).as_py() or 0)
    newest = pc.max(column).as_py()
    if newest is not None and naive:
        newest = newest.replace(tzinfo=UTC)
    return count, newest


def describe(event: drift_pb2.DriftDetected) -> str:
    """The reason of a drift-triggered job: which version drifted, how much, and the worst features."""
    drifted = sorted((f for f in event.features if f.drifted), key=lambda f: f.score - f.threshold, reverse=True)
    names = ", ".join(f"{f.feature} ({f.method} {f.score:.3g} > {f.threshold:.3g})" for f in drifted[:5])
    more = f" and {len(drifted) - 5} more" if len(drifted) > 5 else ""
    return (f"drift on {event.model_name} v{event.model_version}: {len(drifted)} of {len(event.features)} features "
            f"drifted (share {event.drifted_share:.2f} >= {event.drifted_share_threshold:.2f})"
            + (f": {names}{more}" if names else ""))


def _ts(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


class DriftRetrainer:
    """Decides on DriftDetected events; `handle` is the ConsumerLoop handler."""

    def __init__(
        self,
        *,
        store: JobStore,
        submit: Callable[[pb.JobSpec], JobRecord],
        policy: DriftPolicy,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.submit = submit
        self.policy = policy
        self.clock = clock
        self._lock = threading.Lock()  # one decision at a time in this process

    def handle(self, event: drift_pb2.DriftDetected, _record: object = None) -> None:
        """The ConsumerLoop handler."""
        self.decide(event)

    def decide(self, event: drift_pb2.DriftDetected) -> DriftDecision:
        """Decide on one event (once per event id) and record the decision."""
        if not event.model_name:
            raise PoisonMessage("DriftDetected without a model name")
        event_id = event.meta.event_id or f"{event.model_name}/{event.model_version}/{event.window.end.ToJsonString()}"
        with self._lock:
            earlier = self.store.drift_decision(event_id)
            if earlier is not None:  # at-least-once delivery: the same event again
                log.info("drift event seen before", extra={"event_id": event_id, "decision": earlier.decision})
                return earlier
            job_id, reason = self._decide(event)
            decision = DriftDecision(
                event_id=event_id, model_name=event.model_name, model_version=event.model_version,
                decided_at=self.clock(), decision=SUBMITTED if job_id else SKIPPED, reason=reason, job_id=job_id,
            )
            self.store.record_drift_decision(decision)
        log.info("drift decision", extra={"model": event.model_name, "decision": decision.decision,
                                          "reason": reason, "job_id": job_id, "event_id": event_id})
        return decision

    def _decide(self, event: drift_pb2.DriftDetected) -> tuple[str, str]:
        model = event.model_name
        active = self.store.find(states=list(ACTIVE), model_name=model, limit=1)
        if active:
            return "", f"job {active[0].job_id} of {model} is already {active[0].state.lower()}"
        now = self.clock()
        last_drift = self.store.find(model_name=model, trigger="drift", limit=1)
        if last_drift and now - last_drift[0].created_at < self.policy.cooldown_seconds:
            left = self.policy.cooldown_seconds - (now - last_drift[0].created_at)
            return "", (f"cooldown: the last drift-triggered job of {model} ({last_drift[0].job_id}) is "
                        f"{now - last_drift[0].created_at:.0f} s old; {left:.0f} s of the "
                        f"{self.policy.cooldown_seconds:.0f} s cooldown remain")
        template = self.store.find(states=[SUCCEEDED], model_name=model, limit=1)
        if not template:
            return "", f"no successful job of {model} to retrain from"
        spec = spec_from_json(template[0].spec)
        old_start, old_end = spec.window.start.ToDatetime(tzinfo=UTC), spec.window.end.ToDatetime(tzinfo=UTC)
        source = spec.entity_uri or spec.dataset_uri
        try:
            new_rows, newest = rows_since(source, spec.timestamp_column, old_end)
        except Exception as exc:
            return "", f"cannot count the new labelled rows in {source}: {type(exc).__name__}: {exc}"
        if new_rows < self.policy.min_new_rows or newest is None:
            return "", (f"only {new_rows} labelled rows since {old_end.isoformat()}; the policy needs "
                        f"{self.policy.min_new_rows}")
        # The same window length, ending just after the newest labelled row.
        new_end = newest + timedelta(microseconds=1)
        shift = new_end - old_end
        spec.window.start.CopyFrom(_ts(old_start + shift))
        spec.window.end.CopyFrom(_ts(new_end))
        holdout = spec.validation.time_holdout
        if holdout.WhichOneof("boundary") == "holdout_start":
            holdout.holdout_start.CopyFrom(_ts(holdout.holdout_start.ToDatetime(tzinfo=UTC) + shift))
        spec.trigger = "drift"
        spec.reason = describe(event)
        spec.parent_version = event.model_version
        try:
            record = self.submit(spec)
        except LooplineError as exc:
            return "", f"the retraining job was refused: {exc.message}"
        return record.job_id, f"{spec.reason}; {new_rows} new labelled rows; retraining from job {template[0].job_id}"
