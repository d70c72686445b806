"""From a training-set frame to the model's input matrix, and the description of that mapping that ships
with the model (`preprocessing.json`), so serving builds the same input.

The ONNX model takes one float32 tensor `input` of shape [batch, features] in `features` order:
numbers as they are (float32; missing = NaN), booleans as 0/1, and each categorical feature as the index
of its value in that feature's vocabulary (-1 for a value not in it, or missing). Values are rounded to
float32 before training too, so the model's split points and ONNX's float32 comparisons agree exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped]

from loopline_training.job.errors import JobError

MAX_VOCABULARY = 1000
UNKNOWN = -1.0


@dataclass(frozen=True)
class FeatureEncoding:
    features: list[str]
    vocabularies: dict[str, list[str]]  # categorical feature -> its values, by index

    @property
    def categorical_indices(self) -> list[int]:
        return [i for i, name in enumerate(self.features) if name in self.vocabularies]

    @classmethod
    def fit(cls, frame: pd.DataFrame, features: list[str]) -> FeatureEncoding:
        """Vocabularies from the training rows (the most frequent values, at most MAX_VOCABULARY, sorted)."""
        vocabularies: dict[str, list[str]] = {}
        for name in features:
            column = frame[name]
            if pd.api.types.is_datetime64_any_dtype(column) or pd.api.types.is_timedelta64_dtype(column):
                raise JobError(f"feature {name!r} is a time ({column.dtype}); exclude it or turn it into a number")
            if _is_categorical(column):
                counts = column.dropna().astype(str).value_counts(sort=False)
                ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_VOCABULARY]
                vocabularies[name] = sorted(str(value) for value, _ in ordered)
        return cls(features=list(features), vocabularies=vocabularies)

    def matrix(self, frame: pd.DataFrame) -> np.ndarray:
        """float64 [rows, features] holding float32-exact values."""
        columns = []
        for name in self.features:
            column = frame[name]
            vocabulary = self.vocabularies.get(name)
            if vocabulary is not None:
                index = {value: float(i) for i, value in enumerate(vocabulary)}
                codes = column.map(lambda v, index=index: UNKNOWN if pd.isna(v) else index.get(str(v), UNKNOWN))
                columns.append(codes.to_numpy(dtype=np.float64))
            else:
                try:
                    values = pd.to_numeric(column, errors="raise").astype(np.float64).to_numpy()
                except (ValueError, TypeError):
                    raise JobError(f"feature {name!r} is not numeric") from None
                columns.append(values)
        matrix = np.column_stack(columns) if columns else np.empty((len(frame), 0))
        return matrix.astype(np.float32).astype(np.float64)

    def to_json(self) -> dict[str, Any]:
        return {
            "input": "input",
            "dtype": "float32",
            "features": [
                {"name": name, "kind": "categorical", "vocabulary": self.vocabularies[name], "unknown": UNKNOWN}
                if name in self.vocabularies else {"name": name, "kind": "numeric", "missing": "NaN"}
                for name in self.features
            ],
            "outputs": {"label": "int64 [batch]", "probabilities": "float32 [batch, 2]: P(class 0), P(class 1)"},
        }


def _is_categorical(column: pd.Series) -> bool:
    if pd.api.types.is_bool_dtype(column):
        return False
    return bool(
        pd.api.types.is_object_dtype(column)
        or isinstance(column.dtype, pd.CategoricalDtype)
        or pd.api.types.is_string_dtype(column)
    )
