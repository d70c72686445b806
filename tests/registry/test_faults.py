"""Faults: MLflow down or hung -> cached reads answered and flagged stale, writes refused with UNAVAILABLE
within the bounded timeout, never a hang; the cache follows changes made by another registry replica."""

from __future__ import annotations

import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from loopline_registry.auth import Role

from loopline.registry.v1 import registry_pb2 as pb
from tests.registry.clients import ApiError, RegistryProcess
from tests.registry.conftest import token
from tests.registry.seed import make_run, unique
from tests.registry.tcp_proxy import TcpProxy

READER, TRAINER, RELEASER = token(Role.READER), token(Role.TRAINER), token(Role.RELEASER)
MLFLOW_TIMEOUT = 2.0
# A call that is not answered within this is a hang: MLflow's timeout plus room for a loaded machine.
BOUND = MLFLOW_TIMEOUT + 8.0


@pytest.fixture
def proxy(mlflow_server: str) -> Iterator[TcpProxy]:
    forwarder = TcpProxy(int(urlsplit(mlflow_server).port or 0))
    yield forwarder
    forwarder.close()


def _reads(client, model: str) -> list[tuple[str, object]]:  # type: ignore[no-untyped-def]
    """(what, answer) of each cached read of `model`."""
    return [
        ("ResolveAlias", client.call("ResolveAlias", pb.ResolveAliasRequest(model_name=model, alias="challenger"),
                                     READER, timeout=BOUND)),
        ("GetVersion", client.call("GetVersion", pb.GetVersionRequest(model_name=model, version=1), READER,
                                   timeout=BOUND)),
        ("ListVersions", client.call("ListVersions", pb.ListVersionsRequest(model_name=model), READER,
                                     timeout=BOUND)),
        ("GetModel", client.call("GetModel", pb.GetModelRequest(model_name=model), READER, timeout=BOUND)),
    ]


def _writes(client, model: str, run_id: str) -> list[tuple[str, object]]:  # type: ignore[no-untyped-def]
    return [
        ("SetAlias", pb.SetAliasRequest(model_name=model, alias="challenger", version=2)),
        ("Promote", pb.PromoteRequest(model_name=model, version=1)),
        ("Archive", pb.ArchiveRequest(model_name=model, version=2)),
        ("RegisterVersion", pb.RegisterVersionRequest(model_name=model, run_id=run_id)),
    ]


def _health_ok(registry: RegistryProcess) -> bool:
    with grpc.insecure_channel(f"127.0.0.1:{registry.grpc_port}") as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def test_mlflow_down_or_hung_means_stale_reads_and_unavailable_writes(  # type: ignore[no-untyped-def]
    registry: RegistryProcess, registry_factory, proxy: TcpProxy, mlflow_server: str
) -> None:
    model = unique()
    run = make_run(mlflow_server)
    for _ in range(2):
        registry.grpc.call("RegisterVersion", pb.RegisterVersionRequest(model_name=model, run_id=run.run_id), TRAINER)
    registry.grpc.call("SetAlias", pb.SetAliasRequest(model_name=model, alias="challenger", version=1), RELEASER)

    # TTL 0: every read asks MLflow while it answers, so a stale answer can only come from a failure.
    faulty = registry_factory(
        LOOPLINE_REGISTRY_MLFLOW_URI=proxy.url, LOOPLINE_REGISTRY_CACHE_TTL_SECONDS="0",
        LOOPLINE_REGISTRY_MLFLOW_TIMEOUT_SECONDS=str(MLFLOW_TIMEOUT),
        LOOPLINE_REGISTRY_MLFLOW_RETRY_AFTER_SECONDS="1",
    )
    for client in (faulty.grpc, faulty.http):
        assert not any(answer.stale for _, answer in _reads(client, model))  # type: ignore[attr-defined]

    for fault in (proxy.refuse, proxy.hang):
        fault()
        for client in (faulty.grpc, faulty.http):
            for what, answer in _reads(client, model):
                assert answer.stale, (fault.__name__, client.transport, what)  # type: ignore[attr-defined]
            resolved = client.call("ResolveAlias", pb.ResolveAliasRequest(model_name=model, alias="challenger"),
                                   READER, timeout=BOUND)
            assert resolved.version == 1 and resolved.model_sha256
            with pytest.raises(ApiError) as uncached:  # never read before: nothing to answer from
                client.call("GetVersion", pb.GetVersionRequest(model_name=model, version=2), READER, timeout=BOUND)
            assert uncached.value.code == "UNAVAILABLE"
            for method, request in _writes(client, model, run.run_id):
                with pytest.raises(ApiError) as refused:
                    client.call(method, request, TRAINER if method == "RegisterVersion" else RELEASER,
                                timeout=BOUND)
                assert refused.value.code == "UNAVAILABLE", (fault.__name__, method)
                expected = 503 if client.transport == "http" else grpc.StatusCode.UNAVAILABLE
                assert refused.value.transport_status == expected
        assert faulty.alive and _health_ok(faulty)

    proxy.forward()
    deadline = time.monotonic() + 30
    while any(answer.stale for _, answer in _reads(faulty.grpc, model)):  # type: ignore[attr-defined]
        assert time.monotonic() < deadline, "reads stayed stale after MLflow came back"
        time.sleep(0.2)
    moved = faulty.grpc.call("SetAlias", pb.SetAliasRequest(model_name=model, alias="challenger", version=2),
                             RELEASER, timeout=BOUND)
    assert moved.changed
    # Nothing half-done while MLflow was away: the refused writes left no trace in the audit log.
    actions = [e.action for e in faulty.grpc.call(
        "ListAuditEntries", pb.ListAuditEntriesRequest(model_name=model), READER).entries]
    assert actions == ["set_alias"]


def test_the_cache_follows_changes_made_by_another_replica(  # type: ignore[no-untyped-def]
    registry: RegistryProcess, registry_factory, mlflow_server: str
) -> None:
    model = unique()
    run = make_run(mlflow_server)
    for _ in range(3):
        registry.grpc.call("RegisterVersion", pb.RegisterVersionRequest(model_name=model, run_id=run.run_id), TRAINER)
    registry.grpc.call("SetAlias", pb.SetAliasRequest(model_name=model, alias="challenger", version=1), RELEASER)

    cached = registry_factory(LOOPLINE_REGISTRY_CACHE_TTL_SECONDS="3600")  # only invalidation can refresh it
    request = pb.ResolveAliasRequest(model_name=model, alias="challenger")
    assert cached.grpc.call("ResolveAlias", request, READER).version == 1
    assert cached.grpc.call("GetVersion", pb.GetVersionRequest(model_name=model, version=2), READER).version.stage == (
        pb.STAGE_NONE)

    # Another replica moves the alias: its AliasChanged event invalidates this replica's cache.
    registry.grpc.call("SetAlias", pb.SetAliasRequest(model_name=model, alias="challenger", version=2), RELEASER)
    deadline = time.monotonic() + 30
    while cached.grpc.call("ResolveAlias", request, READER).version != 2:
        assert time.monotonic() < deadline, "the other replica's change never reached this cache"
        time.sleep(0.1)
    version = cached.grpc.call("GetVersion", pb.GetVersionRequest(model_name=model, version=2), READER).version
    assert version.stage == pb.STAGE_STAGING

    # Its own writes invalidate at once.
    cached.grpc.call("SetAlias", pb.SetAliasRequest(model_name=model, alias="challenger", version=3), RELEASER)
    assert cached.grpc.call("ResolveAlias", request, READER).version == 3
