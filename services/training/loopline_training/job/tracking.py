"""Experiment tracking behind a small adapter: MLflow (through its client, with bounded timeouts and
retries) or nothing at all (the benchmark's "logging off").

MLflow requests never run on the training thread. The tracker's calls only append an item to one
queue (a deque: appending is atomic, no lock, no wake-up); one logger thread takes the items in order
and makes every request: creating the run (with its first tags, while the training set loads), then
`log_batch` requests that each carry whatever metrics, params and tags have accumulated (up to MLflow's
per-request limits), sent as soon as `batch_metrics` metrics wait, at least every `flush_seconds`,
and whenever the job needs them sent (`flush` when training ends, without waiting; `drain`, `end`,
before an artifact upload). Sending by count
bounds what `end` has left to send, and so how long the training thread waits for it, whenever
training stops. A per-iteration metric therefore costs the training thread one append of a tuple: no
MLflow object, no lock, and the logger thread is not woken for it (it wakes on its flush timer, on
control calls, and when `batch_metrics` items or half the queue wait). Only a full queue
(`max_queued` items, MLflow far behind) makes the training thread wait, and then for at most
`end_timeout` seconds before the job fails with a TrackingError rather than dropping values. Artifact
uploads wait for what is queued before them, then run in the caller's thread. `end` sends what is left,
closes the run and raises the first MLflow error, if any (so a job whose tracking failed fails too).

The log_batch requests are MLflow's documented REST call (`POST /api/2.0/mlflow/runs/log-batch`),
built here as compact JSON and sent over one kept-alive urllib3 connection pool (`RestBatches`), with
MLflow's host credentials (token or basic auth, TLS settings) and its timeout and retry settings
(`MLFLOW_HTTP_REQUEST_*`), not through `MlflowClient.log_batch`. Why: measured here, the client's way
costs 21-28 ms of CPU for 800 metrics and about 3 ms for a small batch (each value becomes an entity,
a protobuf and a dict, its int64 fields are marked, the JSON is pretty-printed with `indent=2`, which
forces Python's pure-Python encoder, and every request probes for Databricks by trying to import
absent modules), against 2.4 ms and 0.8 ms built directly. On the ~2 s benchmark workload that
difference alone was most of the 2 % budget (issue 5). Everything else (experiment, run, closing the
run, artifacts, logged models) goes through the client. Where this path cannot do what the client would
(a tracking URI that is not an HTTP(S) server, a proxy, AWS SigV4, an auth plugin, Databricks) the
client's log_batch is used instead.

Two MLflow defaults are turned off for the job's process (`quiet_mlflow`): the run URL that
`set_terminated` prints (it costs a get_run request before closing the run, and the job's stdout is its
JSON log) and MLflow's usage telemetry (a background request to an outside endpoint at import and a
record per client call; `MLFLOW_DISABLE_TELEMETRY=false` turns it back on).
"""

from __future__ import annotations

import collections
import json
import logging
import math
import os
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

from loopline_training.job.errors import JobError

log = logging.getLogger(__name__)

# MLflow's limits per log_batch request.
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_PER_BATCH = 100
MAX_TAGS_PER_BATCH = 100
MAX_PARAM_CHARS = 6000
LOG_BATCH_ENDPOINT = "/api/2.0/mlflow/runs/log-batch"
R = TypeVar("R")


class TrackingError(JobError):
    """MLflow refused or could not be reached; the message says why."""


class Tracker(Protocol):
    run_id: str
    experiment_id: str

    def start(self, *, experiment: str, run_name: str, tags: dict[str, str]) -> None: ...

    def wait_started(self) -> str: ...

    def log_params(self, params: dict[str, str]) -> None: ...

    def metric(self, key: str, value: float, step: int) -> None: ...

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None: ...

    def flush(self) -> None: ...

    def set_tags(self, tags: dict[str, str]) -> None: ...

    def log_artifacts(self, folder: Path, artifact_path: str) -> None: ...

    def log_model(self, folder: Path, *, name: str, tags: dict[str, str]) -> str: ...

    def end(self, status: str) -> None: ...


