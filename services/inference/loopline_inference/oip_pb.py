"""KServe's Open Inference Protocol v2 messages, as the kserve package publishes them.

The generated module is loaded from its file, not imported as `kserve.protocol.grpc...`: importing any
kserve module first runs `kserve/__init__.py`, which imports its ModelServer (argument parsing at import
time, FastAPI, Kubernetes clients). The generated file itself needs only protobuf. The module is loaded
once per process, on first use, so that nothing is read from disk at import time.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
from types import ModuleType

SERVICE = "inference.GRPCInferenceService"
_FILE = "kserve/protocol/grpc/grpc_predict_v2_pb2.py"


@functools.cache
def pb() -> ModuleType:
    """The generated `grpc_predict_v2_pb2` module (package `inference`)."""
    path = importlib.metadata.distribution("kserve").locate_file(_FILE)
    spec = importlib.util.spec_from_file_location("loopline_inference._grpc_predict_v2_pb2", str(path))
    if spec is None or spec.loader is None:  # pragma: no cover - a broken kserve install
        raise ImportError(f"cannot load the OIP v2 stubs from {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
