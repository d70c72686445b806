"""The parity gate: the ONNX model, run by ONNX Runtime, must give the native model's probabilities on
the hold-out, within a tolerance (1e-5 by default), or the job fails and says by how much."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TOLERANCE = 1e-5


@dataclass(frozen=True)
class Parity:
    passed: bool
    max_abs_diff: float
    rows: int
    tolerance: float
    onnx_probabilities: np.ndarray  # P(class 1) from ONNX Runtime

    def message(self) -> str:
        verdict = "within" if self.passed else "exceeds"
        return (f"ONNX parity: max |ONNX Runtime - native| = {self.max_abs_diff:.3g} on {self.rows} hold-out rows "
                f"{verdict} the tolerance {self.tolerance:g}")


def onnx_probabilities(model_bytes: bytes, x: np.ndarray) -> np.ndarray:
    """P(class 1) from the model's `probabilities` output, on one CPU thread."""
    import onnxruntime  # type: ignore[import-untyped]

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(model_bytes, sess_options=options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    if "probabilities" not in names:
        raise ValueError(f"the ONNX model has no 'probabilities' output (outputs: {names})")
    (probabilities,) = session.run(["probabilities"], {"input": x.astype(np.float32)})
    return np.asarray(probabilities, dtype=np.float64)[:, 1]


def check(model_bytes: bytes, x: np.ndarray, native: np.ndarray, *, tolerance: float = TOLERANCE) -> Parity:
    onnx = onnx_probabilities(model_bytes, x)
    diff = float(np.max(np.abs(onnx - native))) if len(native) else 0.0
    return Parity(passed=bool(diff <= tolerance), max_abs_diff=diff, rows=len(native), tolerance=tolerance,
                  onnx_probabilities=onnx)
