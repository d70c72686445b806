"""Wiring: settings → model loading → data plane → REST (raw ASGI over the FastAPI app) and gRPC → run."""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
from typing import Any

from fastapi import FastAPI
from google.protobuf.json_format import MessageToDict
from pydantic import BaseModel, Field

from loopline.inference.v1 import inference_pb2, inference_pb2_grpc
from loopline_common.allocator import keep_freed_memory
from loopline_common.errors import NotFound
from loopline_common.grpc_server import GrpcServer
from loopline_common.http_app import create_http_app
from loopline_common.logs import configure_logging
from loopline_common.metrics import ServiceMetrics
from loopline_common.readiness import Readiness
from loopline_common.runner import load_settings_or_exit, serve
from loopline_inference.cpu import cpu_limit
from loopline_inference.dataplane import DataPlane
from loopline_inference.enrichment import OnlineFeatures
from loopline_inference.events import AliasFollower
from loopline_inference.grpc_api import AdminServicer, OipServicer, get_tracks, set_weights
from loopline_inference.kafka_log import LogProducer
from loopline_inference.loader import ModelLoader, ModelRef, parse_ref
from loopline_inference.model import OnnxModel
from loopline_inference.oip_pb import SERVICE as OIP_SERVICE
from loopline_inference.predlog import PredictionLog
from loopline_inference.registry import RegistryClient
from loopline_inference.rest import OipRest, RequestIds
from loopline_inference.settings import InferenceSettings
from loopline_inference.stats import InferenceStats
from loopline_inference.tracks import CHALLENGER, CHAMPION, ModelTracks

log = logging.getLogger(__name__)

SERVICE = "inference"
ADMIN_SERVICE = inference_pb2.DESCRIPTOR.services_by_name["InferenceAdminService"].full_name


class WeightsBody(BaseModel):
    model_name: str = Field(min_length=1)
    challenger_weight: float = Field(ge=0.0, le=1.0)
    shadow: bool = False
    actor: str = ""
    reason: str = ""


