"""The whole RegistryService API against a real MLflow server, once over gRPC and once over HTTP/JSON."""

from __future__ import annotations

import hashlib
import json
import time
import uuid

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from kafka import KafkaProducer
from loopline_registry.auth import Role

from loopline.events.v1 import meta_pb2, rollouts_pb2
from loopline.registry.v1 import registry_pb2 as pb
from loopline_common.kafka_io import CONTENT_TYPE_HEADER, content_type
from loopline_common.topics import ROLLOUTS
from tests.helpers import Broker
from tests.registry.clients import ApiError, GrpcApi, HttpApi
from tests.registry.conftest import token
from tests.registry.seed import Seeded, make_run, unique

READER, TRAINER, RELEASER, ADMIN = (token(r) for r in (Role.READER, Role.TRAINER, Role.RELEASER, Role.ADMIN))

Api = GrpcApi | HttpApi


def register(api: Api, mlflow: str, model: str, *, seeded: Seeded | None = None, **fields: object) -> pb.ModelVersion:
    seeded = seeded or make_run(mlflow)
    fields.setdefault("onnx_parity_passed", True)
    request = pb.RegisterVersionRequest(model_name=model, run_id=seeded.run_id, **fields)  # type: ignore[arg-type]
    return api.call("RegisterVersion", request, TRAINER).version  # type: ignore[no-any-return]


def test_register_version_records_metrics_lineage_signature_and_checksums(api: Api, mlflow_server: str) -> None:
    model = unique()
    seeded = make_run(mlflow_server, metrics={"roc_auc": 0.91, "log_loss": 0.21})
    reply = api.call("RegisterVersion", pb.RegisterVersionRequest(
        model_name=model, run_id=seeded.run_id, training_set_hash="sha256:abc", feature_service="fraud_v1",
        code_version="git:1234567", trigger="drift", reason="drift on amount", onnx_parity_passed=True,
        tags={"team": "risk"}, description="first cut",
    ), TRAINER)
    assert reply.created
    version = reply.version
    assert (version.version, version.stage, version.status) == (1, pb.STAGE_NONE, pb.VERSION_STATUS_READY)
    assert version.registered_by == "trainer-bot"
    assert version.model_sha256 == seeded.model_sha256
    assert {a.path for a in version.artifacts} == {"MLmodel", "model.onnx", "reference_profile.pb"}
    profile = next(a for a in version.artifacts if a.path == "reference_profile.pb")
    assert profile.sha256 == hashlib.sha256(seeded.profile_bytes).hexdigest()

    got = api.call("GetVersion", pb.GetVersionRequest(model_name=model, version=1), READER)
    assert not got.stale
    v = got.version
    assert dict(v.metrics) == {"roc_auc": 0.91, "log_loss": 0.21}
    assert dict(v.params) == {"learning_rate": "0.05"}
    assert dict(v.tags) == {"team": "risk"}
    assert v.description == "first cut"
    assert v.onnx_parity_passed
    assert json.loads(v.signature)["inputs"].startswith("[{")
    lineage = v.lineage
    assert (lineage.run_id, lineage.logged_model_id) == (seeded.run_id, seeded.logged_model_id)
    assert (lineage.training_set_hash, lineage.feature_service, lineage.code_version) == (
        "sha256:abc", "fraud_v1", "git:1234567")
    assert (lineage.trigger, lineage.reason) == ("drift", "drift on amount")
    assert v.artifact_uri.startswith("mlflow-artifacts:/") and seeded.logged_model_id in v.artifact_uri

    got_model = api.call("GetModel", pb.GetModelRequest(model_name=model), READER).model
    assert (got_model.name, got_model.latest_version) == (model, 1)
    listed = api.call("ListModels", pb.ListModelsRequest(name_contains=model), READER)
    assert [m.name for m in listed.models] == [model]


