"""The state store: everything monitoring must not lose when it restarts, in one SQLite file.

The consumer commits a Kafka offset only after the handler returned, and the handler returns only after the
state the records produced is committed here, in one transaction per batch: the records added to open
windows, the closed windows' results, the alert state, the canary records and the events still to publish.
A restart therefore resumes exactly where the last transaction left it, and a batch delivered again (after
a crash between this commit and Kafka's) is recognised by its request ids, which the canary records hold.

WAL mode with synchronous=NORMAL: a committed transaction survives the process being killed; a power loss
may lose the last transactions, which Kafka then delivers again.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
    key TEXT PRIMARY KEY,           -- JSON [model, version, track]
    state TEXT NOT NULL             -- JSON: open window (seq, start, end, count), closed count, alert
);
CREATE TABLE IF NOT EXISTS window_chunks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL,
    seq INTEGER NOT NULL,
    data BLOB NOT NULL              -- frames.Frame
);
CREATE INDEX IF NOT EXISTS window_chunks_key ON window_chunks (key, seq);
CREATE TABLE IF NOT EXISTS results (
    key TEXT NOT NULL,
    seq INTEGER NOT NULL,
    data BLOB NOT NULL,             -- monitoring.v1.DriftWindowResult
    PRIMARY KEY (key, seq)
);
CREATE TABLE IF NOT EXISTS canary_chunks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    model TEXT NOT NULL,
    newest REAL NOT NULL,
    data BLOB NOT NULL              -- frames.CanaryFrame
);
CREATE INDEX IF NOT EXISTS canary_chunks_model ON canary_chunks (model, newest);
CREATE TABLE IF NOT EXISTS outbox (
    id TEXT PRIMARY KEY,            -- the event id
    topic TEXT NOT NULL,
    key TEXT NOT NULL,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS profiles (
    model TEXT NOT NULL,
    version INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (model, version)
);
CREATE TABLE IF NOT EXISTS skew_samples (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    model TEXT NOT NULL,
    version INTEGER NOT NULL,
    data TEXT NOT NULL              -- JSON: request id, time, entity ids, served values
);
CREATE TABLE IF NOT EXISTS skew_stats (
    model TEXT NOT NULL,
    version INTEGER NOT NULL,
    data TEXT NOT NULL,             -- JSON: per-feature counters and value reservoirs
    PRIMARY KEY (model, version)
);
"""


