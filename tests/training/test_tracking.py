"""MLflow tracking: the training thread only enqueues; one logger thread sends everything in log_batch
requests (counted by the tracker), and the real MLflow server holds every value afterwards. The
log-batch REST path on its own: credentials, retries and MLflow's error message."""

from __future__ import annotations

import json
import math
import socket
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import certifi
import pytest
from loopline_training.job.tracking import (
    LOG_BATCH_ENDPOINT,
    MAX_METRICS_PER_BATCH,
    MlflowTracker,
    RestBatches,
    TrackingError,
)
from mlflow import MlflowClient
from mlflow.utils.credentials import get_default_host_creds

from tests.helpers import free_port
from tests.training.support import wait_for


def test_metrics_params_and_tags_travel_in_batches(mlflow_server: str) -> None:
    # only explicit flushes (and MLflow's per-request limit)
    tracker = MlflowTracker(tracking_uri=mlflow_server, flush_seconds=3600, batch_metrics=MAX_METRICS_PER_BATCH)
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


def test_a_batch_goes_as_soon_as_enough_metrics_wait(mlflow_server: str) -> None:
    # So that closing the run has little left to send, whenever training stops.
    tracker = MlflowTracker(tracking_uri=mlflow_server, flush_seconds=3600, batch_metrics=100)
    tracker.start(experiment="loopline-tests/tracking", run_name="by-count", tags={})
    run_id = tracker.wait_started()
    for batch in range(2):
        for step in range(batch * 100 + 1, batch * 100 + 101):
            tracker.metric("loss", 1.0 / step, step)
        wait_for(lambda: tracker.batches == batch + 1, timeout=30, what=f"batch {batch + 1} of 100 metrics")  # noqa: B023
    for step in range(201, 251):
        tracker.metric("loss", 1.0 / step, step)
    tracker.end("FINISHED")
    assert tracker.batches == 3  # the last 50 went with closing the run
    assert len(MlflowClient(mlflow_server).get_metric_history(run_id, "loss")) == 250


def test_flush_sends_what_is_logged_without_waiting_for_it(mlflow_server: str) -> None:
    # The job flushes when training ends: the tail of the curve goes while the hold-out is scored.
    tracker = MlflowTracker(tracking_uri=mlflow_server, flush_seconds=3600, batch_metrics=1000)
    tracker.start(experiment="loopline-tests/tracking", run_name="flush-now", tags={})
    run_id = tracker.wait_started()
    for step in range(1, 41):
        tracker.metric("loss", 1.0 / step, step)
    tracker.flush()
    client = MlflowClient(mlflow_server)
    wait_for(lambda: len(client.get_metric_history(run_id, "loss")) == 40, timeout=30,
             what="the flushed metrics in MLflow")
    assert tracker.batches == 1
    tracker.end("FINISHED")
    assert tracker.batches == 1  # nothing was left for closing the run


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


def test_values_mlflow_json_cannot_hold_plainly_arrive_and_nothing_is_printed(
        mlflow_server: str, capsys: pytest.CaptureFixture[str]) -> None:
    tracker = MlflowTracker(tracking_uri=mlflow_server, flush_seconds=3600)
    tracker.start(experiment="loopline-tests/tracking", run_name="special", tags={"note": "ünïcode \"quoted\""})
    tracker.metric("loss", float("nan"), 1)
    tracker.metric("loss", float("inf"), 2)
    tracker.metric("loss", float("-inf"), 3)
    tracker.log_params({"path": "a/b c", "empty": ""})
    run_id = tracker.wait_started()
    tracker.end("FINISHED")
    assert tracker._rest is not None  # an HTTP server: the REST path, not the client's log_batch
    assert "View run" not in capsys.readouterr().out  # the job's stdout is its JSON log

    client = MlflowClient(mlflow_server)
    values = [m.value for m in sorted(client.get_metric_history(run_id, "loss"), key=lambda m: m.step)]
    # MLflow's store keeps infinities as the largest floats, whichever way they were sent
    assert math.isnan(values[0]) and values[1:] == [sys.float_info.max, -sys.float_info.max]
    run = client.get_run(run_id)
    assert run.data.tags["note"] == 'ünïcode "quoted"' and run.data.params == {"path": "a/b c", "empty": ""}


