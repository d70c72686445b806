"""Promotion policy: gates from a file and from the API, metric directions, parity, approval; a refused
promotion names each failed gate with its numbers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from loopline.registry.v1 import registry_pb2 as pb
from tests.registry.clients import ApiError, RegistryProcess
from tests.registry.conftest import launch
from tests.registry.seed import Seeded, make_run, unique
from tests.registry.test_api import ADMIN, READER, RELEASER, TRAINER, Api

POLICY_FILE = """\
# every model: ROC-AUC at least 0.80 and at most 0.02 below the champion; log loss at most 0.35
default:
  metrics:
    - metric: roc_auc
      threshold: 0.80
      max_regression: 0.02
    - metric: log_loss
      threshold: 0.35
  require_onnx_parity: true
"""


@pytest.fixture(scope="module")
def policy_registry(
    registry_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RegistryProcess]:
    folder: Path = tmp_path_factory.mktemp("policy")
    (folder / "policy.yaml").write_text(POLICY_FILE)
    registry = launch(registry_env, folder, LOOPLINE_REGISTRY_POLICY_FILE=str(folder / "policy.yaml"))
    yield registry
    registry.close()


@pytest.fixture(scope="module")
def run(mlflow_server: str) -> Seeded:
    return make_run(mlflow_server)


@pytest.fixture(params=["grpc", "http"])
def papi(request: pytest.FixtureRequest, policy_registry: RegistryProcess) -> Api:
    return policy_registry.grpc if request.param == "grpc" else policy_registry.http


def add(api: Api, model: str, run: Seeded, metrics: dict[str, float], *, parity: bool = True,
        challenger: bool = False) -> pb.RegisterVersionResponse:
    request = pb.RegisterVersionRequest(model_name=model, run_id=run.run_id, metrics=metrics,
                                        onnx_parity_passed=parity, make_challenger=challenger)
    return api.call("RegisterVersion", request, TRAINER)  # type: ignore[no-any-return]


def promote(api: Api, model: str, version: int) -> pb.PromoteResponse:
    return api.call("Promote", pb.PromoteRequest(model_name=model, version=version, reason="gate test"), RELEASER)  # type: ignore[no-any-return]


def test_refused_promotion_names_every_failed_gate_with_its_numbers(papi: Api, run: Seeded) -> None:
    model = unique()
    add(papi, model, run, {"roc_auc": 0.85, "log_loss": 0.30})
    first = promote(papi, model, 1)
    gates = {g.name: g for g in first.evaluation.gates}
    assert gates["metric:roc_auc:vs_champion"].passed
    assert gates["metric:roc_auc:vs_champion"].message == "no other champion to compare with"

    add(papi, model, run, {"roc_auc": 0.75, "log_loss": 0.40}, parity=False)
    with pytest.raises(ApiError) as refused:
        promote(papi, model, 2)
    error = refused.value
    assert error.code == "FAILED_PRECONDITION"
    assert error.message.startswith(f"promotion of {model} v2 refused: ")
    assert error.details == {
        "gate.metric:roc_auc:threshold": "roc_auc 0.7500 < 0.8000 (threshold, higher is better)",
        "gate.metric:roc_auc:vs_champion":
            "roc_auc 0.7500 < 0.8300 (champion v1 0.8500 - max regression 0.0200, higher is better)",
        "gate.metric:log_loss:threshold": "log_loss 0.4000 > 0.3500 (threshold, lower is better)",
        "gate.onnx_parity": "v2 did not pass the ONNX parity gate",
    }
    for text in error.details.values():
        assert text in error.message

    # Above the absolute bound but too far below the champion: only the relative gate fails.
    add(papi, model, run, {"roc_auc": 0.82, "log_loss": 0.30})
    evaluation = papi.call("EvaluatePromotion", pb.EvaluatePromotionRequest(model_name=model, version=3),
                           READER).evaluation
    failed = [(g.name, g.value, g.bound) for g in evaluation.gates if not g.passed]
    assert not evaluation.passed and evaluation.champion_version == 1
    assert failed == [("metric:roc_auc:vs_champion", 0.82, pytest.approx(0.83))]

    add(papi, model, run, {"roc_auc": 0.84, "log_loss": 0.20})  # within 0.02 of the champion: passes
    assert promote(papi, model, 4).champion == 4
    assert papi.call("GetModel", pb.GetModelRequest(model_name=model), READER).model.aliases["champion"] == 4

    refusals = papi.call("ListAuditEntries", pb.ListAuditEntriesRequest(model_name=model, action="promote_refused"),
                         READER).entries
    assert [e.version for e in refusals] == [2]
    assert json.loads(refusals[0].after)["evaluation"]["passed"] is False


def test_api_policy_overrides_the_file_with_direction_and_approval(papi: Api, run: Seeded) -> None:
    model, other = unique(), unique()
    assert papi.call("GetPolicy", pb.GetPolicyRequest(model_name=other), READER).policy.source == "file"
    policy = pb.PromotionPolicy(require_approval=True, metric_gates=[
        # named like a higher-is-better metric: the explicit direction must win
        pb.MetricGate(metric="calibration", direction=pb.METRIC_DIRECTION_LOWER_IS_BETTER, threshold=0.1),
        pb.MetricGate(metric="latency_p99_ms", threshold=20.0),  # inferred: lower is better
    ])
    set_reply = papi.call("SetPolicy", pb.SetPolicyRequest(model_name=model, policy=policy, reason="strict"), ADMIN)
    assert set_reply.policy.source == "api"
    got = papi.call("GetPolicy", pb.GetPolicyRequest(model_name=model), READER).policy
    assert got.source == "api" and got.require_approval and len(got.metric_gates) == 2

    add(papi, model, run, {"calibration": 0.05, "latency_p99_ms": 12.0}, parity=False)  # parity not required here
    with pytest.raises(ApiError) as refused:
        promote(papi, model, 1)
    assert refused.value.details == {"gate.approval": "v1 has no human approval"}

    approved = papi.call("ApproveVersion", pb.ApproveVersionRequest(model_name=model, version=1, reason="reviewed"),
                         RELEASER)
    assert approved.version.approved_by == "releaser-bot"
    result = promote(papi, model, 1)
    assert result.champion == 1
    messages = {g.name: g.message for g in result.evaluation.gates}
    assert messages["metric:calibration:threshold"] == "calibration 0.0500 <= 0.1000 (threshold, lower is better)"
    assert messages["metric:latency_p99_ms:threshold"] == (
        "latency_p99_ms 12.0000 <= 20.0000 (threshold, lower is better)")
    assert messages["approval"] == "approved by releaser-bot"

    bad = pb.PromotionPolicy(metric_gates=[pb.MetricGate(metric="roc_auc", max_regression=-1)])
    with pytest.raises(ApiError) as invalid:
        papi.call("SetPolicy", pb.SetPolicyRequest(model_name=model, policy=bad), ADMIN)
    assert invalid.value.code == "INVALID_ARGUMENT"


def test_registration_makes_a_challenger_only_through_the_gates(papi: Api, run: Seeded) -> None:
    model = unique()
    good = add(papi, model, run, {"roc_auc": 0.9, "log_loss": 0.2}, challenger=True)
    assert good.challenger_set and good.evaluation.passed
    assert good.version.stage == pb.STAGE_STAGING
    bad = add(papi, model, run, {"roc_auc": 0.7, "log_loss": 0.2}, challenger=True)
    assert not bad.challenger_set and not bad.evaluation.passed
    assert [g.name for g in bad.evaluation.gates if not g.passed] == ["metric:roc_auc:threshold"]
    resolved = papi.call("ResolveAlias", pb.ResolveAliasRequest(model_name=model, alias="challenger"), READER)
    assert resolved.version == 1
