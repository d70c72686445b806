"""The HTTP/JSON bootstrap shared by every service.

`create_http_app` returns a FastAPI app with `/healthz` (alive), `/readyz` (every readiness check
passes), `/metrics` (Prometheus), the request-id and metrics middleware, a body-size limit, and one
exception handler per error family, all answering through `errors.STATUS_TABLE` with the same JSON
envelope: {"error": {"code", "message", "request_id", "details"}}.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from google.protobuf.json_format import MessageToDict, ParseDict, ParseError
from google.protobuf.message import Message as ProtoMessage
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from loopline_common.errors import (
    REQUEST_ID_KEY,
    ErrorCode,
    Internal,
    InvalidArgument,
    LooplineError,
    PayloadTooLarge,
    code_for_http_status,
    error_for,
)
from loopline_common.logs import accept_request_id, current_request_id, request_context
from loopline_common.metrics import ServiceMetrics
from loopline_common.readiness import Readiness

log = logging.getLogger(__name__)


P = TypeVar("P", bound=ProtoMessage)


def message_to_json(message: ProtoMessage) -> dict[str, Any]:
    """A protobuf message as the HTTP mirrors answer it: proto field names, every field present."""
    return MessageToDict(message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)


def json_to_message(data: dict[str, Any], message: P) -> P:
    """Fill `message` from a JSON object; a field that does not fit is INVALID_ARGUMENT."""
    try:
        ParseDict(data, message)
    except ParseError as exc:
        raise InvalidArgument(f"invalid request: {exc}") from None
    return message


async def json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object ({} for an empty body). Malformed JSON raises JSONDecodeError, which the
    app's handler answers as INVALID_ARGUMENT; any other JSON value is INVALID_ARGUMENT here."""
    raw = await request.body()
    if not raw.strip():
        return {}
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise InvalidArgument("the request body must be a JSON object")
    return data


def error_response(error: LooplineError) -> JSONResponse:
    """The JSON envelope of `error` (the middleware adds the x-request-id header)."""
    return JSONResponse(error.to_json(request_id=current_request_id()), status_code=error.status.http)


class _RequestMiddleware:
    """Pure ASGI (no per-request task): request id, body limit, in-flight gauge, RED metrics, last-resort 500.

    The body limit holds for declared lengths (refused before the app runs) and for chunked bodies (cut
    off as they stream in; whatever the app then answers is replaced by the 413).
    """

    def __init__(self, app: ASGIApp, *, metrics: ServiceMetrics, max_request_bytes: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_request_bytes = max_request_bytes

    def _too_large(self, message: str) -> PayloadTooLarge:
        return PayloadTooLarge(message, details={"limit_bytes": str(self.max_request_bytes)})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        request_id = accept_request_id(headers.get(REQUEST_ID_KEY.encode(), b"").decode("latin-1"))
        status = 0
        started = time.perf_counter()
        too_large: PayloadTooLarge | None = None

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (REQUEST_ID_KEY.encode(), request_id.encode())]
            await send(message)

        async def send_or_replace(message: Message) -> None:
            if too_large is None:
                await send_with_id(message)
            elif message["type"] == "http.response.start":
                await error_response(too_large)(scope, receive, send_with_id)

        received = 0

        async def bounded_receive() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_request_bytes:
                    too_large = self._too_large(f"request body exceeds the limit of {self.max_request_bytes} bytes")
                    raise too_large
            return message

        self.metrics.in_flight.labels("http").inc()
        with request_context(request_id):
            try:
                declared = int(headers.get(b"content-length", b"0") or 0)
                if declared > self.max_request_bytes:
                    refused = self._too_large(
                        f"request body of {declared} bytes exceeds the limit of {self.max_request_bytes} bytes"
                    )
                    await error_response(refused)(scope, receive, send_with_id)
                else:
                    await self.app(scope, bounded_receive, send_or_replace)
            except Exception as exc:  # not a LooplineError: log it whole, answer a generic 500
                log.error("unhandled error in %s %s", scope["method"], scope["path"], exc_info=exc)
                if status:  # the response had started; nothing more can be sent
                    return
                internal = Internal(f"internal error; the server logged it under request id {request_id}")
                await error_response(internal)(scope, receive, send_with_id)
            finally:
                self.metrics.in_flight.labels("http").dec()
                route = scope.get("route")
                method = f"{scope['method']} {getattr(route, 'path', 'unmatched')}"
                code = "OK" if status < 400 else code_for_http_status(status).value
                self.metrics.observe_request(
                    transport="http", method=method, code=code, seconds=time.perf_counter() - started
                )


def _validation_message(exc: RequestValidationError) -> tuple[str, dict[str, str]]:
    details: dict[str, str] = {}
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()))
        details[where or "body"] = str(err.get("msg", "invalid"))
    summary = "; ".join(f"{k}: {v}" for k, v in details.items())
    return f"invalid request: {summary}", details


def create_http_app(
    *,
    service: str,
    metrics: ServiceMetrics,
    readiness: Readiness,
    max_request_bytes: int = 4 * 1024 * 1024,
    version: str = "0.1.0",
    description: str = "",
) -> FastAPI:
    app = FastAPI(title=f"loopline-{service}", version=version, description=description)

    @app.exception_handler(LooplineError)
    async def _loopline_error(_: Request, exc: LooplineError) -> JSONResponse:
        if exc.code == ErrorCode.INTERNAL:
            log.error("internal error: %s", exc.message)
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        message, details = _validation_message(exc)
        return error_response(InvalidArgument(message, details=details))

    @app.exception_handler(json.JSONDecodeError)
    async def _json_error(_: Request, exc: json.JSONDecodeError) -> JSONResponse:
        return error_response(InvalidArgument(f"request body is not valid JSON: {exc.msg}"))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = code_for_http_status(exc.status_code)
        response = error_response(error_for(code, str(exc.detail)))
        response.status_code = exc.status_code  # e.g. 405 keeps its own status
        return response

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        ready, checks = await readiness.evaluate()
        body: dict[str, Any] = {"status": "ready" if ready else "not ready", "checks": checks}
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(_RequestMiddleware, metrics=metrics, max_request_bytes=max_request_bytes)
    return app
