"""Monitoring's core: the prediction log in, windows, drift decisions, alerts, canary and skew out.

Transport-neutral: the Kafka handler calls `ingest`, a ticker thread calls `tick`, the gRPC and HTTP layers
call the read methods. One lock guards the in-memory state; the state store holds the same state durably
(see store.py), written in one transaction per batch before the batch's offset is committed.

Windows are kept per model / version / track. A window closes when it holds `window_records` records, or
when it spans `window_seconds` of event time and holds at least `min_window_records` (a record beyond the
span closes it and starts the next; with no such record, the ticker closes it `window_lateness_seconds`
after its span ended). Records answered with an error status count in the canary figures, not in drift.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, cast

import numpy as np
import numpy.typing as npt
from google.protobuf import json_format, timestamp_pb2
from google.protobuf.message import DecodeError, Message

from loopline.events.v1 import drift_pb2, meta_pb2, predictions_pb2
from loopline.monitoring.v1 import monitoring_pb2
from loopline.profiles.v1 import profile_pb2
from loopline_common.errors import ErrorCode, LooplineError, NotFound
from loopline_common.kafka_io import PoisonMessage
from loopline_common.logs import current_request_id
from loopline_monitoring import canary, drift, skew, wire
from loopline_monitoring.frames import CanaryFrame, Frame
from loopline_monitoring.policy import DriftPolicy, Policies
from loopline_monitoring.profiles import PreparedProfile
from loopline_monitoring.store import Changes, Store
from loopline_monitoring.telemetry import MonitoringMetrics

log = logging.getLogger(__name__)

PRODUCER = "monitoring"
OK_STATUS = frozenset({"ok", "OK", ""})


class ProfileSource(Protocol):
    """Where reference profiles come from (the registry, or a folder)."""

    def fetch(self, *, model_name: str, version: int) -> bytes:
        """The serialized ReferenceProfile; raises NotFound when the version has none."""
        ...


class OfflineSource(Protocol):
    """Point-in-time feature values from the offline store (the features service)."""

    def lookup(
        self, *, model_name: str, version: int, samples: list[dict[str, Any]]
    ) -> list[dict[str, skew.Value] | None]:
        """For each sample (entity_ids, time, served), the offline values by feature name (None: no row)."""
        ...


def parse_profile(data: bytes) -> profile_pb2.ReferenceProfile:
    """A ReferenceProfile from its serialized form (or its JSON form)."""
    if data[:1] == b"{":
        return json_format.Parse(data.decode(), profile_pb2.ReferenceProfile(), ignore_unknown_fields=True)
    return profile_pb2.ReferenceProfile.FromString(data)


class ProfileCache:
    """Prepared profiles per (model, version): memory, then the state store, then the source.

    NotFound is remembered for `retry_seconds` (the version has no profile: its records are counted as
    no_profile and skip drift); any other source error propagates, so the consumer retries the batch.
    """

    def __init__(
        self, *, source: ProfileSource | None, store: Store, retry_seconds: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        self.store = store
        self.retry_seconds = retry_seconds
        self.clock = clock
        self._prepared: dict[tuple[str, int], PreparedProfile] = {}
        self._missing: dict[tuple[str, int], float] = {}
        self._lock = threading.Lock()

    def cached(self, model_name: str, version: int) -> PreparedProfile | None:
        with self._lock:
            return self._prepared.get((model_name, version))

    def put(self, model_name: str, version: int, profile: profile_pb2.ReferenceProfile) -> PreparedProfile:
        """Use `profile` for this version (and keep it in the state store)."""
        self.store.save_profile(model_name, version, profile.SerializeToString())
        prepared = PreparedProfile(profile)
        with self._lock:
            self._prepared[(model_name, version)] = prepared
            self._missing.pop((model_name, version), None)
        return prepared

    def get(self, model_name: str, version: int) -> PreparedProfile | None:
        key = (model_name, version)
        with self._lock:
            if key in self._prepared:
                return self._prepared[key]
            if key in self._missing and self.clock() < self._missing[key]:
                return None
        data = self.store.profile(model_name, version)
        if data is None:
            if self.source is None:
                self._remember_missing(key)
                return None
            try:
                data = self.source.fetch(model_name=model_name, version=version)
            except NotFound as exc:
                log.warning("no reference profile for %s v%d: %s", model_name, version, exc.message)
                self._remember_missing(key)
                return None
            try:
                parse_profile(data)
            except (DecodeError, json_format.ParseError, UnicodeDecodeError) as exc:
                log.error("the reference profile of %s v%d does not parse: %s", model_name, version, exc)
                self._remember_missing(key)
                return None
            self.store.save_profile(model_name, version, data)
        prepared = PreparedProfile(parse_profile(data))
        with self._lock:
            self._prepared[key] = prepared
        return prepared

    def _remember_missing(self, key: tuple[str, int]) -> None:
        with self._lock:
            self._missing[key] = self.clock() + self.retry_seconds


class WindowKey(NamedTuple):
    model: str
    version: int
    track: int

    def encode(self) -> str:
        return json.dumps([self.model, self.version, self.track])

    @classmethod
    def decode(cls, text: str) -> WindowKey:
        model, version, track = json.loads(text)
        return cls(str(model), int(version), int(track))


@dataclass
class KeyState:
    """One model version and track: its open window, its alert, its recent results."""

    key: WindowKey
    seq: int = 1
    start: float | None = None  # event time of the open window's first record
    first: float = math.inf
    last: float = -math.inf
    count: int = 0
    frames: list[Frame] = field(default_factory=list)
    closed: int = 0
    alert: int = monitoring_pb2.ALERT_STATE_OK
    calm: int = 0
    last_event_at: float | None = None  # event time of the window that emitted the last event
    arrived: float = -math.inf  # wall clock of the last record added (not stored: a restart counts as idle)
    history: deque[monitoring_pb2.DriftWindowResult] = field(default_factory=lambda: deque(maxlen=500))

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq, "start": self.start, "first": _json_float(self.first), "last": _json_float(self.last),
            "count": self.count, "closed": self.closed, "alert": self.alert, "calm": self.calm,
            "last_event_at": self.last_event_at,
        }

    @classmethod
    def from_json(cls, key: WindowKey, data: dict[str, Any]) -> KeyState:
        return cls(
            key=key, seq=data["seq"], start=data["start"], first=_from_json_float(data["first"]),
            last=_from_json_float(data["last"]), count=data["count"], closed=data["closed"], alert=data["alert"],
            calm=data["calm"], last_event_at=data["last_event_at"],
        )


def _json_float(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _from_json_float(value: float | None) -> float:
    return math.inf if value is None else value


@dataclass
class _Group:
    """Records of one (model, version, track) in a batch, before decoding."""

    profile: PreparedProfile | None
    request_ids: list[str] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    ok: list[bool] = field(default_factory=list)
    latency: list[int] = field(default_factory=list)
    prediction: list[float] = field(default_factory=list)
    numeric_parts: list[bytes | None] = field(default_factory=list)
    categorical_parts: list[bytes | None] = field(default_factory=list)
    samples: list[Any] = field(default_factory=list)


@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    invalid: int = 0
    no_profile: int = 0
    windows_closed: int = 0


def _timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(round(seconds * 1e9) if math.isfinite(seconds) else 0)
    return ts


class Publisher(Protocol):
    def publish(self, topic: str, message: Message, *, key: str | bytes | None) -> bool: ...

    def flush(self, timeout: float = 10.0) -> bool: ...


@dataclass(frozen=True)
class CoreConfig:
    drift_topic: str = "loopline.drift"
    canary_window_seconds: float = 900.0
    canary_retention_seconds: float = 3600.0
    canary_min_records: int = 100
    canary_max_records: int = 500_000  # per model; also bounds the de-duplication memory
    canary_gauge_seconds: float = 10.0
    decision_threshold: float = 0.5
    skew_sample_rate: float = 0.01
    skew_batch: int = 200
    skew_pending_limit: int = 20_000  # samples waiting for the features service; the oldest go first
    history: int = 500


class MonitoringCore:
    def __init__(
        self,
        *,
        store: Store,
        profiles: ProfileCache,
        policies: Policies,
        metrics: MonitoringMetrics,
        publisher: Publisher | None,
        config: CoreConfig = CoreConfig(),
        offline: OfflineSource | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.profiles = profiles
        self.policies = policies
        self.metrics = metrics
        self.publisher = publisher
        self.config = config
        self.offline = offline
        self.clock = clock
        self._lock = threading.RLock()
        self._keys: dict[WindowKey, KeyState] = {}
        self._canary: dict[str, list[CanaryFrame]] = {}
        self._newest: dict[str, float] = {}
        self._seen: set[str] = set()
        self._published: list[str] = []
        self._canary_dirty: set[str] = set()
        self._canary_refreshed = -math.inf
        self._skew: dict[tuple[str, int], dict[str, skew.FeatureCounters]] = {}
        self._skew_updated: dict[tuple[str, int], float] = {}
        self.load()

    # ---- state ----------------------------------------------------------------------------------------
    def load(self) -> None:
        """(Re)build the in-memory state from the state store."""
        with self._lock:
            self._keys.clear()
            for text, data in self.store.key_states().items():
                key = WindowKey.decode(text)
                state = KeyState.from_json(key, data)
                state.history = deque(
                    map(monitoring_pb2.DriftWindowResult.FromString, self.store.results(text, self.config.history)),
                    maxlen=self.config.history,
                )
                state.frames = [Frame.from_bytes(b) for b in self.store.window_chunks(text, state.seq)]
                self._keys[key] = state
            self._canary.clear()
            self._newest.clear()
            self._seen.clear()
            for model, chunk in self.store.canary_chunks():
                frame = CanaryFrame.from_bytes(chunk)
                self._canary.setdefault(model, []).append(frame)
                self._newest[model] = max(self._newest.get(model, -math.inf), float(frame.time.max()))
                self._seen.update(_seen_keys(model, frame))
            self._skew = {
                key: {name: skew.FeatureCounters.from_json(c) for name, c in data["features"].items()}
                for key, data in self.store.skew_stats().items()
            }
            self._skew_updated = {key: data.get("updated_at", 0.0) for key, data in self.store.skew_stats().items()}
            for state in self._keys.values():
                if state.history:
                    self.metrics.window_closed(
                        state.history[-1], alert=state.alert == monitoring_pb2.ALERT_STATE_DRIFTING
                    )

    # ---- the prediction log ---------------------------------------------------------------------------
    def ingest(self, batch: Any, *, fallback_time: float) -> IngestResult:
        """Take one PredictionLogBatch (the wire projection); idempotent by request id.

        Raises PoisonMessage when the batch holds records but not one usable; lets a profile source's
        UNAVAILABLE propagate (the consumer retries the batch later).
        """
        result = IngestResult()
        groups: dict[tuple[str, int, int], _Group] = {}
        batch_seen: set[str] = set()
        seen = self._seen
        rate = self.config.skew_sample_rate if self.offline is not None else 0.0
        get_profile = self.profiles.get
        records = batch.records
        for index, r in enumerate(records):
            model, rid, version = r.model_name, r.request_id, r.model_version
            if not rid and batch.batch_id and r.status not in OK_STATUS:
                rid = f"{batch.batch_id}#{index}"  # a request that failed before it had an id: still an error
            if not model or not rid or version <= 0:
                result.invalid += 1
                continue
            track = r.track
            seen_key = f"{model}\x1f{track}\x1f{rid}"
            if seen_key in seen or seen_key in batch_seen:
                result.duplicates += 1
                self.metrics.records.labels(model, "duplicate").inc()
                continue
            batch_seen.add(seen_key)
            group = groups.get((model, version, track))
            if group is None:
                group = groups[(model, version, track)] = _Group(profile=get_profile(model, version))
            ts = r.time
            seconds, nanos = ts.seconds, ts.nanos
            ok = r.status in OK_STATUS
            group.request_ids.append(rid)
            group.times.append(seconds + nanos * 1e-9 if (seconds or nanos) else fallback_time)
            group.ok.append(ok)
            group.latency.append(r.latency_us)
            profile = group.profile
            if profile is not None:
                prediction = r.outputs.get(profile.prediction_output)
                group.prediction.append(math.nan if prediction is None else prediction)
                features = r.features
                group.numeric_parts.extend(map(features.get, profile.numeric_names))
                if profile.categorical_names:
                    group.categorical_parts.extend(map(features.get, profile.categorical_names))
                if ok and rate > 0 and skew.sampled(rid, rate) and r.entity_ids:
                    group.samples.append(r)
            else:
                outputs = r.outputs
                group.prediction.append(next(iter(outputs.values())) if len(outputs) == 1 else math.nan)
        if records and result.invalid == len(records):
            raise PoisonMessage(f"none of the {len(records)} records has a model name, a version and a request id")
        if not groups:
            return result

        frames: dict[WindowKey, Frame] = {}
        canary_parts: dict[str, list[CanaryFrame]] = {}
        samples: list[tuple[str, int, str]] = []
        for (model, version, track), g in groups.items():
            key = WindowKey(model, version, track)
            times = np.asarray(g.times, dtype=np.float64)
            ok_mask = np.asarray(g.ok, dtype=bool)
            prediction = np.asarray(g.prediction, dtype=np.float64)
            canary_parts.setdefault(key.model, []).append(
                CanaryFrame(
                    request_ids=g.request_ids, time=times, track=np.full(len(times), key.track, dtype=np.int64),
                    version=np.full(len(times), key.version, dtype=np.int64), prediction=prediction,
                    latency_us=np.asarray(g.latency, dtype=np.int64), ok=ok_mask,
                )
            )
            n = len(g.request_ids)
            result.accepted += n
            self.metrics.records.labels(key.model, "accepted").inc(n)
            if g.profile is None:
                result.no_profile += n
                self.metrics.records.labels(key.model, "no_profile").inc(n)
                continue
            frame = _decode_frame(g, times, prediction)
            keep = np.flatnonzero(ok_mask)
            frames[key] = frame if keep.shape[0] == n else frame.take(keep)
            samples += [(key.model, key.version, json.dumps(_sample(r, g.profile, fallback_time))) for r in g.samples]

        with self._lock:
            changes = Changes(skew_samples=samples)
            try:
                for model, parts in canary_parts.items():
                    self._add_canary(model, CanaryFrame.concat(parts), changes)
                for key, frame in frames.items():
                    result.windows_closed += self._append(key, frame, changes)
                self.store.apply(changes)
            except BaseException:
                log.exception("could not record a batch; reloading the state store")
                self.load()
                raise
            self._seen |= batch_seen
        self._publish(changes)
        return result

    def _add_canary(self, model: str, frame: CanaryFrame, changes: Changes) -> None:
        newest = max(self._newest.get(model, -math.inf), float(frame.time.max()))
        self._newest[model] = newest
        chunks = self._canary.setdefault(model, [])
        chunks.append(frame)
        changes.canary_chunks.append((model, float(frame.time.max()), frame.to_bytes()))
        cutoff = newest - self.config.canary_retention_seconds
        total = sum(len(c) for c in chunks)
        if total > self.config.canary_max_records:  # bounded memory at high rates: the oldest go first
            for chunk in chunks:
                total -= len(chunk)
                if total <= self.config.canary_max_records:
                    cutoff = max(cutoff, float(chunk.time.max()) + 1e-6)
                    break
        if min(float(c.time.max()) for c in chunks) < cutoff:
            kept = []
            for chunk in chunks:
                if float(chunk.time.max()) < cutoff:
                    self._seen.difference_update(_seen_keys(model, chunk))
                else:
                    kept.append(chunk)
            self._canary[model] = kept
            changes.canary_prune.append((model, cutoff))
        self._canary_dirty.add(model)

    def _state(self, key: WindowKey) -> KeyState:
        state = self._keys.get(key)
        if state is None:
            state = self._keys[key] = KeyState(key=key, history=deque(maxlen=self.config.history))
        return state

    def _append(self, key: WindowKey, frame: Frame, changes: Changes) -> int:
        """Add records to the key's open window, closing windows at their count or time boundaries."""
        state = self._state(key)
        state.arrived = self.clock()
        policy = self.policies.for_model(key.model)
        encoded = key.encode()
        closed = 0
        i, n = 0, len(frame)
        while i < n:
            if state.count == 0 or state.start is None:
                state.start = float(frame.time[i])
            take = min(policy.window_records - state.count, n - i)
            time_close = False
            if policy.window_seconds > 0:
                over = np.flatnonzero(frame.time[i : i + take] >= state.start + policy.window_seconds)
                over = over[over >= max(0, policy.min_window_records - state.count)]
                if over.shape[0]:
                    take, time_close = int(over[0]), True
            if take:
                part = frame.take(slice(i, i + take))
                state.frames.append(part)
                state.count += take
                state.first = min(state.first, float(part.time.min()))
                state.last = max(state.last, float(part.time.max()))
                changes.window_chunks.append((encoded, state.seq, part.to_bytes()))
                i += take
            if time_close or state.count >= policy.window_records:
                self._close(state, policy, changes)
                closed += 1
        changes.key_states[encoded] = state.to_json()
        self.metrics.window_records.labels(key.model, str(key.version), _track(key.track)).set(state.count)
        return closed

    def _close(self, state: KeyState, policy: DriftPolicy, changes: Changes) -> monitoring_pb2.DriftWindowResult:
        key = state.key
        frame = Frame.concat(state.frames) if state.frames else None
        result = monitoring_pb2.DriftWindowResult(
            model_name=key.model, model_version=key.version, track=_track_enum(key.track), sequence=state.seq,
            window=drift_pb2.DriftWindow(start=_timestamp(state.first), end=_timestamp(state.last), count=state.count),
        )
        profile = self.profiles.cached(key.model, key.version)
        evaluation: drift.Evaluation | None = None
        if profile is None or frame is None:
            result.skipped_reason = "no_profile"
        else:
            started = time.perf_counter()
            evaluation = drift.evaluate(profile, policy, frame)
            self.metrics.evaluation_seconds.observe(time.perf_counter() - started)
            result.MergeFrom(evaluation.result)
        event = self._alert(state, policy, result, evaluation)
        encoded = key.encode()
        if event is not None:
            changes.outbox.append((event.meta.event_id, self.config.drift_topic, key.model, event.SerializeToString()))
        changes.results.append((encoded, state.seq, result.SerializeToString()))
        changes.closed_windows.append((encoded, state.seq))
        state.history.append(result)
        state.closed += 1
        state.seq += 1
        state.count = 0
        state.start = None
        state.first, state.last = math.inf, -math.inf
        state.frames = []
        changes.key_states[encoded] = state.to_json()
        self.metrics.window_closed(result, alert=state.alert == monitoring_pb2.ALERT_STATE_DRIFTING)
        return result

    def _alert(
        self, state: KeyState, policy: DriftPolicy, result: monitoring_pb2.DriftWindowResult,
        evaluation: drift.Evaluation | None,
    ) -> drift_pb2.DriftDetected | None:
        """Hysteresis and cooldown: an event when the alert is raised, none while it stays raised.

        Raised by a drifted window; cleared after `clear_windows` consecutive calm windows (drifted share
        below drift_share * clear_ratio and the prediction not drifted). A raise within `cooldown_seconds`
        (event time) of the last event is not emitted again.
        """
        if evaluation is None:
            return None
        end = state.last
        if evaluation.dataset_drift:
            state.calm = 0
            if state.alert == monitoring_pb2.ALERT_STATE_DRIFTING:
                return None
            state.alert = monitoring_pb2.ALERT_STATE_DRIFTING
            if state.last_event_at is not None and end - state.last_event_at < policy.cooldown_seconds:
                self.metrics.suppressed.labels(*_labels(state.key)).inc()
                return None
            state.last_event_at = end
            self.metrics.events.labels(*_labels(state.key)).inc()
            return self._event(result)
        calm = result.drifted_share < policy.drift_share * policy.clear_ratio and not evaluation.prediction_drifted
        if state.alert == monitoring_pb2.ALERT_STATE_DRIFTING:
            state.calm = state.calm + 1 if calm else 0
            if state.calm >= policy.clear_windows:
                state.alert = monitoring_pb2.ALERT_STATE_OK
                state.calm = 0
        return None

    def _event(self, result: monitoring_pb2.DriftWindowResult) -> drift_pb2.DriftDetected:
        identity = f"{result.model_name}/{result.model_version}/{result.track}/{result.sequence}"
        event = drift_pb2.DriftDetected(
            meta=meta_pb2.EventMeta(
                event_id=hashlib.sha256(identity.encode()).hexdigest()[:32], producer=PRODUCER,
                request_id=current_request_id(),
            ),
            model_name=result.model_name, model_version=result.model_version, track=result.track,
            window=result.window, features=[s.drift for s in result.scores if s.deciding],
            drifted_share=result.drifted_share, drifted_share_threshold=result.drifted_share_threshold,
        )
        event.meta.occurred_at.FromNanoseconds(int(self.clock() * 1e9))
        return event

    def _publish(self, changes: Changes) -> None:
        if self.publisher is None or not changes.outbox:
            return
        for event_id, topic, key, data in changes.outbox:
            self.publisher.publish(topic, drift_pb2.DriftDetected.FromString(data), key=key)
            self._published.append(event_id)

    # ---- the ticker -----------------------------------------------------------------------------------
    def tick(self, now: float | None = None) -> None:
        """Close time windows whose span (plus lateness) passed, confirm published events, refresh canary
        gauges, run the skew worker. Called every second or so by a thread."""
        now = self.clock() if now is None else now
        changes = Changes()
        with self._lock:
            for state in self._keys.values():
                policy = self.policies.for_model(state.key.model)
                if (
                    policy.window_seconds > 0 and state.start is not None
                    and state.count >= policy.min_window_records
                    and now >= state.start + policy.window_seconds + policy.window_lateness_seconds
                    # only when the key's records stopped coming: a backlog being read closes its windows
                    # by event time, as it would have live
                    and now - state.arrived >= policy.window_lateness_seconds
                ):
                    self._close(state, policy, changes)
            if changes:
                try:
                    self.store.apply(changes)
                except BaseException:
                    self.load()
                    raise
            dirty, self._canary_dirty = self._canary_dirty, set()
        self._publish(changes)
        self._confirm_published()
        if now - self._canary_refreshed >= self.config.canary_gauge_seconds:
            self._canary_refreshed = now
            for model in dirty:
                self.metrics.canary(self.canary_analysis(model_name=model, window_seconds=0))
        else:
            with self._lock:
                self._canary_dirty |= dirty

    def _confirm_published(self) -> None:
        if self.publisher is None:
            return
        if not self._published:
            pending = self.store.outbox()  # left over from before a restart
            for event_id, topic, key, data in pending:
                self.publisher.publish(topic, drift_pb2.DriftDetected.FromString(data), key=key)
                self._published.append(event_id)
        if self._published and self.publisher.flush(timeout=5.0):
            done, self._published = self._published, []
            self.store.delete_outbox(done)

    def run_skew(self) -> int:
        """Compare a batch of sampled predictions with the offline store; the number compared."""
        if self.offline is None:
            return 0
        self.store.prune_skew_samples(keep=self.config.skew_pending_limit)
        rows = self.store.skew_samples(self.config.skew_batch)
        if not rows:
            return 0
        by_version: dict[tuple[str, int], list[tuple[int, dict[str, Any]]]] = {}
        for row_id, model, version, data in rows:
            by_version.setdefault((model, version), []).append((row_id, json.loads(data)))
        done: list[int] = []
        updated: dict[tuple[str, int], dict[str, Any]] = {}
        for (model, version), items in by_version.items():
            samples = [s for _, s in items]
            try:
                offline = self.offline.lookup(model_name=model, version=version, samples=samples)
            except LooplineError as exc:
                self.metrics.skew_errors.labels(exc.code.value).inc()
                log.warning("skew look-up for %s v%d failed: %s", model, version, exc.message)
                if exc.code in (ErrorCode.FAILED_PRECONDITION, ErrorCode.NOT_FOUND, ErrorCode.INVALID_ARGUMENT):
                    done += [i for i, _ in items]  # asking again will not help: drop these samples
                continue
            with self._lock:
                counters = self._skew.setdefault((model, version), {})
                skew.fold(counters, [s["served"] for s in samples], offline)
                self._skew_updated[(model, version)] = self.clock()
                updated[(model, version)] = {
                    "features": {n: c.to_json() for n, c in counters.items()},
                    "updated_at": self._skew_updated[(model, version)],
                }
                self.metrics.skew(model, version, skew.report(counters))
            done += [i for i, _ in items]
        self.store.save_skew(done=done, stats=updated)
        return len(done)

    # ---- reads for the API ----------------------------------------------------------------------------
    def canary_analysis(self, *, model_name: str, window_seconds: float) -> monitoring_pb2.GetCanaryAnalysisResponse:
        """Champion vs challenger over the last `window_seconds` (0: the default) of the model's log."""
        window = window_seconds if window_seconds > 0 else self.config.canary_window_seconds
        with self._lock:
            chunks = self._canary.get(model_name)
            if not chunks:
                raise NotFound(f"no predictions of model {model_name!r} in the last "
                               f"{self.config.canary_retention_seconds:.0f} s of the log")
            newest = self._newest[model_name]
            frame = CanaryFrame.concat([c for c in chunks if float(c.time.max()) >= newest - window])
        return canary.analyze(
            frame, model_name=model_name, window_seconds=window, min_records=self.config.canary_min_records,
            decision_threshold=self.config.decision_threshold,
        )

    def _model_states(self, model_name: str) -> list[KeyState]:
        states = sorted((s for k, s in self._keys.items() if k.model == model_name), key=lambda s: s.key)
        if not states:
            raise NotFound(f"no drift windows of model {model_name!r}")
        return states

    def drift_status(self, *, model_name: str) -> monitoring_pb2.GetDriftStatusResponse:
        with self._lock:
            response = monitoring_pb2.GetDriftStatusResponse(model_name=model_name)
            for state in self._model_states(model_name):
                status = monitoring_pb2.DriftStatus(
                    model_version=state.key.version, track=_track_enum(state.key.track),
                    state=cast("monitoring_pb2.AlertState", state.alert),
                    open_window_count=state.count, windows_closed=state.closed,
                )
                if state.history:
                    status.latest.CopyFrom(state.history[-1])
                if state.last_event_at is not None:
                    status.last_event_at.CopyFrom(_timestamp(state.last_event_at))
                response.statuses.append(status)
        return response

    def drift_windows(
        self, *, model_name: str, version: int, track: int, page_size: int
    ) -> monitoring_pb2.ListDriftWindowsResponse:
        limit = 50 if page_size <= 0 else min(page_size, 1000)
        with self._lock:
            state = self._keys.get(WindowKey(model_name, version, track))
            if state is None:
                raise NotFound(f"no drift windows of {model_name} v{version} track {_track(track)}")
            newest_first = list(reversed(state.history))[:limit]
        return monitoring_pb2.ListDriftWindowsResponse(windows=newest_first)

    def history(self, model_name: str) -> dict[WindowKey, list[monitoring_pb2.DriftWindowResult]]:
        with self._lock:
            return {s.key: list(s.history) for s in self._model_states(model_name)}

    def skew_report(self, *, model_name: str, version: int) -> monitoring_pb2.GetSkewReportResponse:
        response = monitoring_pb2.GetSkewReportResponse(model_name=model_name, enabled=self.offline is not None)
        with self._lock:
            for (model, v), counters in sorted(self._skew.items()):
                if model != model_name or (version and v != version):
                    continue
                features = skew.report(counters)
                entry = monitoring_pb2.VersionSkew(
                    model_version=v, samples=max((f.compared + f.offline_missing for f in features), default=0),
                    features=features,
                )
                entry.updated_at.CopyFrom(_timestamp(self._skew_updated.get((model, v), 0.0)))
                response.versions.append(entry)
        return response

    def models(self) -> list[str]:
        with self._lock:
            return sorted({k.model for k in self._keys} | set(self._canary))


