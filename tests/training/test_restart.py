"""A service restart with jobs in flight loses no job and leaves none RUNNING forever: a job whose process
outlived the service is resumed; one whose process died meanwhile is re-queued and runs again; pending
jobs run after the restart."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import psutil
import pytest
from loopline_training import synthetic

from tests.training.support import (
    TrainingProcess,
    final,
    job_process,
    long_running_spec,
    make_spec,
    state_name,
    wait_for,
)

pytestmark = pytest.mark.slow


def test_restart_resumes_running_jobs_requeues_lost_ones_and_keeps_pending_ones(
    training_factory: Callable[..., TrainingProcess], dataset: tuple[Path, tuple[datetime, datetime]],
    tmp_path: Path,
) -> None:
    settings = {"work_dir": tmp_path, "LOOPLINE_TRAINING_MAX_CONCURRENT_JOBS": "1",
                "LOOPLINE_TRAINING_DRIFT_ENABLED": "false"}
    first = training_factory(**settings)
    running = first.grpc.submit(long_running_spec(*dataset))
    wait_for(lambda: first.grpc.get(running.job_id).progress > 0, timeout=300, what="the first job to train")
    # Waits behind it (one job at a time), and fails fast once it runs: its labels are not 0/1.
    frame = synthetic.transactions(rows=200, seed=3, days=3)
    frame[synthetic.LABEL] = 7
    bad = synthetic.write(tmp_path / "bad.parquet", frame)
    pending = first.grpc.submit(make_spec(bad, synthetic.window_of(frame)))
    assert state_name(first.grpc.get(pending.job_id)) == "PENDING"
    dropped = first.http.submit(make_spec(bad, synthetic.window_of(frame)))
    assert state_name(first.http.cancel(dropped.job_id, reason="not needed")) == "CANCELLED"  # pending: at once

    process = job_process(first.work_dir, running.job_id)
    assert process is not None
    assert first.stop() == 0  # SIGTERM: a graceful stop
    assert process.is_running()  # the job outlives the service

    # Restart 1: the running job is resumed (same attempt, progress goes on), the pending one still waits.
    second = training_factory(**settings)
    resumed = second.grpc.get(running.job_id)
    assert state_name(resumed) == "RUNNING" and resumed.attempt == 1
    before = resumed.progress
    wait_for(lambda: second.grpc.get(running.job_id).progress > before, timeout=120,
             what="progress reported after the restart")
    assert state_name(second.grpc.get(pending.job_id)) == "PENDING"
    assert state_name(second.grpc.get(dropped.job_id)) == "CANCELLED"

    # Restart 2: the job's process dies while the service is down: it is lost, so it is re-queued and run
    # again (attempt 2) before the job queued after it.
    assert second.stop() == 0
    process.kill()
    psutil.wait_procs([process], timeout=10)
    third = training_factory(**settings)
    rerun = wait_for(lambda: (j if (j := third.grpc.get(running.job_id)).attempt == 2 else None),
                     timeout=300, what="the lost job to run again")
    assert state_name(rerun) == "RUNNING" and rerun.error == ""
    wait_for(lambda: job_process(third.work_dir, running.job_id), timeout=60,
             what="a new process for the second attempt")
    assert state_name(third.grpc.get(pending.job_id)) == "PENDING"

    third.grpc.cancel(running.job_id, reason="test over")
    assert state_name(final(third.grpc, running.job_id, timeout=60)) == "CANCELLED"
    # Then the pending job runs (and fails on its labels): nothing was lost, nothing is left running.
    done = final(third.grpc, pending.job_id, timeout=300)
    assert state_name(done) == "FAILED" and "must hold 0/1 values" in done.error
    listed = third.grpc.list(page_size=50).jobs
    assert {j.job_id for j in listed} == {running.job_id, pending.job_id, dropped.job_id}
    assert not [j for j in listed if state_name(j) in ("RUNNING", "PENDING")]
    assert third.stop() == 0
