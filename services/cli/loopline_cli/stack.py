"""The embedded stack: every part of Loopline as its own process on 127.0.0.1.

`Stack.up` starts the Kafka-wire broker (noida-db), an MLflow server, each service that exists and, if a
`prometheus` binary is on PATH, Prometheus scraping them all; it records each process in
`<home>/stack.json` as soon as it starts, so `down` can always clean up, even after a failed `up`.
`status` checks each process (by pid and start time, so a reused pid is not mistaken for ours) and its
health endpoint. Logs go to `<home>/logs/<component>.log`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TypedDict

import psutil

from loopline_cli import health
from loopline_cli.tokens import ensure_local_tokens, local_token
from loopline_common.topics import ensure_topics

STATE_FILE = "stack.json"


@dataclass(frozen=True)
class Ports:
    """Default ports of the embedded stack; `offset` shifts them all (to run a second stack beside one)."""

    kafka: int = 9092
    mlflow: int = 5000
    prometheus: int = 9090
    offset: int = 0

    def of(self, port: int) -> int:
        return port + self.offset


@dataclass(frozen=True)
class ServiceSpec:
    """How the stack runs one Loopline service: `python -m <module>` with its settings in the env."""

    name: str
    module: str
    http_port: int
    grpc_port: int
    # Folder of the service's own virtual environment below the repository (None: this interpreter).
    venv: str | None = None
    # Extra settings, given the stack's addresses: {"LOOPLINE_X_MLFLOW_URI": ...}.
    env: Callable[[dict[str, str]], dict[str, str]] = field(default=lambda addresses: {})


def _monitoring_env(addresses: dict[str, str]) -> dict[str, str]:
    env = {
        "LOOPLINE_MONITORING_KAFKA_BOOTSTRAP": addresses["kafka"],
        "LOOPLINE_MONITORING_STATE_DIR": str(Path(addresses["home"]) / "monitoring"),
    }
    if "registry_grpc" in addresses:  # reference profiles come from the registry when the stack runs one
        env["LOOPLINE_MONITORING_REGISTRY_TARGET"] = addresses["registry_grpc"]
        if "features_grpc" in addresses:  # the skew check needs both
            env["LOOPLINE_MONITORING_FEATURES_TARGET"] = addresses["features_grpc"]
    return env


# Every Loopline service the embedded stack runs, in start order. Each service issue adds its entry.
def _inference_env(addresses: dict[str, str]) -> dict[str, str]:
    # The demo model, from the registry's aliases; until training registers one the server is up but
    # answers UNAVAILABLE for it (ready_without_model), so the stack can start before any training.
    env = {
        "LOOPLINE_INFERENCE_MODEL_NAME": "fraud",
        "LOOPLINE_INFERENCE_MODEL": "fraud@champion",
        # The rollout controller canaries whatever holds the challenger alias; inference serves it beside.
        "LOOPLINE_INFERENCE_CHALLENGER": "fraud@challenger",
        "LOOPLINE_INFERENCE_KAFKA_BOOTSTRAP": addresses["kafka"],
        "LOOPLINE_INFERENCE_READY_WITHOUT_MODEL": "true",
    }
    if "registry_grpc" in addresses:
        env["LOOPLINE_INFERENCE_REGISTRY_ADDRESS"] = addresses["registry_grpc"]
    if "features_grpc" in addresses:
        env["LOOPLINE_INFERENCE_FEATURES_ADDRESS"] = addresses["features_grpc"]
    return env


def _features_env(addresses: dict[str, str]) -> dict[str, str]:
    # The feature repo of this checkout; the Feast data (registry, SQLite online store, parquet history,
    # stream state) in the stack's home; raw events from the stack's broker.
    return {
        "LOOPLINE_FEATURES_REPO_DIR": str(_find_repo() / "feature_repo"),
        "LOOPLINE_FEATURES_DATA_DIR": str(Path(addresses["home"]) / "features"),
        "LOOPLINE_FEATURES_ENVIRONMENT": "embedded",
        "LOOPLINE_FEATURES_KAFKA_BOOTSTRAP": addresses["kafka"],
    }


def _training_env(addresses: dict[str, str]) -> dict[str, str]:
    # Job store and each job's folder (spec, log, progress, result) in the stack's home; jobs are local
    # processes that register through the stack's registry with its local trainer token.
    home = Path(addresses["home"]) / "training"
    env = {
        "LOOPLINE_TRAINING_STORE_URL": f"sqlite:///{home / 'training.db'}",
        "LOOPLINE_TRAINING_WORK_DIR": str(home / "jobs"),
        "LOOPLINE_TRAINING_KAFKA_BOOTSTRAP": addresses["kafka"],
        "LOOPLINE_TRAINING_MLFLOW_URI": addresses["mlflow"],
    }
    if "registry_grpc" in addresses:
        env["LOOPLINE_TRAINING_REGISTRY_TARGET"] = addresses["registry_grpc"]
        ensure_local_tokens(Path(addresses["home"]))
        token = local_token(Path(addresses["home"]), "trainer")
        if token and not os.environ.get("LOOPLINE_TRAINING_REGISTRY_TOKEN"):
            env["LOOPLINE_TRAINING_REGISTRY_TOKEN"] = token
    if "features_grpc" in addresses:
        env["LOOPLINE_TRAINING_FEATURES_TARGET"] = addresses["features_grpc"]
    return env


def _registry_env(addresses: dict[str, str]) -> dict[str, str]:
    # Audit log and outbox in SQLite in the stack's home; API tokens (one per role) in a secret file made
    # on the first `up`, which the CLI reads too; reads need no token on this machine.
    home = Path(addresses["home"])
    return {
        "LOOPLINE_REGISTRY_MLFLOW_URI": addresses["mlflow"],
        "LOOPLINE_REGISTRY_KAFKA_BOOTSTRAP": addresses["kafka"],
        "LOOPLINE_REGISTRY_STORE_URL": f"sqlite:///{home / 'registry' / 'registry.db'}",
        "LOOPLINE_REGISTRY_TOKENS_FILE": str(ensure_local_tokens(home)),
        "LOOPLINE_REGISTRY_ANONYMOUS_READS": "true",
    }


def _rollout_env(addresses: dict[str, str]) -> dict[str, str]:
    # Rollout state in SQLite in the stack's home; the registry's local releaser token to move aliases, and
    # the same token file to authenticate operators' pause/resume/abort/promote; checks from monitoring,
    # weights on inference (the embedded actuator).
    home = Path(addresses["home"])
    env = {
        "LOOPLINE_ROLLOUT_KAFKA_BOOTSTRAP": addresses["kafka"],
        "LOOPLINE_ROLLOUT_STORE_URL": f"sqlite:///{home / 'rollout' / 'rollout.db'}",
        "LOOPLINE_ROLLOUT_GITOPS_WORK_DIR": str(home / "rollout" / "gitops"),
        "LOOPLINE_ROLLOUT_TOKENS_FILE": str(ensure_local_tokens(home)),
    }
    # The stack's own addresses; without them (a partial stack), the default ports on this machine.
    for service, variable, port in (("registry", "REGISTRY_TARGET", 9083), ("monitoring", "MONITORING_TARGET", 9086),
                                    ("inference", "INFERENCE_TARGET", 8081)):
        env[f"LOOPLINE_ROLLOUT_{variable}"] = addresses.get(f"{service}_grpc", f"127.0.0.1:{port}")
    token = local_token(home, "releaser")
    if token and not os.environ.get("LOOPLINE_ROLLOUT_REGISTRY_TOKEN"):
        env["LOOPLINE_ROLLOUT_REGISTRY_TOKEN"] = token
    return env


SERVICES: tuple[ServiceSpec, ...] = (
    # First with features: inference, monitoring, training and rollout call it.
    ServiceSpec(name="registry", module="loopline_registry", http_port=8083, grpc_port=9083, env=_registry_env),
    # First: inference and monitoring call it. Its own environment holds feast.
    ServiceSpec(
        name="features", module="loopline_features", http_port=8082, grpc_port=9082, venv=".venvs/features",
        env=_features_env,
    ),
    ServiceSpec(name="monitoring", module="loopline_monitoring", http_port=8086, grpc_port=9086, env=_monitoring_env),
    # KServe's ports: HTTP 8080, gRPC 8081.
    ServiceSpec(name="inference", module="loopline_inference", http_port=8080, grpc_port=8081, env=_inference_env),
    # Its own environment holds torch; jobs run as its child processes (python -m loopline_training.job).
    ServiceSpec(
        name="training", module="loopline_training", http_port=8085, grpc_port=9085, venv=".venvs/training",
        env=_training_env,
    ),
    # Last: it drives inference and reads monitoring; registry events start its rollouts.
    ServiceSpec(name="rollout", module="loopline_rollout", http_port=8087, grpc_port=9087, env=_rollout_env),
)


@dataclass
class Component:
    name: str
    argv: list[str]
    log: str
    health: dict[str, str]
    urls: dict[str, str]
    pid: int = 0
    started_at: float = 0.0


class StackError(Exception):
    """`up` could not bring the stack to health; the message says which part and where its log is."""


def _process(component: Component) -> psutil.Process | None:
    """The running process of `component`, or None if it exited (or the pid now belongs to another)."""
    if not component.pid:
        return None
    try:
        proc = psutil.Process(component.pid)
        if abs(proc.create_time() - component.started_at) > 1.0 or proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc
    except psutil.NoSuchProcess:
        return None


def check_health(component: Component) -> tuple[bool, str]:
    """(healthy, detail) from the component's own health probe(s)."""
    results: list[tuple[bool, str]] = []
    for kind, target in component.health.items():
        if kind == "kafka":
            results.append(health.kafka_ok(target))
        elif kind == "http":
            results.append(health.http_ok(target))
        elif kind == "grpc":
            results.append(health.grpc_serving(target))
    ok = all(r[0] for r in results)
    return ok, "; ".join(r[1] for r in results)


