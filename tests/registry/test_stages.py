"""The stage view (None / Staging / Production / Archived) over aliases and tags, transitions enforced."""

from __future__ import annotations

import pytest

from loopline.registry.v1 import registry_pb2 as pb
from tests.registry.clients import ApiError
from tests.registry.seed import unique
from tests.registry.test_api import READER, RELEASER, Api, register

NONE, STAGING, PRODUCTION, ARCHIVED = pb.STAGE_NONE, pb.STAGE_STAGING, pb.STAGE_PRODUCTION, pb.STAGE_ARCHIVED


def move(api: Api, model: str, version: int, stage: int) -> pb.TransitionStageResponse:
    request = pb.TransitionStageRequest(model_name=model, version=version, stage=stage, reason="test")  # type: ignore[arg-type]
    return api.call("TransitionStage", request, RELEASER)  # type: ignore[no-any-return]


def stages(api: Api, model: str) -> dict[int, int]:
    reply = api.call("ListVersions", pb.ListVersionsRequest(model_name=model), READER)
    return {v.version: v.stage for v in reply.versions}


def test_allowed_transitions_follow_the_lifecycle(api: Api, mlflow_server: str) -> None:
    model = unique()
    for _ in range(4):
        register(api, mlflow_server, model)

    to_staging = move(api, model, 1, STAGING)
    assert (to_staging.from_stage, to_staging.to_stage, to_staging.demoted_version) == (NONE, STAGING, 0)
    assert list(to_staging.version.aliases) == ["challenger"]
    to_production = move(api, model, 1, PRODUCTION)
    assert (to_production.from_stage, to_production.archived_version) == (STAGING, 0)
    assert to_production.evaluation.passed
    assert stages(api, model) == {1: PRODUCTION, 2: NONE, 3: NONE, 4: NONE}

    # A second Staging version takes the challenger alias; the previous Staging one goes back to None.
    move(api, model, 2, STAGING)
    demoting = move(api, model, 3, STAGING)
    assert demoting.demoted_version == 2
    # Promoting to Production archives the previous Production version.
    promoted = move(api, model, 3, PRODUCTION)
    assert promoted.archived_version == 1
    assert stages(api, model) == {1: ARCHIVED, 2: NONE, 3: PRODUCTION, 4: NONE}

    assert move(api, model, 2, ARCHIVED).from_stage == NONE  # None -> Archived
    move(api, model, 4, STAGING)
    assert move(api, model, 4, ARCHIVED).from_stage == STAGING  # Staging -> Archived
    assert move(api, model, 3, ARCHIVED).from_stage == PRODUCTION  # Production -> Archived
    assert stages(api, model) == {1: ARCHIVED, 2: ARCHIVED, 3: ARCHIVED, 4: ARCHIVED}
    aliases = api.call("GetModel", pb.GetModelRequest(model_name=model), READER).model.aliases
    assert dict(aliases) == {}


@pytest.mark.parametrize(
    ("setup", "target", "expected"),
    [
        ([], PRODUCTION, "cannot move from None to Production: from None it may move to Archived or Staging"),
        ([], NONE, "cannot move from None to None"),
        ([STAGING], NONE, "cannot move from Staging to None: from Staging it may move to Archived or Production"),
        ([STAGING], STAGING, "cannot move from Staging to Staging"),
        ([STAGING, PRODUCTION], STAGING, "cannot move from Production to Staging: from Production it may move to "
                                         "Archived"),
        ([ARCHIVED], STAGING, "cannot move from Archived to Staging: Archived is final"),
        ([ARCHIVED], PRODUCTION, "Archived is final"),
    ],
)
def test_refused_transitions_say_why(api: Api, mlflow_server: str, setup: list[int], target: int,
                                     expected: str) -> None:
    model = unique()
    register(api, mlflow_server, model)
    for stage in setup:
        move(api, model, 1, stage)
    with pytest.raises(ApiError) as refused:
        move(api, model, 1, target)
    assert refused.value.code == "FAILED_PRECONDITION"
    assert expected in refused.value.message
    assert refused.value.details["to_stage"] == pb.Stage.Name(target).removeprefix("STAGE_").capitalize()


def test_an_archived_version_takes_no_alias_and_no_promotion(api: Api, mlflow_server: str) -> None:
    model = unique()
    register(api, mlflow_server, model)
    api.call("Archive", pb.ArchiveRequest(model_name=model, version=1, reason="bad data"), RELEASER)
    for method, request in [
        ("SetAlias", pb.SetAliasRequest(model_name=model, alias="shadow", version=1)),
        ("Promote", pb.PromoteRequest(model_name=model, version=1)),
        ("ApproveVersion", pb.ApproveVersionRequest(model_name=model, version=1)),
        ("Archive", pb.ArchiveRequest(model_name=model, version=1)),
    ]:
        with pytest.raises(ApiError) as refused:
            api.call(method, request, RELEASER)
        assert refused.value.code == "FAILED_PRECONDITION", method
    with pytest.raises(ApiError) as bad_stage:
        move(api, model, 1, pb.STAGE_UNSPECIFIED)
    assert bad_stage.value.code == "INVALID_ARGUMENT"
