"""Settings of the features service, from `LOOPLINE_FEATURES_*` environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from loopline_common.settings import ServiceSettings


class FeaturesSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LOOPLINE_FEATURES_", extra="ignore", frozen=True)

    repo_dir: Path = Field(description="The Feast feature repo (declarations), e.g. <checkout>/feature_repo")
    data_dir: Path = Field(description="Where the registry, SQLite online store, offline parquet and state live")
    environment: str = Field(
        "embedded", pattern="^(embedded|cluster)$", description="Which feature_store.<environment>.yaml to use"
    )
    artifact_root: str = Field(
        "", description="Where training sets are written (path or URI); default <data_dir>/training-sets"
    )
    max_entities: int = Field(1000, gt=0, description="Most entity rows in one GetOnlineFeatures call")
    max_historical_rows: int = Field(1_000_000, gt=0, description="Most entity rows in one training set")
    kafka_bootstrap: str = Field("", description="Kafka bootstrap servers; empty turns streaming ingestion off")
    ingest_topic: str = Field("loopline.workload.events", description="Raw events topic")
    ingest_group: str = Field("loopline-features", description="Consumer group of the stream ingester")
    allowed_lateness_seconds: float = Field(
        600.0, ge=0, description="Events older than the newest event time seen minus this are dropped as late"
    )
    push_interval_seconds: float = Field(0.2, gt=0, description="How often computed rows are pushed online")
    offline_flush_seconds: float = Field(10.0, gt=0, description="How often computed rows are appended offline")
    max_poll_interval_ms: int = Field(300_000, gt=0, description="Kafka max.poll.interval.ms of the ingester")
    store_timeout_seconds: float = Field(
        0.5, gt=0, description="Socket timeout towards a Redis online store (a down store answers UNAVAILABLE)"
    )
    uvloop: bool = Field(True, description="Run the event loop on uvloop (less CPU per request than asyncio's)")
    gc_freeze: bool = Field(
        True, description="After start-up, move every object then alive out of the garbage collector's reach"
    )

    def training_sets_root(self) -> str:
        return self.artifact_root or str(self.data_dir / "training-sets")
