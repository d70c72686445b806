"""skaffold.yaml, checked without a skaffold binary (none runs here): against skaffold's v4beta14 JSON
schema, for an artifact per service Dockerfile, and by rendering the chart the way each profile deploys it."""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonschema
import pytest
import yaml

from tests.deploy.k8s import helm, require_schemas
from tests.helpers import REPO

CONFIG = yaml.safe_load((REPO / "skaffold.yaml").read_text())
SERVICES = ("registry", "features", "monitoring", "inference", "training", "rollout")


def test_skaffold_config_matches_the_upstream_schema() -> None:
    schema = json.loads((require_schemas() / "skaffold-v4beta14.json").read_text())
    jsonschema.Draft7Validator(schema).validate(CONFIG)
    assert CONFIG["apiVersion"] == "skaffold/v4beta14"


def test_the_schema_check_rejects_a_misspelt_key() -> None:
    schema = json.loads((require_schemas() / "skaffold-v4beta14.json").read_text())
    bad = copy.deepcopy(CONFIG)
    bad["build"]["artifacts"][0]["dockerfile"] = "x"  # belongs under docker:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(schema).validate(bad)


def test_every_service_image_is_built_from_the_repository_root_and_fed_to_the_chart() -> None:
    artifacts = {a["image"]: a for a in CONFIG["build"]["artifacts"]}
    assert set(artifacts) == {f"loopline-{s}" for s in SERVICES}
    dockerfiles = {p.parent.name for p in (REPO / "services").glob("*/Dockerfile")}
    for service in SERVICES:
        artifact = artifacts[f"loopline-{service}"]
        assert artifact["context"] == "."
        assert artifact["docker"]["dockerfile"] == f"services/{service}/Dockerfile"
        assert service in dockerfiles, f"services/{service}/Dockerfile is missing"
    templates = CONFIG["deploy"]["helm"]["releases"][0]["setValueTemplates"]
    assert templates == {f"image.overrides.{s}": f"{{{{.IMAGE_FULLY_QUALIFIED_loopline_{s}}}}}" for s in SERVICES}


def _apply(config: dict[str, Any], profile: str) -> dict[str, Any]:
    """skaffold's JSON-patch profiles (add/replace on object keys and list indexes)."""
    out = copy.deepcopy(config)
    spec = next(p for p in config["profiles"] if p["name"] == profile)
    for patch in spec.get("patches", []):
        assert patch["op"] in ("add", "replace")
        *parents, last = patch["path"].strip("/").split("/")
        node: Any = out
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if patch["op"] == "replace":
            assert last in node, patch["path"]
        node[last] = patch["value"]
    return out


@pytest.mark.parametrize("profile", ["dev", "raw", "serverless"])
def test_each_profile_deploys_a_chart_that_renders(profile: str) -> None:
    release = _apply(CONFIG, profile)["deploy"]["helm"]["releases"][0]
    args = ["template", release["name"], str(REPO / release["chartPath"]), "--namespace", release["namespace"]]
    for f in release.get("valuesFiles", []):
        args += ["-f", str(REPO / f)]
    for key, value in release.get("setValues", {}).items():
        args += ["--set", f"{key}={value}"]
    for key in release["setValueTemplates"]:  # what skaffold fills in: the built image references
        args += ["--set", f"{key}=registry.local/{key.split('.')[-1]}:dev"]
    rendered = helm(*args)
    assert rendered.returncode == 0, rendered.stderr
    docs = [d for d in yaml.safe_load_all(rendered.stdout) if d]
    deployments = [d for d in docs if d["kind"] == "Deployment"]
    images = {c["image"] for d in deployments for c in d["spec"]["template"]["spec"]["containers"]}
    assert "registry.local/registry:dev" in images and "registry.local/rollout:dev" in images
    isvc = next(d for d in docs if d["kind"] == "InferenceService")
    expected = "Serverless" if profile == "serverless" else "RawDeployment"
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == expected
