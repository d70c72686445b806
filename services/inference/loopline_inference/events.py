"""Model swaps that follow the registry: AliasChanged events on `loopline.models` for an alias this server
serves load the new version off the event loop, warm it up, then swap it in on the loop thread. Requests
in flight keep the model object they started with, so a swap fails none of them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from kafka.consumer.fetcher import ConsumerRecord

from loopline.events.v1 import models_pb2
from loopline_common.kafka_io import ConsumerLoop
from loopline_common.metrics import ServiceMetrics
from loopline_common.topics import MODELS
from loopline_inference.loader import ModelLoader, ModelRef
from loopline_inference.model import OnnxModel
from loopline_inference.tracks import CHALLENGER

log = logging.getLogger(__name__)

Swap = Callable[[str, OnnxModel | None], None]


class AliasFollower:
    def __init__(
        self,
        *,
        bootstrap_servers: str,
        group_id: str,
        refs: dict[str, ModelRef],
        loader: ModelLoader,
        current_version: Callable[[str], int],
        swap: Swap,
        loop: asyncio.AbstractEventLoop,
        metrics: ServiceMetrics,
    ) -> None:
        self.refs = {track: ref for track, ref in refs.items() if ref.from_registry and ref.alias}
        self.loader = loader
        self.current_version = current_version
        self.swap = swap
        self.loop = loop
        self.consumer = ConsumerLoop(
            bootstrap_servers=bootstrap_servers,
            group_id=group_id,
            topics=[MODELS],
            message_type=models_pb2.ModelEvent,
            handler=self.handle,
            metrics=metrics,
            client_id=group_id,
        )

    @property
    def active(self) -> bool:
        return bool(self.refs)

    def start(self) -> None:
        if self.refs:
            self.consumer.start()

    def stop(self) -> None:
        if self.refs:
            self.consumer.stop()

    def handle(self, event: models_pb2.ModelEvent, record: ConsumerRecord) -> None:
        """Idempotent: an event for a version already served changes nothing."""
        if event.WhichOneof("event") != "alias_changed":
            return
        changed = event.alias_changed
        for track, ref in self.refs.items():
            if changed.model_name != ref.name or changed.alias != ref.alias:
                continue
            if changed.new_version == 0:
                if track == CHALLENGER:
                    self._swap_on_loop(track, None)
                else:
                    log.warning("the champion alias was removed; keeping the version served", extra={"track": track})
                continue
            if changed.new_version == self.current_version(track):
                continue
            model = self.loader.load(ref, version=changed.new_version)
            self._swap_on_loop(track, model)

    def _swap_on_loop(self, track: str, model: OnnxModel | None) -> None:
        done = asyncio.run_coroutine_threadsafe(_call(self.swap, track, model), self.loop)
        done.result(timeout=30)


async def _call(swap: Swap, track: str, model: OnnxModel | None) -> None:
    swap(track, model)
