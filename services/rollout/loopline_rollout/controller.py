"""The rollout controller: the state machine of each rollout, driven by a clock, model events and operators.

    start ─► (prepare; wait until the candidate serves) ─► [shadow × K] ─► step 1 … step N ─► promote
                                                     │ every interval: analysis
                           fail → failed_checks += 1 ─┤  (threshold reached → rollback: weight 0, rejected)
           not enough data → hold (limit reached → pause)   pass → next step

Every change of a rollout is written with its decision in one transaction (store.save); the actuator acts
first, so a recorded decision was applied. After a restart the loop picks the active rollouts up from the
store where they stood and re-applies their weight. One lock per model serialises the clock, model events
and operator calls, and the store's unique active-model key keeps a model to one active rollout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from google.protobuf.json_format import MessageToDict
from google.protobuf.timestamp_pb2 import Timestamp

from loopline.events.v1 import meta_pb2, models_pb2, rollouts_pb2
from loopline_common.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    LooplineError,
    NotFound,
    Unavailable,
)
from loopline_common.logs import current_request_id
from loopline_rollout.actuators.base import Actuator, Change
from loopline_rollout.checks import FAIL, NOT_ENOUGH, Context, Outcome, Source, SourceUnavailable, analyze
from loopline_rollout.policy import Policies, Policy
from loopline_rollout.store import RolloutRow, Store, utcnow
from loopline_rollout.telemetry import Telemetry
from loopline_rollout.upstream import Registry

log = logging.getLogger(__name__)

CONTROLLER = "controller"
D = rollouts_pb2
MAX_REASON = 2000


@dataclass(frozen=True)
class Config:
    champion_alias: str = "champion"
    challenger_alias: str = "challenger"
    tick_seconds: float = 0.2
    load_timeout_seconds: float = 300.0
    retry_seconds: float = 1.0
    # Models whose challenger events start rollouts (empty: all).
    auto_models: tuple[str, ...] = ()


def _name(decision: rollouts_pb2.Decision) -> str:
    return D.Decision.Name(decision).removeprefix("DECISION_").lower()


def _summary(outcomes: list[Outcome], result: str) -> str:
    return "; ".join(f"{o.name}: {o.message}" for o in outcomes if o.result == result)


class Controller:
    def __init__(self, *, store: Store, registry: Registry, actuator: Actuator, source: Source, policies: Policies,
                 telemetry: Telemetry, config: Config, wake_relay: Callable[[], None] = lambda: None,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.registry = registry
        self.actuator = actuator
        self.source = source
        self.policies = policies
        self.telemetry = telemetry
        self.config = config
        self.wake_relay = wake_relay
        self.clock = clock
        self._locks: dict[str, asyncio.Lock] = {}
        self._busy: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()

    @staticmethod
    async def _db(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(fn, *args, **kwargs)

    def _lock(self, model: str) -> asyncio.Lock:
        return self._locks.setdefault(model, asyncio.Lock())

    # ---- decisions -------------------------------------------------------------------------------
    def _decision(self, row: RolloutRow, decision: rollouts_pb2.Decision, *, actor: str, reason: str,
                  outcomes: list[Outcome] | None = None) -> rollouts_pb2.RolloutDecision:
        occurred = Timestamp()
        occurred.FromDatetime(datetime.now(UTC).replace(tzinfo=None))
        policy = Policy.from_json(row.policy)
        state = row.state()
        return D.RolloutDecision(
            meta=meta_pb2.EventMeta(event_id=uuid.uuid4().hex, occurred_at=occurred, producer="rollout",
                                    request_id=current_request_id() or ""),
            rollout_id=row.rollout_id, model_name=row.model_name, candidate_version=row.candidate_version,
            champion_version=row.champion_version, step=row.step, weight=row.weight, decision=decision,
            checks=[o.to_proto() for o in outcomes or []], actor=actor, reason=reason[:MAX_REASON],
            failed_checks=row.failed_checks, threshold=policy.threshold, actuator=row.actuator,
            pull_request_url=str(state.get("pull_request_url", "")),
        )

    async def _history(self, row: RolloutRow, decision: rollouts_pb2.RolloutDecision
                       ) -> list[rollouts_pb2.RolloutDecision]:
        payloads = await self._db(self.store.decisions_of, row.rollout_id)
        return [*(D.RolloutDecision.FromString(p) for p in payloads), decision]

    async def _change(self, row: RolloutRow, decision: rollouts_pb2.RolloutDecision) -> Change:
        return Change(rollout=row, decision=decision, history=await self._history(row, decision))

    async def _commit(self, row: RolloutRow, decision: rollouts_pb2.RolloutDecision | None = None,
                      outcomes: list[Outcome] | None = None) -> None:
        """Save the row (and its decision); then metrics, log, relay."""
        if decision is not None:
            decision.pull_request_url = str(row.state().get("pull_request_url", ""))
            decision.step, decision.weight, decision.failed_checks = row.step, row.weight, row.failed_checks
            row.actor, row.reason = decision.actor, decision.reason
        if outcomes is not None:
            row.last_checks = json.dumps([MessageToDict(o.to_proto(), preserving_proto_field_name=True)
                                          for o in outcomes])
        await self._db(self.store.save, row,
                       None if decision is None else (decision.meta.event_id, decision.SerializeToString()))
        self.telemetry.observe(row)
        if decision is not None:
            name = _name(decision.decision)
            self.telemetry.decided(row, name, _occurred(decision))
            log.info("rollout %s of %s v%s: %s at step %s (%s%%): %s", row.rollout_id[:8], row.model_name,
                     row.candidate_version, name, row.step, row.weight, decision.reason,
                     extra={"event": "decision", "decision": name, "rollout_id": row.rollout_id,
                            "model": row.model_name, "step": row.step, "weight": row.weight, "phase": row.phase})
            self.wake_relay()

    # ---- starting --------------------------------------------------------------------------------
    async def start_rollout(self, *, model: str, candidate: int, actor: str, reason: str,
                            trigger_event_id: str | None = None) -> RolloutRow:
        if not model or len(model) > 256:
            raise InvalidArgument("model_name is required (at most 256 characters)", details={"field": "model_name"})
        if candidate < 0:
            raise InvalidArgument("candidate_version must not be negative", details={"field": "candidate_version"})
        if len(reason) > MAX_REASON:
            raise InvalidArgument(f"reason is longer than {MAX_REASON} characters", details={"field": "reason"})
        async with self._lock(model):
            return await self._start(model=model, candidate=candidate, actor=actor, reason=reason,
                                     trigger_event_id=trigger_event_id)

    async def _start(self, *, model: str, candidate: int, actor: str, reason: str,
                     trigger_event_id: str | None) -> RolloutRow:
        active = await self._db(self.store.active_of, model)
        if active is not None:
            raise AlreadyExists(f"model '{model}' has an active rollout ({active.rollout_id}) of "
                                f"v{active.candidate_version}", details={"rollout_id": active.rollout_id})
        if not candidate:
            candidate = await self.registry.alias(model, self.config.challenger_alias)
            if not candidate:
                raise FailedPrecondition(f"model '{model}' has no {self.config.challenger_alias}: give a version")
        champion = await self.registry.alias(model, self.config.champion_alias)
        if not champion:
            raise FailedPrecondition(f"model '{model}' has no {self.config.champion_alias} to canary against; "
                                     "promote its first version directly")
        if champion == candidate:
            raise FailedPrecondition(f"v{candidate} of '{model}' is the {self.config.champion_alias} already")
        policy = self.policies.for_model(model)
        if policy.shadow_iterations and self.actuator.name != "embedded":
            raise FailedPrecondition(f"the policy of '{model}' has a shadow phase, which only the embedded "
                                     f"actuator can run (this one is {self.actuator.name})")
        now = utcnow()
        row = RolloutRow(
            rollout_id=uuid.uuid4().hex, model_name=model, candidate_version=candidate, champion_version=champion,
            phase="shadow" if policy.shadow_iterations else "progressing", policy=policy.to_json(),
            actuator=self.actuator.name, started_by=actor, started_at=now, updated_at=now,
            trigger_event_id=trigger_event_id, step_started_at=self.clock(), next_analysis_at=self.clock(),
            actor=actor, reason=reason,
        )
        steps = ", ".join(f"{w}%" for w in policy.steps)
        text = (f"{reason}; " if reason else "") + (
            f"canary of v{candidate} against v{champion}: "
            f"{f'{policy.shadow_iterations} shadow analyses, then ' if policy.shadow_iterations else ''}"
            f"steps {steps} every {policy.interval_seconds:g}s, rollback after {policy.threshold} failed analyses")
        decision = self._decision(row, D.DECISION_STARTED, actor=actor, reason=text)
        await self._db(self.store.create, row, (decision.meta.event_id, decision.SerializeToString()))
        self.telemetry.observe(row)
        self.telemetry.decided(row, "started", _occurred(decision))
        log.info("rollout %s of %s v%s started by %s", row.rollout_id[:8], model, candidate, actor,
                 extra={"event": "decision", "decision": "started", "rollout_id": row.rollout_id, "model": model})
        self.wake_relay()
        self._wake.set()
        return row

    # ---- model events ----------------------------------------------------------------------------
    async def on_model_event(self, event: models_pb2.ModelEvent) -> None:
        """Start a rollout when a new challenger appears; end one whose candidate went away. Idempotent."""
        kind = event.WhichOneof("event")
        if kind == "alias_changed":
            change = event.alias_changed
            if change.alias != self.config.challenger_alias:
                return
            if self.config.auto_models and change.model_name not in self.config.auto_models:
                return
            async with self._lock(change.model_name):
                await self._challenger_moved(change)
        elif kind == "archived":
            archived = event.archived
            async with self._lock(archived.model_name):
                active = await self._db(self.store.active_of, archived.model_name)
                if active is not None and active.candidate_version == archived.version:
                    await self._end(active, D.DECISION_ABORT, actor=CONTROLLER,
                                    reason=f"v{archived.version} was archived by {archived.actor}: {archived.reason}")

    async def _challenger_moved(self, change: models_pb2.AliasChanged) -> None:
        model, new = change.model_name, change.new_version
        # An event the registry's aliases have moved past (a redelivery, or an old one read again) is stale:
        # acting on it would start an outdated rollout, or abort a current one.
        current = await self.registry.alias(model, self.config.challenger_alias)
        if current != new:
            log.info("ignoring a stale event: %s@%s is v%s, the event says v%s", model,
                     self.config.challenger_alias, current, new)
            return
        active = await self._db(self.store.active_of, model)
        by = f"by {change.actor}" + (f": {change.reason}" if change.reason else "")
        if active is not None:
            if active.candidate_version == new:
                return  # the event that started it, again
            if new == 0 and active.candidate_version != change.previous_version:
                return
            why = (f"superseded by v{new} ({by})" if new else f"the {self.config.challenger_alias} alias was "
                   f"removed ({by})")
            await self._end(active, D.DECISION_ABORT, actor=CONTROLLER, reason=why)
        if new == 0:
            return
        try:
            await self._start(model=model, candidate=new, actor=CONTROLLER,
                              reason=f"new {self.config.challenger_alias} v{new} ({by})",
                              trigger_event_id=change.meta.event_id or None)
        except LooplineError as exc:  # no champion yet, a redelivered event: nothing to roll out
            log.info("no rollout for %s v%s: %s", model, new, exc.message)

    # ---- the clock -------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Advance every due rollout until `stop` is set."""
        try:
            await self.reconcile()
        except Exception:
            log.exception("re-applying the weights of the active rollouts failed")
        while not stop.is_set():
            try:
                now = self.clock()
                for row in await self._db(self.store.active):
                    due = row.next_analysis_at is not None and row.next_analysis_at <= now
                    if due and row.phase != "paused" and row.model_name not in self._busy:
                        self._busy.add(row.model_name)
                        task = asyncio.create_task(self._advance_task(row.model_name))
                        self._tasks.add(task)
                        task.add_done_callback(self._tasks.discard)
            except Exception:
                log.exception("the rollout loop failed a round")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.config.tick_seconds)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def reconcile(self) -> None:
        """After a (re)start: put every active rollout's weight back the way the store says it stood."""
        seen: set[str] = set()
        for latest in await self._db(self.store.list_rollouts, limit=1000):  # newest first: the gauges
            if latest.model_name not in seen:
                seen.add(latest.model_name)
                self.telemetry.observe(latest)
        for row in await self._db(self.store.active):
            self.telemetry.observe(row)
            if not row.ready:
                continue
            shadow = "shadow" in (row.phase, row.paused_from) and row.step == 0
            decision = self._decision(row, D.DECISION_RESUME, actor=CONTROLLER, reason="controller restarted")
            try:
                await self.actuator.apply(await self._change(row, decision), weight=row.weight, shadow=shadow)
                log.info("resumed rollout %s of %s at step %s (%s%%)", row.rollout_id[:8], row.model_name,
                         row.step, row.weight, extra={"event": "resumed", "rollout_id": row.rollout_id})
            except LooplineError as exc:
                log.warning("could not re-apply the weight of %s: %s", row.model_name, exc.message)

    async def _advance_task(self, model: str) -> None:
        try:
            async with self._lock(model):
                row = await self._db(self.store.active_of, model)
                if row is None or row.phase == "paused" or row.next_analysis_at is None:
                    return
                if row.next_analysis_at > self.clock():
                    return
                try:
                    await self._advance(row)
                except (Unavailable, SourceUnavailable) as exc:
                    message = exc.message if isinstance(exc, LooplineError) else str(exc)
                    log.warning("rollout %s of %s: %s; retrying", row.rollout_id[:8], model, message)
                    fresh = await self._db(self.store.get, row.rollout_id)
                    if fresh is not None and fresh.active:
                        fresh.next_analysis_at = self.clock() + self.config.retry_seconds
                        await self._commit(fresh)
        except Exception:
            log.exception("advancing the rollout of %s failed", model)
        finally:
            self._busy.discard(model)

    async def _advance(self, row: RolloutRow) -> None:
        policy = Policy.from_json(row.policy)
        now = self.clock()
        if not row.ready:
            await self._prepare(row, policy, now)
            return
        ctx = Context(model=row.model_name, candidate=row.candidate_version, champion=row.champion_version,
                      phase=row.phase, window_seconds=max(1.0, now - row.step_started_at),
                      step_started_at=row.step_started_at)
        try:
            outcomes = await analyze(self.source, policy.checks, ctx)
        except SourceUnavailable as exc:
            outcomes = [Outcome("source", NOT_ENOUGH, 0.0, "reachable", str(exc))]
        for o in outcomes:
            self.telemetry.checked(row.model_name, o.name, o.result)
        failed = [o for o in outcomes if o.result == FAIL]
        missing = [o for o in outcomes if o.result == NOT_ENOUGH]
        row.next_analysis_at = now + policy.interval_seconds
        if failed:
            row.failed_checks += 1
            row.inconclusive = 0
            if row.failed_checks >= policy.threshold:
                reason = (f"{row.failed_checks} failed analyses (threshold {policy.threshold}); last: "
                          f"{_summary(outcomes, FAIL)}")
                await self._end(row, D.DECISION_ROLLBACK, actor=CONTROLLER, reason=reason, outcomes=outcomes)
                return
            decision = self._decision(row, D.DECISION_HOLD, actor=CONTROLLER, outcomes=outcomes,
                                      reason=f"failed analysis {row.failed_checks}/{policy.threshold}: "
                                             f"{_summary(outcomes, FAIL)}")
            await self._commit(row, decision, outcomes)
            return
        if missing:
            row.inconclusive += 1
            why = _summary(outcomes, NOT_ENOUGH)
            if row.inconclusive >= policy.inconclusive_limit:
                row.paused_from, row.phase, row.next_analysis_at = row.phase, "paused", None
                decision = self._decision(row, D.DECISION_PAUSE, actor=CONTROLLER, outcomes=outcomes,
                                          reason=f"not enough data in {row.inconclusive} analyses in a row: {why}")
            else:
                decision = self._decision(row, D.DECISION_HOLD, actor=CONTROLLER, outcomes=outcomes,
                                          reason=f"not enough data ({row.inconclusive}/{policy.inconclusive_limit}):"
                                                 f" {why}")
            await self._commit(row, decision, outcomes)
            return
        row.inconclusive = 0
        if row.phase == "shadow":
            row.shadow_passed += 1
            if row.shadow_passed < policy.shadow_iterations:
                decision = self._decision(row, D.DECISION_ADVANCE, actor=CONTROLLER, outcomes=outcomes,
                                          reason=f"shadow analysis {row.shadow_passed}/{policy.shadow_iterations} "
                                                 "passed")
                await self._commit(row, decision, outcomes)
                return
            await self._step(row, policy, 1, "shadow phase passed", outcomes)
            return
        if row.step < len(policy.steps):
            await self._step(row, policy, row.step + 1, f"step {row.step} passed", outcomes)
            return
        await self._promote(row, actor=CONTROLLER, reason=f"all {len(policy.steps)} steps passed their analysis",
                            outcomes=outcomes)

    async def _prepare(self, row: RolloutRow, policy: Policy, now: float) -> None:
        state = row.state()
        if not state.get("prepared"):
            decision = self._decision(row, D.DECISION_STARTED, actor=CONTROLLER, reason="deploy the candidate")
            state.update(await self.actuator.prepare(await self._change(row, decision)))
            state["prepared"] = True
            row.actuator_state = json.dumps(state)
        try:
            ok, why = await self.actuator.ready(row)
        except LooplineError as exc:  # e.g. the serving side does not know the model (yet)
            ok, why = False, exc.message
        if not ok:
            if now - row.started_at.timestamp() > self.config.load_timeout_seconds:
                await self._end(row, D.DECISION_ABORT, actor=CONTROLLER,
                                reason=f"the candidate did not serve within {self.config.load_timeout_seconds:g}s: "
                                       f"{why}")
                return
            row.next_analysis_at = now + min(self.config.retry_seconds, policy.interval_seconds)
            await self._commit(row)
            return
        row.ready = 1
        if row.phase == "shadow":
            decision = self._decision(row, D.DECISION_ADVANCE, actor=CONTROLLER,
                                      reason="shadow phase: the challenger scores a copy of every request")
            state.update(await self.actuator.apply(await self._change(row, decision), weight=0, shadow=True))
            row.actuator_state = json.dumps(state)
            row.step_started_at = now
            row.next_analysis_at = now + policy.interval_seconds
            await self._commit(row, decision)
            return
        await self._step(row, policy, 1, "the candidate serves", None)

    async def _step(self, row: RolloutRow, policy: Policy, step: int, why: str, outcomes: list[Outcome] | None
                    ) -> None:
        weight = policy.steps[step - 1]
        row.phase, row.step, row.weight = "progressing", step, weight
        decision = self._decision(row, D.DECISION_ADVANCE, actor=CONTROLLER, outcomes=outcomes,
                                  reason=f"{why}: step {step}/{len(policy.steps)}, canary {weight}%")
        state = row.state()
        state.update(await self.actuator.apply(await self._change(row, decision), weight=weight, shadow=False))
        row.actuator_state = json.dumps(state)
        now = self.clock()
        row.step_started_at = now
        row.next_analysis_at = now + policy.interval_seconds
        await self._commit(row, decision, outcomes)

    async def _promote(self, row: RolloutRow, *, actor: str, reason: str, outcomes: list[Outcome] | None = None
                       ) -> None:
        try:
            await self.registry.promote(row.model_name, row.candidate_version,
                                        f"rollout {row.rollout_id}: {reason}")
        except (FailedPrecondition, NotFound, InvalidArgument) as exc:
            # The registry's promotion policy said no (e.g. an approval is missing): hold for an operator.
            row.paused_from, row.phase, row.next_analysis_at = row.phase, "paused", None
            decision = self._decision(row, D.DECISION_PAUSE, actor=CONTROLLER, outcomes=outcomes,
                                      reason=f"the registry refused the promotion: {exc.message}")
            await self._commit(row, decision, outcomes)
            if actor != CONTROLLER:
                raise
            return
        row.phase, row.weight = "promoted", 100
        decision = self._decision(row, D.DECISION_PROMOTE, actor=actor, reason=reason, outcomes=outcomes)
        state = row.state()
        state.update(await self.actuator.promote(await self._change(row, decision)))
        row.actuator_state = json.dumps(state)
        self._finish(row)
        await self._commit(row, decision, outcomes)

    async def _end(self, row: RolloutRow, kind: rollouts_pb2.Decision, *, actor: str, reason: str,
                   outcomes: list[Outcome] | None = None) -> None:
        """Roll back (checks failed) or abort: weight 0 first, then the record; a rollback also rejects the
        challenger in the registry (its alias goes, with the reason and numbers)."""
        row.weight = 0
        decision = self._decision(row, kind, actor=actor, reason=reason, outcomes=outcomes)
        state = row.state()
        if row.ready or state.get("prepared"):
            state.update(await self.actuator.rollback(await self._change(row, decision)))
            row.actuator_state = json.dumps(state)
        if kind == D.DECISION_ROLLBACK:
            row.phase = "rolled_back"
            try:
                if await self.registry.alias(row.model_name, self.config.challenger_alias) == row.candidate_version:
                    await self.registry.remove_alias(row.model_name, self.config.challenger_alias,
                                                     f"rejected by rollout {row.rollout_id}: {reason}")
            except LooplineError as exc:
                log.warning("could not remove the challenger alias of %s: %s", row.model_name, exc.message)
                decision.reason = (decision.reason + f" (challenger alias not removed: {exc.message})")[:MAX_REASON]
        else:
            row.phase = "aborted"
        self._finish(row)
        await self._commit(row, decision, outcomes)

    def _finish(self, row: RolloutRow) -> None:
        row.next_analysis_at = None
        row.finished_at = utcnow()

    # ---- operators -------------------------------------------------------------------------------
    async def _active(self, model: str) -> RolloutRow:
        if not model:
            raise InvalidArgument("model_name is required", details={"field": "model_name"})
        row: RolloutRow | None = await self._db(self.store.active_of, model)
        if row is None:
            raise NotFound(f"model '{model}' has no active rollout", details={"model": model})
        return row

    async def pause(self, *, model: str, actor: str, reason: str) -> RolloutRow:
        async with self._lock(model):
            row = await self._active(model)
            if row.phase == "paused":
                raise FailedPrecondition(f"the rollout of '{model}' is paused already")
            row.paused_from, row.phase, row.next_analysis_at = row.phase, "paused", None
            await self._commit(row, self._decision(row, D.DECISION_PAUSE, actor=actor, reason=reason))
            return row

    async def resume(self, *, model: str, actor: str, reason: str) -> RolloutRow:
        async with self._lock(model):
            row = await self._active(model)
            if row.phase != "paused":
                raise FailedPrecondition(f"the rollout of '{model}' is not paused ({row.phase})")
            policy = Policy.from_json(row.policy)
            row.phase, row.paused_from, row.inconclusive = row.paused_from or "progressing", "", 0
            row.next_analysis_at = self.clock() + (policy.interval_seconds if row.ready else 0.0)
            await self._commit(row, self._decision(row, D.DECISION_RESUME, actor=actor, reason=reason))
            self._wake.set()
            return row

    async def abort(self, *, model: str, actor: str, reason: str) -> RolloutRow:
        async with self._lock(model):
            row = await self._active(model)
            await self._end(row, D.DECISION_ABORT, actor=actor, reason=reason)
            return row

    async def promote(self, *, model: str, actor: str, reason: str) -> RolloutRow:
        async with self._lock(model):
            row = await self._active(model)
            await self._promote(row, actor=actor, reason=reason)
            return row

    # ---- reads -----------------------------------------------------------------------------------
    async def get(self, *, model: str, rollout_id: str) -> tuple[RolloutRow, list[rollouts_pb2.RolloutDecision]]:
        row: RolloutRow | None
        if rollout_id:
            row = await self._db(self.store.get, rollout_id)
        elif model:
            row = await self._db(self.store.active_of, model) or await self._db(self.store.latest_of, model)
        else:
            raise InvalidArgument("give model_name or rollout_id", details={"field": "model_name"})
        if row is None:
            raise NotFound(f"no rollout {'with id ' + rollout_id if rollout_id else 'of ' + repr(model)}")
        payloads = await self._db(self.store.decisions_of, row.rollout_id)
        return row, [D.RolloutDecision.FromString(p) for p in payloads]


def _occurred(decision: rollouts_pb2.RolloutDecision) -> float:
    """When the decision was made (its event's time), seconds since the epoch: what the metrics report."""
    return decision.meta.occurred_at.ToNanoseconds() / 1e9
