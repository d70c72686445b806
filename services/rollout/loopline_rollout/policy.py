"""Rollout policies: how a model's challenger is canaried, in the terms users know from Flagger and Argo
Rollouts (interval, stepWeight or explicit stepWeights, maxWeight, threshold, an optional shadow phase) and
the analysis checks with their success conditions (Flagger's `thresholdRange: {min, max}`).

    default:
      interval: 1m            # seconds as a number, or 30s / 2m / 1h
      stepWeight: 10          # 10, 20, ... up to maxWeight
      maxWeight: 50
      # stepWeights: [5, 10, 25, 50]   # explicit steps instead of stepWeight/maxWeight
      threshold: 3            # failed analyses before the rollback
      inconclusiveLimit: 10   # analyses in a row without enough data before the rollout pauses
      shadow: {iterations: 2} # analyses in shadow (no live traffic) before the first step; 0: no shadow
      metrics:
        - {name: error-rate, thresholdRange: {max: 0.01}}
        - {name: latency-p99, thresholdRange: {max: 0.25}}
        - {name: prediction-psi, thresholdRange: {max: 0.2}}
        - {name: input-drift, thresholdRange: {max: 0.5}}
        - {name: shadow-agreement, thresholdRange: {min: 0.9}}
        - name: challenger-traffic
          type: promql
          query: sum(rate(loopline_inference_predict_requests_total{model="{{model}}"}[{{interval}}]))
          thresholdRange: {min: 0.1}
    models:
      fraud: {interval: 2m, threshold: 2}

A model's policy is the default with the model's keys laid over it.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

BUILTIN_CHECKS = ("error-rate", "latency-p99", "prediction-psi", "input-drift", "shadow-agreement")
CHECK_TYPES = (*BUILTIN_CHECKS, "promql")
# Checks that only mean something in one phase: agreement needs shadow traffic.
DEFAULT_PHASES: dict[str, tuple[str, ...]] = {"shadow-agreement": ("shadow",)}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


class PolicyError(ValueError):
    """A policy file or policy that cannot be used; the message says where."""


@dataclass(frozen=True)
class CheckSpec:
    name: str
    type: str
    min: float | None = None
    max: float | None = None
    # Fewest records (requests, pairs) the check needs; fewer is "not enough data".
    min_samples: int = 100
    query: str = ""
    phases: tuple[str, ...] = ("shadow", "progressing")

    def condition(self) -> str:
        parts = []
        if self.min is not None:
            parts.append(f">= {self.min:g}")
        if self.max is not None:
            parts.append(f"<= {self.max:g}")
        return " and ".join(parts) or "any"

    def passes(self, value: float) -> bool:
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)


@dataclass(frozen=True)
class Policy:
    interval_seconds: float = 60.0
    steps: tuple[int, ...] = (10, 20, 30, 40, 50)
    threshold: int = 3
    inconclusive_limit: int = 10
    shadow_iterations: int = 0
    checks: tuple[CheckSpec, ...] = field(default_factory=tuple)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Policy:
        raw = json.loads(text)
        return cls(
            interval_seconds=float(raw["interval_seconds"]), steps=tuple(int(s) for s in raw["steps"]),
            threshold=int(raw["threshold"]), inconclusive_limit=int(raw["inconclusive_limit"]),
            shadow_iterations=int(raw["shadow_iterations"]),
            checks=tuple(CheckSpec(**{**c, "phases": tuple(c["phases"])}) for c in raw["checks"]),
        )


DEFAULT_CHECKS = (
    CheckSpec(name="error-rate", type="error-rate", max=0.01),
    CheckSpec(name="latency-p99", type="latency-p99", max=0.5),
    CheckSpec(name="prediction-psi", type="prediction-psi", max=0.2),
)


def duration(value: Any, where: str) -> float:
    if isinstance(value, bool):
        raise PolicyError(f"{where}: expected a duration, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise PolicyError(f"{where}: {value!r} is not a duration (e.g. 30, 30s, 2m, 1h)")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds <= 0:
        raise PolicyError(f"{where}: must be positive")
    return seconds


def _int(raw: dict[str, Any], key: str, where: str, *, low: int, high: int) -> int | None:
    if key not in raw:
        return None
    value = raw[key]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise PolicyError(f"{where}.{key}: expected a whole number within {low}..{high}, got {value!r}")
    return value


def _check(raw: Any, where: str) -> CheckSpec:
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or not raw["name"]:
        raise PolicyError(f"{where}: each metric needs a name")
    name = raw["name"]
    kind = raw.get("type", name if name in BUILTIN_CHECKS else "")
    if kind not in CHECK_TYPES:
        raise PolicyError(f"{where} ({name}): type must be one of {', '.join(CHECK_TYPES)} (got {kind!r})")
    unknown = set(raw) - {"name", "type", "thresholdRange", "minSamples", "query", "phases"}
    if unknown:
        raise PolicyError(f"{where} ({name}): unknown keys {sorted(unknown)}")
    bounds = raw.get("thresholdRange", {})
    if not isinstance(bounds, dict) or set(bounds) - {"min", "max"}:
        raise PolicyError(f"{where} ({name}): thresholdRange takes min and/or max")
    low, high = bounds.get("min"), bounds.get("max")
    for label, value in (("min", low), ("max", high)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise PolicyError(f"{where} ({name}): thresholdRange.{label} must be a number")
    if low is None and high is None:
        raise PolicyError(f"{where} ({name}): thresholdRange needs min or max")
    query = raw.get("query", "")
    if kind == "promql" and not (isinstance(query, str) and query.strip()):
        raise PolicyError(f"{where} ({name}): a promql check needs a query")
    samples = _int(raw, "minSamples", f"{where} ({name})", low=0, high=10**9)
    phases = raw.get("phases", DEFAULT_PHASES.get(kind, ("shadow", "progressing")))
    if not isinstance(phases, list | tuple) or not phases or set(phases) - {"shadow", "progressing"}:
        raise PolicyError(f"{where} ({name}): phases is a list of shadow and/or progressing")
    return CheckSpec(
        name=name, type=kind, min=None if low is None else float(low), max=None if high is None else float(high),
        min_samples=100 if samples is None else samples, query=str(query), phases=tuple(phases),
    )


KNOWN_KEYS = {"interval", "stepWeight", "maxWeight", "stepWeights", "threshold", "inconclusiveLimit", "shadow",
              "metrics"}


def build_policy(raw: dict[str, Any], where: str = "policy") -> Policy:
    """A Policy from its mapping (already merged with the defaults)."""
    unknown = set(raw) - KNOWN_KEYS
    if unknown:
        raise PolicyError(f"{where}: unknown keys {sorted(unknown)} (known: {', '.join(sorted(KNOWN_KEYS))})")
    interval = duration(raw.get("interval", 60), f"{where}.interval")
    if "stepWeights" in raw:
        steps = raw["stepWeights"]
        if (not isinstance(steps, list) or not steps
                or any(isinstance(s, bool) or not isinstance(s, int) or not 0 < s <= 100 for s in steps)
                or steps != sorted(set(steps))):
            raise PolicyError(f"{where}.stepWeights: an increasing list of percents within 1..100")
        weights = tuple(int(s) for s in steps)
    else:
        step = _int(raw, "stepWeight", where, low=1, high=100) or 10
        top = _int(raw, "maxWeight", where, low=1, high=100) or 50
        if step > top:
            raise PolicyError(f"{where}: stepWeight {step} exceeds maxWeight {top}")
        weights = tuple(range(step, top + 1, step))
        if weights[-1] != top:
            weights = (*weights, top)
    threshold = _int(raw, "threshold", where, low=1, high=1000) or 3
    limit = _int(raw, "inconclusiveLimit", where, low=1, high=10**6) or 10
    shadow = raw.get("shadow", {}) or {}
    if not isinstance(shadow, dict) or set(shadow) - {"iterations"}:
        raise PolicyError(f"{where}.shadow: takes iterations (analyses in shadow before live traffic)")
    iterations = _int(shadow, "iterations", f"{where}.shadow", low=0, high=1000) or 0
    metrics = raw.get("metrics")
    checks: tuple[CheckSpec, ...]
    if metrics is None:
        checks = DEFAULT_CHECKS
    elif not isinstance(metrics, list):
        raise PolicyError(f"{where}.metrics: a list of checks")
    else:
        checks = tuple(_check(m, f"{where}.metrics[{i}]") for i, m in enumerate(metrics))
    names = [c.name for c in checks]
    if len(names) != len(set(names)):
        raise PolicyError(f"{where}.metrics: check names must be unique")
    return Policy(interval_seconds=interval, steps=weights, threshold=threshold, inconclusive_limit=limit,
                  shadow_iterations=iterations, checks=checks)


@dataclass(frozen=True)
class Policies:
    default: dict[str, Any] = field(default_factory=dict)
    models: dict[str, dict[str, Any]] = field(default_factory=dict)

    def for_model(self, model: str) -> Policy:
        merged = {**self.default, **self.models.get(model, {})}
        return build_policy(merged, f"policy of {model}")

    @property
    def uses_shadow(self) -> bool:
        return any(int((m.get("shadow") or {}).get("iterations", 0) or 0) > 0
                   for m in (self.default, *self.models.values()))

    @property
    def uses_promql(self) -> bool:
        return any(m.get("type") == "promql" for p in (self.default, *self.models.values())
                   for m in (p.get("metrics") or []) if isinstance(m, dict))


def parse_policies(raw: Any, where: str) -> Policies:
    if raw is None:
        return Policies()
    if not isinstance(raw, dict) or set(raw) - {"default", "models"}:
        raise PolicyError(f"{where}: expected a mapping with 'default' and/or 'models'")
    default = raw.get("default") or {}
    models = raw.get("models") or {}
    if not isinstance(default, dict) or not isinstance(models, dict) or not all(
            isinstance(v, dict) for v in models.values()):
        raise PolicyError(f"{where}: 'default' is a mapping and 'models' maps names to mappings")
    policies = Policies(default=default, models={str(k): v for k, v in models.items()})
    build_policy(default, f"{where}: default")  # every policy is checked at boot
    for name in policies.models:
        policies.for_model(name)
    return policies


def load_policy_file(path: str) -> Policies:
    """The policies of a YAML or JSON file ('' gives the built-in defaults); raises PolicyError."""
    if not path:
        return Policies()
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise PolicyError(f"cannot read the policy file {path}: {exc.strerror}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError(f"the policy file {path} is not valid YAML or JSON: {exc}") from None
    return parse_policies(raw, path)
