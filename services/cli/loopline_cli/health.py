"""Health probes for the parts of the embedded stack, each bounded by a short timeout."""

from __future__ import annotations

import logging

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc
from kafka import KafkaAdminClient

TIMEOUT_SECONDS = 2.0


def http_ok(url: str) -> tuple[bool, str]:
    try:
        response = httpx.get(url, timeout=TIMEOUT_SECONDS)
    except httpx.HTTPError as exc:
        return False, f"{url}: {type(exc).__name__}"
    return response.status_code == 200, f"{url}: HTTP {response.status_code}"


def grpc_serving(target: str) -> tuple[bool, str]:
    with grpc.insecure_channel(target) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=TIMEOUT_SECONDS
            )
        except grpc.RpcError as exc:
            return False, f"grpc {target}: {exc.code().name}"
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    return reply.status == health_pb2.HealthCheckResponse.SERVING, f"grpc {target}: {status}"


def kafka_ok(bootstrap: str) -> tuple[bool, str]:
    """A real Kafka request (Metadata) answered by the broker."""
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap,
            request_timeout_ms=int(TIMEOUT_SECONDS * 1000),
            bootstrap_timeout_ms=int(TIMEOUT_SECONDS * 1000),
            client_id="loopline-status",
        )
    except Exception as exc:
        return False, f"kafka {bootstrap}: {type(exc).__name__}"
    try:
        topics = admin.list_topics()
        return True, f"kafka {bootstrap}: {len(topics)} topic(s)"
    except Exception as exc:
        return False, f"kafka {bootstrap}: {type(exc).__name__}"
    finally:
        admin.close()
