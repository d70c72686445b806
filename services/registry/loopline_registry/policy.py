"""Promotion policy: the gates a version must pass to become champion, per model, from a file or the API.

A policy has metric gates (an absolute bound and/or a largest regression against the current champion,
with the metric's direction respected), the ONNX parity gate and an optional human approval. Not being
archived is always required. `evaluate` checks every gate (it does not stop at the first failure) and
says, for each, why it passed or failed, with the numbers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from loopline.registry.v1 import registry_pb2 as pb

# Metric names containing one of these are lower-is-better unless the policy says otherwise.
LOWER_IS_BETTER_HINTS = (
    "loss", "error", "latency", "rmse", "mse", "mae", "mape", "brier", "duration", "seconds", "_ms",
)


class MetricGateSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    metric: str = Field(min_length=1, max_length=250)
    direction: Literal["higher", "lower"] | None = None
    threshold: float | None = None
    max_regression: float | None = Field(None, ge=0)


class PolicySpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    metrics: list[MetricGateSpec] = Field(default_factory=list, max_length=50)
    require_onnx_parity: bool = False
    require_approval: bool = False


class PolicyFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    default: PolicySpec | None = None
    models: dict[str, PolicySpec] = Field(default_factory=dict)


class PolicyError(ValueError):
    """A policy file or an API policy is invalid; the message says where."""


def load_policy_file(path: str) -> PolicyFile:
    if not path:
        return PolicyFile()
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
        return PolicyFile.model_validate(data)
    except OSError as exc:
        raise PolicyError(f"cannot read policy file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise PolicyError(f"policy file {path} is not valid YAML/JSON: {exc}") from None
    except ValidationError as exc:
        raise PolicyError(f"policy file {path} is invalid: {_errors(exc)}") from None


def _errors(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())


def infer_direction(metric: str) -> Literal["higher", "lower"]:
    name = metric.lower()
    return "lower" if any(hint in name for hint in LOWER_IS_BETTER_HINTS) else "higher"


# ---- proto <-> spec -------------------------------------------------------------------------------
_DIRECTION_TO_PROTO: dict[Literal["higher", "lower"] | None, int] = {
    None: pb.METRIC_DIRECTION_UNSPECIFIED,
    "higher": pb.METRIC_DIRECTION_HIGHER_IS_BETTER,
    "lower": pb.METRIC_DIRECTION_LOWER_IS_BETTER,
}
_DIRECTION_FROM_PROTO: dict[int, Literal["higher", "lower"] | None] = {v: k for k, v in _DIRECTION_TO_PROTO.items()}


def spec_to_proto(spec: PolicySpec, *, source: str) -> pb.PromotionPolicy:
    policy = pb.PromotionPolicy(
        require_onnx_parity=spec.require_onnx_parity, require_approval=spec.require_approval, source=source
    )
    for gate in spec.metrics:
        message = policy.metric_gates.add(metric=gate.metric, direction=_DIRECTION_TO_PROTO[gate.direction])
        if gate.threshold is not None:
            message.threshold = gate.threshold
        if gate.max_regression is not None:
            message.max_regression = gate.max_regression
    return policy


def spec_from_proto(policy: pb.PromotionPolicy) -> PolicySpec:
    """Raises PolicyError for an invalid policy (e.g. a negative max_regression)."""
    try:
        return PolicySpec(
            metrics=[
                MetricGateSpec(
                    metric=g.metric,
                    direction=_DIRECTION_FROM_PROTO.get(g.direction),
                    threshold=g.threshold if g.HasField("threshold") else None,
                    max_regression=g.max_regression if g.HasField("max_regression") else None,
                )
                for g in policy.metric_gates
            ],
            require_onnx_parity=policy.require_onnx_parity,
            require_approval=policy.require_approval,
        )
    except ValidationError as exc:
        raise PolicyError(f"invalid policy: {_errors(exc)}") from None


def spec_to_json(spec: PolicySpec) -> str:
    return json.dumps(spec.model_dump(exclude_none=True), sort_keys=True)


def spec_from_json(text: str) -> PolicySpec:
    return PolicySpec.model_validate_json(text)


# ---- evaluation -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Facts:
    """What the gates look at for one version."""

    version: int
    metrics: dict[str, float] = field(default_factory=dict)
    archived: bool = False
    onnx_parity_passed: bool = False
    approved_by: str = ""


def _fmt(value: float) -> str:
    return f"{value:.4f}"


def evaluate(
    *, spec: PolicySpec, candidate: Facts, champion: Facts | None, include_approval: bool = True
) -> pb.PromotionEvaluation:
    """Check every gate of `spec` for `candidate` against `champion` (None if there is none)."""
    result = pb.PromotionEvaluation(version=candidate.version, champion_version=champion.version if champion else 0)
    v = f"v{candidate.version}"

    def gate(name: str, passed: bool, message: str, value: float | None = None, bound: float | None = None) -> None:
        item = result.gates.add(name=name, passed=passed, message=message)
        if value is not None:
            item.value = value
        if bound is not None:
            item.bound = bound

    gate("not_archived", not candidate.archived, f"{v} is archived" if candidate.archived else f"{v} is not archived")
    for spec_gate in spec.metrics:
        metric = spec_gate.metric
        direction = spec_gate.direction or infer_direction(metric)
        higher = direction == "higher"
        better = "higher is better" if higher else "lower is better"
        value = candidate.metrics.get(metric)
        if spec_gate.threshold is not None:
            name = f"metric:{metric}:threshold"
            bound = spec_gate.threshold
            if value is None:
                gate(name, False, f"{metric} is missing on {v}", None, bound)
            else:
                ok = value >= bound if higher else value <= bound
                sign = (">=" if higher else "<=") if ok else ("<" if higher else ">")
                gate(name, ok, f"{metric} {_fmt(value)} {sign} {_fmt(bound)} (threshold, {better})", value, bound)
        if spec_gate.max_regression is not None:
            name = f"metric:{metric}:vs_champion"
            reference = champion.metrics.get(metric) if champion is not None else None
            if champion is None or champion.version == candidate.version:
                gate(name, True, "no other champion to compare with")
            elif reference is None:
                gate(name, True, f"champion v{champion.version} has no {metric} to compare with")
            elif value is None:
                gate(name, False, f"{metric} is missing on {v}")
            else:
                allowed = spec_gate.max_regression
                bound = reference - allowed if higher else reference + allowed
                ok = value >= bound if higher else value <= bound
                sign = (">=" if higher else "<=") if ok else ("<" if higher else ">")
                op = "-" if higher else "+"
                gate(
                    name, ok,
                    f"{metric} {_fmt(value)} {sign} {_fmt(bound)} (champion v{champion.version} {_fmt(reference)} "
                    f"{op} max regression {_fmt(allowed)}, {better})",
                    value, bound,
                )
    if spec.require_onnx_parity:
        gate(
            "onnx_parity", candidate.onnx_parity_passed,
            "ONNX parity gate passed" if candidate.onnx_parity_passed else f"{v} did not pass the ONNX parity gate",
        )
    if spec.require_approval and include_approval:
        gate(
            "approval", bool(candidate.approved_by),
            f"approved by {candidate.approved_by}" if candidate.approved_by else f"{v} has no human approval",
        )
    result.passed = all(g.passed for g in result.gates)
    return result


def refusal(evaluation: pb.PromotionEvaluation, *, model: str) -> tuple[str, dict[str, str]]:
    """The message and details of a refused promotion: each failed gate and its numbers."""
    failed = [g for g in evaluation.gates if not g.passed]
    message = f"promotion of {model} v{evaluation.version} refused: " + "; ".join(
        f"{g.name}: {g.message}" for g in failed
    )
    details = {f"gate.{g.name}": g.message for g in failed}
    return message, details
