"""The controller's own metrics (the names are a contract with the dashboards and alerts)."""

from __future__ import annotations

from loopline_common.metrics import ServiceMetrics
from loopline_rollout.store import RolloutRow

PHASES = ("shadow", "progressing", "paused", "promoted", "rolled_back", "aborted")
DECISIONS = {"promote": "promoted", "rollback": "rolled_back", "abort": "aborted"}


class Telemetry:
    def __init__(self, metrics: ServiceMetrics) -> None:
        m = metrics
        self.weight = m.gauge("canary_weight", "Share of live traffic the canary answers, percent", ["model"])
        self.active = m.gauge("active", "1 while a rollout of the model is active", ["model"])
        self.phase = m.gauge("phase", "1 for the phase the model's latest rollout is in", ["model", "phase"])
        self.steps = m.counter("steps_total", "Weight steps taken (the canary's share grew)", ["model"])
        self.decisions = m.counter("decisions_total", "Rollouts ended, by outcome", ["model", "decision"])
        self.checks = m.counter("analysis_checks_total", "Analysis checks run, by outcome",
                                ["model", "check", "result"])
        self.last_decision = m.gauge("last_decision_timestamp_seconds", "When the model's last decision was made",
                                     ["model"])
        self.published = m.counter("decisions_published_total", "Decisions acknowledged by Kafka")
        self.unsent = m.gauge("outbox_unsent", "Decisions recorded and not yet acknowledged by Kafka")

    def observe(self, row: RolloutRow) -> None:
        model = row.model_name
        self.weight.labels(model).set(row.weight if row.active else 0)
        self.active.labels(model).set(1 if row.active else 0)
        for phase in PHASES:
            self.phase.labels(model, phase).set(1 if row.phase == phase else 0)

    def decided(self, row: RolloutRow, decision: str, at: float) -> None:
        self.last_decision.labels(row.model_name).set(at)
        if decision == "advance" and row.step > 0:
            self.steps.labels(row.model_name).inc()
        if decision in DECISIONS:
            self.decisions.labels(row.model_name, DECISIONS[decision]).inc()

    def checked(self, model: str, check: str, result: str) -> None:
        self.checks.labels(model, check, result).inc()
