"""Alert rules and dashboards, checked with promtool (Debian's `prometheus` package): the rules parse,
every alert has unit tests that fire it and keep it quiet, and every dashboard query parses."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from scripts import dashboards
from tests.deploy.k8s import CHART, render

PROMTOOL = shutil.which("promtool")
UNIT_TESTS = Path(__file__).resolve().parent / "rules" / "alerts.test.yaml"
# Grafana's variables, replaced by values PromQL accepts before parsing.
GRAFANA_VARS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}


def _promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL, "promtool is not installed (Debian package `prometheus`; .ci/run installs it)"
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def _rules(value_set: str = "default") -> dict[str, Any]:
    rule = next(o for o in render(value_set) if o["kind"] == "PrometheusRule")
    return {"groups": rule["spec"]["groups"]}


def _alert_names(rules: dict[str, Any]) -> set[str]:
    return {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}


@pytest.mark.parametrize("value_set", ["default", "production", "gitops-production"])
def test_rules_pass_promtool_check(value_set: str, tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(_rules(value_set), sort_keys=False))
    result = _promtool("check", "rules", "rules.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_is_unit_tested_firing_and_quiet() -> None:
    tests = yaml.safe_load(UNIT_TESTS.read_text())["tests"]
    firing: set[str] = set()
    quiet: set[str] = set()
    for group in tests:
        series = [s["series"] for s in group["input_series"]]
        for case in group["alert_rule_test"]:
            if case["exp_alerts"]:
                firing.add(case["alertname"])
                # The group holds series that must not raise it: more series than expected alerts.
                assert len(series) > len(case["exp_alerts"]), case["alertname"]
            else:
                quiet.add(case["alertname"])
    assert firing == _alert_names(_rules())
    # And an explicit case where it must not fire (too early for its `for`, or within its limit).
    assert quiet >= firing, sorted(firing - quiet)


def test_promtool_unit_tests_pass(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(_rules(), sort_keys=False))
    shutil.copy(UNIT_TESTS, tmp_path / UNIT_TESTS.name)
    result = _promtool("test", "rules", UNIT_TESTS.name, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_unit_tests_catch_a_wrong_threshold(tmp_path: Path) -> None:
    """The unit tests can fail: with a freshness limit of 2 hours the stale view no longer fires."""
    rules = _rules()
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == "LooplineFeatureStale":
                rule["expr"] = rule["expr"].replace("> 3600", "> 7200")
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules, sort_keys=False))
    shutil.copy(UNIT_TESTS, tmp_path / UNIT_TESTS.name)
    result = _promtool("test", "rules", UNIT_TESTS.name, cwd=tmp_path)
    assert result.returncode != 0
    assert "LooplineFeatureStale" in result.stdout + result.stderr


def test_dashboards_are_generated_from_their_spec() -> None:
    for name, text in dashboards.generate().items():
        path = CHART / "dashboards" / name
        assert path.exists() and path.read_text() == text, f"{path} is stale: run `make dashboards`"
    assert {p.name for p in (CHART / "dashboards").glob("*.json")} == set(dashboards.generate())


def dashboard_queries() -> list[tuple[str, str, str]]:
    """(dashboard, panel, expr) for every query of every dashboard, Grafana variables substituted."""
    out = []
    for path in sorted((CHART / "dashboards").glob("*.json")):
        board = json.loads(path.read_text())
        variables = [v for v in board["templating"]["list"] if v["type"] == "query"]
        queries = [("variable " + v["name"], v["definition"]) for v in variables]
        queries += [(p["title"], t["expr"]) for p in board["panels"] for t in p.get("targets", [])]
        for title, expr in queries:
            out.append((path.stem, title, _substitute(expr)))
    return out


def _substitute(expr: str) -> str:
    # label_values(metric, label) is Grafana's, not PromQL: its selector is what must parse.
    match = re.fullmatch(r"label_values\((.+), *(\w+)\)", expr)
    if match:
        expr = f"count by ({match.group(2)}) ({match.group(1)})"
    for var, value in GRAFANA_VARS.items():
        expr = expr.replace(var, value)
    return re.sub(r"\$(\w+)", ".*", expr)


def test_every_dashboard_query_parses(tmp_path: Path) -> None:
    queries = dashboard_queries()
    assert len(queries) > 50
    rules = {"groups": [{"name": "dashboards", "rules": [
        {"record": f"dashboard:query:{i}", "expr": expr} for i, (_, _, expr) in enumerate(queries)
    ]}]}
    (tmp_path / "queries.yaml").write_text(yaml.safe_dump(rules, sort_keys=False))
    result = _promtool("check", "rules", "queries.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rejects_a_broken_query(tmp_path: Path) -> None:
    rules = {"groups": [{"name": "x", "rules": [{"record": "x:y", "expr": "sum by (model (rate(x[5m]))"}]}]}
    (tmp_path / "broken.yaml").write_text(yaml.safe_dump(rules))
    assert _promtool("check", "rules", "broken.yaml", cwd=tmp_path).returncode != 0
