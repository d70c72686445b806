"""The gRPC transport: translate and call RolloutApi."""

from __future__ import annotations

import grpc

from loopline.rollout.v1 import rollout_pb2 as pb
from loopline.rollout.v1 import rollout_pb2_grpc
from loopline_rollout.api import RolloutApi


def _authorization(context: grpc.aio.ServicerContext) -> str | None:
    return next((str(v) for k, v in context.invocation_metadata() or () if k == "authorization"), None)


class RolloutServicer(rollout_pb2_grpc.RolloutServiceServicer):
    def __init__(self, api: RolloutApi) -> None:
        self.api = api

    async def StartRollout(self, request: pb.StartRolloutRequest, context: grpc.aio.ServicerContext
                           ) -> pb.StartRolloutResponse:
        return await self.api.start(request, _authorization(context))

    async def GetRollout(self, request: pb.GetRolloutRequest, context: grpc.aio.ServicerContext
                         ) -> pb.GetRolloutResponse:
        return await self.api.get(request)

    async def ListRollouts(self, request: pb.ListRolloutsRequest, context: grpc.aio.ServicerContext
                           ) -> pb.ListRolloutsResponse:
        return await self.api.list(request)

    async def PauseRollout(self, request: pb.PauseRolloutRequest, context: grpc.aio.ServicerContext
                           ) -> pb.PauseRolloutResponse:
        response: pb.PauseRolloutResponse = await self.api.steer("PauseRollout", request, _authorization(context))
        return response

    async def ResumeRollout(self, request: pb.ResumeRolloutRequest, context: grpc.aio.ServicerContext
                            ) -> pb.ResumeRolloutResponse:
        response: pb.ResumeRolloutResponse = await self.api.steer("ResumeRollout", request, _authorization(context))
        return response

    async def AbortRollout(self, request: pb.AbortRolloutRequest, context: grpc.aio.ServicerContext
                           ) -> pb.AbortRolloutResponse:
        response: pb.AbortRolloutResponse = await self.api.steer("AbortRollout", request, _authorization(context))
        return response

    async def PromoteRollout(self, request: pb.PromoteRolloutRequest, context: grpc.aio.ServicerContext
                             ) -> pb.PromoteRolloutResponse:
        response: pb.PromoteRolloutResponse = await self.api.steer("PromoteRollout", request,
                                                                   _authorization(context))
        return response
