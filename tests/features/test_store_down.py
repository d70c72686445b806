"""A Redis online store that hangs, then goes away: UNAVAILABLE on both transports, not a hang."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.features.clients import CallError, GrpcClient, HttpClient
from tests.features.conftest import PrivateRedis, make_store, start_service

STORE_TIMEOUT = 0.5
# The callers' deadline: a few store timeouts, well under redis-py's default retry back-off (seconds), and
# infinitely under a read with no socket timeout against a frozen store. A service that hangs or retries
# answers DEADLINE_EXCEEDED here (gRPC's status; the HTTP client's timeout is reported the same way).
DEADLINE = 3.0
STORE_ERRORS = "loopline_features_store_errors_total"
GRPC_ONLINE = "/loopline.features.v1.FeaturesService/GetOnlineFeatures"  # the method label: gRPC's full name


def test_online_store_down_answers_unavailable(private_redis: PrivateRedis, tmp_path_factory: pytest.TempPathFactory
                                               ) -> None:
    store = make_store("redis", tmp_path_factory.mktemp("down"), redis_url=f"127.0.0.1:{private_redis.port},db=0")
    service = start_service(store, store_timeout_seconds=str(STORE_TIMEOUT))
    grpc_client, http_client = GrpcClient(service.grpc), HttpClient(service.http)
    refs = ["customer_profile:credit_limit"]
    try:
        assert grpc_client.online(entities=[{"customer_id": "C1"}], features=refs).statuses == [["NOT_FOUND"]]
        assert service.metric(STORE_ERRORS, operation="online_read") is None  # no error so far
        answered = 0
        # Frozen (accepts connections, never answers), then gone (connections refused).
        for down in (private_redis.freeze, private_redis.stop):
            down()
            for client in (grpc_client, http_client):
                with pytest.raises(CallError) as refused:
                    client.online(entities=[{"customer_id": "C1"}], features=refs, timeout=DEADLINE)
                assert refused.value.code == "UNAVAILABLE", (down.__name__, type(client).__name__, refused.value)
                assert "online store is unavailable" in refused.value.message
                answered += 1
                # Each failure is counted, under the read that failed.
                assert service.metric(STORE_ERRORS, operation="online_read") == answered
        assert service.metric("loopline_features_requests_total", transport="grpc", method=GRPC_ONLINE,
                              code="UNAVAILABLE") == 2
        assert service.metric("loopline_features_requests_total", transport="http",
                              method="POST /v1/online-features", code="UNAVAILABLE") == 2
        deadline = time.monotonic() + 30
        while httpx.get(f"{service.http}/readyz", timeout=10).status_code != 503:
            assert time.monotonic() < deadline, "readiness did not turn 503"
            time.sleep(0.2)
        assert httpx.get(f"{service.http}/healthz", timeout=10).status_code == 200  # alive all the same
    finally:
        grpc_client.close()
        http_client.close()
        service.stop()
