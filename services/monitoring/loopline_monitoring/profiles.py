"""Reference profiles: reading them (`PreparedProfile`, built once per model version and reused for every
window) and writing them (`build_profile`, the rules the training service follows, used here by the tests
and the benchmark).

Conventions of the contract (protos/loopline/profiles/v1/profile.proto) as monitoring reads it:

* numeric bins: k + 1 ascending `bin_edges`, bins [e0, e1), [e1, e2), ..., [e(k-1), ek] whose first and last
  are open-ended, so a live value outside [e0, ek] counts in an edge bin (never dropped);
* categorical `frequencies` plus `other_fraction` are shares of the non-missing rows;
* `sample` is a uniform random sample of the non-missing values, the reference of the two-sample tests.

A numeric feature whose reference sample has at most `FEW_VALUES` distinct values is compared as a
categorical one over those values (Evidently's rule, see policy.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from loopline.profiles.v1 import profile_pb2
from loopline_monitoring import stats

PREDICTION = "__prediction__"
OTHER = "__other__"
# Numeric features with at most this many distinct reference values are compared as categories.
FEW_VALUES = 5
NUMERIC = "numeric"
CATEGORICAL = "categorical"


@dataclass
class PreparedFeature:
    """One feature (or the prediction) of a reference profile, ready for comparisons."""

    name: str
    kind: str  # how it is logged: numeric or categorical
    treat_as: str  # how it is compared: numeric, or categorical (also numeric with few values)
    # numeric
    edges: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    bin_fractions: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    sample: stats.SortedSample | None = None
    std: float = 0.0
    # categorical: category labels (the last is OTHER) and the reference's counts over them
    categories: list[str] = field(default_factory=list)
    reference_counts: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    code_of: dict[str, int] = field(default_factory=dict)
    # the model's input vocabulary (a value logged as the number k is the label vocabulary[k]); may be empty
    vocabulary: tuple[str, ...] = ()
    # serialized loopline.common.v1.Value -> code, filled as live values are seen (they repeat)
    code_of_bytes: dict[bytes, int] = field(default_factory=dict)
    # numeric with few values: the distinct values, for coding live values
    values: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))

    @property
    def reference_fractions(self) -> npt.NDArray[np.float64]:
        return stats.fractions(self.reference_counts)

    def codes(self, numbers: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
        """Category codes of numeric values of a few-values feature (unknown values -> OTHER)."""
        other = len(self.categories) - 1
        index = np.searchsorted(self.values, numbers)
        index = np.minimum(index, max(self.values.shape[0] - 1, 0))
        known = self.values.shape[0] > 0
        found = known & (self.values[index] == numbers) if known else np.zeros(numbers.shape[0], dtype=bool)
        return np.where(found, index, other).astype(np.int64)


class PreparedProfile:
    """A ReferenceProfile turned into arrays: sorted samples, bins, category tables."""

    def __init__(self, profile: profile_pb2.ReferenceProfile) -> None:
        self.proto = profile
        self.model_name = profile.model_name
        self.model_version = profile.model_version
        self.features: list[PreparedFeature] = [_prepare(f) for f in profile.features]
        self.numeric = [f for f in self.features if f.kind == NUMERIC]
        self.categorical = [f for f in self.features if f.kind == CATEGORICAL]
        self.numeric_names = [f.name for f in self.numeric]
        self.categorical_names = [f.name for f in self.categorical]
        self.prediction: PreparedFeature | None = None
        self.prediction_output = ""
        if profile.HasField("prediction") and profile.prediction.HasField("numeric"):
            self.prediction = _prepare(profile.prediction)
            self.prediction_output = profile.prediction.name or "probability"
            self.prediction.name = PREDICTION



def _prepare(feature: profile_pb2.FeatureProfile) -> PreparedFeature:
    if feature.HasField("categorical") or feature.kind == profile_pb2.FEATURE_KIND_CATEGORICAL:
        cat = feature.categorical
        categories = sorted(cat.frequencies)
        shares = np.array([cat.frequencies[c] for c in categories] + [cat.other_fraction], dtype=np.float64)
        rows = max(feature.count - feature.missing, 1)
        return PreparedFeature(
            name=feature.name, kind=CATEGORICAL, treat_as=CATEGORICAL, categories=[*categories, OTHER],
            reference_counts=shares / max(shares.sum(), 1e-300) * rows,
            code_of={c: i for i, c in enumerate(categories)}, vocabulary=tuple(cat.input_vocabulary),
        )
    num = feature.numeric
    sample = stats.SortedSample(np.asarray(num.sample, dtype=np.float64))
    prepared = PreparedFeature(
        name=feature.name, kind=NUMERIC, treat_as=NUMERIC, edges=np.asarray(num.bin_edges, dtype=np.float64),
        bin_fractions=np.asarray(num.bin_fractions, dtype=np.float64), sample=sample,
        std=num.std if num.std > 0 else sample.std,
    )
    distinct = np.unique(sample.values)
    if 0 < distinct.shape[0] <= FEW_VALUES:
        counts = np.array([np.count_nonzero(sample.values == v) for v in distinct] + [0], dtype=np.float64)
        prepared.treat_as = CATEGORICAL
        prepared.values = distinct
        prepared.categories = [_format_number(v) for v in distinct] + [OTHER]
        prepared.reference_counts = counts
    return prepared


def _format_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


# ---- writing profiles (the training service's rules; used by tests and the benchmark) -------------------


def numeric_profile(
    name: str, values: npt.NDArray[np.float64], *, bins: int = 10, sample_limit: int = 5000, seed: int = 0
) -> profile_pb2.FeatureProfile:
    """The profile of a numeric column: quantile bins, moments and a seeded uniform sample."""
    values = np.asarray(values, dtype=np.float64)
    present = values[~np.isnan(values)]
    edges = stats.quantile_edges(present, bins)
    counts = stats.bin_counts(edges, present) if present.size else np.zeros(max(len(edges) - 1, 1), dtype=np.int64)
    rng = np.random.default_rng(seed)
    sample = present if present.size <= sample_limit else rng.choice(present, sample_limit, replace=False)
    return profile_pb2.FeatureProfile(
        name=name, kind=profile_pb2.FEATURE_KIND_NUMERIC, count=int(values.size),
        missing=int(values.size - present.size),
        numeric=profile_pb2.NumericProfile(
            bin_edges=edges.tolist(), bin_fractions=stats.fractions(counts).tolist(),
            min=float(present.min()) if present.size else 0.0, max=float(present.max()) if present.size else 0.0,
            mean=float(present.mean()) if present.size else 0.0, std=float(present.std()) if present.size else 0.0,
            sample=sample.tolist(), sample_limit=sample_limit,
        ),
    )


def categorical_profile(name: str, values: Sequence[str | None], *, top: int = 50) -> profile_pb2.FeatureProfile:
    """The profile of a categorical column: shares of its `top` most frequent categories and the rest."""
    present = [v for v in values if v is not None]
    uniques, counts = np.unique(np.asarray(present, dtype=object).astype(str), return_counts=True)
    order = np.argsort(-counts, kind="stable")[:top]
    total = max(len(present), 1)
    frequencies = {str(uniques[i]): float(counts[i]) / total for i in order}
    return profile_pb2.FeatureProfile(
        name=name, kind=profile_pb2.FEATURE_KIND_CATEGORICAL, count=len(values), missing=len(values) - len(present),
        categorical=profile_pb2.CategoricalProfile(
            frequencies=frequencies, other_fraction=max(0.0, 1.0 - sum(frequencies.values()))
        ),
    )


def build_profile(
    *,
    model_name: str,
    model_version: int,
    numeric: Mapping[str, npt.NDArray[np.float64]],
    categorical: Mapping[str, Sequence[str | None]] | None = None,
    prediction: npt.NDArray[np.float64] | None = None,
    prediction_output: str = "probability",
    bins: int = 10,
    sample_limit: int = 5000,
    seed: int = 0,
) -> profile_pb2.ReferenceProfile:
    """A ReferenceProfile of reference data given by column."""
    features = [
        numeric_profile(name, values, bins=bins, sample_limit=sample_limit, seed=seed + i)
        for i, (name, values) in enumerate(numeric.items())
    ]
    features += [categorical_profile(name, values) for name, values in (categorical or {}).items()]
    rows = max((f.count for f in features), default=0)
    profile = profile_pb2.ReferenceProfile(
        model_name=model_name, model_version=model_version, row_count=rows, features=features
    )
    if prediction is not None:
        profile.prediction.CopyFrom(
            numeric_profile(prediction_output, prediction, bins=bins, sample_limit=sample_limit, seed=seed + 10_000)
        )
    profile.created_at.GetCurrentTime()
    return profile
