"""The transport-neutral data plane: REST and gRPC both decode into an `InferRequest`, call `infer`, and
encode the `InferResult`. It routes to a track, scores, and hands the prediction to the log."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from loopline_common.errors import (
    SERVER_FAULTS,
    InvalidArgument,
    LooplineError,
    NotFound,
    NotImplementedYet,
    Unavailable,
)
from loopline_inference.enrichment import OnlineFeatures, build_input, entity_rows
from loopline_inference.model import OnnxModel
from loopline_inference.predlog import Prediction, PredictionLog
from loopline_inference.stats import InferenceStats
from loopline_inference.tensors import Tensor
from loopline_inference.tracks import ModelTracks

log = logging.getLogger(__name__)

SERVER_NAME = "loopline-inference"
SERVER_VERSION = "0.1.0"
# OIP extensions this server speaks (REST binary tensors; model metadata/ready; parameters).
EXTENSIONS = ["binary_tensor_data", "model_metadata", "parameters"]


@dataclass(slots=True)
class InferRequest:
    model_name: str
    model_version: str
    id: str
    # The caller's x-request-id (or a fresh one); the log's request id when `id` is empty.
    request_id: str
    inputs: list[Tensor]
    # Names of the outputs asked for (None: all).
    outputs: list[str] | None
    parameters: dict[str, Any]
    protocol: str
    started: float
    # The model and track the request was routed to, once it was (so a failure counts against that track).
    routed: tuple[OnnxModel, str] | None = None


@dataclass(slots=True)
class InferResult:
    model: OnnxModel
    track: str
    outputs: list[Tensor]
    parameters: dict[str, Any]


class DataPlane:
    def __init__(
        self,
        *,
        models: dict[str, ModelTracks],
        stats: InferenceStats,
        prediction_log: PredictionLog,
        features: OnlineFeatures | None = None,
        missing_feature_policy: str = "default",
    ) -> None:
        self.models = models
        self.stats = stats
        self.prediction_log = prediction_log
        self.features = features
        self.missing_feature_policy = missing_feature_policy
        self._fault_said: dict[str, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # ---- health and metadata -----------------------------------------------------------------------
    def ready(self) -> bool:
        return all(t.ready for t in self.models.values())

    def tracks(self, name: str) -> ModelTracks:
        tracks = self.models.get(name)
        if tracks is None:
            raise NotFound(f"unknown model '{name}'", details={"model": name})
        return tracks

    def model(self, name: str, version: str = "") -> OnnxModel:
        tracks = self.tracks(name)
        if version:
            return tracks.by_version(version)[0]
        if tracks.champion is None:
            raise Unavailable(f"model '{name}' is not loaded yet")
        return tracks.champion

    def model_ready(self, name: str, version: str = "") -> bool:
        tracks = self.tracks(name)
        if version:
            try:
                tracks.by_version(version)
            except NotFound:
                return False
            return True
        return tracks.ready

    def model_metadata(self, name: str, version: str = "") -> dict[str, Any]:
        tracks = self.tracks(name)
        model = self.model(name, version)
        meta = model.metadata_json()
        if not version:
            meta["versions"] = [m.version_label for _, m in tracks.loaded()]
        return meta

    def server_metadata(self) -> dict[str, Any]:
        return {"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": EXTENSIONS}

    # ---- inference ---------------------------------------------------------------------------------
    async def infer(self, request: InferRequest) -> InferResult:
        tracks = self.models.get(request.model_name)
        if tracks is None:
            raise NotFound(f"unknown model '{request.model_name}'", details={"model": request.model_name})
        champion = tracks.champion
        if champion is None:
            raise Unavailable(f"model '{request.model_name}' is not loaded yet")
        inputs = request.inputs
        entities: list[dict[str, str]] | None = None
        parameters: dict[str, Any] = {}
        rows = entity_rows(champion, inputs) if champion.entity_keys else None
        key = request.id or None
        if rows:
            key = str(next(iter(rows[0].values()), key))
        # Routed before enrichment: the routed model's own features are fetched, and a failure on the way
        # (the features service timing out, say) is the routed track's, not nobody's.
        if request.model_version:
            model, track = tracks.by_version(request.model_version)
        else:
            model, track = tracks.pick(key)
        request.routed = (model, track)
        if rows is not None:
            inputs, entities, defaulted = await self._enrich(model, rows)
            if defaulted:
                parameters["loopline_defaulted_rows"] = defaulted
        feed = model.validate(inputs)
        outputs = model.run(feed, request.outputs)
        rows_n = _rows(outputs)
        self.stats.batch(model.name, model.version_label, track, rows_n, _scores(model, outputs, request.outputs))
        if self.prediction_log.enabled:  # a tuple of references; encoded off the request path
            self.prediction_log.add(Prediction(
                request.id or request.request_id, time.time_ns(), model.name, model.version, track,
                request.protocol, "ok", int((time.perf_counter() - request.started) * 1e6), inputs,
                model.feature_names, outputs, entities,
            ))
        shadow = tracks.shadow_model()
        if shadow is not None and not request.model_version:
            if rows is not None and shadow.input_signature != model.input_signature:  # it needs its own features
                task = asyncio.get_running_loop().create_task(self._shadow_enriched(shadow, rows, request))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            else:
                asyncio.get_running_loop().call_soon(self._shadow, shadow, inputs, request, entities)
        return InferResult(model, track, outputs, parameters)

    async def _shadow_enriched(self, model: OnnxModel, rows: list[dict[str, Any]], request: InferRequest) -> None:
        started = time.perf_counter()
        try:
            inputs, entities, _ = await self._enrich(model, rows)
        except LooplineError as exc:
            log.warning("shadow enrichment failed: %s", exc.message)
            self._shadow_failed(model, request, exc.code.value, started)
            return
        self._shadow(model, inputs, request, entities)

    def _shadow(
        self, model: OnnxModel, inputs: list[Tensor], request: InferRequest, entities: list[dict[str, str]] | None
    ) -> None:
        """Score the challenger on the same input after the champion's answer went out; log it as shadow."""
        started = time.perf_counter()
        try:
            outputs = model.run(model.validate(inputs))
        except LooplineError as exc:
            log.warning("shadow scoring failed: %s", exc.message)
            self._shadow_failed(model, request, exc.code.value, started)
            return
        except Exception:
            log.exception("shadow scoring failed")
            self._shadow_failed(model, request, "INTERNAL", started)
            return
        self.stats.batch(model.name, model.version_label, "shadow", _rows(outputs), _scores(model, outputs, None))
        if self.prediction_log.enabled:
            self.prediction_log.add(
                Prediction(
                    request_id=request.id or request.request_id, time_ns=time.time_ns(), model_name=model.name,
                    model_version=model.version, track="shadow", protocol=request.protocol, status="ok",
                    latency_us=int((time.perf_counter() - started) * 1e6), inputs=inputs,
                    feature_names=model.feature_names, outputs=outputs, entities=entities,
                )
            )

    def _shadow_failed(self, model: OnnxModel, request: InferRequest, code: str, started: float) -> None:
        """A failed shadow scoring counts against the challenger (the caller got the champion's answer)."""
        seconds = time.perf_counter() - started
        self.stats.request(model.name, model.version_label, "shadow", request.protocol, code, seconds)
        if self.prediction_log.enabled:
            self.prediction_log.add(
                Prediction(
                    request_id=request.id or request.request_id, time_ns=time.time_ns(), model_name=model.name,
                    model_version=model.version, track="shadow", protocol=request.protocol, status=code,
                    latency_us=int(seconds * 1e6), inputs=None, feature_names=(), outputs=None,
                )
            )

    async def _enrich(
        self, model: OnnxModel, rows: list[dict[str, Any]]
    ) -> tuple[list[Tensor], list[dict[str, str]], int]:
        if self.features is None:
            raise NotImplementedYet(
                "this request names entities, but the server has no features service configured "
                "(LOOPLINE_INFERENCE_FEATURES_ADDRESS)"
            )
        if len(model.inputs) != 1 or not model.feature_names:
            raise InvalidArgument(f"model '{model.name}' cannot be fed from entity ids (one input with feature names)")
        cells = await self.features.fetch(model, rows)
        matrix, defaulted = build_input(model, cells, policy=self.missing_feature_policy)
        entities = [{k: str(v) for k, v in row.items()} for row in rows]
        return [Tensor(model.inputs[0].name, model.inputs[0].datatype, matrix)], entities, defaulted

    def log_failure(
        self, request: InferRequest | None, model_name: str, code: str, protocol: str, detail: str = ""
    ) -> None:
        """Errors are logged too, without inputs or outputs. A failure of the server's own making (not a
        client's bad request) is also written to the service log, at most once a second per code."""
        routed = request.routed if request else None
        if code in SERVER_FAULTS:
            now = time.monotonic()
            if now - self._fault_said.get(code, -1e9) >= 1.0:
                self._fault_said[code] = now
                log.warning(
                    "infer failed: %s: %s", code, detail or "(no detail)",
                    extra={"model": model_name, "track": routed[1] if routed else "", "protocol": protocol,
                           "request_id": (request.id or request.request_id) if request else ""},
                )
        if not self.prediction_log.enabled or model_name not in self.models:
            return
        # Attributed to the track the request was routed to; before routing (e.g. a malformed request) to
        # the champion's version with no track.
        champion = self.models[model_name].champion
        version = routed[0].version if routed else (champion.version if champion else 0)
        self.prediction_log.add(
            Prediction(
                request_id=(request.id or request.request_id) if request else "", time_ns=time.time_ns(),
                model_name=model_name, model_version=version, track=routed[1] if routed else "",
                protocol=protocol, status=code,
                latency_us=int((time.perf_counter() - request.started) * 1e6) if request else 0,
                inputs=None, feature_names=(), outputs=None,
            )
        )


def _rows(outputs: list[Tensor]) -> int:
    for t in outputs:
        if t.array.ndim:
            return int(t.array.shape[0])
    return 1


def _scores(model: OnnxModel, outputs: list[Tensor], requested: list[str] | None) -> np.ndarray[Any, Any] | None:
    if model.score is None:
        return None
    index, column = model.score
    if requested is None:
        array = outputs[index].array
    else:
        name = model.outputs[index].name
        found = next((t.array for t in outputs if t.name == name), None)
        if found is None:
            return None
        array = found
    if array.ndim == 2:
        if column >= array.shape[1]:
            return None
        return array[:, column]
    return array.reshape(-1)
