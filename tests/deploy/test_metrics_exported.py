"""Every metric the alert rules and dashboards name is really exported by a running Loopline service.

The embedded stack (`loopline_cli.stack.Stack`: broker, MLflow and every service in `SERVICES`) is
started once for this module; each service's /metrics is scraped and parsed with prometheus_client.
A labelled metric is listed (HELP/TYPE) before its first sample, so no traffic is needed for the names;
a metric made lazily would be missing here, and that is a finding, not a flake.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from loopline_cli.stack import SERVICES, Ports, Stack
from scripts.dashboards import EXTERNAL_METRICS
from tests.deploy.k8s import render
from tests.deploy.test_rules import dashboard_queries
from tests.helpers import free_port

PRODUCERS = ("registry", "features", "monitoring", "inference", "training", "rollout")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_IDENT = re.compile(r"(?<![\w:.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*[{\[])?")
_NAME_PATTERN = re.compile(r'__name__=~"([^"]+)"')


def _queries() -> list[str]:
    exprs = [expr for _, _, expr in dashboard_queries()]
    for value_set in ("default", "production"):
        rule = next(o for o in render(value_set) if o["kind"] == "PrometheusRule")
        exprs += [r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]]
    return exprs


def referenced() -> tuple[set[str], set[str], set[str], set[str]]:
    """(loopline metric names, other metric names, recording rules used, __name__ patterns)."""
    ours: set[str] = set()
    others: set[str] = set()
    recorded: set[str] = set()
    patterns: set[str] = set()
    for expr in _queries():
        patterns.update(_NAME_PATTERN.findall(expr))
        bare = _STRING.sub('""', expr)
        for name, selector in _IDENT.findall(bare):
            if ":" in name:
                recorded.add(name)
            elif name.startswith("loopline_"):
                ours.add(name)
            elif selector and name not in ("by", "without", "on", "ignoring", "group_left", "group_right"):
                others.add(name)
    return ours, others, recorded, patterns


def _family_names(text: str) -> set[str]:
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        suffixes = {
            "counter": ("_total", "_created"),
            "histogram": ("_bucket", "_sum", "_count", "_created"),
            "summary": ("", "_sum", "_count", "_created"),
        }.get(family.type, ("",))
        names.update(family.name + s for s in suffixes)
    return names


def _free_offset() -> int:
    for _ in range(50):
        offset = free_port() % 20000 + 20000 - 9092
        ports = [p + offset for p in (Ports.kafka, Ports.mlflow, Ports.prometheus)]
        ports += [p + offset for s in SERVICES for p in (s.http_port, s.grpc_port)]
        if max(ports) < 65535 and all(_free(p) for p in ports):
            return offset
    raise RuntimeError("no free port range")


def _free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, set[str]]]:
    """{service: every sample name its /metrics lists}, from the embedded stack, for this module."""
    stack = Stack(home=tmp_path_factory.mktemp("stack"), ports=Ports(offset=_free_offset()), prometheus=False)
    try:
        components = stack.up(timeout=180)
        out: dict[str, set[str]] = {}
        for c in components:
            if "http" in c.urls:
                answer = httpx.get(c.urls["http"] + "/metrics", timeout=10)
                assert answer.status_code == 200, (c.name, answer.status_code)
                out[c.name] = _family_names(answer.text)
        yield out
    finally:
        stack.down()


def test_the_reference_finder_sees_metrics_recordings_and_patterns() -> None:
    ours, others, recorded, patterns = referenced()
    assert {"loopline_inference_predict_requests_total", "loopline_rollout_canary_weight"} <= ours
    assert "model:loopline_inference_errors:ratio_rate1h" in recorded
    assert "loopline_.+_kafka_consumed_total" in patterns
    assert others == set(EXTERNAL_METRICS), f"metrics from outside Loopline must be listed with their source: {others}"


def test_every_recording_rule_used_is_defined() -> None:
    _, _, recorded, _ = referenced()
    rule = next(o for o in render("default") if o["kind"] == "PrometheusRule")
    defined = {r["record"] for g in rule["spec"]["groups"] for r in g["rules"] if "record" in r}
    assert recorded <= defined, recorded - defined


def test_every_metric_names_a_loopline_service() -> None:
    ours, _, _, _ = referenced()
    assert all(name.split("_")[1] in PRODUCERS for name in ours), sorted(ours)


@pytest.mark.parametrize("service", PRODUCERS)
def test_metrics_named_in_rules_and_dashboards_are_exported(service: str, exported: dict[str, set[str]]) -> None:
    wanted = {name for name in referenced()[0] if name.startswith(f"loopline_{service}_")}
    assert wanted, f"no rule or dashboard uses {service}'s metrics"
    assert service in exported, (
        f"{service} is not running in the embedded stack (loopline_cli.stack.SERVICES lists "
        f"{[s.name for s in SERVICES]}), so its metrics could not be checked"
    )
    missing = wanted - exported[service]
    assert not missing, f"{service} does not export {sorted(missing)}"


def test_metric_name_patterns_match_exported_metrics(exported: dict[str, set[str]]) -> None:
    everything = set().union(*exported.values())
    for pattern in referenced()[3]:
        assert any(re.fullmatch(pattern, name) for name in everything), pattern