def test_a_tracking_uri_that_is_no_http_server_goes_through_the_client(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow's file store, kept for cases like this
    uri = (tmp_path / "mlruns").as_uri()  # a local file store
    tracker = MlflowTracker(tracking_uri=uri, flush_seconds=3600)
    tracker.start(experiment="local", run_name="client-path", tags={"a": "b"})
    tracker.log_params({"p": "1"})
    for step in range(1, 4):
        tracker.metric("loss", 1.0 / step, step)
    run_id = tracker.wait_started()
    tracker.end("FINISHED")
    assert tracker._rest is None and tracker.batches == 1
    run = MlflowClient(uri).get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.params == {"p": "1"} and run.data.metrics["loss"] == 1 / 3


class _Recorder(BaseHTTPRequestHandler):
    """Answers log-batch with the statuses queued in `server.answers`, recording each request."""

    def do_POST(self) -> None:
        server: Any = self.server
        body = self.rfile.read(int(self.headers["Content-Length"]))
        server.seen.append((self.path, dict(self.headers), json.loads(body)))
        status, answer = server.answers.pop(0) if server.answers else (200, {})
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[Any]:
    server: Any = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    server.seen, server.answers = [], []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_log_batch_carries_the_token_and_retries_what_mlflow_retries(
        recorder: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "secret-token")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_JITTER", "0")
    uri = f"http://127.0.0.1:{recorder.server_address[1]}/prefix"
    creds = get_default_host_creds(uri)
    assert RestBatches.can_serve(uri, creds)
    rest = RestBatches(uri, creds)
    recorder.answers = [(503, {"error_code": "TEMPORARILY_UNAVAILABLE", "message": "busy"})]
    body = {"run_id": "r1", "metrics": [{"key": "loss", "value": 0.5, "timestamp": 1, "step": 2}], "params": [],
            "tags": []}
    rest.post(body)
    assert len(recorder.seen) == 2  # the 503, then the retry
    path, headers, sent = recorder.seen[-1]
    assert path == "/prefix" + LOG_BATCH_ENDPOINT and sent == body
    assert headers["Authorization"] == "Bearer secret-token" and headers["Content-Type"] == "application/json"

    recorder.answers = [(400, {"error_code": "INVALID_PARAMETER_VALUE", "message": "bad metric"})]
    with pytest.raises(TrackingError, match="HTTP 400: INVALID_PARAMETER_VALUE: bad metric"):
        rest.post(body)
    assert len(recorder.seen) == 3  # a 400 is not retried
    rest.close()


def test_what_the_rest_path_cannot_do_like_the_client_is_left_to_the_client(monkeypatch: pytest.MonkeyPatch) -> None:
    uri = "http://mlflow.example:5000"
    assert not RestBatches.can_serve("databricks", get_default_host_creds("databricks"))
    monkeypatch.setenv("MLFLOW_TRACKING_AUTH", "some-plugin")
    assert not RestBatches.can_serve(uri, get_default_host_creds(uri))
    monkeypatch.delenv("MLFLOW_TRACKING_AUTH")
    monkeypatch.setenv("http_proxy", "http://proxy.example:3128")
    monkeypatch.setenv("no_proxy", "")
    assert not RestBatches.can_serve(uri, get_default_host_creds(uri))
    monkeypatch.setenv("no_proxy", "mlflow.example")
    assert RestBatches.can_serve(uri, get_default_host_creds(uri))


def test_https_verifies_as_mlflow_s_client_would(monkeypatch: pytest.MonkeyPatch) -> None:
    uri = "https://mlflow.example"
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)

    def pool() -> Any:
        return RestBatches(uri, get_default_host_creds(uri)).pool

    assert pool().cert_reqs == "CERT_REQUIRED" and pool().ca_certs == certifi.where()
    monkeypatch.setenv("MLFLOW_TRACKING_SERVER_CERT_PATH", "/etc/mlflow/ca.pem")
    assert pool().ca_certs == "/etc/mlflow/ca.pem"
    monkeypatch.delenv("MLFLOW_TRACKING_SERVER_CERT_PATH")
    monkeypatch.setenv("MLFLOW_TRACKING_INSECURE_TLS", "true")
    assert pool().cert_reqs == "CERT_NONE"
