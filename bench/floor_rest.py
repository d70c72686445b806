"""The REST floor: a minimal ASGI app calling ONNX Runtime directly (no metrics, no logging, no checks
beyond what the protocol needs), on uvicorn with httptools and uvloop. `python bench/floor_rest.py MODEL PORT`."""

from __future__ import annotations

import sys

import numpy as np
import onnxruntime as ort
import orjson
import uvicorn


def make_app(path: str):  # type: ignore[no-untyped-def]
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        doc = orjson.loads(body)
        feed = {t["name"]: np.array(t["data"], dtype=np.float32).reshape(t["shape"]) for t in doc["inputs"]}
        outs = session.run(None, feed)
        reply = orjson.dumps(
            {"model_name": "fraud", "outputs": [
                {"name": n, "datatype": "FP32", "shape": list(o.shape), "data": o.reshape(-1)}
                for n, o in zip(names, outs, strict=True)]},
            option=orjson.OPT_SERIALIZE_NUMPY,
        )
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(reply)).encode())]})
        await send({"type": "http.response.body", "body": reply})

    return app


if __name__ == "__main__":
    uvicorn.run(make_app(sys.argv[1]), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning",
                access_log=False, loop="uvloop", http="httptools", lifespan="off")
