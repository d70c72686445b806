"""Tracks: the champion and (in embedded mode) the challenger of one model, with the traffic split.

A request is routed by a sticky key (an entity id when the request names entities, else its request id):
crc32(key) below the challenger's share of 2**32 goes to the challenger, so one key keeps its track while
the weight stays put. In shadow mode every request is answered by the champion and also scored by the
challenger off the response path. A swap replaces a track's model object whole: a request holds the
object it started with, so swaps never fail requests in flight.
"""

from __future__ import annotations

import itertools
import zlib
from dataclasses import dataclass, field

from loopline_common.errors import InvalidArgument, NotFound, Unavailable
from loopline_inference.model import OnnxModel

CHAMPION = "champion"
CHALLENGER = "challenger"
_SCALE = 1 << 32


@dataclass(slots=True)
class ModelTracks:
    """What one model name serves."""

    name: str
    # Cluster mode serves one pinned version under the track named by settings.
    cluster_track: str | None = None
    champion: OnnxModel | None = None
    challenger: OnnxModel | None = None
    challenger_weight: float = 0.0
    shadow: bool = False
    _threshold: int = 0
    _counter: itertools.count[int] = field(default_factory=itertools.count)

    def set_weights(self, *, challenger_weight: float, shadow: bool) -> float:
        """Set the split; returns the previous challenger weight."""
        if not 0.0 <= challenger_weight <= 1.0:
            raise InvalidArgument(f"challenger_weight must be within 0..1, got {challenger_weight}")
        if self.cluster_track is not None:
            raise InvalidArgument("cluster mode serves one track; KServe splits the traffic")
        if (challenger_weight > 0 or shadow) and self.challenger is None:
            raise InvalidArgument(f"model '{self.name}' has no challenger loaded")
        previous = self.challenger_weight
        self.challenger_weight = challenger_weight
        self.shadow = shadow
        self._threshold = 0 if shadow else int(challenger_weight * _SCALE)
        return previous

    def weights(self) -> dict[str, float]:
        if self.cluster_track is not None:
            return {self.cluster_track: 1.0}
        effective = 0.0 if self.shadow else self.challenger_weight
        return {CHAMPION: 1.0 - effective, CHALLENGER: effective}

    @property
    def ready(self) -> bool:
        return self.champion is not None

    def pick(self, key: str | None) -> tuple[OnnxModel, str]:
        """(model, track) for a request with sticky `key` (None: spread evenly)."""
        champion = self.champion
        if champion is None:
            raise Unavailable(f"model '{self.name}' is not loaded yet")
        if self._threshold and self.challenger is not None:
            h = zlib.crc32(key.encode()) if key else (next(self._counter) * 2654435761) & 0xFFFFFFFF
            if h < self._threshold:
                return self.challenger, CHALLENGER
        return champion, self.cluster_track or CHAMPION

    def by_version(self, version: str) -> tuple[OnnxModel, str]:
        for model, track in ((self.champion, CHAMPION), (self.challenger, CHALLENGER)):
            if model is not None and model.version_label == version:
                return model, self.cluster_track or track
        raise NotFound(f"model '{self.name}' has no version '{version}' loaded", details={"version": version})

    def shadow_model(self) -> OnnxModel | None:
        return self.challenger if self.shadow else None

    def loaded(self) -> list[tuple[str, OnnxModel]]:
        out = []
        if self.champion is not None:
            out.append((self.cluster_track or CHAMPION, self.champion))
        if self.challenger is not None:
            out.append((CHALLENGER, self.challenger))
        return out
