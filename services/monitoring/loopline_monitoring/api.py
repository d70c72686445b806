"""The calls both transports serve, as keyword-only functions over the core; gRPC and HTTP only translate."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import UTC, datetime
from pathlib import Path

from loopline.events.v1 import predictions_pb2
from loopline.monitoring.v1 import monitoring_pb2
from loopline_common.errors import InvalidArgument, NotFound
from loopline_monitoring import report
from loopline_monitoring.core import MonitoringCore

SERVICE = "loopline.monitoring.v1.MonitoringService"
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_REPORT_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\.(png|html)$")


def _model(name: str) -> str:
    if not _MODEL_NAME.match(name):
        raise InvalidArgument(f"invalid model name {name!r}", details={"field": "model_name"})
    return name


class MonitoringApi:
    def __init__(self, *, core: MonitoringCore, reports_dir: Path) -> None:
        self.core = core
        self.reports_dir = reports_dir

    async def get_canary_analysis(
        self, *, model_name: str, window_seconds: float
    ) -> monitoring_pb2.GetCanaryAnalysisResponse:
        if window_seconds < 0:
            raise InvalidArgument("window_seconds must be >= 0", details={"field": "window_seconds"})
        return await asyncio.to_thread(
            self.core.canary_analysis, model_name=_model(model_name), window_seconds=window_seconds
        )

    async def get_drift_status(self, *, model_name: str) -> monitoring_pb2.GetDriftStatusResponse:
        return self.core.drift_status(model_name=_model(model_name))

    async def list_drift_windows(
        self, *, model_name: str, model_version: int, track: int, page_size: int
    ) -> monitoring_pb2.ListDriftWindowsResponse:
        if track not in predictions_pb2.Track.values():
            raise InvalidArgument(f"unknown track {track}", details={"field": "track"})
        return self.core.drift_windows(
            model_name=_model(model_name), version=model_version, track=track, page_size=page_size
        )

    async def get_skew_report(self, *, model_name: str, model_version: int) -> monitoring_pb2.GetSkewReportResponse:
        return self.core.skew_report(model_name=_model(model_name), version=model_version)

    async def generate_report(
        self, *, model_name: str, model_version: int, history: int
    ) -> monitoring_pb2.GenerateReportResponse:
        return await asyncio.to_thread(
            self._generate_report, model_name=_model(model_name), model_version=model_version, history=history
        )

    def _generate_report(
        self, *, model_name: str, model_version: int, history: int
    ) -> monitoring_pb2.GenerateReportResponse:
        keep = 50 if history <= 0 else min(history, 500)
        status = self.core.drift_status(model_name=model_name)
        if model_version:
            kept = [s for s in status.statuses if s.model_version == model_version]
            if not kept:
                raise NotFound(f"no drift windows of {model_name} v{model_version}")
            del status.statuses[:]
            status.statuses.extend(kept)
        windows = {
            (k.version, k.track): v[-keep:] for k, v in self.core.history(model_name).items()
            if not model_version or k.version == model_version
        }
        try:
            canary = self.core.canary_analysis(model_name=model_name, window_seconds=0)
        except NotFound:
            canary = None
        now = time.time()
        rendered = report.render(
            model_name=model_name, status=status, history=windows,
            skew=self.core.skew_report(model_name=model_name, version=model_version), canary=canary,
            generated_at=now,
        )
        stamp = datetime.fromtimestamp(now, UTC).strftime("%Y%m%dT%H%M%S%fZ")
        folder = self.reports_dir / model_name / stamp
        report.save(rendered, folder)
        latest = self.reports_dir / model_name / "latest"
        report.save(rendered, latest)
        response = monitoring_pb2.GenerateReportResponse(
            html=rendered.html, saved_to=str(folder), images=sorted(rendered.images)
        )
        response.generated_at.FromNanoseconds(int(now * 1e9))
        return response

    def report_file(self, *, model_name: str, name: str) -> Path:
        """A file of the model's latest saved report (index.html, report.html or a PNG)."""
        if not _REPORT_FILE.match(name):
            raise InvalidArgument(f"invalid report file name {name!r}")
        path = self.reports_dir / _model(model_name) / "latest" / name
        if not path.is_file():
            raise NotFound(f"no report file {name} for {model_name}; generate one first")
        return path
