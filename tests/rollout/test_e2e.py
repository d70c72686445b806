"""The rollout controller in the embedded stack with real services: a registry over MLflow, an inference
server following the registry's aliases, monitoring reading the prediction log from the broker, Prometheus
scraping inference, and the controller itself. Traffic is real requests to the inference server."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable

import grpc
import httpx
import pytest
from click.testing import CliRunner

from loopline.events.v1 import rollouts_pb2 as ev
from loopline.rollout.v1 import rollout_pb2 as pb
from loopline_cli.main import cli
from tests.registry.conftest import token
from tests.rollout.support import Stack, metric, wait_until

CHECKS = [
    {"name": "error-rate", "thresholdRange": {"max": 0.05}, "minSamples": 50},
    {"name": "latency-p99", "thresholdRange": {"max": 1.0}, "minSamples": 50},
    {"name": "prediction-psi", "thresholdRange": {"max": 0.2}, "minSamples": 200},
    {"name": "input-drift", "thresholdRange": {"max": 0.5}, "minSamples": 0},
    {"name": "challenger-requests", "type": "promql", "thresholdRange": {"min": 1}, "phases": ["progressing"],
     "query": 'sum(loopline_inference_predict_requests_total{model="{{model}}",track="challenger",'
              'version="{{version}}"})'},
]
POLICY = {"default": {"interval": "2s", "stepWeights": [20, 50], "threshold": 2, "inconclusiveLimit": 6,
                      "metrics": CHECKS}}


@pytest.fixture(scope="module")
def stack(stack_factory: Callable[..., Stack]) -> Stack:
    made = stack_factory(POLICY)
    assert made.traffic is not None
    made.traffic.start()
    return made


def _at_step(stack: Stack, version: int, step: int) -> pb.GetRolloutResponse:
    assert stack.client is not None
    client = stack.client

    def reached() -> pb.GetRolloutResponse | None:
        got = client.get(stack.model)
        r = got.rollout
        return got if r.candidate_version == version and r.step == step and r.phase == pb.PHASE_PROGRESSING else None

    return wait_until(reached, timeout=60, what=f"v{version} at step {step}", every=0.1)


def _check(decision: ev.RolloutDecision, name: str) -> ev.CheckResult:
    return next(c for c in decision.checks if c.name == name)


def _audit_actions(stack: Stack, version: int, action: str) -> list[object]:
    lineage = stack.lineage(version)
    return [e for e in lineage.history if e.action == action]


def _steered_by_hand(got: pb.GetRolloutResponse) -> list[tuple[int, str, str]]:
    """(decision, actor, reason) of the rollout's decisions made by someone other than the controller."""
    return [(d.decision, d.actor, d.reason) for d in got.decisions if d.actor != "controller"]


def _audited_by_hand(stack: Stack, version: int, count: int) -> list[tuple[str, str, str]]:
    """(action, actor, reason) of the version's rollout audit entries not made by the controller, once
    the registry has recorded `count` of them (it reads them from the rollouts topic)."""

    def recorded() -> list[tuple[str, str, str]] | None:
        entries = [(e.action, e.actor, e.reason) for e in stack.lineage(version).history
                   if e.action.startswith("rollout.") and e.actor != "controller"]
        return entries if len(entries) >= count else None

    return wait_until(recorded, timeout=30, what=f"{count} decisions by hand in the registry's audit")


def test_a_good_challenger_is_promoted(stack: Stack) -> None:
    champion = stack.alias("champion")
    version = stack.register("good")

    got = stack.wait_phase({pb.PHASE_PROMOTED}, candidate=version)

    rollout, decisions = got.rollout, list(got.decisions)
    assert rollout.started_by == "controller" and rollout.champion_version == champion
    assert decisions[0].decision == ev.DECISION_STARTED and decisions[-1].decision == ev.DECISION_PROMOTE
    assert [d.weight for d in decisions if d.decision == ev.DECISION_ADVANCE] == [20, 50]
    final = decisions[-1]
    assert {c.name for c in final.checks} == {c["name"] for c in CHECKS}
    assert all(c.outcome == ev.CHECK_OUTCOME_PASS for c in final.checks), final.checks
    assert _check(final, "prediction-psi").value < 0.2
    assert _check(final, "challenger-requests").value >= 1
    # Success moves the champion alias; inference follows and the canary weight is back to 0.
    assert stack.alias("champion") == version
    assert stack.alias("challenger") == 0
    wait_until(lambda: stack.serving("champion") == version, timeout=30, what="inference serving the new champion")
    wait_until(lambda: stack.tracks().challenger_weight == 0, timeout=30, what="challenger weight 0")
    # Every decision is in the version's lineage (from the rollouts topic) and in the metrics.
    wait_until(lambda: len([r for r in stack.lineage(version).rollout_decisions
                            if r.rollout_id == rollout.rollout_id]) == len(decisions), timeout=30,
               what="every decision in the lineage")
    assert _audit_actions(stack, version, "rollout.promote")
    text = stack.rollout_metrics()
    assert metric(text, "loopline_rollout_decisions_total", model=stack.model, decision="promoted") == 1
    assert metric(text, "loopline_rollout_canary_weight", model=stack.model) == 0
    assert metric(text, "loopline_rollout_active", model=stack.model) == 0
    assert metric(text, "loopline_rollout_phase", model=stack.model, phase="promoted") == 1
    assert (metric(text, "loopline_rollout_steps_total", model=stack.model) or 0) >= 2
    assert (metric(text, "loopline_rollout_analysis_checks_total", model=stack.model, check="prediction-psi",
                   result="pass") or 0) >= 1
    # The time of the last decision is the promotion's own event time.
    assert metric(text, "loopline_rollout_last_decision_timestamp_seconds", model=stack.model) == pytest.approx(
        final.meta.occurred_at.ToNanoseconds() / 1e9, abs=1e-6)


