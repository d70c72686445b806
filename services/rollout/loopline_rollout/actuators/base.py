"""What every actuator does, and the evidence it is given."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from loopline.events.v1 import rollouts_pb2
from loopline_rollout.store import RolloutRow


@dataclass
class Change:
    """One decision being applied, with every decision of the rollout so far (this one last)."""

    rollout: RolloutRow
    decision: rollouts_pb2.RolloutDecision
    history: list[rollouts_pb2.RolloutDecision] = field(default_factory=list)


class Actuator(Protocol):
    name: str

    async def ready(self, rollout: RolloutRow) -> tuple[bool, str]:
        """Whether the candidate is deployed and can take traffic, and if not, why."""
        ...

    async def prepare(self, change: Change) -> dict[str, Any]:
        """Deploy the candidate with no traffic, where the actuator deploys (KServe); returns state to keep."""
        ...

    async def apply(self, change: Change, *, weight: int, shadow: bool) -> dict[str, Any]:
        """Give the candidate `weight` percent of live traffic (or shadow traffic); returns state to keep."""
        ...

    async def promote(self, change: Change) -> dict[str, Any]:
        """The candidate takes all traffic as the champion (after the registry moved the alias)."""
        ...

    async def rollback(self, change: Change) -> dict[str, Any]:
        """Weight back to 0: the champion takes all traffic again."""
        ...

    async def close(self) -> None: ...
