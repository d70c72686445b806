"""The gRPC transport: `loopline.registry.v1.RegistryService`, a thin layer over `api.RegistryApi`.

The caller's token comes from the `authorization` metadata (`Bearer <token>`). Errors are raised as
LooplineErrors and answered by the shared interceptor through the common status table.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from loopline.registry.v1 import registry_pb2 as pb
from loopline.registry.v1 import registry_pb2_grpc as pb_grpc
from loopline_registry.api import ROLES, RegistryApi

AUTHORIZATION = "authorization"


def _authorization(context: grpc.aio.ServicerContext) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == AUTHORIZATION:
            return str(value)
    return None


def _unary(name: str) -> Callable[[Any, Any, grpc.aio.ServicerContext], Awaitable[Any]]:
    async def method(self: RegistryServicer, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return await self.api.call(name, request, _authorization(context))

    method.__name__ = name
    return method


class RegistryServicer(pb_grpc.RegistryServiceServicer):
    def __init__(self, api: RegistryApi) -> None:
        self.api = api

    async def DownloadArtifact(
        self, request: pb.DownloadArtifactRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.DownloadArtifactResponse]:
        download = await self.api.download(request, _authorization(context))
        yield pb.DownloadArtifactResponse(
            header=pb.ArtifactHeader(
                model_name=download.model_name, version=download.version, path=download.path,
                size_bytes=download.size_bytes, expected_sha256=download.expected_sha256,
            )
        )
        async for chunk in download.chunks():
            yield pb.DownloadArtifactResponse(chunk=chunk)
        yield pb.DownloadArtifactResponse(
            trailer=pb.ArtifactTrailer(sha256=download.sha256, size_bytes=download.sent_bytes)
        )


for _name in ROLES:
    if _name != "DownloadArtifact":
        setattr(RegistryServicer, _name, _unary(_name))
