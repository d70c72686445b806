"""LightGBM: training with explicit threads and seeds, and the ONNX export (skl2onnx, no ZipMap).

Parity with ONNX Runtime is exact by construction, not by luck: ONNX tree ensembles compare float32
inputs with float32 thresholds, while LightGBM compares doubles. Inputs are float32 values already (see
`encoding`), so each numeric threshold t can be replaced by the largest float32 not above t without
changing any decision (for a float32 x, x <= t exactly when x <= that float32) — and then ONNX stores it
exactly. Categorical splits compare category indices and are left as they are.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from loopline_training.job.errors import JobError

Report = Callable[[int, int, dict[str, float]], None]


@dataclass
class LightGbmModel:
    classifier: Any  # lightgbm.LGBMClassifier
    best_iteration: int
    iterations: int

    def predict(self, x: np.ndarray) -> np.ndarray:
        """P(class 1) as float64."""
        return np.asarray(self.classifier.predict_proba(x)[:, 1], dtype=np.float64)

    def save(self, path: str) -> None:
        self.classifier.booster_.save_model(path)

    def to_onnx(self, n_features: int) -> bytes:
        import lightgbm
        from onnxmltools.convert.lightgbm.operator_converters.LightGbm import (  # type: ignore[import-untyped]
            convert_lightgbm,
        )
        from skl2onnx import convert_sklearn, update_registered_converter  # type: ignore[import-untyped]
        from skl2onnx.common.data_types import FloatTensorType  # type: ignore[import-untyped]
        from skl2onnx.common.shape_calculator import (  # type: ignore[import-untyped]
            calculate_linear_classifier_output_shapes,
        )

        update_registered_converter(
            lightgbm.LGBMClassifier, "LightGbmLGBMClassifier", calculate_linear_classifier_output_shapes,
            convert_lightgbm, options={"nocl": [True, False], "zipmap": [True, False, "columns"]},
        )
        onnx_model = convert_sklearn(
            self.classifier,
            initial_types=[("input", FloatTensorType([None, n_features]))],
            options={id(self.classifier): {"zipmap": False}},
            target_opset={"": 17, "ai.onnx.ml": 3},
        )
        return bytes(onnx_model.SerializeToString())


def _floor_float32(value: float) -> float:
    f = np.float32(value)
    if float(f) > value:
        f = np.nextafter(f, np.float32(-np.inf), dtype=np.float32)
    return float(f)


def snap_thresholds(model_text: str) -> str:
    """The model text with every numeric split threshold moved down to the nearest float32."""
    out: list[str] = []
    decision_types: list[int] = []
    tree_lines: list[int] = []
    for line in model_text.split("\n"):
        if line.startswith("tree_sizes="):
            continue  # byte sizes of the tree blocks; they change, and LightGBM reads the model without them
        if line.startswith("Tree="):
            decision_types, tree_lines = [], []
        if line.startswith("decision_type="):
            decision_types = [int(v) for v in line.split("=", 1)[1].split()]
        out.append(line)
        if line.startswith("threshold="):
            tree_lines.append(len(out) - 1)
        if line.startswith("decision_type=") and tree_lines:
            index = tree_lines[-1]
            thresholds = out[index].split("=", 1)[1].split()
            snapped = [t if kind & 1 else repr(_floor_float32(float(t))) for t, kind in zip(thresholds, decision_types,
                                                                                              strict=True)]
            out[index] = "threshold=" + " ".join(snapped)
    return "\n".join(out)


def train(
    *, x_train: np.ndarray, y_train: np.ndarray, x_valid: np.ndarray, y_valid: np.ndarray,
    params: dict[str, Any], categorical: list[int], seed: int, report: Report,
) -> LightGbmModel:
    import lightgbm

    total = int(params["num_boost_round"])
    classifier = lightgbm.LGBMClassifier(
        objective="binary",
        n_estimators=total,
        learning_rate=float(params["learning_rate"]),
        num_leaves=int(params["num_leaves"]),
        max_depth=int(params["max_depth"]),
        min_child_samples=int(params["min_child_samples"]),
        colsample_bytree=float(params["feature_fraction"]),
        subsample=float(params["bagging_fraction"]),
        subsample_freq=int(params["bagging_freq"]),
        reg_alpha=float(params["lambda_l1"]),
        reg_lambda=float(params["lambda_l2"]),
        max_bin=int(params["max_bin"]),
        scale_pos_weight=float(params["scale_pos_weight"]),
        # Explicit threads: LightGBM's default (every core) is many times slower on small data here.
        n_jobs=int(params["num_threads"]),
        random_state=seed,
        deterministic=True,
        force_row_wise=True,
        verbose=-1,
    )
    rounds = int(params["early_stopping_rounds"])

    def on_iteration(env: Any) -> None:
        metrics = {f"early_stopping_{name}": float(value) for _, name, value, _ in env.evaluation_result_list}
        report(env.iteration + 1, total, metrics)

    callbacks: list[Any] = [on_iteration]
    if rounds > 0:
        callbacks.append(lightgbm.early_stopping(rounds, first_metric_only=True, verbose=False))
    try:
        classifier.fit(
            x_train, y_train, eval_X=(x_valid,), eval_y=(y_valid,), eval_names=["early_stopping"],
            eval_metric=["binary_logloss", "auc"], categorical_feature=categorical or "auto", callbacks=callbacks,
        )
    except lightgbm.basic.LightGBMError as exc:
        raise JobError(f"LightGBM could not train: {exc}") from None
    booster = classifier.booster_
    iterations = booster.current_iteration()
    best = classifier.best_iteration_ if rounds > 0 and classifier.best_iteration_ > 0 else iterations
    # Keep only the trees up to the best iteration, with float32-exact thresholds: what is evaluated,
    # exported and saved is then one and the same model.
    text = snap_thresholds(booster.model_to_string(num_iteration=best))
    classifier._Booster = lightgbm.Booster(model_str=text)
    classifier._best_iteration = -1
    return LightGbmModel(classifier=classifier, best_iteration=best, iterations=iterations)