def bound_mlflow_http(*, timeout_seconds: float, max_retries: int) -> None:
    """MLflow's client retries for minutes by default when the server is down: bound it (read at request
    time from the environment, so this works before or after importing mlflow)."""
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(int(max(1, timeout_seconds)))
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(max_retries)
    os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] = "1"
    os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_JITTER"] = "0.5"


def quiet_mlflow() -> None:
    """No run URL printed to stdout when a run ends (and no get_run request for it); no usage telemetry
    unless MLFLOW_DISABLE_TELEMETRY says otherwise. Takes effect for telemetry only if called before mlflow
    is first imported (the tracker does so)."""
    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def _mlflow_setting(name: str) -> Any:
    """One of MLflow's environment settings (`mlflow.environment_variables`), with MLflow's default."""
    from mlflow import environment_variables

    return getattr(environment_variables, name).get()


def _json_number(value: float) -> float | str:
    """A metric value as proto3 JSON has it: non-finite values are the strings MLflow's server parses."""
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


class RestBatches:
    """MLflow's log-batch REST call over one kept-alive connection pool, with MLflow's credentials and its
    timeout and retry settings (read from the environment at each request, as MLflow's client does)."""

    # Retried as MLflow's client retries them (log-batch is idempotent: MLflow drops exact duplicates).
    RETRY_STATUSES = (429, 500, 502, 503, 504)

    def __init__(self, tracking_uri: str, creds: Any) -> None:
        import urllib3

        self.path = urllib.parse.urlsplit(tracking_uri).path.rstrip("/") + LOG_BATCH_ENDPOINT
        headers = {"Content-Type": "application/json"}
        if creds.username and creds.password:
            headers.update(urllib3.util.make_headers(basic_auth=f"{creds.username}:{creds.password}"))
        elif creds.token:
            headers["Authorization"] = f"Bearer {creds.token}"
        tls: dict[str, Any] = {}
        if tracking_uri.lower().startswith("https://"):
            import certifi

            # The CA bundle MLflow's client (requests) would use: MLflow's setting, requests' variables,
            # else certifi's.
            bundle = (creds.server_cert_path or os.environ.get("REQUESTS_CA_BUNDLE")
                      or os.environ.get("CURL_CA_BUNDLE") or certifi.where())
            tls = {"cert_reqs": "CERT_NONE" if creds.ignore_tls_verification else "CERT_REQUIRED",
                   "ca_certs": None if creds.ignore_tls_verification else bundle, "cert_file": creds.client_cert_path}
        self.pool = urllib3.connection_from_url(tracking_uri, maxsize=1, block=False, headers=headers, **tls)

    @staticmethod
    def can_serve(tracking_uri: str, creds: Any) -> bool:
        """True if this path sends what MLflow's client would: HTTP(S), token or basic auth, no proxy."""
        parts = urllib.parse.urlsplit(tracking_uri)
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            return False
        if creds.aws_sigv4 or creds.auth or creds.use_databricks_sdk or creds.client_secret:
            return False
        proxied = parts.scheme.lower() in urllib.request.getproxies()
        return not proxied or bool(urllib.request.proxy_bypass(parts.hostname))

    def post(self, body: dict[str, Any]) -> None:
        """One log-batch request; raises TrackingError with MLflow's message when it is refused."""
        import urllib3

        retries = urllib3.Retry(
            total=int(_mlflow_setting("MLFLOW_HTTP_REQUEST_MAX_RETRIES")),
            backoff_factor=float(_mlflow_setting("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR")),
            backoff_jitter=float(_mlflow_setting("MLFLOW_HTTP_REQUEST_BACKOFF_JITTER")),
            status_forcelist=self.RETRY_STATUSES, allowed_methods=None, raise_on_status=False,
        )
        timeout = float(_mlflow_setting("MLFLOW_HTTP_REQUEST_TIMEOUT"))
        response = self.pool.urlopen(
            "POST", self.path, body=json.dumps(body, separators=(",", ":"), allow_nan=False).encode(),
            retries=retries, timeout=urllib3.Timeout(connect=timeout, read=timeout),
        )
        if response.status != 200:
            text = response.data.decode(errors="replace")
            try:
                error = json.loads(text)
                text = f"{error.get('error_code', '')}: {error.get('message', text)}"
            except ValueError:
                text = text[:500]
            raise TrackingError(f"log-batch refused: HTTP {response.status}: {text}")

    def close(self) -> None:
        self.pool.close()


