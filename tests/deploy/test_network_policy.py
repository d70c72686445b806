"""What the chart's NetworkPolicies let through, evaluated the way the Kubernetes API defines them: a pod
selected by a policy of a type (Ingress, Egress) takes only the traffic some rule of such a policy
allows; a rule with no `ports` allows every port, one with no `from`/`to` every peer. Every pair of
Loopline pods and every API port is checked against the call graph the services really have: each call
a service makes is let through both ends, and nothing else within the namespace is. No cluster (and no
CNI) enforces anything here; this is the policy text, evaluated."""

from __future__ import annotations

import functools
import importlib.util
import sys
from typing import Any

import pytest

from tests.deploy.k8s import render
from tests.helpers import REPO

# Who calls whose API: the services' own clients, by their settings (`*_TARGET`, `*_ADDRESS`, MLflow's
# URI). Inference is open to every client (production callers come from anywhere), so it is not listed as
# a callee; the training API's callers are people and CI (the CLI, the SDK), admitted as `apiClients`.
CALLS = {
    ("inference", "registry", "grpc"), ("inference", "features", "grpc"),
    ("monitoring", "registry", "grpc"), ("monitoring", "features", "grpc"),
    ("training", "features", "grpc"),  # feature services checked at submit; its jobs register, not it
    ("training-job", "registry", "grpc"), ("training-job", "features", "grpc"), ("training-job", "mlflow", "http"),
    ("rollout", "registry", "grpc"), ("rollout", "monitoring", "grpc"), ("rollout", "inference", "grpc"),
    ("registry", "mlflow", "http"),
}
OPEN_TO_ALL = {"inference"}
RELEASE = "demo"  # the release name tests/deploy/k8s.py renders with


