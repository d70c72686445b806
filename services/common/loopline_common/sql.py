"""The SQL store set-up services share (the registry's audit and outbox, the rollout controller's state):
one engine for SQLite (embedded) or Postgres (cluster), bounded everywhere, and a schema created once the
database answers. Needs SQLAlchemy, which only the services that keep SQL state install."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, MetaData, create_engine, event, text
from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)


class SqlStore:
    """Base of a service's store: `self.engine`, `self.dialect` ("sqlite" or "postgresql"), and the
    schema of the subclass's `metadata`."""

    metadata: MetaData

    def __init__(self, url: str) -> None:
        self.url = url
        self.dialect = url.split(":", 1)[0].split("+", 1)[0]
        if self.dialect == "sqlite":
            database = make_url(url).database
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            self.engine: Engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 10})
            event.listen(self.engine, "connect", _sqlite_pragmas)
        else:
            # Bounded: connecting, waiting for a pooled connection, and each statement.
            self.engine = create_engine(
                url, pool_pre_ping=True, pool_size=5, max_overflow=5, pool_timeout=10,
                connect_args={"connect_timeout": 10, "options": "-c statement_timeout=15000"},
            )

    def create_schema(self, *, timeout: float = 30.0) -> None:
        """Create the tables that do not exist; retries while the database is not reachable yet."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.metadata.create_all(self.engine)
                return
            except Exception as exc:
                if time.monotonic() >= deadline:
                    raise
                log.warning("store not reachable yet: %s", type(exc).__name__)
                time.sleep(1.0)

    def ping(self) -> bool:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True

    def close(self) -> None:
        self.engine.dispose()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")  # a committed change survives a crash of the machine too
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()
