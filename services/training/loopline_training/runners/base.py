"""What the job service needs from a runner, and what a runner tells the service."""

from __future__ import annotations

from typing import Any, Protocol

from loopline_training.protocol import Outcome, Progress
from loopline_training.store import JobRecord


class RunnerEvents(Protocol):
    """Called by a runner from its own threads."""

    def on_progress(self, job_id: str, progress: Progress) -> None: ...

    def on_outcome(self, job_id: str, outcome: Outcome) -> None: ...


class Runner(Protocol):
    """Starts jobs somewhere, watches them, cancels them, and finds them again after a restart."""

    name: str

    def start(self, job: JobRecord) -> dict[str, Any]:
        """Start the job (state RUNNING in the store); return how to find it again (stored as runner_ref)."""
        ...

    def cancel(self, job: JobRecord) -> None:
        """Stop the job; its outcome (CANCELLED) comes through `on_outcome`."""
        ...

    def resume(self, job: JobRecord) -> bool:
        """After a restart: watch a job this runner started before; False if it is gone without a trace."""
        ...

    def active(self) -> int:
        """Jobs being watched now (the concurrency limit counts them)."""
        ...

    def close(self) -> None:
        """Stop watching; running jobs are left alone (a restarted service resumes them)."""
        ...
