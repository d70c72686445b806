"""The batch/v1 Job that runs one training job in a cluster.

The pod runs the training image's `python -m loopline_training.job` with the spec in an environment
variable, writes its result to the termination message (read back by the runner), runs as a non-root
user with a read-only root file system (scratch space is an emptyDir at /tmp), and is never restarted by
Kubernetes unless `backoffLimit` says so: the service re-queues lost jobs itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

JOB_NAME_PREFIX = "loopline-training-"
LABEL_COMPONENT = "app.kubernetes.io/component"
COMPONENT = "training-job"
LABEL_JOB_ID = "loopline.dev/job-id"
LABEL_MODEL = "loopline.dev/model"
LABEL_FAMILY = "loopline.dev/family"
LABEL_INSTANCE = "app.kubernetes.io/instance"
SELECTOR = f"{LABEL_COMPONENT}={COMPONENT}"
CONTAINER = "job"
TERMINATION_LOG = "/dev/termination-log"
_LABEL_VALUE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class JobTemplate:
    """Cluster settings every training Job gets."""

    namespace: str
    image: str
    service_account: str
    cpu_request: str
    cpu_limit: str
    memory_request: str
    memory_limit: str
    backoff_limit: int
    ttl_seconds_after_finished: int
    active_deadline_seconds: int
    token_secret: str
    env: dict[str, str]  # job settings (MLflow, registry, features addresses, threads, ...)
    image_pull_policy: str = "IfNotPresent"
    # The Helm release the Jobs belong to (their app.kubernetes.io/instance label): two releases in one
    # namespace then neither watch nor admit each other's Jobs. Empty: no such label.
    instance: str = ""


def job_selector(template: JobTemplate) -> str:
    """The label selector of this service's Jobs (and of their pods)."""
    return SELECTOR + (f",{LABEL_INSTANCE}={label_value(template.instance)}" if template.instance else "")


def job_name(job_id: str) -> str:
    return JOB_NAME_PREFIX + job_id.lower()


def label_value(value: str) -> str:
    """A Kubernetes label value: at most 63 characters, alphanumeric at both ends."""
    cleaned = _LABEL_VALUE.sub("_", value)[:63].strip("._-")
    return cleaned or "unknown"


def job_manifest(*, job_id: str, model_name: str, family: str, spec_json: str, template: JobTemplate) -> dict[str, Any]:
    labels = {
        "app.kubernetes.io/name": "loopline-training",
        "app.kubernetes.io/part-of": "loopline",
        LABEL_COMPONENT: COMPONENT,
        LABEL_JOB_ID: label_value(job_id),
        LABEL_MODEL: label_value(model_name),
        LABEL_FAMILY: label_value(family),
    }
    if template.instance:
        labels[LABEL_INSTANCE] = label_value(template.instance)
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in sorted(template.env.items())]
    env.append({"name": "LOOPLINE_TRAINING_JOB_SPEC", "value": spec_json})
    env.append({
        "name": "LOOPLINE_TRAINING_REGISTRY_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": template.token_secret, "key": "token", "optional": True}},
    })
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(job_id),
            "namespace": template.namespace,
            "labels": labels,
            "annotations": {"loopline.dev/model-name": model_name},
        },
        "spec": {
            "backoffLimit": template.backoff_limit,
            "ttlSecondsAfterFinished": template.ttl_seconds_after_finished,
            "activeDeadlineSeconds": template.active_deadline_seconds,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "serviceAccountName": template.service_account,
                    "automountServiceAccountToken": False,
                    "restartPolicy": "Never",
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 10001,
                        "runAsGroup": 10001,
                        "fsGroup": 10001,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": CONTAINER,
                            "image": template.image,
                            "imagePullPolicy": template.image_pull_policy,
                            "command": ["python", "-m", "loopline_training.job"],
                            "args": [
                                "--job-id", job_id, "--spec-env", "LOOPLINE_TRAINING_JOB_SPEC",
                                "--work-dir", "/tmp/job",  # noqa: S108 - the pod's own emptyDir "--result-file", TERMINATION_LOG,
                            ],
                            "env": env,
                            "resources": {
                                "requests": {"cpu": template.cpu_request, "memory": template.memory_request},
                                "limits": {"cpu": template.cpu_limit, "memory": template.memory_limit},
                            },
                            "terminationMessagePath": TERMINATION_LOG,
                            "terminationMessagePolicy": "FallbackToLogsOnError",
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "readOnlyRootFilesystem": True,
                                "capabilities": {"drop": ["ALL"]},
                            },
                            "volumeMounts": [{"name": "scratch", "mountPath": "/tmp"}],  # noqa: S108 - an emptyDir
                        }
                    ],
                    "volumes": [{"name": "scratch", "emptyDir": {}}],
                },
            },
        },
    }
