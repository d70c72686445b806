"""Bad input gets the right error on both transports, and the service stays up."""

from __future__ import annotations

import pytest
from google.protobuf.message import Message
from loopline_registry.auth import Role

from loopline.registry.v1 import registry_pb2 as pb
from tests.registry.clients import ApiError, RegistryProcess
from tests.registry.conftest import token
from tests.registry.seed import make_run, unique
from tests.registry.test_api import Api

READER, TRAINER, RELEASER = token(Role.READER), token(Role.TRAINER), token(Role.RELEASER)


@pytest.fixture(scope="module")
def known_model(registry: RegistryProcess, mlflow_server: str) -> str:
    model = unique()
    registry.grpc.call("RegisterVersion", pb.RegisterVersionRequest(
        model_name=model, run_id=make_run(mlflow_server).run_id), TRAINER)
    return model


def _cases(model: str) -> list[tuple[str, Message, str, str]]:
    """(method, request, expected code, text the message contains)."""
    missing = f"{model}-nope"
    return [
        ("GetModel", pb.GetModelRequest(model_name=missing), "NOT_FOUND", f"model {missing} not found"),
        ("GetVersion", pb.GetVersionRequest(model_name=missing, version=1), "NOT_FOUND", "not found"),
        ("ListVersions", pb.ListVersionsRequest(model_name=missing), "NOT_FOUND", "not found"),
        ("ResolveAlias", pb.ResolveAliasRequest(model_name=missing, alias="champion"), "NOT_FOUND", "not found"),
        ("GetVersion", pb.GetVersionRequest(model_name=model, version=99), "NOT_FOUND",
         f"model {model} has no version 99"),
        ("ResolveAlias", pb.ResolveAliasRequest(model_name=model, alias="champion"), "NOT_FOUND",
         f"model {model} has no alias champion"),
        ("GetVersion", pb.GetVersionRequest(model_name=model, version=0), "INVALID_ARGUMENT", "version"),
        ("GetVersion", pb.GetVersionRequest(model_name=model, version=-3), "INVALID_ARGUMENT", "version"),
        ("ResolveAlias", pb.ResolveAliasRequest(model_name=model, alias="bad alias!"), "INVALID_ARGUMENT", "alias"),
        ("ResolveAlias", pb.ResolveAliasRequest(model_name=model, alias="v3"), "INVALID_ARGUMENT", "alias"),
        ("ResolveAlias", pb.ResolveAliasRequest(model_name=model, alias="latest"), "INVALID_ARGUMENT", "alias"),
        ("GetModel", pb.GetModelRequest(model_name="bad name!"), "INVALID_ARGUMENT", "model_name"),
        ("GetModel", pb.GetModelRequest(model_name="-dash"), "INVALID_ARGUMENT", "model_name"),
        ("ListVersions", pb.ListVersionsRequest(model_name=model, page_token="garbage!"), "INVALID_ARGUMENT",  # noqa: S106
         "page_token"),
        ("ListVersions", pb.ListVersionsRequest(model_name=model, page_size=-1), "INVALID_ARGUMENT", "page_size"),
        ("SetAlias", pb.SetAliasRequest(model_name=model, alias="x", version=1, reason="r" * 5000),
         "INVALID_ARGUMENT", "reason"),
        ("SetAlias", pb.SetAliasRequest(model_name=model, alias="shadow", version=42), "NOT_FOUND", "version 42"),
        ("RegisterVersion", pb.RegisterVersionRequest(model_name=model, run_id="0" * 32), "NOT_FOUND", "run"),
        ("RegisterVersion", pb.RegisterVersionRequest(model_name=model, run_id="x", trigger="whim"),
         "INVALID_ARGUMENT", "trigger"),
        ("RegisterVersion", pb.RegisterVersionRequest(model_name=model, run_id="x", tags={"loopline.x": "1"}),
         "INVALID_ARGUMENT", "tags"),
        ("RegisterVersion", pb.RegisterVersionRequest(model_name=model, run_id="x", artifact_path="../../up"),
         "INVALID_ARGUMENT", "artifact_path"),
        ("Rollback", pb.RollbackRequest(model_name=model), "FAILED_PRECONDITION", "no champion"),
    ]


def test_bad_input_gets_the_right_error(api: Api, known_model: str) -> None:
    cases = _cases(known_model)
    if api.transport == "grpc":  # over HTTP an empty name is another path (the model list)
        cases.append(("GetModel", pb.GetModelRequest(model_name=""), "INVALID_ARGUMENT", "model_name"))
    for method, request, code, text in cases:
        credential = TRAINER if method == "RegisterVersion" else RELEASER
        with pytest.raises(ApiError) as refused:
            api.call(method, request, credential)
        assert refused.value.code == code, (method, request, refused.value)
        assert text in refused.value.message, (method, refused.value.message)
        assert "RESOURCE_DOES_NOT_EXIST" not in refused.value.message  # MLflow's words are not forwarded


def test_oversized_and_malformed_requests_and_the_service_stays_up(registry: RegistryProcess,
                                                                  known_model: str) -> None:
    huge = "x" * (5 * 1024 * 1024)  # over the 4 MiB request limit
    with pytest.raises(ApiError) as grpc_refused:
        registry.grpc.call("SetAlias", pb.SetAliasRequest(model_name=known_model, alias="a", version=1, reason=huge),
                           RELEASER)
    assert grpc_refused.value.code == "RESOURCE_EXHAUSTED"
    with pytest.raises(ApiError) as http_refused:
        registry.http.call("SetAlias", pb.SetAliasRequest(model_name=known_model, alias="a", version=1, reason=huge),
                           RELEASER)
    assert (http_refused.value.code, http_refused.value.transport_status) == ("PAYLOAD_TOO_LARGE", 413)

    http = registry.http.http
    auth = {"authorization": f"Bearer {RELEASER}"}
    cases = [
        http.get(f"/v1/models/{known_model}/versions/abc", headers=auth),  # not a number
        http.put(f"/v1/models/{known_model}/aliases/a", content=b"{not json", headers=auth),
        http.put(f"/v1/models/{known_model}/aliases/a", json=[1, 2], headers=auth),
        http.put(f"/v1/models/{known_model}/aliases/a", json={"version": 1, "surprise": True}, headers=auth),
        http.put(f"/v1/models/{known_model}/aliases/a", json={"version": "one"}, headers=auth),
        http.get(f"/v1/models/{known_model}/versions", params={"colour": "red"}, headers=auth),
        http.get(f"/v1/models/{known_model}/versions", params={"tag": "no-equals-sign"}, headers=auth),
    ]
    for response in cases:
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "INVALID_ARGUMENT"
    assert http.get("/v1/nothing", headers=auth).status_code == 404

    assert registry.alive
    assert registry.grpc.call("GetModel", pb.GetModelRequest(model_name=known_model), READER).model.name == known_model
    assert registry.http.call("GetModel", pb.GetModelRequest(model_name=known_model), READER).model.name == known_model
    assert http.get("/readyz").status_code == 200
