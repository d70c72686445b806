"""The chart, checked offline: the real helm CLI over several value sets, every rendered object against
the Kubernetes schemas (kubernetes-validate, strict) or its upstream CRD schema, the values schema, and
the deployment policy (limits, probes, hardening, NetworkPolicy and PDB per workload, no secrets)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import kubernetes_validate
import pytest
import yaml

from loopline_common.topics import TOPICS
from tests.deploy.k8s import (
    CHART,
    CRD_FILES,
    KUBE_VERSIONS,
    NO_UPSTREAM_SCHEMA,
    VALUE_SETS,
    crd_validator,
    helm,
    pod_specs,
    render,
    require_schemas,
    template_args,
)
from tests.helpers import REPO

SETS = list(VALUE_SETS)
SERVICES = ("registry", "features", "monitoring", "training", "rollout")


def test_helm_is_the_real_cli() -> None:
    version = helm("version", "--short")
    assert version.returncode == 0
    assert version.stdout.startswith(("v3.", "v4."))


@pytest.mark.parametrize("value_set", SETS)
def test_chart_lints_strictly(value_set: str) -> None:
    args = ["lint", "--strict", str(CHART)]
    for f in VALUE_SETS[value_set]:
        args += ["-f", str(f)]
    lint = helm(*args)
    assert lint.returncode == 0, lint.stdout + lint.stderr


@pytest.mark.parametrize("value_set", SETS)
def test_every_builtin_object_matches_the_kubernetes_schemas(value_set: str) -> None:
    """Strict: an unknown field, a missing schema (unknown kind) or an API removed by 1.37 fails."""
    checked = 0
    for obj in render(value_set):
        key = (obj["apiVersion"], obj["kind"])
        if key in CRD_FILES or key in NO_UPSTREAM_SCHEMA:
            continue
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except (kubernetes_validate.ValidationError, kubernetes_validate.SchemaNotFoundError) as exc:
                raise AssertionError(f"{value_set}: {key} {obj['metadata']['name']} on {version}: {exc}") from None
        checked += 1
    assert checked > 0


@pytest.mark.parametrize("value_set", SETS)
def test_every_custom_resource_matches_its_crd(value_set: str) -> None:
    folder = require_schemas()
    for obj in render(value_set):
        key = (obj["apiVersion"], obj["kind"])
        if key in CRD_FILES:
            errors = sorted(crd_validator(folder, *key).iter_errors(obj), key=lambda e: list(e.absolute_path))
            assert not errors, f"{key} {obj['metadata']['name']}: " + "; ".join(
                f"{list(e.absolute_path)}: {e.message}" for e in errors[:5]
            )
        elif key in NO_UPSTREAM_SCHEMA:
            _check_without_crd(obj)


def _check_without_crd(obj: dict[str, Any]) -> None:
    """What upstream documents as required, for the kinds whose CRD is not in ../shared/k8s-schemas."""
    spec = obj["spec"]
    kind = obj["kind"]
    if kind == "KafkaTopic":
        assert obj["metadata"]["labels"]["strimzi.io/cluster"]
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", obj["metadata"]["name"])
        assert spec["topicName"] and spec["partitions"] >= 1 and spec["replicas"] >= 1
        assert all(isinstance(v, str | int) for v in spec.get("config", {}).values())
    elif kind == "ScaledObject":
        assert spec["scaleTargetRef"]["name"] and spec["maxReplicaCount"] >= spec["minReplicaCount"]
        for trigger in spec["triggers"]:
            assert trigger["type"] == "kafka"
            assert {"bootstrapServers", "consumerGroup", "topic", "lagThreshold"} <= set(trigger["metadata"])
            assert all(isinstance(v, str) for v in trigger["metadata"].values())
    elif kind == "HTTPRoute":
        assert spec["parentRefs"] and spec["rules"]
        for rule in spec["rules"]:
            assert sum(ref["weight"] for ref in rule["backendRefs"]) == 100
            assert all(0 <= ref["weight"] <= 1_000_000 for ref in rule["backendRefs"])
    else:
        raise AssertionError(f"no check for {kind}")


# ---- values schema ---------------------------------------------------------------------------------
BAD_VALUES = [
    ("image.pullPolicy=Sometimes", "pullPolicy"),
    ("replicaCount=3", "replicaCount"),
    ("podSecurityContext.runAsNonRoot=false", "runAsNonRoot"),
    ("containerSecurityContext.readOnlyRootFilesystem=false", "readOnlyRootFilesystem"),
    ("containerSecurityContext.allowPrivilegeEscalation=true", "allowPrivilegeEscalation"),
    ("inference.deploymentMode=Knative", "deploymentMode"),
    ("inference.canary.trafficPercent=120", "trafficPercent"),
    ("inference.model.version=latest", "version"),
    ("observability.slos.latency.thresholdSeconds=0.3", "thresholdSeconds"),
    ("observability.slos.availability.objective=100", "objective"),
    ("registry.storeUrl.existingSecret=", "existingSecret"),
    ("registry.password=hunter2", "password"),
    ("registry.env.DB_PASSWORD=hunter2", "DB_PASSWORD"),
    ("training.env.REGISTRY_TOKEN=abc", "REGISTRY_TOKEN"),
    ("features.keda.enabled=true", "features"),  # KEDA and the chart's HPA both on
    ("kafka.bootstrap=no-port", "bootstrap"),
    ("mlflow.enabled=false", "externalUri"),
    ("registry.resources.limits=null", "limits"),
    ("rollout.actuator=kserve", "deploymentMode Serverless"),  # KServe's canary exists only in Serverless
]


@pytest.mark.parametrize(("setting", "named"), BAD_VALUES)
def test_values_schema_rejects_bad_values(setting: str, named: str) -> None:
    result = helm(*template_args([], setting))
    assert result.returncode != 0, f"{setting} was accepted"
    assert named in result.stderr, result.stderr


def test_values_schema_accepts_the_documented_switches() -> None:
    for sets in (
        ["features.keda.enabled=true", "features.autoscaling.enabled=false"],
        ["mlflow.enabled=false", "mlflow.externalUri=http://mlflow:5000"],
        ["inference.model.version=9", "inference.canary.trafficPercent=50"],
        ["registry.pdb.minAvailable=1"],
    ):
        result = helm(*template_args([], *sets))
        assert result.returncode == 0, (sets, result.stderr)


# ---- policy ----------------------------------------------------------------------------------------
def _containers(value_set: str) -> Iterator[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]]:
    """(object, pod spec or None-equivalent, container) for every container the chart renders, including
    the KServe ServingRuntime's and the InferenceService's model container."""
    for obj in render(value_set):
        for spec in pod_specs(obj):
            for c in spec.get("containers", []) + spec.get("initContainers", []):
                yield obj, spec, c
        if obj["kind"] == "ServingRuntime":
            for c in obj["spec"]["containers"]:
                yield obj, {}, c
        if obj["kind"] == "InferenceService":
            yield obj, obj["spec"]["predictor"], obj["spec"]["predictor"]["model"]


def _hardened(ctx: dict[str, Any]) -> bool:
    return (
        ctx.get("allowPrivilegeEscalation") is False
        and ctx.get("readOnlyRootFilesystem") is True
        and ctx.get("runAsNonRoot") is True
        and ctx.get("capabilities", {}).get("drop") == ["ALL"]
        and not ctx.get("privileged", False)
    )


@pytest.mark.parametrize("value_set", SETS)
def test_every_container_has_limits_probes_and_a_hardened_security_context(value_set: str) -> None:
    seen = 0
    for obj, pod, c in _containers(value_set):
        where = f"{value_set}: {obj['kind']} {obj['metadata']['name']} container {c.get('name', 'model')}"
        assert _hardened(c["securityContext"]), where
        assert {"cpu", "memory"} <= set(c["resources"]["limits"]), where
        assert {"cpu", "memory"} <= set(c["resources"]["requests"]), where
        # The model container inherits the runtime's probes; a helm test pod runs once and exits.
        if obj["kind"] not in ("InferenceService", "Pod"):
            assert {"startupProbe", "livenessProbe", "readinessProbe"} <= set(c), where
        if obj["kind"] != "ServingRuntime":
            psc = pod["securityContext"]
            assert psc["runAsNonRoot"] is True and psc["seccompProfile"]["type"] == "RuntimeDefault", where
        seen += 1
    assert seen > 0


def test_grpc_services_use_native_grpc_probes() -> None:
    for obj in render("default"):
        if obj["kind"] == "Deployment" and obj["metadata"]["name"].removeprefix("demo-") in SERVICES:
            c = obj["spec"]["template"]["spec"]["containers"][0]
            grpc_port = next(p["containerPort"] for p in c["ports"] if p["name"] == "grpc")
            assert c["livenessProbe"]["grpc"] == {"port": grpc_port, "service": "liveness"}
            assert c["startupProbe"]["grpc"] == {"port": grpc_port, "service": "liveness"}
            assert c["readinessProbe"]["grpc"] == {"port": grpc_port}


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


@pytest.mark.parametrize("value_set", [s for s in SETS if s != "minimal"])
def test_every_workload_has_a_network_policy_and_a_pdb(value_set: str) -> None:
    objs = render(value_set)
    policies = [o["spec"]["podSelector"].get("matchLabels", {}) for o in objs if o["kind"] == "NetworkPolicy"]
    pdbs = [o["spec"]["selector"]["matchLabels"] for o in objs if o["kind"] == "PodDisruptionBudget"]
    workloads: list[tuple[str, dict[str, str]]] = []
    for o in objs:
        if o["kind"] == "Deployment":
            workloads.append((o["metadata"]["name"], o["spec"]["template"]["metadata"]["labels"]))
        elif o["kind"] == "InferenceService":
            workloads.append((o["metadata"]["name"], o["spec"]["predictor"]["labels"]))
    assert workloads
    for name, labels in workloads:
        assert any(_selects(p, labels) for p in policies), f"{value_set}: no NetworkPolicy selects {name}"
        assert any(_selects(p, labels) for p in pdbs), f"{value_set}: no PDB selects {name}"
    # Training Jobs (made at run time by the training service) have their own policy.
    job_labels = {"app.kubernetes.io/name": "loopline-training", "app.kubernetes.io/component": "training-job",
                  "app.kubernetes.io/instance": "demo"}
    assert any(_selects(p, job_labels) for p in policies)


@pytest.mark.parametrize("value_set", SETS)
def test_autoscaled_workloads_leave_replicas_out(value_set: str) -> None:
    objs = render(value_set)
    hpa_targets = {o["spec"]["scaleTargetRef"]["name"] for o in objs if o["kind"] == "HorizontalPodAutoscaler"}
    keda_targets = {o["spec"]["scaleTargetRef"]["name"] for o in objs if o["kind"] == "ScaledObject"}
    assert not hpa_targets & keda_targets
    for o in objs:
        if o["kind"] == "Deployment":
            scaled = o["metadata"]["name"] in hpa_targets | keda_targets
            assert ("replicas" in o["spec"]) != scaled, o["metadata"]["name"]


_SECRETISH = re.compile(r"(PASSWORD|TOKEN$|SECRET$|ACCESS_KEY|SECRET_KEY|CREDENTIAL|STORE_URL$|STORE_URI$|REDIS$)")


@pytest.mark.parametrize("value_set", SETS)
def test_no_secret_is_rendered_from_values(value_set: str) -> None:
    assert not [o for o in render(value_set) if o["kind"] == "Secret"], "the chart never renders a Secret"
    checked = 0
    for _, _, c in _containers(value_set):
        for env in c.get("env", []):
            if _SECRETISH.search(env["name"]) and not env["name"].endswith(("_TOKEN_SECRET", "_FILE")):
                assert "valueFrom" in env and "value" not in env, f"{env['name']} carries a plain value"
                checked += 1
    assert checked > 0


def test_values_file_holds_no_credential() -> None:
    values = (CHART / "values.yaml").read_text()
    data = yaml.safe_load(values)

    def walk(node: Any, path: str) -> Iterator[tuple[str, Any]]:
        if isinstance(node, dict):
            for k, v in node.items():
                yield from walk(v, f"{path}.{k}")
        else:
            yield path, node

    for path, value in walk(data, ""):
        leaf = path.rsplit(".", 1)[-1].lower()
        if any(word in leaf for word in ("password", "token", "secretkey", "accesskey", "credential")):
            raise AssertionError(f"{path} looks like a credential in values.yaml")
        if isinstance(value, str):
            assert not re.search(r"://[^/\s:@]+:[^/\s@]+@", value), f"{path} holds a URL with a password"


# ---- coherence -------------------------------------------------------------------------------------
def test_kafka_topics_mirror_the_topic_table() -> None:
    objs = render("production")
    topics = {o["spec"]["topicName"] for o in objs if o["kind"] == "KafkaTopic"}
    assert topics == set(TOPICS) | {t + ".dlq" for t in TOPICS}


def test_raw_canary_is_a_second_inference_service_with_its_own_hpa_and_weighted_route() -> None:
    """RawDeployment at inference.canary.trafficPercent 10: model.version (v8) on the main InferenceService
    takes 10%, a stable one serving the champion alias takes 90%, each with its own HPA and PDB."""
    objs = render("production")
    isvcs = {o["metadata"]["name"]: o for o in objs if o["kind"] == "InferenceService"}
    assert set(isvcs) == {"demo-fraud", "demo-fraud-stable"}
    for isvc in isvcs.values():
        assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "RawDeployment"
        assert isvc["metadata"]["annotations"]["serving.kserve.io/autoscalerClass"] == "external"
        assert "canaryTrafficPercent" not in isvc["spec"]["predictor"]
    env = {n: {e["name"]: e.get("value") for e in i["spec"]["predictor"]["model"]["env"]} for n, i in isvcs.items()}
    assert (env["demo-fraud"]["LOOPLINE_INFERENCE_MODEL"], env["demo-fraud"]["LOOPLINE_INFERENCE_TRACK"]) == (
        "models:/fraud/8", "challenger")
    stable = env["demo-fraud-stable"]
    assert (stable["LOOPLINE_INFERENCE_MODEL"], stable["LOOPLINE_INFERENCE_TRACK"]) == ("fraud@champion", "champion")
    hpas = {o["spec"]["scaleTargetRef"]["name"] for o in objs if o["kind"] == "HorizontalPodAutoscaler"}
    assert {"demo-fraud-predictor", "demo-fraud-stable-predictor"} <= hpas
    selectors = [o["spec"]["selector"]["matchLabels"] for o in objs if o["kind"] == "PodDisruptionBudget"]
    assert {"champion", "challenger"} <= {labels.get("loopline.dev/track") for labels in selectors}
    route = next(o for o in objs if o["kind"] == "HTTPRoute")
    weights = {b["name"]: b["weight"] for b in route["spec"]["rules"][0]["backendRefs"]}
    assert weights == {"demo-fraud-predictor": 10, "demo-fraud-stable-predictor": 90}


def test_without_a_canary_one_inference_service_takes_all_traffic() -> None:
    objs = render("gitops-production")
    isvcs = [o for o in objs if o["kind"] == "InferenceService"]
    assert [i["metadata"]["name"] for i in isvcs] == ["demo-fraud"]
    route = next(o for o in objs if o["kind"] == "HTTPRoute")
    assert route["spec"]["rules"][0]["backendRefs"] == [{"name": "demo-fraud-predictor", "port": 80, "weight": 100}]


def test_serverless_canary_uses_canary_traffic_percent_and_knative_autoscaling() -> None:
    objs = render("serverless-canary")
    isvcs = [o for o in objs if o["kind"] == "InferenceService"]
    assert len(isvcs) == 1
    predictor = isvcs[0]["spec"]["predictor"]
    assert isvcs[0]["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Serverless"
    assert predictor["canaryTrafficPercent"] == 20
    assert (predictor["scaleMetric"], predictor["scaleTarget"]) == ("concurrency", 20)
    assert predictor["model"]["storageUri"] == "s3://ml-models/fraud/8/"
    assert not any(o["kind"] == "HTTPRoute" for o in objs)
    assert not any(o["kind"] == "HorizontalPodAutoscaler" and "fraud" in o["metadata"]["name"] for o in objs)
    # The rollout controller's kserve actuator patches this InferenceService with the same URI template.
    rollout = next(o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"] == "demo-rollout")
    env = {e["name"]: e.get("value") for e in rollout["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["LOOPLINE_ROLLOUT_ACTUATOR"] == "kserve"
    assert env["LOOPLINE_ROLLOUT_KSERVE_STORAGE_URI"] == "s3://ml-models/{model}/{version}/"
    assert env["LOOPLINE_ROLLOUT_KSERVE_NAMES"] == '{"fraud":"demo-fraud"}'
    role = next(o for o in objs if o["kind"] == "Role" and o["metadata"]["name"] == "demo-rollout")
    assert role["rules"] == [{"apiGroups": ["serving.kserve.io"], "resources": ["inferenceservices"],
                              "verbs": ["get", "list", "watch", "patch"]}]


def test_training_rbac_is_limited_to_jobs_and_their_pods() -> None:
    roles = [o for o in render("default") if o["kind"] in ("Role", "ClusterRole")]
    assert [r["kind"] for r in roles] == ["Role"]
    rules = {
        (g, r): set(rule["verbs"]) for rule in roles[0]["rules"] for g in rule["apiGroups"] for r in rule["resources"]
    }
    assert rules == {("batch", "jobs"): {"create", "get", "list", "watch", "delete"}, ("", "pods"): {"get", "list"}}


def test_dashboards_ship_as_sidecar_configmaps() -> None:
    maps = [o for o in render("default") if o["kind"] == "ConfigMap"]
    files = sorted(p.name for p in (CHART / "dashboards").glob("*.json"))
    assert sorted(k for m in maps for k in m["data"]) == files
    assert all(m["metadata"]["labels"]["grafana_dashboard"] == "1" for m in maps)


def test_every_alert_links_an_existing_runbook() -> None:
    rule = next(o for o in render("default") if o["kind"] == "PrometheusRule")
    alerts = [r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r]
    assert len(alerts) >= 12
    for alert in alerts:
        url = alert["annotations"]["runbook_url"]
        assert url.endswith(f"/{alert['alert']}.md")
        runbook = REPO / "docs" / "runbooks" / f"{alert['alert']}.md"
        text = runbook.read_text()
        for section in ("## What it means", "## What to check", "## What to do"):
            assert section in text, f"{runbook} lacks {section}"


def test_notes_render() -> None:
    result = helm("install", "demo", str(CHART), "--dry-run=client", "--namespace", "ml")
    assert result.returncode == 0, result.stderr
    assert "helm test demo -n ml" in result.stdout and "creates no Secret" in result.stdout


def test_manifests_are_in_sync_with_the_chart() -> None:
    from scripts.render_manifests import render_all

    for path, text in render_all().items():
        assert path.exists(), f"{path} is missing: run `make manifests`"
        assert path.read_text() == text, f"{path} is stale: run `make manifests`"


def test_gitops_applications_point_at_their_environment_values() -> None:
    apps = sorted((REPO / "manifests" / "gitops" / "applications").glob("*.yaml"))
    assert len(apps) == 2
    for app_file in apps:
        app = yaml.safe_load(app_file.read_text())
        env = app["metadata"]["name"].removeprefix("loopline-")
        source = app["spec"]["source"]
        assert source["path"] == "charts/loopline"
        values = (REPO / source["path"] / source["helm"]["valueFiles"][0]).resolve()
        assert values == (REPO / "manifests" / "gitops" / "environments" / env / "values.yaml").resolve()
        data = yaml.safe_load(values.read_text())
        # The key paths the rollout controller's GitOps actuator edits.
        assert "version" in data["inference"]["model"] and "trafficPercent" in data["inference"]["canary"]
        _check_without_crd_application(app)


def _check_without_crd_application(app: dict[str, Any]) -> None:
    assert (app["apiVersion"], app["kind"]) in NO_UPSTREAM_SCHEMA
    spec = app["spec"]
    assert spec["project"] and spec["destination"]["server"] and spec["destination"]["namespace"]
    assert spec["source"]["repoURL"] and spec["source"]["targetRevision"]


def test_prerequisites_validate() -> None:
    for path in sorted((REPO / "manifests" / "prerequisites").glob("*.yaml")):
        for obj in yaml.safe_load_all(path.read_text()):
            unchecked = NO_UPSTREAM_SCHEMA | {("gateway.networking.k8s.io/v1", "Gateway")}
            if obj and (obj["apiVersion"], obj["kind"]) not in unchecked:
                for version in KUBE_VERSIONS:
                    kubernetes_validate.validate(obj, version, strict=True)
