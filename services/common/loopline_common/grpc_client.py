"""Calling Loopline services over gRPC: deadlines, auth token, request id, retries, error translation.

`ServiceClient` wraps a channel for one service. Every call has a deadline; it carries the caller's
request id (or a fresh one) and, when configured, `authorization: Bearer <token>`. A failed call raises
the `LooplineError` the server answered (rebuilt from the `loopline-error-bin` trailer, or from the
gRPC status when the server is not a Loopline service). Retries happen only for idempotent calls and
only on UNAVAILABLE (and DEADLINE_EXCEEDED, for idempotent reads), with exponential back-off and jitter,
within the call's overall deadline.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc

from loopline.common.v1 import types_pb2
from loopline_common.errors import (
    GRPC_ERROR_DETAIL_KEY,
    REQUEST_ID_KEY,
    STATUS_TABLE,
    ErrorCode,
    LooplineError,
    error_for,
)
from loopline_common.logs import current_request_id, new_request_id

R = TypeVar("R")

_CODE_FOR_GRPC: dict[grpc.StatusCode, ErrorCode] = {}
for _code, _status in STATUS_TABLE.items():
    _CODE_FOR_GRPC.setdefault(_status.grpc, _code)
_CODE_FOR_GRPC[grpc.StatusCode.UNKNOWN] = ErrorCode.INTERNAL
_CODE_FOR_GRPC[grpc.StatusCode.DATA_LOSS] = ErrorCode.INTERNAL
_CODE_FOR_GRPC[grpc.StatusCode.OUT_OF_RANGE] = ErrorCode.INVALID_ARGUMENT

RETRYABLE = frozenset({ErrorCode.UNAVAILABLE, ErrorCode.DEADLINE_EXCEEDED})


def error_from_rpc(exc: grpc.RpcError, *, service: str = "") -> LooplineError:
    """The LooplineError a failed call stands for (the server's own when it sent one)."""
    trailers = dict(exc.trailing_metadata() or ()) if hasattr(exc, "trailing_metadata") else {}
    raw = trailers.get(GRPC_ERROR_DETAIL_KEY)
    if isinstance(raw, bytes):
        detail = types_pb2.ErrorDetail.FromString(raw)
        if detail.code in ErrorCode.__members__:
            error = error_for(detail.code, detail.message, details=dict(detail.details))
            error.details.setdefault("request_id", detail.request_id)
            return error
    code = _CODE_FOR_GRPC.get(exc.code(), ErrorCode.INTERNAL)
    where = f"{service}: " if service else ""
    return error_for(code, f"{where}{exc.details() or exc.code().name}", details={"grpc_status": exc.code().name})


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 4
    initial_backoff: float = 0.05
    max_backoff: float = 1.0
    multiplier: float = 2.0

    def backoff(self, attempt: int) -> float:
        """Full-jitter exponential back-off before attempt number `attempt` (2, 3, ...)."""
        ceiling = min(self.max_backoff, self.initial_backoff * self.multiplier ** (attempt - 2))
        return random.uniform(0, ceiling)  # noqa: S311 - jitter, not security


def channel_options(max_message_bytes: int = 4 * 1024 * 1024) -> list[tuple[str, Any]]:
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.keepalive_time_ms", 30_000),
    ]


class ServiceClient:
    """Calls to one Loopline service. Use `call` from threads and `acall` from asyncio code."""

    def __init__(
        self,
        *,
        service: str,
        target: str,
        token: str | None = None,
        timeout: float = 5.0,
        retry: RetryPolicy = RetryPolicy(),
        asynchronous: bool = False,
        max_message_bytes: int = 4 * 1024 * 1024,
    ) -> None:
        self.service = service
        self.target = target
        self.timeout = timeout
        self.retry = retry
        self._token = token
        options = channel_options(max_message_bytes)
        self.channel: grpc.Channel | grpc.aio.Channel = (
            grpc.aio.insecure_channel(target, options=options)
            if asynchronous
            else grpc.insecure_channel(target, options=options)
        )

    def _metadata(self) -> tuple[tuple[str, str], ...]:
        metadata = [(REQUEST_ID_KEY, current_request_id() or new_request_id())]
        if self._token:
            metadata.append(("authorization", f"Bearer {self._token}"))
        return tuple(metadata)

    def _should_retry(self, error: LooplineError, attempt: int, idempotent: bool, deadline: float) -> float | None:
        """Seconds to wait before the next attempt, or None to give up."""
        if not idempotent or error.code not in RETRYABLE or attempt >= self.retry.max_attempts:
            return None
        pause = self.retry.backoff(attempt + 1)
        return pause if time.monotonic() + pause < deadline else None

    def call(self, method: Callable[..., R], request: Any, *, idempotent: bool, timeout: float | None = None) -> R:
        """Call a unary stub method; raise the server's LooplineError on failure."""
        deadline = time.monotonic() + (timeout or self.timeout)
        metadata = self._metadata()
        attempt = 0
        while True:
            attempt += 1
            try:
                return method(request, timeout=max(0.001, deadline - time.monotonic()), metadata=metadata)
            except grpc.RpcError as exc:
                error = error_from_rpc(exc, service=self.service)
                pause = self._should_retry(error, attempt, idempotent, deadline)
                if pause is None:
                    raise error from None
                time.sleep(pause)

    async def acall(
        self,
        method: Callable[..., Awaitable[R]],
        request: Any,
        *,
        idempotent: bool,
        timeout: float | None = None,  # noqa: ASYNC109 - becomes the gRPC deadline
    ) -> R:
        """The asyncio twin of `call`, for a client made with asynchronous=True."""
        deadline = time.monotonic() + (timeout or self.timeout)
        metadata = self._metadata()
        attempt = 0
        while True:
            attempt += 1
            try:
                return await method(request, timeout=max(0.001, deadline - time.monotonic()), metadata=metadata)
            except grpc.RpcError as exc:
                error = error_from_rpc(exc, service=self.service)
                pause = self._should_retry(error, attempt, idempotent, deadline)
                if pause is None:
                    raise error from None
                await asyncio.sleep(pause)

    def close(self) -> None:
        if isinstance(self.channel, grpc.Channel):
            self.channel.close()

    async def aclose(self) -> None:
        if isinstance(self.channel, grpc.aio.Channel):
            await self.channel.close()