def test_register_from_a_run_artifact_path_and_idempotent_retry(api: Api, mlflow_server: str) -> None:
    model = unique()
    seeded = make_run(mlflow_server, logged_model=False)
    request = pb.RegisterVersionRequest(model_name=model, run_id=seeded.run_id, artifact_path="model",
                                        idempotency_key=f"job-{uuid.uuid4().hex}", parent_version=0)
    first = api.call("RegisterVersion", request, TRAINER)
    again = api.call("RegisterVersion", request, TRAINER)
    assert first.created and not again.created
    assert first.version.version == again.version.version == 1
    assert first.version.model_sha256 == seeded.model_sha256
    assert first.version.lineage.logged_model_id == ""
    assert api.call("ListVersions", pb.ListVersionsRequest(model_name=model), READER).total_size == 1


def test_aliases_resolve_promote_rollback_and_archive(api: Api, mlflow_server: str) -> None:
    model = unique()
    v1, v2, v3 = (register(api, mlflow_server, model) for _ in range(3))
    assert [v1.version, v2.version, v3.version] == [1, 2, 3]

    set_reply = api.call("SetAlias", pb.SetAliasRequest(model_name=model, alias="shadow", version=3,
                                                        reason="mirror traffic"), RELEASER)
    assert (set_reply.previous_version, set_reply.version, set_reply.changed) == (0, 3, True)
    same = api.call("SetAlias", pb.SetAliasRequest(model_name=model, alias="shadow", version=3), RELEASER)
    assert not same.changed
    resolved = api.call("ResolveAlias", pb.ResolveAliasRequest(model_name=model, alias="shadow"), READER)
    assert (resolved.version, resolved.model_file, resolved.stale) == (3, "model.onnx", False)
    assert resolved.model_sha256 == v3.model_sha256 and resolved.artifact_uri == v3.artifact_uri

    first = api.call("Promote", pb.PromoteRequest(model_name=model, version=1, reason="first champion"), RELEASER)
    assert (first.previous_champion, first.champion, first.changed) == (0, 1, True)
    assert first.evaluation.passed
    api.call("SetAlias", pb.SetAliasRequest(model_name=model, alias="challenger", version=2), RELEASER)
    second = api.call("Promote", pb.PromoteRequest(model_name=model, reason="challenger won"), RELEASER)
    assert (second.previous_champion, second.champion) == (1, 2)
    aliases = dict(api.call("GetModel", pb.GetModelRequest(model_name=model), READER).model.aliases)
    assert aliases == {"champion": 2, "shadow": 3}  # the promoted challenger lost its challenger alias

    rolled = api.call("Rollback", pb.RollbackRequest(model_name=model, reason="p99 regression"), RELEASER)
    assert (rolled.from_version, rolled.to_version) == (2, 1)
    champion = api.call("ResolveAlias", pb.ResolveAliasRequest(model_name=model, alias="champion"), READER)
    assert champion.version == 1 and champion.stage == pb.STAGE_PRODUCTION
    with pytest.raises(ApiError) as refused:  # nothing before v1: no flip-flop back to v2
        api.call("Rollback", pb.RollbackRequest(model_name=model), RELEASER)
    assert refused.value.code == "FAILED_PRECONDITION"

    archived = api.call("Archive", pb.ArchiveRequest(model_name=model, version=3, reason="stale"), RELEASER)
    assert list(archived.removed_aliases) == ["shadow"]
    assert archived.version.stage == pb.STAGE_ARCHIVED and not archived.version.aliases
    deleted = api.call("DeleteAlias", pb.DeleteAliasRequest(model_name=model, alias="shadow"), RELEASER)
    assert not deleted.changed
    with pytest.raises(ApiError) as gone:
        api.call("ResolveAlias", pb.ResolveAliasRequest(model_name=model, alias="shadow"), READER)
    assert gone.value.code == "NOT_FOUND"
    with pytest.raises(ApiError) as champion_by_hand:
        api.call("SetAlias", pb.SetAliasRequest(model_name=model, alias="champion", version=2), RELEASER)
    assert champion_by_hand.value.code == "FAILED_PRECONDITION"
    assert "Promote and Rollback" in champion_by_hand.value.message


