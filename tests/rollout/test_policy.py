"""Rollout policies (Flagger/Argo-style settings) and how a check is judged, including too little data."""

from __future__ import annotations

from pathlib import Path

import pytest
from loopline_rollout.checks import NOT_ENOUGH, Measurement, judge
from loopline_rollout.policy import CheckSpec, Policy, PolicyError, build_policy, duration, load_policy_file


def test_step_weight_and_max_weight_make_the_steps() -> None:
    policy = build_policy({"interval": "30s", "stepWeight": 15, "maxWeight": 50, "threshold": 2})
    assert policy.steps == (15, 30, 45, 50) and policy.interval_seconds == 30 and policy.threshold == 2
    assert build_policy({"stepWeights": [5, 10, 25, 50]}).steps == (5, 10, 25, 50)
    assert build_policy({}).steps == (10, 20, 30, 40, 50)
    assert [duration(v, "x") for v in (90, "2m", "1.5s", "1h", "250ms")] == [90, 120, 1.5, 3600, 0.25]


@pytest.mark.parametrize(("raw", "message"), [
    ({"stepWeights": [50, 10]}, "increasing"),
    ({"stepWeight": 60, "maxWeight": 50}, "exceeds maxWeight"),
    ({"interval": "soon"}, "not a duration"),
    ({"threshold": 0}, "threshold"),
    ({"colour": "blue"}, "unknown keys"),
    ({"metrics": [{"name": "error-rate"}]}, "thresholdRange needs min or max"),
    ({"metrics": [{"name": "mine", "thresholdRange": {"max": 1}}]}, "type must be one of"),
    ({"metrics": [{"name": "q", "type": "promql", "thresholdRange": {"max": 1}}]}, "needs a query"),
    ({"metrics": [{"name": "error-rate", "thresholdRange": {"max": 1}, "phases": ["canary"]}]}, "phases"),
    ({"shadow": {"iterations": -1}}, "iterations"),
])
def test_bad_policies_are_refused_with_where(raw: dict[str, object], message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        build_policy(raw)


def test_the_policy_file_lays_model_keys_over_the_default(tmp_path: Path) -> None:
    path = tmp_path / "rollout.yaml"
    path.write_text("""
default:
  interval: 1m
  stepWeights: [10, 50]
  metrics:
    - {name: error-rate, thresholdRange: {max: 0.01}}
    - {name: shadow-agreement, thresholdRange: {min: 0.9}, minSamples: 500}
models:
  fraud: {interval: 2m, threshold: 1, shadow: {iterations: 2}}
""")
    policies = load_policy_file(str(path))
    fraud, other = policies.for_model("fraud"), policies.for_model("other")
    assert fraud.interval_seconds == 120 and fraud.threshold == 1 and fraud.shadow_iterations == 2
    assert other.interval_seconds == 60 and other.shadow_iterations == 0 and other.steps == (10, 50)
    agreement = next(c for c in fraud.checks if c.name == "shadow-agreement")
    assert agreement.phases == ("shadow",) and agreement.min_samples == 500
    assert policies.uses_shadow and not policies.uses_promql
    assert Policy.from_json(fraud.to_json()) == fraud
    path.write_text("models: {fraud: {stepWeight: 101}}")
    with pytest.raises(PolicyError, match="fraud"):
        load_policy_file(str(path))


def test_too_little_data_is_never_a_pass() -> None:
    check = CheckSpec(name="psi", type="prediction-psi", max=0.2, min_samples=200)
    assert judge(check, Measurement(0.01, 150)).result == NOT_ENOUGH  # a good value on too few records
    assert judge(check, Measurement(None, 0, "no records")).result == NOT_ENOUGH
    assert judge(check, Measurement(float("nan"), 500)).result == NOT_ENOUGH
    passed = judge(check, Measurement(0.01, 500))
    assert passed.result == "pass" and "within <= 0.2" in passed.message
    failed = judge(check, Measurement(0.31, 500))
    assert failed.result == "fail" and failed.value == 0.31 and failed.condition == "<= 0.2"
    ranged = CheckSpec(name="agreement", type="shadow-agreement", min=0.9, max=1.0, min_samples=0)
    assert judge(ranged, Measurement(0.95, None)).result == "pass"
    assert judge(ranged, Measurement(0.85, None)).result == "fail"
