"""Jobs that fail, crash or are cancelled: each ends in the right state with the reason, and the service
stays up and keeps answering."""

from __future__ import annotations

import subprocess
from datetime import datetime
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.helpers import REPO
from tests.training.conftest import FailedJobs
from tests.training.support import (
    DEV_BIN,
    ApiError,
    JobEvents,
    TrainingProcess,
    final,
    job_process,
    long_running_spec,
    state_name,
    wait_for,
)

pytestmark = pytest.mark.slow
LOOPLINE = str(DEV_BIN / "loopline")


def _running(training: TrainingProcess, job_id: str) -> bool:
    """Running, and past its first epoch (so its process is well under way)."""
    job = training.grpc.get(job_id)
    return state_name(job) == "RUNNING" and job.progress > 0


def test_a_job_failing_on_its_data_is_failed_with_the_reason(
    training: TrainingProcess, failed_jobs: FailedJobs, job_events: JobEvents
) -> None:
    done = failed_jobs.first
    assert state_name(done) == "FAILED"
    assert "label column 'is_fraud' must hold 0/1 values; found [1, 3]" in done.error
    assert done.finished_at.seconds > 0 and done.registered_version == 0 and done.attempt == 1
    assert training.alive() and training.ready()
    events = wait_for(lambda: [e for e in job_events.of(done.job_id) if e.error], timeout=30, what="the failure event")
    assert "must hold 0/1 values" in events[-1].error

    # A finished job cannot be cancelled (over HTTP: the same error table).
    with pytest.raises(ApiError) as refused:
        training.http.cancel(done.job_id)
    assert refused.value.code == "FAILED_PRECONDITION" and refused.value.status == 400
    assert "already failed" in refused.value.message


def test_a_dying_job_process_fails_it_and_cancel_stops_a_running_job(
    training: TrainingProcess, dataset: tuple[Path, tuple[datetime, datetime]], mlflow_server: str,
    job_events: JobEvents, tmp_path: Path,
) -> None:
    """Two long-running jobs at once: one's process is killed (as the OOM killer would), the other is
    cancelled with the CLI while `loopline train watch` follows it with its progress bar."""
    doomed = training.grpc.submit(long_running_spec(*dataset))
    stopped = training.http.submit(long_running_spec(*dataset))
    for job in (doomed, stopped):
        wait_for(lambda job=job: _running(training, job.job_id), timeout=300, what="the jobs to train")
    target = f"127.0.0.1:{training.grpc_port}"
    output = tmp_path / "watch.out"
    with output.open("w") as sink:
        watcher = subprocess.Popen([LOOPLINE, "train", "watch", stopped.job_id, "--target", target], stdout=sink,
                                   stderr=subprocess.STDOUT, text=True, cwd=REPO)
    try:
        doomed_process = job_process(training.work_dir, doomed.job_id)
        stopped_process = job_process(training.work_dir, stopped.job_id)
        assert doomed_process is not None and stopped_process is not None
        doomed_process.kill()
        died = final(training.grpc, doomed.job_id)
        assert state_name(died) == "FAILED"
        assert "the job process was killed by signal SIGKILL without a result" in died.error
        assert died.attempt == 1  # a crash is a failure, not a lost job: it is not re-run
        assert training.alive() and training.ready()

        bar = wait_for(lambda: next((ln for ln in output.read_text().splitlines() if "epochs" in ln), None),
                       timeout=120, what="a progress bar line from `loopline train watch`")
        assert bar.startswith("running") and "/1000000 epochs" in bar and "train_loss=" in bar
        cancelled = subprocess.run([LOOPLINE, "train", "cancel", stopped.job_id, "--reason", "enough", "--target",
                                    target], capture_output=True, text=True, timeout=60, cwd=REPO, check=False)
        assert cancelled.returncode == 0 and stopped.job_id in cancelled.stdout
        done = final(training.grpc, stopped.job_id, timeout=60)
        assert state_name(done) == "CANCELLED" and done.error == "cancelled: enough" and done.cancel_requested
        assert watcher.wait(60) == 1  # watch ends with the job, and says how it ended
        assert f"job {stopped.job_id} cancelled" in output.read_text()
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait(10)
    wait_for(lambda: not stopped_process.is_running() or stopped_process.status() == "zombie", timeout=30,
             what="the cancelled job's process to end")
    # It stopped cleanly on SIGTERM: its MLflow run is closed as KILLED.
    assert MlflowClient(mlflow_server).get_run(done.mlflow_run_id).info.status == "KILLED"
    assert state_name(training.http.cancel(stopped.job_id)) == "CANCELLED"  # cancelling again is a no-op
    wait_for(lambda: any(state_name_of(e) == "CANCELLED" for e in job_events.of(stopped.job_id)), timeout=30,
             what="the CANCELLED event")


def state_name_of(event: object) -> str:
    from loopline.events.v1 import training_jobs_pb2

    return str(training_jobs_pb2.JobState.Name(event.state)).removeprefix("JOB_STATE_")  # type: ignore[attr-defined]
