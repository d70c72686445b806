"""Bad input gets the protocol's error with the right HTTP / gRPC status, and the server stays up:
hand-written cases on both transports, then generated ones (hypothesis) against the REST API's shapes
and the gRPC messages."""

from __future__ import annotations

import struct

import grpc
import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tritonclient.grpc import service_pb2, service_pb2_grpc

from tests.inference.conftest import Server

GOOD = {"inputs": [{"name": "input", "shape": [1, 8], "datatype": "FP32", "data": [0.5] * 8}]}


def post(server: Server, body: object, path: str = "/v2/models/fraud/infer", **kw: object) -> httpx.Response:
    return httpx.post(server.base + path, json=body, timeout=10, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"inputs": [{"name": "input", "shape": [1, 7], "datatype": "FP32", "data": [0.5] * 7}]}, 400, "shape"),
        ({"inputs": [{"name": "input", "shape": [1, 8], "datatype": "FP32", "data": [0.5] * 7}]}, 400, "elements"),
        ({"inputs": [{"name": "input", "shape": [1, 8], "datatype": "INT64", "data": [1] * 8}]}, 400, "datatype"),
        ({"inputs": [{"name": "input", "shape": [1, 8], "datatype": "FP99", "data": [1] * 8}]}, 400, "datatype"),
        ({"inputs": [{"name": "x", "shape": [1, 8], "datatype": "FP32", "data": [1] * 8}]}, 400, "no input"),
        ({"inputs": [{"name": "input", "shape": [1, 8], "datatype": "FP32", "data": ["a"] * 8}]}, 400, "datatype"),
        ({"inputs": [{"name": "input", "shape": [-1, 8], "datatype": "FP32", "data": [1] * 8}]}, 400, "shape"),
        ({"inputs": []}, 400, "inputs"),
        ({"inputs": "nope"}, 400, "inputs"),
        ([1, 2], 400, "JSON object"),
        ({**GOOD, "outputs": [{"name": "nope"}]}, 400, "no output"),
    ],
)
def test_rest_bad_requests(lgbm_server: Server, body: object, status: int, fragment: str) -> None:
    response = post(lgbm_server, body)
    assert response.status_code == status, response.text
    assert set(response.json()) == {"error"} and fragment in response.json()["error"]
    assert response.headers["x-request-id"]


def test_rest_unknown_model_version_path_method(lgbm_server: Server) -> None:
    assert post(lgbm_server, GOOD, "/v2/models/nope/infer").status_code == 404
    assert post(lgbm_server, GOOD, "/v2/models/fraud/versions/9/infer").status_code == 404
    assert httpx.get(lgbm_server.base + "/v2/models/nope").status_code == 404
    assert httpx.get(lgbm_server.base + "/v2/models/fraud/versions/9/ready").status_code == 503
    assert httpx.get(lgbm_server.base + "/v2/nothing/here").status_code == 404
    assert httpx.get(lgbm_server.base + "/v2/models/fraud/infer").status_code == 405
    assert post(lgbm_server, GOOD, "/v2/models/fraud/versions/1/infer").status_code == 200


def test_rest_malformed_json_and_binary(lgbm_server: Server) -> None:
    url = lgbm_server.base + "/v2/models/fraud/infer"
    bad = httpx.post(url, content=b'{"inputs": [', timeout=10)
    assert bad.status_code == 400 and "not valid JSON" in bad.json()["error"]
    header = b'{"inputs":[{"name":"input","shape":[1,8],"datatype":"FP32","parameters":{"binary_data_size":32}}]}'
    raw = np.zeros(8, np.float32).tobytes()
    ok = httpx.post(url, content=header + raw, headers={"Inference-Header-Content-Length": str(len(header))})
    assert ok.status_code == 200, ok.text
    short = httpx.post(url, content=header + raw[:-4], headers={"Inference-Header-Content-Length": str(len(header))})
    assert short.status_code == 400 and "binary_data_size" in short.json()["error"]
    lengths = {"Inference-Header-Content-Length": str(len(header))}
    extra = httpx.post(url, content=header + raw + b"xx", headers=lengths)
    assert extra.status_code == 400
    too_long = httpx.post(url, content=header, headers={"Inference-Header-Content-Length": "99999"})
    assert too_long.status_code == 400
    not_number = httpx.post(url, content=header, headers={"Inference-Header-Content-Length": "x"})
    assert not_number.status_code == 400


