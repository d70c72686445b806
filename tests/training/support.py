"""What the training tests share: the processes they start (MLflow server, registry, training service),
job specs over the seeded dataset, clients over both transports, a job-events reader, and polling."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import grpc
import httpx
import psutil
from google.protobuf.json_format import MessageToDict, ParseDict
from kafka import KafkaConsumer

from loopline.common.v1 import types_pb2
from loopline.events.v1 import training_jobs_pb2
from loopline.training.v1 import training_pb2 as pb
from loopline.training.v1 import training_pb2_grpc as pb_grpc
from loopline_common.errors import GRPC_ERROR_DETAIL_KEY
from loopline_common.topics import TRAINING_JOBS
from tests.helpers import REPO, RunningProcess, free_port, start_process, stop_group

# Infrastructure that lives in the developer environment (.venv), not in the training one.
DEV_BIN = REPO / ".venv" / "bin"
T = TypeVar("T")

TERMINAL = {
    training_jobs_pb2.JOB_STATE_SUCCEEDED, training_jobs_pb2.JOB_STATE_FAILED, training_jobs_pb2.JOB_STATE_CANCELLED,
}
STATE = training_jobs_pb2.JobState


def wait_for(condition: Callable[[], T | None], *, timeout: float, what: str, interval: float = 0.2) -> T:
    """Poll `condition` until it returns something truthy (returned), or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = condition()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")
        time.sleep(interval)


@contextmanager
def http_service(
    argv: list[str], env: dict[str, str], health_url: str, log: Path, timeout: float, *, wait: bool = True
) -> Iterator[Callable[[], None]]:
    """A process (its own session) that is up once `health_url` answers 200; stopped at exit. Yields the
    wait (already done unless `wait=False`, for starting other things meanwhile)."""
    proc = subprocess.Popen(argv, env={**os.environ, **env}, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        def healthy() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"{argv[0]} exited: {log.read_text()[-2000:]}")
            try:
                return httpx.get(health_url, timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        def wait_until_healthy() -> None:
            wait_for(healthy, timeout=timeout, what=f"{health_url} to answer")

        if wait:
            wait_until_healthy()
        yield wait_until_healthy
    finally:
        stop_group(proc)


class ApiError(Exception):
    def __init__(self, code: str, message: str, details: dict[str, str], status: object) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.details, self.status = code, message, details, status


class GrpcJobs:
    """TrainingService over gRPC; failures raise ApiError with the server's Loopline error."""

    transport = "grpc"

    def __init__(self, target: str) -> None:
        self.channel = grpc.insecure_channel(target)
        self.stub = pb_grpc.TrainingServiceStub(self.channel)

    def _call(self, method: str, request: Any, timeout: float = 30) -> Any:
        try:
            return getattr(self.stub, method)(request, timeout=timeout)
        except grpc.RpcError as exc:
            trailing = dict(exc.trailing_metadata() or ())  # type: ignore[attr-defined]
            raw = trailing.get(GRPC_ERROR_DETAIL_KEY)
            if raw is None:
                raise ApiError(exc.code().name, exc.details() or "", {}, exc.code()) from None  # type: ignore[attr-defined]
            detail = types_pb2.ErrorDetail.FromString(raw)
            raise ApiError(detail.code, detail.message, dict(detail.details), exc.code()) from None  # type: ignore[attr-defined]

    def submit(self, spec: pb.JobSpec, idempotency_key: str = "") -> pb.Job:
        return self._call("SubmitJob", pb.SubmitJobRequest(spec=spec, idempotency_key=idempotency_key)).job

    def get(self, job_id: str) -> pb.Job:
        return self._call("GetJob", pb.GetJobRequest(job_id=job_id)).job

    def list(self, **filters: Any) -> pb.ListJobsResponse:
        return self._call("ListJobs", pb.ListJobsRequest(**filters))

    def cancel(self, job_id: str, reason: str = "") -> pb.Job:
        return self._call("CancelJob", pb.CancelJobRequest(job_id=job_id, reason=reason)).job

    def watch(self, job_id: str, timeout: float = 240) -> list[pb.Job]:
        try:
            return [m.job for m in self.stub.WatchJob(pb.WatchJobRequest(job_id=job_id), timeout=timeout)]
        except grpc.RpcError as exc:
            raise ApiError(exc.code().name, exc.details() or "", {}, exc.code()) from None  # type: ignore[attr-defined]

    def close(self) -> None:
        self.channel.close()


class HttpJobs:
    """The HTTP/JSON mirror, answering the same messages as GrpcJobs."""

    transport = "http"

    def __init__(self, base_url: str) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=30)

    def _check(self, response: httpx.Response) -> dict[str, Any]:
        if response.status_code != 200:
            error = response.json()["error"]
            raise ApiError(error["code"], error["message"], error.get("details", {}), response.status_code)
        return dict(response.json())

    def submit(self, spec: pb.JobSpec, idempotency_key: str = "") -> pb.Job:
        body = {"spec": MessageToDict(spec, preserving_proto_field_name=True), "idempotency_key": idempotency_key}
        return ParseDict(self._check(self.http.post("/v1/jobs", json=body)), pb.SubmitJobResponse()).job

    def get(self, job_id: str) -> pb.Job:
        return ParseDict(self._check(self.http.get(f"/v1/jobs/{job_id}")), pb.GetJobResponse()).job

    def list(self, **filters: Any) -> pb.ListJobsResponse:
        params: list[tuple[str, str]] = []
        for key, value in filters.items():
            if key == "states":
                params += [("states", STATE.Name(v)) for v in value]
            else:
                params.append((key, str(value)))
        return ParseDict(self._check(self.http.get("/v1/jobs", params=params)), pb.ListJobsResponse())

    def cancel(self, job_id: str, reason: str = "") -> pb.Job:
        response = self.http.post(f"/v1/jobs/{job_id}:cancel", json={"reason": reason})
        return ParseDict(self._check(response), pb.CancelJobResponse()).job

    def watch(self, job_id: str, timeout: float = 240) -> list[pb.Job]:
        jobs = []
        with self.http.stream("GET", f"/v1/jobs/{job_id}:watch", timeout=timeout) as response:
            if response.status_code != 200:
                response.read()
                self._check(response)
            for line in response.iter_lines():
                if line.strip():
                    jobs.append(ParseDict(json.loads(line), pb.WatchJobResponse()).job)
        return jobs

    def close(self) -> None:
        self.http.close()


