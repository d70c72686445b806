"""A closed-loop gRPC load generator on grpc.aio: `concurrency` callers, each with one OIP ModelInfer in flight
at a time, spread over `channels` HTTP/2 connections, sending one pre-serialized request for `seconds`
after a warm-up. The same client drives every server the benchmark compares (ours, stock KServe, the bare
grpc.aio floor), so its own cost weighs the same on each.

    python bench/grpc_load.py PORT MESSAGE_FILE SECONDS [--concurrency 16] [--channels 4] [--warmup 1]

Prints one JSON object: rps, p50_ms, p99_ms, requests, failures (non-OK answers; their first status),
client_cpu (share of one core the client used: near 1.0 means the client, not the server, set the pace).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time

import grpc

METHOD = "/inference.GRPCInferenceService/ModelInfer"


def _identity(data: bytes) -> bytes:
    return data


async def run(port: int, message: bytes, seconds: float, concurrency: int, channels: int,
              warmup: float) -> dict[str, object]:
    opened = [
        grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1),
                                                                ("grpc.max_receive_message_length", 64 << 20),
                                                                ("grpc.max_send_message_length", 64 << 20)])
        for _ in range(channels)
    ]
    calls = [ch.unary_unary(METHOD, request_serializer=_identity, response_deserializer=_identity) for ch in opened]
    latencies: list[float] = []
    failures: list[str] = []
    measuring = False
    stop = False

    async def caller(i: int) -> None:
        call = calls[i % len(calls)]
        clock = time.perf_counter
        while not stop:
            started = clock()
            try:
                await call(message, timeout=30)
            except grpc.aio.AioRpcError as exc:
                if measuring:
                    failures.append(exc.code().name)
                continue
            if measuring:
                latencies.append(clock() - started)

    for ch in opened:
        await ch.channel_ready()
    tasks = [asyncio.create_task(caller(i)) for i in range(concurrency)]
    await asyncio.sleep(warmup)
    measuring = True
    cpu0, t0 = os.times(), time.perf_counter()
    await asyncio.sleep(seconds)
    measuring = False
    elapsed = time.perf_counter() - t0
    cpu1 = os.times()
    stop = True
    await asyncio.gather(*tasks)
    for ch in opened:
        await ch.close()
    latencies.sort()
    n = len(latencies)
    return {
        "rps": n / elapsed,
        "p50_ms": latencies[n // 2] * 1e3 if n else 0.0,
        "p99_ms": latencies[min(n - 1, int(n * 0.99))] * 1e3 if n else 0.0,
        "requests": n,
        "failures": len(failures),
        "first_failure": failures[0] if failures else "",
        "client_cpu": ((cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)) / elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("port", type=int)
    parser.add_argument("message", help="file holding one serialized ModelInferRequest")
    parser.add_argument("seconds", type=float)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--channels", type=int, default=4)
    parser.add_argument("--warmup", type=float, default=1.0)
    args = parser.parse_args()
    with open(args.message, "rb") as f:
        message = f.read()
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    result = runner(run(args.port, message, args.seconds, args.concurrency, args.channels, args.warmup))
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
