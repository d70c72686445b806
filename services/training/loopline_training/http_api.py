"""The HTTP/JSON mirror of TrainingService: the same calls through `api.TrainingApi`, the same errors.

Bodies and answers are the gRPC messages in the proto3 JSON mapping with proto field names (int64 values
are answered as strings and accepted as numbers or strings; enums by name).

    POST /v1/jobs                    SubmitJob     body: {"spec": {...}, "idempotency_key": "..."}
    GET  /v1/jobs                    ListJobs      ?states=JOB_STATE_RUNNING (repeatable)&model_name=&trigger=
                                                   &page_size=&page_token=
    GET  /v1/jobs/{job_id}           GetJob
    POST /v1/jobs/{job_id}:cancel    CancelJob     body: {"reason": "..."}
    GET  /v1/jobs/{job_id}:watch     WatchJob      application/x-ndjson: one WatchJobResponse per line
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from loopline.training.v1 import training_pb2 as pb
from loopline_common.errors import InvalidArgument
from loopline_common.http_app import json_body, json_to_message, message_to_json
from loopline_training.api import TrainingApi


def _list_query(request: Request) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for key, value in request.query_params.multi_items():
        if key in ("states", "state"):
            name = value.upper()
            data.setdefault("states", []).append(name if name.startswith("JOB_STATE_") else f"JOB_STATE_{name}")
        elif key in ("model_name", "trigger", "page_size", "page_token"):
            data[key] = value
        else:
            raise InvalidArgument(f"unknown query parameter {key[:60]!r}", details={"field": key[:60]})
    return data


def add_routes(app: FastAPI, api: TrainingApi) -> None:
    @app.post("/v1/jobs")
    async def submit_job(request: Request) -> JSONResponse:
        message = json_to_message(await json_body(request), pb.SubmitJobRequest())
        return JSONResponse(message_to_json(await api.submit_job(message)))

    @app.get("/v1/jobs")
    async def list_jobs(request: Request) -> JSONResponse:
        message = json_to_message(_list_query(request), pb.ListJobsRequest())
        return JSONResponse(message_to_json(await api.list_jobs(message)))

    @app.get("/v1/jobs/{job_id}:watch")
    async def watch_job(job_id: str) -> StreamingResponse:
        stream = api.watch_job(pb.WatchJobRequest(job_id=job_id))
        first = await anext(stream)  # errors (NOT_FOUND) are answered before the stream starts

        async def lines() -> AsyncIterator[bytes]:
            yield (json.dumps(message_to_json(first)) + "\n").encode()
            async for message in stream:
                yield (json.dumps(message_to_json(message)) + "\n").encode()

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    @app.get("/v1/jobs/{job_id}")
    async def get_job(job_id: str) -> JSONResponse:
        return JSONResponse(message_to_json(await api.get_job(pb.GetJobRequest(job_id=job_id))))

    @app.post("/v1/jobs/{job_id}:cancel")
    async def cancel_job(job_id: str, request: Request) -> JSONResponse:
        message = json_to_message({**await json_body(request), "job_id": job_id}, pb.CancelJobRequest())
        return JSONResponse(message_to_json(await api.cancel_job(message)))
