"""MLflow's JSON into Loopline's messages, the registry's bookkeeping tags, and input validation.

The registry keeps what it adds to a version as MLflow tags under `loopline.` (so MLflow stays the one
source of truth and its UI shows them): lineage, the metrics recorded at registration, the ONNX parity
outcome, artifact checksums, archival and approval.
"""

from __future__ import annotations

import json
import re
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from loopline.registry.v1 import registry_pb2 as pb
from loopline_common.errors import InvalidArgument

TAG_PREFIX = "loopline."
TAG_ARCHIVED = "loopline.archived"
TAG_ARCHIVED_BY = "loopline.archived_by"
TAG_APPROVED_BY = "loopline.approved_by"
TAG_REGISTRATION = "loopline.registration_id"
TAG_REGISTERED_BY = "loopline.registered_by"
TAG_METRIC = "loopline.metric."
TAG_LINEAGE = "loopline.lineage."
TAG_PARITY = "loopline.onnx_parity"
TAG_ARTIFACT_URI = "loopline.artifact_uri"
TAG_MODEL_FILE = "loopline.model_file"
TAG_MODEL_SHA256 = "loopline.model_sha256"
TAG_ARTIFACTS = "loopline.artifacts"
TAG_SIGNATURE = "loopline.signature"

LINEAGE_FIELDS = (
    "experiment_id", "logged_model_id", "training_set_hash", "feature_service", "code_version", "parent_version",
    "trigger", "reason",
)

_STATUS = {
    "READY": pb.VERSION_STATUS_READY,
    "PENDING_REGISTRATION": pb.VERSION_STATUS_PENDING_REGISTRATION,
    "FAILED_REGISTRATION": pb.VERSION_STATUS_FAILED_REGISTRATION,
}

# ---- validation -----------------------------------------------------------------------------------
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
# MLflow's alias rule, minus the names it reserves ("latest", "v<digits>").
ALIAS = re.compile(r"^[A-Za-z0-9_\-]{1,255}$")
RESERVED_ALIAS = re.compile(r"^(latest|v\d+)$", re.IGNORECASE)
RUN_ID = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
TAG_KEY = re.compile(r"^[A-Za-z0-9_.\-/ ]{1,250}$")
MAX_REASON = 2000
MAX_TEXT = 500
MAX_TAGS = 100
MAX_METRICS = 200
TRIGGERS = ("", "manual", "drift", "schedule")


def check_model_name(name: str, field: str = "model_name") -> str:
    if not MODEL_NAME.match(name):
        raise InvalidArgument(
            f"{field} must be 1-128 characters of letters, digits, '_', '.', '-', starting with a letter or digit",
            details={"field": field},
        )
    return name


def check_alias(alias: str, field: str = "alias") -> str:
    if not ALIAS.match(alias) or RESERVED_ALIAS.match(alias):
        raise InvalidArgument(
            f"{field} must be 1-255 letters, digits, '_' or '-', and not 'latest' or 'v<number>'",
            details={"field": field},
        )
    return alias


def check_version(version: int, field: str = "version") -> int:
    if version <= 0:
        raise InvalidArgument(f"{field} must be a positive version number", details={"field": field})
    return version


def check_text(value: str, field: str, limit: int = MAX_TEXT) -> str:
    if len(value) > limit:
        raise InvalidArgument(f"{field} is longer than {limit} characters", details={"field": field})
    return value


def check_reason(reason: str) -> str:
    return check_text(reason, "reason", MAX_REASON)


def check_page_size(size: int, *, default: int = 100, maximum: int = 1000) -> int:
    if size < 0:
        raise InvalidArgument("page_size must not be negative", details={"field": "page_size"})
    return min(size or default, maximum)


def check_tags(tags: dict[str, str], field: str = "tags") -> dict[str, str]:
    if len(tags) > MAX_TAGS:
        raise InvalidArgument(f"at most {MAX_TAGS} {field}", details={"field": field})
    for key, value in tags.items():
        if not TAG_KEY.match(key) or key.startswith(TAG_PREFIX):
            raise InvalidArgument(
                f"{field} key {key[:60]!r} is invalid (letters, digits, '_.-/ ', not starting with {TAG_PREFIX})",
                details={"field": field},
            )
        check_text(value, f"{field}[{key}]", 5000)
    return tags


# ---- MLflow JSON -> messages ----------------------------------------------------------------------
def timestamp(ms: Any) -> Timestamp:
    ts = Timestamp()
    if ms:
        ts.FromMilliseconds(int(ms))
    return ts


def tags_of(raw: dict[str, Any]) -> dict[str, str]:
    return {str(t["key"]): str(t.get("value", "")) for t in raw.get("tags", []) or []}


def version_number(raw: dict[str, Any]) -> int:
    return int(raw.get("version", 0) or 0)


def is_archived(tags: dict[str, str]) -> bool:
    return tags.get(TAG_ARCHIVED) == "true"