def test_rest_bytes_tensors_malformed(identity_server: Server) -> None:
    url = identity_server.base + "/v2/models/identity/infer"
    names = ["fp32", "fp64", "int32", "int64", "bool"]
    inputs = [{"name": f"{n}_in", "shape": [1, 2], "datatype": dt, "data": [1, 0] if n != "bool" else [True, False]}
              for n, dt in zip(names, ["FP32", "FP64", "INT32", "INT64", "BOOL"], strict=True)]
    # BYTES element claims more bytes than there are.
    raw = struct.pack("<I", 50) + b"abc"
    header = (
        b'{"inputs":' + httpx._utils.to_bytes(__import__("json").dumps(
            [*inputs, {"name": "bytes_in", "shape": [1, 2], "datatype": "BYTES",
                       "parameters": {"binary_data_size": len(raw)}}])) + b"}"
    )
    response = httpx.post(url, content=header + raw, headers={"Inference-Header-Content-Length": str(len(header))})
    assert response.status_code == 400 and "BYTES" in response.json()["error"]


def test_rest_oversized_payload(identity_server: Server) -> None:
    body = {"inputs": [{"name": "fp32_in", "shape": [10000, 2], "datatype": "FP32", "data": [0.0] * 20000}]}
    response = httpx.post(identity_server.base + "/v2/models/identity/infer", json=body, timeout=10)
    assert response.status_code == 413 and "exceeds" in response.json()["error"]

    def chunks():  # no content-length: the limit holds while the body streams in
        for _ in range(40):
            yield b" " * 4096

    response = httpx.post(identity_server.base + "/v2/models/identity/infer", content=chunks(), timeout=10)
    assert response.status_code == 413
    assert httpx.get(identity_server.base + "/v2/health/live").json() == {"live": True}


def grpc_stub(server: Server) -> service_pb2_grpc.GRPCInferenceServiceStub:
    channel = grpc.insecure_channel(server.grpc, options=[("grpc.max_send_message_length", 8 * 1024 * 1024)])
    return service_pb2_grpc.GRPCInferenceServiceStub(channel)


