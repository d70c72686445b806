"""Auth on both transports: every mutation refuses a missing token, a bad token and a role too low, and
accepts the right role; reads need a token unless anonymous reads are on; tokens never reach the logs."""

from __future__ import annotations

import pytest
from google.protobuf.message import Message
from loopline_registry.auth import Role, TokenConfigError, parse_tokens

from loopline.registry.v1 import registry_pb2 as pb
from tests.registry.clients import ApiError, RegistryProcess
from tests.registry.conftest import TOKENS, token
from tests.registry.seed import make_run, unique
from tests.registry.test_api import READER, Api

BAD_TOKEN = "not-a-real-token-" + "x" * 20


def _mutations(model: str, run_id: str) -> list[tuple[str, Message, Role]]:
    """Each mutation with the role it needs, in an order in which every one of them succeeds."""
    return [
        ("RegisterVersion", pb.RegisterVersionRequest(model_name=model, run_id=run_id, onnx_parity_passed=True),
         Role.TRAINER),
        ("SetAlias", pb.SetAliasRequest(model_name=model, alias="shadow", version=1, reason="r"), Role.RELEASER),
        ("DeleteAlias", pb.DeleteAliasRequest(model_name=model, alias="shadow", reason="r"), Role.RELEASER),
        ("ApproveVersion", pb.ApproveVersionRequest(model_name=model, version=1, reason="r"), Role.RELEASER),
        ("Promote", pb.PromoteRequest(model_name=model, version=1, reason="r"), Role.RELEASER),
        ("TransitionStage", pb.TransitionStageRequest(model_name=model, version=2, stage=pb.STAGE_STAGING),
         Role.RELEASER),
        ("Promote", pb.PromoteRequest(model_name=model, version=2, reason="r"), Role.RELEASER),
        ("Rollback", pb.RollbackRequest(model_name=model, reason="r"), Role.RELEASER),
        ("Archive", pb.ArchiveRequest(model_name=model, version=2, reason="r"), Role.RELEASER),
        ("SetPolicy", pb.SetPolicyRequest(model_name=model, policy=pb.PromotionPolicy(require_onnx_parity=True)),
         Role.ADMIN),
    ]


def test_each_mutation_needs_a_token_with_the_right_role(api: Api, mlflow_server: str) -> None:
    model = unique()
    run = make_run(mlflow_server)
    # A second version exists for the calls about v2 (registered as the trainer: that call is tested below).
    api.call("RegisterVersion", pb.RegisterVersionRequest(model_name=model, run_id=run.run_id), token(Role.TRAINER))
    checked = []
    for method, request, role in _mutations(model, run.run_id):
        for credential, code in [(None, "UNAUTHENTICATED"), (BAD_TOKEN, "UNAUTHENTICATED"),
                                 (token(Role(role - 1)), "PERMISSION_DENIED")]:
            with pytest.raises(ApiError) as refused:
                api.call(method, request, credential)
            assert refused.value.code == code, (method, credential)
            expected_status = {"UNAUTHENTICATED": (401, "UNAUTHENTICATED"),
                               "PERMISSION_DENIED": (403, "PERMISSION_DENIED")}[code]
            status = refused.value.transport_status
            assert (status if api.transport == "http" else status.name) in expected_status  # type: ignore[union-attr]
            if code == "PERMISSION_DENIED":
                assert f"needs role {role.label}" in refused.value.message
        api.call(method, request, token(role))  # the right role: accepted
        checked.append(method)
    assert set(checked) == {"RegisterVersion", "SetAlias", "DeleteAlias", "ApproveVersion", "Promote",
                            "TransitionStage", "Rollback", "Archive", "SetPolicy"}
    # Higher roles may do what lower ones may.
    api.call("SetAlias", pb.SetAliasRequest(model_name=model, alias="shadow", version=1), token(Role.ADMIN))
    # The audit log names who did each mutation.
    entries = api.call("ListAuditEntries", pb.ListAuditEntriesRequest(model_name=model, page_size=100), READER)
    assert {e.actor for e in entries.entries} == {"trainer-bot", "releaser-bot", "admin-bot"}


def test_reads_need_a_token_unless_anonymous_reads_are_on(api: Api, registry_factory) -> None:  # type: ignore[no-untyped-def]
    request = pb.ListModelsRequest()
    with pytest.raises(ApiError) as refused:
        api.call("ListModels", request)
    assert refused.value.code == "UNAUTHENTICATED"
    assert "needs a token with role reader" in refused.value.message
    api.call("ListModels", request, READER)

    open_registry: RegistryProcess = registry_factory(LOOPLINE_REGISTRY_ANONYMOUS_READS="true")
    for client in (open_registry.grpc, open_registry.http):
        client.call("ListModels", request)
        with pytest.raises(ApiError) as still_refused:
            client.call("SetAlias", pb.SetAliasRequest(model_name="m", alias="a", version=1))
        assert still_refused.value.code == "UNAUTHENTICATED"
        with pytest.raises(ApiError) as bad:  # a wrong token is refused even where no token is needed
            client.call("ListModels", request, BAD_TOKEN)
        assert bad.value.code == "UNAUTHENTICATED"


def test_malformed_authorization_and_no_token_in_the_logs(registry: RegistryProcess) -> None:
    response = registry.http.http.get("/v1/models", headers={"authorization": "Basic dXNlcjpwYXNz"})
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "the authorization header must be 'Bearer <token>'"
    output = registry.output()
    for _, value in TOKENS.values():
        assert value not in output
    assert BAD_TOKEN not in output


def test_a_weak_or_malformed_token_file_stops_the_service_at_boot(registry_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    weak = tmp_path / "weak.json"
    weak.write_text('[{"name": "x", "role": "admin", "token": "short-secret"}]')
    with pytest.raises(RuntimeError) as failed:
        registry_factory(LOOPLINE_REGISTRY_TOKENS_FILE=str(weak))
    assert "token shorter than 16 characters" in str(failed.value)
    assert "short-secret" not in str(failed.value)
    with pytest.raises(TokenConfigError) as unknown_role:  # the same check, without another process
        parse_tokens('[{"name": "x", "role": "root", "token": "' + "y" * 20 + '"}]', origin="LOOPLINE_REGISTRY_TOKENS")
    assert "unknown role" in str(unknown_role.value) and "y" * 20 not in str(unknown_role.value)
    with pytest.raises(TokenConfigError) as not_a_list:
        parse_tokens('{"token": "' + "z" * 20 + '"}', origin="tokens file t.json")
    assert "must be a list" in str(not_a_list.value) and "z" * 20 not in str(not_a_list.value)
