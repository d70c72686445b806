"""The cluster runner and its batch/v1 Job. No Kubernetes cluster can run here: the runner's API calls go
to kmock's in-memory Kubernetes API emulator (a real HTTP server speaking the Kubernetes API, storing
objects and streaming watch events), and the test plays the Job controller by writing Job status and pod
termination messages through the same API. The manifest is validated against the Kubernetes JSON schemas
(kubernetes-validate, strict)."""

from __future__ import annotations

import asyncio
import functools
import json
import threading
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import kmock
import kubernetes_validate
import pytest
from kubernetes import client
from loopline_training.protocol import Outcome, Progress
from loopline_training.runners.kubernetes import KubernetesRunner, api_client
from loopline_training.runners.manifest import SELECTOR, JobTemplate, job_manifest, job_name, job_selector
from loopline_training.store import new_record

from tests.training.support import wait_for

NAMESPACE = "loopline"


@dataclass
class Emulator:
    url: str
    handler: kmock.KubernetesEmulator
    loop: asyncio.AbstractEventLoop

    def requests(self, method: str) -> list[str]:
        return [str(r.url) for r in list(self.handler) if str(r.method).upper().endswith(method)]


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    """kmock's Kubernetes emulator on 127.0.0.1, in its own event loop thread."""
    ready = threading.Event()
    box: dict[str, Any] = {}

    async def serve() -> None:
        async with kmock.KubernetesEmulator() as handler, kmock.Server(handler) as server:
            handler.resources["batch/v1/jobs"] = kmock.ResourceInfo(kind="Job", namespaced=True)
            handler.resources["v1/pods"] = kmock.ResourceInfo(kind="Pod", namespaced=True)
            box.update(handler=handler, url=str(server.url).rstrip("/"), loop=asyncio.get_running_loop(),
                       stop=asyncio.Event())
            ready.set()
            await box["stop"].wait()

    thread = threading.Thread(target=lambda: asyncio.run(serve()), daemon=True)
    thread.start()
    assert ready.wait(30)
    yield Emulator(box["url"], box["handler"], box["loop"])
    box["loop"].call_soon_threadsafe(box["stop"].set)
    thread.join(10)


@dataclass
class Recorder:
    progress: list[tuple[str, Progress]] = field(default_factory=list)
    outcomes: dict[str, Outcome] = field(default_factory=dict)

    def on_progress(self, job_id: str, progress: Progress) -> None:
        self.progress.append((job_id, progress))

    def on_outcome(self, job_id: str, outcome: Outcome) -> None:
        self.outcomes[job_id] = outcome


def template(**overrides: Any) -> JobTemplate:
    values: dict[str, Any] = {
        "namespace": NAMESPACE, "image": "ghcr.io/loopline/loopline-training:0.1.0",
        "service_account": "loopline-training-job", "cpu_request": "1", "cpu_limit": "2", "memory_request": "2Gi",
        "memory_limit": "4Gi", "backoff_limit": 0, "ttl_seconds_after_finished": 3600,
        "active_deadline_seconds": 7200, "token_secret": "loopline-training-registry-token",
        "env": {"LOOPLINE_TRAINING_MLFLOW_URI": "http://mlflow:5000",
                "LOOPLINE_TRAINING_REGISTRY_TARGET": "registry:9083"},
    }
    values.update(overrides)
    return JobTemplate(**values)


def record(model: str = "fraud") -> Any:
    spec = json.dumps({"model_name": model, "family": "lightgbm"})
    return new_record(job_id=uuid.uuid4().hex, model_name=model, family="lightgbm", trigger="manual", reason="",
                      spec=spec, state="RUNNING", attempt=1)


