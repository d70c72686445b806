"""Monitoring's settings, read from `LOOPLINE_MONITORING_*` environment variables."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from loopline_common.settings import ServiceSettings
from loopline_common.topics import DRIFT, PREDICTIONS


class MonitoringSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LOOPLINE_MONITORING_", extra="ignore", frozen=True)

    kafka_bootstrap: str = Field(description="Kafka bootstrap servers, host:port[,host:port]")
    state_dir: str = Field(description="Folder of the state store (state.db) and the saved reports")
    registry_target: str = Field("", description="Registry gRPC address host:port, where reference profiles come from")
    registry_token: SecretStr = Field(SecretStr(""), description="Bearer token for the registry (role reader)")
    profile_dir: str = Field(
        "", description="Instead of the registry: a folder of <model>/<version>/reference_profile.pb files"
    )
    features_target: str = Field("", description="Features service gRPC address; empty: no skew check")
    features_token: SecretStr = Field(SecretStr(""), description="Bearer token for the features service")
    policy_file: str = Field("", description="Drift policy, YAML or JSON: {default: {...}, models: {name: {...}}}")
    predictions_topic: str = Field(PREDICTIONS, description="Topic of the prediction log (consumed)")
    drift_topic: str = Field(DRIFT, description="Topic of DriftDetected events (produced)")
    consumer_group: str = Field("loopline-monitoring", description="Kafka consumer group")
    max_poll_interval_ms: int = Field(300_000, ge=1000, description="Kafka max.poll.interval.ms of the consumer")
    upstream_timeout_seconds: float = Field(10.0, gt=0, description="Deadline of each registry/features call")
    profile_retry_seconds: float = Field(300.0, ge=0, description="How long a missing profile is not asked again")
    canary_window_seconds: float = Field(900.0, gt=0, description="Default window of the canary comparison")
    canary_retention_seconds: float = Field(
        3600.0, gt=0, description="Log kept for the canary comparison; also the de-duplication horizon"
    )
    canary_min_records: int = Field(100, ge=1, description="Fewest records per track for the prediction PSI")
    canary_max_records: int = Field(
        500_000, ge=1000, description="Canary records kept per model (bounds memory and the de-duplication horizon)"
    )
    decision_threshold: float = Field(0.5, description="Prediction at or above which the decision is positive")
    skew_sample_rate: float = Field(0.01, ge=0, le=1, description="Share of predictions checked for skew")
    skew_batch: int = Field(200, ge=1, description="Samples per offline look-up")
    skew_interval_seconds: float = Field(30.0, gt=0, description="How often sampled predictions are looked up")
    tick_seconds: float = Field(1.0, gt=0, description="How often time windows, events and canary gauges are updated")
    test_crash_after_batches: int = Field(
        0, ge=0, description="Tests only: exit at once after the state of this many batches was committed, before "
        "Kafka's offset is (0: never)",
    )
