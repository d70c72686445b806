"""The closed-loop demo: `loopline demo [--once] [--profile short]` (and `make run`).

One run, unattended, against the embedded stack it starts in `<home>` (wiped first: the demo owns it):

 1. history: seeded card transactions into the offline store, materialized online;
 2. live: raw events stream to Kafka (features turns them into online aggregates); a label feed reads the
    same events back and appends them, labelled, to the label table training reads (labels arrive late in
    real life; here they arrive with the event);
 3. v1: a LightGBM job on the history; the scenario promotes it to champion (the first version has no
    champion to be canaried against);
 4. traffic: real clients score live transactions at a steady rate, alternating OIP v2 over gRPC and REST;
 5. drift: the live stream shifts (higher amounts, online categories, new merchants); monitoring raises
    DriftDetected; training's drift policy retrains v2 on the newest labelled window; the registry makes
    it challenger; the rollout controller canaries it through its steps and promotes it;
 6. a deliberately bad challenger (a torch MLP trained on shuffled labels) is made challenger; the rollout
    controller canaries it, its checks fail, and it is rolled back (weight 0, challenger alias removed);
 7. checks: every expected outcome, in order, and no prediction lost between inference's log and
    monitoring's count beyond the documented drops; the report (HTML + PNG) under `.loopline/reports/`.

Every step waits on a condition with a deadline (never a fixed sleep as synchronisation) and prints the
timeline as events arrive on Kafka. `ScenarioResult.ok` is True only when every outcome happened.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import json
import os
import random
import shutil
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer
from loopline_sdk import Endpoints, JobSpec, entity_tensors

from loopline.events.v1 import drift_pb2, models_pb2, rollouts_pb2, training_jobs_pb2
from loopline_cli.stack import SERVICES, Ports, Stack, _find_repo
from loopline_cli.tokens import local_token
from loopline_common.errors import LooplineError
from loopline_common.topics import DRIFT, MODELS, ROLLOUTS, TRAINING_JOBS, WORKLOAD_EVENTS

MODEL = "fraud"
FEATURE_SERVICE = "fraud_stored_v1"  # served by entity keys alone: inference builds the input online
LABEL = "is_fraud"
LONGEST_WINDOW_DAYS = 7  # the feature repo's longest aggregation window (customer_txn_7d, merchant_risk_7d)


@dataclass(frozen=True)
class Profile:
    """How big and how fast one run is. Every knob that reaches a service is in `service_env`."""

    name: str
    customers: int
    merchants: int
    history_days: float
    live_rate: float  # raw events per second
    traffic_rate: float  # predictions per second (half gRPC, half REST)
    baseline_seconds: float  # reference traffic before the shift
    lightgbm_rounds: int
    torch_epochs: int
    # monitoring
    window_records: int
    window_seconds: float
    min_window_records: int
    alpha: float
    # rollout
    interval_seconds: float
    steps: tuple[int, ...]
    failure_threshold: int
    min_samples: int
    psi_min_samples: int
    max_psi: float
    shadow_iterations: int
    min_agreement: float
    # training's drift policy
    min_new_rows: int
    # deadlines of the waits, seconds
    train_timeout: float
    drift_timeout: float
    rollout_timeout: float

    def service_env(self, home: Path) -> dict[str, str]:
        return {
            "LOOPLINE_MONITORING_POLICY_FILE": str(home / "demo" / "drift-policy.json"),
            "LOOPLINE_MONITORING_CANARY_MIN_RECORDS": str(self.min_samples),
            "LOOPLINE_MONITORING_TICK_SECONDS": "0.5",
            "LOOPLINE_ROLLOUT_POLICY_FILE": str(home / "demo" / "rollout-policy.json"),
            "LOOPLINE_ROLLOUT_TICK_SECONDS": "0.2",
            "LOOPLINE_REGISTRY_POLICY_FILE": str(home / "demo" / "promotion-policy.json"),
            "LOOPLINE_REGISTRY_CACHE_TTL_SECONDS": "1",
            "LOOPLINE_REGISTRY_OUTBOX_POLL_SECONDS": "0.2",
            "LOOPLINE_TRAINING_DRIFT_MIN_NEW_ROWS": str(self.min_new_rows),
            # One drift-triggered retrain per run: later drift events on v2 are recorded and skipped.
            "LOOPLINE_TRAINING_DRIFT_COOLDOWN_SECONDS": "3600",
            "LOOPLINE_FEATURES_OFFLINE_FLUSH_SECONDS": "2",
            # The challenger track follows the registry's challenger alias.
            "LOOPLINE_INFERENCE_CHALLENGER": f"{MODEL}@challenger",
        }

    def drift_policy(self) -> dict[str, Any]:
        return {"default": {"window_records": self.window_records, "window_seconds": self.window_seconds,
                            "min_window_records": self.min_window_records, "window_lateness_seconds": 2.0,
                            "alpha": self.alpha, "cooldown_seconds": 3600.0}}

    def rollout_policy(self) -> dict[str, Any]:
        return {"default": {
            "interval": self.interval_seconds, "stepWeights": list(self.steps), "threshold": self.failure_threshold,
            "inconclusiveLimit": 1000, "shadow": {"iterations": self.shadow_iterations},
            "metrics": [
                {"name": "error-rate", "thresholdRange": {"max": 0.01}, "minSamples": self.min_samples},
                # Generous: this machine is shared; the demo is about the model-aware checks.
                {"name": "latency-p99", "thresholdRange": {"max": 1.0}, "minSamples": self.min_samples},
                {"name": "prediction-psi", "thresholdRange": {"max": self.max_psi},
                 "minSamples": self.psi_min_samples},
                # In shadow: the share of requests where the candidate's decision (score >= 0.5) agrees with
                # the champion's.
                {"name": "shadow-agreement", "thresholdRange": {"min": self.min_agreement},
                 "minSamples": self.psi_min_samples},
            ],
        }}

    def rollout_bound(self) -> float:
        """The least time a canary needs by its policy: the shadow analyses, every step's interval, then the
        promotion's analysis."""
        return (self.shadow_iterations + len(self.steps) + 1) * self.interval_seconds

    def rollback_bound(self) -> float:
        """The least time a failing canary needs: `threshold` failed analyses, one interval apart."""
        return self.failure_threshold * self.interval_seconds


