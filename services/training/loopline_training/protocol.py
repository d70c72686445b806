"""How a job tells its runner what it is doing and how it ended.

Progress: one JSON object per line, appended to the progress file (embedded runner) and logged.
Result: one small JSON object written once at the end to the result file; in a Kubernetes Job that file
is the container's termination message (/dev/termination-log, at most 4 KiB), so it stays small.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# Result statuses written by the job.
SUCCEEDED = "succeeded"
FAILED = "failed"
# The job stopped on SIGTERM/SIGINT: a cancel, or its host going away (the runner tells which).
TERMINATED = "terminated"
# Outcomes only runners produce.
CANCELLED = "cancelled"
INTERRUPTED = "interrupted"  # stopped by something other than a cancel: re-queued if attempts remain
LOST = "lost"  # the process or Kubernetes Job is gone and left no result: re-queued if attempts remain

MAX_RESULT_BYTES = 4000
MAX_ERROR_CHARS = 1500


@dataclass(frozen=True)
class Progress:
    stage: str = ""
    progress: int = 0
    total: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    mlflow_run_id: str = ""
    logged_model_id: str = ""
    training_set_hash: str = ""
    training_rows: int = 0

    def to_line(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_line(cls, line: str) -> Progress | None:
        try:
            data = json.loads(line)
            return cls(
                stage=str(data.get("stage", "")), progress=int(data.get("progress", 0)),
                total=int(data.get("total", 0)),
                metrics={str(k): float(v) for k, v in (data.get("metrics") or {}).items()},
                mlflow_run_id=str(data.get("mlflow_run_id", "")), logged_model_id=str(data.get("logged_model_id", "")),
                training_set_hash=str(data.get("training_set_hash", "")),
                training_rows=int(data.get("training_rows", 0)),
            )
        except (ValueError, TypeError, AttributeError):
            return None


@dataclass(frozen=True)
class Outcome:
    status: str
    error: str = ""
    mlflow_run_id: str = ""
    logged_model_id: str = ""
    registered_version: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    training_set_hash: str = ""
    training_rows: int = 0

    def to_json(self) -> str:
        data: dict[str, Any] = asdict(self)
        data["error"] = self.error[:MAX_ERROR_CHARS]
        text = json.dumps(data, separators=(",", ":"), sort_keys=True)
        if len(text.encode()) > MAX_RESULT_BYTES:  # too many metrics: keep the essentials
            data["metrics"] = {}
            text = json.dumps(data, separators=(",", ":"), sort_keys=True)
        return text

    @classmethod
    def from_json(cls, text: str) -> Outcome | None:
        try:
            data = json.loads(text)
            return cls(
                status=str(data["status"]), error=str(data.get("error", "")),
                mlflow_run_id=str(data.get("mlflow_run_id", "")), logged_model_id=str(data.get("logged_model_id", "")),
                registered_version=int(data.get("registered_version", 0)),
                metrics={str(k): float(v) for k, v in (data.get("metrics") or {}).items()},
                training_set_hash=str(data.get("training_set_hash", "")),
                training_rows=int(data.get("training_rows", 0)),
            )
        except (ValueError, TypeError, KeyError, AttributeError):
            return None


def write_result(path: Path, outcome: Outcome) -> None:
    """Write the result; atomically (rename) where the file system allows it."""
    text = outcome.to_json()
    if str(path).startswith("/dev/"):  # the termination log: write in place
        path.write_text(text)
        return
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def read_result(path: Path) -> Outcome | None:
    try:
        return Outcome.from_json(path.read_text())
    except OSError:
        return None
