"""What one training run's tracking sends MLflow, sent from a process of its own: the benchmark's control
for the MLflow server sharing this machine with the training.

    python bench/tracking_load.py URL VALUES SECONDS

Waits for a line on stdin, then, through the job's own tracker (`MlflowTracker`, the job's batch size and
flush interval), creates a run, logs VALUES metric values spread evenly over SECONDS, closes the run and
prints "done". The benchmark times an untracked fit while this runs: the MLflow server then works as it
does during a tracked fit, on the same machine, but none of the tracking runs in the timed process.
"""

from __future__ import annotations

import sys
import time
from typing import Any


def job_tracker(url: str) -> Any:
    """The job's tracker with the job's defaults (METRICS_FLUSH_SECONDS, METRICS_BATCH_SIZE)."""
    from loopline_training.job.tracking import MlflowTracker
    from loopline_training.settings import JobSettings

    fields = JobSettings.model_fields
    return MlflowTracker(tracking_uri=url, flush_seconds=fields["metrics_flush_seconds"].default,
                         batch_metrics=fields["metrics_batch_size"].default)


def main() -> None:
    url, values, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    tracker = job_tracker(url)
    print("ready", flush=True)
    sys.stdin.readline()
    began = time.perf_counter()
    tracker.start(experiment="bench/colocation", run_name="control", tags={"loopline.job_id": "bench"})
    per_group = 2  # two metrics an iteration, as LightGBM's early-stopping pair
    groups = max(1, values // per_group)
    for step in range(groups):
        due = began + seconds * step / groups
        wait = due - time.perf_counter()
        if wait > 0:
            time.sleep(wait)  # pacing: the values arrive as a fit would produce them
        tracker.metric("early_stopping_binary_logloss", 0.1, step)
        tracker.metric("early_stopping_auc", 0.9, step)
    tracker.end("FINISHED")
    print("done", flush=True)


if __name__ == "__main__":
    main()
