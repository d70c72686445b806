"""The HTTP/JSON mirror: the same calls and errors as gRPC; bodies are the gRPC messages in the proto3 JSON
mapping with the proto field names. Reports are also served as pages and PNG files."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Query
from fastapi.responses import FileResponse, HTMLResponse

from loopline.events.v1 import predictions_pb2
from loopline_common.errors import InvalidArgument
from loopline_common.http_app import message_to_json
from loopline_monitoring.api import MonitoringApi


def _track(value: str) -> int:
    """A track given by name (champion) or enum name (TRACK_CHAMPION) or number."""
    if value.isdigit():
        return int(value)
    name = value.upper()
    name = name if name.startswith("TRACK_") else f"TRACK_{name}"
    try:
        return int(predictions_pb2.Track.Value(name))
    except ValueError:
        raise InvalidArgument(f"unknown track {value!r}", details={"field": "track"}) from None


def add_routes(app: FastAPI, api: MonitoringApi) -> None:
    @app.get("/v1/models/{model_name}/canary")
    async def canary(model_name: str, window_seconds: float = Query(0.0, ge=0)) -> dict[str, Any]:
        return message_to_json(await api.get_canary_analysis(model_name=model_name, window_seconds=window_seconds))

    @app.get("/v1/models/{model_name}/drift")
    async def drift_status(model_name: str) -> dict[str, Any]:
        return message_to_json(await api.get_drift_status(model_name=model_name))

    @app.get("/v1/models/{model_name}/versions/{model_version}/tracks/{track}/windows")
    async def drift_windows(
        model_name: str, model_version: int, track: str, page_size: int = Query(50, ge=0, le=1000)
    ) -> dict[str, Any]:
        return message_to_json(await api.list_drift_windows(
            model_name=model_name, model_version=model_version, track=_track(track), page_size=page_size
        ))

    @app.get("/v1/models/{model_name}/skew")
    async def skew(model_name: str, model_version: int = Query(0, ge=0)) -> dict[str, Any]:
        return message_to_json(await api.get_skew_report(model_name=model_name, model_version=model_version))

    @app.post("/v1/models/{model_name}/report")
    async def generate_report(
        model_name: str, model_version: int = Query(0, ge=0), history: int = Query(0, ge=0)
    ) -> dict[str, Any]:
        report = await api.generate_report(model_name=model_name, model_version=model_version, history=history)
        return message_to_json(report)

    @app.get("/v1/models/{model_name}/report", response_class=HTMLResponse)
    async def report_page(
        model_name: str, model_version: int = Query(0, ge=0), history: int = Query(0, ge=0)
    ) -> HTMLResponse:
        """A freshly generated report (saved too), as a page linking its PNG files."""
        await api.generate_report(model_name=model_name, model_version=model_version, history=history)
        return HTMLResponse(api.report_file(model_name=model_name, name="index.html").read_text()
                            .replace('src="', f'src="/v1/models/{model_name}/report/files/'))

    @app.get("/v1/models/{model_name}/report/files/{name}")
    async def report_file(model_name: str, name: str) -> FileResponse:
        path = api.report_file(model_name=model_name, name=name)
        media = "image/png" if name.endswith(".png") else "text/html"
        return FileResponse(path, media_type=media)
