"""The registry's settings, read from `LOOPLINE_REGISTRY_*` environment variables."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from loopline_common.settings import ServiceSettings
from loopline_common.topics import MODELS, ROLLOUTS

FAULT_POINTS = ("after_mlflow_write", "before_publish", "after_publish")


class RegistrySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LOOPLINE_REGISTRY_", extra="ignore", frozen=True)

    mlflow_uri: str = Field(description="MLflow tracking server URL, e.g. http://127.0.0.1:5000")
    kafka_bootstrap: str = Field(description="Kafka bootstrap servers, host:port[,host:port]")
    store_url: str = Field(
        description="Audit log and outbox store (SQLAlchemy URL): sqlite:////path/registry.db embedded, "
        "postgresql+psycopg://user@host/db in a cluster"
    )
    tokens_file: str = Field("", description="JSON or YAML file of API tokens: [{name, role, token}]")
    tokens: SecretStr = Field(SecretStr(""), description="API tokens as JSON, same format as tokens_file")
    anonymous_reads: bool = Field(False, description="Allow read calls without a token")
    policy_file: str = Field("", description="YAML or JSON promotion policies: {default: {...}, models: {name: {...}}}")
    models_topic: str = Field(MODELS, description="Topic of ModelEvent records (produced and consumed)")
    rollouts_topic: str = Field(ROLLOUTS, description="Topic of RolloutDecision records (consumed for lineage)")
    instance_id: str = Field("", description="Stable name of this replica (default: the host name)")
    mlflow_timeout_seconds: float = Field(5.0, gt=0, le=120, description="Bound on each MLflow request")
    mlflow_retry_after_seconds: float = Field(
        2.0, ge=0, description="After MLflow failed to answer, writes fail fast and reads use the cache this long"
    )
    artifact_timeout_seconds: float = Field(60.0, gt=0, description="Bound on each read of an artifact stream")
    max_artifact_bytes: int = Field(2 * 1024**3, gt=0, description="Largest artifact file hashed at registration")
    cache_ttl_seconds: float = Field(30.0, ge=0, description="How long a cached read is served without asking MLflow")
    cache_max_entries: int = Field(10_000, gt=0, description="Bound on cached alias and version reads")
    kafka_timeout_seconds: float = Field(10.0, gt=0, description="Bound on one outbox publish round")
    outbox_poll_seconds: float = Field(1.0, gt=0, description="Relay poll interval when nothing wakes it")
    intent_timeout_seconds: float = Field(
        60.0, gt=0, description="An unfinished change older than this is recovered by any replica"
    )
    model_file: str = Field("model.onnx", description="The model file of a version (ARTIFACT_KIND_MODEL)")
    profile_file: str = Field("reference_profile.pb", description="The reference profile of a version")
    champion_alias: str = Field("champion", description="Alias of the Production version")
    challenger_alias: str = Field("challenger", description="Alias of the Staging version")
    test_faults: str = Field(
        "", description="Tests only: comma-separated points where the process exits at once: " + ", ".join(FAULT_POINTS)
    )