@pytest.mark.parametrize(("kind", "check"), [("degraded", "prediction-psi"), ("broken", "error-rate")])
def test_a_bad_challenger_is_rolled_back(stack: Stack, kind: str, check: str) -> None:
    champion = stack.alias("champion")
    version = stack.register(kind)

    got = stack.wait_phase({pb.PHASE_ROLLED_BACK}, candidate=version)

    rollout, last = got.rollout, got.decisions[-1]
    assert last.decision == ev.DECISION_ROLLBACK and last.weight == 0
    assert rollout.failed_checks == 2 and rollout.weight == 0
    failed = _check(last, check)
    assert failed.outcome == ev.CHECK_OUTCOME_FAIL
    assert failed.value > (0.2 if check == "prediction-psi" else 0.5)
    assert check in rollout.reason and "2 failed analyses" in rollout.reason
    # The champion stays; the challenger is rejected (its alias removed) and gets no traffic.
    assert stack.alias("champion") == champion
    wait_until(lambda: stack.alias("challenger") == 0, timeout=30, what="challenger alias removed")
    wait_until(lambda: stack.tracks().challenger_weight == 0, timeout=30, what="weight 0")
    entries = wait_until(lambda: _audit_actions(stack, version, "rollout.rollback"), timeout=30,
                         what="the rollback in the registry's audit")
    assert check in entries[0].reason  # type: ignore[attr-defined]
    removal = [e for e in stack.lineage(version).history if e.action == "delete_alias"]
    assert removal and "rejected by rollout" in removal[0].reason
    text = stack.rollout_metrics()
    assert (metric(text, "loopline_rollout_analysis_checks_total", model=stack.model, check=check,
                   result="fail") or 0) >= 2


