"""The controller's durable state: one row per rollout and the outbox of its decisions.

SQLAlchemy Core on SQLite (embedded) or Postgres (cluster), like the registry's store. `active_model` holds
the model name while a rollout is active and NULL once it ended; its unique constraint is what makes a
second active rollout of the same model impossible, across restarts and replicas. A state change and the
decision it produces are written in one transaction, with a revision check (optimistic locking); the relay
publishes decisions to Kafka afterwards, so a decision is published if and only if it was recorded.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from loopline_common.errors import AlreadyExists, Conflict
from loopline_common.sql import SqlStore

log = logging.getLogger(__name__)

_ID = BigInteger().with_variant(Integer(), "sqlite")
metadata = MetaData()

ACTIVE_PHASES = ("shadow", "progressing", "paused")
FINAL_PHASES = ("promoted", "rolled_back", "aborted")

rollouts = Table(
    "rollout_rollouts",
    metadata,
    Column("rollout_id", String(64), primary_key=True),
    Column("model_name", String(256), nullable=False, index=True),
    # The model name while active, NULL when ended: unique, so one active rollout per model.
    Column("active_model", String(256), nullable=True, unique=True),
    Column("candidate_version", BigInteger, nullable=False),
    Column("champion_version", BigInteger, nullable=False),
    Column("phase", String(16), nullable=False),
    Column("paused_from", String(16), nullable=False, default=""),
    Column("step", Integer, nullable=False, default=0),
    Column("weight", Integer, nullable=False, default=0),
    Column("failed_checks", Integer, nullable=False, default=0),
    Column("inconclusive", Integer, nullable=False, default=0),
    Column("shadow_passed", Integer, nullable=False, default=0),
    Column("ready", Integer, nullable=False, default=0),
    Column("policy", Text, nullable=False),
    Column("actuator", String(16), nullable=False),
    Column("actuator_state", Text, nullable=False, default="{}"),
    Column("started_by", String(256), nullable=False),
    Column("trigger_event_id", String(64), nullable=True, unique=True),
    Column("actor", String(256), nullable=False, default=""),
    Column("reason", Text, nullable=False, default=""),
    Column("last_checks", Text, nullable=False, default="[]"),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("step_started_at", Float, nullable=False, default=0.0),
    Column("next_analysis_at", Float, nullable=True),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Column("revision", Integer, nullable=False, default=0),
)

decisions = Table(
    "rollout_decisions",
    metadata,
    Column("seq", _ID, primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False, unique=True),
    Column("rollout_id", String(64), nullable=False, index=True),
    Column("model_name", String(256), nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("sent_at", DateTime(timezone=True), nullable=True, index=True),
)


def utcnow() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


@dataclass
class RolloutRow:
    """A rollout as stored. Times the loop compares are wall-clock epoch seconds (they survive restarts)."""

    rollout_id: str
    model_name: str
    candidate_version: int
    champion_version: int
    phase: str
    policy: str
    actuator: str
    started_by: str
    started_at: datetime
    updated_at: datetime
    paused_from: str = ""
    step: int = 0
    weight: int = 0
    failed_checks: int = 0
    inconclusive: int = 0
    shadow_passed: int = 0
    ready: int = 0
    actuator_state: str = "{}"
    trigger_event_id: str | None = None
    actor: str = ""
    reason: str = ""
    last_checks: str = "[]"
    step_started_at: float = 0.0
    next_analysis_at: float | None = None
    finished_at: datetime | None = None
    revision: int = 0
    active_model: str | None = field(default=None)

    @property
    def active(self) -> bool:
        return self.phase in ACTIVE_PHASES

    def state(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.actuator_state or "{}")
        return loaded

    def values(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["active_model"] = self.model_name if self.active else None
        return out

    @classmethod
    def from_row(cls, row: Any) -> RolloutRow:
        data = dict(row._mapping)
        for key in ("started_at", "updated_at", "finished_at"):
            data[key] = _aware(data[key])
        return cls(**data)


class Store(SqlStore):
    metadata = metadata  # this module's tables

    # ---- rollouts --------------------------------------------------------------------------------
    def create(self, row: RolloutRow, decision: tuple[str, bytes]) -> None:
        """Insert a new active rollout and its first decision; AlreadyExists if the model has one."""
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(rollouts).values(**row.values()))
                self._add_decision(conn, row, decision)
        except IntegrityError as exc:
            if "trigger_event_id" in str(exc.orig):
                raise AlreadyExists(f"the event {row.trigger_event_id} started a rollout already") from None
            raise AlreadyExists(
                f"model '{row.model_name}' has an active rollout already", details={"model": row.model_name}
            ) from None

    def save(self, row: RolloutRow, decision: tuple[str, bytes] | None = None) -> None:
        """Write `row` (whose revision is the one read) and its decision; Conflict if it changed meanwhile."""
        expected = row.revision
        row.revision = expected + 1
        row.updated_at = utcnow()
        values = row.values()
        with self.engine.begin() as conn:
            done = conn.execute(
                update(rollouts).where(rollouts.c.rollout_id == row.rollout_id, rollouts.c.revision == expected)
                .values(**values)
            ).rowcount
            if done != 1:
                row.revision = expected
                raise Conflict(f"rollout {row.rollout_id} changed meanwhile; try again")
            if decision is not None:
                self._add_decision(conn, row, decision)

    @staticmethod
    def _add_decision(conn: Any, row: RolloutRow, decision: tuple[str, bytes]) -> None:
        event_id, payload = decision
        conn.execute(insert(decisions).values(event_id=event_id, rollout_id=row.rollout_id,
                                              model_name=row.model_name, payload=payload, created_at=utcnow()))

    def get(self, rollout_id: str) -> RolloutRow | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(rollouts).where(rollouts.c.rollout_id == rollout_id)).first()
        return None if row is None else RolloutRow.from_row(row)

    def active_of(self, model_name: str) -> RolloutRow | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(rollouts).where(rollouts.c.active_model == model_name)).first()
        return None if row is None else RolloutRow.from_row(row)

    def latest_of(self, model_name: str) -> RolloutRow | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(rollouts).where(rollouts.c.model_name == model_name)
                               .order_by(rollouts.c.started_at.desc()).limit(1)).first()
        return None if row is None else RolloutRow.from_row(row)

    def active(self) -> list[RolloutRow]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(rollouts).where(rollouts.c.active_model.is_not(None))).all()
        return [RolloutRow.from_row(r) for r in rows]

    def list_rollouts(self, *, model_name: str = "", active_only: bool = False, limit: int = 50) -> list[RolloutRow]:
        query = select(rollouts)
        if model_name:
            query = query.where(rollouts.c.model_name == model_name)
        if active_only:
            query = query.where(rollouts.c.active_model.is_not(None))
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(rollouts.c.started_at.desc()).limit(limit)).all()
        return [RolloutRow.from_row(r) for r in rows]

    # ---- decisions (the outbox) ------------------------------------------------------------------
    def decisions_of(self, rollout_id: str) -> list[bytes]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(decisions.c.payload).where(decisions.c.rollout_id == rollout_id)
                                .order_by(decisions.c.seq)).all()
        return [bytes(r.payload) for r in rows]

    def publish_unsent(self, send: Callable[[list[tuple[int, str, bytes]]], list[int]], *, limit: int = 100) -> int:
        """Hand unsent decisions (oldest first) as (seq, model, payload) to `send`, which returns the seqs
        Kafka acknowledged; mark those sent."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(decisions.c.seq, decisions.c.model_name, decisions.c.payload)
                                .where(decisions.c.sent_at.is_(None)).order_by(decisions.c.seq).limit(limit)).all()
        if not rows:
            return 0
        acked = send([(int(r.seq), str(r.model_name), bytes(r.payload)) for r in rows])
        if acked:
            with self.engine.begin() as conn:
                conn.execute(update(decisions).where(decisions.c.seq.in_(acked)).values(sent_at=utcnow()))
        return len(acked)

    def unsent(self) -> int:
        with self.engine.connect() as conn:
            return len(conn.execute(select(decisions.c.seq).where(decisions.c.sent_at.is_(None))).all())

