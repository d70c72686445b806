"""`loopline train submit|list|get|watch` against the running service (the CLI from the developer environment,
which holds no torch: the CLI imports protos and gRPC only). `cancel`, and `watch` with its progress bar on a
running job, are in test_failures."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from google.protobuf.json_format import MessageToDict

from tests.helpers import REPO
from tests.training.conftest import FailedJobs
from tests.training.support import DEV_BIN, TrainingProcess

pytestmark = pytest.mark.slow
LOOPLINE = str(DEV_BIN / "loopline")


def loopline(*args: str, target: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LOOPLINE, "train", *args, "--target", target], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, check=False)


def test_the_cli_never_imports_torch() -> None:
    probe = "import sys, loopline_cli.main, loopline_cli.train; print('torch' in sys.modules)"
    out = subprocess.run([str(DEV_BIN / "python"), "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_submit_watch_get_list_and_bad_specs(training: TrainingProcess, failed_jobs: FailedJobs,
                                             tmp_path: Path) -> None:
    target = f"127.0.0.1:{training.grpc_port}"
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(MessageToDict(failed_jobs.spec, preserving_proto_field_name=True)))

    # The same idempotency key: the job submitted before, not a new one (options still parse and apply).
    submitted = loopline("submit", str(spec_file), "--param", "num_leaves=7", "--reason", "from the cli",
                         "--idempotency-key", failed_jobs.idempotency_key, target=target)
    assert submitted.returncode == 0, submitted.stderr
    assert f"submitted job {failed_jobs.first.job_id}" in submitted.stdout and "already submitted" in submitted.stdout

    job_id = failed_jobs.first.job_id
    watched = loopline("watch", job_id, target=target)
    assert watched.returncode == 1  # the job failed
    assert f"job {job_id} failed" in watched.stdout and "must hold 0/1 values" in watched.stderr

    got = loopline("get", job_id, target=target)
    assert got.returncode == 0 and "state         failed" in got.stdout and "must hold 0/1 values" in got.stdout
    as_json = json.loads(loopline("get", job_id, "--json", target=target).stdout)
    assert as_json["job_id"] == job_id and as_json["state"] == "JOB_STATE_FAILED"
    listed = loopline("list", "--model", failed_jobs.spec.model_name, "--state", "failed", target=target)
    assert listed.returncode == 0 and job_id in listed.stdout and failed_jobs.second.job_id in listed.stdout

    bad = loopline("submit", str(spec_file), "--family", "xgboost", target=target)
    assert bad.returncode == 2 and "xgboost" in bad.stderr  # refused by the CLI's own choices
    unlabelled = MessageToDict(failed_jobs.spec, preserving_proto_field_name=True)
    unlabelled.pop("label")
    spec_file.write_text(json.dumps(unlabelled))
    refused = loopline("submit", str(spec_file), target=target)
    assert refused.returncode == 1
    assert "INVALID_ARGUMENT" in refused.stderr and "label is required" in refused.stderr
    missing = loopline("get", "no-such-job", target=target)
    assert missing.returncode == 1 and "NOT_FOUND" in missing.stderr
