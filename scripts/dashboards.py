"""Generate Loopline's Grafana dashboards (charts/loopline/dashboards/*.json) from the short spec below.

`make dashboards` runs it; tests/deploy checks that the committed JSON matches this spec, that every
query parses (promtool) and that every metric it names is exported by a running service. The chart ships
each dashboard as a ConfigMap for the Grafana sidecar.
"""

# PromQL strings are kept whole on one line each, so they read (and grep) as queries.
# ruff: noqa: E501
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "charts" / "loopline" / "dashboards"
DS = {"type": "prometheus", "uid": "${datasource}"}
RI = "$__rate_interval"


@dataclass
class Panel:
    title: str
    targets: list[tuple[str, str]]  # (expr, legend)
    unit: str = "short"
    kind: str = "timeseries"
    description: str = ""


@dataclass
class Dashboard:
    uid: str
    title: str
    description: str
    variables: list[tuple[str, str]]  # (name, label_values query)
    rows: list[tuple[str, list[Panel]]] = field(default_factory=list)


def _variable(name: str, query: str) -> dict[str, object]:
    return {
        "name": name, "label": name, "type": "query", "datasource": DS,
        "query": {"query": query, "refId": f"{name}-values"}, "definition": query,
        "refresh": 2, "includeAll": True, "multi": True, "allValue": ".*", "sort": 1,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
    }


