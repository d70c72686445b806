"""The jobs core: submit, read, list, cancel and watch jobs; schedule them onto a runner; record what the
runner reports; publish a TrainingJobChanged event at each change. It knows no transport.

Its methods are synchronous (the store is); the transports call them in worker threads. Runners call
`on_progress` and `on_outcome` from their own threads.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from loopline.training.v1 import training_pb2 as pb
from loopline_common.errors import FailedPrecondition, InvalidArgument, NotFound
from loopline_common.kafka_io import EventProducer
from loopline_common.metrics import ServiceMetrics
from loopline_training.convert import job_event, spec_to_json
from loopline_training.protocol import CANCELLED, FAILED, INTERRUPTED, LOST, SUCCEEDED, Outcome, Progress
from loopline_training.runners.base import Runner
from loopline_training.spec import normalize_spec
from loopline_training.store import (
    ACTIVE,
    PENDING,
    RUNNING,
    STATES,
    JobRecord,
    JobStore,
    decode_page_token,
    encode_page_token,
    new_record,
)

log = logging.getLogger(__name__)

MAX_PAGE_SIZE = 500
DEFAULT_PAGE_SIZE = 50


@dataclass(frozen=True)
class CoreConfig:
    owner: str
    max_concurrent_jobs: int = 1
    max_attempts: int = 2
    default_threads: int = 1
    jobs_topic: str = "loopline.training.jobs"
    progress_event_seconds: float = 1.0
    # Embedded runner: the service sees the job's files, so it checks them at submit.
    check_files: bool = False
    features_available: bool = True


class ChangeFeed:
    """Wakes asyncio watchers of a job when any thread records a change of it."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._events: dict[str, set[asyncio.Event]] = defaultdict(set)

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def notify(self, job_id: str) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        loop.call_soon_threadsafe(self._set, job_id)

    def _set(self, job_id: str) -> None:
        for event in self._events.get(job_id, ()):
            event.set()

    async def wait(self, job_id: str, seconds: float) -> None:
        """Until the job changes or `seconds` pass (watchers also re-read on the timeout, which covers
        changes made by another replica)."""
        event = asyncio.Event()
        self._events[job_id].add(event)
        try:
            await asyncio.wait_for(event.wait(), seconds)
        except TimeoutError:
            pass
        finally:
            self._events[job_id].discard(event)
            if not self._events[job_id]:
                self._events.pop(job_id, None)