class ComponentStatus(TypedDict):
    name: str
    state: str  # healthy | unhealthy | down
    pid: int
    urls: dict[str, str]
    log: str
    detail: str


def component_status(component: Component) -> ComponentStatus:
    if _process(component) is None:
        state, detail = "down", f"process {component.pid} is not running; see {component.log}"
    else:
        healthy, detail = check_health(component)
        state = "healthy" if healthy else "unhealthy"
    return {
        "name": component.name,
        "state": state,
        "pid": component.pid,
        "urls": component.urls,
        "log": component.log,
        "detail": detail,
    }


class Stack:
    def __init__(
        self,
        *,
        home: Path,
        ports: Ports = Ports(),
        services: Iterable[ServiceSpec] = SERVICES,
        repo: Path | None = None,
        prometheus: bool | None = None,
        env: dict[str, str] | None = None,
        only: Iterable[str] | None = None,
    ) -> None:
        self.home = home.resolve()
        # A subset of components to start (e.g. kafka and mlflow for a service run from an IDE); the
        # caller names what the chosen services need. None: everything.
        self.only = set(only) if only is not None else None
        services = list(services)
        known = {"kafka", "mlflow", "prometheus", *(spec.name for spec in services)}
        unknown = sorted((self.only or set()) - known)
        if unknown:
            raise StackError(f"unknown component(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        # Extra settings for every service, laid over each one's own (e.g. a demo profile's short windows).
        self.extra_env = dict(env or {})
        self.ports = ports
        self.services = [spec for spec in services if self._wanted(spec.name)]
        self.repo = repo or _find_repo()
        wanted = prometheus is not False and self._wanted("prometheus")
        self.prometheus_binary = shutil.which("prometheus") if wanted else None
        self.state_path = self.home / STATE_FILE

    def _wanted(self, name: str) -> bool:
        return self.only is None or name in self.only

    # ---- state -----------------------------------------------------------------------------------
    def load(self) -> list[Component]:
        if not self.state_path.exists():
            return []
        data = json.loads(self.state_path.read_text())
        return [Component(**c) for c in data["components"]]

    def _save(self, components: list[Component]) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"components": [asdict(c) for c in components]}, indent=2))
        tmp.replace(self.state_path)

    # ---- components ------------------------------------------------------------------------------
    def addresses(self) -> dict[str, str]:
        """Where the infrastructure is, for the services' settings."""
        return {
            "kafka": f"127.0.0.1:{self.ports.of(self.ports.kafka)}",
            "mlflow": f"http://127.0.0.1:{self.ports.of(self.ports.mlflow)}",
            "home": str(self.home),
            # each service's gRPC address, for services that call another: {"registry_grpc": "127.0.0.1:..."}
            **{f"{spec.name}_grpc": f"127.0.0.1:{self.ports.of(spec.grpc_port)}" for spec in self.services},
        }

    def _infrastructure(self) -> list[tuple[Component, dict[str, str]]]:
        bindir = Path(sys.executable).parent
        kafka_port = self.ports.of(self.ports.kafka)
        mlflow_port = self.ports.of(self.ports.mlflow)
        mlflow_dir = self.home / "mlflow"
        kafka = Component(
            name="kafka",
            argv=[
                str(bindir / "noida-db"), "start", "--data-dir", str(self.home / "kafka"),
                "--host", "127.0.0.1", "--only", "kafka", "--kafka-port", str(kafka_port),
            ],
            log=str(self.home / "logs" / "kafka.log"),
            health={"kafka": f"127.0.0.1:{kafka_port}"},
            urls={"bootstrap": f"127.0.0.1:{kafka_port}"},
        )
        mlflow = Component(
            name="mlflow",
            argv=[
                str(bindir / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(mlflow_port),
                "--workers", "1",
                "--backend-store-uri", f"sqlite:///{mlflow_dir / 'mlflow.db'}",
                "--artifacts-destination", str(mlflow_dir / "artifacts"),
                "--expose-prometheus", str(mlflow_dir / "metrics"),
            ],
            log=str(self.home / "logs" / "mlflow.log"),
            health={"http": f"http://127.0.0.1:{mlflow_port}/health"},
            urls={"ui": f"http://127.0.0.1:{mlflow_port}"},
        )
        mlflow_env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        return [(c, env) for c, env in [(kafka, {}), (mlflow, mlflow_env)] if self._wanted(c.name)]

    def _service(self, spec: ServiceSpec) -> tuple[Component, dict[str, str]]:
        python = sys.executable
        if spec.venv is not None and (self.repo / spec.venv / "bin" / "python").exists():
            python = str(self.repo / spec.venv / "bin" / "python")
        http_port, grpc_port = self.ports.of(spec.http_port), self.ports.of(spec.grpc_port)
        prefix = f"LOOPLINE_{spec.name.upper().replace('-', '_')}_"
        env = {
            f"{prefix}HOST": "127.0.0.1",
            f"{prefix}HTTP_PORT": str(http_port),
            f"{prefix}GRPC_PORT": str(grpc_port),
            **spec.env(self.addresses()),
        }
        env.update({k: v for k, v in self.extra_env.items() if k.startswith(prefix)})
        component = Component(
            name=spec.name,
            argv=[python, "-m", spec.module],
            log=str(self.home / "logs" / f"{spec.name}.log"),
            health={"http": f"http://127.0.0.1:{http_port}/readyz", "grpc": f"127.0.0.1:{grpc_port}"},
            urls={"http": f"http://127.0.0.1:{http_port}", "grpc": f"127.0.0.1:{grpc_port}"},
        )
        return component, env

    def _prometheus(self, targets: list[Component]) -> tuple[Component, dict[str, str]]:
        if self.prometheus_binary is None:
            raise StackError("prometheus is not installed")
        port = self.ports.of(self.ports.prometheus)
        folder = self.home / "prometheus"
        folder.mkdir(parents=True, exist_ok=True)
        jobs = [
            {
                "job_name": c.name,
                "static_configs": [{"targets": [c.urls["http"].removeprefix("http://")]}],
                "metrics_path": "/metrics",
            }
            for c in targets
            if "http" in c.urls
        ]
        jobs.append({"job_name": "prometheus", "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]})
        mlflow = self.ports.of(self.ports.mlflow)
        jobs.append({"job_name": "mlflow", "static_configs": [{"targets": [f"127.0.0.1:{mlflow}"]}]})
        config = {"global": {"scrape_interval": "5s", "evaluation_interval": "5s"}, "scrape_configs": jobs}
        # JSON is valid YAML, and keeps this free of a YAML dependency.
        (folder / "prometheus.yml").write_text(json.dumps(config, indent=2))
        component = Component(
            name="prometheus",
            argv=[
                self.prometheus_binary, f"--config.file={folder / 'prometheus.yml'}",
                f"--storage.tsdb.path={folder / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
            ],
            log=str(self.home / "logs" / "prometheus.log"),
            health={"http": f"http://127.0.0.1:{port}/-/ready"},
            urls={"ui": f"http://127.0.0.1:{port}"},
        )
        return component, {}

    # ---- lifecycle -------------------------------------------------------------------------------
    def _spawn(self, component: Component, env: dict[str, str]) -> None:
        Path(component.log).parent.mkdir(parents=True, exist_ok=True)
        with open(component.log, "ab") as log:
            proc = subprocess.Popen(
                component.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.home,
                env={**os.environ, **env},
                start_new_session=True,  # its own process group: down stops it and every child it made
            )
        component.pid = proc.pid
        component.started_at = psutil.Process(proc.pid).create_time()

    def _wait_healthy(self, components: list[Component], timeout: float) -> None:
        """Wait until every component is healthy; raise StackError naming the first that is not."""
        deadline = time.monotonic() + timeout

        def wait_one(component: Component) -> str | None:
            detail = ""
            while time.monotonic() < deadline:
                if _process(component) is None:
                    return f"{component.name} exited during start-up; see {component.log}:\n{_tail(component.log)}"
                ok, detail = check_health(component)
                if ok:
                    return None
                time.sleep(0.25)
            return f"{component.name} not healthy after {timeout:.0f}s ({detail}); see {component.log}"

        with ThreadPoolExecutor(max_workers=max(1, len(components))) as pool:
            problems = [p for p in pool.map(wait_one, components) if p]
        if problems:
            raise StackError("\n".join(problems))

    def up(self, *, timeout: float = 180.0, progress: Callable[[str], None] = lambda _: None) -> list[Component]:
        """Start everything and wait for health; on failure stop what started and raise StackError."""
        running = [c for c in self.load() if _process(c) is not None]
        if running:
            names = ", ".join(c.name for c in running)
            raise StackError(f"a stack is already running from {self.home} ({names}); run `loopline down` first")
        (self.home / "logs").mkdir(parents=True, exist_ok=True)
        started: list[Component] = []
        try:
            stages: list[list[tuple[Component, dict[str, str]]]] = [
                self._infrastructure(),
                [self._service(spec) for spec in self.services],
            ]
            for stage in stages:
                if not stage:
                    continue
                for component, env in stage:
                    progress(f"starting {component.name}")
                    self._spawn(component, env)
                    started.append(component)
                    self._save(started)
                self._wait_healthy([c for c, _ in stage], timeout)
                if stage is stages[0] and self._wanted("kafka"):
                    created = ensure_topics(self.addresses()["kafka"])
                    progress(f"created {len(created)} Kafka topics" if created else "Kafka topics exist")
            if self.prometheus_binary:
                component, env = self._prometheus([c for c in started if c.name not in ("kafka", "mlflow")])
                progress("starting prometheus")
                self._spawn(component, env)
                started.append(component)
                self._save(started)
                self._wait_healthy([component], timeout)
        except BaseException:
            self.down()
            raise
        return started

    def down(self, *, timeout: float = 15.0) -> list[str]:
        """Stop every recorded component (SIGTERM to its process group, SIGKILL after `timeout`)."""
        components = self.load()
        stopped = []
        for component in reversed(components):
            # The group, not just the leader: a crashed leader may have left children running.
            if group_members(component.pid, since=component.started_at):
                _stop_group(component.pid, component.started_at, timeout)
                stopped.append(component.name)
        if self.state_path.exists():
            self.state_path.unlink()
        return stopped

    def status(self) -> list[ComponentStatus]:
        components = self.load()
        with ThreadPoolExecutor(max_workers=max(1, len(components))) as pool:
            return list(pool.map(component_status, components))


def group_members(pgid: int, *, since: float = 0.0) -> list[psutil.Process]:
    """Live (non-zombie) processes of a process group started no earlier than `since` (a component's
    start time, so that an unrelated process that reused the pid is never counted)."""
    members = []
    for proc in psutil.process_iter(["pid", "create_time"]):
        try:
            if (
                os.getpgid(proc.pid) == pgid
                and proc.info["create_time"] >= since - 1.0
                and proc.status() != psutil.STATUS_ZOMBIE
            ):
                members.append(proc)
        except (ProcessLookupError, psutil.NoSuchProcess, PermissionError):
            continue
    return members


def _stop_group(pgid: int, since: float, timeout: float) -> None:
    """SIGTERM the process group, wait for all of it to exit, SIGKILL what is left after `timeout`."""
    members = group_members(pgid, since=since)
    for proc in members:
        _signal(proc, signal.SIGTERM)
    _, alive = psutil.wait_procs(members, timeout=timeout)
    for proc in alive:
        _signal(proc, signal.SIGKILL)
    psutil.wait_procs(alive, timeout=5)


def _signal(proc: psutil.Process, sig: int) -> None:
    with contextlib.suppress(psutil.NoSuchProcess):
        proc.send_signal(sig)


def _tail(path: str, lines: int = 20) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _find_repo() -> Path:
    """The repository root (for services' own environments): from LOOPLINE_REPO, the cwd, or this file."""
    if "LOOPLINE_REPO" in os.environ:
        return Path(os.environ["LOOPLINE_REPO"])
    for candidate in (Path.cwd(), *Path.cwd().parents, *Path(__file__).resolve().parents):
        if (candidate / "services").is_dir() and (candidate / "protos").is_dir():
            return candidate
    return Path.cwd()
