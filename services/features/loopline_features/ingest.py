"""Streaming ingestion: raw events from Kafka -> windowed aggregates by event time -> Feast push sources.

Restart safety comes from a durable state store (SQLite, `<data_dir>/stream-state.db`) and an outbox:

1. The Kafka handler, in ONE SQLite transaction: skips the event if its `event_id` is already stored
   (a redelivery after a crash, or a producer retry), drops it if it is later than the lateness bound,
   stores it, recomputes every affected view for the entity as of the entity's newest event time, and
   writes those rows to the outbox. Only when that transaction has committed does the handler return,
   and only then does `ConsumerLoop` commit the Kafka offset.
2. The pusher thread drains the outbox through Feast push sources: online every `push_interval`
   (only the newest row per entity and view), and to the offline history every `offline_flush`.
   A row leaves the outbox only after its push succeeded, so a crash repeats a push (idempotent: the
   same values for the same entity and event time) and never loses one.

So after a crash the aggregates neither miss an event (the offset was not committed before the event
was durably stored) nor count one twice (event ids are unique in the state).

Event time and lateness: each partition has a watermark, the newest event time seen on it (per
partition, so that catching up on a backlog, where one partition may be read far ahead of another,
never makes the others' events look late). An event older than its partition's `watermark -
allowed_lateness` is dropped and counted (`ingest_events_total{outcome="late"}`); a late event within
the bound is added to its windows and the entity's rows are recomputed and pushed again, with the same
event time (the entity's newest) and a newer `created`. Events older than the lowest watermark minus
the largest window and the lateness bound are pruned. Which events count therefore depends only on the
order of each partition, not on how partitions interleave.

One ingester per state store: merchant aggregates need every event of a merchant, and the topic is
keyed by customer, so the consumer group has a single member (documented in the README).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd  # type: ignore[import-untyped]
from kafka.consumer.fetcher import ConsumerRecord

from loopline.events.v1 import workload_pb2
from loopline_common.kafka_io import PoisonMessage
from loopline_features.aggregates import CREATED, TIMESTAMP, StreamView
from loopline_features.metrics import FeaturesMetrics

log = logging.getLogger(__name__)

APPLIED, DUPLICATE, LATE, IGNORED = "applied", "duplicate", "late", "ignored"
_MICROS = 1_000_000


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _number(value: Any) -> float | None:
    """A WorkloadEvent field as a number for aggregation (bools are 0/1; strings are not numbers)."""
    kind = value.WhichOneof("kind")
    if kind in ("double_value", "int64_value"):
        return float(getattr(value, kind))
    if kind == "bool_value":
        return 1.0 if value.bool_value else 0.0
    return None


def _select(view: StreamView) -> str:
    parts = []
    for agg in view.aggregates:
        if agg.function == "count":
            parts.append("COUNT(*)")
        else:
            column = _quote(f"f_{agg.field}")
            parts.append({"sum": f"TOTAL({column})", "mean": f"AVG({column})", "max": f"MAX({column})"}[agg.function])
    key = _quote(f"k_{view.join_key}")
    # Identifiers come from the repo's declarations and are quoted; values are bound parameters.
    return f"SELECT {', '.join(parts)} FROM events WHERE {key} = ? AND ts > ? AND ts <= ?"  # noqa: S608


class StreamState:
    """The durable state of the ingester: stored events, the watermark, and the outbox."""

    def __init__(self, *, path: Path, views: Sequence[StreamView], allowed_lateness_seconds: float) -> None:
        self.path = path
        self.views = list(views)
        self.lateness_us = int(allowed_lateness_seconds * _MICROS)
        self.keys = sorted({v.join_key for v in self.views})
        self.fields = sorted({f for v in self.views for f in v.fields})
        self.max_window_us = max((v.window_seconds for v in self.views), default=0) * _MICROS
        self._sql = {v.name: _select(v) for v in self.views}
        self._newest_sql = {
            v.join_key: f"SELECT MAX(ts) FROM events WHERE {_quote('k_' + v.join_key)} = ?"  # noqa: S608
            for v in self.views
        }
        self._since_prune = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = self.connect()
        self._create()

    def connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes (not power loss)
        return conn

    def _create(self) -> None:
        conn = self.conn
        conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS events (event_id TEXT PRIMARY KEY, source TEXT NOT NULL, ts INTEGER NOT NULL)"
        )
        existing = {row[1] for row in conn.execute("PRAGMA table_info(events)")}
        for key in self.keys:
            if f"k_{key}" not in existing:
                conn.execute(f"ALTER TABLE events ADD COLUMN {_quote('k_' + key)} TEXT")
            conn.execute(
                f"CREATE INDEX IF NOT EXISTS {_quote('events_by_' + key)} ON events ({_quote('k_' + key)}, ts)"
            )
        for field in self.fields:
            if f"f_{field}" not in existing:
                conn.execute(f"ALTER TABLE events ADD COLUMN {_quote('f_' + field)} REAL")
        conn.execute("CREATE INDEX IF NOT EXISTS events_by_ts ON events (ts)")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, view TEXT NOT NULL, "
            "push_source TEXT NOT NULL, entity TEXT NOT NULL, ts INTEGER NOT NULL, created INTEGER NOT NULL, "
            "payload TEXT NOT NULL, online INTEGER NOT NULL DEFAULT 0, offline INTEGER NOT NULL DEFAULT 0)"
        )
        quoted = [_quote("k_" + k) for k in self.keys] + [_quote("f_" + f) for f in self.fields]
        columns = ", ".join(["event_id", "source", "ts", *quoted])
        marks = ", ".join("?" * (3 + len(self.keys) + len(self.fields)))
        # Quoted identifiers from the declarations; values are bound parameters.
        self._insert = f"INSERT INTO events ({columns}) VALUES ({marks})"  # noqa: S608

    def watermark_us(self, partition: str | None = None) -> int:
        """The newest event time seen on `partition`, or the lowest over partitions (0 before any)."""
        if partition is None:
            row = self.conn.execute("SELECT MIN(value) FROM meta WHERE key LIKE 'watermark:%'").fetchone()
        else:
            row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (f"watermark:{partition}",)).fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def apply(self, event: workload_pb2.WorkloadEvent, *, now_us: int, partition: str = "0") -> tuple[str, int]:
        """Store one event read from `partition` and queue the rows it changes; returns (outcome, rows queued)."""
        event_id = event.meta.event_id
        if not event_id:
            raise PoisonMessage("event has no meta.event_id, so it cannot be de-duplicated")
        if not event.HasField("event_time"):
            raise PoisonMessage(f"event {event_id} has no event_time")
        views = [v for v in self.views if v.source == event.source and event.entity_keys.get(v.join_key)]
        if not views:
            return IGNORED, 0
        ts = event.event_time.ToMicroseconds()
        numbers = {name: _number(value) for name, value in event.fields.items()}
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            if conn.execute("SELECT 1 FROM events WHERE event_id = ?", (event_id,)).fetchone():
                conn.execute("ROLLBACK")
                return DUPLICATE, 0
            watermark = self.watermark_us(partition)
            if watermark and ts < watermark - self.lateness_us:
                conn.execute("ROLLBACK")
                return LATE, 0
            conn.execute(
                self._insert,
                (
                    event_id, event.source, ts,
                    *(event.entity_keys.get(k) or None for k in self.keys),
                    *(numbers.get(f) for f in self.fields),
                ),
            )
            if ts > watermark:
                conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (f"watermark:{partition}", ts))
            queued = 0
            for view in views:
                entity = event.entity_keys[view.join_key]
                newest = conn.execute(self._newest_sql[view.join_key], (entity,)).fetchone()[0]
                window = view.window_seconds * _MICROS
                row = conn.execute(self._sql[view.name], (entity, newest - window, newest)).fetchone()
                payload = {}
                for agg, value in zip(view.aggregates, row, strict=True):
                    if value is None or (isinstance(value, float) and math.isnan(value)):
                        value = 0
                    payload[agg.feature] = int(value) if agg.integer else float(value)
                conn.execute(
                    "INSERT INTO outbox (view, push_source, entity, ts, created, payload) VALUES (?, ?, ?, ?, ?, ?)",
                    (view.name, view.push_source, entity, newest, now_us, json.dumps(payload)),
                )
                queued += 1
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self._since_prune += 1
        if self._since_prune >= 1000:
            self._since_prune = 0
            self.prune()
        return APPLIED, queued

    def prune(self) -> int:
        """Forget events no window can reach any more; returns how many."""
        watermark = self.watermark_us()
        if not watermark:
            return 0
        cursor = self.conn.execute(
            "DELETE FROM events WHERE ts < ?", (watermark - self.max_window_us - self.lateness_us,)
        )
        return int(cursor.rowcount)


class Pusher:
    """Drains the outbox through Feast push sources (see the module docstring)."""

    def __init__(
        self,
        *,
        state_path: Path,
        views: Sequence[StreamView],
        push: Callable[[str, pd.DataFrame, bool], None],
        metrics: FeaturesMetrics,
        push_interval_seconds: float,
        offline_flush_seconds: float,
    ) -> None:
        self.views = {v.name: v for v in views}
        self.state_path = state_path
        self.push = push
        self.metrics = metrics
        self.push_interval = push_interval_seconds
        self.offline_flush = offline_flush_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_offline = time.monotonic()
        self.conn: sqlite3.Connection | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="outbox-pusher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        with _suppress():
            self.drain(offline=True)  # push what is left, online and offline, before exiting

    def _run(self) -> None:
        while not self._stop.wait(self.push_interval):
            offline = time.monotonic() - self._last_offline >= self.offline_flush
            try:
                self.drain(offline=offline)
            except Exception as exc:  # the store is down: rows stay in the outbox, retried next round
                self.metrics.push_errors.labels("online" if not offline else "offline").inc()
                log.warning("pushing the outbox failed; will retry: %s", exc)
            if offline:
                self._last_offline = time.monotonic()

    def _connection(self) -> sqlite3.Connection:
        if self.conn is None:
            self.conn = sqlite3.connect(self.state_path, timeout=30, isolation_level=None, check_same_thread=False)
        return self.conn

    def pending(self) -> int:
        """Rows not yet pushed online (its own connection: called from the metrics endpoint's thread)."""
        with contextlib.closing(sqlite3.connect(self.state_path, timeout=5)) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM outbox WHERE online = 0").fetchone()[0])

    def drain(self, *, offline: bool) -> int:
        """Push pending rows online (and, when `offline`, to the history); returns rows pushed online."""
        conn = self._connection()
        pushed = 0
        while True:
            rows = conn.execute(
                "SELECT seq, view, push_source, entity, ts, created, payload FROM outbox WHERE online = 0 "
                "ORDER BY seq LIMIT 5000"
            ).fetchall()
            if not rows:
                break
            latest: dict[tuple[str, str], tuple[Any, ...]] = {}
            for row in rows:  # only the newest row per (view, entity) matters online
                latest[(row[1], row[3])] = row
            for view_name, frame in self._frames(list(latest.values())).items():
                view = self.views[view_name]
                self.push(view.push_source, frame, False)
                self.metrics.online_rows.labels(view_name).inc(len(frame))
                self.metrics.mark_fresh(view_name, frame[TIMESTAMP].max().timestamp())
            conn.execute("UPDATE outbox SET online = 1 WHERE seq BETWEEN ? AND ?", (rows[0][0], rows[-1][0]))
            pushed += len(rows)
        if offline:
            while True:
                rows = conn.execute(
                    "SELECT seq, view, push_source, entity, ts, created, payload FROM outbox WHERE offline = 0 "
                    "AND online = 1 ORDER BY seq LIMIT 20000"
                ).fetchall()
                if not rows:
                    break
                for view_name, frame in self._frames(rows).items():
                    self.push(self.views[view_name].push_source, frame, True)
                    self.metrics.offline_rows.labels(view_name).inc(len(frame))
                conn.executemany("UPDATE outbox SET offline = 1 WHERE seq = ?", [(r[0],) for r in rows])
            conn.execute("DELETE FROM outbox WHERE online = 1 AND offline = 1")
        return pushed

    def _frames(self, rows: list[tuple[Any, ...]]) -> dict[str, pd.DataFrame]:
        by_view: dict[str, list[tuple[Any, ...]]] = {}
        for row in rows:
            by_view.setdefault(row[1], []).append(row)
        frames = {}
        for name, items in by_view.items():
            view = self.views.get(name)
            if view is None:  # a view removed from the repo since the row was queued
                continue
            data: dict[str, Any] = {
                view.join_key: [r[3] for r in items],
                TIMESTAMP: pd.to_datetime([r[4] for r in items], unit="us", utc=True),
                CREATED: pd.to_datetime([r[5] for r in items], unit="us", utc=True),
            }
            payloads = [json.loads(r[6]) for r in items]
            for agg in view.aggregates:
                data[agg.feature] = pd.Series(
                    [p.get(agg.feature, 0) for p in payloads], dtype="int64" if agg.integer else "float64"
                )
            frame = pd.DataFrame(data)
            frame[TIMESTAMP] = frame[TIMESTAMP].astype("datetime64[us, UTC]")
            frame[CREATED] = frame[CREATED].astype("datetime64[us, UTC]")
            frames[name] = frame[view.columns]
        return frames


class _suppress:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        if exc[1] is not None:
            log.warning("final outbox drain failed: %s", exc[1])
        return True


class Ingester:
    """The Kafka handler: decode is done by ConsumerLoop; this applies each event to the state."""

    def __init__(self, *, state: StreamState, metrics: FeaturesMetrics) -> None:
        self.state = state
        self.metrics = metrics

    def __call__(self, event: workload_pb2.WorkloadEvent, record: ConsumerRecord) -> None:
        now = time.time()
        outcome, _ = self.state.apply(
            event, now_us=int(now * _MICROS), partition=f"{record.topic}/{record.partition}"
        )
        self.metrics.ingested.labels(outcome).inc()
        if outcome == APPLIED:
            self.metrics.event_lag.observe(max(0.0, now - event.event_time.ToMicroseconds() / _MICROS))
        elif outcome == LATE:
            log.info("dropped late event %s (beyond the lateness bound)", event.meta.event_id)
