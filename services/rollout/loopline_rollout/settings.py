"""The rollout controller's settings, read from `LOOPLINE_ROLLOUT_*` environment variables."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from loopline_common.settings import ServiceSettings
from loopline_common.topics import MODELS, ROLLOUTS


class RolloutSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LOOPLINE_ROLLOUT_", extra="ignore", frozen=True)

    kafka_bootstrap: str = Field(description="Kafka bootstrap servers, host:port[,host:port]")
    store_url: str = Field(
        description="Rollout state (SQLAlchemy URL): sqlite:////path/rollout.db embedded, "
        "postgresql+psycopg://user@host/db in a cluster"
    )
    registry_target: str = Field(description="Registry gRPC address host:port (aliases, promotion)")
    registry_token: SecretStr = Field(SecretStr(""), description="Bearer token for the registry (role releaser)")
    policy_file: str = Field("", description="Rollout policies, YAML or JSON: {default: {...}, models: {name: {...}}}")
    tokens_file: str = Field(
        "", description="API tokens allowed to steer rollouts, JSON or YAML [{name, role, token}] (registry format)"
    )
    anonymous_actions: bool = Field(
        False, description="Accept pause/resume/abort/promote without a token (actor 'anonymous'); tests only"
    )
    # Where the checks read their numbers.
    check_source: Literal["monitoring", "prometheus"] = Field(
        "monitoring", description="monitoring: the monitoring service's canary analysis (embedded); "
        "prometheus: PromQL over the exported metrics (cluster)"
    )
    monitoring_target: str = Field("", description="Monitoring gRPC address host:port (check_source=monitoring)")
    prometheus_url: str = Field("", description="Prometheus base URL, e.g. http://prometheus:9090 (PromQL checks)")
    # How traffic moves.
    actuator: Literal["embedded", "kserve", "gitops"] = Field("embedded", description="How weights are applied")
    inference_target: str = Field("", description="Inference admin gRPC host:port (actuator=embedded)")
    inference_targets: dict[str, str] = Field(
        default_factory=dict, description="Per-model inference admin addresses, JSON {model: host:port}"
    )
    kserve_namespace: str = Field("default", description="Namespace of the InferenceServices (actuator=kserve)")
    kserve_api_url: str = Field(
        "", description="Kubernetes API URL (tests, kubectl proxy); empty: kubeconfig or in-cluster"
    )
    kserve_kubeconfig: str = Field("", description="kubeconfig file; empty: in-cluster service account")
    kserve_storage_uri: str = Field(
        "models:/{model}/{version}", description="storageUri template of a version ({model}, {version})"
    )
    kserve_names: dict[str, str] = Field(
        default_factory=dict, description="InferenceService name per model, JSON (default: the model name)"
    )
    gitops_provider: Literal["git", "github", "gitlab"] = Field("git", description="Where the GitOps repository is")
    gitops_repo: str = Field(
        "", description="git: a clone URL or path; github: owner/name; gitlab: the project id or path"
    )
    gitops_base_branch: str = Field("main", description="Branch the pull requests target")
    gitops_values_file: str = Field(
        "manifests/gitops/environments/production/values.yaml",
        description="Helm values file changed by each step ({model} is replaced)",
    )
    gitops_version_key: str = Field("inference.model.version", description="YAML key path of the model version")
    gitops_percent_key: str = Field(
        "inference.canary.trafficPercent", description="YAML key path of the canary traffic percent"
    )
    gitops_token: SecretStr = Field(SecretStr(""), description="GitHub/GitLab API token")
    gitops_api_url: str = Field(
        "", description="API base URL (default https://api.github.com or https://gitlab.com/api/v4)"
    )
    gitops_work_dir: str = Field("", description="git provider: folder for the working clone (default: ./gitops-work)")
    gitops_author: str = Field("Loopline rollout <rollout@loopline.invalid>", description="Commit author")
    # Topics and the loop.
    models_topic: str = Field(MODELS, description="Topic of ModelEvent records (consumed)")
    rollouts_topic: str = Field(ROLLOUTS, description="Topic of RolloutDecision records (produced)")
    auto_models: list[str] = Field(
        default_factory=list, description="Models whose new challengers start a rollout by themselves, JSON list "
        "(empty: every model)"
    )
    consumer_group: str = Field("loopline-rollout", description="Kafka consumer group of the model events")
    max_poll_interval_ms: int = Field(
        300_000, ge=1000, description="The consumer's max.poll.interval.ms (also how long a rebalance waits)"
    )
    champion_alias: str = Field("champion", description="Alias of the serving version")
    challenger_alias: str = Field("challenger", description="Alias whose new versions are rolled out")
    tick_seconds: float = Field(0.2, gt=0, le=10, description="How often the controller looks for due analyses")
    upstream_timeout_seconds: float = Field(
        10.0, gt=0, description="Deadline of each registry, monitoring and actuator call"
    )
    load_timeout_seconds: float = Field(
        300.0, gt=0, description="A candidate the actuator does not report serving by then aborts the rollout"
    )
    outbox_poll_seconds: float = Field(0.5, gt=0, description="How often unsent decisions are published")
