"""The reference profile saved with each model (`reference_profile.pb`: a serialized
`loopline.profiles.v1.ReferenceProfile`, the contract monitoring reads).

Following the contract's conventions: a numeric feature has k + 1 ascending bin edges at the quantiles
of the reference values (duplicates removed) and the share of values in each bin [e0, e1), ...,
[e(k-1), ek], the first and last open-ended; min, max, mean, std; and a seeded uniform sample of at most
`SAMPLE_LIMIT` values for two-sample tests. A categorical feature has the share of each of its most
frequent values among the non-missing rows and the share of the rest. Booleans are numeric 0/1.

Features are profiled on the training rows (what the model learned from), in the model's input order;
the prediction — P(class 1), named as the prediction log names it (`probabilities_1`) — on the hold-out,
as ONNX Runtime computed it (what serving will produce on unseen rows).
"""

from __future__ import annotations

import numpy as np
import pandas as pd  # type: ignore[import-untyped]

from loopline.profiles.v1 import profile_pb2
from loopline_training.job.encoding import FeatureEncoding

BINS = 10
SAMPLE_LIMIT = 5000
TOP_CATEGORIES = 50
# The prediction log names each column of a [batch, 2] output <output>_<index>: P(class 1) is this one.
PREDICTION_NAME = "probabilities_1"


def quantile_edges(present: np.ndarray, bins: int = BINS) -> np.ndarray:
    """k + 1 edges at the quantiles of the (non-missing) values, duplicates removed."""
    if present.size == 0:
        return np.zeros(0, dtype=np.float64)
    return np.asarray(np.unique(np.quantile(present, np.linspace(0.0, 1.0, bins + 1))), dtype=np.float64)


def bin_counts(edges: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Counts in the bins [e0, e1), ..., [e(k-1), ek], the first and last open-ended."""
    k = max(edges.shape[0] - 1, 1)
    return np.bincount(np.searchsorted(edges[1:-1], present, side="right"), minlength=k).astype(np.int64)


def numeric_profile(name: str, values: np.ndarray, *, seed: int) -> profile_pb2.FeatureProfile:
    values = np.asarray(values, dtype=np.float64)
    present = values[~np.isnan(values)]
    edges = quantile_edges(present)
    counts = bin_counts(edges, present) if present.size else np.zeros(max(len(edges) - 1, 1), dtype=np.int64)
    total = counts.sum()
    fractions = counts / total if total else np.zeros(len(counts))
    rng = np.random.default_rng(seed)
    sample = present if present.size <= SAMPLE_LIMIT else rng.choice(present, SAMPLE_LIMIT, replace=False)
    numeric = profile_pb2.NumericProfile(bin_edges=edges.tolist(), bin_fractions=fractions.tolist(),
                                         sample=sample.tolist(), sample_limit=SAMPLE_LIMIT)
    if present.size:
        numeric.min, numeric.max = float(present.min()), float(present.max())
        numeric.mean, numeric.std = float(present.mean()), float(present.std())
    return profile_pb2.FeatureProfile(name=name, kind=profile_pb2.FEATURE_KIND_NUMERIC, count=int(values.size),
                                      missing=int(values.size - present.size), numeric=numeric)


def categorical_profile(
    name: str, column: pd.Series, vocabulary: list[str] | None = None
) -> profile_pb2.FeatureProfile:
    present = column.dropna().astype(str)
    counts = present.value_counts()
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_CATEGORIES]
    rows = max(len(present), 1)
    frequencies = {str(value): float(count) / rows for value, count in ordered}
    return profile_pb2.FeatureProfile(
        name=name, kind=profile_pb2.FEATURE_KIND_CATEGORICAL, count=len(column), missing=len(column) - len(present),
        categorical=profile_pb2.CategoricalProfile(frequencies=frequencies,
                                                   other_fraction=max(0.0, 1.0 - sum(frequencies.values())),
                                                   input_vocabulary=vocabulary or []),
    )


def build_profile(
    *, model_name: str, training_set_hash: str, reference: pd.DataFrame, encoding: FeatureEncoding,
    predictions: np.ndarray, seed: int,
) -> profile_pb2.ReferenceProfile:
    features = []
    for i, name in enumerate(encoding.features):
        if name in encoding.vocabularies:
            features.append(categorical_profile(name, reference[name], encoding.vocabularies[name]))
        else:
            values = pd.to_numeric(reference[name], errors="coerce").astype(np.float64).to_numpy()
            features.append(numeric_profile(name, values, seed=seed + i))
    profile = profile_pb2.ReferenceProfile(
        model_name=model_name, model_version=0, training_set_hash=training_set_hash, row_count=len(reference),
        features=features,
        prediction=numeric_profile(PREDICTION_NAME, np.asarray(predictions, dtype=np.float64), seed=seed + 10_000),
    )
    profile.created_at.GetCurrentTime()
    return profile