def _track_enum(track: int) -> predictions_pb2.Track:
    return cast("predictions_pb2.Track", track)


def _labels(key: WindowKey) -> list[str]:
    return [key.model, str(key.version), _track(key.track)]


def _track(track: int) -> str:
    return canary.TRACK_NAMES.get(track, str(track))


def _seen_keys(model: str, frame: CanaryFrame) -> Iterable[str]:
    return (f"{model}\x1f{t}\x1f{rid}" for t, rid in zip(frame.track.tolist(), frame.request_ids, strict=True))


def _decode_frame(g: _Group, times: npt.NDArray[np.float64], prediction: npt.NDArray[np.float64]) -> Frame:
    profile = g.profile
    if profile is None:
        raise ValueError("records without a profile have no drift frame")
    n = len(g.request_ids)
    numbers, _ = wire.decode_numbers(g.numeric_parts)
    numeric = numbers.reshape(n, len(profile.numeric))
    categorical = np.full((n, len(profile.categorical)), -1, dtype=np.int64)
    for j, feature in enumerate(profile.categorical):
        other = len(feature.categories) - 1
        code_of, by_bytes = feature.code_of, feature.code_of_bytes
        column = g.categorical_parts[j :: len(profile.categorical)]
        for i, part in enumerate(column):
            if not part:
                continue
            code = by_bytes.get(part)
            if code is None:
                label = wire.decode_label(part, feature.vocabulary)
                code = -1 if label is None else code_of.get(label, other)
                if len(by_bytes) < 10_000:  # serialized values repeat: remember each one's code
                    by_bytes[part] = code
            categorical[i, j] = code
    return Frame(request_ids=g.request_ids, time=times, numeric=numeric, categorical=categorical, prediction=prediction)


def _sample(record: Any, profile: PreparedProfile, fallback_time: float) -> dict[str, Any]:
    """What the skew worker needs of a sampled prediction: entity, time and the served values."""
    features = record.features
    served: dict[str, skew.Value] = {}
    numbers, _ = wire.decode_numbers(list(map(features.get, profile.numeric_names)))
    for name, number in zip(profile.numeric_names, numbers.tolist(), strict=True):
        served[name] = None if math.isnan(number) else number
    for feature in profile.categorical:
        served[feature.name] = wire.decode_label(features.get(feature.name), feature.vocabulary)
    ts = record.time
    return {
        "request_id": record.request_id,
        "time": ts.seconds + ts.nanos * 1e-9 if (ts.seconds or ts.nanos) else fallback_time,
        "entity_ids": dict(record.entity_ids),
        "served": served,
    }
