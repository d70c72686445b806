"""Drift policy: which test decides for each feature, thresholds, the dataset-level rule, windows, hysteresis
and cooldown; defaults with per-model overrides from a YAML or JSON file.

Default test per feature (Evidently's default drift algorithm, docs-old.evidentlyai.com/reference/
data-drift-algorithm, adapted to streaming windows):

| data | window of at most 1000 values | larger window |
|---|---|---|
| numeric, > 5 distinct reference values | two-sample KS, p-value vs alpha | Wasserstein / reference std >= 0.1 |
| categorical, or numeric with at most 5 values | chi-square, p-value vs alpha | Jensen–Shannon distance >= 0.1 |

Evidently switches on the size of the reference set; in a stream the current window is the smaller sample
and decides how sensitive a test is (with thousands of values a KS test flags shifts too small to matter),
so the switch is on the window's count of non-missing values. Evidently's z-test for binary features is
the chi-square test on two categories (the same p-value), so binary features need no test of their own.

Dataset level: the p-value tests of one window (every feature and the prediction) are corrected together
with Holm's step-down procedure, which keeps the chance of any false flag at most `alpha` whatever the
dependence between features. A window drifts when the share of drifted input features reaches
`drift_share` (0.5, Evidently's default) or when the prediction drifted. Under no drift, with p-value
tests, a false alarm needs at least one false flag, so its probability is at most `alpha`; with distance
tests the thresholds bound it (tests/monitoring measures both).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from loopline_monitoring.profiles import CATEGORICAL

PVALUE_METHODS = frozenset({"ks", "chi2"})
NUMERIC_METHODS = frozenset({"ks", "wasserstein", "psi", "jensen_shannon"})
CATEGORICAL_METHODS = frozenset({"chi2", "jensen_shannon", "psi"})
METHODS = NUMERIC_METHODS | CATEGORICAL_METHODS
# Above this many values in the window, distances replace p-value tests (Evidently's 1000).
SMALL_SAMPLE = 1000


class PolicyError(Exception):
    """The drift policy file is missing, unreadable or invalid; the message says where."""


class FeatureOverride(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    method: str | None = Field(None, description="Deciding method for this feature")
    threshold: float | None = Field(None, gt=0, description="Threshold of a distance method for this feature")
    ignore: bool = Field(False, description="Leave the feature out of drift decisions")


class DriftPolicy(BaseModel):
    """Everything that decides drift for one model. Every field can be overridden per model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    window_records: int = Field(5000, ge=10, description="A window closes when it holds this many records")
    window_seconds: float = Field(
        300.0, ge=0, description="... or when it spans this many seconds of event time (0: count only)"
    )
    min_window_records: int = Field(
        100, ge=1, description="A time-closed window needs this many records; fewer and it stays open"
    )
    window_lateness_seconds: float = Field(
        30.0, ge=0, description="Wall-clock grace after a time window's end before it closes without new records"
    )
    alpha: float = Field(0.05, gt=0, lt=1, description="Family-wise error rate of the p-value tests of a window")
    drift_share: float = Field(0.5, gt=0, le=1, description="Share of drifted input features that is dataset drift")
    prediction_triggers: bool = Field(True, description="Prediction drift alone is dataset drift")
    small_sample: int = Field(SMALL_SAMPLE, ge=1, description="Up to this many values: p-value tests")
    numeric_method: str | None = Field(None, description="Deciding method for every numeric feature (default: rule)")
    categorical_method: str | None = Field(None, description="Deciding method for every categorical feature")
    thresholds: dict[str, float] = Field(
        default_factory=lambda: {"psi": 0.25, "wasserstein": 0.1, "jensen_shannon": 0.1},
        description="Threshold of each distance method (PSI 0.25: Siddiqi's 'major shift'; others Evidently's)",
    )
    extra_methods: list[str] = Field(
        default_factory=lambda: ["psi"], description="Methods computed and exported besides the deciding one"
    )
    features: dict[str, FeatureOverride] = Field(default_factory=dict)
    clear_windows: int = Field(2, ge=1, description="Consecutive calm windows before an alert clears (hysteresis)")
    clear_ratio: float = Field(
        0.5, gt=0, le=1, description="A calm window has drifted share below drift_share * clear_ratio, prediction calm"
    )
    cooldown_seconds: float = Field(3600.0, ge=0, description="Least time between two DriftDetected events")

    def method_for(self, *, name: str, treat_as: str, count: int) -> str:
        """The deciding method of a feature given how it is compared and the window's count of values."""
        override = self.features.get(name)
        if override is not None and override.method:
            return override.method
        if treat_as == CATEGORICAL:
            if self.categorical_method:
                return self.categorical_method
            return "chi2" if count <= self.small_sample else "jensen_shannon"
        if self.numeric_method:
            return self.numeric_method
        return "ks" if count <= self.small_sample else "wasserstein"

    def threshold_for(self, *, name: str, method: str) -> float:
        """The threshold of a distance method, or alpha for a p-value method (before Holm's correction)."""
        if method in PVALUE_METHODS:
            return self.alpha
        override = self.features.get(name)
        if override is not None and override.threshold is not None and (override.method in (None, method)):
            return override.threshold
        return self.thresholds.get(method, 0.1)

    def ignored(self, name: str) -> bool:
        override = self.features.get(name)
        return bool(override and override.ignore)


class PolicyFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    default: dict[str, Any] = Field(default_factory=dict)
    models: dict[str, dict[str, Any]] = Field(default_factory=dict)


class Policies:
    """The default policy and each model's, as merged from the policy file."""

    def __init__(self, default: DriftPolicy | None = None, models: dict[str, DriftPolicy] | None = None) -> None:
        self.default = default or DriftPolicy.model_validate({})
        self.models = models or {}

    def for_model(self, model_name: str) -> DriftPolicy:
        return self.models.get(model_name, self.default)

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> Policies:
        try:
            parsed = PolicyFile.model_validate(data)
            default = DriftPolicy.model_validate(parsed.default)
            models = {
                name: DriftPolicy.model_validate({**parsed.default, **override})
                for name, override in parsed.models.items()
            }
            for policy in (default, *models.values()):
                _check_methods(policy)
        except ValidationError as exc:
            raise PolicyError(f"invalid drift policy: {exc}") from None
        return cls(default, models)


def _check_methods(policy: DriftPolicy) -> None:
    chosen = [policy.numeric_method, policy.categorical_method, *policy.extra_methods]
    chosen += [o.method for o in policy.features.values()]
    unknown = sorted({m for m in chosen if m and m not in METHODS})
    if unknown:
        raise PolicyError(f"unknown drift method(s) {unknown}; known: {sorted(METHODS)}")
    if policy.numeric_method and policy.numeric_method not in NUMERIC_METHODS:
        raise PolicyError(f"numeric_method {policy.numeric_method!r} does not apply to numbers")
    if policy.categorical_method and policy.categorical_method not in CATEGORICAL_METHODS:
        raise PolicyError(f"categorical_method {policy.categorical_method!r} does not apply to categories")


def load_policies(path: str) -> Policies:
    """Policies from a YAML or JSON file `{default: {...}, models: {name: {...}}}`; built-in defaults if ""."""
    if not path:
        return Policies()
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise PolicyError(f"cannot read the drift policy file {path}: {exc.strerror}") from None
    try:
        data = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise PolicyError(f"cannot parse the drift policy file {path}: {exc}") from None
    if not isinstance(data, dict):
        raise PolicyError(f"the drift policy file {path} must hold a mapping")
    return Policies.from_mapping(data)
