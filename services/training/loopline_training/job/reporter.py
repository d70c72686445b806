"""Progress reports from a job: appended to the progress file its runner tails, and logged."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path

from loopline_training.protocol import Progress

log = logging.getLogger("loopline_training.job")


class ProgressReporter:
    """Keeps the job's latest progress and reports changes, at most every `interval` seconds for
    iteration updates (stage changes and the last iteration are always reported)."""

    def __init__(self, path: Path | None = None, *, interval: float = 0.25) -> None:
        self.path = path
        self.interval = interval
        self.current = Progress()
        self._last = 0.0

    def _emit(self) -> None:
        self._last = time.monotonic()
        line = self.current.to_line()
        if self.path is not None:
            with self.path.open("a") as f:
                f.write(line + "\n")
        log.info("progress", extra={"event": "progress", "stage": self.current.stage,
                                    "progress": self.current.progress, "total": self.current.total})

    def stage(self, stage: str) -> None:
        self.current = replace(self.current, stage=stage)
        self._emit()

    def update(self, **facts: object) -> None:
        """Record facts (run id, training-set hash, ...) and report them."""
        self.current = replace(self.current, **facts)  # type: ignore[arg-type]
        self._emit()

    def iteration(self, done: int, total: int, metrics: dict[str, float]) -> None:
        self.current = replace(self.current, progress=done, total=total, metrics=dict(metrics))
        if done >= total or time.monotonic() - self._last >= self.interval:
            self._emit()

    def flush(self) -> None:
        self._emit()
