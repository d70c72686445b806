"""The registry's own durable store: the audit log, the change log (which is also the transactional
outbox of model events) and promotion policies set through the API.

One data model on SQLAlchemy Core, the same on SQLite (embedded) and Postgres (cluster). Every method is
synchronous and short; the async core calls them with `asyncio.to_thread`.

A change (one alias move, one registration, one archival, one approval) goes through these states:

    intent --(MLflow write done)--> pending --(published to Kafka)--> sent
      |                             done (a change with no event, e.g. an approval)
      +--(MLflow write certainly failed)--> abandoned
      +--(unknown whether it happened)----> unknown --(recovery asks MLflow)--> pending | abandoned

The audit entry of a change is written in the same transaction that makes it pending or done, so an
event is published if and only if its change is in the audit log.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from loopline_common.sql import SqlStore

log = logging.getLogger(__name__)

_ID = BigInteger().with_variant(Integer(), "sqlite")  # SQLite autoincrements only INTEGER PRIMARY KEY

metadata = MetaData()

changes = Table(
    "registry_changes",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False, unique=True),
    Column("op_id", String(64), nullable=False, index=True),
    Column("op", String(32), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("model_name", String(256), nullable=False, index=True),
    Column("version", BigInteger, nullable=False, default=0),
    Column("alias", String(256), nullable=False, default=""),
    Column("previous_version", BigInteger, nullable=False, default=0),
    Column("new_version", BigInteger, nullable=False, default=0),
    Column("actor", String(256), nullable=False),
    Column("role", String(32), nullable=False),
    Column("reason", Text, nullable=False, default=""),
    Column("request_id", String(128), nullable=False, default=""),
    Column("data", Text, nullable=False, default="{}"),
    Column("state", String(16), nullable=False, index=True),
    Column("owner", String(256), nullable=False),
    Column("topic", String(256), nullable=False, default=""),
    Column("attempts", Integer, nullable=False, default=0),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("sent_at", DateTime(timezone=True), nullable=True),
)

audit = Table(
    "registry_audit",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("entry_id", String(64), nullable=False, unique=True),
    Column("occurred_at", DateTime(timezone=True), nullable=False, index=True),
    Column("actor", String(256), nullable=False, index=True),
    Column("role", String(32), nullable=False),
    Column("action", String(64), nullable=False, index=True),
    Column("model_name", String(256), nullable=False, index=True),
    Column("version", BigInteger, nullable=False, default=0),
    Column("alias", String(256), nullable=False, default=""),
    Column("reason", Text, nullable=False, default=""),
    Column("before", Text, nullable=False, default="{}"),
    Column("after", Text, nullable=False, default="{}"),
    Column("request_id", String(128), nullable=False, default=""),
    # The Kafka event this entry was recorded from (rollout decisions): unique, so redelivery is a no-op.
    Column("source_event_id", String(64), nullable=True, unique=True),
    Column("change_id", BigInteger, nullable=True),
)

policies = Table(
    "registry_policies",
    metadata,
    Column("model_name", String(256), primary_key=True),
    Column("policy", Text, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("updated_by", String(256), nullable=False),
)

OPEN_STATES = ("intent", "unknown")
COMMITTED_STATES = ("pending", "sent", "done")


def utcnow() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything stored is UTC."""
    if value is None:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


@dataclass
class Change:
    """One atomic change of MLflow state, and (if it has an event) one outbox record."""

    op_id: str
    op: str
    kind: str  # alias | registered | archived | approved
    model_name: str
    actor: str
    role: str
    reason: str = ""
    request_id: str = ""
    version: int = 0
    alias: str = ""
    previous_version: int = 0
    new_version: int = 0
    data: dict[str, Any] = field(default_factory=dict)
    topic: str = ""
    event_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    state: str = "intent"
    owner: str = ""
    id: int = 0
    created_at: datetime = field(default_factory=utcnow)
    # The audit entry written when the change commits.
    audit_before: dict[str, Any] = field(default_factory=dict)
    audit_after: dict[str, Any] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id, "op_id": self.op_id, "op": self.op, "kind": self.kind,
            "model_name": self.model_name, "version": self.version, "alias": self.alias,
            "previous_version": self.previous_version, "new_version": self.new_version, "actor": self.actor,
            "role": self.role, "reason": self.reason, "request_id": self.request_id,
            "data": json.dumps({**self.data, "audit_before": self.audit_before, "audit_after": self.audit_after}),
            "state": self.state, "owner": self.owner, "topic": self.topic, "attempts": 0,
            "created_at": self.created_at, "updated_at": self.created_at,
        }

    @classmethod
    def from_row(cls, row: Any) -> Change:
        data = json.loads(row.data or "{}")
        before = data.pop("audit_before", {})
        after = data.pop("audit_after", {})
        return cls(
            id=row.id, event_id=row.event_id, op_id=row.op_id, op=row.op, kind=row.kind, model_name=row.model_name,
            version=row.version, alias=row.alias, previous_version=row.previous_version,
            new_version=row.new_version, actor=row.actor, role=row.role, reason=row.reason,
            request_id=row.request_id, data=data, state=row.state, owner=row.owner, topic=row.topic,
            created_at=_aware(row.created_at) or utcnow(), audit_before=before, audit_after=after,
        )


