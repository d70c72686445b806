# ruff: noqa: S101, S607 - a benchmark script: asserts check the load tools, which are found on PATH
"""Inference benchmark: Loopline's server against the stock KServe 0.21 ModelServer, side by side.

Same ONNX model (a 100-tree LightGBM binary classifier, as the demo workload trains), each server alone
on core 0 (taskset), load generators on core 1: wrk for REST (JSON), and for gRPC (a fixed OIP
ModelInfer message with raw_input_contents, from bench/grpc_load.py: a grpc.aio client with 16 calls in
flight, the same for every server; h2load stalled on grpc.aio servers). Also measured: the bare
floors (a minimal ASGI app and a minimal grpc.aio server calling ONNX Runtime, no metrics or logging),
ONNX Runtime in-process (1,000-row batches), and the CPU per request of our server with the prediction
log on (to a local Kafka-wire broker) and off. Writes bench/results/inference.json and prints a table.

Every server runs once per round, rounds interleaved (default 3); a figure's "ours" and "peer" are
medians over the rounds and its ratio is the median of the rounds' own ratios, each listed under
"rounds". One round alone moves 10-20 % on this shared machine, more than the margins of the goals.

    make bench-inference      (or: .venv/bin/python bench/inference.py [--seconds 8] [--rounds 3])
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
PY = sys.executable
BIN = Path(PY).parent
SERVER_CORE, LOAD_CORE = "0", "1"
CONNECTIONS = 16
FEATURES = 16


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pinned(argv: list[str], env: dict[str, str] | None = None, core: str = SERVER_CORE) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["taskset", "-c", core, *argv], env={**os.environ, **(env or {})}, cwd=REPO,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    from tests.helpers import stop_group

    stop_group(proc)


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:  # noqa: S310 - loopback URL we built
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"{url} not ready after {timeout}s")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---- load generators ----------------------------------------------------------------------------------

def _ms(text: str) -> float:
    found = re.match(r"([\d.]+)(us|ms|s)\b", text)
    if found is None:  # wrk prints "-nan" when it recorded no latency (e.g. every request errored)
        raise RuntimeError(f"wrk printed no latency figure ({text!r})")
    value, unit = found.groups()
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]


def wrk(url: str, body: bytes, seconds: int, workdir: Path) -> dict[str, float]:
    script = workdir / "post.lua"
    script.write_text(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = {json.dumps(body.decode())}\n"
    )
    for _ in range(3):  # on a starved machine wrk sometimes prints no latency distribution: run it again
        out = subprocess.run(
            ["taskset", "-c", LOAD_CORE, "wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency", "-s",
             str(script), url], capture_output=True, text=True, check=True,
        ).stdout
        if re.search(r"^\s*50%\s+[\d.]+\w+", out, re.M) and re.search(r"^\s*99%\s+[\d.]+\w+", out, re.M):
            break
    else:
        raise RuntimeError(f"wrk printed no latency distribution three times:\n{out}")
    if "Non-2xx" in out:
        raise RuntimeError(f"wrk saw errors:\n{out}")
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        # Anchored: the thread-stats lines end in a "+/- Stdev" share such as "95.50%".
        "p50_ms": _ms(re.search(r"^\s*50%\s+(\S+)", out, re.M).group(1)),  # type: ignore[union-attr]
        "p99_ms": _ms(re.search(r"^\s*99%\s+(\S+)", out, re.M).group(1)),  # type: ignore[union-attr]
        "requests": requests,
    }


def grpc_load(port: int, message: bytes, seconds: int, workdir: Path) -> dict[str, float]:
    """bench/grpc_load.py on the load core: a closed-loop grpc.aio client, CONNECTIONS calls in flight."""
    data = workdir / "grpc.bin"
    data.write_bytes(message)
    out = subprocess.run(
        ["taskset", "-c", LOAD_CORE, PY, str(REPO / "bench" / "grpc_load.py"), str(port), str(data), str(seconds),
         "--concurrency", str(CONNECTIONS), "--channels", "4"],
        capture_output=True, text=True, check=True, timeout=seconds + 120,
    ).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    if result["failures"] or not result["requests"]:
        raise RuntimeError(f"the gRPC load client saw failures: {result}")
    return result


def grpc_message(rows: int) -> bytes:
    from loopline_inference.oip_pb import pb

    m = pb()
    x = np.random.default_rng(0).normal(size=(rows, FEATURES)).astype(np.float32)
    request = m.ModelInferRequest(model_name="fraud", raw_input_contents=[x.tobytes()])
    request.inputs.add(name="input", datatype="FP32", shape=[rows, FEATURES])
    return bytes(request.SerializeToString())


def check_grpc(port: int, rows: int) -> None:
    """One real gRPC call with a parsed answer, before the load."""
    import grpc
    from loopline_inference.oip_pb import pb

    m = pb()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer",
            request_serializer=lambda b: b, response_deserializer=m.ModelInferResponse.FromString,
        )
        reply = call(grpc_message(rows), timeout=30)
    assert reply.outputs, "empty gRPC answer"


# ---- the run -------------------------------------------------------------------------------------------

def measure_server(name: str, argv: list[str], env: dict[str, str], http_port: int, grpc_port: int, ready: str,
                   infer_path: str, seconds: int, workdir: Path, rows1000: bool = False) -> dict[str, Any]:
    proc = pinned(argv, env)
    try:
        wait_ready(f"http://127.0.0.1:{http_port}{ready}", proc)
        body = json.dumps({"inputs": [{"name": "input", "shape": [1, FEATURES], "datatype": "FP32",
                                       "data": [round(0.1 * i, 3) for i in range(FEATURES)]}]}).encode()
        url = f"http://127.0.0.1:{http_port}{infer_path}"
        wrk(url, body, 2, workdir)  # warm-up
        cpu0 = cpu_seconds(proc.pid)
        rest = wrk(url, body, seconds, workdir)
        rest["cpu_us_per_request"] = (cpu_seconds(proc.pid) - cpu0) / rest["requests"] * 1e6
        result: dict[str, Any] = {"rest": rest}
        if grpc_port:
            check_grpc(grpc_port, 1)
            cpu0 = cpu_seconds(proc.pid)
            result["grpc"] = grpc_load(grpc_port, grpc_message(1), seconds, workdir)
            # Includes the client's warm-up second, whose requests are not counted: an upper bound.
            result["grpc"]["cpu_us_per_request"] = (cpu_seconds(proc.pid) - cpu0) / result["grpc"]["requests"] * 1e6
            if rows1000:
                check_grpc(grpc_port, 1000)
                result["grpc1000"] = grpc_load(grpc_port, grpc_message(1000), seconds, workdir)
        print(f"  {name}: {json.dumps(result)}", flush=True)
        return result
    finally:
        stop(proc)


def in_process_rows_per_second(model: Path, seconds: float) -> float:
    import onnxruntime as ort

    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {int(SERVER_CORE)})
    try:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(str(model), sess_options=options, providers=["CPUExecutionProvider"])
        x = np.random.default_rng(0).normal(size=(1000, FEATURES)).astype(np.float32)
        for _ in range(20):
            session.run(None, {"input": x})
        n, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            session.run(None, {"input": x})
            n += 1
        return n * 1000 / (time.perf_counter() - started)
    finally:
        os.sched_setaffinity(0, before)


def figure(name: str, ours: float, peer: float, goal: str, *, ratio: float | None = None,
           at_least: float | None = None, at_most: float | None = None) -> dict[str, Any]:
    """One result; the ratio is ours / peer unless given (the median of per-round ratios)."""
    if ratio is None:
        ratio = ours / peer if peer else float("inf")
    met = (at_least is None or ratio >= at_least) and (at_most is None or ratio <= at_most)
    return {"name": name, "ours": round(ours, 3), "peer": round(peer, 3), "ratio": round(ratio, 3), "goal": goal,
            "met": bool(met)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=8, help="length of each load run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of every server")
    args = parser.parse_args()
    for tool in ("taskset", "wrk"):
        if shutil.which(tool) is None:
            print(f"bench: {tool} is missing (apt-get install -y util-linux wrk)", file=sys.stderr)
            return 2
    if len(os.sched_getaffinity(0)) < 2:
        print("bench: needs two cores (server on one, load on the other)", file=sys.stderr)
        return 2
    from tests.helpers import Broker
    from tests.inference.models import lightgbm_model

    work = Path(tempfile.mkdtemp(prefix="loopline-bench-"))
    broker = Broker(data_dir=work / "kafka", port=free_port())
    try:
        print("building the model (100-tree LightGBM)...", flush=True)
        model = lightgbm_model(work / "model" / "model.onnx", n_features=FEATURES, trees=100)
        broker.start()
        from loopline_common.topics import ensure_topics

        ensure_topics(broker.bootstrap)
        results: dict[str, dict[str, Any]] = {}

        def ours(logging: bool) -> dict[str, Any]:
            http, grpc_port = free_port(), free_port()
            env = {
                "LOOPLINE_INFERENCE_HTTP_PORT": str(http), "LOOPLINE_INFERENCE_GRPC_PORT": str(grpc_port),
                "LOOPLINE_INFERENCE_MODEL_NAME": "fraud", "LOOPLINE_INFERENCE_MODEL": str(model.parent),
                "LOOPLINE_INFERENCE_LOG_LEVEL": "WARNING",
                "LOOPLINE_INFERENCE_KAFKA_BOOTSTRAP": broker.bootstrap if logging else "",
            }
            return measure_server(f"ours (logging {'on' if logging else 'off'})",
                                  [PY, "-m", "loopline_inference"], env, http, grpc_port, "/v2/health/ready",
                                  "/v2/models/fraud/infer", args.seconds, work, rows1000=logging)

        print(f"measuring (server on core 0, load on core 1), {args.rounds} interleaved rounds...", flush=True)
        rounds: list[dict[str, dict[str, Any]]] = []
        for number in range(args.rounds):
            print(f" round {number + 1} of {args.rounds}", flush=True)
            results: dict[str, dict[str, Any]] = {}
            # Logging on and off back to back, in alternating order: their CPU per request is a small
            # difference between two runs on a shared machine.
            for logging in (True, False) if number % 2 == 0 else (False, True):
                results["ours" if logging else "ours_nolog"] = ours(logging)
            http, grpc_port = free_port(), free_port()
            results["kserve"] = measure_server(
                "kserve 0.21 ModelServer", [PY, str(REPO / "bench" / "kserve_server.py"), str(model), str(http),
                                            str(grpc_port)], {}, http, grpc_port, "/v2/health/ready",
                "/v2/models/fraud/infer", args.seconds, work)
            results["floor_rest"] = _floor_rest(model, args.seconds, work)
            results["floor_grpc"] = _floor_grpc(model, args.seconds, work)
            results["in_process"] = {"rows_per_s": in_process_rows_per_second(model, 3.0)}
            print(f"  onnxruntime in-process: {results['in_process']['rows_per_s']:.0f} rows/s (1000-row batches)",
                  flush=True)
            rounds.append(results)
    finally:
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)

    def paired(name: str, ours_of: Any, peer_of: Any, goal: str, **bound: float) -> dict[str, Any]:
        """A figure over the rounds: ours and peer are medians, the ratio is the median of the rounds' own
        ratios (each round's runs are minutes apart at most, so the machine's drift falls on both)."""
        mine = [float(ours_of(r)) for r in rounds]
        theirs = [float(peer_of(r)) for r in rounds]
        each = [a / b for a, b in zip(mine, theirs, strict=True)]
        result = figure(name, statistics.median(mine), statistics.median(theirs), goal,
                        ratio=statistics.median(each), **bound)
        result["rounds"] = [round(r, 3) for r in each]
        return result

    def metric(*path: str) -> Any:
        def read(r: dict[str, Any]) -> Any:
            for key in path:
                r = r[key]
            return r
        return read

    figures = [
        paired("REST throughput (req/s), vs stock KServe", metric("ours", "rest", "rps"),
               metric("kserve", "rest", "rps"), "ratio >= 2.5", at_least=2.5),
        paired("gRPC throughput (req/s), vs stock KServe", metric("ours", "grpc", "rps"),
               metric("kserve", "grpc", "rps"), "ratio >= 1.6", at_least=1.6),
        paired("REST throughput (req/s), vs bare ASGI floor", metric("ours", "rest", "rps"),
               metric("floor_rest", "rps"), "ratio >= 0.75", at_least=0.75),
        paired("gRPC throughput (req/s), vs bare grpc.aio floor", metric("ours", "grpc", "rps"),
               metric("floor_grpc", "rps"), "ratio >= 0.75", at_least=0.75),
        paired("REST p50 latency (ms), vs stock KServe", metric("ours", "rest", "p50_ms"),
               metric("kserve", "rest", "p50_ms"), "ratio <= 0.5", at_most=0.5),
        paired("gRPC p50 latency (ms), vs stock KServe", metric("ours", "grpc", "p50_ms"),
               metric("kserve", "grpc", "p50_ms"), "ratio <= 0.5", at_most=0.5),
        paired("REST p99 latency (ms), vs stock KServe", metric("ours", "rest", "p99_ms"),
               metric("kserve", "rest", "p99_ms"), "ratio <= 1.0", at_most=1.0),
        paired("gRPC p99 latency (ms), vs stock KServe", metric("ours", "grpc", "p99_ms"),
               metric("kserve", "grpc", "p99_ms"), "ratio <= 1.0", at_most=1.0),
        paired("gRPC 1,000-row requests (rows/s), vs ONNX Runtime in-process",
               lambda r: r["ours"]["grpc1000"]["rps"] * 1000, metric("in_process", "rows_per_s"), "ratio >= 0.7",
               at_least=0.7),
        paired("CPU per REST request (µs), prediction log on vs off", metric("ours", "rest", "cpu_us_per_request"),
               metric("ours_nolog", "rest", "cpu_us_per_request"), "ratio <= 1.05", at_most=1.05),
        paired("CPU per gRPC request (µs), prediction log on vs off", metric("ours", "grpc", "cpu_us_per_request"),
               metric("ours_nolog", "grpc", "cpu_us_per_request"), "ratio <= 1.05", at_most=1.05),
        # For reading the gRPC p50: with CONNECTIONS calls always in flight, p50 is close to CONNECTIONS /
        # throughput, so a p50 ratio of 0.5 asks for twice KServe's throughput; this is how far the bare
        # floor itself gets.
        paired("gRPC throughput (req/s), bare grpc.aio floor vs stock KServe (context)", metric("floor_grpc", "rps"),
               metric("kserve", "grpc", "rps"), "report"),
    ]
    note = f"median of {args.rounds} interleaved rounds of {args.seconds} s runs; load average at the end " \
           f"{os.getloadavg()[0]:.1f} on 2 cores"
    for f in figures:
        f["note"] = note
    out = REPO / "bench" / "results" / "inference.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    width = max(len(f["name"]) for f in figures)
    print(f"\n{'figure':<{width}}  {'ours':>10}  {'peer':>10}  {'ratio':>7}  {'goal':<14} met  rounds")
    for f in figures:
        print(f"{f['name']:<{width}}  {f['ours']:>10.3f}  {f['peer']:>10.3f}  {f['ratio']:>7.3f}  {f['goal']:<14} "
              f"{'yes' if f['met'] else 'NO ':<4} {' '.join(f'{x:.3f}' for x in f['rounds'])}")
    print(f"\n{note}")
    print(f"\nwrote {out.relative_to(REPO)}")
    return 0


def _floor_rest(model: Path, seconds: int, work: Path) -> dict[str, Any]:
    http = free_port()
    proc = pinned([PY, str(REPO / "bench" / "floor_rest.py"), str(model), str(http)])
    try:
        _wait_port(http, proc)
        body = json.dumps({"inputs": [{"name": "input", "shape": [1, FEATURES], "datatype": "FP32",
                                       "data": [round(0.1 * i, 3) for i in range(FEATURES)]}]}).encode()
        url = f"http://127.0.0.1:{http}/v2/models/fraud/infer"
        wrk(url, body, 2, work)
        result = wrk(url, body, seconds, work)
        print(f"  bare ASGI floor: {json.dumps(result)}", flush=True)
        return result
    finally:
        stop(proc)


def _floor_grpc(model: Path, seconds: int, work: Path) -> dict[str, Any]:
    port = free_port()
    proc = pinned([PY, str(REPO / "bench" / "floor_grpc.py"), str(model), str(port)])
    try:
        _wait_port(port, proc)
        check_grpc(port, 1)
        result = grpc_load(port, grpc_message(1), seconds, work)
        print(f"  bare grpc.aio floor: {json.dumps(result)}", flush=True)
        return result
    finally:
        stop(proc)


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"floor server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"port {port} not open after {timeout}s")


if __name__ == "__main__":
    raise SystemExit(main())