class InferenceService:
    """The service's parts, built from settings; `main` runs it."""

    def __init__(self, settings: InferenceSettings) -> None:
        self.settings = settings
        self.metrics = ServiceMetrics(SERVICE)
        self.readiness = Readiness()
        self.stats = InferenceStats(self.metrics)
        threads = settings.intra_op_threads or cpu_limit()
        registry = RegistryClient(settings.registry_address) if settings.registry_address else None
        self.loader = ModelLoader(
            model_name=settings.model_name, registry=registry, threads=threads,
            local_version=settings.model_version, model_file=settings.model_file,
        )
        self.refs: dict[str, ModelRef] = {}
        if settings.mode == "cluster":
            self.refs[settings.track] = parse_ref(settings.model)
        else:
            self.refs[CHAMPION] = parse_ref(settings.model)
            if settings.challenger:
                self.refs[CHALLENGER] = parse_ref(settings.challenger)
        cluster_track = settings.track if settings.mode == "cluster" else None
        self.tracks = ModelTracks(settings.model_name, cluster_track=cluster_track)
        self.producer = (
            LogProducer(
                bootstrap_servers=settings.kafka_bootstrap, metrics=self.metrics, client_id="loopline-inference",
                max_buffered=settings.producer_buffer, max_buffered_bytes=settings.producer_buffer_mib << 20,
                delivery_timeout_ms=int(settings.producer_delivery_timeout_seconds * 1000),
            )
            if settings.kafka_bootstrap
            else None
        )
        self.prediction_log = PredictionLog(
            producer=self.producer, stats=self.stats, instance=settings.instance_id or socket.gethostname(),
            max_pending=settings.log_max_pending, flush_seconds=settings.log_flush_seconds,
        )
        self.features = (
            OnlineFeatures(settings.features_address, timeout_seconds=settings.features_timeout_seconds)
            if settings.features_address
            else None
        )
        self.dataplane = DataPlane(
            models={settings.model_name: self.tracks}, stats=self.stats, prediction_log=self.prediction_log,
            features=self.features, missing_feature_policy=settings.missing_features,
        )
        self.readiness.add("models_loaded", self._models_loaded)
        self.ids = RequestIds()
        self.follower: AliasFollower | None = None
        self._load_task: asyncio.Task[None] | None = None
        self.http = self._http_app()
        # The ASGI app uvicorn runs: OIP requests are answered before FastAPI and its middleware stack
        # (telemetry, error and body-limit wrappers) see them; everything else goes on to FastAPI.
        self.asgi = OipRest(self.http, dataplane=self.dataplane, max_request_bytes=settings.max_request_bytes,
                            ids=self.ids)
        self.grpc = self._grpc_server()
        self._publish_weights(settings.model_name)

    def _models_loaded(self) -> bool:
        if self.settings.ready_without_model:
            return True
        return all(self._served(track) is not None for track in self.refs)

    def _served(self, track: str) -> OnnxModel | None:
        if track == CHALLENGER and self.tracks.cluster_track is None:
            return self.tracks.challenger
        return self.tracks.champion

    def _http_app(self) -> FastAPI:
        s = self.settings
        app = create_http_app(
            service=SERVICE, metrics=self.metrics, readiness=self.readiness, max_request_bytes=s.max_request_bytes,
            description="Loopline inference: OIP v2 under /v2 (REST), admin API under /v1/admin",
        )

        @app.post("/v1/admin/weights")
        async def http_set_weights(body: WeightsBody) -> dict[str, Any]:
            request = inference_pb2.SetTrafficWeightsRequest(**body.model_dump())
            return _json(set_weights(self.dataplane, request, self._publish_weights))

        @app.get("/v1/admin/tracks/{model_name}")
        async def http_get_tracks(model_name: str) -> dict[str, Any]:
            return _json(get_tracks(self.dataplane, model_name, s.mode))

        return app

    def _grpc_server(self) -> GrpcServer:
        s = self.settings
        server = GrpcServer(
            metrics=self.metrics, readiness=self.readiness, host=s.host, port=s.grpc_port,
            max_message_bytes=s.max_request_bytes,
        )
        # OIP goes without the shared interceptor: its handlers do that work themselves, cheaper.
        oip = OipServicer(self.dataplane, self.ids)
        server.add_service(
            lambda _, srv: srv.add_generic_rpc_handlers((oip.handler(),)), None, OIP_SERVICE, intercept=False
        )
        admin = AdminServicer(dataplane=self.dataplane, mode=s.mode, on_weights=self._publish_weights)
        server.add_service(inference_pb2_grpc.add_InferenceAdminServiceServicer_to_server, admin, ADMIN_SERVICE)
        return server

    def _publish_weights(self, model_name: str) -> None:
        for track, weight in self.tracks.weights().items():
            self.stats.weights[(model_name, track)] = weight

    def swap(self, track: str, model: OnnxModel | None) -> None:
        """Put `model` on `track` (None: unload the challenger). Runs on the event loop thread."""
        if track == CHALLENGER and self.tracks.cluster_track is None:
            old = self.tracks.challenger
            self.tracks.challenger = model
            if model is None:
                self.tracks.set_weights(challenger_weight=0.0, shadow=False)
        else:
            old = self.tracks.champion
            self.tracks.champion = model
        for key in [k for k in self.stats.load_seconds if k[2] == track]:
            del self.stats.load_seconds[key]
        if model is not None:
            self.stats.load_seconds[(model.name, model.version_label, track)] = model.load_seconds
        if old is not None:
            self.stats.swaps[self.settings.model_name] = self.stats.swaps.get(self.settings.model_name, 0) + 1
        self._publish_weights(self.settings.model_name)
        log.info(
            "track swapped",
            extra={"track": track, "version": model.version if model else 0,
                   "previous": old.version if old else 0, "event": "swapped"},
        )

    def current_version(self, track: str) -> int:
        model = self._served(track)
        return model.version if model is not None else 0

    async def _load_all(self) -> None:
        for track, ref in self.refs.items():
            said = ""
            while True:
                try:
                    local = track == CHALLENGER and self.tracks.cluster_track is None and not ref.from_registry
                    local_version = self.settings.challenger_version if local else None
                    model = await asyncio.to_thread(self.loader.load, ref, version=local_version)
                    break
                except Exception as exc:  # registry not up yet, file not there yet: keep trying, stay unready
                    # Said once per distinct reason, not every retry. An alias that does not exist yet (no
                    # challenger before the first rollout) is a normal state, not an error.
                    text = f"cannot load the {track} model from {ref.describe()}: {exc}"
                    if text != said:
                        level = logging.INFO if isinstance(exc, NotFound) else logging.WARNING
                        log.log(level, "%s (retrying every 2 s)", text, extra={"track": track})
                        said = text
                    await asyncio.sleep(2.0)
            self.swap(track, model)
        s = self.settings
        if s.mode == "embedded" and CHALLENGER in self.refs and (s.challenger_weight or s.shadow):
            self.tracks.set_weights(challenger_weight=s.challenger_weight, shadow=s.shadow)
            self._publish_weights(s.model_name)
        gc.freeze()  # the loaded sessions live as long as the process (see loopline_common.runner.serve)
        log.info("models ready", extra={"event": "models_ready", "tracks": list(self.refs)})

    async def on_start(self) -> None:
        loop = asyncio.get_running_loop()
        self.prediction_log.start(loop)
        self._load_task = asyncio.create_task(self._load_all())
        s = self.settings
        if s.kafka_bootstrap and s.follow_aliases and s.mode == "embedded":
            self.follower = AliasFollower(
                bootstrap_servers=s.kafka_bootstrap,
                group_id=f"loopline-inference-{s.model_name}-{s.instance_id or socket.gethostname()}",
                refs=self.refs, loader=self.loader, current_version=self.current_version, swap=self.swap,
                loop=loop, metrics=self.metrics,
            )
            await asyncio.to_thread(self.follower.start)

    async def on_stop(self) -> None:
        if self._load_task is not None:
            self._load_task.cancel()
        if self.follower is not None:
            await asyncio.to_thread(self.follower.stop)
        self.prediction_log.stop()
        if self.producer is not None:
            await asyncio.to_thread(self.producer.close, 5.0)
        if self.features is not None:
            await self.features.close()

    async def run(self, stop_event: asyncio.Event | None = None) -> None:
        await serve(
            service=SERVICE, settings=self.settings, readiness=self.readiness, grpc_server=self.grpc,
            http_app=self.asgi, on_start=self.on_start, on_stop=self.on_stop, stop_event=stop_event,
        )


def _json(message: Any) -> dict[str, Any]:
    return MessageToDict(message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)


def main() -> None:
    settings = load_settings_or_exit(InferenceSettings)
    configure_logging(service=SERVICE, level=settings.log_level)
    if settings.allocator_keep_mib:
        keep_freed_memory(trim_mib=settings.allocator_keep_mib)
    service = InferenceService(settings)
    if settings.uvloop:
        import uvloop

        uvloop.run(service.run())
    else:
        asyncio.run(service.run())
