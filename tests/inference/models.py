"""Small real ONNX models for the tests and the benchmark: a LightGBM classifier (skl2onnx, no ZipMap),
a torch-like MLP written with the onnx helper API (torch is not in the dev environment), and an identity
model with one input per OIP datatype."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

FEATURES = [f"f{i}" for i in range(8)]


def lightgbm_model(path: Path, *, n_features: int = 8, trees: int = 100, seed: int = 0,
                   feature_names: list[str] | None = None, entity_keys: list[str] | None = None,
                   preprocessing: dict[str, object] | None = None) -> Path:
    """A binary LightGBM classifier as ONNX: input `input` FP32 [-1, n], outputs `label` INT64 [-1] and
    `probabilities` FP32 [-1, 2]. `preprocessing` is written as training writes it (loopline.preprocessing)."""
    import lightgbm
    from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm
    from skl2onnx import convert_sklearn, update_registered_converter
    from skl2onnx.common.data_types import FloatTensorType
    from skl2onnx.common.shape_calculator import calculate_linear_classifier_output_shapes

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2000, n_features)).astype(np.float32)
    y = ((x[:, 0] + 0.5 * x[:, 1] - x[:, 2] + rng.normal(scale=0.5, size=len(x))) > 0).astype(int)
    clf = lightgbm.LGBMClassifier(n_estimators=trees, num_leaves=15, n_jobs=1, verbose=-1, random_state=seed)
    clf.fit(x, y)
    update_registered_converter(
        lightgbm.LGBMClassifier, "LightGbmLGBMClassifier", calculate_linear_classifier_output_shapes,
        convert_lightgbm, options={"nocl": [True, False], "zipmap": [True, False, "columns"]},
    )
    onx = convert_sklearn(
        clf, initial_types=[("input", FloatTensorType([None, n_features]))], options={id(clf): {"zipmap": False}},
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    names = feature_names or [f"f{i}" for i in range(n_features)]
    _props(onx, names, entity_keys)
    if preprocessing is not None:
        entry = onx.metadata_props.add()
        entry.key, entry.value = "loopline.preprocessing", json.dumps(preprocessing)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(onx.SerializeToString())
    return path


def mlp_model(path: Path, *, n_features: int = 8, hidden: int = 16, seed: int = 0, scale: float = 1.0) -> Path:
    """A torch-style MLP (Linear-ReLU-Linear-Sigmoid): input `input` FP32 [-1, n], output `probability`
    FP32 [-1, 1]. `scale` changes its weights, so two versions answer differently."""
    rng = np.random.default_rng(seed)
    w1 = (rng.normal(size=(n_features, hidden)) * scale).astype(np.float32)
    b1 = np.zeros(hidden, dtype=np.float32)
    w2 = (rng.normal(size=(hidden, 1)) * scale).astype(np.float32)
    b2 = np.array([0.1 * scale], dtype=np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["input", "w1"], ["h0"]),
            helper.make_node("Add", ["h0", "b1"], ["h1"]),
            helper.make_node("Relu", ["h1"], ["h2"]),
            helper.make_node("MatMul", ["h2", "w2"], ["o0"]),
            helper.make_node("Add", ["o0", "b2"], ["o1"]),
            helper.make_node("Sigmoid", ["o1"], ["probability"]),
        ],
        "mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", n_features])],
        [helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["batch", 1])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(b1, "b1"),
         numpy_helper.from_array(w2, "w2"), numpy_helper.from_array(b2, "b2")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    _props(model, [f"f{i}" for i in range(n_features)], None)
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString())
    return path


# name, ONNX element type, OIP datatype
IDENTITY_TYPES = [
    ("fp32", TensorProto.FLOAT, "FP32"),
    ("fp64", TensorProto.DOUBLE, "FP64"),
    ("int32", TensorProto.INT32, "INT32"),
    ("int64", TensorProto.INT64, "INT64"),
    ("bool", TensorProto.BOOL, "BOOL"),
    ("bytes", TensorProto.STRING, "BYTES"),
]


def identity_model(path: Path) -> Path:
    """One input `<type>_in` [-1, 2] and one output `<type>_out` per datatype, each the identity."""
    nodes, inputs, outputs = [], [], []
    for name, elem, _ in IDENTITY_TYPES:
        nodes.append(helper.make_node("Identity", [f"{name}_in"], [f"{name}_out"]))
        inputs.append(helper.make_tensor_value_info(f"{name}_in", elem, ["batch", 2]))
        outputs.append(helper.make_tensor_value_info(f"{name}_out", elem, ["batch", 2]))
    model = helper.make_model(helper.make_graph(nodes, "identity", inputs, outputs),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString())
    return path


def _props(model: onnx.ModelProto, names: list[str], entity_keys: list[str] | None) -> None:
    entry = model.metadata_props.add()
    entry.key, entry.value = "loopline.feature_names", json.dumps(names)
    if entity_keys:
        entry = model.metadata_props.add()
        entry.key, entry.value = "loopline.entity_keys", json.dumps(entity_keys)
