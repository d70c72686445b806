"""The peer: the stock KServe 0.21 ModelServer with a minimal ONNX `kserve.Model`.

`python bench/kserve_server.py MODEL_PATH HTTP_PORT GRPC_PORT`. KServe binds every interface
(HTTP 0.0.0.0, gRPC [::]) with no setting to change it; this process patches both binds to 127.0.0.1
before the server starts, since benchmark traffic must stay on loopback. KServe parses sys.argv when
it is imported, so the arguments are read and cleared first.
"""

from __future__ import annotations

import sys

MODEL_PATH, HTTP_PORT, GRPC_PORT = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
sys.argv = sys.argv[:1]

import grpc  # noqa: E402
import uvicorn  # noqa: E402


class _LoopbackConfig(uvicorn.Config):
    def __init__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        kwargs["host"] = "127.0.0.1"
        super().__init__(*args, **kwargs)


uvicorn.Config = _LoopbackConfig  # type: ignore[misc]
_make_server = grpc.aio.server


def _loopback_server(*args, **kwargs):  # type: ignore[no-untyped-def]
    server = _make_server(*args, **kwargs)
    add = server.add_insecure_port
    server.add_insecure_port = lambda address: add(address.replace("[::]", "127.0.0.1"))
    return server


grpc.aio.server = _loopback_server

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
from kserve import InferRequest, InferResponse, Model, ModelServer  # noqa: E402
from kserve.utils.utils import get_predict_response  # noqa: E402


class OnnxModel(Model):
    def __init__(self, name: str, path: str) -> None:
        super().__init__(name)
        self.path = path
        self.session: ort.InferenceSession | None = None

    def load(self) -> bool:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self.session = ort.InferenceSession(self.path, sess_options=options, providers=["CPUExecutionProvider"])
        self.ready = True
        return self.ready

    def predict(self, payload: InferRequest, headers=None, response_headers=None) -> InferResponse:  # type: ignore[no-untyped-def,override]
        if self.session is None:
            raise RuntimeError("not loaded")
        x = payload.inputs[0].as_numpy().astype(np.float32)
        probabilities = self.session.run(["probabilities"], {"input": x})[0]
        return get_predict_response(payload, probabilities, self.name)


if __name__ == "__main__":
    model = OnnxModel("fraud", MODEL_PATH)
    model.load()
    ModelServer(http_port=HTTP_PORT, grpc_port=GRPC_PORT, workers=1, enable_docs_url=False).start([model])
