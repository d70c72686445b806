"""The gRPC transport: `loopline.training.v1.TrainingService`, a thin layer over `api.TrainingApi`.
Errors are raised as LooplineErrors and answered by the shared interceptor through the status table."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from loopline.training.v1 import training_pb2 as pb
from loopline.training.v1 import training_pb2_grpc as pb_grpc
from loopline_training.api import TrainingApi


class TrainingServicer(pb_grpc.TrainingServiceServicer):
    def __init__(self, api: TrainingApi) -> None:
        self.api = api

    async def SubmitJob(self, request: pb.SubmitJobRequest, context: grpc.aio.ServicerContext) -> pb.SubmitJobResponse:
        return await self.api.submit_job(request)

    async def GetJob(self, request: pb.GetJobRequest, context: grpc.aio.ServicerContext) -> pb.GetJobResponse:
        return await self.api.get_job(request)

    async def ListJobs(self, request: pb.ListJobsRequest, context: grpc.aio.ServicerContext) -> pb.ListJobsResponse:
        return await self.api.list_jobs(request)

    async def CancelJob(self, request: pb.CancelJobRequest, context: grpc.aio.ServicerContext) -> pb.CancelJobResponse:
        return await self.api.cancel_job(request)

    async def WatchJob(
        self, request: pb.WatchJobRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.WatchJobResponse]:
        async for message in self.api.watch_job(request):
            yield message
