"""The one error table, walked through both transports of a real service process."""

from __future__ import annotations

import grpc
import httpx
import pytest
from google.protobuf import wrappers_pb2

from loopline.common.v1 import types_pb2
from loopline_common.errors import ERROR_TYPES, GRPC_ERROR_DETAIL_KEY, REQUEST_ID_KEY, STATUS_TABLE, ErrorCode
from tests.common.probe_service import SERVICE


def test_every_code_has_one_status_pair_and_one_exception_type() -> None:
    assert set(STATUS_TABLE) == set(ErrorCode)
    assert set(ERROR_TYPES) == set(ErrorCode)
    for code, cls in ERROR_TYPES.items():
        assert cls("x").status == STATUS_TABLE[code]


@pytest.fixture
def probe(probe_factory):  # type: ignore[no-untyped-def]
    _, http_port, grpc_port, _ = probe_factory()
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        yield httpx.Client(base_url=f"http://127.0.0.1:{http_port}", timeout=10), channel


def _grpc_fail(channel: grpc.Channel, code: str) -> grpc.RpcError:
    call = channel.unary_unary(
        f"/{SERVICE}/Fail",
        request_serializer=wrappers_pb2.StringValue.SerializeToString,
        response_deserializer=wrappers_pb2.StringValue.FromString,
    )
    with pytest.raises(grpc.RpcError) as info:
        call(wrappers_pb2.StringValue(value=code), timeout=10, metadata=((REQUEST_ID_KEY, f"rid-{code}"),))
    return info.value


def test_error_table_through_http_and_grpc(probe) -> None:  # type: ignore[no-untyped-def]
    http, channel = probe
    for code, status in STATUS_TABLE.items():
        response = http.post(f"/v1/fail/{code.value}", headers={REQUEST_ID_KEY: f"rid-{code}"})
        assert response.status_code == status.http, code
        body = response.json()["error"]
        assert body == {
            "code": code.value,
            "message": f"probe raised {code.value}",
            "request_id": f"rid-{code}",
            "details": {"probe": code.value},
        }
        assert response.headers[REQUEST_ID_KEY] == f"rid-{code}"

        error = _grpc_fail(channel, code.value)
        assert error.code() == status.grpc, code
        assert error.details() == f"probe raised {code.value}"
        trailers = dict(error.trailing_metadata())
        detail = types_pb2.ErrorDetail.FromString(trailers[GRPC_ERROR_DETAIL_KEY])
        assert detail.code == code.value
        assert detail.request_id == f"rid-{code}"
        assert dict(detail.details) == {"probe": code.value}


def test_unexpected_errors_are_generic_on_both_transports_and_the_service_stays_up(probe) -> None:  # type: ignore[no-untyped-def]
    http, channel = probe
    response = http.post("/v1/fail/BUG")
    assert response.status_code == 500
    body = response.json()["error"]
    assert body["code"] == "INTERNAL"
    assert "secret" not in response.text
    assert body["request_id"] and body["request_id"] in body["message"]
    assert response.headers[REQUEST_ID_KEY] == body["request_id"]

    error = _grpc_fail(channel, "BUG")
    assert error.code() == grpc.StatusCode.INTERNAL
    assert "secret" not in (error.details() or "")
    assert "rid-BUG" in (error.details() or "")

    assert http.get("/healthz").status_code == 200
    assert http.get("/v1/echo", params={"value": "still"}).json()["value"].startswith("still|")
