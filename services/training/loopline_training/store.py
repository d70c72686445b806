"""The job store: one data model on SQLite (embedded) and Postgres (cluster), through SQLAlchemy Core.

Every state change is a compare-and-set on the job's current state (`transition`), so two replicas, or a
runner and a cancel, never both move the same job; each write bumps the job's `revision`, which watchers
use to notice changes. The drift-decision table records what the drift policy did with each event
(keyed by the event id, so a redelivered event is recognised).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    create_engine,
    event,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import Engine, RowMapping, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.pool import NullPool

PENDING = "PENDING"
RUNNING = "RUNNING"
SUCCEEDED = "SUCCEEDED"
FAILED = "FAILED"
CANCELLED = "CANCELLED"
STATES = (PENDING, RUNNING, SUCCEEDED, FAILED, CANCELLED)
TERMINAL = frozenset({SUCCEEDED, FAILED, CANCELLED})
ACTIVE = frozenset({PENDING, RUNNING})

metadata = MetaData()

jobs = Table(
    "training_jobs",
    metadata,
    Column("job_id", String(64), primary_key=True),
    Column("idempotency_key", String(256), unique=True, nullable=True),
    Column("model_name", String(128), nullable=False),
    Column("family", String(32), nullable=False),
    Column("trigger", String(32), nullable=False),
    Column("reason", Text, nullable=False, default=""),
    Column("spec", Text, nullable=False),  # the normalized JobSpec in proto3 JSON
    Column("state", String(16), nullable=False),
    Column("stage", String(32), nullable=False, default=""),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float, nullable=True),
    Column("finished_at", Float, nullable=True),
    Column("updated_at", Float, nullable=False),
    Column("error", Text, nullable=False, default=""),
    Column("mlflow_run_id", String(64), nullable=False, default=""),
    Column("logged_model_id", String(64), nullable=False, default=""),
    Column("registered_version", BigInteger, nullable=False, default=0),
    Column("progress", BigInteger, nullable=False, default=0),
    Column("progress_total", BigInteger, nullable=False, default=0),
    Column("metrics", Text, nullable=False, default="{}"),
    Column("runner", String(32), nullable=False, default=""),
    Column("runner_ref", Text, nullable=False, default="{}"),  # how the runner finds the job again
    Column("owner", String(256), nullable=False, default=""),  # the service instance that started it
    Column("attempt", Integer, nullable=False, default=0),
    Column("training_set_hash", String(128), nullable=False, default=""),
    Column("training_rows", BigInteger, nullable=False, default=0),
    Column("cancel_requested", Boolean, nullable=False, default=False),
    Column("revision", BigInteger, nullable=False, default=1),
    Index("ix_training_jobs_state", "state"),
    Index("ix_training_jobs_model_created", "model_name", "created_at"),
    Index("ix_training_jobs_created", "created_at", "job_id"),
)

drift_decisions = Table(
    "training_drift_decisions",
    metadata,
    Column("event_id", String(128), primary_key=True),
    Column("model_name", String(128), nullable=False),
    Column("model_version", BigInteger, nullable=False, default=0),
    Column("decided_at", Float, nullable=False),
    Column("decision", String(16), nullable=False),  # "submitted" or "skipped"
    Column("reason", Text, nullable=False),
    Column("job_id", String(64), nullable=False, default=""),
)


@dataclass(frozen=True)
class JobRecord:
    job_id: str
    model_name: str
    family: str
    trigger: str
    reason: str
    spec: str
    state: str
    created_at: float
    updated_at: float
    idempotency_key: str | None = None
    stage: str = ""
    started_at: float | None = None
    finished_at: float | None = None
    error: str = ""
    mlflow_run_id: str = ""
    logged_model_id: str = ""
    registered_version: int = 0
    progress: int = 0
    progress_total: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    runner: str = ""
    runner_ref: dict[str, Any] = field(default_factory=dict)
    owner: str = ""
    attempt: int = 0
    training_set_hash: str = ""
    training_rows: int = 0
    cancel_requested: bool = False
    revision: int = 1

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL


@dataclass(frozen=True)
class DriftDecision:
    event_id: str
    model_name: str
    model_version: int
    decided_at: float
    decision: str
    reason: str
    job_id: str = ""


_JSON_FIELDS = ("metrics", "runner_ref")


def _record(row: RowMapping) -> JobRecord:
    values = dict(row)
    for name in _JSON_FIELDS:
        values[name] = json.loads(values[name] or "{}")
    return JobRecord(**values)


def _columns(values: dict[str, Any]) -> dict[str, Any]:
    out = dict(values)
    for name in _JSON_FIELDS:
        if name in out:
            out[name] = json.dumps(out[name], sort_keys=True)
    return out


def encode_page_token(created_at: float, job_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([created_at, job_id]).encode()).decode()


def decode_page_token(token: str) -> tuple[float, str]:
    """(created_at, job_id) of the last job of the previous page; ValueError when the token is not ours."""
    try:
        created_at, job_id = json.loads(base64.urlsafe_b64decode(token.encode()))
        return float(created_at), str(job_id)
    except Exception as exc:
        raise ValueError("page_token is not a token this service returned") from exc


class JobStore:
    """Jobs and drift decisions in one SQL database (SQLite or Postgres)."""

    def __init__(self, url: str) -> None:
        self.url = url
        if url.startswith("sqlite"):
            database = make_url(url).database
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            # One connection per use, WAL, and a busy timeout: the service's threads share the file safely.
            self.engine: Engine = create_engine(url, poolclass=NullPool, connect_args={"timeout": 30})

            @event.listens_for(self.engine, "connect")
            def _sqlite_pragmas(dbapi_connection: Any, _: Any) -> None:
                cursor = dbapi_connection.cursor()
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")
                cursor.close()
        else:
            self.engine = create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)

    def create_schema(self) -> None:
        metadata.create_all(self.engine)

    def ping(self) -> bool:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True

    def close(self) -> None:
        self.engine.dispose()

    # ---- jobs ------------------------------------------------------------------------------------
    def insert(self, record: JobRecord) -> tuple[JobRecord, bool]:
        """Insert a new job; with an idempotency key already used, the existing job and False."""
        values = _columns({k: getattr(record, k) for k in jobs.columns.keys()})  # noqa: SIM118 - a ColumnCollection
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(jobs).values(**values))
        except IntegrityError:
            if record.idempotency_key:
                existing = self.by_idempotency_key(record.idempotency_key)
                if existing is not None:
                    return existing, False
            raise
        return record, True

    def get(self, job_id: str) -> JobRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(jobs).where(jobs.c.job_id == job_id)).mappings().first()
        return _record(row) if row is not None else None

    def by_idempotency_key(self, key: str) -> JobRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(jobs).where(jobs.c.idempotency_key == key)).mappings().first()
        return _record(row) if row is not None else None

    def find(
        self,
        *,
        states: Iterable[str] = (),
        model_name: str = "",
        trigger: str = "",
        limit: int = 50,
        after: tuple[float, str] | None = None,
        oldest_first: bool = False,
    ) -> list[JobRecord]:
        """Jobs matching every given filter, newest first (or oldest first), after a page boundary."""
        query = select(jobs)
        wanted = list(states)
        if wanted:
            query = query.where(jobs.c.state.in_(wanted))
        if model_name:
            query = query.where(jobs.c.model_name == model_name)
        if trigger:
            query = query.where(jobs.c.trigger == trigger)
        if after is not None:
            created_at, job_id = after
            if oldest_first:
                query = query.where(or_(jobs.c.created_at > created_at,
                                        and_(jobs.c.created_at == created_at, jobs.c.job_id > job_id)))
            else:
                query = query.where(or_(jobs.c.created_at < created_at,
                                        and_(jobs.c.created_at == created_at, jobs.c.job_id < job_id)))
        if oldest_first:
            query = query.order_by(jobs.c.created_at.asc(), jobs.c.job_id.asc())
        else:
            query = query.order_by(jobs.c.created_at.desc(), jobs.c.job_id.desc())
        with self.engine.connect() as conn:
            rows = conn.execute(query.limit(limit)).mappings().all()
        return [_record(r) for r in rows]

    def count(self, state: str) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(jobs).where(jobs.c.state == state)).scalar_one())

    def transition(
        self, job_id: str, *, from_states: Sequence[str] | None, **values: Any
    ) -> JobRecord | None:
        """Update a job if it is in one of `from_states` (any state when None); the new record, or None."""
        values = _columns(values)
        values["updated_at"] = values.get("updated_at", time.time())
        values["revision"] = jobs.c.revision + 1
        statement = update(jobs).where(jobs.c.job_id == job_id)
        if from_states is not None:
            statement = statement.where(jobs.c.state.in_(list(from_states)))
        with self.engine.begin() as conn:
            result = conn.execute(statement.values(**values))
            if result.rowcount != 1:
                return None
            row = conn.execute(select(jobs).where(jobs.c.job_id == job_id)).mappings().first()
        return _record(row) if row is not None else None

    def claim_next(self, *, owner: str, runner: str) -> JobRecord | None:
        """Move the oldest PENDING job to RUNNING for `owner`; None when none is pending (or all were taken)."""
        for candidate in self.find(states=[PENDING], limit=5, oldest_first=True):
            if candidate.cancel_requested:
                continue
            now = time.time()
            claimed = self.transition(
                candidate.job_id, from_states=[PENDING], state=RUNNING, stage="starting", started_at=now,
                owner=owner, runner=runner, attempt=candidate.attempt + 1, error="",
            )
            if claimed is not None:
                return claimed
        return None

    # ---- drift decisions -------------------------------------------------------------------------
    def drift_decision(self, event_id: str) -> DriftDecision | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(drift_decisions).where(drift_decisions.c.event_id == event_id)).mappings().first()
        return DriftDecision(**dict(row)) if row is not None else None

    def record_drift_decision(self, decision: DriftDecision) -> bool:
        """Record a decision; False if the event already had one (a redelivery)."""
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(drift_decisions).values(**decision.__dict__))
        except IntegrityError:
            return False
        return True

    def drift_decisions(self, model_name: str) -> list[DriftDecision]:
        query = (select(drift_decisions).where(drift_decisions.c.model_name == model_name)
                 .order_by(drift_decisions.c.decided_at.asc()))
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [DriftDecision(**dict(r)) for r in rows]


def new_record(**values: Any) -> JobRecord:
    """A PENDING job record stamped now."""
    now = time.time()
    base = JobRecord(
        job_id="", model_name="", family="", trigger="", reason="", spec="", state=PENDING, created_at=now,
        updated_at=now, stage="queued",
    )
    return replace(base, **values)
