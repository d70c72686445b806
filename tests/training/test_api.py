"""The jobs API over both transports: bad specs are refused with INVALID_ARGUMENT saying what is wrong,
unknown jobs are NOT_FOUND, list filters and pages, idempotent submission, and the spec normalization."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import grpc
import pytest
from loopline_training.spec import normalize_spec

from loopline.training.v1 import training_pb2 as pb
from loopline_common.errors import InvalidArgument
from tests.training.conftest import FailedJobs
from tests.training.support import STATE, ApiError, GrpcJobs, HttpJobs, TrainingProcess, make_spec, state_name

Dataset = tuple[Path, tuple[datetime, datetime]]


def _refused(jobs: GrpcJobs | HttpJobs, spec: pb.JobSpec) -> ApiError:
    with pytest.raises(ApiError) as caught:
        jobs.submit(spec)
    error = caught.value
    assert error.code == "INVALID_ARGUMENT"
    assert error.status == (grpc.StatusCode.INVALID_ARGUMENT if jobs.transport == "grpc" else 400)
    return error


def test_unknown_family_is_refused(jobs: GrpcJobs | HttpJobs, dataset: Dataset) -> None:
    error = _refused(jobs, make_spec(*dataset, family="xgboost"))
    assert "unknown family 'xgboost': use one of lightgbm, torch_mlp" in error.message
    assert "spec.family" in error.details


def test_empty_window_is_refused(jobs: GrpcJobs | HttpJobs, dataset: Dataset) -> None:
    path, (start, _) = dataset
    error = _refused(jobs, make_spec(path, (start, start)))
    assert "window is empty: start" in error.message and "is not before end" in error.message
    assert "spec.window" in error.details
    backwards = _refused(jobs, make_spec(path, (start + timedelta(days=2), start)))
    assert "window is empty" in backwards.message


def test_missing_label_is_refused(jobs: GrpcJobs | HttpJobs, dataset: Dataset) -> None:
    spec = make_spec(*dataset)
    spec.label = ""
    error = _refused(jobs, spec)
    assert "label is required" in error.message and "spec.label" in error.details


def test_every_problem_is_named_at_once(jobs: GrpcJobs | HttpJobs, dataset: Dataset) -> None:
    spec = make_spec(*dataset, family="lightgbm", num_leaves="1", bogus="3")
    spec.model_name = "no spaces allowed"
    spec.trigger = "whim"
    spec.threshold = 1.5
    spec.ClearField("window")
    error = _refused(jobs, spec)
    for field in ("spec.model_name", "spec.trigger", "spec.threshold", "spec.window",
                  "spec.hyperparameters.num_leaves", "spec.hyperparameters.bogus"):
        assert field in error.details, field
    assert "hyperparameter num_leaves = '1' must be an integer in [2, 4096]" in error.message
    assert "unknown hyperparameter 'bogus' for lightgbm" in error.message


def test_missing_data_file_is_refused(jobs: GrpcJobs | HttpJobs, dataset: Dataset, tmp_path: Path) -> None:
    spec = make_spec(tmp_path / "nowhere.parquet", dataset[1])
    error = _refused(jobs, spec)
    assert "is not a file" in error.message and "spec.dataset_uri" in error.details
    s3 = make_spec(Path("x"), dataset[1])
    s3.dataset_uri = "s3://bucket/data.parquet"
    assert "must be a local path or a file:// URI" in _refused(jobs, s3).message


def test_entity_uri_needs_a_features_service(jobs: GrpcJobs | HttpJobs, dataset: Dataset) -> None:
    spec = make_spec(*dataset)
    spec.entity_uri, spec.dataset_uri = str(dataset[0]), ""
    spec.ClearField("exclude_columns")
    error = _refused(jobs, spec)  # the shared service runs without a features service
    assert "entity_uri needs the features service, and none is configured" in error.message


def test_unknown_job_is_not_found(jobs: GrpcJobs | HttpJobs) -> None:
    with pytest.raises(ApiError) as caught:
        jobs.get("no-such-job")
    assert caught.value.code == "NOT_FOUND"
    with pytest.raises(ApiError) as watched:
        jobs.watch("no-such-job")
    assert watched.value.code == "NOT_FOUND" or watched.value.status == grpc.StatusCode.NOT_FOUND


def test_submission_is_idempotent_and_lists_filter_and_page(training: TrainingProcess, failed_jobs: FailedJobs) -> None:
    again = training.http.submit(failed_jobs.spec, idempotency_key=failed_jobs.idempotency_key)
    assert again.job_id == failed_jobs.first.job_id and state_name(again) == "FAILED"
    model = failed_jobs.spec.model_name
    listed = training.grpc.list(model_name=model, page_size=1)
    assert len(listed.jobs) == 1 and listed.next_page_token
    rest = training.http.list(model_name=model, page_size=1, page_token=listed.next_page_token)
    assert len(rest.jobs) == 1 and not rest.next_page_token
    both = training.grpc.list(model_name=model).jobs
    assert [j.job_id for j in both] == [failed_jobs.second.job_id, failed_jobs.first.job_id]  # newest first
    assert [j.job_id for j in [*listed.jobs, *rest.jobs]] == [j.job_id for j in both]
    assert training.grpc.list(model_name=model, trigger="drift").jobs == []
    assert len(training.http.list(model_name=model, states=[failed_jobs.first.state]).jobs) == 2
    assert training.grpc.list(model_name=model, states=[STATE.Value("JOB_STATE_RUNNING")]).jobs == []
    with pytest.raises(ApiError) as bad_token:
        training.grpc.list(page_token="garbage")  # noqa: S106 - not a password
    assert bad_token.value.code == "INVALID_ARGUMENT"
    # Watching a finished job answers it once and ends (both transports).
    assert [state_name(j) for j in training.http.watch(failed_jobs.first.job_id)] == ["FAILED"]
    assert [state_name(j) for j in training.grpc.watch(failed_jobs.first.job_id)] == ["FAILED"]


def test_normalize_fills_every_default(dataset: Dataset) -> None:
    spec = make_spec(*dataset, family="torch_mlp")
    spec.ClearField("hyperparameters")
    spec.trigger = ""
    normalized = normalize_spec(spec, default_threads=3)
    assert normalized.trigger == "manual" and normalized.threshold == 0.5
    assert normalized.timestamp_column == "event_timestamp"
    assert normalized.validation.time_holdout.holdout_fraction == 0.2
    assert normalized.validation.time_holdout.early_stopping_fraction == 0.15
    assert normalized.hyperparameters["num_threads"] == "3"
    assert normalized.hyperparameters["hidden_layers"] == "64,32"
    with pytest.raises(InvalidArgument, match="hidden_layers"):
        normalize_spec(make_spec(*dataset, family="torch_mlp", hidden_layers="64,,3"))
    holdout = make_spec(*dataset)
    holdout.validation.time_holdout.holdout_start.FromDatetime(dataset[1][1] + timedelta(days=1))
    with pytest.raises(InvalidArgument, match="holdout_start must fall inside the window"):
        normalize_spec(holdout)
