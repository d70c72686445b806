"""Monitoring (MonitoringService): drift status and windows, the canary comparison, reports."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from loopline.events.v1 import predictions_pb2
from loopline.monitoring.v1 import monitoring_pb2 as pb
from loopline.monitoring.v1 import monitoring_pb2_grpc as pb_grpc
from loopline_sdk._base import BaseClient, when


def track_name(value: int) -> str:
    return str(predictions_pb2.Track.Name(value)).removeprefix("TRACK_").lower()


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    method: str
    score: float
    threshold: float
    p_value: float | None
    drifted: bool


@dataclass(frozen=True)
class DriftWindow:
    model_version: int
    track: str
    sequence: int
    start: datetime | None
    end: datetime | None
    count: int
    drifted_share: float
    drifted_share_threshold: float
    dataset_drift: bool
    skipped_reason: str
    features: tuple[FeatureDrift, ...]

    @classmethod
    def from_proto(cls, w: pb.DriftWindowResult) -> DriftWindow:
        features = tuple(
            FeatureDrift(feature=s.drift.feature, method=s.drift.method, score=s.drift.score,
                         threshold=s.drift.threshold, p_value=s.drift.p_value if s.drift.HasField("p_value") else None,
                         drifted=s.drift.drifted)
            for s in w.scores if s.deciding
        )
        return cls(model_version=w.model_version, track=track_name(w.track), sequence=w.sequence,
                   start=when(w.window.start, w.window.HasField("start")),
                   end=when(w.window.end, w.window.HasField("end")), count=w.window.count,
                   drifted_share=w.drifted_share, drifted_share_threshold=w.drifted_share_threshold,
                   dataset_drift=w.dataset_drift, skipped_reason=w.skipped_reason, features=features)


@dataclass(frozen=True)
class DriftStatus:
    model_version: int
    track: str
    drifting: bool
    windows_closed: int
    open_window_count: int
    latest: DriftWindow | None
    last_event_at: datetime | None


@dataclass(frozen=True)
class TrackFigures:
    track: str
    version: int
    count: int
    errors: int
    error_rate: float
    p50: float
    p99: float
    prediction_mean: float | None


@dataclass(frozen=True)
class CanaryAnalysis:
    model_name: str
    champion_version: int
    challenger_version: int
    window_count: int
    prediction_psi: float | None
    tracks: tuple[TrackFigures, ...]


class MonitoringClient(BaseClient):
    service = "monitoring"

    def _stub(self, channel: Any) -> Any:
        return pb_grpc.MonitoringServiceStub(channel)  # type: ignore[no-untyped-call]

    def drift_status(self, model: str) -> list[DriftStatus]:
        reply = self._read("GetDriftStatus", pb.GetDriftStatusRequest(model_name=model))
        return [
            DriftStatus(model_version=s.model_version, track=track_name(s.track),
                        drifting=s.state == pb.ALERT_STATE_DRIFTING, windows_closed=s.windows_closed,
                        open_window_count=s.open_window_count,
                        latest=DriftWindow.from_proto(s.latest) if s.HasField("latest") else None,
                        last_event_at=when(s.last_event_at, s.HasField("last_event_at")))
            for s in reply.statuses
        ]

    def drift_windows(self, model: str, *, version: int = 0, track: str = "", limit: int = 200) -> list[DriftWindow]:
        """Closed windows of a model (optionally one version and track), as the service lists them."""
        request = pb.ListDriftWindowsRequest(
            model_name=model, model_version=version, page_size=limit,
            track=f"TRACK_{track.upper()}" if track else None,
        )
        return [DriftWindow.from_proto(w) for w in self._read("ListDriftWindows", request).windows]

    def canary(self, model: str, *, window_seconds: float = 0.0) -> CanaryAnalysis:
        r = self._read("GetCanaryAnalysis", pb.GetCanaryAnalysisRequest(model_name=model,
                                                                       window_seconds=window_seconds))
        tracks = tuple(
            TrackFigures(track=track_name(t.track), version=t.version, count=t.count, errors=t.errors,
                         error_rate=t.error_rate, p50=t.latency.p50, p99=t.latency.p99,
                         prediction_mean=t.prediction_mean if t.HasField("prediction_mean") else None)
            for t in r.tracks
        )
        return CanaryAnalysis(model_name=r.model_name, champion_version=r.champion_version,
                              challenger_version=r.challenger_version, window_count=r.window.count,
                              prediction_psi=r.prediction_psi if r.HasField("prediction_psi") else None,
                              tracks=tracks)

    def report_html(self, model: str, *, version: int = 0, history: int = 50, timeout: float = 120.0) -> str:
        """The monitoring service's own HTML drift report (plots embedded)."""
        reply = self._read("GenerateReport", pb.GenerateReportRequest(model_name=model, model_version=version,
                                                                      history=history), timeout=timeout)
        return str(reply.html)