@dataclass
class Changes:
    """What one batch (or one tick) changed, written in one transaction."""

    key_states: dict[str, dict[str, Any]] = field(default_factory=dict)
    window_chunks: list[tuple[str, int, bytes]] = field(default_factory=list)
    closed_windows: list[tuple[str, int]] = field(default_factory=list)  # (key, seq): drop its chunks
    results: list[tuple[str, int, bytes]] = field(default_factory=list)
    canary_chunks: list[tuple[str, float, bytes]] = field(default_factory=list)
    canary_prune: list[tuple[str, float]] = field(default_factory=list)  # (model, drop chunks older than)
    outbox: list[tuple[str, str, str, bytes]] = field(default_factory=list)
    skew_samples: list[tuple[str, int, str]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return any(
            (self.key_states, self.window_chunks, self.closed_windows, self.results, self.canary_chunks,
             self.canary_prune, self.outbox, self.skew_samples)
        )


class Store:
    """SQLite, one connection shared by the service's threads under a lock."""

    def __init__(self, path: Path, *, keep_results: int = 500) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.keep_results = keep_results
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def ping(self) -> bool:
        with self._lock:
            self._db.execute("SELECT 1").fetchone()
        return True

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def apply(self, changes: Changes) -> None:
        if not changes:
            return
        with self._transaction() as db:
            db.executemany(
                "INSERT INTO keys (key, state) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET state = excluded.state",
                [(k, json.dumps(v)) for k, v in changes.key_states.items()],
            )
            db.executemany("INSERT INTO window_chunks (key, seq, data) VALUES (?, ?, ?)", changes.window_chunks)
            db.executemany("DELETE FROM window_chunks WHERE key = ? AND seq <= ?", changes.closed_windows)
            db.executemany("INSERT OR REPLACE INTO results (key, seq, data) VALUES (?, ?, ?)", changes.results)
            for key, seq, _ in changes.results:
                db.execute("DELETE FROM results WHERE key = ? AND seq <= ?", (key, seq - self.keep_results))
            db.executemany("INSERT INTO canary_chunks (model, newest, data) VALUES (?, ?, ?)", changes.canary_chunks)
            db.executemany("DELETE FROM canary_chunks WHERE model = ? AND newest < ?", changes.canary_prune)
            db.executemany("INSERT OR IGNORE INTO outbox (id, topic, key, data) VALUES (?, ?, ?, ?)", changes.outbox)
            db.executemany("INSERT INTO skew_samples (model, version, data) VALUES (?, ?, ?)", changes.skew_samples)

    # ---- reads at start-up -------------------------------------------------------------------------------
    def key_states(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT key, state FROM keys").fetchall()
        return {k: json.loads(s) for k, s in rows}

    def window_chunks(self, key: str, seq: int) -> list[bytes]:
        with self._lock:
            rows = self._db.execute(
                "SELECT data FROM window_chunks WHERE key = ? AND seq = ? ORDER BY id", (key, seq)
            ).fetchall()
        return [r[0] for r in rows]

    def results(self, key: str, limit: int) -> list[bytes]:
        """The newest `limit` results of a key, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT data FROM results WHERE key = ? ORDER BY seq DESC LIMIT ?", (key, limit)
            ).fetchall()
        return [r[0] for r in reversed(rows)]

    def canary_chunks(self) -> list[tuple[str, bytes]]:
        with self._lock:
            rows = self._db.execute("SELECT model, data FROM canary_chunks ORDER BY id").fetchall()
        return [(m, d) for m, d in rows]

    # ---- outbox ---------------------------------------------------------------------------------------
    def outbox(self, limit: int = 500) -> list[tuple[str, str, str, bytes]]:
        with self._lock:
            rows = self._db.execute("SELECT id, topic, key, data FROM outbox ORDER BY rowid LIMIT ?", (limit,))
            return [(i, t, k, d) for i, t, k, d in rows.fetchall()]

    def delete_outbox(self, ids: list[str]) -> None:
        with self._transaction() as db:
            db.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in ids])

    # ---- profiles -------------------------------------------------------------------------------------
    def profile(self, model: str, version: int) -> bytes | None:
        with self._lock:
            row = self._db.execute(
                "SELECT data FROM profiles WHERE model = ? AND version = ?", (model, version)
            ).fetchone()
        return row[0] if row else None

    def save_profile(self, model: str, version: int, data: bytes) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO profiles (model, version, data) VALUES (?, ?, ?)", (model, version, data)
            )

    # ---- skew -----------------------------------------------------------------------------------------
    def skew_samples(self, limit: int) -> list[tuple[int, str, int, str]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, model, version, data FROM skew_samples ORDER BY id LIMIT ?", (limit,)
            ).fetchall()
        return [(i, m, v, d) for i, m, v, d in rows]

    def prune_skew_samples(self, *, keep: int) -> None:
        """Keep the newest `keep` samples (the features service may be away for long)."""
        with self._transaction() as db:
            db.execute(
                "DELETE FROM skew_samples WHERE id <= (SELECT MAX(id) FROM skew_samples) - ?", (keep,)
            )

    def skew_stats(self) -> dict[tuple[str, int], dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT model, version, data FROM skew_stats").fetchall()
        return {(m, v): json.loads(d) for m, v, d in rows}

    def save_skew(self, *, done: list[int], stats: dict[tuple[str, int], dict[str, Any]]) -> None:
        with self._transaction() as db:
            db.executemany("DELETE FROM skew_samples WHERE id = ?", [(i,) for i in done])
            db.executemany(
                "INSERT OR REPLACE INTO skew_stats (model, version, data) VALUES (?, ?, ?)",
                [(m, v, json.dumps(s)) for (m, v), s in stats.items()],
            )