@dataclass(frozen=True)
class AuditRecord:
    id: int
    entry_id: str
    occurred_at: datetime
    actor: str
    role: str
    action: str
    model_name: str
    version: int
    alias: str
    reason: str
    before: str
    after: str
    request_id: str


def _audit_record(row: Any) -> AuditRecord:
    return AuditRecord(
        id=row.id, entry_id=row.entry_id, occurred_at=_aware(row.occurred_at) or utcnow(), actor=row.actor,
        role=row.role, action=row.action, model_name=row.model_name, version=row.version, alias=row.alias,
        reason=row.reason, before=row.before, after=row.after, request_id=row.request_id,
    )


class Store(SqlStore):
    metadata = metadata  # this module's tables

    # ---- changes (the outbox) --------------------------------------------------------------------
    def add_intents(self, items: Sequence[Change]) -> None:
        """Record changes about to be made in MLflow (state intent), in one transaction; sets their ids."""
        with self.engine.begin() as conn:
            for change in items:
                key = conn.execute(insert(changes).values(**change.row())).inserted_primary_key
                change.id = int(key[0]) if key else 0

    def commit_changes(self, items: Sequence[Change]) -> None:
        """Mark changes as made (pending, or done if they have no event) and write their audit entries."""
        now = utcnow()
        with self.engine.begin() as conn:
            for change in items:
                state = "pending" if change.topic else "done"
                change.state = state
                conn.execute(
                    update(changes).where(changes.c.id == change.id).values(
                        state=state, version=change.version, updated_at=now,
                        data=json.dumps(
                            {**change.data, "audit_before": change.audit_before, "audit_after": change.audit_after}
                        ),
                    )
                )
                conn.execute(insert(audit).values(**_audit_row(change)))

    def set_state(self, ids: Iterable[int], state: str) -> None:
        ids = list(ids)
        if not ids:
            return
        with self.engine.begin() as conn:
            conn.execute(update(changes).where(changes.c.id.in_(ids)).values(state=state, updated_at=utcnow()))

    def recoverable(self, *, owner: str, instance: str, older_than: datetime, limit: int = 100) -> list[Change]:
        """Open changes whose process is gone: another boot of this instance, or any owner's when old."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(changes).where(
                    changes.c.state.in_(OPEN_STATES),
                    or_(
                        and_(changes.c.owner != owner, changes.c.owner.like(f"{instance}/%")),
                        changes.c.state == "unknown",
                        changes.c.created_at < older_than,
                    ),
                ).order_by(changes.c.id).limit(limit)
            ).all()
        return [Change.from_row(r) for r in rows]

    def publish_pending(self, send: Callable[[list[Change]], list[int]], *, limit: int = 200) -> int:
        """Hand pending changes (oldest first) to `send`, which returns the ids Kafka acknowledged; mark
        those sent. On Postgres the rows are locked (SKIP LOCKED) so replicas do not publish the same ones."""
        if self.dialect == "postgresql":
            with self.engine.begin() as conn:
                rows = conn.execute(
                    select(changes).where(changes.c.state == "pending").order_by(changes.c.id).limit(limit)
                    .with_for_update(skip_locked=True)
                ).all()
                if not rows:
                    return 0
                acked = send([Change.from_row(r) for r in rows])
                self._mark_sent(conn, acked, [r.id for r in rows])
                return len(acked)
        # SQLite: a read transaction must not be upgraded to a write one later (WAL snapshot errors), and
        # there is one process per file, so read, publish, then mark in a second transaction.
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(changes).where(changes.c.state == "pending").order_by(changes.c.id).limit(limit)
            ).all()
        if not rows:
            return 0
        acked = send([Change.from_row(r) for r in rows])
        with self.engine.begin() as conn:
            self._mark_sent(conn, acked, [r.id for r in rows])
        return len(acked)

    @staticmethod
    def _mark_sent(conn: Any, acked: list[int], tried: list[int]) -> None:
        now = utcnow()
        if acked:
            conn.execute(
                update(changes).where(changes.c.id.in_(acked)).values(state="sent", sent_at=now, updated_at=now)
            )
        failed = [i for i in tried if i not in set(acked)]
        if failed:
            conn.execute(
                update(changes).where(changes.c.id.in_(failed)).values(attempts=changes.c.attempts + 1, updated_at=now)
            )

    def count_states(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(changes.c.state, func.count()).group_by(changes.c.state)).all()
        return {str(state): int(n) for state, n in rows}

    def changes_of(self, *, model_name: str, kind: str | None = None, alias: str | None = None) -> list[Change]:
        """Committed changes of a model, oldest first (the change history)."""
        conditions = [changes.c.model_name == model_name, changes.c.state.in_(COMMITTED_STATES)]
        if kind is not None:
            conditions.append(changes.c.kind == kind)
        if alias is not None:
            conditions.append(changes.c.alias == alias)
        with self.engine.connect() as conn:
            rows = conn.execute(select(changes).where(*conditions).order_by(changes.c.id)).all()
        return [Change.from_row(r) for r in rows]

    # ---- audit -----------------------------------------------------------------------------------
    def add_audit(
        self, *, actor: str, role: str, action: str, model_name: str, version: int = 0, alias: str = "",
        reason: str = "", before: dict[str, Any] | None = None, after: dict[str, Any] | None = None,
        request_id: str = "", occurred_at: datetime | None = None, source_event_id: str | None = None,
    ) -> bool:
        """Write one audit entry; False if `source_event_id` was recorded already (a redelivered event)."""
        row = {
            "entry_id": uuid.uuid4().hex, "occurred_at": occurred_at or utcnow(), "actor": actor, "role": role,
            "action": action, "model_name": model_name, "version": version, "alias": alias, "reason": reason,
            "before": json.dumps(before or {}, sort_keys=True), "after": json.dumps(after or {}, sort_keys=True),
            "request_id": request_id, "source_event_id": source_event_id,
        }
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(audit).values(**row))
        except IntegrityError:
            if source_event_id is None:
                raise
            return False
        return True

    def list_audit(
        self, *, model_name: str = "", actor: str = "", action: str = "", version: int = 0,
        since: datetime | None = None, until: datetime | None = None, before_id: int = 0, limit: int = 100,
        oldest_first: bool = False, change_ids: Sequence[int] = (),
    ) -> list[AuditRecord]:
        """Audit entries matching every filter given; with `version`, also the entries of `change_ids`."""
        conditions = []
        if model_name:
            conditions.append(audit.c.model_name == model_name)
        if actor:
            conditions.append(audit.c.actor == actor)
        if action:
            prefix = action.removesuffix("*")
            conditions.append(audit.c.action.like(prefix + "%") if action.endswith("*") else audit.c.action == action)
        if version:
            about = audit.c.version == version
            conditions.append(or_(about, audit.c.change_id.in_(list(change_ids))) if change_ids else about)
        if since is not None:
            conditions.append(audit.c.occurred_at >= since)
        if until is not None:
            conditions.append(audit.c.occurred_at < until)
        if before_id:
            conditions.append(audit.c.id < before_id)
        order = audit.c.id.asc() if oldest_first else audit.c.id.desc()
        with self.engine.connect() as conn:
            rows = conn.execute(select(audit).where(*conditions).order_by(order).limit(limit)).all()
        return [_audit_record(r) for r in rows]

    # ---- policies --------------------------------------------------------------------------------
    def get_policy(self, model_name: str) -> str | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(policies.c.policy).where(policies.c.model_name == model_name)).first()
        return None if row is None else str(row.policy)

    def set_policy(
        self, *, model_name: str, policy_json: str, actor: str, role: str, reason: str, request_id: str
    ) -> None:
        """Store a model's policy and its audit entry in one transaction."""
        now = utcnow()
        with self.engine.begin() as conn:
            old = conn.execute(select(policies.c.policy).where(policies.c.model_name == model_name)).first()
            values = {"policy": policy_json, "updated_at": now, "updated_by": actor}
            if old is None:
                conn.execute(insert(policies).values(model_name=model_name, **values))
            else:
                conn.execute(update(policies).where(policies.c.model_name == model_name).values(**values))
            conn.execute(
                insert(audit).values(
                    entry_id=uuid.uuid4().hex, occurred_at=now, actor=actor, role=role, action="set_policy",
                    model_name=model_name, version=0, alias="", reason=reason,
                    before=json.dumps({"policy": json.loads(old.policy) if old else None}, sort_keys=True),
                    after=json.dumps({"policy": json.loads(policy_json)}, sort_keys=True),
                    request_id=request_id, source_event_id=None,
                )
            )


def _audit_row(change: Change) -> dict[str, Any]:
    return {
        "entry_id": uuid.uuid4().hex, "occurred_at": change.created_at, "actor": change.actor, "role": change.role,
        "action": change.op, "model_name": change.model_name, "version": change.version, "alias": change.alias,
        "reason": change.reason, "before": json.dumps(change.audit_before, sort_keys=True),
        "after": json.dumps(change.audit_after, sort_keys=True), "request_id": change.request_id,
        "source_event_id": None, "change_id": change.id,
    }

