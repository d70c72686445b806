"""ResolveAlias and ListVersions: Loopline's registry proxy vs MLflow's own client, side by side in one run.

Run it with `make bench-registry` (i.e. `.venv/bin/python bench/registry.py`). Writes
bench/results/registry.json and prints a table.

Set-up, all on 127.0.0.1: an MLflow 3 server (SQLite backend, proxied artifacts, one worker), a Kafka-wire
broker (noida-db), and two registry processes in front of that MLflow: one with its normal cache, one with
the cache off (TTL 0, so every read goes to MLflow: the cache-miss path). One model with 1,000 versions,
made with MLflow's client; the alias `champion` on one of them. The servers are pinned to core 1 and this
client to core 0 (taskset), so the client never competes with the servers.

Figures (latency of one call at a time, after a warm-up; rounds of ours and MLflow's are interleaved so
that a change in machine load hits both sides alike):
  - ResolveAlias, cache hit: proxy over gRPC vs MlflowClient.get_model_version_by_alias. Goal: p50 <= 0.1x.
  - ResolveAlias, cache miss: the same, through the registry whose cache is off. Goal: p50 <= 1.2x + 1 ms.
  - ListVersions over 1,000 versions (one page of 1,000), proxy with its cache vs
    MlflowClient.search_model_versions for the same 1,000. Goal: p99 <= 100 ms.
  - ListVersions over 1,000 versions with the cache off (every call is a miss): reported, no goal of its own.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
RESULTS = REPO / "bench" / "results" / "registry.json"
SERVER_CORE, CLIENT_CORE = "1", "0"
VERSIONS = 1000
ROUNDS = 10
RESOLVE_PER_ROUND = 100
LIST_PER_ROUND = 10
MODEL = "bench-model"

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")

import grpc  # noqa: E402
import httpx  # noqa: E402
from mlflow import MlflowClient  # noqa: E402

from loopline.registry.v1 import registry_pb2 as pb  # noqa: E402
from loopline.registry.v1 import registry_pb2_grpc as pb_grpc  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pinned(argv: list[str], core: str) -> list[str]:
    return ["taskset", "-c", core, *argv] if shutil.which("taskset") and (os.cpu_count() or 1) > 1 else argv


class Processes:
    """Servers started by the benchmark, each in its own process group, all stopped at the end."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            pinned(argv, SERVER_CORE), env={**os.environ, **env}, stdout=open(log, "wb"),  # noqa: SIM115
            stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO,
        )
        self.started.append(proc)
        return proc

    def stop(self) -> None:
        for proc in reversed(self.started):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.started:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


