"""OIP v2 over gRPC (`inference.GRPCInferenceService`, KServe's published messages) and the admin API
(`loopline.inference.v1.InferenceAdminService`).

The OIP servicer is a set of plain grpc.aio unary handlers over the generated messages: no per-call
objects beyond the messages themselves. Inputs come from `raw_input_contents` (then every input is raw,
in order) or from typed `contents`; outputs go back as `raw_output_contents` when the request used raw
inputs (as KServe's and Triton's servers do), else as typed contents.

The OIP service is registered without the shared interceptor (`intercept=False`): on a one-core pod its
generic wrapper (an async context manager, three labelled Prometheus lookups, a uuid4) cost as much CPU
as the rest of a ModelInfer. What it does is done here in place: the caller's `x-request-id` is
accepted (or a cheap one made) and echoed in the trailing metadata, errors carry Loopline's status and
`loopline-error-bin` detail, and inference requests are counted by `InferenceStats`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from loopline.inference.v1 import inference_pb2, inference_pb2_grpc
from loopline_common.errors import (
    GRPC_ERROR_DETAIL_KEY,
    REQUEST_ID_KEY,
    Internal,
    InvalidArgument,
    LooplineError,
    NotImplementedYet,
)
from loopline_common.logs import request_context
from loopline_inference.dataplane import DataPlane, InferRequest, InferResult
from loopline_inference.oip_pb import SERVICE, pb
from loopline_inference.rest import RequestIds
from loopline_inference.tensors import Tensor, fill_contents, from_contents, from_raw, to_raw
from loopline_inference.tracks import CHALLENGER
from loopline_inference.wire import length_delimited

log = logging.getLogger(__name__)

Handler = Callable[[Any, grpc.aio.ServicerContext, str], Awaitable[Any]]


async def _abort(context: grpc.aio.ServicerContext, error: LooplineError, request_id: str) -> None:
    detail = error.to_proto(request_id=request_id).SerializeToString()
    await context.abort(
        error.status.grpc, error.message,
        trailing_metadata=((GRPC_ERROR_DETAIL_KEY, detail), (REQUEST_ID_KEY, request_id)),
    )


class Malformed:
    """Stands for a request whose bytes did not parse."""

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message


def _parameter(value: Any) -> Any:
    kind = value.WhichOneof("parameter_choice")
    return getattr(value, kind) if kind else None


class OipServicer:
    def __init__(self, dataplane: DataPlane, ids: RequestIds) -> None:
        self.dataplane = dataplane
        self.stats = dataplane.stats
        self.ids = ids
        self.pb = pb()
        self._heads: dict[tuple[Any, ...], bytes] = {}

    def handler(self) -> grpc.GenericRpcHandler:
        m = self.pb
        ids = self.ids

        def unary(fn: Handler, request_type: Any) -> grpc.RpcMethodHandler:
            def parse(data: bytes) -> Any:
                try:
                    return request_type.FromString(data)
                except DecodeError as exc:  # answered INVALID_ARGUMENT by the handler, not UNKNOWN by grpc
                    return Malformed(f"the request is not a valid {request_type.DESCRIPTOR.full_name}: {exc}")

            async def guarded(request: Any, context: grpc.aio.ServicerContext) -> Any:
                incoming = None
                for key, value in context.invocation_metadata() or ():
                    if key == REQUEST_ID_KEY:
                        incoming = value if isinstance(value, str) else None
                        break
                request_id = ids.accept(incoming)
                if type(request) is Malformed:
                    await _abort(context, InvalidArgument(request.message), request_id)
                try:
                    response = await fn(request, context, request_id)
                except LooplineError as exc:
                    await _abort(context, exc, request_id)
                except (grpc.aio.AbortError, asyncio.CancelledError):
                    raise
                except Exception:
                    with request_context(request_id):
                        log.exception("unhandled error in %s", fn.__name__)
                    await _abort(
                        context, Internal(f"internal error; the server logged it under request id {request_id}"),
                        request_id,
                    )
                context.set_trailing_metadata(((REQUEST_ID_KEY, request_id),))
                return response

            return grpc.unary_unary_rpc_method_handler(
                guarded, request_deserializer=parse, response_serializer=_serialize
            )

        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "ServerLive": unary(self.server_live, m.ServerLiveRequest),
                "ServerReady": unary(self.server_ready, m.ServerReadyRequest),
                "ModelReady": unary(self.model_ready, m.ModelReadyRequest),
                "ServerMetadata": unary(self.server_metadata, m.ServerMetadataRequest),
                "ModelMetadata": unary(self.model_metadata, m.ModelMetadataRequest),
                "ModelInfer": unary(self.model_infer, m.ModelInferRequest),
                "RepositoryModelLoad": unary(self.not_implemented, m.RepositoryModelLoadRequest),
                "RepositoryModelUnload": unary(self.not_implemented, m.RepositoryModelUnloadRequest),
            },
        )

    async def server_live(self, request: Any, context: grpc.aio.ServicerContext, request_id: str) -> Any:
        return self.pb.ServerLiveResponse(live=True)

    async def server_ready(self, request: Any, context: grpc.aio.ServicerContext, request_id: str) -> Any:
        return self.pb.ServerReadyResponse(ready=self.dataplane.ready())

    async def model_ready(self, request: Any, context: grpc.aio.ServicerContext, request_id: str) -> Any:
        return self.pb.ModelReadyResponse(ready=self.dataplane.model_ready(request.name, request.version))

    async def server_metadata(self, request: Any, context: grpc.aio.ServicerContext, request_id: str) -> Any:
        meta = self.dataplane.server_metadata()
        return self.pb.ServerMetadataResponse(name=meta["name"], version=meta["version"], extensions=meta["extensions"])

    async def model_metadata(self, request: Any, context: grpc.aio.ServicerContext, request_id: str) -> Any:
        meta = self.dataplane.model_metadata(request.name, request.version)
        tm = self.pb.ModelMetadataResponse.TensorMetadata
        return self.pb.ModelMetadataResponse(
            name=meta["name"], versions=meta["versions"], platform=meta["platform"],
            inputs=[tm(**t) for t in meta["inputs"]], outputs=[tm(**t) for t in meta["outputs"]],
        )

    async def not_implemented(self, request: Any, context: grpc.aio.ServicerContext, request_id: str) -> Any:
        raise NotImplementedYet("model repository control is not supported")

    async def model_infer(self, request: Any, context: grpc.aio.ServicerContext, request_id: str) -> Any:
        started = time.perf_counter()
        name = request.model_name
        status = "INTERNAL"
        infer: InferRequest | None = None
        result: InferResult | None = None
        try:
            infer = _decode(request, request_id, started)
            result = await self.dataplane.infer(infer)
            if request.raw_input_contents and not result.parameters:
                response: Any = self._raw_response(result, infer)
            else:
                response = _encode(self.pb, result, infer, raw=bool(request.raw_input_contents))
            status = "ok"
            return response
        except LooplineError as exc:
            status = exc.code.value
            self.dataplane.log_failure(infer, name, status, "grpc", exc.message)
            raise
        except Exception:
            self.dataplane.log_failure(infer, name, status, "grpc")  # INTERNAL
            raise
        finally:
            seconds = time.perf_counter() - started
            if result is not None:
                self.stats.request(name, result.model.version_label, result.track, "grpc", status, seconds)
            elif infer is not None and infer.routed is not None:
                model, track = infer.routed
                self.stats.request(name, model.version_label, track, "grpc", status, seconds)
            else:
                self.stats.request(name, request.model_version, "", "grpc", status, seconds)

    def _raw_response(self, result: InferResult, request: InferRequest) -> bytes:
        """The serialized ModelInferResponse of a raw-contents answer: everything but the request's `id`
        and the output bytes is the same for every answer of one model, track and output shapes, so that
        head is serialized once by protobuf and cached; `id` and `raw_output_contents` are appended as
        their wire fields (protobuf reads fields in any order)."""
        outputs = result.outputs
        key = (result.model.name, result.model.version_label, result.model.sha256, result.track,
               tuple((t.name, t.datatype, t.array.shape) for t in outputs))
        head = self._heads.get(key)
        if head is None:
            if len(self._heads) >= 256:  # many shapes over time: keep the cache bounded
                self._heads.clear()
            response = self.pb.ModelInferResponse(model_name=result.model.name,
                                                  model_version=result.model.version_label)
            response.parameters["track"].string_param = result.track
            for t in outputs:
                response.outputs.add(name=t.name, datatype=t.datatype, shape=t.array.shape)
            head = self._heads[key] = response.SerializeToString()
        parts = [head]
        if request.id:
            parts.append(length_delimited(3, request.id.encode()))
        for t in outputs:
            parts.append(length_delimited(6, to_raw(t.array, t.datatype)))
        return b"".join(parts)


def _serialize(message: Any) -> bytes:
    """Responses are messages, or bytes already serialized (`_raw_response`)."""
    if type(message) is bytes:
        return message
    data: bytes = message.SerializeToString()
    return data


def _decode(request: Any, request_id: str, started: float) -> InferRequest:
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise InvalidArgument(
            f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} inputs; "
            "when raw contents are used, every input must be raw, in order"
        )
    inputs = []
    for i, item in enumerate(request.inputs):
        shape = list(item.shape)
        if raw:
            array = from_raw(item.name, item.datatype, shape, raw[i])
        else:
            array = from_contents(item.name, item.datatype, shape, item.contents)
        inputs.append(Tensor(item.name, item.datatype, array))
    if not inputs:
        raise InvalidArgument("the request has no inputs")
    requested = [o.name for o in request.outputs] or None
    parameters = {k: _parameter(v) for k, v in request.parameters.items()} if request.parameters else {}
    return InferRequest(
        model_name=request.model_name, model_version=request.model_version, id=request.id, request_id=request_id,
        inputs=inputs, outputs=requested, parameters=parameters, protocol="grpc", started=started,
    )


def _encode(m: Any, result: InferResult, request: InferRequest, *, raw: bool) -> Any:
    response = m.ModelInferResponse(
        model_name=result.model.name, model_version=result.model.version_label, id=request.id
    )
    response.parameters["track"].string_param = result.track
    for key, value in result.parameters.items():
        if isinstance(value, bool):
            response.parameters[key].bool_param = value
        elif isinstance(value, int):
            response.parameters[key].int64_param = value
        else:
            response.parameters[key].string_param = str(value)
    for t in result.outputs:
        out = response.outputs.add(name=t.name, datatype=t.datatype, shape=t.array.shape)
        if raw or t.datatype == "FP16":
            response.raw_output_contents.append(to_raw(t.array, t.datatype))
        else:
            fill_contents(out.contents, t.array, t.datatype)
    return response


class AdminServicer(inference_pb2_grpc.InferenceAdminServiceServicer):
    """Weights and shadow mode (the rollout controller's lever) and what each track serves."""

    def __init__(self, *, dataplane: DataPlane, mode: str, on_weights: Callable[[str], None]) -> None:
        self.dataplane = dataplane
        self.mode = mode
        self.on_weights = on_weights

    async def SetTrafficWeights(
        self, request: inference_pb2.SetTrafficWeightsRequest, context: grpc.aio.ServicerContext
    ) -> inference_pb2.SetTrafficWeightsResponse:
        return set_weights(self.dataplane, request, self.on_weights)

    async def GetTracks(
        self, request: inference_pb2.GetTracksRequest, context: grpc.aio.ServicerContext
    ) -> inference_pb2.GetTracksResponse:
        return get_tracks(self.dataplane, request.model_name, self.mode)


def set_weights(
    dataplane: DataPlane, request: inference_pb2.SetTrafficWeightsRequest, on_weights: Callable[[str], None]
) -> inference_pb2.SetTrafficWeightsResponse:
    tracks = dataplane.tracks(request.model_name)
    previous = tracks.set_weights(challenger_weight=request.challenger_weight, shadow=request.shadow)
    on_weights(request.model_name)
    log.info(
        "traffic weights set",
        extra={"model": request.model_name, "challenger_weight": request.challenger_weight, "shadow": request.shadow,
               "previous": previous, "actor": request.actor, "reason": request.reason, "event": "weights_set"},
    )
    return inference_pb2.SetTrafficWeightsResponse(
        previous_challenger_weight=previous, challenger_weight=tracks.challenger_weight, shadow=tracks.shadow
    )


def get_tracks(dataplane: DataPlane, model_name: str, mode: str) -> inference_pb2.GetTracksResponse:
    tracks = dataplane.tracks(model_name)
    weights = tracks.weights()
    response = inference_pb2.GetTracksResponse(
        model_name=model_name, mode=mode, challenger_weight=tracks.challenger_weight, shadow=tracks.shadow
    )
    for track, model in tracks.loaded():
        response.tracks.add(
            track=track, version=model.version, source=model.source, sha256=model.sha256,
            weight=weights.get(track, 0.0), load_seconds=model.load_seconds,
        )
    if tracks.challenger is None and mode == "embedded":
        response.tracks.add(track=CHALLENGER, weight=0.0)
    return response
