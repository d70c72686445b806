"""The gRPC floor: a minimal grpc.aio server answering OIP ModelInfer from raw contents by calling ONNX
Runtime directly (no metrics, no logging, no interceptors). `python bench/floor_grpc.py MODEL PORT`."""

from __future__ import annotations

import sys

import grpc
import numpy as np
import onnxruntime as ort
import uvloop
from loopline_inference.oip_pb import pb


async def main(path: str, port: int) -> None:
    m = pb()
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]

    async def infer(request, context):  # type: ignore[no-untyped-def]
        feed = {t.name: np.frombuffer(raw, dtype=np.float32).reshape(list(t.shape))
                for t, raw in zip(request.inputs, request.raw_input_contents, strict=True)}
        outs = session.run(None, feed)
        response = m.ModelInferResponse(model_name=request.model_name, id=request.id)
        for name, out in zip(names, outs, strict=True):
            response.outputs.add(name=name, datatype="FP32" if out.dtype == np.float32 else "INT64", shape=out.shape)
            response.raw_output_contents.append(out.tobytes())
        return response

    handler = grpc.method_handlers_generic_handler("inference.GRPCInferenceService", {
        "ModelInfer": grpc.unary_unary_rpc_method_handler(
            infer, request_deserializer=m.ModelInferRequest.FromString,
            response_serializer=lambda r: r.SerializeToString()),
    })
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    uvloop.run(main(sys.argv[1], int(sys.argv[2])))
