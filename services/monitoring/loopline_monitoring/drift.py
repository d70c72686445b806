"""Compare one window of records with a reference profile: per-feature scores, Holm's correction, the
dataset-level decision. Pure: no I/O, no clock."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from loopline.events.v1 import drift_pb2
from loopline.monitoring.v1 import monitoring_pb2
from loopline_monitoring import stats
from loopline_monitoring.frames import Frame
from loopline_monitoring.policy import CATEGORICAL_METHODS, NUMERIC_METHODS, PVALUE_METHODS, DriftPolicy
from loopline_monitoring.profiles import CATEGORICAL, PREDICTION, PreparedFeature, PreparedProfile


@dataclass
class Score:
    feature: str
    method: str
    score: float
    threshold: float
    p_value: float | None
    drifted: bool
    deciding: bool
    kind: str

    def to_proto(self) -> monitoring_pb2.FeatureScore:
        drift = drift_pb2.FeatureDrift(
            feature=self.feature, method=self.method, score=_finite(self.score), threshold=self.threshold,
            drifted=self.drifted,
        )
        if self.p_value is not None:
            drift.p_value = self.p_value
        return monitoring_pb2.FeatureScore(drift=drift, deciding=self.deciding, kind=self.kind)


def _finite(value: float) -> float:
    return value if math.isfinite(value) else 1e300


def _applicable(method: str, feature: PreparedFeature) -> bool:
    """Whether `method` can compare this feature with what its profile holds."""
    if feature.treat_as == CATEGORICAL:
        return method in CATEGORICAL_METHODS and len(feature.categories) > 1
    if method in ("ks", "wasserstein"):
        return feature.sample is not None and feature.sample.n > 0
    return method in NUMERIC_METHODS and feature.edges.shape[0] >= 2


def _compare(
    feature: PreparedFeature, method: str, values: npt.NDArray[np.float64] | None, counts: npt.NDArray[np.int64] | None
) -> tuple[float, float | None]:
    """(score, p-value or None) of one method. `values` for numeric comparisons, `counts` for categories."""
    if feature.treat_as == CATEGORICAL:
        current = np.asarray(counts, dtype=np.float64)
        if method == "chi2":
            statistic, p, _ = stats.chi2_homogeneity(feature.reference_counts, current)
            return statistic, p
        if method == "jensen_shannon":
            return stats.jensen_shannon(feature.reference_counts, current), None
        return stats.psi(feature.reference_fractions, stats.fractions(current)), None
    if values is None or feature.sample is None:
        raise ValueError(f"numeric comparison of {feature.name} without values or a reference sample")
    if method == "ks":
        result = feature.sample.ks(values)
        return result.statistic, result.pvalue
    if method == "wasserstein":
        return stats.normed_wasserstein(feature.sample, values, reference_std=feature.std), None
    current_fractions = stats.fractions(stats.bin_counts(feature.edges, values))
    if method == "jensen_shannon":
        return stats.jensen_shannon(feature.bin_fractions, current_fractions), None
    return stats.psi(feature.bin_fractions, current_fractions), None


def _feature_scores(
    feature: PreparedFeature,
    policy: DriftPolicy,
    *,
    numbers: npt.NDArray[np.float64] | None,
    codes: npt.NDArray[np.int64] | None,
) -> tuple[list[Score], monitoring_pb2.FeatureHistogram]:
    """Scores of one feature (deciding method first) and its histogram; no scores without values."""
    histogram = monitoring_pb2.FeatureHistogram(feature=feature.name)
    values: npt.NDArray[np.float64] | None = None
    counts: npt.NDArray[np.int64] | None = None
    if numbers is not None:
        present = numbers[~np.isnan(numbers)]
        histogram.missing = int(numbers.shape[0] - present.shape[0])
        if feature.treat_as == CATEGORICAL:
            counts = np.bincount(feature.codes(present), minlength=len(feature.categories))
        else:
            values = present
        n = int(present.shape[0])
    else:
        codes = np.zeros(0, dtype=np.int64) if codes is None else codes
        present_codes = codes[codes >= 0]
        histogram.missing = int(codes.shape[0] - present_codes.shape[0])
        counts = np.bincount(present_codes, minlength=len(feature.categories))
        n = int(present_codes.shape[0])
    if counts is not None:
        histogram.categories.extend(feature.categories)
        histogram.reference.extend(feature.reference_fractions.tolist())
        histogram.current.extend(stats.fractions(counts).tolist())
    elif values is not None and feature.edges.shape[0] >= 2:
        histogram.edges.extend(feature.edges.tolist())
        histogram.reference.extend(feature.bin_fractions.tolist())
        histogram.current.extend(stats.fractions(stats.bin_counts(feature.edges, values)).tolist())
    if n == 0:
        return [], histogram
    deciding = policy.method_for(name=feature.name, treat_as=feature.treat_as, count=n)
    if not _applicable(deciding, feature):  # e.g. a profile without a sample: fall back to what it has
        fallbacks = [DriftPolicy.model_validate({}).method_for(name="", treat_as=feature.treat_as, count=n), "psi"]
        usable = [m for m in fallbacks if _applicable(m, feature)]
        if not usable:
            return [], histogram
        deciding = usable[0]
    methods = [deciding] + [
        m for m in dict.fromkeys(policy.extra_methods) if m != deciding and _applicable(m, feature)
    ]
    scores = []
    for method in methods:
        score, p = _compare(feature, method, values, counts)
        threshold = policy.threshold_for(name=feature.name, method=method)
        drifted = (p is not None and p <= threshold) if method in PVALUE_METHODS else score >= threshold
        scores.append(
            Score(
                feature=feature.name, method=method, score=score, threshold=threshold, p_value=p, drifted=drifted,
                deciding=method == deciding, kind=feature.treat_as,
            )
        )
    return scores, histogram


@dataclass
class Evaluation:
    """The outcome of a window: every score, the decision, and the proto for the API and the store."""

    result: monitoring_pb2.DriftWindowResult
    scores: list[Score]

    @property
    def dataset_drift(self) -> bool:
        return self.result.dataset_drift

    @property
    def prediction_drifted(self) -> bool:
        return any(s.deciding and s.drifted for s in self.scores if s.feature == PREDICTION)

    def deciding(self) -> list[Score]:
        return [s for s in self.scores if s.deciding]


def evaluate(profile: PreparedProfile, policy: DriftPolicy, frame: Frame) -> Evaluation:
    """Compare `frame` with `profile` under `policy` (the caller fills in model, track and window)."""
    scores: list[Score] = []
    histograms: list[monitoring_pb2.FeatureHistogram] = []
    for j, feature in enumerate(profile.numeric):
        if policy.ignored(feature.name):
            continue
        s, h = _feature_scores(feature, policy, numbers=frame.numeric[:, j], codes=None)
        scores += s
        histograms.append(h)
    for j, feature in enumerate(profile.categorical):
        if policy.ignored(feature.name):
            continue
        s, h = _feature_scores(feature, policy, numbers=None, codes=frame.categorical[:, j])
        scores += s
        histograms.append(h)
    if profile.prediction is not None:
        s, h = _feature_scores(profile.prediction, policy, numbers=frame.prediction, codes=None)
        scores += s
        histograms.append(h)

    # Holm over the deciding p-value tests of this window (inputs and prediction together).
    tested = [s for s in scores if s.deciding and s.method in PVALUE_METHODS and s.p_value is not None]
    if tested:
        rejected, critical = stats.holm(np.array([s.p_value for s in tested], dtype=np.float64), policy.alpha)
        for tested_score, r, c in zip(tested, rejected, critical, strict=True):
            tested_score.drifted = bool(r)
            tested_score.threshold = float(c)

    inputs = [s for s in scores if s.deciding and s.feature != PREDICTION]
    share = sum(s.drifted for s in inputs) / len(inputs) if inputs else 0.0
    prediction_drifted = any(s.drifted for s in scores if s.deciding and s.feature == PREDICTION)
    dataset_drift = bool(inputs) and share >= policy.drift_share
    if policy.prediction_triggers and prediction_drifted:
        dataset_drift = True
    result = monitoring_pb2.DriftWindowResult(
        scores=[s.to_proto() for s in scores], drifted_share=share, drifted_share_threshold=policy.drift_share,
        dataset_drift=dataset_drift, histograms=histograms,
    )
    return Evaluation(result=result, scores=scores)