PROFILES: dict[str, Profile] = {
    # What `make run` shows: realistic sizes, minute-scale canary steps.
    "default": Profile(
        name="default", customers=2000, merchants=150, history_days=14.0, live_rate=20.0, traffic_rate=40.0,
        baseline_seconds=60.0, lightgbm_rounds=300, torch_epochs=20, window_records=1000, window_seconds=20.0,
        min_window_records=200, alpha=0.001, interval_seconds=10.0, steps=(10, 25, 50), failure_threshold=2,
        min_samples=50, psi_min_samples=150, max_psi=25.0, shadow_iterations=2, min_agreement=0.8,
        min_new_rows=200, train_timeout=600.0, drift_timeout=300.0,
        rollout_timeout=300.0,
    ),
    # CI's end-to-end test and `loopline demo --profile short`: small data, second-scale windows and steps.
    "short": Profile(
        name="short", customers=1000, merchants=100, history_days=11.0, live_rate=15.0, traffic_rate=30.0,
        baseline_seconds=15.0, lightgbm_rounds=60, torch_epochs=3, window_records=400, window_seconds=8.0,
        min_window_records=100, alpha=0.001, interval_seconds=2.5, steps=(25, 50), failure_threshold=2,
        min_samples=20, psi_min_samples=60, max_psi=25.0, shadow_iterations=1, min_agreement=0.8,
        min_new_rows=50, train_timeout=240.0, drift_timeout=120.0,
        rollout_timeout=120.0,
    ),
}


# ---- the timeline -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Event:
    at: float  # epoch seconds
    kind: str
    text: str
    data: dict[str, Any] = field(default_factory=dict)