@pytest.mark.parametrize("version", ["1.30", "1.37"])
def test_the_job_manifest_is_a_valid_kubernetes_job(version: str) -> None:
    manifest = job_manifest(job_id="0123456789abcdef0123456789abcdef", model_name="Fraud Model/v2", family="torch_mlp",
                            spec_json='{"model_name": "x"}', template=template())
    kubernetes_validate.validate(manifest, version, strict=True)
    spec = manifest["spec"]
    assert spec["backoffLimit"] == 0 and spec["ttlSecondsAfterFinished"] == 3600
    assert spec["activeDeadlineSeconds"] == 7200
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == "loopline-training-job" and pod["restartPolicy"] == "Never"
    assert pod["securityContext"]["runAsNonRoot"] is True
    container = pod["containers"][0]
    assert container["image"] == "ghcr.io/loopline/loopline-training:0.1.0"
    assert container["resources"] == {"requests": {"cpu": "1", "memory": "2Gi"},
                                      "limits": {"cpu": "2", "memory": "4Gi"}}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["terminationMessagePath"] == "/dev/termination-log"
    labels = manifest["metadata"]["labels"]
    assert labels["loopline.dev/model"] == "Fraud_Model_v2"  # a valid label value
    assert labels["app.kubernetes.io/component"] == "training-job"
    assert spec["template"]["metadata"]["labels"] == labels
    env = {e["name"]: e for e in container["env"]}
    assert env["LOOPLINE_TRAINING_JOB_SPEC"]["value"] == '{"model_name": "x"}'
    assert env["LOOPLINE_TRAINING_REGISTRY_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == template().token_secret
    assert len(manifest["metadata"]["name"]) <= 63


def test_jobs_carry_their_release_and_the_runner_watches_only_its_own(emulator: Emulator) -> None:
    mine, theirs = template(instance="demo"), template(instance="other")
    labels = job_manifest(job_id="a" * 32, model_name="m", family="lightgbm", spec_json="{}",
                          template=mine)["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/instance"] == "demo"
    assert "app.kubernetes.io/instance" not in job_manifest(job_id="a" * 32, model_name="m", family="lightgbm",
                                                          spec_json="{}", template=template())["metadata"]["labels"]
    assert job_selector(mine) == "app.kubernetes.io/component=training-job,app.kubernetes.io/instance=demo"
    assert job_selector(template()) == SELECTOR
    # The runner lists and watches with its release in the selector (the emulator does not filter by
    # labels, so what is checked is the request the API server would filter by).
    batch, _ = _controller(emulator)
    batch.create_namespaced_job(NAMESPACE, job_manifest(job_id=record().job_id, model_name="m", family="lightgbm",
                                                        spec_json="{}", template=theirs))
    runner = KubernetesRunner(api=api_client(api_url=emulator.url), template=mine, events=Recorder(),
                              resync_seconds=5)
    try:
        runner.start(record())

        def selectors() -> list[str]:
            found = []
            for url in emulator.requests("GET"):
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
                found += query.get("labelSelector", [])
            return found

        wait_for(lambda: "watch=true" in " ".join(emulator.requests("GET")), timeout=30, what="the runner's watch")
        assert selectors() and set(selectors()) == {job_selector(mine)}
    finally:
        runner.close()


def test_a_bad_manifest_is_caught_by_the_schema() -> None:
    manifest = job_manifest(job_id="abc", model_name="m", family="lightgbm", spec_json="{}", template=template())
    manifest["spec"]["backoffLimit"] = "zero"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(manifest, "1.37", strict=True)
    manifest = job_manifest(job_id="abc", model_name="m", family="lightgbm", spec_json="{}", template=template())
    manifest["spec"]["template"]["spec"]["containers"][0]["resourcez"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(manifest, "1.37", strict=True)


def _controller(emulator: Emulator) -> tuple[client.BatchV1Api, client.CoreV1Api]:
    api = api_client(api_url=emulator.url)
    return client.BatchV1Api(api), client.CoreV1Api(api)


def _finish_pod(core: client.CoreV1Api, name: str, message: str, exit_code: int) -> None:
    core.create_namespaced_pod(NAMESPACE, {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": f"{name}-x7k2p", "namespace": NAMESPACE, "labels": {"job-name": name}},
        "spec": {"containers": [{"name": "job", "image": "img"}]},
        "status": {"containerStatuses": [{
            "name": "job", "ready": False, "restartCount": 0, "image": "img", "imageID": "",
            "state": {"terminated": {"exitCode": exit_code, "message": message}},
        }]},
    })


def test_the_runner_creates_the_job_and_follows_it_to_success(emulator: Emulator) -> None:
    recorder = Recorder()
    runner = KubernetesRunner(api=api_client(api_url=emulator.url), template=template(), events=recorder,
                              resync_seconds=5)
    batch, core = _controller(emulator)
    job = record()
    try:
        ref = runner.start(job)
        name = job_name(job.job_id)
        assert ref == {"job_name": name, "namespace": NAMESPACE}
        assert runner.active() == 1
        created = batch.read_namespaced_job(name, NAMESPACE)
        stored = api_client(api_url=emulator.url).sanitize_for_serialization(created)
        assert stored["metadata"]["labels"] == runner.manifest(job)["metadata"]["labels"]
        kubernetes_validate.validate(runner.manifest(job), "1.37", strict=True)
        assert any(url.endswith(f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs") for url in emulator.requests("POST"))

        batch.patch_namespaced_job_status(name, NAMESPACE, {"status": {"active": 1}})
        wait_for(lambda: any(p.stage == "running" for j, p in recorder.progress if j == job.job_id), timeout=30,
                 what="the runner to see the pod running")
        result = Outcome(status="succeeded", mlflow_run_id="a" * 32, registered_version=4,
                         metrics={"roc_auc": 0.91}, training_set_hash="f" * 64, training_rows=1000)
        _finish_pod(core, name, result.to_json(), 0)
        batch.patch_namespaced_job_status(name, NAMESPACE, {"status": {
            "active": 0, "succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}})
        outcome = wait_for(lambda: recorder.outcomes.get(job.job_id), timeout=30, what="the outcome")
        assert outcome == result
        assert runner.active() == 0
        # A watch (not polling alone) carried the changes.
        assert any("watch=true" in url for url in emulator.requests("GET"))
    finally:
        runner.close()


def test_a_failed_job_reports_the_error_the_job_wrote(emulator: Emulator) -> None:
    recorder = Recorder()
    runner = KubernetesRunner(api=api_client(api_url=emulator.url), template=template(), events=recorder,
                              resync_seconds=5)
    batch, core = _controller(emulator)
    written, silent = record(), record()
    try:
        for job in (written, silent):
            runner.start(job)
        failed = Outcome(status="failed", error="ONNX parity: max |ONNX Runtime - native| = 0.01 exceeds 1e-05")
        _finish_pod(core, job_name(written.job_id), failed.to_json(), 1)
        for job in (written, silent):
            batch.patch_namespaced_job_status(job_name(job.job_id), NAMESPACE, {"status": {"failed": 1, "conditions": [
                {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                 "message": "Job has reached the specified backoff limit"}]}})
        assert wait_for(lambda: recorder.outcomes.get(written.job_id), timeout=30, what="an outcome") == failed
        other = wait_for(lambda: recorder.outcomes.get(silent.job_id), timeout=30, what="an outcome")
        assert other.status == "failed"
        assert "BackoffLimitExceeded: Job has reached the specified backoff limit" in other.error
    finally:
        runner.close()


def test_a_job_started_while_the_watcher_lists_is_not_taken_for_vanished(emulator: Emulator) -> None:
    """The watcher lists, then calls every followed job missing from the list vanished; a job created and
    followed while that list was in flight is missing from it without having gone anywhere."""
    recorder = Recorder()
    runner = KubernetesRunner(api=api_client(api_url=emulator.url), template=template(), events=recorder,
                              resync_seconds=5)
    batch, core = _controller(emulator)
    first, late = record(), record()
    real_list = runner.batch.list_namespaced_job
    started = threading.Event()  # set once `late` exists
    calls: list[int] = []

    @functools.wraps(real_list)  # the watch reads the return type from the wrapped method
    def list_then_start_another(*args: Any, **kwargs: Any) -> Any:
        listed = real_list(*args, **kwargs)
        if not kwargs.get("watch") and not calls:
            calls.append(1)
            runner.start(late)  # created after the list was taken, followed before the vanished check
            started.set()
        return listed

    runner.batch.list_namespaced_job = list_then_start_another  # type: ignore[method-assign]
    try:
        runner.start(first)
        assert started.wait(30)
        result = Outcome(status="succeeded", mlflow_run_id="b" * 32, registered_version=1)
        _finish_pod(core, job_name(late.job_id), result.to_json(), 0)
        batch.patch_namespaced_job_status(job_name(late.job_id), NAMESPACE, {"status": {
            "succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}})
        assert wait_for(lambda: recorder.outcomes.get(late.job_id), timeout=30, what="an outcome") == result
        assert first.job_id not in recorder.outcomes
    finally:
        runner.close()


def test_cancel_deletes_the_job_and_a_vanished_job_is_lost(emulator: Emulator) -> None:
    recorder = Recorder()
    runner = KubernetesRunner(api=api_client(api_url=emulator.url), template=template(), events=recorder,
                              resync_seconds=5)
    batch, _ = _controller(emulator)
    cancelled, vanished = record(), record()
    try:
        for job in (cancelled, vanished):
            runner.start(job)
        runner.cancel(cancelled)
        outcome = wait_for(lambda: recorder.outcomes.get(cancelled.job_id), timeout=30, what="the cancel")
        assert outcome.status == "cancelled"
        deletes = emulator.requests("DELETE")
        assert any(job_name(cancelled.job_id) in url and "propagationPolicy=Background" in url for url in deletes)
        batch.delete_namespaced_job(job_name(vanished.job_id), NAMESPACE)  # someone else deleted it
        lost = wait_for(lambda: recorder.outcomes.get(vanished.job_id), timeout=30, what="loss")
        assert lost.status == "lost" and "deleted before it finished" in lost.error
        assert not batch.list_namespaced_job(NAMESPACE, label_selector=SELECTOR).items
    finally:
        runner.close()


def test_a_restarted_service_resumes_following_its_jobs(emulator: Emulator) -> None:
    first = KubernetesRunner(api=api_client(api_url=emulator.url), template=template(), events=Recorder(),
                             resync_seconds=5)
    job, gone = record(), record()
    first.start(job)
    first.close()  # the service stops; the Job runs on in the cluster

    recorder = Recorder()
    second = KubernetesRunner(api=api_client(api_url=emulator.url), template=template(), events=recorder,
                              resync_seconds=5)
    batch, core = _controller(emulator)
    try:
        assert second.resume(job)
        assert not second.resume(gone)  # never created (or deleted): the service re-queues it
        result = Outcome(status="succeeded", registered_version=2)
        _finish_pod(core, job_name(job.job_id), result.to_json(), 0)
        batch.patch_namespaced_job_status(job_name(job.job_id), NAMESPACE, {"status": {"succeeded": 1}})
        assert wait_for(lambda: recorder.outcomes.get(job.job_id), timeout=30, what="the outcome") == result
    finally:
        second.close()
