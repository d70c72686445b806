"""Helpers for tests that run real processes: free ports, a started service, a Kafka-wire broker."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import pytest

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def absent(what: str) -> NoReturn:
    """Skip a test whose outside part is missing (a user's laptop); under CI (.ci/run sets LOOPLINE_CI),
    where every such part is on the machine, its absence is a failure, never a skip."""
    if os.environ.get("LOOPLINE_CI"):
        pytest.fail(f"{what} (CI has it on this machine)")
    pytest.skip(what)


def stop_group(proc: subprocess.Popen[Any], timeout: float = 20.0) -> None:
    """Stop a child started with `start_new_session=True` and everything it started: SIGTERM to its
    process group, SIGKILL after `timeout` seconds."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_is_free(port: int) -> bool:
    """True if nothing holds `port` on 127.0.0.1 right now (it can be bound)."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range: ports from there on may be taken at any moment by
    some process's outgoing connection, so a stack's fixed ports stay below it."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port_offset(bases: list[int], *, low: int, span: int) -> int:
    """A port offset (as `loopline up --port-offset` takes) that puts every port in `bases` on a free port
    below the ephemeral range, with the lowest base landing between `low` and `low + span`."""
    ceiling = _ephemeral_low()
    for _ in range(50):
        offset = free_port() % span + low - min(bases)
        ports = [b + offset for b in bases]
        if max(ports) < ceiling and all(port_is_free(p) for p in ports):
            return offset
    raise RuntimeError(f"no free port range between {low} and {low + span} below port {ceiling}")


def stack_port_offset(*, low: int, span: int) -> int:
    """A port offset where the embedded stack's broker, MLflow, Prometheus and every service's two ports are
    free now (for a stack started beside another one)."""
    from loopline_cli.stack import SERVICES, Ports

    bases = [Ports.kafka, Ports.mlflow, Ports.prometheus]
    bases += [p for s in SERVICES for p in (s.http_port, s.grpc_port)]
    return free_port_offset(bases, low=low, span=span)


@dataclass
class RunningProcess:
    """A child process whose stdout lines (JSON logs) are collected by a reader thread."""

    proc: subprocess.Popen[str]
    lines: queue.Queue[str] = field(default_factory=queue.Queue)
    seen: list[str] = field(default_factory=list)

    def start_reader(self) -> None:
        def read() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                self.lines.put(line)

        threading.Thread(target=read, daemon=True).start()

    def wait_for_log(self, predicate, timeout: float = 30.0) -> dict:  # type: ignore[no-untyped-def]
        """The first JSON log record (seen before or arriving within `timeout`) matching `predicate`."""
        for line in self.seen:
            record = _json(line)
            if record is not None and predicate(record):
                return record
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no matching log line within {timeout}s; output so far:\n{''.join(self.seen)}")
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                continue
            self.seen.append(line)
            record = _json(line)
            if record is not None and predicate(record):
                return record

    def output(self) -> str:
        while True:
            try:
                self.seen.append(self.lines.get_nowait())
            except queue.Empty:
                return "".join(self.seen)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)


def _json(line: str) -> dict | None:  # type: ignore[type-arg]
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def start_process(argv: list[str], env: dict[str, str]) -> RunningProcess:
    proc = subprocess.Popen(
        argv,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
    )
    running = RunningProcess(proc)
    running.start_reader()
    return running


@dataclass
class Broker:
    """A noida-db Kafka-wire broker on 127.0.0.1 with a durable data folder."""

    data_dir: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> None:
        self.proc = subprocess.Popen(
            [
                str(BIN / "noida-db"), "start", "--data-dir", str(self.data_dir), "--host", "127.0.0.1",
                "--only", "kafka", "--kafka-port", str(self.port),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"noida-db exited with {self.proc.returncode}") from None
                time.sleep(0.05)
        raise TimeoutError(f"broker not listening on {self.port} after {timeout}s")

    def stop(self) -> None:
        if self.proc is not None:
            stop_group(self.proc, timeout=15)
        self.proc = None


@contextmanager
def running_broker(data_dir: Path) -> Iterator[Broker]:
    broker = Broker(data_dir=data_dir, port=free_port())
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
