"""The HTTP/JSON mirror: the same calls, bodies in the proto3 JSON mapping with the proto field names.

| route | call |
|---|---|
| `POST /v1/rollouts` | StartRollout |
| `GET /v1/rollouts?model_name=&active_only=&page_size=` | ListRollouts |
| `GET /v1/rollouts/{model}` (`?rollout_id=`) | GetRollout |
| `POST /v1/rollouts/{model}:pause` `:resume` `:abort` `:promote` (body `{"reason"}`) | the steering calls |
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Header, Request

from loopline.rollout.v1 import rollout_pb2 as pb
from loopline_common.errors import NotFound
from loopline_common.http_app import json_body, json_to_message, message_to_json
from loopline_rollout.api import RolloutApi

ACTIONS = {"pause": ("PauseRollout", pb.PauseRolloutRequest), "resume": ("ResumeRollout", pb.ResumeRolloutRequest),
           "abort": ("AbortRollout", pb.AbortRolloutRequest), "promote": ("PromoteRollout", pb.PromoteRolloutRequest)}


def add_routes(app: FastAPI, api: RolloutApi) -> None:
    @app.post("/v1/rollouts")
    async def start(request: Request, authorization: str | None = Header(None)) -> dict[str, Any]:
        body = json_to_message(await json_body(request), pb.StartRolloutRequest())
        return message_to_json(await api.start(body, authorization))

    @app.get("/v1/rollouts")
    async def list_rollouts(model_name: str = "", active_only: bool = False, page_size: int = 0) -> dict[str, Any]:
        request = pb.ListRolloutsRequest(model_name=model_name, active_only=active_only, page_size=page_size)
        return message_to_json(await api.list(request))

    @app.get("/v1/rollouts/{model}")
    async def get(model: str, rollout_id: str = "") -> dict[str, Any]:
        return message_to_json(await api.get(pb.GetRolloutRequest(model_name=model, rollout_id=rollout_id)))

    @app.post("/v1/rollouts/{target}")
    async def steer(target: str, request: Request, authorization: str | None = Header(None)) -> dict[str, Any]:
        model, _, action = target.rpartition(":")
        if action not in ACTIONS or not model:
            raise NotFound(f"no such action '{action}': use :pause, :resume, :abort or :promote")
        method, kind = ACTIONS[action]
        body = json_to_message(await json_body(request), kind())
        body.model_name = model  # type: ignore[attr-defined]
        return message_to_json(await api.steer(method, body, authorization))
