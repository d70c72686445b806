"""A small service built only from loopline_common, run as a real process by the tests.

gRPC service `loopline.test.v1.Probe` (generic handlers over well-known wrapper messages, so it needs no
proto of its own) and an HTTP mirror. It is ready while the file named by LOOPLINE_PROBE_READY_FILE
exists, so tests can flip readiness from outside.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import grpc
from fastapi import Query
from google.protobuf import wrappers_pb2
from pydantic import BaseModel, Field
from pydantic_settings import SettingsConfigDict

from loopline_common.errors import ErrorCode, FailedPrecondition, error_for
from loopline_common.grpc_server import GrpcServer
from loopline_common.http_app import create_http_app
from loopline_common.logs import configure_logging, current_request_id
from loopline_common.metrics import ServiceMetrics
from loopline_common.readiness import Readiness
from loopline_common.runner import load_settings_or_exit, serve
from loopline_common.settings import ServiceSettings

SERVICE = "loopline.test.v1.Probe"


class ProbeSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LOOPLINE_PROBE_", extra="ignore", frozen=True)

    ready_file: str = Field(description="The service is ready while this file exists")


def raise_for(code: str) -> None:
    if code == "BUG":
        raise RuntimeError("secret internal detail that must not reach the caller")
    raise error_for(ErrorCode(code), f"probe raised {code}", details={"probe": code})


async def fail(request: wrappers_pb2.StringValue, context: grpc.aio.ServicerContext) -> wrappers_pb2.StringValue:
    raise_for(request.value)
    return wrappers_pb2.StringValue()


async def echo(request: wrappers_pb2.StringValue, context: grpc.aio.ServicerContext) -> wrappers_pb2.StringValue:
    return wrappers_pb2.StringValue(value=f"{request.value}|{current_request_id()}")


async def slow(request: wrappers_pb2.DoubleValue, context: grpc.aio.ServicerContext) -> wrappers_pb2.StringValue:
    await asyncio.sleep(request.value)
    return wrappers_pb2.StringValue(value="done")


async def count(
    request: wrappers_pb2.Int64Value, context: grpc.aio.ServicerContext
) -> AsyncIterator[wrappers_pb2.Int64Value]:
    for i in range(abs(request.value)):
        yield wrappers_pb2.Int64Value(value=i)
    if request.value < 0:
        raise FailedPrecondition("negative count: the stream fails after its items")


def grpc_handlers() -> grpc.GenericRpcHandler:
    def unary(fn, request_type):  # type: ignore[no-untyped-def]
        return grpc.unary_unary_rpc_method_handler(
            fn, request_deserializer=request_type.FromString, response_serializer=lambda m: m.SerializeToString()
        )

    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Fail": unary(fail, wrappers_pb2.StringValue),
            "Echo": unary(echo, wrappers_pb2.StringValue),
            "Slow": unary(slow, wrappers_pb2.DoubleValue),
            "Count": grpc.unary_stream_rpc_method_handler(
                count,
                request_deserializer=wrappers_pb2.Int64Value.FromString,
                response_serializer=lambda m: m.SerializeToString(),
            ),
        },
    )


class Item(BaseModel):
    name: str = Field(min_length=1)
    count: int = Field(ge=0)


def main() -> None:
    settings = load_settings_or_exit(ProbeSettings)
    configure_logging(service="probe", level=settings.log_level)
    metrics = ServiceMetrics("probe")
    readiness = Readiness()
    readiness.add("ready_file", lambda: os.path.exists(settings.ready_file))

    app = create_http_app(
        service="probe", metrics=metrics, readiness=readiness, max_request_bytes=settings.max_request_bytes
    )

    @app.post("/v1/fail/{code}")
    async def http_fail(code: str) -> dict[str, str]:
        raise_for(code)
        return {}

    @app.get("/v1/echo")
    async def http_echo(value: str = Query(...)) -> dict[str, str]:
        return {"value": f"{value}|{current_request_id()}"}

    @app.get("/v1/slow")
    async def http_slow(seconds: float = Query(..., ge=0, le=30)) -> dict[str, str]:
        await asyncio.sleep(seconds)
        return {"value": "done"}

    @app.post("/v1/items")
    async def http_items(item: Item) -> Item:
        return item

    server = GrpcServer(
        metrics=metrics, readiness=readiness, host=settings.host, port=settings.grpc_port,
        max_message_bytes=settings.max_request_bytes,
    )
    server.add_service(lambda _, s: s.add_generic_rpc_handlers((grpc_handlers(),)), None, SERVICE)
    asyncio.run(serve(service="probe", settings=settings, readiness=readiness, grpc_server=server, http_app=app))


if __name__ == "__main__":
    main()