def test_list_versions_pages_and_filters(api: Api, mlflow_server: str) -> None:
    model = unique()
    seeded = make_run(mlflow_server)
    for i in range(5):
        register(api, mlflow_server, model, seeded=seeded, tags={"parity": "even" if i % 2 == 0 else "odd"})
    api.call("SetAlias", pb.SetAliasRequest(model_name=model, alias="challenger", version=4), RELEASER)
    api.call("Archive", pb.ArchiveRequest(model_name=model, version=1), RELEASER)

    pages, token_ = [], ""
    while True:
        page = api.call("ListVersions", pb.ListVersionsRequest(model_name=model, page_size=2, page_token=token_),
                        READER)
        pages.append([v.version for v in page.versions])
        assert page.total_size == 5
        token_ = page.next_page_token
        if not token_:
            break
    assert pages == [[5, 4], [3, 2], [1]]

    def versions(**filters: object) -> list[int]:
        reply = api.call("ListVersions", pb.ListVersionsRequest(model_name=model, **filters), READER)  # type: ignore[arg-type]
        return [v.version for v in reply.versions]

    assert versions(alias="challenger") == [4]
    assert versions(tags={"parity": "even"}) == [5, 3, 1]
    assert versions(stage=pb.STAGE_ARCHIVED) == [1]
    assert versions(stage=pb.STAGE_STAGING) == [4]
    assert versions(status=pb.VERSION_STATUS_READY) == [5, 4, 3, 2, 1]


def test_download_streams_artifacts_with_their_checksum(api: Api, mlflow_server: str) -> None:
    model = unique()
    seeded = make_run(mlflow_server, size=1_000_000)  # several chunks
    register(api, mlflow_server, model, seeded=seeded)
    api.call("SetAlias", pb.SetAliasRequest(model_name=model, alias="challenger", version=1), RELEASER)

    onnx = api.download(pb.DownloadArtifactRequest(model_name=model, version=1, kind=pb.ARTIFACT_KIND_MODEL), READER)
    assert onnx.data == seeded.model_bytes
    assert onnx.sha256 == seeded.model_sha256 == onnx.header["expected_sha256"]
    assert int(onnx.header["size_bytes"]) == len(seeded.model_bytes)

    profile = api.download(pb.DownloadArtifactRequest(
        model_name=model, alias="challenger", kind=pb.ARTIFACT_KIND_REFERENCE_PROFILE), READER)
    assert profile.data == seeded.profile_bytes
    assert profile.sha256 == profile.header["expected_sha256"]
    by_path = api.download(pb.DownloadArtifactRequest(model_name=model, version=1, path="MLmodel"), READER)
    assert b"signature" in by_path.data

    for bad in ("../../etc/passwd", "/etc/passwd", "a/../../b"):
        with pytest.raises(ApiError) as escaped:
            api.download(pb.DownloadArtifactRequest(model_name=model, version=1, path=bad), READER)
        assert escaped.value.code == "INVALID_ARGUMENT"
    with pytest.raises(ApiError) as missing:
        api.download(pb.DownloadArtifactRequest(model_name=model, version=1, path="nothing.bin"), READER)
    assert missing.value.code == "NOT_FOUND"