def test_traffic_split_pause_resume_and_abort(stack: Stack) -> None:
    assert stack.client is not None and stack.traffic is not None and stack.rollout is not None
    client = stack.client
    version = stack.register("good")
    _at_step(stack, version, 1)
    paused = client.call("PauseRollout", pb.PauseRolloutRequest(model_name=stack.model, reason="measure the split"))
    assert paused.rollout.phase == pb.PHASE_PAUSED and not paused.rollout.HasField("next_analysis_at")

    # A second rollout of the same model is refused while this one is active.
    with pytest.raises(grpc.RpcError) as refused:
        client.call("StartRollout", pb.StartRolloutRequest(model_name=stack.model, candidate_version=version))
    assert refused.value.code() == grpc.StatusCode.ALREADY_EXISTS
    # Steering needs a releaser's token and a reason.
    with pytest.raises(grpc.RpcError) as anonymous:
        client.call("ResumeRollout", pb.ResumeRolloutRequest(model_name=stack.model, reason="x"), token="")
    assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED
    from loopline_registry.auth import Role

    with pytest.raises(grpc.RpcError) as reader:
        client.call("ResumeRollout", pb.ResumeRolloutRequest(model_name=stack.model, reason="x"),
                    token=token(Role.READER))
    assert reader.value.code() == grpc.StatusCode.PERMISSION_DENIED
    releaser = {"authorization": f"Bearer {stack.releaser_token}"}
    steer_by_cli = ["--target", stack.rollout.grpc, "--token", stack.releaser_token]
    no_reason = httpx.post(f"{stack.rollout.http}/v1/rollouts/{stack.model}:resume", json={}, headers=releaser)
    assert no_reason.status_code == 400 and no_reason.json()["error"]["code"] == "INVALID_ARGUMENT"
    unknown = httpx.post(f"{stack.rollout.http}/v1/rollouts/no-such-model:pause", json={"reason": "x"},
                         headers=releaser)
    assert unknown.status_code == 404

    stack.traffic.stop()
    for weight in (20, 50):
        counts = stack.traffic.split(2500)
        share = counts.get("challenger", 0) / sum(counts.values())
        assert abs(share - weight / 100) <= 0.02, (weight, counts)
        assert abs(stack.tracks().challenger_weight - weight / 100) < 1e-9
        if weight == 20:  # on to the next step (resumed over HTTP), then hold it again (paused by the CLI)
            stack.traffic.start()
            resumed = httpx.post(f"{stack.rollout.http}/v1/rollouts/{stack.model}:resume",
                                 json={"reason": "split measured"}, headers=releaser)
            assert resumed.status_code == 200, resumed.text
            assert resumed.json()["rollout"]["phase"] == "PHASE_PROGRESSING"
            assert (resumed.json()["rollout"]["actor"], resumed.json()["rollout"]["reason"]) == (
                "releaser-bot", "split measured")
            _at_step(stack, version, 2)
            paused_again = CliRunner().invoke(cli, ["rollout", "pause", stack.model, "--reason", "measure again",
                                                    *steer_by_cli])
            assert paused_again.exit_code == 0, paused_again.output
            assert ": paused, step 2/2" in paused_again.output and "releaser-bot: measure again" in paused_again.output
            stack.traffic.stop()
    stack.traffic.start()

    # Abort by hand through the CLI: weight back to 0, the challenger keeps its alias.
    result = CliRunner().invoke(cli, ["rollout", "abort", stack.model, "--reason", "enough for today", *steer_by_cli])
    assert result.exit_code == 0, result.output
    got = client.get(stack.model)
    assert got.rollout.phase == pb.PHASE_ABORTED and got.rollout.weight == 0
    abort = got.decisions[-1]
    assert abort.decision == ev.DECISION_ABORT and abort.actor == "releaser-bot" and abort.reason == "enough for today"
    # Every step by hand (gRPC, HTTP, CLI, CLI) is recorded with who and why, here and in the registry's audit.
    by_hand = [(ev.DECISION_PAUSE, "measure the split"), (ev.DECISION_RESUME, "split measured"),
               (ev.DECISION_PAUSE, "measure again"), (ev.DECISION_ABORT, "enough for today")]
    assert _steered_by_hand(got) == [(d, "releaser-bot", r) for d, r in by_hand]
    assert stack.tracks().challenger_weight == 0
    assert stack.alias("challenger") == version
    audited = _audited_by_hand(stack, version, len(by_hand))
    assert audited == [(f"rollout.{ev.Decision.Name(d).removeprefix('DECISION_').lower()}", "releaser-bot", r)
                       for d, r in by_hand]
    status = CliRunner().invoke(cli, ["rollout", "status", stack.model, "--target", stack.rollout.grpc, "--json"])
    assert status.exit_code == 0 and json.loads(status.output)["rollout"]["phase"] == "PHASE_ABORTED"
    over_http = httpx.get(f"{stack.rollout.http}/v1/rollouts/{stack.model}").json()
    assert over_http["rollout"]["phase"] == "PHASE_ABORTED" and over_http["decisions"][-1]["actor"] == "releaser-bot"


def test_a_controller_killed_mid_rollout_resumes_it(stack: Stack) -> None:
    assert stack.client is not None and stack.rollout is not None
    version = stack.register("good")
    before = _at_step(stack, version, 1).rollout

    stack.rollout.stop(signal.SIGKILL)
    stack.start_rollout_service()

    got = stack.wait_phase({pb.PHASE_PROMOTED}, candidate=version)
    assert got.rollout.rollout_id == before.rollout_id
    mine = [r for r in stack.client.call("ListRollouts", pb.ListRolloutsRequest(model_name=stack.model,
                                                                                 page_size=100)).rollouts
            if r.candidate_version == version]
    assert len(mine) == 1
    steps = [d.step for d in got.decisions if d.decision == ev.DECISION_ADVANCE]
    assert steps == [1, 2]
    assert stack.alias("champion") == version