def _panel(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, object]:
    return {
        "id": panel_id, "type": panel.kind, "title": panel.title, "description": panel.description,
        "datasource": DS, "gridPos": {"h": 8, "w": 12, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
        "options": {"legend": {"displayMode": "table", "placement": "bottom"}} if panel.kind == "timeseries" else {},
        "targets": [
            {"refId": chr(ord("A") + i), "datasource": DS, "expr": expr, "legendFormat": legend}
            for i, (expr, legend) in enumerate(panel.targets)
        ],
    }


def render(dashboard: Dashboard) -> dict[str, object]:
    panels: list[dict[str, object]] = []
    y, panel_id = 0, 1
    for row_title, row_panels in dashboard.rows:
        panels.append({"id": panel_id, "type": "row", "title": row_title, "collapsed": False,
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
        panel_id += 1
        y += 1
        for i, panel in enumerate(row_panels):
            panels.append(_panel(panel, panel_id, 12 * (i % 2), y + 8 * (i // 2)))
            panel_id += 1
        y += 8 * ((len(row_panels) + 1) // 2)
    datasource = {"name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus",
                  "current": {"text": "Prometheus", "value": "prometheus"}}
    return {
        "uid": dashboard.uid, "title": dashboard.title, "description": dashboard.description,
        "tags": ["loopline"], "timezone": "utc", "schemaVersion": 39, "version": 1, "editable": False,
        "refresh": "30s", "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": [datasource, *(_variable(n, q) for n, q in dashboard.variables)]},
        "annotations": {"list": []}, "links": [], "panels": panels,
    }


SEL = 'model=~"$model", version=~"$version", track=~"$track"'
REQ = "loopline_inference_predict_requests_total"
DUR = "loopline_inference_predict_duration_seconds"
SERVER_ERRORS = "INTERNAL|UNAVAILABLE|DEADLINE_EXCEEDED|NOT_IMPLEMENTED"
TRACK_VARS = [
    ("model", f"label_values({REQ}, model)"),
    ("version", f'label_values({REQ}{{model=~"$model"}}, version)'),
    ("track", f'label_values({REQ}{{model=~"$model"}}, track)'),
]
MON_VARS = [
    ("model", "label_values(loopline_monitoring_drift_score, model)"),
    ("version", 'label_values(loopline_monitoring_drift_score{model=~"$model"}, version)'),
    ("track", 'label_values(loopline_monitoring_drift_score{model=~"$model"}, track)'),
]


def _quantile(q: str) -> tuple[str, str]:
    return (
        f"histogram_quantile({q}, sum by (model, version, track, le) (rate({DUR}_bucket{{{SEL}}}[{RI}])))",
        f"p{q[2:] or '0'} {{{{model}}}} v{{{{version}}}} {{{{track}}}}",
    )


DASHBOARDS = [
    Dashboard(
        "loopline-serving", "Loopline / Serving",
        "RED metrics of the inference servers per model, version and track, with the SLO burn rates.",
        TRACK_VARS,
        [
            ("Rate, errors, duration", [
                Panel("Requests per second", [(f"sum by (model, version, track) (rate({REQ}{{{SEL}}}[{RI}]))",
                                                "{{model}} v{{version}} {{track}}")], "reqps"),
                Panel("Server error ratio", [(
                    f'sum by (model, version, track) (rate({REQ}{{{SEL}, status=~"{SERVER_ERRORS}"}}[{RI}]))'
                    f" / sum by (model, version, track) (rate({REQ}{{{SEL}}}[{RI}]))",
                    "{{model}} v{{version}} {{track}}")], "percentunit"),
                Panel("Requests by status", [(f"sum by (status, protocol) (rate({REQ}{{{SEL}}}[{RI}]))",
                                              "{{protocol}} {{status}}")], "reqps"),
                Panel("Latency p50 / p99", [_quantile("0.5"), _quantile("0.99")], "s"),
            ]),
            ("Model", [
                Panel("Prediction score p50 / p90", [
                    ("histogram_quantile(0.5, sum by (model, version, track, le) "
                     f"(rate(loopline_inference_prediction_score_bucket{{{SEL}}}[{RI}])))", "p50 {{model}} {{track}}"),
                    ("histogram_quantile(0.9, sum by (model, version, track, le) "
                     f"(rate(loopline_inference_prediction_score_bucket{{{SEL}}}[{RI}])))", "p90 {{model}} {{track}}"),
                ]),
                Panel("Rows per request p90", [(
                    "histogram_quantile(0.9, sum by (model, le) "
                    f'(rate(loopline_inference_batch_rows_bucket{{model=~"$model"}}[{RI}])))', "{{model}}")]),
                Panel("Model load time", [(f"max by (model, version, track) (loopline_inference_model_load_seconds{{{SEL}}})",
                                           "{{model}} v{{version}} {{track}}")], "s"),
                Panel("Prediction log: logged and dropped", [
                    (f"sum(rate(loopline_inference_prediction_log_records_total[{RI}]))", "logged"),
                    (f"sum by (reason) (rate(loopline_inference_prediction_log_dropped_total[{RI}]))", "dropped {{reason}}"),
                ], "ops"),
            ]),
            ("SLO burn rates", [
                Panel("Error budget burn (1h, 6h)", [
                    ('model:loopline_inference_errors:ratio_rate1h{model=~"$model"}', "1h {{model}}"),
                    ('model:loopline_inference_errors:ratio_rate6h{model=~"$model"}', "6h {{model}}"),
                ], "percentunit"),
                Panel("Slow request ratio (1h, 6h)", [
                    ('model:loopline_inference_slow:ratio_rate1h{model=~"$model"}', "1h {{model}}"),
                    ('model:loopline_inference_slow:ratio_rate6h{model=~"$model"}', "6h {{model}}"),
                ], "percentunit"),
            ]),
        ],
    ),
    Dashboard(
        "loopline-drift", "Loopline / Drift",
        "Input and prediction drift per feature from the monitoring service's windows.",
        [*MON_VARS, ("feature", 'label_values(loopline_monitoring_drift_score{model=~"$model"}, feature)')],
        [
            ("Dataset", [
                Panel("Drift alert (hysteresis)", [(f"max by (model, version, track) (loopline_monitoring_drift_alert{{{SEL}}})",
                                                    "{{model}} v{{version}} {{track}}")]),
                Panel("Share of features drifted", [(f"max by (model, version, track) (loopline_monitoring_drifted_share{{{SEL}}})",
                                                     "{{model}} v{{version}} {{track}}")], "percentunit"),
                Panel("Windows compared and drift events", [
                    (f"sum by (model) (increase(loopline_monitoring_windows_total{{{SEL}}}[1h]))", "windows {{model}}"),
                    (f"sum by (model) (increase(loopline_monitoring_drift_events_total{{{SEL}}}[1h]))", "events {{model}}"),
                    (f"sum by (model) (increase(loopline_monitoring_drift_events_suppressed_total{{{SEL}}}[1h]))",
                     "suppressed {{model}}"),
                ]),
                Panel("Records read by outcome", [(
                    f'sum by (model, outcome) (rate(loopline_monitoring_records_total{{model=~"$model"}}[{RI}]))',
                    "{{model}} {{outcome}}")], "ops"),
            ]),
            ("Per feature", [
                Panel("Drift score vs threshold", [
                    (f'max by (feature, method) (loopline_monitoring_drift_score{{{SEL}, feature=~"$feature"}})',
                     "{{feature}} {{method}}"),
                    (f'max by (feature, method) (loopline_monitoring_drift_threshold{{{SEL}, feature=~"$feature"}})',
                     "threshold {{feature}}"),
                ]),
                Panel("Features drifted", [(f'max by (feature) (loopline_monitoring_feature_drifted{{{SEL}, feature=~"$feature"}})',
                                            "{{feature}}")], kind="stat"),
                Panel("p-value (KS, chi-square)", [(f'min by (feature, method) (loopline_monitoring_drift_p_value{{{SEL}, feature=~"$feature"}})',
                                                    "{{feature}} {{method}}")]),
                Panel("Records in the open window", [(f"max by (model, track) (loopline_monitoring_open_window_records{{{SEL}}})",
                                                      "{{model}} {{track}}")]),
            ]),
        ],
    ),
    Dashboard(
        "loopline-skew", "Loopline / Training-serving skew",
        "Served feature values compared with the offline store's values for the same entity and time.",
        [("model", "label_values(loopline_monitoring_skew_compared, model)"),
         ("feature", 'label_values(loopline_monitoring_skew_compared{model=~"$model"}, feature)')],
        [
            ("Skew", [
                Panel("Mismatch rate per feature", [(
                    'max by (model, version, feature) (loopline_monitoring_skew_mismatch_rate{model=~"$model", feature=~"$feature"})',
                    "{{model}} v{{version}} {{feature}}")], "percentunit"),
                Panel("Distribution distance per feature", [(
                    'max by (feature, method) (loopline_monitoring_skew_distance{model=~"$model", feature=~"$feature"})',
                    "{{feature}} {{method}}")]),
                Panel("Pairs compared", [(
                    'sum by (model, feature) (loopline_monitoring_skew_compared{model=~"$model", feature=~"$feature"})',
                    "{{model}} {{feature}}")]),
                Panel("Offline look-up failures", [(
                    f"sum by (code) (rate(loopline_monitoring_skew_fetch_errors_total[{RI}]))", "{{code}}")], "ops"),
            ]),
        ],
    ),
    Dashboard(
        "loopline-freshness", "Loopline / Feature freshness",
        "How fresh the online features are, and how the stream ingester keeps up.",
        [("feature_view", "label_values(loopline_features_feature_freshness_seconds, feature_view)")],
        [
            ("Freshness", [
                Panel("Age of the newest online row", [(
                    'max by (feature_view) (loopline_features_feature_freshness_seconds{feature_view=~"$feature_view"})',
                    "{{feature_view}}")], "s"),
                Panel("Event lag p50 / p99", [
                    (f"histogram_quantile(0.5, sum by (le) (rate(loopline_features_ingest_event_lag_seconds_bucket[{RI}])))", "p50"),
                    (f"histogram_quantile(0.99, sum by (le) (rate(loopline_features_ingest_event_lag_seconds_bucket[{RI}])))", "p99"),
                ], "s"),
                Panel("Ingested events by outcome", [(
                    f"sum by (outcome) (rate(loopline_features_ingest_events_total[{RI}]))", "{{outcome}}")], "ops"),
                Panel("Rows pushed online / offline", [
                    (f'sum by (feature_view) (rate(loopline_features_online_push_rows_total{{feature_view=~"$feature_view"}}[{RI}]))',
                     "online {{feature_view}}"),
                    (f'sum by (feature_view) (rate(loopline_features_offline_push_rows_total{{feature_view=~"$feature_view"}}[{RI}]))',
                     "offline {{feature_view}}"),
                ], "ops"),
                Panel("Push and store errors", [
                    (f"sum by (target) (rate(loopline_features_push_errors_total[{RI}]))", "push {{target}}"),
                    (f"sum by (operation) (rate(loopline_features_store_errors_total[{RI}]))", "store {{operation}}"),
                ], "ops"),
                Panel("Rows waiting to be pushed", [("sum(loopline_features_outbox_pending_rows)", "pending")]),
            ]),
        ],
    ),
    Dashboard(
        "loopline-rollouts", "Loopline / Rollouts",
        "Canary rollouts: weight, phase, analysis checks and decisions, beside the canary comparison.",
        [("model", "label_values(loopline_rollout_active, model)")],
        [
            ("Rollout controller", [
                Panel("Canary weight", [('max by (model) (loopline_rollout_canary_weight{model=~"$model"})', "{{model}}")],
                      "percent"),
                Panel("Phase", [('max by (model, phase) (loopline_rollout_phase{model=~"$model"}) > 0', "{{model}} {{phase}}")]),
                Panel("Analysis checks by result", [(
                    f'sum by (model, check, result) (increase(loopline_rollout_analysis_checks_total{{model=~"$model"}}[{RI}]))',
                    "{{model}} {{check}} {{result}}")]),
                Panel("Decisions", [(
                    'sum by (model, decision) (increase(loopline_rollout_decisions_total{model=~"$model"}[1h]))',
                    "{{model}} {{decision}}")]),
                Panel("Steps taken", [(f'sum by (model) (increase(loopline_rollout_steps_total{{model=~"$model"}}[{RI}]))',
                                       "{{model}}")]),
                Panel("Active rollouts and last decision", [
                    ('max by (model) (loopline_rollout_active{model=~"$model"})', "active {{model}}"),
                    ('time() - max by (model) (loopline_rollout_last_decision_timestamp_seconds{model=~"$model"})',
                     "seconds since decision {{model}}"),
                ]),
            ]),
            ("Canary comparison (monitoring) and serving weights (inference)", [
                Panel("Error rate per track", [(
                    'max by (model, track, version) (loopline_monitoring_canary_error_rate{model=~"$model"})',
                    "{{model}} {{track}} v{{version}}")], "percentunit"),
                Panel("Latency p99 per track", [(
                    'max by (model, track, version) (loopline_monitoring_canary_latency_seconds{model=~"$model", quantile="0.99"})',
                    "{{model}} {{track}} v{{version}}")], "s"),
                Panel("Prediction PSI and shadow agreement", [
                    ('max by (model) (loopline_monitoring_canary_prediction_psi{model=~"$model"})', "PSI {{model}}"),
                    ('max by (model) (loopline_monitoring_canary_shadow_agreement{model=~"$model"})', "agreement {{model}}"),
                ]),
                Panel("Records per track in the window", [(
                    'max by (model, track) (loopline_monitoring_canary_records{model=~"$model"})', "{{model}} {{track}}")]),
                Panel("Traffic weight served per track", [(
                    'max by (model, track) (loopline_inference_track_weight{model=~"$model"})', "{{model}} {{track}}")],
                    "percentunit"),
                Panel("Model swaps", [('sum by (model) (increase(loopline_inference_model_swaps_total{model=~"$model"}[1h]))',
                                       "{{model}}")]),
            ]),
        ],
    ),
    Dashboard(
        "loopline-kafka", "Loopline / Kafka",
        "Consumer lag per group (kafka-exporter) and what each Loopline service produces, consumes and dead-letters.",
        [("consumergroup", 'label_values(kafka_consumergroup_lag{consumergroup=~"loopline-.*"}, consumergroup)')],
        [
            ("Lag", [
                Panel("Consumer lag per group and topic", [(
                    'sum by (consumergroup, topic) (kafka_consumergroup_lag{consumergroup=~"$consumergroup"})',
                    "{{consumergroup}} {{topic}}")]),
                Panel("Records consumed per service", [(
                    f'sum by (__name__, topic) (rate({{__name__=~"loopline_.+_kafka_consumed_total"}}[{RI}]))',
                    "{{__name__}} {{topic}}")], "ops"),
            ]),
            ("Producers and dead letters", [
                Panel("Records produced", [(
                    f'sum by (__name__, topic) (rate({{__name__=~"loopline_.+_kafka_produced_total"}}[{RI}]))',
                    "{{__name__}} {{topic}}")], "ops"),
                Panel("Records dropped by producers", [(
                    f'sum by (__name__, reason) (rate({{__name__=~"loopline_.+_kafka_dropped_total"}}[{RI}]))',
                    "{{__name__}} {{reason}}")], "ops"),
                Panel("Dead-lettered and handler errors", [
                    (f'sum by (__name__, topic) (rate({{__name__=~"loopline_.+_kafka_dead_lettered_total"}}[{RI}]))',
                     "{{__name__}} {{topic}}"),
                    (f'sum by (__name__, topic) (rate({{__name__=~"loopline_.+_kafka_handler_errors_total"}}[{RI}]))',
                     "{{__name__}} {{topic}}"),
                ], "ops"),
                Panel("Producer buffer", [('sum by (__name__) ({__name__=~"loopline_.+_kafka_producer_buffered"})',
                                           "{{__name__}}")]),
            ]),
        ],
    ),
    Dashboard(
        "loopline-platform", "Loopline / Services and registry",
        "RED metrics of every Loopline service's gRPC and HTTP APIs, and the model registry's health.",
        [],
        [
            ("APIs of every service", [
                Panel("Requests per second by service", [(
                    f'sum by (__name__, transport) (rate({{__name__=~"loopline_.+_requests_total"}}[{RI}]))',
                    "{{__name__}} {{transport}}")], "reqps"),
                Panel("Server errors by service and method", [(
                    f'sum by (__name__, method, code) (rate({{__name__=~"loopline_.+_requests_total", code=~"{SERVER_ERRORS}"}}[{RI}]))',
                    "{{__name__}} {{method}} {{code}}")], "reqps"),
                Panel("Requests in flight", [('sum by (__name__, transport) ({__name__=~"loopline_.+_requests_in_flight"})',
                                              "{{__name__}} {{transport}}")]),
            ]),
            ("Registry", [
                Panel("MLflow reachable", [("min(loopline_registry_mlflow_available)", "available")], kind="stat"),
                Panel("Cache reads by outcome", [(
                    f"sum by (kind, outcome) (rate(loopline_registry_cache_reads_total[{RI}]))", "{{kind}} {{outcome}}")],
                    "ops"),
                Panel("Outbox: pending and published", [
                    ("sum(loopline_registry_outbox_pending)", "pending"),
                    (f"sum by (kind) (rate(loopline_registry_events_published_total[{RI}]))", "published {{kind}}"),
                ]),
                Panel("Promotions refused by policy", [(
                    "sum(increase(loopline_registry_promotions_refused_total[1h]))", "refused")]),
            ]),
        ],
    ),
    Dashboard(
        "loopline-training", "Loopline / Training jobs",
        "Training jobs by state, failures and the runner's load.",
        [("family", "label_values(loopline_training_job_state_changes_total, family)")],
        [
            ("Jobs", [
                Panel("Jobs by state", [("sum by (state) (loopline_training_jobs)", "{{state}}")]),
                Panel("Jobs reaching a state", [(
                    'sum by (state, family) (increase(loopline_training_job_state_changes_total{family=~"$family"}[1h]))',
                    "{{family}} {{state}}")]),
                Panel("Failed jobs (1h)", [(
                    'sum by (family) (increase(loopline_training_job_state_changes_total{family=~"$family", state="FAILED"}[1h]))',
                    "{{family}}")], kind="stat"),
                Panel("Jobs the runner watches", [("sum(loopline_training_runner_active_jobs)", "active")]),
            ]),
        ],
    ),
]

# Names of the metrics dashboards may name that are not Loopline's own (with where they come from).
# Generic families chosen by a name pattern (__name__=~"loopline_.+_kafka_...") are checked per service.
EXTERNAL_METRICS = {"kafka_consumergroup_lag": "kafka-exporter (Strimzi's kafkaExporter or the standalone one)"}


def generate() -> dict[str, str]:
    return {f"{d.uid}.json": json.dumps(render(d), indent=1, sort_keys=True) + "\n" for d in DASHBOARDS}


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    wanted = generate()
    for old in OUT.glob("*.json"):
        if old.name not in wanted:
            old.unlink()
    for name, text in wanted.items():
        (OUT / name).write_text(text)
    print(f"wrote {len(wanted)} dashboards to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
