"""What every client shares: one `ServiceClient` (deadline, token, request id, safe retries) and its stub."""

from __future__ import annotations

from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

from google.protobuf.timestamp_pb2 import Timestamp

from loopline_common.grpc_client import RetryPolicy, ServiceClient

# Retries only ever happen for calls marked idempotent, and only on UNAVAILABLE or DEADLINE_EXCEEDED
# (loopline_common.grpc_client.RETRYABLE), with full-jitter exponential back-off inside the call's deadline.
DEFAULT_RETRY = RetryPolicy(max_attempts=4, initial_backoff=0.1, max_backoff=2.0)


class BaseClient:
    """A client of one Loopline service over gRPC. Use as a context manager, or call `close()`."""

    service = ""

    def __init__(
        self,
        target: str,
        *,
        token: str | None = None,
        timeout: float = 10.0,
        retry: RetryPolicy = DEFAULT_RETRY,
        max_message_bytes: int = 16 * 1024 * 1024,
    ) -> None:
        self.target = target
        self.client = ServiceClient(service=self.service, target=target, token=token, timeout=timeout, retry=retry,
                                    max_message_bytes=max_message_bytes)
        self.stub: Any = self._stub(self.client.channel)

    def _stub(self, channel: Any) -> Any:
        raise NotImplementedError

    def _read(self, method: str, request: Any, *, timeout: float | None = None) -> Any:
        """A call that changes nothing: retried on UNAVAILABLE and DEADLINE_EXCEEDED."""
        return self.client.call(getattr(self.stub, method), request, idempotent=True, timeout=timeout)

    def _write(self, method: str, request: Any, *, idempotent: bool = False, timeout: float | None = None) -> Any:
        """A call that changes state: never retried unless the server de-duplicates it (`idempotent`)."""
        return self.client.call(getattr(self.stub, method), request, idempotent=idempotent, timeout=timeout)

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def when(stamp: Timestamp, present: bool = True) -> datetime | None:
    """A protobuf Timestamp as an aware UTC datetime (None when unset)."""
    if not present or (stamp.seconds == 0 and stamp.nanos == 0):
        return None
    return stamp.ToDatetime(tzinfo=UTC)


def stamp(moment: datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(moment if moment.tzinfo else moment.replace(tzinfo=UTC))
    return out
