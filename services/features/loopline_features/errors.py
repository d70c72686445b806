"""Translation of upstream (Feast, Redis, SQLite) failures into Loopline errors."""

from __future__ import annotations

import sqlite3

from redis import exceptions as redis_errors

from loopline_common.errors import LooplineError, NotFound, Unavailable

# Failures that mean "the online store cannot be reached right now".
STORE_DOWN: tuple[type[BaseException], ...] = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    redis_errors.BusyLoadingError,
    ConnectionError,
    TimeoutError,
    sqlite3.OperationalError,
)


def translate(exc: BaseException, *, what: str) -> LooplineError | None:
    """The Loopline error for a known upstream failure while doing `what`, or None if it is unknown."""
    if isinstance(exc, LooplineError):
        return exc
    if isinstance(exc, STORE_DOWN):
        return Unavailable(f"{what}: the store is unavailable ({type(exc).__name__}: {exc})")
    name = type(exc).__name__
    if name in {"FeatureServiceNotFoundException", "FeatureViewNotFoundException", "EntityNotFoundException",
                "DataSourceObjectNotFoundException", "OnDemandFeatureViewNotFoundException"}:
        return NotFound(f"{what}: {exc}")
    return None