class Timeline:
    """Everything that happened, in the order it was seen, printed as it arrives."""

    def __init__(self, echo: Callable[[str], None]) -> None:
        self.echo = echo
        self.started = time.time()
        self.events: list[Event] = []
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)

    def add(self, kind: str, text: str, **data: Any) -> Event:
        event = Event(at=time.time(), kind=kind, text=text, data=data)
        with self._changed:
            self.events.append(event)
            self._changed.notify_all()
        self.echo(f"[{event.at - self.started:7.1f}s] {kind:<18} {text}")
        return event

    def find(self, kind: str, since: float = 0.0, **match: Any) -> Event | None:
        with self._lock:
            for event in self.events:
                if event.kind == kind and event.at >= since and all(event.data.get(k) == v for k, v in match.items()):
                    return event
        return None

    def wait(self, kind: str, *, timeout: float, since: float = 0.0, what: str = "", **match: Any) -> Event:
        """The first event of `kind` (with data matching `match`) seen at or after `since`; raises on timeout."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for event in self.events:
                    if event.kind == kind and event.at >= since and all(
                            event.data.get(k) == v for k, v in match.items()):
                        return event
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ScenarioError(f"timed out after {timeout:.0f}s waiting for {what or kind} {match or ''}")
                self._changed.wait(min(left, 1.0))


class ScenarioError(Exception):
    """A step did not happen in time; the message says which."""


def wait_for(condition: Callable[[], Any], *, timeout: float, what: str, every: float = 0.5) -> Any:
    """Poll `condition` until it returns something truthy; raise ScenarioError after `timeout`."""
    deadline = time.monotonic() + timeout
    last_error = ""
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except LooplineError as exc:
            last_error = f" (last answer: {exc.code.value}: {exc.message})"
        time.sleep(every)
    raise ScenarioError(f"timed out after {timeout:.0f}s waiting for {what}{last_error}")


# ---- Kafka watchers -----------------------------------------------------------------------------------
class EventWatcher(threading.Thread):
    """Turns the platform's own events (model, drift, training job, rollout) into timeline entries."""

    def __init__(self, bootstrap: str, timeline: Timeline) -> None:
        super().__init__(name="demo-events", daemon=True)
        self.bootstrap = bootstrap
        self.timeline = timeline
        self.stop = threading.Event()
        self.ready = threading.Event()
        self._job_states: dict[str, str] = {}

    def run(self) -> None:
        consumer = KafkaConsumer(DRIFT, MODELS, TRAINING_JOBS, ROLLOUTS, bootstrap_servers=self.bootstrap,
                                 auto_offset_reset="earliest", enable_auto_commit=False, group_id=None,
                                 consumer_timeout_ms=500)
        try:
            while not self.stop.is_set():
                batches = consumer.poll(timeout_ms=300)
                if consumer.assignment():
                    self.ready.set()
                for records in batches.values():
                    for record in records:
                        with contextlib.suppress(Exception):  # a record we cannot read is not ours to fix
                            self._handle(record.topic, record.value)
        finally:
            consumer.close()

    def _handle(self, topic: str, value: bytes) -> None:
        t = self.timeline
        if topic == MODELS:
            event = models_pb2.ModelEvent.FromString(value)
            kind = event.WhichOneof("event")
            if kind == "registered":
                r = event.registered
                auc = r.metrics.get("roc_auc")
                t.add("model.registered", f"{r.model_name} v{r.version} ({r.trigger or 'manual'}"
                      + (f", roc_auc {auc:.3f}" if auc is not None else "") + ")",
                      model=r.model_name, version=r.version, trigger=r.trigger)
            elif kind == "alias_changed":
                a = event.alias_changed
                text = (f"{a.model_name}@{a.alias}: v{a.previous_version or '-'} -> v{a.new_version or '-'}"
                        f" by {a.actor}")
                t.add("alias.changed", text, model=a.model_name, alias=a.alias, version=a.new_version,
                      previous=a.previous_version)
        elif topic == DRIFT:
            d = drift_pb2.DriftDetected.FromString(value)
            drifted = [f.feature for f in d.features if f.drifted]
            t.add("drift.detected", f"{d.model_name} v{d.model_version}: drifted share {d.drifted_share:.2f} "
                  f">= {d.drifted_share_threshold:.2f} ({', '.join(drifted[:4])}{'...' if len(drifted) > 4 else ''})",
                  model=d.model_name, version=d.model_version, share=d.drifted_share,
                  window_end=d.window.end.ToMicroseconds() / 1e6 if d.window.HasField("end") else 0.0)
        elif topic == TRAINING_JOBS:
            j = training_jobs_pb2.TrainingJobChanged.FromString(value)
            state = str(training_jobs_pb2.JobState.Name(j.state)).removeprefix("JOB_STATE_").lower()
            if self._job_states.get(j.job_id) == state:
                return  # a progress report, not a change
            self._job_states[j.job_id] = state
            extra = f" -> v{j.registered_version}" if j.registered_version else ""
            extra += f": {j.error[:160]}" if j.error else ""
            t.add(f"training.{state}", f"job {j.job_id[:8]} {j.family} ({j.trigger or 'manual'}){extra}",
                  job_id=j.job_id, trigger=j.trigger, family=j.family, version=j.registered_version)
        elif topic == ROLLOUTS:
            rd = rollouts_pb2.RolloutDecision.FromString(value)
            decision = str(rollouts_pb2.Decision.Name(rd.decision)).removeprefix("DECISION_").lower()
            checks = ", ".join(
                f"{c.name}={c.value:.3g} "
                f"{str(rollouts_pb2.CheckOutcome.Name(c.outcome)).removeprefix('CHECK_OUTCOME_').lower()}"
                for c in rd.checks)
            t.add(f"rollout.{decision}", f"v{rd.candidate_version} step {rd.step} weight {rd.weight}%"
                  + (f" [{checks}]" if checks else "") + (f": {rd.reason[:140]}" if rd.reason else ""),
                  rollout_id=rd.rollout_id, version=rd.candidate_version, weight=rd.weight, step=rd.step)


class LabelFeed(threading.Thread):
    """Reads the live raw events back from Kafka: their (customer, merchant) pairs are what the traffic
    scores, and their labels are appended to the label table that training reads."""

    def __init__(self, bootstrap: str, labels: Path, *, flush_seconds: float = 2.0) -> None:
        super().__init__(name="demo-labels", daemon=True)
        self.bootstrap = bootstrap
        self.labels = labels
        self.flush_seconds = flush_seconds
        self.stop = threading.Event()
        self.recent: collections.deque[tuple[str, str]] = collections.deque(maxlen=500)
        self.pending: list[dict[str, Any]] = []
        self.appended = 0
        self.lock = threading.Lock()

    def pairs(self) -> list[tuple[str, str]]:
        with self.lock:
            return list(self.recent)

    def run(self) -> None:
        from loopline.events.v1 import workload_pb2

        consumer = KafkaConsumer(WORKLOAD_EVENTS, bootstrap_servers=self.bootstrap, auto_offset_reset="earliest",
                                 enable_auto_commit=False, group_id=None, consumer_timeout_ms=500)
        last_flush = time.monotonic()
        try:
            while not self.stop.is_set():
                for records in consumer.poll(timeout_ms=300).values():
                    for record in records:
                        with contextlib.suppress(Exception):
                            e = workload_pb2.WorkloadEvent.FromString(record.value)
                            customer, merchant = e.entity_keys["customer_id"], e.entity_keys["merchant_id"]
                            row = {"customer_id": customer, "merchant_id": merchant,
                                   "event_timestamp": e.event_time.ToDatetime(tzinfo=UTC),
                                   LABEL: bool(e.fields[LABEL].bool_value)}
                            with self.lock:
                                self.recent.append((customer, merchant))
                                self.pending.append(row)
                if time.monotonic() - last_flush >= self.flush_seconds:
                    self.flush()
                    last_flush = time.monotonic()
        finally:
            self.flush()
            consumer.close()

    def flush(self) -> None:
        import pandas as pd  # type: ignore[import-untyped]

        with self.lock:
            rows, self.pending = self.pending, []
        if not rows:
            return
        table = pd.concat([pd.read_parquet(self.labels), _label_frame(pd.DataFrame(rows))], ignore_index=True)
        tmp = self.labels.with_suffix(".tmp")
        table.to_parquet(tmp, index=False)
        tmp.replace(self.labels)  # training reads a whole file, never half of one
        self.appended += len(rows)


