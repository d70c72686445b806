"""The chart and skaffold.yaml, checked offline with the real helm CLI and upstream schemas."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.helpers import REPO

CHART = REPO / "charts" / "loopline"
SCHEMAS = REPO.parent / "shared" / "k8s-schemas"
HELM = shutil.which("helm") or str(Path(sys.executable).parent / "helm")


def _helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([HELM, *args], capture_output=True, text=True, timeout=120)


def test_helm_is_the_real_cli() -> None:
    version = _helm("version", "--short")
    assert version.returncode == 0
    assert version.stdout.startswith(("v3.", "v4."))


def test_chart_lints_strictly_and_renders() -> None:
    lint = _helm("lint", "--strict", str(CHART))
    assert lint.returncode == 0, lint.stdout + lint.stderr
    rendered = _helm("template", "demo", str(CHART), "--namespace", "ml", "--set", "image.tag=1.2.3")
    assert rendered.returncode == 0, rendered.stderr


def test_values_schema_rejects_bad_values() -> None:
    bad_policy = _helm("template", "demo", str(CHART), "--set", "image.pullPolicy=Sometimes")
    assert bad_policy.returncode != 0
    assert "pullPolicy" in bad_policy.stderr
    unknown_key = _helm("template", "demo", str(CHART), "--set", "replicaCount=3")
    assert unknown_key.returncode != 0
    root = _helm("template", "demo", str(CHART), "--set", "podSecurityContext.runAsNonRoot=false")
    assert root.returncode != 0


def test_skaffold_config_matches_the_upstream_schema() -> None:
    schema_file = SCHEMAS / "skaffold-v4beta14.json"
    if not schema_file.exists():
        pytest.skip(f"{schema_file} is not here (a clone without ../shared): schema check not run")
    schema = json.loads(schema_file.read_text())
    config = yaml.safe_load((REPO / "skaffold.yaml").read_text())
    jsonschema.Draft7Validator(schema).validate(config)
    assert config["apiVersion"] == "skaffold/v4beta14"