def test_too_little_data_pauses_and_an_operator_promotes_by_hand(stack: Stack) -> None:
    assert stack.client is not None and stack.traffic is not None
    stack.traffic.stop()
    try:
        version = stack.register("good")
        got = stack.wait_phase({pb.PHASE_PAUSED}, candidate=version)
        rollout = got.rollout
        assert rollout.step == 1 and rollout.weight == 20 and rollout.failed_checks == 0
        assert "not enough data" in rollout.reason
        holds = [d for d in got.decisions if d.decision == ev.DECISION_HOLD]
        assert len(holds) == 5  # inconclusiveLimit 6: five holds, then the pause
        for decision in (*holds, got.decisions[-1]):
            assert any(c.outcome == ev.CHECK_OUTCOME_NOT_ENOUGH_DATA for c in decision.checks)
            assert not any(c.outcome == ev.CHECK_OUTCOME_FAIL for c in decision.checks)
        assert stack.alias("champion") != version
        text = stack.rollout_metrics()
        assert (metric(text, "loopline_rollout_analysis_checks_total", model=stack.model, check="prediction-psi",
                       result="not_enough_data") or 0) >= 6
        assert metric(text, "loopline_rollout_phase", model=stack.model, phase="paused") == 1

        # An operator overrides: resumes, then promotes by hand, skipping the last step (CLI, gRPC API).
        assert stack.rollout is not None
        steer_by_cli = ["--target", stack.rollout.grpc, "--token", stack.releaser_token]
        resumed = CliRunner().invoke(cli, ["rollout", "resume", stack.model, "--reason", "quiet night, resume",
                                           *steer_by_cli])
        assert resumed.exit_code == 0, resumed.output
        assert ": progressing, step 1/2" in resumed.output and "releaser-bot: quiet night, resume" in resumed.output
        promoted = CliRunner().invoke(cli, ["rollout", "promote", stack.model, "--reason", "verified offline",
                                            *steer_by_cli])
        assert promoted.exit_code == 0, promoted.output
        assert ": promoted, step 1/2" in promoted.output and "releaser-bot: verified offline" in promoted.output
        got = stack.client.get(stack.model)
        assert got.rollout.phase == pb.PHASE_PROMOTED and got.rollout.candidate_version == version
        assert _steered_by_hand(got) == [(ev.DECISION_RESUME, "releaser-bot", "quiet night, resume"),
                                         (ev.DECISION_PROMOTE, "releaser-bot", "verified offline")]
        # The promotion by hand moves the champion alias (the challenger's goes), with who and why.
        assert stack.alias("champion") == version and stack.alias("challenger") == 0
        assert _audited_by_hand(stack, version, 2) == [("rollout.resume", "releaser-bot", "quiet night, resume"),
                                                       ("rollout.promote", "releaser-bot", "verified offline")]
        moved = [(e.alias, e.reason) for e in stack.lineage(version).history if e.action == "promote"]
        assert ("champion", f"rollout {got.rollout.rollout_id}: verified offline") in moved
        text = stack.rollout_metrics()
        assert metric(text, "loopline_rollout_phase", model=stack.model, phase="promoted") == 1
        assert metric(text, "loopline_rollout_active", model=stack.model) == 0
        # Nothing is left to promote, over HTTP either.
        again = httpx.post(f"{stack.rollout.http}/v1/rollouts/{stack.model}:promote", json={"reason": "again"},
                           headers={"authorization": f"Bearer {stack.releaser_token}"})
        assert again.status_code == 404 and again.json()["error"]["code"] == "NOT_FOUND"
        wait_until(lambda: stack.serving("champion") == version, timeout=30, what="inference serving the new champion")
    finally:
        stack.traffic.start()


def test_a_shadow_phase_comes_before_live_traffic(stack: Stack) -> None:
    assert stack.client is not None and stack.rollout is not None
    policy = {"default": {**POLICY["default"], "shadow": {"iterations": 1}, "stepWeights": [50],
                          "metrics": [*CHECKS, {"name": "shadow-agreement", "thresholdRange": {"min": 0.8},
                                                "minSamples": 100}]}}
    (stack.folder / "rollout-policy.json").write_text(json.dumps(policy))
    stack.rollout.stop()
    stack.start_rollout_service()
    client = stack.client
    version = stack.register("good")

    def shadowing() -> bool:
        got = client.get(stack.model).rollout
        tracks = stack.tracks()
        return (got.candidate_version == version and got.phase == pb.PHASE_SHADOW and tracks.shadow
                and tracks.challenger_weight == 0)

    wait_until(shadowing, timeout=60, what="the shadow phase")
    got = stack.wait_phase({pb.PHASE_PROMOTED}, candidate=version)
    advances = [d for d in got.decisions if d.decision == ev.DECISION_ADVANCE]
    assert [(d.step, d.weight) for d in advances] == [(0, 0), (1, 50)]
    shadow_analysis = advances[1]  # the analysis that ended the shadow phase
    agreement = _check(shadow_analysis, "shadow-agreement")
    assert agreement.outcome == ev.CHECK_OUTCOME_PASS and agreement.value >= 0.8
    assert "challenger-requests" not in {c.name for c in shadow_analysis.checks}
    assert stack.alias("champion") == version
