"""Offline Kubernetes tooling for the deployment tests: the real helm CLI, rendered value sets, and
validators for built-in kinds (kubernetes-validate) and custom resources (upstream CRD schemas)."""

from __future__ import annotations

import copy
import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from tests.helpers import REPO, absent

CHART = REPO / "charts" / "loopline"
VALUES = Path(__file__).resolve().parent / "values"
HELM = shutil.which("helm") or str(Path(sys.executable).parent / "helm")
# The value sets every check runs over: name -> values files (the GitOps environments included).
VALUE_SETS: dict[str, list[Path]] = {
    "default": [],
    "production": [VALUES / "production.yaml"],
    "serverless-canary": [VALUES / "serverless-canary.yaml"],
    "minimal": [VALUES / "minimal.yaml"],
    "dev": [CHART / "ci" / "dev-values.yaml"],
    "gitops-staging": [REPO / "manifests" / "gitops" / "environments" / "staging" / "values.yaml"],
    "gitops-production": [REPO / "manifests" / "gitops" / "environments" / "production" / "values.yaml"],
}
# Oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest kubernetes-validate knows:
# an API removed in between fails the newer one, a too-new API the older one.
KUBE_VERSIONS = ("1.29", "1.37")
# Kinds of the CRDs ../shared/k8s-schemas holds: (apiVersion, kind) -> file.
CRD_FILES = {
    ("serving.kserve.io/v1beta1", "InferenceService"): "kserve-serving.kserve.io_inferenceservices.yaml",
    ("serving.kserve.io/v1alpha1", "ServingRuntime"): "kserve-serving.kserve.io_servingruntimes.yaml",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "prometheus-operator-monitoring.coreos.com_servicemonitors.yaml",
    ("monitoring.coreos.com/v1", "PodMonitor"): "prometheus-operator-monitoring.coreos.com_podmonitors.yaml",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheus-operator-monitoring.coreos.com_prometheusrules.yaml",
}
# Custom resources the chart can render whose CRDs are NOT in ../shared/k8s-schemas (Strimzi, KEDA,
# Gateway API, Argo CD): checked against the fields their upstream docs require, and reported as such.
NO_UPSTREAM_SCHEMA = {
    ("kafka.strimzi.io/v1beta2", "KafkaTopic"),
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("gateway.networking.k8s.io/v1", "HTTPRoute"),
    ("argoproj.io/v1alpha1", "Application"),
}


def schemas_dir() -> Path | None:
    """../shared/k8s-schemas (or $LOOPLINE_K8S_SCHEMAS); None when absent (a fresh clone)."""
    folder = Path(os.environ.get("LOOPLINE_K8S_SCHEMAS", REPO.parent / "shared" / "k8s-schemas"))
    return folder if folder.is_dir() else None


def require_schemas() -> Path:
    folder = schemas_dir()
    if folder is None:
        absent("../shared/k8s-schemas is not here (a clone without it; set LOOPLINE_K8S_SCHEMAS): not run")
    return folder


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([HELM, *args], capture_output=True, text=True, timeout=120)


def template_args(files: list[Path], *sets: str, release: str = "demo", namespace: str = "ml") -> list[str]:
    args = ["template", release, str(CHART), "--namespace", namespace]
    for f in files:
        args += ["-f", str(f)]
    for s in sets:
        args += ["--set", s]
    return args


@functools.cache
def render(value_set: str) -> tuple[dict[str, Any], ...]:
    """Every object `helm template` renders for a value set (hooks and helm tests included)."""
    result = helm(*template_args(VALUE_SETS[value_set]))
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def pod_specs(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """The pod specs an object carries (workloads, helm test pods)."""
    kind = obj["kind"]
    if kind == "Pod":
        return [obj["spec"]]
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        return [obj["spec"]["template"]["spec"]]
    return []


# ---- custom resources ------------------------------------------------------------------------------
def _strict(schema: Any) -> Any:
    """A CRD schema that also rejects unknown fields (the API server would prune them silently, hiding a
    typo): every object with `properties` and no preserve-unknown-fields gets additionalProperties false."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items() if not k.startswith("x-kubernetes-")}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@functools.cache
def crd_validator(folder: Path, api_version: str, kind: str) -> jsonschema.Draft7Validator:
    crd = yaml.safe_load((folder / CRD_FILES[(api_version, kind)]).read_text())
    version = api_version.split("/")[1]
    served = [v for v in crd["spec"]["versions"] if v["name"] == version and v.get("served")]
    assert served, f"{api_version} {kind} is not a served version of its CRD"
    schema = copy.deepcopy(served[0]["schema"]["openAPIV3Schema"])
    strict = _strict(schema)
    # metadata follows the API server's ObjectMeta rules, not the CRD's schema.
    strict["properties"]["metadata"] = {"type": "object"}
    return jsonschema.Draft7Validator(strict)
