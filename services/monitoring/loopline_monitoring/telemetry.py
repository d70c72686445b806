"""Monitoring's own Prometheus metrics (named loopline_monitoring_*), made through ServiceMetrics."""

from __future__ import annotations

from loopline.monitoring.v1 import monitoring_pb2
from loopline_common.metrics import ServiceMetrics
from loopline_monitoring.canary import TRACK_NAMES

KEY_LABELS = ["model", "version", "track"]
FEATURE_LABELS = [*KEY_LABELS, "feature", "method"]


def track_name(track: int) -> str:
    return TRACK_NAMES.get(track, str(track))


class MonitoringMetrics:
    def __init__(self, metrics: ServiceMetrics) -> None:
        m = metrics
        self.records = m.counter(
            "records_total", "Prediction records read, by outcome (accepted, duplicate, invalid, no_profile)",
            ["model", "outcome"],
        )
        self.score = m.gauge("drift_score", "Latest window's score per feature and method", FEATURE_LABELS)
        self.threshold = m.gauge("drift_threshold", "Threshold the score was compared with", FEATURE_LABELS)
        self.p_value = m.gauge("drift_p_value", "Latest window's p-value (KS, chi-square)", FEATURE_LABELS)
        self.feature_drifted = m.gauge(
            "feature_drifted", "1 if the feature drifted in the latest window", FEATURE_LABELS
        )
        self.drifted_share = m.gauge(
            "drifted_share", "Share of input features drifted in the latest window", KEY_LABELS
        )
        self.dataset_drift = m.gauge("dataset_drift", "1 if the latest window drifted (dataset level)", KEY_LABELS)
        self.alert = m.gauge("drift_alert", "1 while the alert is raised (hysteresis), else 0", KEY_LABELS)
        self.windows = m.counter("windows_total", "Windows closed and compared", KEY_LABELS)
        self.window_records = m.gauge("open_window_records", "Records in the window still open", KEY_LABELS)
        self.events = m.counter("drift_events_total", "DriftDetected events emitted", KEY_LABELS)
        self.suppressed = m.counter(
            "drift_events_suppressed_total", "Drift onsets not emitted because of the cooldown", KEY_LABELS
        )
        self.evaluation_seconds = m.histogram("window_evaluation_seconds", "Time to compare one window", [])
        # canary
        canary = ["model", "track", "version"]
        self.canary_error_rate = m.gauge("canary_error_rate", "Share of records with an error status", canary)
        self.canary_latency = m.gauge(
            "canary_latency_seconds", "Latency percentile over the canary window", [*canary, "quantile"]
        )
        self.canary_records = m.gauge("canary_records", "Records per track in the canary window", canary)
        self.canary_psi = m.gauge(
            "canary_prediction_psi", "PSI of the challenger's predictions vs the champion's", ["model"]
        )
        self.canary_agreement = m.gauge("canary_shadow_agreement", "Shadow decisions agreeing with served", ["model"])
        # skew
        skew = ["model", "version", "feature"]
        self.skew_mismatch = m.gauge("skew_mismatch_rate", "Served vs offline values that differ", skew)
        self.skew_distance = m.gauge(
            "skew_distance", "Distance between served and offline distributions", [*skew, "method"]
        )
        self.skew_compared = m.gauge("skew_compared", "Served/offline pairs compared", skew)
        self.skew_errors = m.counter("skew_fetch_errors_total", "Failed offline look-ups, by code", ["code"])

    def window_closed(self, result: monitoring_pb2.DriftWindowResult, *, alert: bool) -> None:
        key = [result.model_name, str(result.model_version), track_name(result.track)]
        self.windows.labels(*key).inc()
        self.alert.labels(*key).set(1.0 if alert else 0.0)
        if result.skipped_reason:
            return
        self.drifted_share.labels(*key).set(result.drifted_share)
        self.dataset_drift.labels(*key).set(1.0 if result.dataset_drift else 0.0)
        for score in result.scores:
            d = score.drift
            labels = [*key, d.feature, d.method]
            self.score.labels(*labels).set(d.score)
            self.threshold.labels(*labels).set(d.threshold)
            self.feature_drifted.labels(*labels).set(1.0 if d.drifted else 0.0)
            if d.HasField("p_value"):
                self.p_value.labels(*labels).set(d.p_value)

    def canary(self, analysis: monitoring_pb2.GetCanaryAnalysisResponse) -> None:
        model = analysis.model_name
        for t in analysis.tracks:
            labels = [model, track_name(t.track), str(t.version)]
            self.canary_error_rate.labels(*labels).set(t.error_rate)
            self.canary_records.labels(*labels).set(t.count)
            for q in ("p50", "p90", "p95", "p99"):
                self.canary_latency.labels(*labels, q).set(getattr(t.latency, q))
        if analysis.HasField("prediction_psi"):
            self.canary_psi.labels(model).set(analysis.prediction_psi)
        if analysis.shadow.HasField("agreement_rate"):
            self.canary_agreement.labels(model).set(analysis.shadow.agreement_rate)

    def skew(self, model: str, version: int, features: list[monitoring_pb2.FeatureSkew]) -> None:
        for f in features:
            labels = [model, str(version), f.feature]
            self.skew_mismatch.labels(*labels).set(f.mismatch_rate)
            self.skew_compared.labels(*labels).set(f.compared)
            self.skew_distance.labels(*labels, f.distance_method).set(f.distance)