def _label_frame(frame: Any) -> Any:
    import pandas as pd

    out = frame[["customer_id", "merchant_id", "event_timestamp", LABEL]].copy()
    out["event_timestamp"] = pd.to_datetime(out["event_timestamp"], utc=True).astype("datetime64[us, UTC]")
    out[LABEL] = out[LABEL].astype(bool)
    return out


# ---- traffic ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Sample:
    at: float
    protocol: str
    track: str
    version: str
    seconds: float
    ok: bool
    code: str


class Traffic(threading.Thread):
    """Real OIP v2 clients at a steady rate, alternating gRPC and REST, scoring live transactions."""

    def __init__(self, endpoints: Endpoints, pairs: Callable[[], list[tuple[str, str]]], rate: float) -> None:
        super().__init__(name="demo-traffic", daemon=True)
        self.endpoints = endpoints
        self.pairs = pairs
        self.rate = rate
        self.stop = threading.Event()
        self.samples: list[Sample] = []
        self.rng = random.Random(11)  # noqa: S311 - traffic choice, not security

    def run(self) -> None:
        client = self.endpoints.inference()
        interval = 1.0 / self.rate
        next_at = time.monotonic()
        n = 0
        try:
            while not self.stop.is_set():
                pairs = self.pairs()
                if pairs:
                    customer, merchant = self.rng.choice(pairs)
                    protocol = "grpc" if n % 2 == 0 else "rest"
                    n += 1
                    started = time.perf_counter()
                    try:
                        answer = client.infer(MODEL, entity_tensors([{"customer_id": customer,
                                                                      "merchant_id": merchant}]),
                                              protocol=protocol, retry=False, timeout=5.0)
                        self.samples.append(Sample(time.time(), protocol, answer.track, answer.model_version,
                                                   time.perf_counter() - started, True, "OK"))
                    except LooplineError as exc:
                        self.samples.append(Sample(time.time(), protocol, "", "", time.perf_counter() - started,
                                                   False, exc.code.value))
                next_at += interval
                pause = next_at - time.monotonic()
                if pause > 0:
                    self.stop.wait(pause)
                else:
                    next_at = time.monotonic()  # fell behind: keep the rate, do not burst
        finally:
            client.close()


