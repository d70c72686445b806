"""Inference: KServe's Open Inference Protocol v2 over gRPC and REST, and the admin API (tracks, weights).

Scoring changes no state, so `infer` is retried on UNAVAILABLE and DEADLINE_EXCEEDED by default; every
attempt carries the same request id, so the prediction log (and monitoring, which de-duplicates on it)
counts a retried prediction once. Pass `retry=False` to send each request exactly once.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from tritonclient.grpc import service_pb2 as oip  # type: ignore[import-untyped]
from tritonclient.grpc import service_pb2_grpc as oip_grpc

from loopline.inference.v1 import inference_pb2 as admin_pb
from loopline.inference.v1 import inference_pb2_grpc as admin_grpc
from loopline_common.errors import REQUEST_ID_KEY, ErrorCode, LooplineError, error_for
from loopline_common.grpc_client import RETRYABLE, RetryPolicy
from loopline_common.logs import new_request_id
from loopline_sdk._base import DEFAULT_RETRY, BaseClient

# OIP datatype -> (typed contents field, struct format of one raw element)
_CONTENTS = {
    "BOOL": ("bool_contents", "?"), "INT8": ("int_contents", "b"), "INT16": ("int_contents", "h"),
    "INT32": ("int_contents", "i"), "INT64": ("int64_contents", "q"), "UINT8": ("uint_contents", "B"),
    "UINT16": ("uint_contents", "H"), "UINT32": ("uint_contents", "I"), "UINT64": ("uint64_contents", "Q"),
    "FP32": ("fp32_contents", "f"), "FP64": ("fp64_contents", "d"), "BYTES": ("bytes_contents", ""),
}
_HTTP_CODES = {400: ErrorCode.INVALID_ARGUMENT, 401: ErrorCode.UNAUTHENTICATED, 403: ErrorCode.PERMISSION_DENIED,
               404: ErrorCode.NOT_FOUND, 409: ErrorCode.CONFLICT, 413: ErrorCode.PAYLOAD_TOO_LARGE,
               429: ErrorCode.RESOURCE_EXHAUSTED, 499: ErrorCode.CANCELLED, 501: ErrorCode.NOT_IMPLEMENTED,
               503: ErrorCode.UNAVAILABLE, 504: ErrorCode.DEADLINE_EXCEEDED}


@dataclass(frozen=True)
class Tensor:
    """One OIP v2 input tensor: name, datatype (FP32, INT64, BYTES, ...), shape and flat data."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: list[Any]


@dataclass(frozen=True)
class Prediction:
    """One answer: which version and track served it, and each output's flat values."""

    model_name: str
    model_version: str
    track: str
    outputs: dict[str, list[Any]]
    shapes: dict[str, tuple[int, ...]]
    parameters: dict[str, Any]
    request_id: str
    protocol: str

    def scores(self, output: str = "") -> list[float]:
        """The positive-class score of each row (the last column of a [rows, classes] output)."""
        name = output or next(iter(self.outputs))
        values, shape = self.outputs[name], self.shapes[name]
        if len(shape) == 2 and shape[1] > 1:
            width = shape[1]
            return [float(values[i * width + width - 1]) for i in range(shape[0])]
        return [float(v) for v in values]


@dataclass(frozen=True)
class TrackState:
    track: str
    version: int
    source: str
    weight: float


@dataclass(frozen=True)
class Tracks:
    model_name: str
    mode: str
    challenger_weight: float
    shadow: bool
    tracks: tuple[TrackState, ...] = field(default_factory=tuple)

    def version_of(self, track: str) -> int:
        return next((t.version for t in self.tracks if t.track == track), 0)


def entity_tensors(rows: list[dict[str, str]]) -> list[Tensor]:
    """Entity-key inputs (one BYTES tensor per join key): the server builds the features itself."""
    keys = list(rows[0]) if rows else []
    return [Tensor(name=k, datatype="BYTES", shape=(len(rows),), data=[r[k] for r in rows]) for k in keys]


def _decode_raw(blob: bytes, datatype: str) -> list[Any]:
    if datatype == "BYTES":
        out, i = [], 0
        while i < len(blob):
            (n,) = struct.unpack_from("<I", blob, i)
            out.append(blob[i + 4:i + 4 + n])
            i += 4 + n
        return out
    fmt = _CONTENTS[datatype][1]
    return list(struct.unpack(f"<{len(blob) // struct.calcsize(fmt)}{fmt}", blob))


def _http_error(response: httpx.Response, request_id: str) -> LooplineError:
    # Loopline's services answer {"error": {"code", "message", ...}}; OIP v2 servers {"error": "message"}.
    try:
        body = response.json().get("error", {})
    except (ValueError, AttributeError):
        body = response.text[:200]
    if isinstance(body, dict):
        code, message = str(body.get("code", "")), str(body.get("message", ""))
    else:
        code, message = "", str(body)
    if code not in ErrorCode.__members__:
        code = _HTTP_CODES.get(response.status_code, ErrorCode.INTERNAL).value
    error = error_for(code, f"inference: {message or response.reason_phrase}")
    error.details.setdefault("request_id", response.headers.get(REQUEST_ID_KEY, request_id))
    return error


