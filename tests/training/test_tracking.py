"""MLflow tracking: the training thread only enqueues; one logger thread sends everything in log_batch
requests (counted by the tracker), and the real MLflow server holds every value afterwards."""

from __future__ import annotations

import math
import socket
import threading

import pytest
from loopline_training.job.tracking import MAX_METRICS_PER_BATCH, MlflowTracker, TrackingError
from mlflow import MlflowClient

from tests.helpers import free_port
from tests.training.support import wait_for


def test_metrics_params_and_tags_travel_in_batches(mlflow_server: str) -> None:
    tracker = MlflowTracker(tracking_uri=mlflow_server, flush_seconds=3600)  # only explicit flushes
    tracker.start(experiment="loopline-tests/tracking", run_name="batches",
                  tags={f"tag_{i}": str(i) for i in range(150)})
    tracker.log_params({f"param_{i}": str(i) for i in range(120)})
    iterations = 1200
    for step in range(1, iterations + 1):
        tracker.metric("loss", 1.0 / step, step)
        tracker.metric("auc", 0.5 + step / 10_000, step)
    run_id = tracker.wait_started()
    assert threading.current_thread().name != "mlflow-logger" and tracker._worker is not None
    tracker.drain()
    # 100 tags go with create_run; the other 50 tags, 120 params and 2,400 metrics share log_batch
    # requests: at most one more than their count over MLflow's 1,000-entity limit (a batch may go out
    # early when 1,000 metrics pile up), far from one request per value.
    values = 50 + 120 + 2 * iterations
    assert math.ceil(values / MAX_METRICS_PER_BATCH) <= tracker.batches <= math.ceil(values / MAX_METRICS_PER_BATCH) + 1
    sent = tracker.batches
    tracker.end("FINISHED")
    assert tracker.batches == sent  # nothing was left over for `end` but closing the run
    # get_experiment_by_name (+ create_experiment the first time), create_run, the batches, set_terminated
    assert sent + 3 <= tracker.requests <= sent + 4

    client = MlflowClient(mlflow_server)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and len(run.data.params) == 120
    assert run.data.tags["tag_0"] == "0" and run.data.tags["tag_149"] == "149"
    history = client.get_metric_history(run_id, "loss")
    assert sorted(m.step for m in history) == list(range(1, iterations + 1))
    assert run.data.metrics["auc"] == 0.5 + iterations / 10_000


def test_the_logger_thread_sends_what_accumulated_on_its_timer(mlflow_server: str) -> None:
    tracker = MlflowTracker(tracking_uri=mlflow_server, flush_seconds=0.05)
    tracker.start(experiment="loopline-tests/tracking", run_name="flush", tags={})
    for step in range(1, 51):
        tracker.metric("loss", 1.0 / step, step)
    run_id = tracker.wait_started()
    client = MlflowClient(mlflow_server)
    wait_for(lambda: len(client.get_metric_history(run_id, "loss")) == 50, timeout=30,
             what="the logger thread to send the metrics")
    sent = tracker.batches
    tracker.end("FINISHED")
    assert tracker.batches == sent and len(client.get_metric_history(run_id, "loss")) == 50


def test_an_unreachable_server_fails_the_tracking_within_bounds() -> None:
    tracker = MlflowTracker(tracking_uri=f"http://127.0.0.1:{free_port()}", flush_seconds=3600, end_timeout=30)
    tracker.start(experiment="nowhere", run_name="x", tags={"a": "b"})
    tracker.metric("loss", 1.0, 1)
    with pytest.raises(TrackingError, match="MLflow: "):
        tracker.wait_started(timeout=60)
    with pytest.raises(TrackingError):
        tracker.end("FAILED")


def test_a_full_queue_fails_the_job_instead_of_dropping_values(monkeypatch: pytest.MonkeyPatch) -> None:
    # A server that takes the connection and never answers keeps the logger thread inside its first
    # request, so nothing leaves the queue.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        tracker = MlflowTracker(tracking_uri=f"http://127.0.0.1:{port}", flush_seconds=3600, end_timeout=1,
                                max_queued=10)
        tracker.start(experiment="silent", run_name="x", tags={})
        silent.settimeout(30)
        held, _ = silent.accept()  # the logger thread is now inside its first request
        for step in range(10):
            tracker.metric("loss", 1.0, step)
        with pytest.raises(TrackingError, match="fell 10 values behind"):
            tracker.metric("loss", 1.0, 10)
        with pytest.raises(TrackingError):
            tracker.end("FAILED")
        held.close()
