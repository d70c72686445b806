"""Metric naming: loopline_<service>_<name>, one registry per service, get-or-create."""

from __future__ import annotations

import pytest

from loopline_common.metrics import ServiceMetrics


def test_names_are_prefixed_and_get_or_create() -> None:
    metrics = ServiceMetrics("feature-store")
    counter = metrics.counter("events_total", "Events", ["kind"])
    assert metrics.counter("events_total", "Events", ["kind"]) is counter
    counter.labels("a").inc(2)
    metrics.gauge("lag_seconds", "Lag").set(1.5)
    text = metrics.exposition().decode()
    assert 'loopline_feature_store_events_total{kind="a"} 2.0' in text
    assert "loopline_feature_store_lag_seconds 1.5" in text


def test_bad_names_and_conflicting_redefinitions_are_refused() -> None:
    metrics = ServiceMetrics("x")
    with pytest.raises(ValueError, match="_total"):
        metrics.counter("events", "no suffix")
    with pytest.raises(ValueError, match="snake_case"):
        metrics.gauge("Bad-Name", "doc")
    metrics.gauge("depth", "doc", ["queue"])
    with pytest.raises(ValueError, match="another type or labels"):
        metrics.gauge("depth", "doc", ["other"])


def test_two_services_in_one_process_do_not_collide() -> None:
    a, b = ServiceMetrics("same"), ServiceMetrics("same")
    a.counter("hits_total", "doc").inc()
    b.counter("hits_total", "doc")
    assert a.registry.get_sample_value("loopline_same_hits_total") == 1.0
    assert b.registry.get_sample_value("loopline_same_hits_total") == 0.0