def test_grpc_bad_requests(lgbm_server: Server, identity_server: Server) -> None:
    stub = grpc_stub(lgbm_server)

    def infer(**kw: object) -> grpc.StatusCode:
        try:
            stub.ModelInfer(service_pb2.ModelInferRequest(**kw), timeout=10)
        except grpc.RpcError as exc:
            return exc.code()
        return grpc.StatusCode.OK

    tensor = service_pb2.ModelInferRequest.InferInputTensor
    good = tensor(name="input", datatype="FP32", shape=[1, 8])
    raw = np.zeros(8, np.float32).tobytes()
    assert infer(model_name="fraud", inputs=[good], raw_input_contents=[raw]) == grpc.StatusCode.OK
    assert infer(model_name="nope", inputs=[good], raw_input_contents=[raw]) == grpc.StatusCode.NOT_FOUND
    assert infer(model_name="fraud", model_version="4", inputs=[good], raw_input_contents=[raw]) == (
        grpc.StatusCode.NOT_FOUND
    )
    assert infer(model_name="fraud", inputs=[good], raw_input_contents=[raw[:-1]]) == grpc.StatusCode.INVALID_ARGUMENT
    assert infer(model_name="fraud", inputs=[good], raw_input_contents=[raw, raw]) == grpc.StatusCode.INVALID_ARGUMENT
    assert infer(model_name="fraud", inputs=[good]) == grpc.StatusCode.INVALID_ARGUMENT  # no contents
    assert infer(model_name="fraud") == grpc.StatusCode.INVALID_ARGUMENT
    typed = tensor(name="input", datatype="FP32", shape=[1, 8])
    typed.contents.fp32_contents.extend([0.5] * 8)
    assert infer(model_name="fraud", inputs=[typed]) == grpc.StatusCode.OK
    wrong = tensor(name="input", datatype="INT64", shape=[1, 8])
    wrong.contents.int64_contents.extend([1] * 8)
    assert infer(model_name="fraud", inputs=[wrong]) == grpc.StatusCode.INVALID_ARGUMENT
    big = tensor(name="fp32_in", datatype="FP32", shape=[20000, 2])
    with pytest.raises(grpc.RpcError) as err:  # larger than the server's message limit
        grpc_stub(identity_server).ModelInfer(
            service_pb2.ModelInferRequest(model_name="identity", inputs=[big], raw_input_contents=[bytes(160000)]),
            timeout=10,
        )
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    garbage = grpc.insecure_channel(lgbm_server.grpc).unary_unary(
        "/inference.GRPCInferenceService/ModelInfer", request_serializer=lambda b: b, response_deserializer=bytes
    )
    with pytest.raises(grpc.RpcError) as err:  # bytes that are not protobuf at all
        garbage(b"\xff\xff\xff\xff", timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert stub.ServerLive(service_pb2.ServerLiveRequest(), timeout=10).live


# ---- generated input ------------------------------------------------------------------------------------

datatypes = st.sampled_from(["FP32", "FP64", "INT32", "INT64", "BOOL", "BYTES", "FP16", "UINT8", "X", ""])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=20,
)
tensors = st.fixed_dictionaries(
    {"name": st.sampled_from(["input", "x", ""]) | st.text(max_size=5), "datatype": datatypes,
     "shape": st.lists(st.integers(-2, 9), max_size=3), "data": json_values},
    optional={"parameters": st.dictionaries(st.sampled_from(["binary_data_size", "x"]), json_values, max_size=2)},
)
bodies = st.fixed_dictionaries(
    {"inputs": st.lists(tensors, max_size=3) | json_values},
    optional={"id": json_values, "parameters": json_values, "outputs": json_values},
)


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=bodies)
def test_rest_fuzz_never_500(lgbm_server: Server, body: dict) -> None:  # type: ignore[type-arg]
    response = post(lgbm_server, body)
    assert response.status_code < 500, response.text
    if response.status_code != 200:
        assert isinstance(response.json()["error"], str)


raw_tensors = st.builds(
    service_pb2.ModelInferRequest.InferInputTensor,
    name=st.sampled_from(["input", "x"]), datatype=datatypes,
    shape=st.lists(st.integers(-2, 9), max_size=3),
)


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    model=st.sampled_from(["fraud", "nope", ""]), version=st.sampled_from(["", "1", "x"]),
    inputs=st.lists(raw_tensors, max_size=3), raw=st.lists(st.binary(max_size=40), max_size=3),
    outputs=st.lists(st.sampled_from(["label", "probabilities", "nope"]), max_size=2),
)
def test_grpc_fuzz_never_internal(
    lgbm_server: Server, model: str, version: str, inputs: list, raw: list, outputs: list  # type: ignore[type-arg]
) -> None:
    request = service_pb2.ModelInferRequest(
        model_name=model, model_version=version, inputs=inputs, raw_input_contents=raw,
        outputs=[service_pb2.ModelInferRequest.InferRequestedOutputTensor(name=n) for n in outputs],
    )
    code = grpc.StatusCode.OK
    try:
        grpc_stub(lgbm_server).ModelInfer(request, timeout=10)
    except grpc.RpcError as exc:
        code = exc.code()
    assert code not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)
