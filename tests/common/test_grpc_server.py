"""The gRPC bootstrap against a real service process and a real channel."""

from __future__ import annotations

import signal
import threading

import grpc
import httpx
import pytest
from google.protobuf import wrappers_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from loopline_common.errors import REQUEST_ID_KEY
from tests.common.probe_service import SERVICE


def _method(channel: grpc.Channel, name: str, request_type, stream: bool = False):  # type: ignore[no-untyped-def]
    factory = channel.unary_stream if stream else channel.unary_unary
    response_type = wrappers_pb2.Int64Value if stream else wrappers_pb2.StringValue
    return factory(
        f"/{SERVICE}/{name}",
        request_serializer=request_type.SerializeToString,
        response_deserializer=response_type.FromString,
    )


def _health(channel: grpc.Channel, service: str = "") -> str:
    reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def _wait_health(channel: grpc.Channel, want: str, service: str = "") -> None:
    """Follow the health Watch stream until the status is `want` (no polling, no sleeps)."""
    stub = health_pb2_grpc.HealthStub(channel)
    for reply in stub.Watch(health_pb2.HealthCheckRequest(service=service), timeout=15):
        if health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status) == want:
            return
    raise AssertionError(f"health never became {want}")


def test_health_follows_readiness_and_liveness_is_separate(probe_factory) -> None:  # type: ignore[no-untyped-def]
    _, _, port, ready_file = probe_factory(ready=False)
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        assert _health(channel) == "NOT_SERVING"
        assert _health(channel, SERVICE) == "NOT_SERVING"
        assert _health(channel, "liveness") == "SERVING"
        ready_file.touch()
        _wait_health(channel, "SERVING")
        _wait_health(channel, "SERVING", SERVICE)
        ready_file.unlink()
        _wait_health(channel, "NOT_SERVING")


def test_reflection_lists_the_services(probe_factory) -> None:  # type: ignore[no-untyped-def]
    _, _, port, _ = probe_factory()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        replies = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        names = {s.name for s in next(iter(replies)).list_services_response.service}
    assert {SERVICE, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= names


def test_request_id_metrics_and_streams(probe_factory) -> None:  # type: ignore[no-untyped-def]
    _, http_port, port, _ = probe_factory()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        echo = _method(channel, "Echo", wrappers_pb2.StringValue)
        reply, call = echo.with_call(wrappers_pb2.StringValue(value="hi"), metadata=((REQUEST_ID_KEY, "r-1"),))
        assert reply.value == "hi|r-1"
        assert dict(call.trailing_metadata())[REQUEST_ID_KEY] == "r-1"

        count = _method(channel, "Count", wrappers_pb2.Int64Value, stream=True)
        assert [m.value for m in count(wrappers_pb2.Int64Value(value=3), timeout=5)] == [0, 1, 2]
        items = []
        with pytest.raises(grpc.RpcError) as info:
            for m in count(wrappers_pb2.Int64Value(value=-2), timeout=5):
                items.append(m.value)
        assert items == [0, 1]
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION

    text = httpx.get(f"http://127.0.0.1:{http_port}/metrics").text
    assert f'loopline_probe_requests_total{{code="OK",method="/{SERVICE}/Echo",transport="grpc"}} 1.0' in text
    assert f'loopline_probe_requests_total{{code="OK",method="/{SERVICE}/Count",transport="grpc"}} 1.0' in text
    assert (
        f'loopline_probe_requests_total{{code="FAILED_PRECONDITION",method="/{SERVICE}/Count",transport="grpc"}} 1.0'
        in text
    )
    assert 'loopline_probe_requests_in_flight{transport="grpc"} 0.0' in text


def test_oversized_grpc_message_is_refused_and_the_service_stays_up(probe_factory) -> None:  # type: ignore[no-untyped-def]
    _, _, port, _ = probe_factory(LOOPLINE_PROBE_MAX_REQUEST_BYTES="1000")
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        echo = _method(channel, "Echo", wrappers_pb2.StringValue)
        with pytest.raises(grpc.RpcError) as info:
            echo(wrappers_pb2.StringValue(value="x" * 5000), timeout=5)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert echo(wrappers_pb2.StringValue(value="small"), timeout=5).value.startswith("small|")


def test_sigterm_drains_calls_in_flight_on_both_transports(probe_factory) -> None:  # type: ignore[no-untyped-def]
    proc, http_port, port, _ = probe_factory()
    results: dict[str, object] = {}
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        slow = _method(channel, "Slow", wrappers_pb2.DoubleValue)
        grpc_future = slow.future(wrappers_pb2.DoubleValue(value=1.5), timeout=20)

        def http_call() -> None:
            results["http"] = httpx.get(f"http://127.0.0.1:{http_port}/v1/slow", params={"seconds": 1.5}, timeout=20)

        http_thread = threading.Thread(target=http_call)
        http_thread.start()
        # Both calls are being served (the in-flight gauge says so) before the signal goes out.
        _wait_in_flight(http_port, grpc=1, http=1)
        proc.proc.send_signal(signal.SIGTERM)
        proc.wait_for_log(lambda r: r.get("message") == "draining")
        assert grpc_future.result().value == "done"
        http_thread.join(20)
    assert results["http"].status_code == 200  # type: ignore[attr-defined]
    assert proc.proc.wait(20) == 0
    proc.wait_for_log(lambda r: r.get("message") == "stopped")


def _wait_in_flight(http_port: int, *, grpc: int, http: int) -> None:
    import time

    deadline = time.monotonic() + 10
    # the /metrics call itself is one more http request in flight
    want = [
        f'loopline_probe_requests_in_flight{{transport="grpc"}} {grpc}.0',
        f'loopline_probe_requests_in_flight{{transport="http"}} {http + 1}.0',
    ]
    while time.monotonic() < deadline:
        text = httpx.get(f"http://127.0.0.1:{http_port}/metrics").text
        if all(w in text for w in want):
            return
    raise AssertionError("calls never got in flight")
