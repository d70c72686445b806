"""One error hierarchy and one status table for both transports.

A service raises a `LooplineError` subclass; the FastAPI handler (`http_app`) and the gRPC interceptor
(`grpc_server`) both read `STATUS_TABLE` to answer it, so a code means the same thing everywhere. The
mapping of gRPC codes to HTTP statuses follows Google's AIP-193 / grpc-gateway table, with 413 for a
payload that is too large and 499 for a request the client cancelled.
"""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple

import grpc

from loopline.common.v1 import types_pb2


class ErrorCode(StrEnum):
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    CONFLICT = "CONFLICT"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    CANCELLED = "CANCELLED"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    UNAVAILABLE = "UNAVAILABLE"
    NOT_IMPLEMENTED = "NOT_IMPLEMENTED"
    INTERNAL = "INTERNAL"


class Status(NamedTuple):
    http: int
    grpc: grpc.StatusCode


STATUS_TABLE: dict[ErrorCode, Status] = {
    ErrorCode.INVALID_ARGUMENT: Status(400, grpc.StatusCode.INVALID_ARGUMENT),
    ErrorCode.UNAUTHENTICATED: Status(401, grpc.StatusCode.UNAUTHENTICATED),
    ErrorCode.PERMISSION_DENIED: Status(403, grpc.StatusCode.PERMISSION_DENIED),
    ErrorCode.NOT_FOUND: Status(404, grpc.StatusCode.NOT_FOUND),
    ErrorCode.ALREADY_EXISTS: Status(409, grpc.StatusCode.ALREADY_EXISTS),
    ErrorCode.FAILED_PRECONDITION: Status(400, grpc.StatusCode.FAILED_PRECONDITION),
    ErrorCode.CONFLICT: Status(409, grpc.StatusCode.ABORTED),
    ErrorCode.PAYLOAD_TOO_LARGE: Status(413, grpc.StatusCode.RESOURCE_EXHAUSTED),
    ErrorCode.RESOURCE_EXHAUSTED: Status(429, grpc.StatusCode.RESOURCE_EXHAUSTED),
    ErrorCode.CANCELLED: Status(499, grpc.StatusCode.CANCELLED),
    ErrorCode.DEADLINE_EXCEEDED: Status(504, grpc.StatusCode.DEADLINE_EXCEEDED),
    ErrorCode.UNAVAILABLE: Status(503, grpc.StatusCode.UNAVAILABLE),
    ErrorCode.NOT_IMPLEMENTED: Status(501, grpc.StatusCode.UNIMPLEMENTED),
    ErrorCode.INTERNAL: Status(500, grpc.StatusCode.INTERNAL),
}

# Failures of the server's (or a dependency's) making, the HTTP 5xx class (services log these; a client's
# bad request is answered, not logged).
SERVER_FAULTS: frozenset[str] = frozenset(code.value for code, status in STATUS_TABLE.items() if status.http >= 500)

# The binary trailing-metadata key under which gRPC errors carry a serialized ErrorDetail.
GRPC_ERROR_DETAIL_KEY = "loopline-error-bin"
# The header / metadata key carrying the request id, both directions.
REQUEST_ID_KEY = "x-request-id"


class LooplineError(Exception):
    """Base of every error a Loopline service answers on purpose.

    `message` is shown to the caller; `details` carries structured facts (string values) such as which
    field was wrong or which promotion gate failed and its numbers.
    """

    code: ErrorCode = ErrorCode.INTERNAL

    def __init__(self, message: str, *, details: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = dict(details or {})

    @property
    def status(self) -> Status:
        return STATUS_TABLE[self.code]

    def to_proto(self, *, request_id: str = "") -> types_pb2.ErrorDetail:
        return types_pb2.ErrorDetail(
            code=self.code.value, message=self.message, request_id=request_id, details=self.details
        )

    def to_json(self, *, request_id: str = "") -> dict[str, object]:
        return {
            "error": {
                "code": self.code.value,
                "message": self.message,
                "request_id": request_id,
                "details": self.details,
            }
        }


class InvalidArgument(LooplineError):
    code = ErrorCode.INVALID_ARGUMENT


class Unauthenticated(LooplineError):
    code = ErrorCode.UNAUTHENTICATED


class PermissionDenied(LooplineError):
    code = ErrorCode.PERMISSION_DENIED


class NotFound(LooplineError):
    code = ErrorCode.NOT_FOUND


class AlreadyExists(LooplineError):
    code = ErrorCode.ALREADY_EXISTS


class FailedPrecondition(LooplineError):
    code = ErrorCode.FAILED_PRECONDITION


class Conflict(LooplineError):
    code = ErrorCode.CONFLICT


class PayloadTooLarge(LooplineError):
    code = ErrorCode.PAYLOAD_TOO_LARGE


class ResourceExhausted(LooplineError):
    code = ErrorCode.RESOURCE_EXHAUSTED


class Cancelled(LooplineError):
    code = ErrorCode.CANCELLED


class DeadlineExceeded(LooplineError):
    code = ErrorCode.DEADLINE_EXCEEDED


class Unavailable(LooplineError):
    code = ErrorCode.UNAVAILABLE


class NotImplementedYet(LooplineError):
    code = ErrorCode.NOT_IMPLEMENTED


class Internal(LooplineError):
    code = ErrorCode.INTERNAL


ERROR_TYPES: dict[ErrorCode, type[LooplineError]] = {
    cls.code: cls
    for cls in (
        InvalidArgument,
        Unauthenticated,
        PermissionDenied,
        NotFound,
        AlreadyExists,
        FailedPrecondition,
        Conflict,
        PayloadTooLarge,
        ResourceExhausted,
        Cancelled,
        DeadlineExceeded,
        Unavailable,
        NotImplementedYet,
        Internal,
    )
}


def error_for(code: ErrorCode | str, message: str, *, details: dict[str, str] | None = None) -> LooplineError:
    """The exception instance for a code, e.g. when rebuilding an error a client received."""
    return ERROR_TYPES[ErrorCode(code)](message, details=details)


def code_for_http_status(status: int) -> ErrorCode:
    """The code used to describe an HTTP error raised outside Loopline's handlers (routing, 405, ...)."""
    for code, pair in STATUS_TABLE.items():
        if pair.http == status:
            return code
    return ErrorCode.INVALID_ARGUMENT if 400 <= status < 500 else ErrorCode.INTERNAL
