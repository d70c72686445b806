"""Run kserve's own OIP v2 clients against a server; print one JSON object with what they saw.

A separate process: kserve's stubs and tritonclient's both define the `inference` protobuf package, which
cannot live twice in one process, and importing kserve runs its ModelServer's argument parsing.
Usage: python -m tests.inference.kserve_clients HTTP_ADDRESS GRPC_ADDRESS
"""

from __future__ import annotations

import asyncio
import json
import sys

import numpy as np
from kserve import InferenceGRPCClient, InferenceRESTClient, RESTConfig
from kserve.protocol.infer_type import InferInput, InferRequest, RequestedOutput


def request(binary: bool) -> InferRequest:
    x = np.arange(16, dtype=np.float32).reshape(2, 8) / 10
    inp = InferInput("input", [2, 8], "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    outputs = [RequestedOutput("probabilities", parameters={"binary_data": binary})]
    return InferRequest(model_name="fraud", infer_inputs=[inp], request_id="k-1", request_outputs=outputs)


async def main(http: str, grpc_address: str) -> dict[str, object]:
    seen: dict[str, object] = {}
    rest = InferenceRESTClient(RESTConfig(protocol="v2", retries=0))
    base = f"http://{http}"
    seen["rest_live"] = await rest.is_server_live(base)
    seen["rest_ready"] = await rest.is_server_ready(base)
    seen["rest_model_ready"] = await rest.is_model_ready(base, "fraud")
    for binary in (False, True):
        response = await rest.infer(base, request(binary), model_name="fraud")
        seen[f"rest_probabilities_binary_{binary}"] = response.outputs[0].as_numpy().tolist()
        seen["rest_id"] = response.id
    await rest.close()
    client = InferenceGRPCClient(grpc_address, retries=0)
    seen["grpc_live"] = await client.is_server_live()
    seen["grpc_model_ready"] = await client.is_model_ready("fraud")
    response = await client.infer(request(False))
    seen["grpc_probabilities"] = response.outputs[0].as_numpy().tolist()
    seen["grpc_id"] = response.id
    await client.close()
    return seen


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1], sys.argv[2]))))
