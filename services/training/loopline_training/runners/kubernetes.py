"""The cluster runner: each job a batch/v1 Job, created and watched with the kubernetes client.

One watcher thread follows every training Job of the namespace (label selector), re-listing at each
reconnect so that no change is missed. A Job that completes or fails is read back through its pod's
termination message, where the job wrote its result; a Job deleted before it finished is cancelled (if
a cancel was asked) or lost (re-queued by the service). Progress within a Job is not streamed: the jobs
API shows its state changes, and its MLflow run shows the per-iteration metrics.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from loopline_training.protocol import CANCELLED, FAILED, LOST, TERMINATED, Outcome, Progress
from loopline_training.runners.base import RunnerEvents
from loopline_training.runners.manifest import (
    COMPONENT,
    CONTAINER,
    LABEL_COMPONENT,
    LABEL_JOB_ID,
    JobTemplate,
    job_manifest,
    job_name,
    job_selector,
)
from loopline_training.store import JobRecord

log = logging.getLogger(__name__)


def api_client(*, api_url: str = "", kubeconfig: str = "") -> client.ApiClient:
    """An API client: a plain URL (tests, `kubectl proxy`), a kubeconfig, or the in-cluster account."""
    from kubernetes import config

    if api_url:
        configuration = client.Configuration()
        configuration.host = api_url.rstrip("/")
        return client.ApiClient(configuration)
    if kubeconfig:
        made: client.ApiClient = config.new_client_from_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
        return made
    config.load_incluster_config()  # type: ignore[no-untyped-call]
    return client.ApiClient()


class KubernetesRunner:
    name = "kubernetes"

    def __init__(
        self, *, api: client.ApiClient, template: JobTemplate, events: RunnerEvents, resync_seconds: int = 30
    ) -> None:
        self.api = api
        self.batch = client.BatchV1Api(api)
        self.core = client.CoreV1Api(api)
        self.template = template
        self.namespace = template.namespace
        self.events = events
        self.resync_seconds = resync_seconds
        self.selector = job_selector(template)
        self._watching: dict[str, str] = {}  # job id -> Kubernetes Job name
        self._running_reported: set[str] = set()
        self._cancelling: set[str] = set()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        self._watch: watch.Watch | None = None

    # ---- Runner ----------------------------------------------------------------------------------
    def active(self) -> int:
        with self._lock:
            return len(self._watching)

    def manifest(self, job: JobRecord) -> dict[str, Any]:
        return job_manifest(job_id=job.job_id, model_name=job.model_name, family=job.family, spec_json=job.spec,
                            template=self.template)

    def start(self, job: JobRecord) -> dict[str, Any]:
        name = job_name(job.job_id)
        try:
            self.batch.create_namespaced_job(self.namespace, self.manifest(job))  # type: ignore[arg-type]
        except ApiException as exc:
            if exc.status != 409:  # 409: made by an earlier attempt that crashed before recording it
                raise
            log.info("job %s exists already; watching it", name)
        self._follow(job.job_id, name)
        return {"job_name": name, "namespace": self.namespace}

    def resume(self, job: JobRecord) -> bool:
        name = str(job.runner_ref.get("job_name") or job_name(job.job_id))
        try:
            self.batch.read_namespaced_job(name, self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        if job.cancel_requested:
            self._cancelling.add(job.job_id)
        self._follow(job.job_id, name)
        return True

    def cancel(self, job: JobRecord) -> None:
        name = str(job.runner_ref.get("job_name") or job_name(job.job_id))
        self._cancelling.add(job.job_id)
        try:
            self.batch.delete_namespaced_job(name, self.namespace, propagation_policy="Background")
        except ApiException as exc:
            if exc.status != 404:
                raise
            self._finish(job.job_id, Outcome(status=CANCELLED))

    def close(self) -> None:
        self._closed.set()
        if self._watch is not None:
            self._watch.stop()  # type: ignore[no-untyped-call]
        if self._thread is not None:
            self._thread.join(5.0)

    # ---- watching --------------------------------------------------------------------------------
    def _follow(self, job_id: str, name: str) -> None:
        with self._lock:
            self._watching[job_id] = name
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="kubernetes-jobs", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while not self._closed.is_set():
            try:
                # Only the jobs followed before the list can have vanished from it: one started while the
                # list was in flight was created after it.
                with self._lock:
                    followed = set(self._watching)
                listed = self.batch.list_namespaced_job(self.namespace, label_selector=self.selector)
                seen = set()
                for item in listed.items:
                    seen.add(self._job_id(item))
                    self._handle("LISTED", item)
                with self._lock:
                    vanished = [j for j in followed if j in self._watching and j not in seen]
                for job_id in vanished:  # deleted while nobody watched
                    self._gone(job_id)
                self._watch = watch.Watch()  # type: ignore[no-untyped-call]
                events = self._watch.stream(  # type: ignore[no-untyped-call]
                    self.batch.list_namespaced_job, self.namespace, label_selector=self.selector,
                    timeout_seconds=self.resync_seconds,
                    # and a client-side bound, for API servers (or proxies) that do not end the stream
                    _request_timeout=(10, self.resync_seconds + 10),
                )
                for event in events:
                    if self._closed.is_set():
                        break
                    self._handle(str(event["type"]), event["object"])
            except Exception as exc:  # the API server went away or the watch broke: list again
                if not self._closed.is_set():
                    log.warning("watching training Jobs failed, retrying: %s", exc)
                    self._closed.wait(1.0)

    @staticmethod
    def _job_id(item: Any) -> str:
        labels = (item.metadata.labels or {}) if item.metadata else {}
        if labels.get(LABEL_COMPONENT) != COMPONENT:
            return ""
        return str(labels.get(LABEL_JOB_ID, ""))

    def _handle(self, kind: str, item: Any) -> None:
        job_id = self._job_id(item)
        with self._lock:
            name = self._watching.get(job_id)
        if name is None or item.metadata.name != name:
            return
        if kind == "DELETED":
            self._gone(job_id)
            return
        status = item.status
        conditions = {c.type: c for c in (status.conditions or [])} if status else {}
        if status is not None and (status.succeeded or _true(conditions.get("Complete"))):
            self._finish(job_id, self._result(name) or Outcome(
                status=FAILED, error=f"Kubernetes Job {name} completed without a result"))
        elif status is not None and (_true(conditions.get("Failed"))
                                     or (status.failed or 0) > self.template.backoff_limit):
            condition = conditions.get("Failed")
            why = (f"{condition.reason}: {condition.message}" if condition is not None
                   else f"{status.failed} pod(s) failed")
            result = self._result(name)
            if result is not None and result.status == FAILED:
                self._finish(job_id, result)
            elif job_id in self._cancelling:
                self._finish(job_id, Outcome(status=CANCELLED))
            else:
                self._finish(job_id, Outcome(status=FAILED, error=f"Kubernetes Job {name} failed ({why})"))
        elif status is not None and status.active and job_id not in self._running_reported:
            self._running_reported.add(job_id)
            self.events.on_progress(job_id, Progress(stage="running"))

    def _gone(self, job_id: str) -> None:
        if job_id in self._cancelling:
            self._finish(job_id, Outcome(status=CANCELLED))
        else:
            self._finish(job_id, Outcome(status=LOST, error="the Kubernetes Job was deleted before it finished"))

    def _finish(self, job_id: str, outcome: Outcome) -> None:
        with self._lock:
            if self._watching.pop(job_id, None) is None:
                return
        self._running_reported.discard(job_id)
        if outcome.status == TERMINATED:
            outcome = Outcome(status=CANCELLED if job_id in self._cancelling else LOST, error=outcome.error)
        self._cancelling.discard(job_id)
        self.events.on_outcome(job_id, outcome)

    def _result(self, name: str) -> Outcome | None:
        """The result the job wrote to its termination message (newest pod first)."""
        try:
            pods = self.core.list_namespaced_pod(self.namespace, label_selector=f"job-name={name}").items
        except ApiException as exc:
            log.warning("cannot list the pods of %s: %s", name, exc.reason)
            return None
        pods = [p for p in pods if p.metadata is not None and (p.metadata.labels or {}).get("job-name") == name]
        pods.sort(key=lambda p: str(p.metadata.creation_timestamp or "") if p.metadata else "", reverse=True)
        for pod in pods:
            for container in (pod.status.container_statuses or []) if pod.status else []:
                terminated = container.state.terminated if container.state else None
                if container.name == CONTAINER and terminated is not None and terminated.message:
                    outcome = Outcome.from_json(terminated.message)
                    if outcome is not None:
                        return outcome
        return None


def _true(condition: Any) -> bool:
    return condition is not None and str(condition.status) == "True"