class JobService:
    def __init__(
        self,
        *,
        store: JobStore,
        runner: Runner,
        config: CoreConfig,
        metrics: ServiceMetrics,
        producer: EventProducer | None = None,
        check_feature_service: Callable[[str], None] | None = None,
    ) -> None:
        self.store = store
        self.runner = runner
        self.config = config
        self.producer = producer
        self.check_feature_service = check_feature_service
        self.feed = ChangeFeed()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._scheduler: threading.Thread | None = None
        self._schedule_lock = threading.Lock()
        self._last_progress_event: dict[str, float] = {}
        self._jobs_total = metrics.counter("job_state_changes_total", "Jobs that reached a state", ["state", "family"])
        self._jobs_current = metrics.gauge("jobs", "Jobs by state, as last counted", ["state"])
        metrics.gauge("runner_active_jobs", "Jobs the runner is watching now").set_function(
            lambda: float(self.runner.active())
        )

    # ---- API -------------------------------------------------------------------------------------
    def submit(self, *, spec: pb.JobSpec, idempotency_key: str = "", request_id: str = "") -> tuple[JobRecord, bool]:
        """Validate and queue a job; with a known idempotency key, the job made the first time."""
        if len(idempotency_key) > 256:
            raise InvalidArgument("idempotency_key must be at most 256 characters",
                                  details={"idempotency_key": "too long"})
        if idempotency_key:
            existing = self.store.by_idempotency_key(idempotency_key)
            if existing is not None:
                return existing, False
        normalized = normalize_spec(
            spec, default_threads=self.config.default_threads, check_files=self.config.check_files,
            features_available=self.config.features_available,
        )
        if self.check_feature_service is not None:
            self.check_feature_service(normalized.feature_service)
        record = new_record(
            job_id=uuid.uuid4().hex, idempotency_key=idempotency_key or None, model_name=normalized.model_name,
            family=normalized.family, trigger=normalized.trigger, reason=normalized.reason,
            spec=spec_to_json(normalized), runner=self.runner.name,
        )
        record, created = self.store.insert(record)
        if created:
            log.info("job submitted", extra={"job_id": record.job_id, "model": record.model_name,
                                             "family": record.family, "trigger": record.trigger})
            self._changed(record, request_id=request_id)
            self.wake()
        return record, created

    def get(self, job_id: str) -> JobRecord:
        record = self.store.get(job_id) if job_id else None
        if record is None:
            raise NotFound(f"job {job_id[:80]!r} not found", details={"job_id": job_id[:80]})
        return record

    def list(
        self, *, states: Sequence[str] = (), model_name: str = "", trigger: str = "", page_size: int = 0,
        page_token: str = "",
    ) -> tuple[list[JobRecord], str]:
        """Jobs newest first, and the token of the next page ("" on the last)."""
        unknown = [s for s in states if s not in STATES]
        if unknown:
            raise InvalidArgument(f"unknown state {unknown[0]!r}", details={"states": unknown[0]})
        if page_size < 0:
            raise InvalidArgument("page_size must not be negative", details={"page_size": str(page_size)})
        size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        try:
            after = decode_page_token(page_token) if page_token else None
        except ValueError as exc:
            raise InvalidArgument(str(exc), details={"page_token": "invalid"}) from None
        records = self.store.find(states=states, model_name=model_name, trigger=trigger, limit=size + 1, after=after)
        if len(records) > size:
            records = records[:size]
            last = records[-1]
            return records, encode_page_token(last.created_at, last.job_id)
        return records, ""

    def cancel(self, *, job_id: str, reason: str = "", request_id: str = "") -> JobRecord:
        """Cancel a pending job at once, or ask the runner to stop a running one."""
        if len(reason) > 2000:
            raise InvalidArgument("reason must be at most 2000 characters", details={"reason": "too long"})
        why = f"cancelled: {reason}" if reason else "cancelled"
        for _ in range(3):  # the job may move between our read and our write; try again then
            record = self.get(job_id)
            if record.state == "CANCELLED" or (record.state == RUNNING and record.cancel_requested):
                return record
            if record.terminal:
                raise FailedPrecondition(f"job {job_id} already {record.state.lower()}; it cannot be cancelled",
                                         details={"state": record.state})
            if record.state == PENDING:
                updated = self.store.transition(job_id, from_states=[PENDING], state="CANCELLED",
                                                cancel_requested=True, finished_at=time.time(), stage="done", error=why)
                if updated is not None:
                    self._changed(updated, request_id=request_id)
                    return updated
                continue
            updated = self.store.transition(job_id, from_states=[RUNNING], cancel_requested=True, error=why)
            if updated is not None:
                self._changed(updated, request_id=request_id)
                log.info("cancelling job", extra={"job_id": job_id})
                self.runner.cancel(updated)
                return self.get(job_id)
        raise FailedPrecondition(f"job {job_id} kept changing state; try again")

    async def watch(self, job_id: str, *, poll_seconds: float = 1.0) -> AsyncIterator[JobRecord]:
        """The job now, then at each change, until it is finished."""
        record = await asyncio.to_thread(self.get, job_id)
        yield record
        revision = record.revision
        while not record.terminal:
            await self.feed.wait(job_id, poll_seconds)
            record = await asyncio.to_thread(self.get, job_id)
            if record.revision != revision:
                revision = record.revision
                yield record

    # ---- runner events ---------------------------------------------------------------------------
    def on_progress(self, job_id: str, progress: Progress) -> None:
        values: dict[str, Any] = {}
        if progress.stage:
            values["stage"] = progress.stage
        if progress.total:
            values["progress"], values["progress_total"] = progress.progress, progress.total
        if progress.metrics:
            values["metrics"] = progress.metrics
        for name in ("mlflow_run_id", "logged_model_id", "training_set_hash", "training_rows"):
            if getattr(progress, name):
                values[name] = getattr(progress, name)
        if not values:
            return
        record = self.store.transition(job_id, from_states=[RUNNING], **values)
        if record is not None:
            self._changed(record, progress_only=True)

    def on_outcome(self, job_id: str, outcome: Outcome) -> None:
        record = self.store.get(job_id)
        if record is None or record.state != RUNNING:
            return
        now = time.time()
        values: dict[str, Any] = {"finished_at": now, "stage": "done"}
        for name in ("mlflow_run_id", "logged_model_id", "training_set_hash", "training_rows", "registered_version"):
            if getattr(outcome, name):
                values[name] = getattr(outcome, name)
        if outcome.metrics:
            values["metrics"] = outcome.metrics
        if outcome.status == SUCCEEDED:
            values.update(state="SUCCEEDED", error="")
        elif outcome.status == FAILED:
            values.update(state="FAILED", error=outcome.error or "the job failed")
        elif outcome.status == CANCELLED or record.cancel_requested:
            values.update(state="CANCELLED", error=record.error or "cancelled")
        elif outcome.status in (INTERRUPTED, LOST) and record.attempt < self.config.max_attempts:
            values = {"state": PENDING, "stage": "queued", "finished_at": None, "started_at": None,
                      "error": f"re-queued after attempt {record.attempt}: {outcome.error or outcome.status}",
                      "progress": 0, "progress_total": 0}
        else:
            values.update(state="FAILED", error=f"{outcome.error or outcome.status} "
                                                f"(attempt {record.attempt} of {self.config.max_attempts})")
        updated = self.store.transition(job_id, from_states=[RUNNING], **values)
        if updated is not None:
            log.info("job %s", updated.state.lower(), extra={"job_id": job_id, "error": updated.error[:500],
                                                              "registered_version": updated.registered_version})
            self._changed(updated)
        self._last_progress_event.pop(job_id, None)
        self.wake()

    # ---- scheduling ------------------------------------------------------------------------------
    def wake(self) -> None:
        self._wake.set()

    def recover(self) -> None:
        """At start-up: resume watching this runner's RUNNING jobs, re-queue or fail the ones that are gone."""
        for record in self.store.find(states=[RUNNING], limit=100_000, oldest_first=True):
            if record.runner != self.runner.name:
                continue
            try:
                resumed = self.runner.resume(record)
            except Exception as exc:
                log.warning("cannot resume job %s: %s", record.job_id, exc)
                continue  # e.g. the API server is down: try at the next start
            if not resumed:
                log.warning("job %s lost its process while the service was down", record.job_id)
                self.on_outcome(record.job_id, Outcome(
                    status=LOST, error="its process ended while the service was down, without a result"))
            elif record.cancel_requested:
                self.runner.cancel(record)

    def start(self) -> None:
        self._scheduler = threading.Thread(target=self._run, name="training-scheduler", daemon=True)
        self._scheduler.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._scheduler is not None:
            self._scheduler.join(10.0)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.schedule_once()
                self._count()
            except Exception:
                log.exception("scheduling failed; trying again")
            self._wake.wait(1.0)
            self._wake.clear()

    def schedule_once(self) -> int:
        """Start pending jobs while the runner has room; the number started."""
        started = 0
        with self._schedule_lock:
            while not self._stop.is_set() and self.runner.active() < self.config.max_concurrent_jobs:
                record = self.store.claim_next(owner=self.config.owner, runner=self.runner.name)
                if record is None:
                    break
                self._changed(record)
                try:
                    ref = self.runner.start(record)
                except Exception as exc:
                    log.exception("could not start job %s", record.job_id)
                    failed = self.store.transition(record.job_id, from_states=[RUNNING], state="FAILED",
                                                   finished_at=time.time(), stage="done",
                                                   error=f"could not start the job: {type(exc).__name__}: {exc}")
                    if failed is not None:
                        self._changed(failed)
                    continue
                recorded = self.store.transition(record.job_id, from_states=[RUNNING], runner_ref=ref)
                if recorded is None:  # cancelled between the claim and the start: stop what just started
                    self.runner.cancel(dataclasses.replace(record, runner_ref=ref, cancel_requested=True))
                    continue
                started += 1
        return started

    def _count(self) -> None:
        for state in ACTIVE:
            self._jobs_current.labels(state).set(self.store.count(state))

    # ---- changes ---------------------------------------------------------------------------------
    def _changed(self, record: JobRecord, *, request_id: str = "", progress_only: bool = False) -> None:
        self.feed.notify(record.job_id)
        if not progress_only:
            self._jobs_total.labels(record.state, record.family).inc()
        if self.producer is None:
            return
        if progress_only:
            now = time.monotonic()
            last = self._last_progress_event.get(record.job_id, 0.0)
            if now - last < self.config.progress_event_seconds:
                return
            self._last_progress_event[record.job_id] = now
        self.producer.publish(self.config.jobs_topic, job_event(record, request_id=request_id),
                              key=record.model_name)
