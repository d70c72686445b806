"""OIP v2 conformance with NVIDIA's tritonclient, over HTTP (JSON and binary tensors) and gRPC."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp
from tritonclient.utils import InferenceServerException

from tests.inference.conftest import Server
from tests.inference.models import IDENTITY_TYPES

X = np.random.default_rng(1).normal(size=(5, 8)).astype(np.float32)


def expected(model_dir: Path) -> list[np.ndarray]:
    session = ort.InferenceSession(str(model_dir / "lgbm" / "model.onnx"))
    return session.run(None, {"input": X})


def sample(datatype: str, rows: int = 3) -> np.ndarray:
    rng = np.random.default_rng(7)
    if datatype == "BYTES":
        return np.array([[f"r{i}c{j}-é".encode() for j in range(2)] for i in range(rows)], dtype=object)
    if datatype == "BOOL":
        return rng.random((rows, 2)) > 0.5
    dtype = {"FP32": np.float32, "FP64": np.float64, "INT32": np.int32, "INT64": np.int64}[datatype]
    return (rng.normal(size=(rows, 2)) * 1000).astype(dtype)


@pytest.mark.parametrize("binary", [True, False])
def test_http_health_metadata_and_infer(lgbm_server: Server, model_dir: Path, binary: bool) -> None:
    client = thttp.InferenceServerClient(lgbm_server.http)
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("fraud") and client.is_model_ready("fraud", "1")
    assert not client.is_model_ready("fraud", "7")
    server = client.get_server_metadata()
    assert server["name"] == "loopline-inference" and "binary_tensor_data" in server["extensions"]
    meta = client.get_model_metadata("fraud")
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 8]}]
    assert [o["name"] for o in meta["outputs"]] == ["label", "probabilities"]

    inp = thttp.InferInput("input", list(X.shape), "FP32")
    inp.set_data_from_numpy(X, binary_data=binary)
    outputs = [thttp.InferRequestedOutput("probabilities", binary_data=binary)]
    result = client.infer("fraud", [inp], outputs=outputs, request_id="req-1")
    label, probabilities = expected(model_dir)
    np.testing.assert_allclose(result.as_numpy("probabilities"), probabilities, rtol=1e-6)
    assert result.as_numpy("label") is None  # only what was asked for
    response = result.get_response()
    assert response["id"] == "req-1" and response["model_version"] == "1"
    assert response["parameters"]["track"] == "champion"
    everything = client.infer("fraud", [inp], model_version="1")
    np.testing.assert_array_equal(everything.as_numpy("label"), label)


def test_grpc_health_metadata_and_infer(lgbm_server: Server, model_dir: Path) -> None:
    client = tgrpc.InferenceServerClient(lgbm_server.grpc)
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("fraud")
    meta = client.get_model_metadata("fraud", as_json=True)
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": ["-1", "8"]}]
    assert client.get_server_metadata(as_json=True)["name"] == "loopline-inference"
    inp = tgrpc.InferInput("input", list(X.shape), "FP32")
    inp.set_data_from_numpy(X)  # tritonclient sends raw_input_contents
    result = client.infer("fraud", [inp], outputs=[tgrpc.InferRequestedOutput("probabilities")], request_id="g-1")
    label, probabilities = expected(model_dir)
    np.testing.assert_allclose(result.as_numpy("probabilities"), probabilities, rtol=1e-6)
    assert result.get_response().id == "g-1"
    assert result.get_response().parameters["track"].string_param == "champion"
    np.testing.assert_array_equal(client.infer("fraud", [inp]).as_numpy("label"), label)


@pytest.mark.parametrize("binary", [True, False])
def test_http_every_datatype(identity_server: Server, binary: bool) -> None:
    client = thttp.InferenceServerClient(identity_server.http)
    inputs = []
    for name, _, datatype in IDENTITY_TYPES:
        data = sample(datatype)
        inp = thttp.InferInput(f"{name}_in", list(data.shape), datatype)
        inp.set_data_from_numpy(data, binary_data=binary)
        inputs.append(inp)
    outputs = [thttp.InferRequestedOutput(f"{n}_out", binary_data=binary) for n, _, _ in IDENTITY_TYPES]
    result = client.infer("identity", inputs, outputs=outputs)
    for name, _, datatype in IDENTITY_TYPES:
        got = result.as_numpy(f"{name}_out")
        want = sample(datatype)
        if datatype == "BYTES":
            assert [v if isinstance(v, bytes) else v.encode() for v in got.reshape(-1)] == list(want.reshape(-1))
        else:
            np.testing.assert_array_equal(got, want)


def test_grpc_every_datatype(identity_server: Server) -> None:
    client = tgrpc.InferenceServerClient(identity_server.grpc)
    inputs = []
    for name, _, datatype in IDENTITY_TYPES:
        data = sample(datatype)
        inp = tgrpc.InferInput(f"{name}_in", list(data.shape), datatype)
        inp.set_data_from_numpy(data)
        inputs.append(inp)
    result = client.infer("identity", inputs)
    for name, _, datatype in IDENTITY_TYPES:
        got, want = result.as_numpy(f"{name}_out"), sample(datatype)
        if datatype == "BYTES":
            assert list(got.reshape(-1)) == list(want.reshape(-1))
        else:
            np.testing.assert_array_equal(got, want)


def test_errors_reach_triton_clients(lgbm_server: Server) -> None:
    hclient = thttp.InferenceServerClient(lgbm_server.http)
    inp = thttp.InferInput("input", [1, 3], "FP32")
    inp.set_data_from_numpy(np.zeros((1, 3), np.float32))
    with pytest.raises(InferenceServerException, match="shape"):
        hclient.infer("fraud", [inp])
    with pytest.raises(InferenceServerException, match="unknown model"):
        hclient.infer("nope", [inp])
    gclient = tgrpc.InferenceServerClient(lgbm_server.grpc)
    ginp = tgrpc.InferInput("input", [1, 8], "FP64")
    ginp.set_data_from_numpy(np.zeros((1, 8), np.float64))
    with pytest.raises(InferenceServerException, match="datatype") as err:
        gclient.infer("fraud", [ginp])
    assert err.value.status() == "StatusCode.INVALID_ARGUMENT"
    with pytest.raises(InferenceServerException) as err:
        gclient.infer("fraud", [ginp], model_version="9")
    assert err.value.status() == "StatusCode.NOT_FOUND"