def _nothing() -> None:
    """A control call that does nothing: queued by `flush`, it has what came before it sent."""


class _Barrier:
    """Queue item: send everything accumulated now, then signal (for `drain` and `end`)."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = threading.Event()


class MlflowTracker:
    def __init__(
        self, *, tracking_uri: str, flush_seconds: float = 2.0, batch_metrics: int = 250,
        end_timeout: float = 120.0, max_queued: int = 100_000,
    ) -> None:
        quiet_mlflow()
        from mlflow import MlflowClient

        self.client = MlflowClient(tracking_uri)
        self.tracking_uri = tracking_uri
        self._rest: RestBatches | None = None  # chosen by the logger thread at its first batch
        self._rest_checked = False
        self.flush_seconds = flush_seconds
        self.batch_metrics = max(1, min(batch_metrics, MAX_METRICS_PER_BATCH))
        self.end_timeout = end_timeout
        self.run_id = ""
        self.experiment_id = ""
        self.batches = 0  # log_batch requests made (the benchmark and tests read it)
        self.requests = 0  # every MLflow request the logger thread made (the benchmark reads it)
        # Items: a metric (key, value, timestamp ms, step); ("params" | "tags", [(key, value), ...]);
        # a callable to run in the logger thread; a _Barrier. Appended by any thread, taken by the
        # logger thread only.
        self._items: collections.deque[Any] = collections.deque()
        self._max_queued = max_queued
        # The logger thread is woken when this many items wait (a batch's worth, or half the queue).
        self._high_water = max(1, min(self.batch_metrics, max_queued // 2))
        self._wake = threading.Event()
        self._room = threading.Event()  # set when the logger thread has taken every queued item
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._worker: threading.Thread | None = None
        self._ended = False
        self._closed = False  # the logger thread stops; later calls are ignored
        # Accumulated by the logger thread until the next log_batch.
        self._metrics: list[tuple[str, float, int, int]] = []
        self._params: list[tuple[str, str]] = []
        self._tags: list[tuple[str, str]] = []

    # ---- the logger thread -----------------------------------------------------------------------
    def _run(self) -> None:
        deadline = time.monotonic() + self.flush_seconds
        items = self._items
        while True:
            self._wake.wait(max(0.0, deadline - time.monotonic()))
            self._wake.clear()
            while items:
                self._take(items.popleft())
            self._room.set()
            if self._closed:
                return
            if time.monotonic() >= deadline or len(self._metrics) >= self.batch_metrics:
                self._guarded(self._send)
                deadline = time.monotonic() + self.flush_seconds

    def _take(self, item: Any) -> None:
        if type(item) is tuple:
            if len(item) == 4:
                self._metrics.append(item)
                if len(self._metrics) >= MAX_METRICS_PER_BATCH:
                    self._guarded(self._send)
            else:
                kind, pairs = item
                (self._params if kind == "params" else self._tags).extend(pairs)
        elif type(item) is _Barrier:
            try:
                self._guarded(self._send)
            finally:
                item.done.set()
        else:
            self._guarded(self._send)  # what was logged before a control call goes first
            self._guarded(item)

    def _guarded(self, op: Callable[[], None]) -> None:
        if self._error is not None:  # after a failure nothing more is sent; `end` reports it
            return
        try:
            op()
        except Exception as exc:
            log.warning("MLflow request failed: %s", exc)
            self._error = exc
            self._started.set()

    def _send(self) -> None:
        """Everything accumulated, in as few log_batch requests as MLflow's limits allow."""
        if not self.run_id:
            return
        while self._metrics or self._params or self._tags:
            params, self._params = self._params[:MAX_PARAMS_PER_BATCH], self._params[MAX_PARAMS_PER_BATCH:]
            tags, self._tags = self._tags[:MAX_TAGS_PER_BATCH], self._tags[MAX_TAGS_PER_BATCH:]
            room = MAX_METRICS_PER_BATCH - len(params) - len(tags)
            metrics, self._metrics = self._metrics[:room], self._metrics[room:]
            self._batch(metrics, params, tags)
            self.batches += 1
            self.requests += 1

    def _batch(self, metrics: list[tuple[str, float, int, int]], params: list[tuple[str, str]],
               tags: list[tuple[str, str]]) -> None:
        if not self._rest_checked:
            from mlflow.utils.credentials import get_default_host_creds

            self._rest_checked = True
            creds = get_default_host_creds(self.tracking_uri)  # type: ignore[no-untyped-call]
            if RestBatches.can_serve(self.tracking_uri, creds):
                self._rest = RestBatches(self.tracking_uri, creds)
        if self._rest is None:
            self._client_batch(metrics, params, tags)
            return
        self._rest.post({
            "run_id": self.run_id,
            "metrics": [{"key": k, "value": _json_number(v), "timestamp": ts, "step": step}
                        for k, v, ts, step in metrics],
            "params": [{"key": k, "value": v} for k, v in params],
            "tags": [{"key": k, "value": v} for k, v in tags],
        })

    def _client_batch(self, metrics: list[tuple[str, float, int, int]], params: list[tuple[str, str]],
                      tags: list[tuple[str, str]]) -> None:
        from mlflow.entities import Metric, Param, RunTag

        self.client.log_batch(
            self.run_id, metrics=[Metric(k, v, ts, step) for k, v, ts, step in metrics],
            params=[Param(k, v) for k, v in params], tags=[RunTag(k, v) for k, v in tags],
        )

    def _put(self, item: Any, *, wake: bool) -> None:
        if self._closed:
            return
        items = self._items
        if len(items) >= self._max_queued:
            self._wait_for_room()
        items.append(item)
        if (wake or len(items) >= self._high_water) and not self._wake.is_set():
            self._wake.set()

    def _wait_for_room(self) -> None:
        deadline = time.monotonic() + self.end_timeout
        while len(self._items) >= self._max_queued:
            self._room.clear()
            self._wake.set()
            if len(self._items) < self._max_queued:  # taken meanwhile
                return
            if not self._room.wait(max(0.0, deadline - time.monotonic())):
                raise TrackingError(
                    f"MLflow fell {self._max_queued} values behind and took none for {self.end_timeout:.0f} s"
                )

    def flush(self) -> None:
        """Have what is logged so far sent now, without waiting for it (the job calls this when training
        ends, so that the last of the curve is sent while the hold-out is scored, not when the run ends)."""
        if self._worker is not None:
            self._put(_nothing, wake=True)

    def drain(self, timeout: float = 60.0) -> None:
        """Send everything logged so far and wait until it was sent; raise the first MLflow error."""
        if self._worker is None or self._closed:
            self._raise()
            return
        barrier = _Barrier()
        self._put(barrier, wake=True)
        if not barrier.done.wait(timeout):
            raise TrackingError(f"MLflow did not take the queued requests within {timeout:.0f} s")
        self._raise()

    def _raise(self) -> None:
        if self._error is not None:
            raise TrackingError(f"MLflow: {type(self._error).__name__}: {self._error}") from self._error

    def _sync(self, fn: Callable[[], R]) -> R:
        """Run `fn` in the caller's thread once everything queued before it was sent."""
        self.drain(self.end_timeout)
        return fn()

    # ---- Tracker ---------------------------------------------------------------------------------
    def _experiment(self, name: str) -> str:
        self.requests += 1
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return str(found.experiment_id)
        try:
            self.requests += 1
            return str(self.client.create_experiment(name))
        except Exception:  # created meanwhile by another job
            self.requests += 1
            found = self.client.get_experiment_by_name(name)
            if found is None:
                raise
            return str(found.experiment_id)

    def start(self, *, experiment: str, run_name: str, tags: dict[str, str]) -> None:
        """Create the run in the background (the caller goes on at once) with its first tags."""
        first = sorted((k, str(v)) for k, v in tags.items())
        with_run, later = first[:MAX_TAGS_PER_BATCH], first[MAX_TAGS_PER_BATCH:]

        def create() -> None:
            self.experiment_id = self._experiment(experiment)
            self.requests += 1
            run = self.client.create_run(self.experiment_id, run_name=run_name, tags=dict(with_run))
            self.run_id = str(run.info.run_id)
            self._started.set()

        self._worker = threading.Thread(target=self._run, name="mlflow-logger", daemon=True)
        self._worker.start()
        self._put(create, wake=True)
        if later:
            self._put(("tags", later), wake=False)

    def wait_started(self, timeout: float = 60.0) -> str:
        """The run id, once the run exists."""
        if not self._started.wait(timeout):
            raise TrackingError(f"MLflow did not create the run within {timeout:.0f} s")
        self._raise()
        return self.run_id

    def log_params(self, params: dict[str, str]) -> None:
        self._put(("params", sorted((k, str(v)[:MAX_PARAM_CHARS]) for k, v in params.items())), wake=False)

    def set_tags(self, tags: dict[str, str]) -> None:
        self._put(("tags", sorted((k, str(v)) for k, v in tags.items())), wake=False)

    def metric(self, key: str, value: float, step: int) -> None:
        self._put((key, float(value), int(time.time() * 1000), int(step)), wake=False)

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        stamp = int(time.time() * 1000)
        for key, value in metrics.items():
            self._put((key, float(value), stamp, int(step)), wake=False)

    def log_artifacts(self, folder: Path, artifact_path: str) -> None:
        self._sync(lambda: self.client.log_artifacts(self.run_id, str(folder), artifact_path))

    def log_model(self, folder: Path, *, name: str, tags: dict[str, str]) -> str:
        """An MLflow 3 logged model of this run holding `folder`'s files; its id."""
        from mlflow.entities import LoggedModelStatus

        def log_it() -> str:
            model = self.client.create_logged_model(experiment_id=self.experiment_id, name=name,
                                                    source_run_id=self.run_id, tags=tags)
            self.client.log_model_artifacts(model.model_id, str(folder))
            self.client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
            return str(model.model_id)

        return self._sync(log_it)

    def end(self, status: str) -> None:
        """Send what is left and close the run (FINISHED, FAILED or KILLED); raise the first MLflow error."""
        if self._worker is None or self._ended:
            return
        self._ended = True

        def terminate() -> None:
            if self.run_id:
                self.requests += 1
                self.client.set_terminated(self.run_id, status=status)

        try:
            self._put(terminate, wake=True)
            self.drain(self.end_timeout)
        finally:
            # After a timeout the logger thread may still be inside a request: it is a daemon and stops
            # after that request.
            self._closed = True
            self._wake.set()
            self._worker.join(5.0)
            if self._rest is not None and not self._worker.is_alive():
                self._rest.close()


class NullTracker:
    """Tracks nothing: what a job costs without experiment tracking."""

    run_id = ""
    experiment_id = ""

    def start(self, *, experiment: str, run_name: str, tags: dict[str, str]) -> None:
        pass

    def wait_started(self) -> str:
        return ""

    def log_params(self, params: dict[str, str]) -> None:
        pass

    def metric(self, key: str, value: float, step: int) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        pass

    def flush(self) -> None:
        pass

    def set_tags(self, tags: dict[str, str]) -> None:
        pass

    def log_artifacts(self, folder: Path, artifact_path: str) -> None:
        pass

    def log_model(self, folder: Path, *, name: str, tags: dict[str, str]) -> str:
        return ""

    def end(self, status: str) -> None:
        pass