class InferenceClient(BaseClient):
    """OIP v2 over gRPC (`target`, KServe's 8081 locally) and REST (`http_url`), plus the admin API on gRPC."""

    service = "inference"

    def __init__(self, target: str, *, http_url: str = "", token: str | None = None, timeout: float = 5.0,
                 retry: RetryPolicy = DEFAULT_RETRY) -> None:
        super().__init__(target, token=token, timeout=timeout, retry=retry)
        self.admin = admin_grpc.InferenceAdminServiceStub(self.client.channel)  # type: ignore[no-untyped-call]
        self.http_url = http_url.rstrip("/")
        self._token = token
        self._http: httpx.Client | None = None

    def _stub(self, channel: Any) -> Any:
        return oip_grpc.GRPCInferenceServiceStub(channel)

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
        super().close()

    # ---- OIP v2 ----------------------------------------------------------------------------------
    def infer(self, model: str, inputs: list[Tensor], *, protocol: str = "grpc", retry: bool = True,
              request_id: str = "", timeout: float | None = None) -> Prediction:
        """Score `inputs` with `model` over "grpc" or "rest"."""
        if protocol == "rest":
            return self._infer_rest(model, inputs, retry=retry, request_id=request_id, timeout=timeout)
        if protocol != "grpc":
            raise ValueError(f"protocol must be grpc or rest, not {protocol!r}")
        request = oip.ModelInferRequest(model_name=model, id=request_id)
        for t in inputs:
            tensor = request.inputs.add(name=t.name, datatype=t.datatype, shape=list(t.shape))
            field_name = _CONTENTS[t.datatype][0]
            data = [v.encode() if isinstance(v, str) else v for v in t.data] if t.datatype == "BYTES" else t.data
            getattr(tensor.contents, field_name).extend(data)
        reply = self.client.call(self.stub.ModelInfer, request, idempotent=retry, timeout=timeout)
        outputs: dict[str, list[Any]] = {}
        shapes: dict[str, tuple[int, ...]] = {}
        for i, out in enumerate(reply.outputs):
            shapes[out.name] = tuple(out.shape)
            if i < len(reply.raw_output_contents):
                outputs[out.name] = _decode_raw(reply.raw_output_contents[i], out.datatype)
            else:
                outputs[out.name] = list(getattr(out.contents, _CONTENTS[out.datatype][0]))
        parameters = {k: getattr(v, v.WhichOneof("parameter_choice") or "string_param")
                      for k, v in reply.parameters.items()}
        return Prediction(model_name=reply.model_name, model_version=reply.model_version,
                          track=str(parameters.get("track", "")), outputs=outputs, shapes=shapes,
                          parameters=parameters, request_id=request_id, protocol="grpc")

    def _infer_rest(self, model: str, inputs: list[Tensor], *, retry: bool, request_id: str,
                    timeout: float | None) -> Prediction:
        if not self.http_url:
            raise ValueError("REST needs http_url")
        if self._http is None:
            self._http = httpx.Client(base_url=self.http_url)
        rid = request_id or new_request_id()
        headers = {REQUEST_ID_KEY: rid}
        if self._token:
            headers["authorization"] = f"Bearer {self._token}"
        body = {"inputs": [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape), "data": t.data}
                           for t in inputs]}
        deadline = time.monotonic() + (timeout or self.client.timeout)
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._http.post(f"/v2/models/{model}/infer", json=body, headers=headers,
                                           timeout=max(0.001, deadline - time.monotonic()))
                if response.status_code == 200:
                    break
                error = _http_error(response, rid)
            except httpx.TimeoutException:
                error = error_for(ErrorCode.DEADLINE_EXCEEDED.value, "inference: no answer within the deadline")
            except httpx.TransportError as exc:
                error = error_for(ErrorCode.UNAVAILABLE.value, f"inference: {type(exc).__name__}: {exc}")
            pause = self.client.retry.backoff(attempt + 1)
            if (not retry or error.code not in RETRYABLE or attempt >= self.client.retry.max_attempts
                    or time.monotonic() + pause >= deadline):
                raise error
            time.sleep(pause)
        doc = response.json()
        outputs = {o["name"]: list(o["data"]) for o in doc.get("outputs", [])}
        shapes = {o["name"]: tuple(o["shape"]) for o in doc.get("outputs", [])}
        parameters = dict(doc.get("parameters", {}))
        return Prediction(model_name=doc.get("model_name", model), model_version=str(doc.get("model_version", "")),
                          track=str(parameters.get("track", "")), outputs=outputs, shapes=shapes,
                          parameters=parameters, request_id=response.headers.get(REQUEST_ID_KEY, rid),
                          protocol="rest")

    def ready(self, model: str) -> bool:
        """Whether the server is ready to serve `model` (OIP ModelReady; False when unknown or loading)."""
        try:
            reply = self.client.call(self.stub.ModelReady, oip.ModelReadyRequest(name=model), idempotent=True)
        except LooplineError:
            return False
        return bool(reply.ready)

    # ---- admin -----------------------------------------------------------------------------------
    def tracks(self, model: str) -> Tracks:
        r = self.client.call(self.admin.GetTracks, admin_pb.GetTracksRequest(model_name=model), idempotent=True)
        return Tracks(model_name=r.model_name, mode=r.mode, challenger_weight=r.challenger_weight, shadow=r.shadow,
                      tracks=tuple(TrackState(track=t.track, version=t.version, source=t.source, weight=t.weight)
                                   for t in r.tracks))

    def set_weights(self, model: str, *, challenger_weight: float, shadow: bool = False, reason: str = "") -> float:
        """Set the challenger's share (0..1); returns the previous share. Idempotent: the same state again."""
        r = self.client.call(self.admin.SetTrafficWeights, admin_pb.SetTrafficWeightsRequest(
            model_name=model, challenger_weight=challenger_weight, shadow=shadow, actor="sdk", reason=reason),
            idempotent=True)
        return float(r.previous_challenger_weight)