def wait_until(check: Callable[[], bool], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: {what} not ready after {timeout:.0f} s")
        time.sleep(0.2)


def http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def start_registry(procs: Processes, folder: Path, name: str, env: dict[str, str]) -> int:
    grpc_port, http_port = free_port(), free_port()
    procs.start(
        [sys.executable, "-m", "loopline_registry"],
        {
            "LOOPLINE_REGISTRY_GRPC_PORT": str(grpc_port), "LOOPLINE_REGISTRY_HTTP_PORT": str(http_port),
            "LOOPLINE_REGISTRY_STORE_URL": f"sqlite:///{folder / f'{name}.db'}",
            "LOOPLINE_REGISTRY_INSTANCE_ID": name, "LOOPLINE_REGISTRY_ANONYMOUS_READS": "true",
            "LOOPLINE_REGISTRY_LOG_LEVEL": "WARNING", **env,
        },
        folder / f"{name}.log",
    )
    wait_until(lambda: http_ok(f"http://127.0.0.1:{http_port}/readyz"), name, 120)
    return grpc_port


def seed(mlflow_uri: str) -> None:
    """One model with VERSIONS versions of one run's model folder, and the alias champion. (Versions of an
    MLflow 3 logged model would each rewrite a tag on it listing every version: quadratic, and slow.)"""
    client = MlflowClient(mlflow_uri)
    experiment = client.create_experiment("bench")
    run = client.create_run(experiment)
    client.log_metric(run.info.run_id, "roc_auc", 0.9)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "model.onnx").write_bytes(b"\0" * 1024)
        client.log_artifacts(run.info.run_id, tmp, "model")
    client.set_terminated(run.info.run_id)
    source = f"{run.info.artifact_uri}/model"
    client.create_registered_model(MODEL)
    started = time.monotonic()
    for i in range(VERSIONS):
        client.create_model_version(MODEL, source, run_id=run.info.run_id, tags={"i": str(i)},
                                    await_creation_for=0)
    print(f"  {VERSIONS} versions created in {time.monotonic() - started:.0f} s")
    client.set_registered_model_alias(MODEL, "champion", str(VERSIONS // 2))


def timed(call: Callable[[], Any], n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        call()
        out.append(time.perf_counter() - start)
    return out


def p(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def compare(ours: Callable[[], Any], peer: Callable[[], Any], per_round: int) -> tuple[list[float], list[float]]:
    """Interleaved rounds of ours and the peer, after a warm-up of each."""
    timed(ours, per_round)
    timed(peer, per_round)
    mine: list[float] = []
    theirs: list[float] = []
    for _ in range(ROUNDS):
        mine += timed(ours, per_round)
        theirs += timed(peer, per_round)
    return mine, theirs


def main() -> None:
    if shutil.which("taskset") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {int(CLIENT_CORE)})
    folder = Path(tempfile.mkdtemp(prefix="bench-registry-"))
    procs = Processes()
    try:
        mlflow_port, kafka_port = free_port(), free_port()
        procs.start(
            [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(mlflow_port), "--workers", "1",
             "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}", "--artifacts-destination",
             str(folder / "artifacts")],
            {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}, folder / "mlflow.log",
        )
        procs.start(
            [str(BIN / "noida-db"), "start", "--data-dir", str(folder / "kafka"), "--host", "127.0.0.1",
             "--only", "kafka", "--kafka-port", str(kafka_port)], {}, folder / "kafka.log",
        )
        mlflow_uri = f"http://127.0.0.1:{mlflow_port}"
        print("starting MLflow and the broker ...")
        wait_until(lambda: http_ok(mlflow_uri + "/health"), "MLflow", 180)
        wait_until(lambda: port_open(kafka_port), "the broker", 60)
        print("seeding MLflow ...")
        seed(mlflow_uri)
        common = {"LOOPLINE_REGISTRY_MLFLOW_URI": mlflow_uri,
                  "LOOPLINE_REGISTRY_KAFKA_BOOTSTRAP": f"127.0.0.1:{kafka_port}"}
        print("starting the registries ...")
        cached_port = start_registry(procs, folder, "cached",
                                     {**common, "LOOPLINE_REGISTRY_CACHE_TTL_SECONDS": "3600"})
        uncached_port = start_registry(procs, folder, "uncached",
                                       {**common, "LOOPLINE_REGISTRY_CACHE_TTL_SECONDS": "0"})

        mlflow = MlflowClient(mlflow_uri)
        cached = pb_grpc.RegistryServiceStub(grpc.insecure_channel(f"127.0.0.1:{cached_port}"))
        uncached = pb_grpc.RegistryServiceStub(grpc.insecure_channel(f"127.0.0.1:{uncached_port}"))
        resolve = pb.ResolveAliasRequest(model_name=MODEL, alias="champion")
        listing = pb.ListVersionsRequest(model_name=MODEL, page_size=1000)
        expected = VERSIONS // 2
        # Both sides answer the same thing before anything is timed.
        checks = [
            cached.ResolveAlias(resolve, timeout=10).version == expected,
            uncached.ResolveAlias(resolve, timeout=10).version == expected,
            int(mlflow.get_model_version_by_alias(MODEL, "champion").version) == expected,
            len(cached.ListVersions(listing, timeout=30).versions) == VERSIONS,
            len(mlflow.search_model_versions(f"name='{MODEL}'", max_results=VERSIONS)) == VERSIONS,
        ]
        if not all(checks):
            raise SystemExit(f"bench: the two sides disagree before timing: {checks}")

        def peer_resolve() -> Any:
            return mlflow.get_model_version_by_alias(MODEL, "champion")

        def peer_list() -> Any:
            return mlflow.search_model_versions(f"name='{MODEL}'", max_results=VERSIONS)

        print("measuring ...")
        hit, peer_hit = compare(lambda: cached.ResolveAlias(resolve, timeout=10), peer_resolve, RESOLVE_PER_ROUND)
        miss, peer_miss = compare(lambda: uncached.ResolveAlias(resolve, timeout=10), peer_resolve, RESOLVE_PER_ROUND)
        listed, peer_listed = compare(lambda: cached.ListVersions(listing, timeout=30), peer_list, LIST_PER_ROUND)
        cold = timed(lambda: uncached.ListVersions(listing, timeout=30), LIST_PER_ROUND * 3)

        hit_ms, peer_hit_ms = p(hit, 0.5), p(peer_hit, 0.5)
        miss_ms, peer_miss_ms = p(miss, 0.5), p(peer_miss, 0.5)
        figures = [
            {"name": "ResolveAlias, cache hit (p50 ms): proxy gRPC vs MlflowClient", "ours": hit_ms,
             "peer": peer_hit_ms, "ratio": hit_ms / peer_hit_ms, "goal": "<= 0.1x MLflow's time",
             "met": hit_ms <= 0.1 * peer_hit_ms},
            {"name": "ResolveAlias, cache miss (p50 ms): proxy gRPC vs MlflowClient", "ours": miss_ms,
             "peer": peer_miss_ms, "ratio": miss_ms / peer_miss_ms, "goal": "<= 1.2x MLflow's time + 1 ms",
             "met": miss_ms <= 1.2 * peer_miss_ms + 1.0},
            {"name": f"ListVersions over {VERSIONS} versions (p99 ms): proxy gRPC vs MlflowClient search",
             "ours": p(listed, 0.99), "peer": p(peer_listed, 0.99), "ratio": p(listed, 0.99) / p(peer_listed, 0.99),
             "goal": "p99 <= 100 ms", "met": p(listed, 0.99) <= 100.0},
            {"name": f"ListVersions over {VERSIONS} versions, cache off (p99 ms): proxy vs MlflowClient search",
             "ours": p(cold, 0.99), "peer": p(peer_listed, 0.99), "ratio": p(cold, 0.99) / p(peer_listed, 0.99),
             "goal": "p99 <= 100 ms (not required)", "met": p(cold, 0.99) <= 100.0},
        ]
        for figure in figures:
            for key in ("ours", "peer", "ratio"):
                figure[key] = round(float(figure[key]), 3)
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
        print()
        print(f"{'figure':<84} {'ours':>9} {'peer':>9} {'ratio':>7}  {'goal':<36} met")
        for f in figures:
            print(f"{f['name']:<84} {f['ours']:>9.3f} {f['peer']:>9.3f} {f['ratio']:>7.3f}  {f['goal']:<36} "
                  f"{'yes' if f['met'] else 'NO'}")
        print(f"\n(p50 of {ROUNDS * RESOLVE_PER_ROUND} calls per ResolveAlias figure, p99 of {ROUNDS * LIST_PER_ROUND}"
              f" calls per ListVersions figure; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
        print(f"wrote {RESULTS.relative_to(REPO)}")
    finally:
        procs.stop()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
