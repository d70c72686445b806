"""The GitOps actuator: each step, the promotion and the rollback are commits on the rollout's branch that
change the Helm values, with a pull request carrying the evidence. Plain git against a real local bare
repository; GitHub's and GitLab's REST APIs up to the requests they would send (httpx.MockTransport)."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from loopline_rollout.actuators.base import Change
from loopline_rollout.actuators.git_providers import GitHub, GitLab, PlainGit
from loopline_rollout.actuators.gitops import GitOpsActuator, branch_name, get_value, set_values
from loopline_rollout.policy import Policy
from loopline_rollout.store import RolloutRow

from loopline.events.v1 import rollouts_pb2 as ev

VALUES_PATH = "manifests/gitops/environments/production/values.yaml"
VALUES = """\
# Production values of the Loopline chart, synced by Argo CD.
inference:
  model:
    name: fraud
    # The version the predictor serves; rollout pull requests change it.
    version: 6
  canary:
    # Share of traffic for the newest revision (KServe canaryTrafficPercent).
    trafficPercent: 100
  replicas: 2  # two pods at least
monitoring:
  enabled: true
"""


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def bare_repo(tmp_path: Path) -> Path:
    """A bare repository whose main branch holds the values file (as a GitOps repository would)."""
    bare = tmp_path / "gitops.git"
    git("init", "--quiet", "--bare", "--initial-branch=main", str(bare), cwd=tmp_path)
    seed = tmp_path / "seed"
    git("clone", "--quiet", str(bare), str(seed), cwd=tmp_path)
    (seed / VALUES_PATH).parent.mkdir(parents=True)
    (seed / VALUES_PATH).write_text(VALUES)
    git("add", ".", cwd=seed)
    git("-c", "user.name=ops", "-c", "user.email=ops@example.invalid", "commit", "--quiet", "-m", "values", cwd=seed)
    git("push", "--quiet", "origin", "HEAD:main", cwd=seed)
    return bare


def _row(**overrides: Any) -> RolloutRow:
    now = datetime.now(UTC)
    values: dict[str, Any] = {
        "rollout_id": "0123456789abcdef0123456789abcdef", "model_name": "fraud", "candidate_version": 7,
        "champion_version": 6, "phase": "progressing", "policy": Policy(threshold=2).to_json(),
        "actuator": "gitops", "started_by": "controller", "started_at": now, "updated_at": now,
    }
    values.update(overrides)
    return RolloutRow(**values)


def _checks(psi: float, outcome: int = ev.CHECK_OUTCOME_PASS) -> list[ev.CheckResult]:
    return [
        ev.CheckResult(name="error-rate", outcome=ev.CHECK_OUTCOME_PASS, value=0.001, condition="<= 0.01",
                       message="0.001 within <= 0.01 over 812 samples"),
        ev.CheckResult(name="prediction-psi", outcome=outcome, value=psi, condition="<= 0.2",  # type: ignore[arg-type]
                       message=f"{psi} vs champion"),
    ]


class Rollout:
    """Feeds the actuator the decisions a controller would, keeping the row's actuator state between them."""

    def __init__(self, actuator: GitOpsActuator, row: RolloutRow) -> None:
        self.actuator = actuator
        self.row = row
        self.history: list[ev.RolloutDecision] = [ev.RolloutDecision(
            decision=ev.DECISION_STARTED, actor="controller", reason="new challenger v7", threshold=2)]

    def _change(self, decision: int, weight: int, step: int, reason: str, checks: list[ev.CheckResult]) -> Change:
        d = ev.RolloutDecision(rollout_id=self.row.rollout_id, decision=decision, step=step, weight=weight,  # type: ignore[arg-type]
                               actor="controller", reason=reason, checks=checks, threshold=2)
        d.meta.occurred_at.FromDatetime(datetime(2026, 11, 22, 3, len(self.history), tzinfo=UTC))
        self.history.append(d)
        self.row.step, self.row.weight = step, weight
        return Change(rollout=self.row, decision=d, history=list(self.history))

    def _keep(self, state: dict[str, Any]) -> None:
        self.row.actuator_state = json.dumps({**self.row.state(), **state})

    def step(self, step: int, weight: int, checks: list[ev.CheckResult] | None = None) -> None:
        change = self._change(ev.DECISION_ADVANCE, weight, step, f"step {step}, canary {weight}%", checks or [])
        self._keep(asyncio.run(self.actuator.apply(change, weight=weight, shadow=False)))

    def promote(self, checks: list[ev.CheckResult]) -> None:
        change = self._change(ev.DECISION_PROMOTE, 100, self.row.step, "all 2 steps passed their analysis", checks)
        self._keep(asyncio.run(self.actuator.promote(change)))

    def rollback(self, checks: list[ev.CheckResult]) -> None:
        change = self._change(ev.DECISION_ROLLBACK, 0, self.row.step,
                              "2 failed analyses (threshold 2); last: prediction-psi: 0.91 outside <= 0.2", checks)
        self._keep(asyncio.run(self.actuator.rollback(change)))