def stage_of(*, tags: dict[str, str], aliases: list[str], champion: str, challenger: str) -> pb.Stage:
    if is_archived(tags):
        return pb.STAGE_ARCHIVED
    if champion in aliases:
        return pb.STAGE_PRODUCTION
    if challenger in aliases:
        return pb.STAGE_STAGING
    return pb.STAGE_NONE


def recorded_metrics(tags: dict[str, str]) -> dict[str, float]:
    metrics = {}
    for key, value in tags.items():
        if key.startswith(TAG_METRIC):
            try:
                metrics[key[len(TAG_METRIC):]] = float(value)
            except ValueError:
                continue
    return metrics


def run_metrics(run: dict[str, Any]) -> dict[str, float]:
    return {str(m["key"]): float(m["value"]) for m in run.get("data", {}).get("metrics", []) or [] if "value" in m}


def run_params(run: dict[str, Any]) -> dict[str, str]:
    return {str(p["key"]): str(p.get("value", "")) for p in run.get("data", {}).get("params", []) or []}


def artifacts_of(tags: dict[str, str]) -> list[pb.ArtifactFile]:
    try:
        items = json.loads(tags.get(TAG_ARTIFACTS, "[]"))
    except ValueError:
        return []
    return [
        pb.ArtifactFile(path=str(i.get("path", "")), size_bytes=int(i.get("size", 0)), sha256=str(i.get("sha256", "")))
        for i in items
        if isinstance(i, dict)
    ]


def lineage_of(raw: dict[str, Any], tags: dict[str, str]) -> pb.Lineage:
    values = {f: tags.get(TAG_LINEAGE + f, "") for f in LINEAGE_FIELDS}
    try:
        parent = int(values.pop("parent_version") or 0)
    except ValueError:
        parent = 0
    return pb.Lineage(run_id=str(raw.get("run_id", "") or ""), parent_version=parent, **values)


def model_version(
    raw: dict[str, Any], *, aliases: list[str] | None = None, champion: str, challenger: str,
    run: dict[str, Any] | None = None,
) -> pb.ModelVersion:
    """A ModelVersion from MLflow's model_version JSON (`aliases` when MLflow's JSON lacks them, as in
    searches; `run` to add the run's params and, when none were recorded, its metrics)."""
    tags = tags_of(raw)
    held = list(raw.get("aliases", []) or []) if aliases is None else aliases
    metrics = recorded_metrics(tags)
    if not metrics and run is not None:
        metrics = run_metrics(run)
    message = pb.ModelVersion(
        model_name=str(raw.get("name", "")),
        version=version_number(raw),
        status=_STATUS.get(str(raw.get("status", "")), pb.VERSION_STATUS_UNSPECIFIED),
        stage=stage_of(tags=tags, aliases=held, champion=champion, challenger=challenger),
        aliases=sorted(held),
        created_at=timestamp(raw.get("creation_timestamp")),
        updated_at=timestamp(raw.get("last_updated_timestamp")),
        description=str(raw.get("description", "") or ""),
        source=str(raw.get("source", "") or ""),
        artifact_uri=tags.get(TAG_ARTIFACT_URI) or _source_uri(raw),
        metrics=metrics,
        params=run_params(run) if run is not None else {},
        tags={k: v for k, v in tags.items() if not k.startswith(TAG_PREFIX)},
        signature=tags.get(TAG_SIGNATURE, ""),
        lineage=lineage_of(raw, tags),
        onnx_parity_passed=tags.get(TAG_PARITY) == "passed",
        approved_by=tags.get(TAG_APPROVED_BY, ""),
        model_sha256=tags.get(TAG_MODEL_SHA256, ""),
        artifacts=artifacts_of(tags),
        registered_by=tags.get(TAG_REGISTERED_BY, ""),
    )
    return message


def _source_uri(raw: dict[str, Any]) -> str:
    source = str(raw.get("source", "") or "")
    return "" if source.startswith("models:/") else source


def model_message(raw: dict[str, Any], *, latest_version: int | None = None) -> pb.Model:
    latest = latest_version
    if latest is None:
        latest = max((version_number(v) for v in raw.get("latest_versions", []) or []), default=0)
    return pb.Model(
        name=str(raw.get("name", "")),
        description=str(raw.get("description", "") or ""),
        created_at=timestamp(raw.get("creation_timestamp")),
        updated_at=timestamp(raw.get("last_updated_timestamp")),
        tags={k: v for k, v in tags_of(raw).items() if not k.startswith(TAG_PREFIX)},
        aliases=aliases_of(raw),
        latest_version=latest,
    )


def aliases_of(raw_model: dict[str, Any]) -> dict[str, int]:
    return {str(a["alias"]): int(a["version"]) for a in raw_model.get("aliases", []) or []}


def run_summary(run: dict[str, Any]) -> pb.RunSummary:
    info = run.get("info", {})
    return pb.RunSummary(
        run_id=str(info.get("run_id", "")),
        experiment_id=str(info.get("experiment_id", "")),
        run_name=str(info.get("run_name", "")),
        status=str(info.get("status", "")),
        start_time=timestamp(info.get("start_time")),
        end_time=timestamp(info.get("end_time")),
        metrics=run_metrics(run),
        params=run_params(run),
    )
