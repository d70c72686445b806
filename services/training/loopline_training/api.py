"""The transport-neutral jobs API: request messages in, response messages out, over `core.JobService`.
Both transports (gRPC servicer, HTTP routes) call it, so they cannot disagree."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from loopline.training.v1 import training_pb2 as pb
from loopline_common.errors import InvalidArgument
from loopline_common.logs import current_request_id
from loopline_training.convert import STATE_NAME, job_message
from loopline_training.core import JobService

SERVICE = "loopline.training.v1.TrainingService"


class TrainingApi:
    def __init__(self, *, core: JobService) -> None:
        self.core = core

    async def submit_job(self, request: pb.SubmitJobRequest) -> pb.SubmitJobResponse:
        if not request.HasField("spec"):
            raise InvalidArgument("spec is required", details={"spec": "required"})
        record, created = await asyncio.to_thread(
            self.core.submit, spec=request.spec, idempotency_key=request.idempotency_key,
            request_id=current_request_id(),
        )
        return pb.SubmitJobResponse(job=job_message(record), created=created)

    async def get_job(self, request: pb.GetJobRequest) -> pb.GetJobResponse:
        record = await asyncio.to_thread(self.core.get, request.job_id)
        return pb.GetJobResponse(job=job_message(record))

    async def list_jobs(self, request: pb.ListJobsRequest) -> pb.ListJobsResponse:
        states = []
        for value in request.states:
            if value not in STATE_NAME:
                raise InvalidArgument(f"unknown state {value}", details={"states": str(value)})
            states.append(STATE_NAME[value])
        records, token = await asyncio.to_thread(
            self.core.list, states=states, model_name=request.model_name, trigger=request.trigger,
            page_size=request.page_size, page_token=request.page_token,
        )
        return pb.ListJobsResponse(jobs=[job_message(r) for r in records], next_page_token=token)

    async def cancel_job(self, request: pb.CancelJobRequest) -> pb.CancelJobResponse:
        record = await asyncio.to_thread(self.core.cancel, job_id=request.job_id, reason=request.reason,
                                         request_id=current_request_id())
        return pb.CancelJobResponse(job=job_message(record))

    async def watch_job(self, request: pb.WatchJobRequest) -> AsyncIterator[pb.WatchJobResponse]:
        async for record in self.core.watch(request.job_id):
            yield pb.WatchJobResponse(job=job_message(record))
