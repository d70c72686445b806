"""OIP v2 over REST, as a raw ASGI layer in front of the service's FastAPI app.

Every `/v2...` request is answered here without FastAPI routing, pydantic models or middleware: the
path is split once, JSON is parsed and written with orjson, tensors go straight to numpy. Everything else
(/healthz, /readyz, /metrics, the admin API, the OpenAPI description) falls through to the FastAPI app
with the shared request-id/metrics middleware. Errors use the protocol's form, `{"error": "<message>"}`,
with the HTTP status of Loopline's status table; the response carries `x-request-id` as everywhere.

Binary tensor extension: a request whose JSON header is followed by raw tensor data says so with the
`Inference-Header-Content-Length` header and a `binary_data_size` parameter per binary input; outputs
are returned binary when asked (`binary_data` on a requested output, or `binary_data_output` on the
request), after a JSON header whose length the response's `Inference-Header-Content-Length` gives.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from typing import Any

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from loopline_common.errors import (
    REQUEST_ID_KEY,
    STATUS_TABLE,
    Internal,
    InvalidArgument,
    LooplineError,
    NotFound,
    PayloadTooLarge,
    Status,
    error_for,
)
from loopline_common.logs import MAX_REQUEST_ID_LENGTH, request_context
from loopline_inference.dataplane import DataPlane, InferRequest, InferResult
from loopline_inference.tensors import Tensor, from_json, from_raw, to_json_data, to_raw

log = logging.getLogger(__name__)

HEADER_LENGTH = b"inference-header-content-length"
_JSON = [(b"content-type", b"application/json")]
_OCTETS = b"application/octet-stream"
_DUMPS_OPTIONS = orjson.OPT_SERIALIZE_NUMPY
_REQUEST_ID_HEADER = REQUEST_ID_KEY.encode()


class RequestIds:
    """Cheap unique request ids for callers that send none: a per-process prefix and a counter."""

    def __init__(self) -> None:
        self._prefix = os.urandom(6).hex() + "-"
        self._counter = itertools.count(1)

    def accept(self, candidate: str | None) -> str:
        if candidate and len(candidate) <= MAX_REQUEST_ID_LENGTH and candidate.isprintable():
            return candidate
        return f"{self._prefix}{next(self._counter)}"


class OipRest:
    """ASGI app: OIP v2 routes here, everything else to `fallback` (the FastAPI app)."""

    def __init__(self, fallback: ASGIApp, *, dataplane: DataPlane, max_request_bytes: int, ids: RequestIds) -> None:
        self.fallback = fallback
        self.dataplane = dataplane
        self.stats = dataplane.stats
        self.max_request_bytes = max_request_bytes
        self.ids = ids

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v2"):
            await self.fallback(scope, receive, send)
            return
        started = time.perf_counter()
        content_length = header_length = None
        incoming = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                content_length = value
            elif name == HEADER_LENGTH:
                header_length = value
            elif name == b"x-request-id":
                incoming = value.decode("latin-1")
        request_id = self.ids.accept(incoming)
        parts = scope["path"].split("/")
        method = scope["method"]
        try:
            if len(parts) >= 5 and parts[2] == "models" and parts[-1] == "infer":
                if method != "POST":
                    raise _method_not_allowed(method)
                await self._infer(parts, receive, send, request_id, started, content_length, header_length)
                return
            body = self._get(parts, method)
            await _send(send, 200, orjson.dumps(body), request_id)
        except LooplineError as exc:
            await _send_error(send, exc, request_id)
        except Exception:
            with request_context(request_id):
                log.exception("unhandled error in %s %s", method, scope["path"])
            await _send_error(send, _internal(request_id), request_id)

    def _get(self, parts: list[str], method: str) -> Any:
        """Health and metadata routes."""
        if method != "GET":
            raise _method_not_allowed(method)
        dp = self.dataplane
        n = len(parts)
        if n == 2 or (n == 3 and parts[2] == ""):
            return dp.server_metadata()
        if n == 4 and parts[2] == "health":
            if parts[3] == "live":
                return {"live": True}
            if parts[3] == "ready":
                if not dp.ready():
                    raise error_for("UNAVAILABLE", "not ready: the model is not loaded yet")
                return {"ready": True}
        if n >= 4 and parts[2] == "models" and parts[3]:
            name, rest = parts[3], parts[4:]
            version = ""
            if len(rest) >= 2 and rest[0] == "versions":
                version, rest = rest[1], rest[2:]
            if not rest:
                return dp.model_metadata(name, version)
            if rest == ["ready"]:
                if not dp.model_ready(name, version):
                    raise error_for("UNAVAILABLE", f"model '{name}' is not ready")
                return {"name": name, "ready": True}
        raise NotFound("no such OIP v2 endpoint")

    async def _infer(
        self, parts: list[str], receive: Receive, send: Send, request_id: str, started: float,
        content_length: bytes | None, header_length: bytes | None,
    ) -> None:
        name = parts[3]
        version = parts[5] if len(parts) == 7 and parts[4] == "versions" else ""
        if len(parts) not in (5, 7) or (len(parts) == 7 and parts[4] != "versions"):
            raise NotFound("no such OIP v2 endpoint")
        request: InferRequest | None = None
        status = "ok"
        result: InferResult | None = None
        try:
            declared = _int(content_length) if content_length is not None else -1
            if declared > self.max_request_bytes:
                raise PayloadTooLarge(
                    f"request body of {declared} bytes exceeds the limit of {self.max_request_bytes} bytes",
                    details={"limit_bytes": str(self.max_request_bytes)},
                )
            body = await self._read_body(receive)
            json_length = _int(header_length) if header_length is not None else -1
            request, binary_outputs = _decode(body, json_length, name, version, request_id, started)
            result = await self.dataplane.infer(request)
            payload, headers = _encode(result, request, binary_outputs)
            await _send(send, 200, payload, request_id, headers)
        except LooplineError as exc:
            status = exc.code.value
            self.dataplane.log_failure(request, name, status, "rest", exc.message)
            await _send_error(send, exc, request_id)
        except Exception:
            status = "INTERNAL"
            with request_context(request_id):
                log.exception("unhandled error in infer")
            self.dataplane.log_failure(request, name, status, "rest")
            await _send_error(send, _internal(request_id), request_id)
        finally:
            if result is not None:
                self.stats.request(
                    name, result.model.version_label, result.track, "rest", status, time.perf_counter() - started
                )
            elif request is not None and request.routed is not None:
                model, track = request.routed
                self.stats.request(name, model.version_label, track, "rest", status, time.perf_counter() - started)
            else:
                self.stats.request(name, version, "", "rest", status, time.perf_counter() - started)

    async def _read_body(self, receive: Receive) -> bytes:
        message = await receive()
        body: bytes = message.get("body", b"")
        if not message.get("more_body", False):
            if len(body) > self.max_request_bytes:
                raise _too_large(self.max_request_bytes)
            return body
        chunks = [body]
        size = len(body)
        while message.get("more_body", False):
            message = await receive()
            if message["type"] == "http.disconnect":
                raise error_for("CANCELLED", "the client went away")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_request_bytes:
                raise _too_large(self.max_request_bytes)
            chunks.append(chunk)
        return b"".join(chunks)


def _int(value: bytes) -> int:
    try:
        return int(value)
    except ValueError:
        raise InvalidArgument("a length header is not a number") from None


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"request body exceeds the limit of {limit} bytes", details={"limit_bytes": str(limit)})


class MethodNotAllowed(InvalidArgument):
    """A known OIP path asked with the wrong HTTP method: 405 on REST (gRPC has no such case)."""

    @property
    def status(self) -> Status:
        return Status(405, STATUS_TABLE[self.code].grpc)


def _method_not_allowed(method: str) -> LooplineError:
    return MethodNotAllowed(f"method {method} is not allowed here")


def _internal(request_id: str) -> Internal:
    return Internal(f"internal error; the server logged it under request id {request_id}")


def _decode(
    body: bytes, header_length: int, name: str, version: str, request_id: str, started: float
) -> tuple[InferRequest, set[str] | bool]:
    """The InferRequest of a JSON (or JSON + binary) body, and which outputs to return binary."""
    if header_length >= 0:
        if header_length > len(body):
            raise InvalidArgument(
                f"Inference-Header-Content-Length {header_length} exceeds the body's {len(body)} bytes"
            )
        header, binary = body[:header_length], memoryview(body)[header_length:]
    else:
        header, binary = body, memoryview(b"")
    try:
        doc = orjson.loads(header)
    except orjson.JSONDecodeError as exc:
        raise InvalidArgument(f"request body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidArgument("the request must be a JSON object")
    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InvalidArgument("'inputs' must be a non-empty list of tensors")
    parameters = doc.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise InvalidArgument("'parameters' must be an object")
    request_id_field = doc.get("id", "")
    if not isinstance(request_id_field, str):
        raise InvalidArgument("'id' must be a string")
    inputs = []
    offset = 0
    for item in raw_inputs:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise InvalidArgument("each input must be an object with a 'name'")
        tname = item["name"]
        params = item.get("parameters") or {}
        if not isinstance(params, dict):
            raise InvalidArgument(f"input '{tname}': 'parameters' must be an object")
        size = params.get("binary_data_size")
        if size is not None:
            if type(size) is not int or size < 0 or offset + size > len(binary):
                raise InvalidArgument(f"input '{tname}': binary_data_size {size!r} does not fit the binary data")
            array = from_raw(tname, item.get("datatype"), item.get("shape"), binary[offset : offset + size])
            offset += size
        else:
            if "data" not in item:
                raise InvalidArgument(f"input '{tname}' has neither 'data' nor a binary_data_size")
            array = from_json(tname, item.get("datatype"), item.get("shape"), item["data"])
        inputs.append(Tensor(tname, item["datatype"], array))
    if offset != len(binary):
        raise InvalidArgument(f"{len(binary) - offset} bytes of binary data are not claimed by any input")
    requested: list[str] | None = None
    default_binary = parameters.get("binary_data_output", False) is True
    binary_outputs: set[str] | bool = default_binary
    raw_outputs = doc.get("outputs")
    if raw_outputs:
        if not isinstance(raw_outputs, list):
            raise InvalidArgument("'outputs' must be a list")
        requested = []
        flagged: set[str] = set()
        for item in raw_outputs:
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                raise InvalidArgument("each requested output must be an object with a 'name'")
            requested.append(item["name"])
            oparams = item.get("parameters") or {}
            if not isinstance(oparams, dict):
                raise InvalidArgument(f"output '{item['name']}': 'parameters' must be an object")
            if oparams.get("binary_data", default_binary) is True:
                flagged.add(item["name"])
        binary_outputs = flagged
    request = InferRequest(
        model_name=name, model_version=version, id=request_id_field, request_id=request_id, inputs=inputs,
        outputs=requested, parameters=parameters, protocol="rest", started=started,
    )
    return request, binary_outputs


def _encode(result: InferResult, request: InferRequest, binary: set[str] | bool) -> tuple[bytes, list[Any]]:
    outputs = []
    blobs = []
    for t in result.outputs:
        if binary is True or (isinstance(binary, set) and t.name in binary):
            blob = to_raw(t.array, t.datatype)
            blobs.append(blob)
            outputs.append({"name": t.name, "datatype": t.datatype, "shape": list(t.array.shape),
                            "parameters": {"binary_data_size": len(blob)}})
        else:
            outputs.append({"name": t.name, "datatype": t.datatype, "shape": list(t.array.shape),
                            "data": to_json_data(t.array, t.datatype)})
    doc: dict[str, Any] = {
        "model_name": result.model.name,
        "model_version": result.model.version_label,
        "outputs": outputs,
        "parameters": {"track": result.track, **result.parameters},
    }
    if request.id:
        doc["id"] = request.id
    header = orjson.dumps(doc, option=_DUMPS_OPTIONS)
    if not blobs:
        return header, _JSON
    return header + b"".join(blobs), [
        (b"content-type", _OCTETS),
        (HEADER_LENGTH, str(len(header)).encode()),
    ]


async def _send(send: Send, status: int, body: bytes, request_id: str, headers: list[Any] = _JSON) -> None:
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [*headers, (b"content-length", str(len(body)).encode()), (_REQUEST_ID_HEADER, request_id.encode())],
    })
    await send({"type": "http.response.body", "body": body})


async def _send_error(send: Send, error: LooplineError, request_id: str) -> None:
    await _send(send, error.status.http, orjson.dumps({"error": error.message}), request_id)
