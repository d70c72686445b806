"""The HTTP/JSON mirror of RegistryService: the same calls through `api.RegistryApi`, the same errors.

Bodies and answers are the gRPC messages in the proto3 JSON mapping with proto field names (so int64
values are answered as strings, and accepted as numbers or strings). Path and query parameters fill the
request message's fields of the same name. The token comes from `Authorization: Bearer <token>`.

    GET    /v1/models                                          ListModels
    GET    /v1/models/{model_name}                             GetModel
    GET    /v1/models/{model_name}/versions                    ListVersions (tag=key=value, repeatable)
    POST   /v1/models/{model_name}/versions                    RegisterVersion
    GET    /v1/models/{model_name}/versions/{version}          GetVersion
    GET    /v1/models/{model_name}/aliases/{alias}             ResolveAlias
    PUT    /v1/models/{model_name}/aliases/{alias}             SetAlias
    DELETE /v1/models/{model_name}/aliases/{alias}             DeleteAlias
    POST   /v1/models/{model_name}:evaluate                    EvaluatePromotion
    POST   /v1/models/{model_name}:promote                     Promote
    POST   /v1/models/{model_name}:rollback                    Rollback
    POST   /v1/models/{model_name}/versions/{version}:archive      Archive
    POST   /v1/models/{model_name}/versions/{version}:transition   TransitionStage
    POST   /v1/models/{model_name}/versions/{version}:approve      ApproveVersion
    GET    /v1/models/{model_name}/versions/{version}/lineage  GetLineage
    GET    /v1/models/{model_name}/versions/{version}/artifact DownloadArtifact (bytes; checksum in headers)
    GET    /v1/models/{model_name}/policy                      GetPolicy
    PUT    /v1/models/{model_name}/policy                      SetPolicy
    GET    /v1/audit                                           ListAuditEntries
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from google.protobuf.message import Message

from loopline.registry.v1 import registry_pb2 as pb
from loopline_common.errors import InvalidArgument
from loopline_common.http_app import json_body, json_to_message, message_to_json
from loopline_registry.api import RegistryApi

CHECKSUM_HEADER = "x-loopline-sha256"
VERSION_HEADER = "x-loopline-version"


def _query(request: Request, message: Message, *, repeated_maps: tuple[str, ...] = ()) -> dict[str, Any]:
    """Query parameters as message fields; `tag=key=value` parameters fill the map field `tags`."""
    data: dict[str, Any] = {}
    fields = message.DESCRIPTOR.fields_by_name
    for key, value in request.query_params.multi_items():
        if key == "tag" and "tags" in repeated_maps:
            name, sep, tag_value = value.partition("=")
            if not sep:
                raise InvalidArgument("tag must be key=value", details={"field": "tag"})
            data.setdefault("tags", {})[name] = tag_value
        elif key in fields:
            data[key] = value
        else:
            raise InvalidArgument(f"unknown query parameter {key[:60]!r}", details={"field": key[:60]})
    return data


def add_routes(app: FastAPI, api: RegistryApi) -> None:
    async def call(method: str, message: Message, data: dict[str, Any], request: Request) -> JSONResponse:
        parsed = json_to_message(data, message)
        answer = await api.call(method, parsed, request.headers.get("authorization"))
        return JSONResponse(message_to_json(answer))

    @app.get("/v1/models")
    async def list_models(request: Request) -> JSONResponse:
        return await call("ListModels", pb.ListModelsRequest(), _query(request, pb.ListModelsRequest()), request)

    @app.get("/v1/models/{model_name}")
    async def get_model(model_name: str, request: Request) -> JSONResponse:
        data = {**_query(request, pb.GetModelRequest()), "model_name": model_name}
        return await call("GetModel", pb.GetModelRequest(), data, request)

    @app.get("/v1/models/{model_name}/versions")
    async def list_versions(model_name: str, request: Request) -> JSONResponse:
        data = {**_query(request, pb.ListVersionsRequest(), repeated_maps=("tags",)), "model_name": model_name}
        return await call("ListVersions", pb.ListVersionsRequest(), data, request)

    @app.post("/v1/models/{model_name}/versions")
    async def register_version(model_name: str, request: Request) -> JSONResponse:
        data = {**await json_body(request), "model_name": model_name}
        return await call("RegisterVersion", pb.RegisterVersionRequest(), data, request)

    @app.get("/v1/models/{model_name}/versions/{version}")
    async def get_version(model_name: str, version: int, request: Request) -> JSONResponse:
        return await call("GetVersion", pb.GetVersionRequest(), {"model_name": model_name, "version": version},
                          request)

    @app.get("/v1/models/{model_name}/aliases/{alias}")
    async def resolve_alias(model_name: str, alias: str, request: Request) -> JSONResponse:
        return await call("ResolveAlias", pb.ResolveAliasRequest(), {"model_name": model_name, "alias": alias},
                          request)

    @app.put("/v1/models/{model_name}/aliases/{alias}")
    async def set_alias(model_name: str, alias: str, request: Request) -> JSONResponse:
        data = {**await json_body(request), "model_name": model_name, "alias": alias}
        return await call("SetAlias", pb.SetAliasRequest(), data, request)

    @app.delete("/v1/models/{model_name}/aliases/{alias}")
    async def delete_alias(model_name: str, alias: str, request: Request) -> JSONResponse:
        data = {**_query(request, pb.DeleteAliasRequest()), "model_name": model_name, "alias": alias}
        return await call("DeleteAlias", pb.DeleteAliasRequest(), data, request)

    @app.post("/v1/models/{model_name}:evaluate")
    async def evaluate(model_name: str, request: Request) -> JSONResponse:
        data = {**await json_body(request), "model_name": model_name}
        return await call("EvaluatePromotion", pb.EvaluatePromotionRequest(), data, request)

    @app.post("/v1/models/{model_name}:promote")
    async def promote(model_name: str, request: Request) -> JSONResponse:
        data = {**await json_body(request), "model_name": model_name}
        return await call("Promote", pb.PromoteRequest(), data, request)

    @app.post("/v1/models/{model_name}:rollback")
    async def rollback(model_name: str, request: Request) -> JSONResponse:
        data = {**await json_body(request), "model_name": model_name}
        return await call("Rollback", pb.RollbackRequest(), data, request)

    @app.post("/v1/models/{model_name}/versions/{version}:archive")
    async def archive(model_name: str, version: int, request: Request) -> JSONResponse:
        data = {**await json_body(request), "model_name": model_name, "version": version}
        return await call("Archive", pb.ArchiveRequest(), data, request)

    @app.post("/v1/models/{model_name}/versions/{version}:transition")
    async def transition(model_name: str, version: int, request: Request) -> JSONResponse:
        data = {**await json_body(request), "model_name": model_name, "version": version}
        return await call("TransitionStage", pb.TransitionStageRequest(), data, request)

    @app.post("/v1/models/{model_name}/versions/{version}:approve")
    async def approve(model_name: str, version: int, request: Request) -> JSONResponse:
        data = {**await json_body(request), "model_name": model_name, "version": version}
        return await call("ApproveVersion", pb.ApproveVersionRequest(), data, request)

    @app.get("/v1/models/{model_name}/versions/{version}/lineage")
    async def lineage(model_name: str, version: int, request: Request) -> JSONResponse:
        return await call("GetLineage", pb.GetLineageRequest(), {"model_name": model_name, "version": version},
                          request)

    @app.get("/v1/models/{model_name}/versions/{version}/artifact")
    async def download(model_name: str, version: int, request: Request) -> StreamingResponse:
        data = {**_query(request, pb.DownloadArtifactRequest()), "model_name": model_name, "version": version}
        message = pb.DownloadArtifactRequest()
        json_to_message(data, message)
        started = await api.download(message, request.headers.get("authorization"))

        async def body() -> AsyncIterator[bytes]:
            async for chunk in started.chunks():
                yield chunk

        headers = {
            "content-length": str(started.size_bytes),
            VERSION_HEADER: str(started.version),
            "content-disposition": f'attachment; filename="{started.path.rsplit("/", 1)[-1]}"',
        }
        if started.expected_sha256:
            headers[CHECKSUM_HEADER] = started.expected_sha256
        return StreamingResponse(body(), media_type="application/octet-stream", headers=headers)

    @app.get("/v1/models/{model_name}/policy")
    async def get_policy(model_name: str, request: Request) -> JSONResponse:
        return await call("GetPolicy", pb.GetPolicyRequest(), {"model_name": model_name}, request)

    @app.put("/v1/models/{model_name}/policy")
    async def set_policy(model_name: str, request: Request) -> JSONResponse:
        data = {**await json_body(request), "model_name": model_name}
        return await call("SetPolicy", pb.SetPolicyRequest(), data, request)

    @app.get("/v1/audit")
    async def audit(request: Request) -> JSONResponse:
        return await call("ListAuditEntries", pb.ListAuditEntriesRequest(),
                          _query(request, pb.ListAuditEntriesRequest()), request)
