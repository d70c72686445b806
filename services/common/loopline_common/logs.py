"""JSON logging, configured once per process, with the service name and the current request id.

Each line on stdout is one JSON object: time, level, service, logger, message, request_id, plus any
`extra=` fields and, for errors, the traceback. The request id lives in a context variable that the
HTTP middleware and the gRPC interceptor set for the duration of a call (and that asyncio tasks copy).
"""

from __future__ import annotations

import contextvars
import logging
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from pythonjsonlogger.json import JsonFormatter

_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("loopline_request_id", default="")

# Longest request id accepted from a caller; longer or odd ones are replaced by a fresh id.
MAX_REQUEST_ID_LENGTH = 128


def current_request_id() -> str:
    return _request_id.get()


def new_request_id() -> str:
    return uuid.uuid4().hex


def accept_request_id(candidate: str | None) -> str:
    """The caller's request id when it is sane (printable, bounded), else a new one."""
    if candidate and len(candidate) <= MAX_REQUEST_ID_LENGTH and candidate.isprintable():
        return candidate
    return new_request_id()


@contextmanager
def request_context(request_id: str) -> Iterator[str]:
    token = _request_id.set(request_id)
    try:
        yield request_id
    finally:
        _request_id.reset(token)


class _ContextFilter(logging.Filter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.service
        if not getattr(record, "request_id", None):
            record.request_id = _request_id.get()
        return True


def configure_logging(*, service: str, level: str = "INFO", stream: object = None) -> None:
    """Send every logger's records to `stream` (stdout by default) as JSON lines; idempotent."""
    handler = logging.StreamHandler(stream or sys.stdout)  # type: ignore[arg-type]
    handler.setFormatter(
        JsonFormatter(
            "{asctime}{levelname}{service}{name}{message}{request_id}",
            style="{",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            timestamp=False,
        )
    )
    handler.addFilter(_ContextFilter(service))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # uvicorn's access log repeats what the metrics middleware records; keep its errors only.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    logging.getLogger("kafka").setLevel(logging.WARNING)
