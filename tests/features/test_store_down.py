"""A Redis online store that goes away: UNAVAILABLE at once on both transports, not a hang."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.features.clients import CallError, GrpcClient, HttpClient
from tests.features.conftest import PrivateRedis, make_store, start_service


def test_online_store_down_answers_unavailable(private_redis: PrivateRedis, tmp_path_factory: pytest.TempPathFactory
                                               ) -> None:
    store = make_store("redis", tmp_path_factory.mktemp("down"), redis_url=f"127.0.0.1:{private_redis.port},db=0")
    service = start_service(store, store_timeout_seconds="0.5")
    grpc_client, http_client = GrpcClient(service.grpc), HttpClient(service.http)
    refs = ["customer_profile:credit_limit"]
    try:
        assert grpc_client.online(entities=[{"customer_id": "C1"}], features=refs).statuses == [["NOT_FOUND"]]
        private_redis.stop()
        for client in (grpc_client, http_client):
            with pytest.raises(CallError) as down:
                # A deadline far above the store timeout: the answer must be UNAVAILABLE, not a timeout.
                client.online(entities=[{"customer_id": "C1"}], features=refs, timeout=20)
            assert down.value.code == "UNAVAILABLE"
            assert "online store is unavailable" in down.value.message
        deadline = time.monotonic() + 30
        while httpx.get(f"{service.http}/readyz", timeout=10).status_code != 503:
            assert time.monotonic() < deadline, "readiness did not turn 503"
            time.sleep(0.2)
        assert httpx.get(f"{service.http}/healthz", timeout=10).status_code == 200  # alive all the same
    finally:
        grpc_client.close()
        http_client.close()
        service.stop()
