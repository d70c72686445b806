"""Experiment tracking behind a small adapter: MLflow (through its client, with bounded timeouts and
retries) or nothing at all (the benchmark's "logging off").

MLflow requests never run on the training thread. The tracker's calls only put an item on one bounded
queue; one logger thread takes the items in order and makes every request: creating the run (with its
first tags, while the training set loads), then `log_batch` requests that each carry whatever metrics,
params and tags have accumulated (up to MLflow's per-request limits), sent every `flush_seconds` and
whenever the job needs them sent (`drain`, `end`, before an artifact upload). A per-iteration metric
therefore costs the training thread one `put` of a tuple: no MLflow object, no lock held while a request
runs, and the logger thread is not even woken for it (it wakes on its flush timer, on control calls, and
when the queue is half full). Only a full queue (`max_queued` items, MLflow far behind) makes the
training thread wait, and then for at most `end_timeout` seconds before the job fails with a
TrackingError rather than dropping values. Artifact uploads wait for what is queued before them, then run
in the caller's thread. `end` sends what is left, closes the run and raises the first MLflow error, if
any (so a job whose tracking failed fails too).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
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


class _Flush:
    """Queue item: send everything accumulated now (a barrier for `drain` and `end`)."""


_FLUSH = _Flush()


class MlflowTracker:
    def __init__(
        self, *, tracking_uri: str, flush_seconds: float = 2.0, end_timeout: float = 120.0,
        max_queued: int = 100_000,
    ) -> None:
        from mlflow import MlflowClient

        self.client = MlflowClient(tracking_uri)
        self.flush_seconds = flush_seconds
        self.end_timeout = end_timeout
        self.run_id = ""
        self.experiment_id = ""
        self.batches = 0  # log_batch requests made (the benchmark and tests read it)
        self.requests = 0  # every MLflow request the logger thread made (the benchmark reads it)
        # Items: a metric (key, value, timestamp ms, step); ("params" | "tags", [(key, value), ...]);
        # a callable to run in the logger thread; _FLUSH.
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_queued)
        self._high_water = max(1, max_queued // 2)
        self._wake = threading.Event()
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
        while True:
            self._wake.wait(max(0.0, deadline - time.monotonic()))
            self._wake.clear()
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                try:
                    self._take(item)
                finally:
                    self._queue.task_done()
            if self._closed:
                return
            if time.monotonic() >= deadline:
                self._guarded(self._send)
                deadline = time.monotonic() + self.flush_seconds

    def _take(self, item: Any) -> None:
        if type(item) is tuple and len(item) == 4:
            self._metrics.append(item)
            if len(self._metrics) >= MAX_METRICS_PER_BATCH:
                self._guarded(self._send)
        elif item is _FLUSH:
            self._guarded(self._send)
        elif type(item) is tuple:
            kind, pairs = item
            (self._params if kind == "params" else self._tags).extend(pairs)
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
        from mlflow.entities import Metric, Param, RunTag

        while self._metrics or self._params or self._tags:
            params, self._params = self._params[:MAX_PARAMS_PER_BATCH], self._params[MAX_PARAMS_PER_BATCH:]
            tags, self._tags = self._tags[:MAX_TAGS_PER_BATCH], self._tags[MAX_TAGS_PER_BATCH:]
            room = MAX_METRICS_PER_BATCH - len(params) - len(tags)
            metrics, self._metrics = self._metrics[:room], self._metrics[room:]
            self.client.log_batch(
                self.run_id, metrics=[Metric(k, v, ts, step) for k, v, ts, step in metrics],
                params=[Param(k, v) for k, v in params], tags=[RunTag(k, v) for k, v in tags],
            )
            self.batches += 1
            self.requests += 1

    def _put(self, item: Any, *, wake: bool) -> None:
        if self._closed:
            return
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self._wake.set()
            try:
                self._queue.put(item, timeout=self.end_timeout)
            except queue.Full:
                raise TrackingError(
                    f"MLflow fell {self._queue.maxsize} values behind and took none for {self.end_timeout:.0f} s"
                ) from None
        if wake or self._queue.qsize() >= self._high_water:
            self._wake.set()

    def drain(self, timeout: float = 60.0) -> None:
        """Send everything logged so far and wait until it was sent; raise the first MLflow error."""
        if self._worker is None:
            return
        self._put(_FLUSH, wake=True)
        deadline = time.monotonic() + timeout
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TrackingError(f"MLflow did not take the queued requests within {timeout:.0f} s")
                self._queue.all_tasks_done.wait(remaining)
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

    def set_tags(self, tags: dict[str, str]) -> None:
        pass

    def log_artifacts(self, folder: Path, artifact_path: str) -> None:
        pass

    def log_model(self, folder: Path, *, name: str, tags: dict[str, str]) -> str:
        return ""

    def end(self, status: str) -> None:
        pass
