"""Settings of the inference service (env prefix LOOPLINE_INFERENCE_)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from loopline_common.settings import ServiceSettings


class InferenceSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LOOPLINE_INFERENCE_", extra="ignore", frozen=True)

    model_name: str = Field(min_length=1, description="Name the model is served under (KServe: the predictor's name)")
    model: str = Field(
        "/mnt/models",
        description="Champion model: a local .onnx file or folder (KServe's /mnt/models), name@alias, "
        "or models:/name/<version>",
    )
    challenger: str = Field("", description="Challenger model reference, same forms (embedded mode; empty: none)")
    model_version: int = Field(1, ge=0, description="Version number reported for a champion loaded from a local path")
    challenger_version: int = Field(
        2, ge=0, description="Version number reported for a challenger loaded from a local path"
    )
    model_file: str = Field("model.onnx", description="File name of the ONNX model inside a folder or artifact")
    mode: Literal["embedded", "cluster"] = Field(
        "embedded", description="embedded: champion and challenger in one server; cluster: one pinned version per pod"
    )
    track: Literal["champion", "challenger"] = Field("champion", description="Track label of this pod (cluster mode)")
    challenger_weight: float = Field(0.0, ge=0.0, le=1.0, description="Initial challenger share of traffic")
    shadow: bool = Field(False, description="Initially score the challenger in shadow instead of splitting")
    registry_address: str = Field("", description="host:port of the registry's gRPC API (for name@alias models)")
    features_address: str = Field("", description="host:port of the features service's gRPC API (enrichment)")
    features_timeout_seconds: float = Field(1.0, gt=0, description="Deadline of one online-features call")
    missing_features: Literal["default", "reject"] = Field(
        "default", description="Missing/expired features: fill defaults and flag, or reject the request"
    )
    kafka_bootstrap: str = Field("", description="Kafka bootstrap servers; empty turns the prediction log off")
    follow_aliases: bool = Field(True, description="Swap models on AliasChanged events (embedded mode, alias refs)")
    log_flush_seconds: float = Field(
        0.2, gt=0, description="How often the prediction log is batched to Kafka (each batch has a fixed cost)"
    )
    log_max_pending: int = Field(50_000, gt=0, description="Requests waiting to be logged before drops start")
    producer_delivery_timeout_seconds: float = Field(
        30.0, gt=0, description="A log batch the broker has not taken by then is dropped (and counted)"
    )
    producer_buffer: int = Field(
        2_000, gt=0, description="Log batches the Kafka producer holds (queued or unacknowledged) before dropping"
    )
    producer_buffer_mib: int = Field(64, gt=0, description="The same bound in MiB")
    intra_op_threads: int = Field(0, ge=0, description="ONNX Runtime intra-op threads; 0 = the CPU limit")
    instance_id: str = Field("", description="Name of this instance in the prediction log (default: host name)")
    ready_without_model: bool = Field(
        False, description="Report ready before a model is loaded (the embedded stack, before any training)"
    )
    uvloop: bool = Field(True, description="Run on uvloop")
    allocator_keep_mib: int = Field(
        64, ge=0, description="Free memory glibc keeps for reuse instead of returning it (and no per-buffer mmap "
        "below 16 MiB): request-sized buffers then cost no page faults; 0 = glibc's defaults",
    )
