"""The gRPC client: the server's errors come back as the same LooplineError; retries only where safe."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from google.protobuf import wrappers_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from loopline_common.errors import ERROR_TYPES, ErrorCode, InvalidArgument, NotFound, Unavailable
from loopline_common.grpc_client import RetryPolicy, ServiceClient
from loopline_common.logs import request_context
from tests.common.probe_service import SERVICE
from tests.helpers import free_port

FAST = RetryPolicy(max_attempts=3, initial_backoff=0.01, max_backoff=0.05)


def _stub(channel, name: str, request_type=wrappers_pb2.StringValue):  # type: ignore[no-untyped-def]
    return channel.unary_unary(
        f"/{SERVICE}/{name}",
        request_serializer=request_type.SerializeToString,
        response_deserializer=wrappers_pb2.StringValue.FromString,
    )


def _attempts(http_port: int, code: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{http_port}/metrics").text
    line = f'loopline_probe_requests_total{{code="{code}",method="/{SERVICE}/Fail",transport="grpc"}} '
    return sum(float(row.split()[-1]) for row in text.splitlines() if row.startswith(line))


def test_every_server_error_comes_back_as_the_same_loopline_error(probe_factory) -> None:  # type: ignore[no-untyped-def]
    _, _, grpc_port, _ = probe_factory()
    client = ServiceClient(service="probe", target=f"127.0.0.1:{grpc_port}", retry=FAST)
    fail = _stub(client.channel, "Fail")
    for code, cls in ERROR_TYPES.items():
        with pytest.raises(cls) as info:
            client.call(fail, wrappers_pb2.StringValue(value=code.value), idempotent=False)
        assert info.value.message == f"probe raised {code.value}"
        assert info.value.details["probe"] == code.value
    client.close()


def test_retries_only_idempotent_calls_on_unavailable(probe_factory) -> None:  # type: ignore[no-untyped-def]
    _, http_port, grpc_port, _ = probe_factory()
    client = ServiceClient(service="probe", target=f"127.0.0.1:{grpc_port}", retry=FAST)
    fail = _stub(client.channel, "Fail")

    with pytest.raises(Unavailable):
        client.call(fail, wrappers_pb2.StringValue(value="UNAVAILABLE"), idempotent=True)
    assert _attempts(http_port, "UNAVAILABLE") == 3

    with pytest.raises(Unavailable):
        client.call(fail, wrappers_pb2.StringValue(value="UNAVAILABLE"), idempotent=False)
    assert _attempts(http_port, "UNAVAILABLE") == 4  # one more: not retried

    with pytest.raises(NotFound):
        client.call(fail, wrappers_pb2.StringValue(value="NOT_FOUND"), idempotent=True)
    assert _attempts(http_port, "NOT_FOUND") == 1  # a definite answer is never retried
    client.close()


def test_request_id_travels_and_a_dead_target_is_unavailable_within_the_deadline(probe_factory) -> None:  # type: ignore[no-untyped-def]
    _, _, grpc_port, _ = probe_factory()
    client = ServiceClient(service="probe", target=f"127.0.0.1:{grpc_port}")
    with request_context("caller-7"):
        reply = client.call(_stub(client.channel, "Echo"), wrappers_pb2.StringValue(value="x"), idempotent=True)
    assert reply.value == "x|caller-7"
    client.close()

    nobody = ServiceClient(service="nobody", target=f"127.0.0.1:{free_port()}", timeout=1.0, retry=FAST)
    with pytest.raises(Unavailable) as info:
        nobody.call(_stub(nobody.channel, "Echo"), wrappers_pb2.StringValue(value="x"), idempotent=True)
    assert info.value.message.startswith("nobody: ")
    nobody.close()


def test_async_client(probe_factory) -> None:  # type: ignore[no-untyped-def]
    _, _, grpc_port, _ = probe_factory()

    async def run() -> None:
        client = ServiceClient(service="probe", target=f"127.0.0.1:{grpc_port}", asynchronous=True, retry=FAST)
        echo = _stub(client.channel, "Echo")
        reply = await client.acall(echo, wrappers_pb2.StringValue(value="a"), idempotent=True)
        assert reply.value.startswith("a|")
        with pytest.raises(InvalidArgument):
            await client.acall(_stub(client.channel, "Fail"), wrappers_pb2.StringValue(value="INVALID_ARGUMENT"),
                               idempotent=True)
        await client.aclose()

    asyncio.run(run())


def test_a_status_without_loopline_detail_maps_by_grpc_code(probe_factory) -> None:  # type: ignore[no-untyped-def]
    """grpc.health's own NOT_FOUND (an unknown service name) carries no ErrorDetail: mapped by status."""
    _, _, grpc_port, _ = probe_factory()
    client = ServiceClient(service="probe", target=f"127.0.0.1:{grpc_port}")
    stub = health_pb2_grpc.HealthStub(client.channel)
    with pytest.raises(NotFound) as info:
        client.call(stub.Check, health_pb2.HealthCheckRequest(service="no.such.Service"), idempotent=True)
    assert info.value.code == ErrorCode.NOT_FOUND
    assert info.value.message.startswith("probe: ")
    assert info.value.details == {"grpc_status": "NOT_FOUND"}
    client.close()