@functools.cache
def _job_pod_labels() -> dict[str, str]:
    """The labels the training service puts on its Jobs' pods (its own module, loaded by path: the
    training service has its own environment)."""
    path = REPO / "services" / "training" / "loopline_training" / "runners" / "manifest.py"
    spec = importlib.util.spec_from_file_location("_training_manifest", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    template = module.JobTemplate(namespace="loopline", image="img", service_account="sa", cpu_request="1",
                                  cpu_limit="1", memory_request="1Gi", memory_limit="1Gi", backoff_limit=0,
                                  ttl_seconds_after_finished=60, active_deadline_seconds=60, env={},
                                  token_secret="registry-token-secret-name",  # noqa: S106 - a Secret's name
                                  instance=RELEASE)
    manifest = module.job_manifest(job_id="0" * 32, model_name="fraud", family="lightgbm", spec_json="{}",
                                   template=template)
    labels: dict[str, str] = manifest["spec"]["template"]["metadata"]["labels"]
    return labels


def _selects(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    selector = selector or {}
    assert not selector.get("matchExpressions"), "the evaluator reads matchLabels only"
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def _peer_in_namespace(peer: dict[str, Any], labels: dict[str, str]) -> bool:
    """A peer entry matching a pod of the release's own namespace (a namespaceSelector or ipBlock entry
    names other namespaces or addresses)."""
    if "ipBlock" in peer or "namespaceSelector" in peer:
        return False
    return _selects(peer.get("podSelector"), labels)


def _port(rule: dict[str, Any], port: int) -> bool:
    ports = rule.get("ports")
    return not ports or any(p.get("port") == port and p.get("protocol", "TCP") == "TCP" for p in ports)


def _types(policy: dict[str, Any]) -> list[str]:
    spec = policy["spec"]
    return spec.get("policyTypes") or (["Ingress", "Egress"] if "egress" in spec else ["Ingress"])


def allowed(policies: list[dict[str, Any]], src: dict[str, str], dst: dict[str, str], port: int) -> bool:
    ingress = [p for p in policies if "Ingress" in _types(p) and _selects(p["spec"]["podSelector"], dst)]
    if ingress and not any(
        _port(rule, port) and ("from" not in rule or any(_peer_in_namespace(x, src) for x in rule["from"]))
        for p in ingress for rule in p["spec"].get("ingress") or []
    ):
        return False
    egress = [p for p in policies if "Egress" in _types(p) and _selects(p["spec"]["podSelector"], src)]
    return not egress or any(
        _port(rule, port) and ("to" not in rule or any(_peer_in_namespace(x, dst) for x in rule["to"]))
        for p in egress for rule in p["spec"].get("egress") or []
    )


def _pods_and_ports(objs: list[dict[str, Any]]) -> tuple[dict[str, dict[str, str]], dict[str, dict[str, int]]]:
    """Pod labels per component, and each component's API ports by name (from its containers)."""
    pods: dict[str, dict[str, str]] = {}
    ports: dict[str, dict[str, int]] = {}
    for o in objs:
        if o["kind"] == "Deployment":
            labels, pod = o["spec"]["template"]["metadata"]["labels"], o["spec"]["template"]["spec"]
            containers = pod["containers"]
        elif o["kind"] == "InferenceService":
            labels, predictor = o["spec"]["predictor"]["labels"], o["spec"]["predictor"]
            containers = [predictor["model"]] if "model" in predictor else predictor["containers"]
        else:
            continue
        component = labels["app.kubernetes.io/name"].removeprefix("loopline-")
        pods.setdefault(component, labels)  # a second InferenceService (the stable track) is the same component
        ports[component] = {p["name"]: p["containerPort"] for c in containers for p in c.get("ports", [])
                            if p["name"] in ("http", "grpc")}
    pods["training-job"] = _job_pod_labels()
    return pods, ports


@pytest.mark.parametrize("value_set", ["default", "production", "serverless-canary"])
def test_network_policies_let_through_exactly_the_calls_the_services_make(value_set: str) -> None:
    objs = render(value_set)
    policies = [o for o in objs if o["kind"] == "NetworkPolicy"]
    pods, ports = _pods_and_ports(objs)
    assert {"inference", "registry", "features", "monitoring", "training", "rollout", "mlflow"} <= set(pods)
    missing, extra = [], []
    for src, src_labels in pods.items():
        for dst, dst_labels in pods.items():
            if src == dst:
                continue
            for name, port in ports.get(dst, {}).items():
                expected = (src, dst, name) in CALLS or dst in OPEN_TO_ALL
                got = allowed(policies, src_labels, dst_labels, port)
                if expected and not got:
                    missing.append(f"{src} -> {dst}:{name}({port})")
                elif got and not expected:
                    extra.append(f"{src} -> {dst}:{name}({port})")
    assert not missing, f"{value_set}: calls the policies block: {missing}"
    # Another release's training Jobs in the namespace reach nothing of this release.
    other_release = {**pods["training-job"], "app.kubernetes.io/instance": "other"}
    for dst in ("registry", "features", "mlflow"):
        port = ports[dst]["grpc" if dst != "mlflow" else "http"]
        assert not allowed(policies, other_release, pods[dst], port), dst
    assert not extra, f"{value_set}: traffic the policies let through that no service makes: {extra}"


def test_the_evaluator_blocks_and_allows_as_the_api_defines() -> None:
    a, b = {"app": "a"}, {"app": "b"}
    deny_b = {"spec": {"podSelector": {"matchLabels": b}, "policyTypes": ["Ingress"], "ingress": []}}
    from_a = {"spec": {"podSelector": {"matchLabels": b}, "policyTypes": ["Ingress"],
                       "ingress": [{"from": [{"podSelector": {"matchLabels": a}}], "ports": [{"port": 80}]}]}}
    a_egress_none = {"spec": {"podSelector": {"matchLabels": a}, "policyTypes": ["Egress"], "egress": []}}
    assert allowed([], a, b, 80)  # no policy: everything
    assert not allowed([deny_b], a, b, 80)
    assert allowed([deny_b, from_a], a, b, 80) and not allowed([from_a], a, b, 81) and not allowed([from_a], b, b, 80)
    assert not allowed([from_a, a_egress_none], a, b, 80)  # both ends must allow