@dataclass
class TrainingProcess:
    process: RunningProcess
    http_port: int
    grpc_port: int
    env: dict[str, str]
    work_dir: Path
    grpc: GrpcJobs = field(init=False)
    http: HttpJobs = field(init=False)

    def __post_init__(self) -> None:
        self.grpc = GrpcJobs(f"127.0.0.1:{self.grpc_port}")
        self.http = HttpJobs(f"http://127.0.0.1:{self.http_port}")

    @property
    def pid(self) -> int:
        return self.process.proc.pid

    def alive(self) -> bool:
        return self.process.proc.poll() is None

    def readiness(self) -> tuple[bool, str]:
        try:
            response = httpx.get(f"http://127.0.0.1:{self.http_port}/readyz", timeout=2)
            return response.status_code == 200, response.text
        except httpx.HTTPError as exc:
            return False, str(exc)

    def ready(self) -> bool:
        return self.readiness()[0]

    def job_processes(self) -> list[psutil.Process]:
        """Job processes of this service's work folder (they may outlive the service on purpose)."""
        return job_processes(self.work_dir)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.grpc.close()
        self.http.close()
        return self.process.stop(sig)


def job_processes(work_dir: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        if "loopline_training.job" in cmdline and any(str(work_dir) in part for part in cmdline):
            found.append(proc)
    return found


def job_process(work_dir: Path, job_id: str) -> psutil.Process | None:
    for proc in job_processes(work_dir):
        if job_id in (proc.info.get("cmdline") or []):
            return proc
    return None


def start_training(env: dict[str, str], work_dir: Path, timeout: float = 90) -> TrainingProcess:
    """Start the service (this interpreter, .venvs/training) and wait until it is ready."""
    import sys

    process = start_process([sys.executable, "-m", "loopline_training"],
                            {"LOOPLINE_TRAINING_HTTP_PORT": "0", "LOOPLINE_TRAINING_GRPC_PORT": "0",
                             "LOOPLINE_TRAINING_WORK_DIR": str(work_dir), **env})
    deadline = time.monotonic() + timeout
    while True:
        try:
            serving = process.wait_for_log(lambda r: r.get("message") == "serving", timeout=0.5)
            break
        except TimeoutError:
            if process.proc.poll() is not None or time.monotonic() > deadline:
                process.stop()
                raise RuntimeError(f"the training service did not start:\n{process.output()}") from None
    service = TrainingProcess(process, int(serving["http_port"]), int(serving["grpc_port"]), env, work_dir)
    try:
        wait_for(service.ready, timeout=max(5.0, deadline - time.monotonic()), what="the training service to be ready")
    except AssertionError:
        detail = service.readiness()[1]
        service.stop()
        raise RuntimeError(f"the training service never got ready ({detail}):\n{process.output()[-3000:]}") from None
    return service


class JobEvents:
    """TrainingJobChanged records of the jobs topic, read from the beginning."""

    def __init__(self, bootstrap: str) -> None:
        self.events: list[tuple[bytes, training_jobs_pb2.TrainingJobChanged]] = []
        self._consumer = KafkaConsumer(TRAINING_JOBS, bootstrap_servers=bootstrap,
                                       group_id=f"training-test-{uuid.uuid4().hex[:8]}",
                                       auto_offset_reset="earliest", enable_auto_commit=False)

    def of(self, job_id: str) -> list[training_jobs_pb2.TrainingJobChanged]:
        for records in self._consumer.poll(timeout_ms=300).values():
            for record in records:
                self.events.append((record.key, training_jobs_pb2.TrainingJobChanged.FromString(record.value)))
        return [event for _, event in self.events if event.job_id == job_id]

    def keys_of(self, job_id: str) -> set[bytes]:
        self.of(job_id)
        return {key for key, event in self.events if event.job_id == job_id}

    def close(self) -> None:
        self._consumer.close()


def make_spec(
    dataset: Path, window: tuple[datetime, datetime], *, family: str = "lightgbm", model: str | None = None,
    **hyperparameters: str,
) -> pb.JobSpec:
    """A job over the seeded dataset (dataset_uri), small and quick by default."""
    from loopline_training import synthetic

    spec = pb.JobSpec(
        model_name=model or f"fraud-{family.replace('_', '-')}-{uuid.uuid4().hex[:8]}", family=family,
        feature_service="fraud_v1", label=synthetic.LABEL, dataset_uri=str(dataset),
        exclude_columns=list(synthetic.ID_COLUMNS), seed=11, reason="tests",
    )
    spec.window.start.FromDatetime(window[0])
    spec.window.end.FromDatetime(window[1])
    defaults = {"lightgbm": {"num_boost_round": "60", "num_leaves": "15", "early_stopping_rounds": "15"},
                "torch_mlp": {"max_epochs": "8", "hidden_layers": "16", "batch_size": "256", "patience": "3"}}
    for key, value in {**defaults.get(family, {}), **hyperparameters}.items():
        spec.hyperparameters[key] = value
    return spec


def long_running_spec(dataset: Path, window: tuple[datetime, datetime], **kwargs: Any) -> pb.JobSpec:
    """A torch job that trains until it is stopped (no early stopping, a huge epoch budget)."""
    return make_spec(dataset, window, family="torch_mlp", max_epochs="1000000", patience="0", batch_size="4096",
                     **kwargs)


def shifted(window: tuple[datetime, datetime], days: float) -> tuple[datetime, datetime]:
    return window[0] + timedelta(days=days), window[1] + timedelta(days=days)


def final(jobs: GrpcJobs | HttpJobs, job_id: str, timeout: float = 240) -> pb.Job:
    """The job once it is finished (polling)."""
    return wait_for(lambda: (job if (job := jobs.get(job_id)).state in TERMINAL else None), timeout=timeout,
                    what=f"job {job_id} to finish", interval=0.5)


def state_name(job: pb.Job) -> str:
    return STATE.Name(job.state).removeprefix("JOB_STATE_")


def free_ports(n: int) -> list[int]:
    return [free_port() for _ in range(n)]
