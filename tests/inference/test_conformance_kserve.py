"""OIP v2 conformance with the kserve package's own REST and gRPC clients (in their own process)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

from tests.helpers import REPO
from tests.inference.conftest import Server


def test_kserve_clients(lgbm_server: Server, model_dir: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tests.inference.kserve_clients", lgbm_server.http, lgbm_server.grpc],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["rest_live"] and seen["rest_ready"] and seen["rest_model_ready"]
    assert seen["grpc_live"] and seen["grpc_model_ready"]
    x = np.arange(16, dtype=np.float32).reshape(2, 8) / 10
    want = ort.InferenceSession(str(model_dir / "lgbm" / "model.onnx")).run(["probabilities"], {"input": x})[0]
    for key in ("rest_probabilities_binary_False", "rest_probabilities_binary_True", "grpc_probabilities"):
        np.testing.assert_allclose(np.array(seen[key], dtype=np.float32), want, rtol=1e-6)
    assert seen["rest_id"] == "k-1" and seen["grpc_id"] == "k-1"