class Streamer:
    """The live raw-event stream (the features service's demo generator, run in its own environment)."""

    def __init__(self, repo: Path, bootstrap: str, profile: Profile, log: Path) -> None:
        self.repo, self.bootstrap, self.profile, self.log = repo, bootstrap, profile, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, drift: float) -> None:
        self.stop()
        python = self.repo / ".venvs" / "features" / "bin" / "python"
        argv = [str(python), "-m", "loopline_features.demo_cli", "stream", "--bootstrap", self.bootstrap,
                "--rate", str(self.profile.live_rate), "--seconds", "86400", "--drift", str(drift),
                "--customers", str(self.profile.customers), "--merchants", str(self.profile.merchants)]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(argv, cwd=self.repo, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None


# ---- the run ------------------------------------------------------------------------------------------
@dataclass
class Outcome:
    name: str
    ok: bool
    detail: str


@dataclass
class ScenarioResult:
    profile: str
    outcomes: list[Outcome]
    timeline: list[Event]
    marks: dict[str, float]
    report: Path | None = None
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error and bool(self.outcomes) and all(o.ok for o in self.outcomes)

    def figures(self) -> dict[str, float]:
        """Seconds from drift injection to v2 promoted, and from bad challenger to rolled back."""
        m = self.marks
        out = {}
        if "drift_injected" in m and "v2_promoted" in m:
            out["drift_to_promoted"] = m["v2_promoted"] - m["drift_injected"]
        if "bad_challenger" in m and "bad_rolled_back" in m:
            out["bad_to_rolled_back"] = m["bad_rolled_back"] - m["bad_challenger"]
        if "bad_registered" in m and "bad_rolled_back" in m:
            out["bad_registered_to_rolled_back"] = m["bad_rolled_back"] - m["bad_registered"]
        return out


def _metrics(url: str) -> dict[str, float]:
    """A service's /metrics as {"name{labels}": value} (counters summed by name and labels as written)."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:  # noqa: S310 - our own service
        text = response.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                out[name] = float(value)
    return out


def _sum(metrics: dict[str, float], name: str, **labels: str) -> float:
    total = 0.0
    for key, value in metrics.items():
        base = key.split("{", 1)[0]
        if base != name:
            continue
        if all(f'{k}="{v}"' in key for k, v in labels.items()):
            total += value
    return total


class Scenario:
    def __init__(self, *, profile: Profile, home: Path, port_offset: int = 0, reports: Path | None = None,
                 echo: Callable[[str], None] = print) -> None:
        self.profile = profile
        self.home = home.resolve()
        self.port_offset = port_offset
        self.reports = (reports or self.home.parent / "reports").resolve()
        self.echo = echo
        self.repo = _find_repo()
        self.timeline = Timeline(echo)
        self.marks: dict[str, float] = {}
        self.outcomes: list[Outcome] = []
        self.stack: Stack | None = None
        self.endpoints = Endpoints.local(offset=port_offset)
        self.traffic: Traffic | None = None
        self.labels: LabelFeed | None = None
        self.watcher: EventWatcher | None = None
        self.streamer: Streamer | None = None
        self.versions: dict[str, int] = {}
        self.history: dict[str, Any] = {}
        self.counts: dict[str, float] = {}
        self.reference_pairs: list[tuple[str, str]] = []
        self.pool: Callable[[], list[tuple[str, str]]] = lambda: self.reference_pairs

    # ---- helpers -------------------------------------------------------------------------------------
    def step(self, text: str) -> None:
        self.echo(f"\n== {text}")

    def mark(self, name: str, at: float | None = None) -> float:
        self.marks[name] = at if at is not None else time.time()
        return self.marks[name]

    def outcome(self, name: str, ok: bool, detail: str) -> bool:
        self.outcomes.append(Outcome(name, ok, detail))
        self.echo(f"  [{'ok' if ok else 'FAILED'}] {name}: {detail}")
        return ok

    def _services_missing(self) -> list[str]:
        names = {s.name for s in SERVICES}
        return [n for n in ("registry", "features", "training", "monitoring", "inference", "rollout")
                if n not in names]

    # ---- phases ----------------------------------------------------------------------------------------
    def start_stack(self) -> None:
        self.step(f"starting the embedded stack in {self.home} (profile {self.profile.name})")
        if self.home.exists():
            Stack(home=self.home).down()
            shutil.rmtree(self.home)
        demo = self.home / "demo"
        demo.mkdir(parents=True)
        (demo / "drift-policy.json").write_text(json.dumps(self.profile.drift_policy(), indent=2))
        (demo / "rollout-policy.json").write_text(json.dumps(self.profile.rollout_policy(), indent=2))
        # The promotion policy of the demo: the ONNX parity gate only (no metric gate), so that the bad
        # challenger reaches the canary, which is what must catch it.
        (demo / "promotion-policy.json").write_text(json.dumps({"default": {"require_onnx_parity": True}}))
        missing = self._services_missing()
        if missing:
            self.echo(f"  note: the stack has no {', '.join(missing)} service yet; those steps will fail")
        ports = Ports(offset=self.port_offset, kafka=Ports.kafka, mlflow=Ports.mlflow, prometheus=Ports.prometheus)
        self.stack = Stack(home=self.home, ports=ports, env=self.profile.service_env(self.home))
        self.stack.up(timeout=180.0, progress=lambda line: self.echo(f"  {line}"))
        self.bootstrap = self.stack.addresses()["kafka"]
        token = local_token(self.home, "admin")
        self.endpoints = Endpoints.local(offset=self.port_offset, token=token)
        self.watcher = EventWatcher(self.bootstrap, self.timeline)
        self.watcher.start()
        self.timeline.add("stack.up", f"{len(self.stack.load())} components healthy")

    def history_and_features(self) -> None:
        p = self.profile
        self.step(f"history: {p.history_days:g} days of {p.customers} customers, then materialize")
        python = self.repo / ".venvs" / "features" / "bin" / "python"
        argv = [str(python), "-m", "loopline_features.demo_cli", "history", "--repo-dir",
                str(self.repo / "feature_repo"), "--data-dir", str(self.home / "features"), "--days",
                str(p.history_days), "--customers", str(p.customers), "--merchants", str(p.merchants)]
        done = subprocess.run(argv, cwd=self.repo, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise ScenarioError(f"writing the history failed:\n{done.stderr[-2000:]}")
        self.history = json.loads([x for x in done.stdout.splitlines() if x.startswith("{")][-1])
        self.timeline.add("history.written", f"{self.history['transactions']} transactions "
                          f"({self.history['fraud']} fraud), {self.history['start']} .. {self.history['end']}")
        import pandas as pd

        frame = pd.read_parquet(self.home / "features" / "offline" / "transactions.parquet")
        self.label_path = self.home / "demo" / "labels.parquet"
        _label_frame(frame).to_parquet(self.label_path, index=False)
        with self.endpoints.features() as features:
            done_views = features.materialize(timeout=600.0)
        self.timeline.add("features.materialized", ", ".join(done_views.feature_views))

    def live_events(self) -> None:
        """The label feed and the stream. Until the shift, traffic scores the history's newest transactions
        against the materialized features: a live stream replayed at many times the history's pace would
        itself move every streaming aggregate (counts per hour, means over a few events), which is drift
        of the demo's making, not of the world's. The live stream starts with the shift."""
        self.step("live events: the label feed listens; the stream starts with the shift")
        self.labels = LabelFeed(self.bootstrap, self.label_path)
        self.labels.start()
        self.streamer = Streamer(self.repo, self.bootstrap, self.profile, self.home / "logs" / "demo-stream.log")
        import pandas as pd

        # At least two windows' worth of distinct transactions: a window that saw each row twice would count
        # every feature value twice, and the drift tests' p-values would speak of twice the evidence there is.
        pool = max(500, 2 * self.profile.window_records)
        frame = pd.read_parquet(self.label_path).sort_values("event_timestamp").tail(pool)
        self.reference_pairs = list(zip(frame["customer_id"], frame["merchant_id"], strict=True))
        self.pool = lambda: self.reference_pairs
        self.timeline.add("labels.listening", f"label feed on {WORKLOAD_EVENTS}; reference traffic replays the "
                          f"history's newest {len(self.reference_pairs)} transactions")

    def train_v1(self) -> None:
        p = self.profile
        self.step("v1: LightGBM on the history, then champion")
        import pandas as pd

        start = datetime.fromisoformat(self.history["start"])
        # A generated history has nothing before its first day, so in its first week the 7-day aggregates
        # (and on its first day the 24-hour ones) count only part of their window. Rows from that warm-up
        # would make v1's reference profile expect lower counts than any served transaction has, and the
        # monitor would call the calm reference traffic drift (it did, in both profiles). So v1 trains after
        # the longest window (7 d) has filled; each profile's history is long enough to leave days after it.
        if p.history_days < LONGEST_WINDOW_DAYS + 3:
            raise ScenarioError(f"a {p.history_days:g}-day history leaves too little after the "
                                f"{LONGEST_WINDOW_DAYS}-day warm-up of the features' windows")
        start += timedelta(days=LONGEST_WINDOW_DAYS)
        # v1 was trained a while ago: on the oldest 90 % of the history. The newest 10 % are labels that
        # arrived since, so training's drift policy finds new labelled rows whenever drift is raised (the
        # live stream's own labels follow; they are in the retrain when they arrived before the decision).
        stamps = pd.read_parquet(self.label_path, columns=["event_timestamp"])["event_timestamp"].sort_values()
        end = stamps.iloc[int(len(stamps) * 0.9)].to_pydatetime()
        spec = JobSpec(model_name=MODEL, family="lightgbm", feature_service=FEATURE_SERVICE, label=LABEL,
                       entity_uri=str(self.label_path), window_start=start, window_end=end, holdout_fraction=0.25,
                       early_stopping_fraction=0.3,
                       hyperparameters={"num_boost_round": str(p.lightgbm_rounds), "learning_rate": "0.1"},
                       seed=7, reason="demo: first fraud model", make_challenger=True)
        with self.endpoints.training() as training:
            job = training.submit(spec, idempotency_key=f"demo-v1-{int(self.timeline.started)}")
            finished = wait_for(lambda: (j := training.get(job.job_id)).done and j, timeout=p.train_timeout,
                                what=f"training job {job.job_id} (v1)", every=1.0)
        if finished.state != "succeeded":
            raise ScenarioError(f"the v1 job {finished.state}: {finished.error}")
        v1 = finished.registered_version
        self.versions["v1"] = v1
        with self.endpoints.registry() as registry:
            registry.promote(MODEL, v1, reason="demo: the first version goes straight to champion")
        self.timeline.wait("alias.changed", timeout=60, alias="champion", version=v1, what="champion -> v1")
        with self.endpoints.inference() as inference:
            wait_for(lambda: inference.tracks(MODEL).version_of("champion") == v1, timeout=120,
                     what=f"inference serving v{v1} as champion")
        self.timeline.add("inference.serving", f"champion v{v1}")

    def start_traffic(self) -> None:
        p = self.profile
        self.step(f"traffic: {p.traffic_rate:g} predictions/s, alternating gRPC and REST")
        self.traffic = Traffic(self.endpoints, lambda: self.pool(), p.traffic_rate)
        self.traffic.start()
        traffic = self.traffic
        wait_for(lambda: sum(s.ok for s in traffic.samples) >= 20, timeout=60, what="the first answered predictions")
        self.timeline.add("traffic.started", f"{p.traffic_rate:g}/s, gRPC and REST")
        # The baseline: reference traffic only; monitoring closes calm windows.
        baseline_end = time.monotonic() + p.baseline_seconds
        wait_for(lambda: time.monotonic() >= baseline_end, timeout=p.baseline_seconds + 5, what="the baseline",
                 every=0.5)

    def drift_and_retrain(self) -> None:
        p = self.profile
        self.step("drift: the live world shifts (amounts up, online categories, new merchants)")
        if self.streamer is None or self.labels is None:
            raise ScenarioError("no live stream to shift")
        self.streamer.start(drift=1.0)
        injected = self.mark("drift_injected")
        self.timeline.add("drift.injected", f"live stream at {self.profile.live_rate:g} events/s, drift 1.0")
        labels = self.labels
        wait_for(lambda: len(labels.pairs()) >= 20, timeout=60, what="the first live events")
        self.pool = labels.pairs  # traffic now scores the live, shifted transactions
        self.timeline.add("stream.started", "traffic scores live transactions")
        v1 = self.versions["v1"]
        self.timeline.wait("drift.detected", timeout=p.drift_timeout, since=injected, version=v1,
                           what=f"DriftDetected on v{v1}")
        self.mark("drift_detected")
        job = self.timeline.wait("training.succeeded", timeout=p.train_timeout, since=injected, trigger="drift",
                                 what="the drift-triggered retraining")
        v2 = int(job.data["version"])
        self.versions["v2"] = v2
        self.mark("v2_registered")
        self.timeline.wait("rollout.started", timeout=60, since=injected, version=v2, what=f"the canary of v{v2}")
        # The bad challenger trains while v2's canary runs (training is idle then); it is not a challenger
        # until the scenario makes it one, after v2's rollout ended.
        self._submit_bad()
        ended = self.wait_end(v2, since=injected)
        if ended.kind != "rollout.promote":
            raise ScenarioError(f"v{v2}'s canary ended with {ended.kind}, not a promotion: {ended.text}")
        self.mark("v2_promoted", ended.at)

    def _submit_bad(self) -> None:
        import pandas as pd

        p = self.profile
        frame = pd.read_parquet(self.label_path)
        shuffled = frame.copy()
        shuffled[LABEL] = frame[LABEL].sample(frac=1.0, random_state=3).to_numpy()
        path = self.home / "demo" / "labels-shuffled.parquet"
        shuffled.to_parquet(path, index=False)
        start = datetime.fromisoformat(self.history["start"])
        end = shuffled["event_timestamp"].max().to_pydatetime() + timedelta(microseconds=1)
        spec = JobSpec(model_name=MODEL, family="torch_mlp", feature_service=FEATURE_SERVICE, label=LABEL,
                       entity_uri=str(path), window_start=start, window_end=end, holdout_fraction=0.25,
                       early_stopping_fraction=0.3,
                       hyperparameters={"max_epochs": str(p.torch_epochs), "hidden_layers": "16",
                                        # about (1 - p) / p for the fraud share p: its scores sit near 0.5
                                        "pos_weight": "45"},
                       seed=13, reason="demo: deliberately bad (trained on shuffled labels)", make_challenger=False)
        with self.endpoints.training() as training:
            self.bad_job = training.submit(spec, idempotency_key=f"demo-bad-{int(self.timeline.started)}").job_id
        self.timeline.add("demo.bad_submitted", f"torch MLP on shuffled labels (job {self.bad_job[:8]})")

    def bad_challenger(self) -> None:
        p = self.profile
        self.step("a deliberately bad challenger: torch MLP trained on shuffled labels")
        with self.endpoints.training() as training:
            job = wait_for(lambda: (j := training.get(self.bad_job)).done and j, timeout=p.train_timeout,
                           what="the bad model's training job", every=1.0)
        if job.state != "succeeded":
            raise ScenarioError(f"the bad model's job {job.state}: {job.error}")
        bad = job.registered_version
        self.versions["bad"] = bad
        registered = self.timeline.find("model.registered", version=bad)
        self.mark("bad_registered", registered.at if registered else None)
        with self.endpoints.registry() as registry:
            registry.set_alias(MODEL, "challenger", bad, reason="demo: a deliberately bad challenger")
        since = self.mark("bad_challenger")
        self.timeline.wait("rollout.started", timeout=60, since=since, version=bad, what=f"the canary of v{bad}")
        ended = self.wait_end(bad, since=since)
        if ended.kind != "rollout.rollback":
            raise ScenarioError(f"the bad challenger's canary ended with {ended.kind}, not a rollback: {ended.text}")
        self.mark("bad_rolled_back", ended.at)

    def wait_end(self, version: int, *, since: float) -> Event:
        """The decision that ended `version`'s rollout (promote, rollback or abort)."""

        def ended() -> Event | None:
            found = [e for kind in ("rollout.promote", "rollout.rollback", "rollout.abort")
                     if (e := self.timeline.find(kind, since=since, version=version)) is not None]
            return min(found, key=lambda e: e.at) if found else None

        event: Event = wait_for(ended, timeout=self.profile.rollout_timeout, what=f"the end of v{version}'s canary",
                                every=0.2)
        return event

    def settle_and_count(self) -> None:
        self.step("settling: traffic stops, monitoring catches up with inference's log")
        if self.traffic is not None:
            self.traffic.stop.set()
            self.traffic.join(timeout=30)
        if self.streamer is not None:
            self.streamer.stop()
        if self.stack is None:
            return
        urls = {c.name: c.urls.get("http", "") for c in self.stack.load()}

        def counts() -> dict[str, float]:
            inf, mon = _metrics(urls["inference"]), _metrics(urls["monitoring"])
            return {
                "logged": _sum(inf, "loopline_inference_prediction_log_records_total"),
                "not_logged": _sum(inf, "loopline_inference_prediction_log_dropped_total"),
                "kafka_dropped": _sum(inf, "loopline_inference_kafka_dropped_total"),
                "consumed": _sum(mon, "loopline_monitoring_records_total", model=MODEL),
            }

        def caught_up() -> dict[str, float] | None:
            c = counts()
            return c if c["logged"] > 0 and c["consumed"] >= c["logged"] else None

        if self.traffic is None:
            return
        try:
            self.counts = wait_for(caught_up, timeout=60, what="monitoring to count every logged prediction")
        except ScenarioError:
            self.counts = counts()
        if self.traffic is not None:
            self.counts["answered"] = float(sum(s.ok for s in self.traffic.samples))
            self.counts["failed"] = float(sum(not s.ok for s in self.traffic.samples))
            # What the clients were told when a request failed, by protocol and status code.
            for (protocol, code), n in collections.Counter(
                    (s.protocol, s.code) for s in self.traffic.samples if not s.ok).items():
                self.counts[f"failed:{protocol}:{code}"] = float(n)

    def check(self) -> None:
        self.step("checking the outcomes")
        t = self.timeline
        v1, v2, bad = self.versions.get("v1", 0), self.versions.get("v2", 0), self.versions.get("bad", 0)

        def first(kind: str, **match: Any) -> Event | None:
            return t.find(kind, **match)

        order = [
            ("v1 registered", first("model.registered", version=v1)),
            ("v1 champion", first("alias.changed", alias="champion", version=v1)),
            ("drift injected", first("drift.injected")),
            ("drift detected on v1", first("drift.detected", version=v1)),
            ("v2 registered by the drift retrain", first("model.registered", version=v2, trigger="drift")),
            ("v2 challenger", first("alias.changed", alias="challenger", version=v2)),
            ("v2 canary started", first("rollout.started", version=v2)),
            # The controller moves the alias through the registry first, then records its decision.
            ("v2 champion", first("alias.changed", alias="champion", version=v2)),
            ("v2 promoted", first("rollout.promote", version=v2)),
            ("bad challenger", first("alias.changed", alias="challenger", version=bad)),
            ("bad canary started", first("rollout.started", version=bad)),
            ("bad rolled back", first("rollout.rollback", version=bad)),
        ]
        missing = [name for name, e in order if e is None]
        times = [e.at for _, e in order if e is not None]
        in_order = not missing and all(a <= b for a, b in itertools.pairwise(times))
        self.outcome("events in order", in_order,
                     f"missing: {', '.join(missing)}" if missing else ("; ".join(n for n, _ in order)
                                                                      if in_order else "out of order"))
        # By the drifted window's end (event time), not by when the event arrived: a window of reference
        # traffic that closes just after the shift must not count as detecting it.
        injected = self.marks.get("drift_injected", 0.0)
        early = [e for e in t.events if e.kind == "drift.detected" and e.data.get("window_end", e.at) < injected]
        self.outcome("no drift before the shift", not early, "the reference phase stayed calm" if not early else
                     f"monitoring raised drift on a window of reference traffic: {early[0].text}")
        try:
            with self.endpoints.registry() as registry:
                aliases = registry.aliases(MODEL)
            with self.endpoints.inference() as inference:
                tracks = inference.tracks(MODEL)
            right = aliases.get("champion") == v2 and "challenger" not in aliases and v2 > v1 > 0
            self.outcome("final aliases", right, f"{aliases} (expected champion=v{v2}, no challenger)")
            serving = tracks.version_of("champion") == v2 and tracks.challenger_weight == 0.0
            self.outcome("inference serves v2 only", serving,
                         f"champion v{tracks.version_of('champion')}, challenger weight {tracks.challenger_weight:g}")
        except LooplineError as exc:
            self.outcome("final aliases", False, f"{exc.code.value}: {exc.message}")
        c = self.counts
        if c:
            lost = c["logged"] - c["consumed"]
            ok = c["logged"] > 0 and lost <= 0
            note = "" if not c["kafka_dropped"] else f"; {c['kafka_dropped']:g} batches dropped by the producer"
            if c["kafka_dropped"] and lost > 0:
                ok = True  # counted, documented drops (loopline_inference_kafka_dropped_total)
            self.outcome("no prediction lost", ok,
                         f"inference logged {c['logged']:g}, monitoring consumed {c['consumed']:g}, "
                         f"not logged (counted) {c['not_logged']:g}{note}; clients got {c.get('answered', 0):g} "
                         f"answers, {c.get('failed', 0):g} errors")
            served = c.get("answered", 0) <= c["logged"] + c["not_logged"]
            self.outcome("every answer logged", served, f"{c.get('answered', 0):g} answers <= "
                         f"{c['logged']:g} logged + {c['not_logged']:g} counted drops")

    def shutdown_watchers(self) -> None:
        for thread in (self.traffic, self.labels, self.watcher):
            if thread is not None:
                thread.stop.set()
        for thread in (self.traffic, self.labels, self.watcher):
            if thread is not None:
                thread.join(timeout=15)
        if self.streamer is not None:
            self.streamer.stop()

    def run(self) -> ScenarioResult:
        error = ""
        try:
            self.start_stack()
            self.history_and_features()
            self.live_events()
            self.train_v1()
            self.start_traffic()
            self.drift_and_retrain()
            self.bad_challenger()
        except (ScenarioError, LooplineError, OSError) as exc:
            error = str(exc) if not isinstance(exc, LooplineError) else f"{exc.code.value}: {exc.message}"
            self.timeline.add("scenario.failed", error)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            self.timeline.add("scenario.failed", error)
        try:
            if self.stack is not None and self.stack.load():
                self.settle_and_count()
                self.check()
        except Exception as exc:  # the checks themselves failing is a failed run, with the reason
            self.outcome("checks ran", False, f"{type(exc).__name__}: {exc}")
        result = ScenarioResult(profile=self.profile.name, outcomes=self.outcomes, timeline=self.timeline.events,
                                marks=self.marks, error=error)
        try:
            from loopline_cli.report import write_report

            result.report = write_report(self, result)
        except Exception as exc:
            self.echo(f"  the report could not be written: {type(exc).__name__}: {exc}")
        self.stop_feeds()
        return result

    def stop_feeds(self) -> None:
        for thread in (self.traffic, self.labels):
            if thread is not None:
                thread.stop.set()
        if self.streamer is not None:
            self.streamer.stop()

    def close(self) -> None:
        self.shutdown_watchers()
        if self.stack is not None:
            self.stack.down()


def result_json(result: ScenarioResult) -> dict[str, Any]:
    return {"profile": result.profile, "ok": result.ok, "error": result.error,
            "outcomes": [asdict(o) for o in result.outcomes], "figures": result.figures(),
            "timeline": [{"at": e.at, "kind": e.kind, "text": e.text} for e in result.timeline],
            "report": str(result.report) if result.report else None}


def default_home() -> Path:
    base = Path(os.environ.get("LOOPLINE_HOME", ".loopline"))
    return base / "demo"
