"""The embedded runner: each job a local process (`python -m loopline_training.job`).

A job gets a folder `<work_dir>/<job id>/` holding its spec, its log (stdout and stderr), and per attempt
a progress file (JSON lines) and a result file. A monitor thread per job tails the progress file and,
when the process ends, reads the result (or, if there is none, reports the exit status and the end of the
log). Files rather than pipes keep a job independent of the service: a service that stops leaves its jobs
running, and the next one resumes watching them (found again by pid and process start time) or, if a job
ended meanwhile, reads its result.

Jobs stay in the service's process group, so stopping the whole stack (`loopline down` signals the group)
stops them too; such a job reports itself terminated and is re-queued.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any

import psutil

from loopline_training.protocol import (
    CANCELLED,
    FAILED,
    INTERRUPTED,
    LOST,
    TERMINATED,
    Outcome,
    Progress,
    read_result,
)
from loopline_training.runners.base import RunnerEvents
from loopline_training.store import JobRecord

log = logging.getLogger(__name__)

JOB_MODULE = "loopline_training.job"
LOG_TAIL_BYTES = 4000


def _process(pid: int, create_time: float) -> psutil.Process | None:
    """The live process `pid` if it is the one started at `create_time` (not a reused pid)."""
    try:
        proc = psutil.Process(pid)
        if abs(proc.create_time() - create_time) > 0.5 or proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def log_tail(path: Path, *, max_lines: int = 12) -> str:
    """The last lines of a job's log (for an error message)."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - LOG_TAIL_BYTES))
            data = f.read().decode(errors="replace")
    except OSError:
        return ""
    lines = [line for line in data.splitlines() if line.strip()]
    return "\n".join(lines[-max_lines:])


class _Watch:
    """One job being monitored."""

    def __init__(self, job_id: str, ref: dict[str, Any], popen: subprocess.Popen[bytes] | None) -> None:
        self.job_id = job_id
        self.ref = ref
        self.popen = popen
        self.offset = 0
        self.partial = b""
        self.cancelling = False
        self.thread: threading.Thread | None = None


