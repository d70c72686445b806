"""GetOnlineFeatures: Loopline's features service vs Feast, side by side in one run.

Run with the features environment (feast lives only there): `make bench-features`, i.e.
`.venvs/features/bin/python bench/features.py`. Writes bench/results/features.json and prints a table.

Set-up: demo history (2,000 customers) in a SQLite online store (the embedded stack's store), 10 stored
features of one entity (4 profile + 3 of the 1 h and 3 of the 24 h customer aggregates: three views).
Each server runs pinned to its own core with taskset (ours: one process serving gRPC and HTTP; Feast:
`feast serve` with one uvicorn worker, no worker recycling, access log off, registry cache kept); the
load generator is pinned to the other core, so client and server never share a core.

Figures: p50/p99 latency and throughput (8 concurrent requests for a fixed time) for 1 entity x 10
features and 100 entities x 10 features. Latency is measured at a stated, light load: one closed-loop
client, one request in flight at a time (the next is sent when the answer arrives), so it is the time of
one request through the server, not queueing behind other requests; a p99 goal is a goal at a given
load, and the saturated case is what the throughput figures measure. Besides latency, the server's CPU
time per request (its process's user + system time over the latency run, from /proc) is reported: on a
shared machine the latencies carry other work's scheduling delays, the CPU time much less so.
Compared:
  ours gRPC vs `feast serve` HTTP, ours HTTP vs `feast serve` HTTP,
and the in-process call (ours: FeaturesCore.get_online_features; peer: FeatureStore.get_online_features
+ to_dict) measured the same way. One Python client library per protocol measures both sides (grpcio
for gRPC, httpx with a keep-alive connection for HTTP) for latency; throughput comes from h2load
(8 connections, one request in flight each, 6 s after a 1 s warm-up; gRPC as HTTP/2 POSTs of the framed
message), or the same Python clients when h2load is not installed. Goals (issue 4): gRPC p99 <= 3 ms
at 1x10; throughput >= 1.5x tuned `feast serve`; in-process <= 1.2x the Feast SDK.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import grpc  # noqa: E402
import httpx  # noqa: E402

from loopline.common.v1 import types_pb2  # noqa: E402
from loopline.features.v1 import features_pb2, features_pb2_grpc  # noqa: E402

RESULTS = REPO / "bench" / "results" / "features.json"
REFS = [
    "customer_profile:credit_limit", "customer_profile:account_age_days", "customer_profile:home_region",
    "customer_profile:is_premium", "customer_txn_1h:txn_count_1h", "customer_txn_1h:txn_amount_sum_1h",
    "customer_txn_1h:txn_amount_max_1h", "customer_txn_24h:txn_count_24h", "customer_txn_24h:txn_amount_sum_24h",
    "customer_txn_24h:txn_cnp_share_24h",
]
LATENCY_REQUESTS = 1500
THROUGHPUT_SECONDS = 6.0
CONCURRENCY = 8
SERVER_CORE, CLIENT_CORE = "1", "0"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} not up after {timeout}s")


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return ordered[len(ordered) // 2] * 1000, ordered[int(len(ordered) * 0.99) - 1] * 1000


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time so far of a process and its descendants (`feast serve` runs its worker as a
    child), all threads, from /proc."""
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            for task in Path(f"/proc/{current}/task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())
        except OSError:  # ended meanwhile
            continue
    return total


def measure_latency(call: Callable[[], Any], server_pid: int | None = None) -> tuple[float, float, float]:
    """p50 and p99 in ms of LATENCY_REQUESTS sequential calls (after 100 to warm up), and the server's CPU
    ms per call over them (0 without a server process)."""
    for _ in range(100):
        call()
    samples = []
    cpu = process_cpu_seconds(server_pid) if server_pid else 0.0
    for _ in range(LATENCY_REQUESTS):
        t = time.perf_counter()
        call()
        samples.append(time.perf_counter() - t)
    per_call = (process_cpu_seconds(server_pid) - cpu) / LATENCY_REQUESTS * 1000 if server_pid else 0.0
    p50, p99 = percentiles(samples)
    return p50, p99, per_call


def measure_throughput_grpc(target: str, request: Any) -> float:
    async def run() -> float:
        async with grpc.aio.insecure_channel(target) as channel:
            stub = features_pb2_grpc.FeaturesServiceStub(channel)
            done = 0
            stop = time.perf_counter() + THROUGHPUT_SECONDS

            async def worker() -> None:
                nonlocal done
                while time.perf_counter() < stop:
                    await stub.GetOnlineFeatures(request)
                    done += 1

            start = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
            return done / (time.perf_counter() - start)

    return asyncio.run(run())


def measure_throughput_http(url: str, body: dict[str, Any]) -> float:
    async def run() -> float:
        limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
        async with httpx.AsyncClient(limits=limits, timeout=30) as client:
            done = 0
            stop = time.perf_counter() + THROUGHPUT_SECONDS

            async def worker() -> None:
                nonlocal done
                while time.perf_counter() < stop:
                    response = await client.post(url, json=body)
                    response.raise_for_status()
                    done += 1

            start = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
            return done / (time.perf_counter() - start)

    return asyncio.run(run())


def h2load_throughput(url: str, body: bytes, headers: list[str], *, http1: bool) -> float | None:
    """Requests per second from h2load (a C load generator, pinned to the client core), or None without it.

    gRPC goes through h2load as what it is on the wire: an HTTP/2 POST of a length-prefixed message
    with `content-type: application/grpc` (h2load counts the 200 answers; grpc-status is checked once
    by the Python client before the run).
    """
    binary = shutil.which("h2load")
    if binary is None:
        return None
    with tempfile.NamedTemporaryFile(suffix=".body") as f:
        f.write(body)
        f.flush()
        argv = ["taskset", "-c", CLIENT_CORE, binary, "-D", str(int(THROUGHPUT_SECONDS)), "--warm-up-time", "1",
                "-c", str(CONCURRENCY), "-m", "1", "-t", "1", "-d", f.name, *(a for h in headers for a in ("-H", h))]
        if http1:
            argv.append("--h1")
        out = subprocess.run([*argv, url], capture_output=True, text=True, check=False).stdout
    rate = re.search(r"finished in [0-9.]+m?s, ([0-9.]+) req/s", out)
    failed = re.search(r"requests: .* ([0-9]+) failed", out)
    errored = re.search(r"status codes: [0-9]+ 2xx, ([0-9]+) 3xx, ([0-9]+) 4xx, ([0-9]+) 5xx", out)
    if rate is None or (failed and int(failed.group(1))) or (errored and any(int(g) for g in errored.groups())):
        raise RuntimeError(f"h2load failed:\n{out[-2000:]}")
    return float(rate.group(1))


def grpc_request(n: int) -> features_pb2.GetOnlineFeaturesRequest:
    request = features_pb2.GetOnlineFeaturesRequest(feature_refs=features_pb2.FeatureRefs(refs=REFS))
    for i in range(n):
        request.entities.add().join_keys["customer_id"].CopyFrom(types_pb2.Value(string_value=f"C{i:06d}"))
    return request


def main() -> None:
    os.sched_setaffinity(0, {int(CLIENT_CORE)})
    from loopline_features.demo import DemoConfig
    from loopline_features.demo_cli import write_history

    work = Path(tempfile.mkdtemp(prefix="bench-features-"))
    data_dir = work / "data"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        print("writing demo history and materializing ...", flush=True)
        now = datetime.now(UTC).replace(microsecond=0)
        write_history(repo_dir=REPO / "feature_repo", data_dir=data_dir, environment="embedded",
                      config=DemoConfig(customers=2000, merchants=200, seed=7), days=3, now=now)
        from loopline_features.backend import FeastBackend
        from loopline_features.core import FeaturesCore
        from loopline_features.metrics import FeaturesMetrics

        from loopline_common.metrics import ServiceMetrics

        backend = FeastBackend(repo_dir=REPO / "feature_repo", data_dir=data_dir, environment="embedded",
                               max_entities=1000, store_timeout_seconds=1.0)
        backend.apply()
        backend.materialize(start=now - timedelta(days=400), end=now + timedelta(seconds=1), views=[])

        # Feast's own repo layout for `feast serve`: the same declarations and store, config by path.
        feast_repo = work / "feast_repo"
        shutil.copytree(REPO / "feature_repo", feast_repo, ignore=shutil.ignore_patterns("*.yaml", "__pycache__"))
        (feast_repo / "feature_store.yaml").write_text(
            (REPO / "feature_repo" / "feature_store.embedded.yaml").read_text()
            .replace("path: registry.db", f"path: {data_dir / 'registry.db'}")
            .replace("path: online.db", f"path: {data_dir / 'online.db'}")
        )
        ours_http, ours_grpc, feast_http = free_port(), free_port(), free_port()
        env = {**os.environ, "LOOPLINE_FEATURES_HTTP_PORT": str(ours_http),
               "LOOPLINE_FEATURES_GRPC_PORT": str(ours_grpc), "LOOPLINE_FEATURES_REPO_DIR": str(REPO / "feature_repo"),
               "LOOPLINE_FEATURES_DATA_DIR": str(data_dir), "LOOPLINE_FEATURES_LOG_LEVEL": "WARNING"}
        feast_bin = str(Path(sys.executable).parent / "feast")
        taskset = shutil.which("taskset") or "taskset"
        procs.append(subprocess.Popen([taskset, "-c", SERVER_CORE, sys.executable, "-m", "loopline_features"],
                                      env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      start_new_session=True))
        # Tuned for speed: one worker on one core (no worker recycling: max_requests 0), no access log,
        # the registry cached (cache_ttl from the store config), keep-alive kept.
        procs.append(subprocess.Popen(
            [taskset, "-c", SERVER_CORE, feast_bin, "-c", str(feast_repo), "serve", "--host", "127.0.0.1",
             "--port", str(feast_http), "--workers", "1", "--no-access-log", "--max-requests", "0",
             "--keep-alive-timeout", "30"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, cwd=feast_repo,
        ))
        wait_http(f"http://127.0.0.1:{ours_http}/readyz")
        wait_http(f"http://127.0.0.1:{feast_http}/health")
        ours_pid, feast_pid = procs[0].pid, procs[1].pid  # taskset execs the server in the same process

        results: list[dict[str, Any]] = []

        def figure(name: str, ours: float, peer: float, goal: str, met: bool) -> None:
            ratio = ours / peer if peer else float("inf")
            note = f"load average {os.getloadavg()[0]:.1f} on 2 cores (other work on the machine)"
            results.append({"name": name, "ours": round(ours, 3), "peer": round(peer, 3), "ratio": round(ratio, 3),
                            "goal": goal, "met": met, "note": note})

        channel = grpc.insecure_channel(f"127.0.0.1:{ours_grpc}")
        stub = features_pb2_grpc.FeaturesServiceStub(channel)
        http = httpx.Client(timeout=30)
        core = FeaturesCore(backend=backend, metrics=FeaturesMetrics(ServiceMetrics("bench")),
                            training_sets_root=str(work / "sets"), max_historical_rows=10)
        feast = backend.online
        for n in (1, 100):
            label = f"{n}x10"
            entities = [{"customer_id": f"C{i:06d}"} for i in range(n)]
            request = grpc_request(n)
            ours_body = {"features": REFS, "entities": entities}
            feast_body = {"features": REFS, "entities": {"customer_id": [e["customer_id"] for e in entities]}}
            ours_url = f"http://127.0.0.1:{ours_http}/v1/online-features"
            feast_url = f"http://127.0.0.1:{feast_http}/get-online-features"
            check = http.post(feast_url, json=feast_body)
            check.raise_for_status()

            g50, g99, g_cpu = measure_latency(lambda r=request: stub.GetOnlineFeatures(r), ours_pid)
            h50, h99, h_cpu = measure_latency(
                lambda b=ours_body, u=ours_url: http.post(u, json=b).raise_for_status(), ours_pid)
            f50, f99, f_cpu = measure_latency(
                lambda b=feast_body, u=feast_url: http.post(u, json=b).raise_for_status(), feast_pid)
            i50, i99, _ = measure_latency(lambda e=entities: core.get_online_features(
                feature_service=None, refs=REFS, entities=e))
            s50, s99, _ = measure_latency(lambda e=entities: feast.get_online_features(
                features=REFS, entity_rows=e).to_dict())
            json_headers = ["content-type: application/json"]
            payload = request.SerializeToString()
            framed = b"\x00" + len(payload).to_bytes(4, "big") + payload
            grpc_url = f"http://127.0.0.1:{ours_grpc}/loopline.features.v1.FeaturesService/GetOnlineFeatures"
            g_tp = h2load_throughput(grpc_url, framed, ["content-type: application/grpc", "te: trailers"],
                                     http1=False) or measure_throughput_grpc(f"127.0.0.1:{ours_grpc}", request)
            h_tp = h2load_throughput(ours_url, json.dumps(ours_body).encode(), json_headers, http1=True) \
                or measure_throughput_http(ours_url, ours_body)
            f_tp = h2load_throughput(feast_url, json.dumps(feast_body).encode(), json_headers, http1=True) \
                or measure_throughput_http(feast_url, feast_body)

            p99_goal = "gRPC p99 <= 3 ms" if n == 1 else "report (no goal at 100x10)"
            figure(f"{label} gRPC server CPU ms per request vs feast serve", g_cpu, f_cpu, "report", True)
            figure(f"{label} HTTP server CPU ms per request vs feast serve", h_cpu, f_cpu, "report", True)
            figure(f"{label} gRPC p50 ms vs feast serve", g50, f50, "report", True)
            figure(f"{label} gRPC p99 ms vs feast serve (one client, one request in flight)", g99, f99, p99_goal,
                   g99 <= 3.0 if n == 1 else True)
            figure(f"{label} HTTP p50 ms vs feast serve", h50, f50, "report", True)
            figure(f"{label} HTTP p99 ms vs feast serve", h99, f99, "report", True)
            figure(f"{label} gRPC throughput rps vs feast serve", g_tp, f_tp, ">= 1.5x feast serve", g_tp >= 1.5 * f_tp)
            figure(f"{label} HTTP throughput rps vs feast serve", h_tp, f_tp, ">= 1.5x feast serve",
                   h_tp >= 1.5 * f_tp)
            figure(f"{label} in-process p50 ms vs Feast SDK", i50, s50, "<= 1.2x Feast SDK", i50 <= 1.2 * s50)
            figure(f"{label} in-process p99 ms vs Feast SDK", i99, s99, "<= 1.2x Feast SDK", i99 <= 1.2 * s99)
        channel.close()
        http.close()
    finally:
        from tests.helpers import stop_group

        for proc in procs:
            stop_group(proc)
        shutil.rmtree(work, ignore_errors=True)

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    width = max(len(r["name"]) for r in results)
    print(f"\n{'figure':<{width}}  {'ours':>10}  {'peer':>10}  {'ratio':>7}  met  goal")
    for r in results:
        print(f"{r['name']:<{width}}  {r['ours']:>10.3f}  {r['peer']:>10.3f}  {r['ratio']:>7.2f}  "
              f"{'yes' if r['met'] else 'NO ':<3}  {r['goal']}")
    print(f"\nload average during the run: {os.getloadavg()[0]:.2f} (2 cores; other work on the machine skews figures)")
    print(f"wrote {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