def test_set_values_keeps_comments_order_and_other_keys() -> None:
    out = set_values(VALUES, {"inference.model.version": 7, "inference.canary.trafficPercent": 10,
                              "inference.canary.shadow": False})
    assert get_value(out, "inference.model.version") == 7 and get_value(out, "inference.canary.trafficPercent") == 10
    assert "# The version the predictor serves; rollout pull requests change it." in out
    assert "replicas: 2  # two pods at least" in out and out.startswith("# Production values")
    assert out.index("model:") < out.index("canary:") < out.index("replicas:") < out.index("monitoring:")
    assert get_value(out, "inference.canary.shadow") is False


def test_steps_and_promotion_are_commits_in_a_bare_repository(bare_repo: Path, tmp_path: Path) -> None:
    provider = PlainGit(remote=str(bare_repo), base="main", work_dir=tmp_path / "work",
                        author="Loopline rollout <rollout@loopline.invalid>")
    actuator = GitOpsActuator(provider=provider, values_file=VALUES_PATH, version_key="inference.model.version",
                              percent_key="inference.canary.trafficPercent")
    rollout = Rollout(actuator, _row())
    rollout.step(1, 10)
    rollout.step(2, 50, _checks(0.03))
    rollout.step(2, 50, _checks(0.03))  # re-applied after a restart: nothing new to commit
    rollout.promote(_checks(0.02))

    branch = branch_name(rollout.row)
    assert branch == "loopline/rollout/fraud-v7-01234567"
    log = git("log", "--format=%s", f"main..{branch}", cwd=bare_repo).splitlines()
    assert log == ["rollout fraud v7: promote", "rollout fraud v7: canary 50% (step 2)",
                   "rollout fraud v7: canary 10% (step 1)"]
    # Each commit changes exactly the two values.
    first = git("diff", f"main..{branch}~2", "--", VALUES_PATH, cwd=bare_repo)
    assert "-    version: 6\n+    version: 7" in first and "-    trafficPercent: 100\n+    trafficPercent: 10" in first
    assert "-    trafficPercent: 10\n+    trafficPercent: 50" in git("diff", f"{branch}~2..{branch}~1", cwd=bare_repo)
    assert "-    trafficPercent: 50\n+    trafficPercent: 100" in git("diff", f"{branch}~1..{branch}", cwd=bare_repo)
    diff = git("diff", f"main..{branch}", cwd=bare_repo).splitlines()
    changed = [line for line in diff if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    assert changed == ["-    version: 6", "+    version: 7"]  # promoted: the new version at 100%
    final = git("show", f"{branch}:{VALUES_PATH}", cwd=bare_repo)
    assert "# Share of traffic for the newest revision (KServe canaryTrafficPercent)." in final
    assert git("log", "-1", "--format=%an <%ae>", branch, cwd=bare_repo).strip() == (
        "Loopline rollout <rollout@loopline.invalid>")
    # The pull request's text (plain git: the newest commit's message) carries the evidence.
    text = git("log", "-1", "--format=%B", branch, cwd=bare_repo)
    assert "Canary of **fraud** version **7** against champion version **6**" in text
    assert "state: **promoted**" in text
    assert "| 2026-11-22 03:04:00 UTC | promote | 2 | 100% | controller | all 2 steps passed their analysis |" in text
    assert "| prediction-psi | pass | 0.02 | <= 0.2 | 0.02 vs champion |" in text
    assert "| error-rate | pass | 0.001 | <= 0.01 | 0.001 within <= 0.01 over 812 samples |" in text
    assert rollout.row.state()["pull_request_url"] == f"{bare_repo}#{branch}"
    assert git("show", f"main:{VALUES_PATH}", cwd=bare_repo) == VALUES  # main is untouched until a merge


def test_a_rollback_commit_returns_the_champion_at_zero_percent(bare_repo: Path, tmp_path: Path) -> None:
    actuator = GitOpsActuator(provider=PlainGit(remote=str(bare_repo), base="main", work_dir=tmp_path / "w",
                                                author="Loopline rollout <rollout@loopline.invalid>"),
                              values_file=VALUES_PATH, version_key="inference.model.version",
                              percent_key="inference.canary.trafficPercent")
    rollout = Rollout(actuator, _row(rollout_id="fedcba9876543210fedcba9876543210"))
    rollout.step(1, 10)
    rollout.rollback(_checks(0.91, ev.CHECK_OUTCOME_FAIL))
    branch = branch_name(rollout.row)
    final = git("show", f"{branch}:{VALUES_PATH}", cwd=bare_repo)
    assert get_value(final, "inference.model.version") == 6 and get_value(final, "inference.canary.trafficPercent") == 0
    text = git("log", "-1", "--format=%B", branch, cwd=bare_repo)
    assert text.startswith("rollout fraud v7: rolled back, back to v6")
    assert "state: **rolled back**" in text and "| prediction-psi | FAIL | 0.91 | <= 0.2 |" in text


class FakeGitHub:
    """GitHub's REST API as far as the provider uses it, recording every request."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.files = {("main", VALUES_PATH): VALUES}
        self.sha = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path, method = request.url.path, request.method
        if method == "GET" and path == "/repos/acme/gitops/git/ref/heads/main":
            return httpx.Response(200, json={"object": {"sha": "base-sha"}})
        if method == "POST" and path == "/repos/acme/gitops/git/refs":
            branch = json.loads(request.content)["ref"].removeprefix("refs/heads/")
            self.files[(branch, VALUES_PATH)] = self.files[("main", VALUES_PATH)]
            return httpx.Response(201, json={})
        if path == f"/repos/acme/gitops/contents/{VALUES_PATH}":
            if method == "GET":
                content = self.files[(request.url.params["ref"], VALUES_PATH)]
                return httpx.Response(200, json={"content": base64.b64encode(content.encode()).decode(),
                                                 "sha": f"sha-{self.sha}"})
            body = json.loads(request.content)
            self.files[(body["branch"], VALUES_PATH)] = base64.b64decode(body["content"]).decode()
            self.sha += 1
            return httpx.Response(200, json={"content": {"sha": f"sha-{self.sha}"}})
        if method == "POST" and path == "/repos/acme/gitops/pulls":
            return httpx.Response(201, json={"number": 42, "html_url": "https://github.com/acme/gitops/pull/42"})
        if method == "PATCH" and path == "/repos/acme/gitops/pulls/42":
            return httpx.Response(200, json={"number": 42})
        return httpx.Response(404, json={"message": "Not Found"})


def test_github_requests(tmp_path: Path) -> None:
    fake = FakeGitHub()
    provider = GitHub(repo="acme/gitops", base="main", token="ghp-secret",  # noqa: S106 - a fake token for a fake server
                       transport=httpx.MockTransport(fake))
    actuator = GitOpsActuator(provider=provider, values_file=VALUES_PATH, version_key="inference.model.version",
                              percent_key="inference.canary.trafficPercent")
    rollout = Rollout(actuator, _row())
    rollout.step(1, 10)
    rollout.promote(_checks(0.02))

    calls = [(r.method, r.url.path) for r in fake.requests]
    contents = f"/repos/acme/gitops/contents/{VALUES_PATH}"
    assert calls == [
        ("GET", "/repos/acme/gitops/git/ref/heads/main"), ("POST", "/repos/acme/gitops/git/refs"),
        ("GET", contents), ("PUT", contents), ("POST", "/repos/acme/gitops/pulls"),
        ("GET", contents), ("PUT", contents), ("PATCH", "/repos/acme/gitops/pulls/42"),
    ]
    for request in fake.requests:
        assert request.url.host == "api.github.com" and request.url.scheme == "https"
        assert request.headers["authorization"] == "Bearer ghp-secret"
        assert request.headers["accept"] == "application/vnd.github+json"
        assert request.headers["x-github-api-version"] == "2022-11-28"
    branch = branch_name(rollout.row)
    assert json.loads(fake.requests[1].content) == {"ref": f"refs/heads/{branch}", "sha": "base-sha"}
    assert fake.requests[2].url.params["ref"] == branch
    put = json.loads(fake.requests[3].content)
    assert set(put) == {"message", "content", "sha", "branch"} and put["branch"] == branch and put["sha"] == "sha-0"
    committed = base64.b64decode(put["content"]).decode()
    assert get_value(committed, "inference.model.version") == 7
    assert get_value(committed, "inference.canary.trafficPercent") == 10
    assert put["message"].startswith("rollout fraud v7: canary 10% (step 1)\n\nCanary of **fraud**")
    pull = json.loads(fake.requests[4].content)
    assert pull["title"] == "Roll out fraud v7 (champion v6)"
    assert pull["head"] == branch and pull["base"] == "main" and "## Decisions" in pull["body"]
    assert json.loads(fake.requests[6].content)["sha"] == "sha-1"
    update = json.loads(fake.requests[7].content)
    assert set(update) == {"body"} and "state: **promoted**" in update["body"]
    assert "| prediction-psi | pass | 0.02 | <= 0.2 |" in update["body"]
    assert rollout.row.state()["pull_request_url"] == "https://github.com/acme/gitops/pull/42"


def test_gitlab_requests() -> None:
    requests: list[httpx.Request] = []
    project = "/api/v4/projects/platform%2Fgitops"

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        if request.url.raw_path.decode().startswith(f"{project}/repository/files/"):
            return httpx.Response(200, text=VALUES)
        if request.method == "POST" and request.url.raw_path.decode() == f"{project}/merge_requests":
            return httpx.Response(201, json={"iid": 7, "web_url": "https://gitlab.example/platform/gitops/-/merge_requests/7"})
        return httpx.Response(201 if request.method == "POST" else 200, json={})

    provider = GitLab(project="platform/gitops", base="main", token="glpat-secret",  # noqa: S106 - a fake token for a fake server

                      api_url="https://gitlab.example/api/v4", transport=httpx.MockTransport(handler))
    actuator = GitOpsActuator(provider=provider, values_file=VALUES_PATH, version_key="inference.model.version",
                              percent_key="inference.canary.trafficPercent")
    rollout = Rollout(actuator, _row())
    rollout.step(1, 25)
    rollout.rollback(_checks(0.91, ev.CHECK_OUTCOME_FAIL))

    encoded = "manifests%2Fgitops%2Fenvironments%2Fproduction%2Fvalues.yaml"
    calls = [(r.method, r.url.raw_path.decode().split("?")[0]) for r in requests]
    assert calls == [
        ("POST", f"{project}/repository/branches"), ("GET", f"{project}/repository/files/{encoded}/raw"),
        ("POST", f"{project}/repository/commits"), ("POST", f"{project}/merge_requests"),
        ("GET", f"{project}/repository/files/{encoded}/raw"), ("POST", f"{project}/repository/commits"),
        ("PUT", f"{project}/merge_requests/7"),
    ]
    assert all(r.headers["private-token"] == "glpat-secret" and r.url.host == "gitlab.example" for r in requests)
    branch = branch_name(rollout.row)
    assert json.loads(requests[0].content) == {"branch": branch, "ref": "main"}
    assert requests[1].url.params["ref"] == branch
    commit = json.loads(requests[2].content)
    assert commit["branch"] == branch and commit["commit_message"].startswith("rollout fraud v7: canary 25% (step 1)")
    [action] = commit["actions"]
    assert action["action"] == "update" and action["file_path"] == VALUES_PATH
    assert get_value(action["content"], "inference.canary.trafficPercent") == 25
    mr = json.loads(requests[3].content)
    assert mr["source_branch"] == branch and mr["target_branch"] == "main" and "## Decisions" in mr["description"]
    rollback = json.loads(requests[5].content)["actions"][0]["content"]
    assert get_value(rollback, "inference.model.version") == 6
    assert get_value(rollback, "inference.canary.trafficPercent") == 0
    assert "state: **rolled back**" in json.loads(requests[6].content)["description"]
