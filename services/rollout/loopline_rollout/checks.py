"""Analysis checks: each measures one number over the current step and compares it with its success
condition. A check that has too little data to measure says so (`not_enough_data`); that is never a pass.

Numbers come from a source: the monitoring service's canary analysis and drift status (embedded), or
Prometheus's HTTP API over the metrics the services export (cluster). PromQL checks always read Prometheus.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from loopline.events.v1 import predictions_pb2, rollouts_pb2
from loopline.monitoring.v1 import monitoring_pb2, monitoring_pb2_grpc
from loopline_common.errors import LooplineError
from loopline_common.grpc_client import ServiceClient
from loopline_rollout.policy import CheckSpec

log = logging.getLogger(__name__)

PASS, FAIL, NOT_ENOUGH = "pass", "fail", "not_enough_data"
OUTCOMES = {
    PASS: rollouts_pb2.CHECK_OUTCOME_PASS,
    FAIL: rollouts_pb2.CHECK_OUTCOME_FAIL,
    NOT_ENOUGH: rollouts_pb2.CHECK_OUTCOME_NOT_ENOUGH_DATA,
}


@dataclass(frozen=True)
class Context:
    """What one analysis is about."""

    model: str
    candidate: int
    champion: int
    phase: str  # shadow | progressing
    window_seconds: float
    step_started_at: float  # epoch seconds


@dataclass(frozen=True)
class Measurement:
    """A measured value, or None with why not; `samples` is how much data it rests on (None: unknown)."""

    value: float | None
    samples: float | None = None
    message: str = ""


@dataclass(frozen=True)
class Outcome:
    name: str
    result: str
    value: float
    condition: str
    message: str

    def to_proto(self) -> rollouts_pb2.CheckResult:
        return rollouts_pb2.CheckResult(name=self.name, outcome=OUTCOMES[self.result], value=self.value,
                                        condition=self.condition, message=self.message)


def judge(check: CheckSpec, measured: Measurement) -> Outcome:
    """The outcome of `check` given its measurement."""
    condition = check.condition()
    if measured.value is None or math.isnan(measured.value):
        return Outcome(check.name, NOT_ENOUGH, 0.0, condition, measured.message or "no data")
    if measured.samples is not None and measured.samples < check.min_samples:
        return Outcome(check.name, NOT_ENOUGH, measured.value, condition,
                       f"{measured.samples:g} samples < {check.min_samples} needed")
    value = measured.value
    ok = check.passes(value)
    detail = f"{value:.4g} {'within' if ok else 'outside'} {condition}"
    if measured.samples is not None:
        detail += f" over {measured.samples:g} samples"
    return Outcome(check.name, PASS if ok else FAIL, value, condition, detail)


class Source(Protocol):
    async def measure(self, check: CheckSpec, ctx: Context, cache: dict[str, Any]) -> Measurement: ...

    async def close(self) -> None: ...


def _interval(seconds: float) -> str:
    return f"{max(1, round(seconds))}s"


def render_query(query: str, ctx: Context) -> str:
    """A PromQL template with {{model}}, {{version}}, {{champion}} and {{interval}} filled in."""
    for key, value in (("model", ctx.model), ("version", str(ctx.candidate)), ("champion", str(ctx.champion)),
                       ("interval", _interval(ctx.window_seconds))):
        query = query.replace("{{" + key + "}}", value).replace("{{ " + key + " }}", value)
    return query


class Prometheus:
    """Instant queries against Prometheus's HTTP API (/api/v1/query)."""

    def __init__(self, base_url: str, *, timeout: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.client = httpx.AsyncClient(timeout=timeout)

    async def scalar(self, query: str) -> float | None:
        """The query's single value (the first series of a vector, or a scalar); None when empty or NaN."""
        try:
            response = await self.client.get(f"{self.base_url}/api/v1/query", params={"query": query})
        except httpx.HTTPError as exc:
            raise SourceUnavailable(f"prometheus unreachable: {type(exc).__name__}") from None
        if response.status_code != 200:
            raise SourceUnavailable(f"prometheus answered {response.status_code}: {response.text[:200]}")
        body = response.json()
        data = body.get("data", {})
        kind, result = data.get("resultType"), data.get("result")
        if kind == "scalar":
            value = float(result[1])
        elif kind == "vector":
            if not result:
                return None
            value = float(result[0]["value"][1])
        else:
            raise SourceUnavailable(f"query gave a {kind}, not a vector or scalar: {query}")
        return None if math.isnan(value) or math.isinf(value) else value

    async def close(self) -> None:
        await self.client.aclose()


class SourceUnavailable(Exception):
    """The source could not be asked; the analysis is retried instead of being judged."""


class MonitoringSource:
    """Builtin checks from the monitoring service (embedded mode); PromQL checks from Prometheus if set."""

    def __init__(self, *, target: str, timeout: float, prometheus: Prometheus | None) -> None:
        self.client = ServiceClient(service="monitoring", target=target, timeout=timeout, asynchronous=True)
        self.stub = monitoring_pb2_grpc.MonitoringServiceStub(self.client.channel)  # type: ignore[no-untyped-call]
        self.prometheus = prometheus

    async def _canary(self, ctx: Context, cache: dict[str, Any]) -> monitoring_pb2.GetCanaryAnalysisResponse:
        if "canary" not in cache:
            try:
                cache["canary"] = await self.client.acall(
                    self.stub.GetCanaryAnalysis,
                    monitoring_pb2.GetCanaryAnalysisRequest(model_name=ctx.model, window_seconds=ctx.window_seconds),
                    idempotent=True,
                )
            except LooplineError as exc:
                raise SourceUnavailable(f"monitoring: {exc.code.value}: {exc.message}") from None
        canary: monitoring_pb2.GetCanaryAnalysisResponse = cache["canary"]
        return canary

    async def measure(self, check: CheckSpec, ctx: Context, cache: dict[str, Any]) -> Measurement:
        if check.type == "promql":
            return await promql(self.prometheus, check, ctx)
        if check.type == "input-drift":
            return await self._drift(ctx)
        canary = await self._canary(ctx, cache)
        # The window ends at the newest record monitoring has; records older than the step are not evidence.
        if not canary.window.count or canary.window.end.ToNanoseconds() / 1e9 < ctx.step_started_at:
            return Measurement(None, 0, "no predictions logged since the step began")
        live = ctx.phase == "progressing"
        track = predictions_pb2.TRACK_CHALLENGER if live else predictions_pb2.TRACK_SHADOW
        tracks = {t.track: t for t in canary.tracks}
        mine = tracks.get(track)
        if check.type == "error-rate":
            # Every failed request of the track counts, whatever its status. One that failed before inference
            # routed it has no track; such failures count against the challenger (conservative: a canary
            # that breaks requests is rolled back, never promoted).
            unattributed = tracks.get(predictions_pb2.TRACK_UNSPECIFIED)
            errors = (mine.errors if mine else 0) + (unattributed.errors if unattributed else 0)
            total = (mine.count if mine else 0) + (unattributed.count if unattributed else 0)
            if not total:
                return Measurement(None, 0, f"no {'challenger' if live else 'shadow'} records in the window")
            return Measurement(errors / total, total)
        if mine is None or not mine.count:
            return Measurement(None, 0, f"no {'challenger' if live else 'shadow'} records in the window")
        if mine.version and mine.version != ctx.candidate:
            return Measurement(None, 0, f"the track serves v{mine.version}, not the candidate v{ctx.candidate}")
        if check.type == "latency-p99":
            return Measurement(mine.latency.p99, mine.count)
        if check.type == "prediction-psi":
            champion = tracks.get(predictions_pb2.TRACK_CHAMPION)
            samples = min(mine.count, champion.count if champion else 0)
            if not canary.HasField("prediction_psi"):
                return Measurement(None, samples, f"PSI needs {canary.min_records} records per track")
            return Measurement(canary.prediction_psi, samples)
        if check.type == "shadow-agreement":
            if not canary.shadow.HasField("agreement_rate"):
                return Measurement(None, 0, "no shadow pairs in the window")
            return Measurement(canary.shadow.agreement_rate, canary.shadow.pairs)
        raise ValueError(f"unknown check type {check.type}")

    async def _drift(self, ctx: Context) -> Measurement:
        try:
            status = await self.client.acall(
                self.stub.GetDriftStatus, monitoring_pb2.GetDriftStatusRequest(model_name=ctx.model), idempotent=True
            )
        except LooplineError as exc:
            raise SourceUnavailable(f"monitoring: {exc.code.value}: {exc.message}") from None
        track = predictions_pb2.TRACK_CHALLENGER if ctx.phase == "progressing" else predictions_pb2.TRACK_SHADOW
        for s in status.statuses:
            if s.model_version == ctx.candidate and s.track == track:
                if not s.HasField("latest") or s.latest.skipped_reason:
                    why = s.latest.skipped_reason if s.HasField("latest") else "no drift window closed yet"
                    return Measurement(None, 0, f"input drift of v{ctx.candidate}: {why}")
                if s.latest.window.end.ToNanoseconds() / 1e9 < ctx.step_started_at:
                    return Measurement(None, 0, "no drift window closed since the step began")
                share = s.latest.drifted_share
                if s.state == monitoring_pb2.ALERT_STATE_DRIFTING:
                    share = max(share, 1.0)  # an open alert fails whatever the bound
                return Measurement(share, float(s.latest.window.count))
        return Measurement(None, 0, f"no drift status for v{ctx.candidate} yet")

    async def close(self) -> None:
        await self.client.aclose()
        if self.prometheus is not None:
            await self.prometheus.close()


async def promql(prometheus: Prometheus | None, check: CheckSpec, ctx: Context) -> Measurement:
    if prometheus is None:
        return Measurement(None, None, "no Prometheus configured (LOOPLINE_ROLLOUT_PROMETHEUS_URL)")
    value = await prometheus.scalar(render_query(check.query, ctx))
    return Measurement(value, None, "" if value is not None else "the query returned no data")


def _sel(**labels: str) -> str:
    """A label selector; a value starting with ~ is a regular expression."""
    parts = (f'{k}{"=~" if v.startswith("~") else "="}"{v.removeprefix("~")}"' for k, v in labels.items())
    return "{" + ",".join(parts) + "}"


class PrometheusSource:
    """Builtin checks as PromQL over the inference and monitoring metrics (cluster mode)."""

    def __init__(self, prometheus: Prometheus) -> None:
        self.prometheus = prometheus

    async def measure(self, check: CheckSpec, ctx: Context, cache: dict[str, Any]) -> Measurement:
        p, m, w = self.prometheus, ctx.model, _interval(ctx.window_seconds)
        track = "challenger" if ctx.phase == "progressing" else "shadow"
        if check.type == "promql":
            return await promql(p, check, ctx)
        if check.type == "error-rate":
            metric = "loopline_inference_predict_requests_total"
            served = f'{metric}{{model="{m}",track=~"challenger|"}}'
            failed = f'{metric}{{model="{m}",track=~"challenger|",status!="ok"}}'
            total, errors = await asyncio.gather(
                p.scalar(f"sum(increase({served}[{w}]))"), p.scalar(f"sum(increase({failed}[{w}]))"),
            )
            if not total:
                return Measurement(None, 0, "no challenger requests in the window")
            return Measurement((errors or 0.0) / total, total)
        if check.type == "latency-p99":
            sel = _sel(model=m, track=track)
            value, count = await asyncio.gather(
                p.scalar(f"histogram_quantile(0.99, sum by (le) "
                         f"(rate(loopline_inference_predict_duration_seconds_bucket{sel}[{w}])))"),
                p.scalar(f"sum(increase(loopline_inference_predict_duration_seconds_count{sel}[{w}]))"),
            )
            return Measurement(value, count or 0.0)
        if check.type == "prediction-psi":
            value, count = await asyncio.gather(
                p.scalar(f"max(loopline_monitoring_canary_prediction_psi{_sel(model=m)})"),
                p.scalar(f"min(loopline_monitoring_canary_records{_sel(model=m, track='~champion|' + track)})"),
            )
            return Measurement(value, count)
        if check.type == "input-drift":
            sel = _sel(model=m, version=str(ctx.candidate), track=track)
            share, alert = await asyncio.gather(
                p.scalar(f"max(loopline_monitoring_drifted_share{sel})"),
                p.scalar(f"max(loopline_monitoring_drift_alert{sel})"),
            )
            if share is not None and alert:
                share = max(share, 1.0)
            return Measurement(share, None, "" if share is not None else "no drift window for the candidate")
        if check.type == "shadow-agreement":
            value = await p.scalar(f"max(loopline_monitoring_canary_shadow_agreement{_sel(model=m)})")
            return Measurement(value, None, "" if value is not None else "no shadow agreement exported")
        raise ValueError(f"unknown check type {check.type}")

    async def close(self) -> None:
        await self.prometheus.close()


async def analyze(source: Source, checks: tuple[CheckSpec, ...], ctx: Context) -> list[Outcome]:
    """Run every check that applies to the phase; a source that cannot answer raises SourceUnavailable."""
    cache: dict[str, Any] = {}
    outcomes = []
    for check in checks:
        if ctx.phase not in check.phases:
            continue
        outcomes.append(judge(check, await source.measure(check, ctx, cache)))
    return outcomes
