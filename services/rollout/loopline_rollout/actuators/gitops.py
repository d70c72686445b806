"""The GitOps actuator: every step, and the final promotion or rollback, is a commit on the rollout's branch
of a GitOps repository that changes the Helm values (the model version and the canary traffic percent),
with a pull request whose description carries the analysis evidence. Whatever syncs the repository to the
cluster (Argo CD, Flux) applies a step once its commit reaches the synced branch.

Values written (key paths configurable; defaults `inference.model.version`, `inference.canary.trafficPercent`):

| decision | version key | percent key |
|---|---|---|
| each step | candidate | the step's weight |
| promote | candidate | 100 (KServe then rolls the new revision out) |
| rollback / abort | the champion | 0 |

The file is edited with ruamel.yaml's round-trip mode, so comments, key order and layout survive.
"""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

from loopline.events.v1 import rollouts_pb2
from loopline_common.errors import FailedPrecondition
from loopline_rollout.actuators.base import Change
from loopline_rollout.actuators.git_providers import GitProvider
from loopline_rollout.store import RolloutRow

OUTCOMES = {1: "pass", 2: "FAIL", 3: "not enough data"}


def _yaml() -> YAML:
    yaml = YAML()  # round-trip
    yaml.preserve_quotes = True
    yaml.width = 4096
    return yaml


def set_values(text: str, changes: dict[str, Any]) -> str:
    """`text` (a YAML document) with each dotted key path set to its value, comments and order kept."""
    yaml = _yaml()
    document = yaml.load(text) or CommentedMap()
    if not isinstance(document, dict):
        raise FailedPrecondition("the values file is not a YAML mapping")
    for path, value in changes.items():
        node = document
        keys = path.split(".")
        for key in keys[:-1]:
            child = node.get(key)
            if child is None:
                child = node[key] = CommentedMap()
            if not isinstance(child, dict):
                raise FailedPrecondition(f"values key {path}: {key} is not a mapping")
            node = child
        node[keys[-1]] = value
    out = io.StringIO()
    yaml.dump(document, out)
    return out.getvalue()


def get_value(text: str, path: str) -> Any:
    node: Any = _yaml().load(text) or {}
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def branch_name(rollout: RolloutRow) -> str:
    model = re.sub(r"[^A-Za-z0-9._-]+", "-", rollout.model_name).strip("-.") or "model"
    return f"loopline/rollout/{model}-v{rollout.candidate_version}-{rollout.rollout_id[:8]}"


def _when(decision: rollouts_pb2.RolloutDecision) -> str:
    moment = decision.meta.occurred_at.ToDatetime(tzinfo=UTC) if decision.meta.HasField("occurred_at") else (
        datetime.now(UTC))
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def describe(change: Change, *, final: str = "") -> tuple[str, str]:
    """The pull request's title and description: the rollout, its outcome, and every decision with the
    numbers of each check."""
    r = change.rollout
    title = f"Roll out {r.model_name} v{r.candidate_version} (champion v{r.champion_version})"
    lines = [
        f"Canary of **{r.model_name}** version **{r.candidate_version}** against champion version "
        f"**{r.champion_version}**, run by the Loopline rollout controller.",
        "",
        f"* rollout: `{r.rollout_id}`",
        f"* state: **{final or r.phase}**, canary weight {r.weight}%",
        f"* failed analyses: {r.failed_checks} (rollback at {change.decision.threshold})",
        "",
        "## Decisions",
        "",
        "| time | decision | step | weight | actor | reason |",
        "|---|---|---|---|---|---|",
    ]
    for d in change.history:
        name = rollouts_pb2.Decision.Name(d.decision).removeprefix("DECISION_").lower()
        lines.append(f"| {_when(d)} | {name} | {d.step} | {d.weight}% | {_cell(d.actor)} | {_cell(d.reason)} |")
    analysed = [d for d in change.history if d.checks]
    if analysed:
        lines += ["", "## Analysis evidence", ""]
        for d in analysed:
            name = rollouts_pb2.Decision.Name(d.decision).removeprefix("DECISION_").lower()
            lines += [f"### {_when(d)}: {name} at step {d.step} ({d.weight}%)", "",
                      "| check | outcome | value | condition | detail |", "|---|---|---|---|---|"]
            for c in d.checks:
                lines.append(f"| {_cell(c.name)} | {OUTCOMES.get(c.outcome, '?')} | {c.value:.4g} | "
                             f"{_cell(c.condition)} | {_cell(c.message)} |")
            lines.append("")
    return title, "\n".join(lines).rstrip() + "\n"


class GitOpsActuator:
    name = "gitops"

    def __init__(self, *, provider: GitProvider, values_file: str, version_key: str, percent_key: str) -> None:
        self.provider = provider
        self.values_file = values_file
        self.version_key = version_key
        self.percent_key = percent_key

    def _path(self, rollout: RolloutRow) -> str:
        return self.values_file.replace("{model}", rollout.model_name)

    async def ready(self, rollout: RolloutRow) -> tuple[bool, str]:
        return True, ""  # the canary is deployed when its commit is synced; checks see no data until then

    async def prepare(self, change: Change) -> dict[str, Any]:
        return {}

    async def _commit(self, change: Change, values: dict[str, Any], headline: str, *, final: str = ""
                      ) -> dict[str, Any]:
        rollout = change.rollout
        state = rollout.state()
        branch = state.get("branch") or branch_name(rollout)
        if not state.get("branch"):
            await self.provider.start_branch(branch)
        path = self._path(rollout)
        before = await self.provider.read(branch, path)
        after = set_values(before, values)
        title, body = describe(change, final=final)
        if after != before:  # a re-applied step (after a restart) changes nothing and commits nothing
            await self.provider.commit(branch, path, after, f"{headline}\n\n{body}")
        pr = await self.provider.pull_request(branch, title, body, state.get("pull_request", {}))
        return {"branch": branch, "pull_request": pr, "pull_request_url": pr.get("url", "")}

    async def apply(self, change: Change, *, weight: int, shadow: bool) -> dict[str, Any]:
        if shadow:
            raise FailedPrecondition("a GitOps rollout has no shadow phase; use the embedded actuator for one")
        r = change.rollout
        return await self._commit(
            change, {self.version_key: r.candidate_version, self.percent_key: weight},
            f"rollout {r.model_name} v{r.candidate_version}: canary {weight}% (step {change.decision.step})",
        )

    async def promote(self, change: Change) -> dict[str, Any]:
        r = change.rollout
        return await self._commit(change, {self.version_key: r.candidate_version, self.percent_key: 100},
                                  f"rollout {r.model_name} v{r.candidate_version}: promote", final="promoted")

    async def rollback(self, change: Change) -> dict[str, Any]:
        r = change.rollout
        final = "aborted" if change.decision.decision == rollouts_pb2.DECISION_ABORT else "rolled back"
        return await self._commit(
            change, {self.version_key: r.champion_version, self.percent_key: 0},
            f"rollout {r.model_name} v{r.candidate_version}: {final}, back to v{r.champion_version}", final=final,
        )

    async def close(self) -> None:
        await self.provider.close()