class EmbeddedRunner:
    name = "embedded"

    def __init__(
        self,
        *,
        work_dir: Path,
        events: RunnerEvents,
        python: str,
        env: dict[str, str],
        cancel_grace_seconds: float = 10.0,
        poll_seconds: float = 0.2,
    ) -> None:
        self.work_dir = work_dir
        self.events = events
        self.python = python
        self.env = env
        self.cancel_grace_seconds = cancel_grace_seconds
        self.poll_seconds = poll_seconds
        self._watches: dict[str, _Watch] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()

    # ---- Runner ----------------------------------------------------------------------------------
    def active(self) -> int:
        with self._lock:
            return len(self._watches)

    def start(self, job: JobRecord) -> dict[str, Any]:
        folder = self.work_dir / job.job_id
        attempt_dir = folder / f"attempt-{job.attempt}"
        attempt_dir.mkdir(parents=True, exist_ok=True)
        spec_file = folder / "spec.json"
        spec_file.write_text(job.spec)
        ref: dict[str, Any] = {
            "work_dir": str(attempt_dir),
            "log_file": str(folder / "job.log"),
            "result_file": str(attempt_dir / "result.json"),
            "progress_file": str(attempt_dir / "progress.jsonl"),
        }
        argv = [
            self.python, "-m", JOB_MODULE, "--job-id", job.job_id, "--spec-file", str(spec_file),
            "--work-dir", str(attempt_dir / "work"), "--result-file", ref["result_file"],
            "--progress-file", ref["progress_file"],
        ]
        with open(ref["log_file"], "ab") as log_file:
            popen = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                env={**os.environ, **self.env}, cwd=str(folder),
            )
        ref["pid"] = popen.pid
        try:
            ref["create_time"] = psutil.Process(popen.pid).create_time()
        except psutil.NoSuchProcess:  # it already ended: the monitor reads its result or exit status
            ref["create_time"] = 0.0
        log.info("job process started", extra={"job_id": job.job_id, "pid": popen.pid, "attempt": job.attempt})
        self._watch(_Watch(job.job_id, ref, popen))
        return ref

    def resume(self, job: JobRecord) -> bool:
        ref = dict(job.runner_ref)
        if "pid" not in ref:
            return False
        alive = _process(int(ref["pid"]), float(ref.get("create_time", 0.0))) is not None
        if not alive and read_result(Path(ref["result_file"])) is None:
            return False
        log.info("resuming job", extra={"job_id": job.job_id, "pid": ref["pid"], "alive": alive})
        watch = _Watch(job.job_id, ref, None)
        watch.cancelling = job.cancel_requested
        self._watch(watch)
        return True

    def cancel(self, job: JobRecord) -> None:
        with self._lock:
            watch = self._watches.get(job.job_id)
        if watch is None:  # not ours (or already over): nothing runs, so it is cancelled
            self.events.on_outcome(job.job_id, Outcome(status=CANCELLED))
            return
        watch.cancelling = True
        proc = self._live(watch)
        if proc is None:
            return  # it is ending by itself; the monitor reports the outcome
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.send_signal(signal.SIGTERM)
        killer = threading.Timer(self.cancel_grace_seconds, self._kill, args=(watch,))
        killer.daemon = True
        killer.start()

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            watches = list(self._watches.values())
        for watch in watches:
            if watch.thread is not None:
                watch.thread.join(5.0)

    # ---- monitoring ------------------------------------------------------------------------------
    def _watch(self, watch: _Watch) -> None:
        with self._lock:
            self._watches[watch.job_id] = watch
        watch.thread = threading.Thread(target=self._monitor, args=(watch,), name=f"job-{watch.job_id[:8]}",
                                        daemon=True)
        watch.thread.start()

    def _live(self, watch: _Watch) -> psutil.Process | None:
        return _process(int(watch.ref["pid"]), float(watch.ref.get("create_time", 0.0)))

    def _kill(self, watch: _Watch) -> None:
        proc = self._live(watch)
        if proc is not None:
            log.warning("job did not stop within the grace period; killing it", extra={"job_id": watch.job_id})
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()

    def _exited(self, watch: _Watch) -> tuple[bool, int | None]:
        if watch.popen is not None:
            code = watch.popen.poll()
            return code is not None, code
        return self._live(watch) is None, None

    def _monitor(self, watch: _Watch) -> None:
        try:
            while not self._closed.is_set():
                exited, code = self._exited(watch)
                self._read_progress(watch)
                if exited:
                    outcome = self._outcome(watch, code)
                    with self._lock:
                        self._watches.pop(watch.job_id, None)
                    self.events.on_outcome(watch.job_id, outcome)
                    return
                self._closed.wait(self.poll_seconds)
        except Exception:  # a monitor must not die silently: report the job as lost, to be re-queued
            log.exception("monitor of job %s failed", watch.job_id)
            with self._lock:
                self._watches.pop(watch.job_id, None)
            self.events.on_outcome(watch.job_id, Outcome(status=LOST, error="the runner lost track of the job"))

    def _read_progress(self, watch: _Watch) -> None:
        path = Path(watch.ref["progress_file"])
        try:
            with path.open("rb") as f:
                f.seek(watch.offset)
                data = f.read()
        except FileNotFoundError:
            return
        if not data:
            return
        watch.offset += len(data)
        lines = (watch.partial + data).split(b"\n")
        watch.partial = lines.pop()
        latest: Progress | None = None
        for line in lines:
            progress = Progress.from_line(line.decode(errors="replace"))
            if progress is not None:
                latest = self._merge(latest, progress)
        if latest is not None:
            self.events.on_progress(watch.job_id, latest)

    @staticmethod
    def _merge(old: Progress | None, new: Progress) -> Progress:
        """Several reports read at once: the newest, keeping facts only older ones carried."""
        if old is None:
            return new
        return Progress(
            stage=new.stage or old.stage, progress=new.progress, total=new.total or old.total,
            metrics=new.metrics or old.metrics, mlflow_run_id=new.mlflow_run_id or old.mlflow_run_id,
            logged_model_id=new.logged_model_id or old.logged_model_id,
            training_set_hash=new.training_set_hash or old.training_set_hash,
            training_rows=new.training_rows or old.training_rows,
        )

    def _outcome(self, watch: _Watch, code: int | None) -> Outcome:
        result = read_result(Path(watch.ref["result_file"]))
        if result is not None:
            if result.status == TERMINATED:
                status = CANCELLED if watch.cancelling else INTERRUPTED
                return Outcome(status=status, error=result.error, mlflow_run_id=result.mlflow_run_id)
            return result
        if watch.cancelling:
            return Outcome(status=CANCELLED)
        tail = log_tail(Path(watch.ref["log_file"]))
        if code is None:  # a resumed process: its exit status is not ours to read
            return Outcome(status=LOST, error=f"the job process ended without a result; its log ends with:\n{tail}")
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = str(-code)
            how = f"was killed by signal {name}"
        else:
            how = f"exited with status {code}"
        return Outcome(status=FAILED, error=f"the job process {how} without a result; its log ends with:\n{tail}")