def _wait_for(condition, what: str, timeout: float = 30):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_lineage_from_run_to_rollout_decisions(api: Api, mlflow_server: str, broker: Broker) -> None:
    model = unique()
    seeded = make_run(mlflow_server, metrics={"roc_auc": 0.88})
    register(api, mlflow_server, model, seeded=seeded, training_set_hash="sha256:def", feature_service="fraud_v1",
             code_version="git:abc", trigger="schedule", reason="nightly")
    register(api, mlflow_server, model)
    api.call("Promote", pb.PromoteRequest(model_name=model, version=1, reason="first"), RELEASER)
    api.call("Promote", pb.PromoteRequest(model_name=model, version=2, reason="better"), RELEASER)

    # The rollout controller's decisions about v1 arrive on Kafka and are recorded against it.
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    occurred = Timestamp()
    occurred.GetCurrentTime()
    decision = rollouts_pb2.RolloutDecision(
        meta=meta_pb2.EventMeta(event_id=uuid.uuid4().hex, occurred_at=occurred, producer="rollout"),
        rollout_id="r-1", model_name=model, candidate_version=1, champion_version=0, step=2, weight=50,
        decision=rollouts_pb2.DECISION_ADVANCE, actor="controller", reason="checks passed",
    )
    for _ in range(2):  # delivered twice: recorded once
        producer.send(ROLLOUTS, key=model.encode(), value=decision.SerializeToString(),
                      headers=[(CONTENT_TYPE_HEADER, content_type(rollouts_pb2.RolloutDecision))]).get(10)
    producer.close()

    request = pb.GetLineageRequest(model_name=model, version=1)
    lineage = _wait_for(
        lambda: (r := api.call("GetLineage", request, READER)).rollout_decisions and r, "the rollout decision"
    )
    assert lineage.run.run_id == seeded.run_id and lineage.run.metrics["roc_auc"] == 0.88
    assert lineage.run.params["learning_rate"] == "0.05"
    assert (lineage.lineage.training_set_hash, lineage.lineage.feature_service) == ("sha256:def", "fraud_v1")
    assert (lineage.lineage.trigger, lineage.lineage.reason) == ("schedule", "nightly")
    assert lineage.version.version == 1
    spans = [(s.alias, s.HasField("to_time"), s.granted_by, s.revoked_by) for s in lineage.aliases]
    assert spans == [("champion", True, "releaser-bot", "releaser-bot")]
    assert [(d.rollout_id, d.decision, d.step, d.weight) for d in lineage.rollout_decisions] == [
        ("r-1", "DECISION_ADVANCE", 2, 50)]
    actions = [h.action for h in lineage.history]
    assert actions == ["register", "promote", "promote", "rollout.advance"]


def test_both_transports_answer_the_same(registry, mlflow_server: str) -> None:  # type: ignore[no-untyped-def]
    model = unique()
    register(registry.grpc, mlflow_server, model, tags={"k": "v"})
    registry.grpc.call("SetAlias", pb.SetAliasRequest(model_name=model, alias="challenger", version=1), RELEASER)
    calls = [
        ("GetModel", pb.GetModelRequest(model_name=model)),
        ("ListVersions", pb.ListVersionsRequest(model_name=model, tags={"k": "v"})),
        ("GetVersion", pb.GetVersionRequest(model_name=model, version=1)),
        ("ResolveAlias", pb.ResolveAliasRequest(model_name=model, alias="challenger")),
        ("EvaluatePromotion", pb.EvaluatePromotionRequest(model_name=model)),
        ("GetPolicy", pb.GetPolicyRequest(model_name=model)),
        ("GetLineage", pb.GetLineageRequest(model_name=model, version=1)),
        ("ListAuditEntries", pb.ListAuditEntriesRequest(model_name=model)),
    ]
    for method, request in calls:
        assert registry.grpc.call(method, request, READER) == registry.http.call(method, request, READER), method
    for method, request in [("GetVersion", pb.GetVersionRequest(model_name=model, version=9)),
                            ("ResolveAlias", pb.ResolveAliasRequest(model_name=model, alias="nope"))]:
        errors = []
        for client in (registry.grpc, registry.http):
            with pytest.raises(ApiError) as info:
                client.call(method, request, READER)
            errors.append((info.value.code, info.value.message))
        assert errors[0] == errors[1]
