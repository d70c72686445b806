"""The training set of a job: from the features service (labelled rows in, features joined point-in-time
correctly, a parquet training set and its hash out) or from a dataset file; then the time-based split.

Rows are ordered by time (ties keep their order in the source), the hold-out is the newest slice and the
early-stopping slice the newest part of what remains, so no model sees rows from after what it is
evaluated on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd  # type: ignore[import-untyped]
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from loopline.training.v1 import training_pb2 as pb
from loopline_training.clients import FeaturesClient
from loopline_training.job.errors import JobError
from loopline_training.job.hashing import content_sha256
from loopline_training.spec import local_path

MIN_ROWS = 50


@dataclass(frozen=True)
class TrainingSet:
    frame: pd.DataFrame  # the window's rows, oldest first
    features: list[str]
    label: str
    timestamp: str
    content_hash: str
    source_uri: str
    # The feature service's entity join keys when the features came from it (empty for a dataset file).
    entity_keys: list[str] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return len(self.frame)


@dataclass(frozen=True)
class Split:
    train: pd.DataFrame
    early_stopping: pd.DataFrame
    holdout: pd.DataFrame
    holdout_start: datetime


def _read(uri: str, what: str) -> pa.Table:
    path = local_path(uri)
    try:
        return pq.read_table(path)
    except FileNotFoundError:
        raise JobError(f"{what} {uri} does not exist") from None
    except (OSError, pa.ArrowException) as exc:
        raise JobError(f"cannot read {what} {uri} as parquet: {exc}") from None


def _in_window(table: pa.Table, column: str, window: pb.TimeWindow, what: str) -> pa.Table:
    if column not in table.column_names:
        raise JobError(f"{what} has no timestamp column {column!r} (columns: {', '.join(table.column_names[:30])})")
    values = table.column(column)
    if not pa.types.is_timestamp(values.type):
        try:
            values = pc.cast(values, pa.timestamp("us", tz="UTC"))
        except pa.ArrowException:
            raise JobError(f"timestamp column {column!r} has type {values.type}, not a timestamp") from None
    start, end = window.start.ToDatetime(tzinfo=UTC), window.end.ToDatetime(tzinfo=UTC)
    if values.type.tz is None:  # naive timestamps are taken as UTC
        start, end = start.replace(tzinfo=None), end.replace(tzinfo=None)
    mask = pc.and_(pc.greater_equal(values, start), pc.less(values, end))
    return table.filter(mask)


def load_training_set(
    *, spec: pb.JobSpec, job_id: str, work_dir: Path, features: FeaturesClient | None, timeout: float = 600.0
) -> TrainingSet:
    """The window's rows with features, label and timestamp, and the training set's content hash."""
    if spec.dataset_uri:
        table = _in_window(_read(spec.dataset_uri, "dataset"), spec.timestamp_column, spec.window, "the dataset")
        content_hash = content_sha256(table)
        source = spec.dataset_uri
        excluded = {spec.label, spec.timestamp_column, *spec.exclude_columns}
        feature_names = [c for c in table.column_names if c not in excluded]
        entity_keys: list[str] = []
    else:
        if features is None:
            raise JobError("this job needs the features service (entity_uri), and none is configured")
        entities = _in_window(_read(spec.entity_uri, "entity file"), spec.timestamp_column, spec.window,
                              "the entity file")
        if spec.label not in entities.column_names:
            raise JobError(f"the entity file has no label column {spec.label!r}")
        if entities.num_rows == 0:
            raise JobError(f"no labelled rows in the window {_window_text(spec.window)}")
        work_dir.mkdir(parents=True, exist_ok=True)
        entity_path = work_dir / "entities.parquet"
        if spec.timestamp_column != "event_timestamp":  # the features service reads `event_timestamp`
            entities = entities.rename_columns(
                ["event_timestamp" if c == spec.timestamp_column else c for c in entities.column_names])
        pq.write_table(entities, entity_path)
        # The model's inputs are the feature service's features: the training/serving contract.
        contract = features.feature_service(spec.feature_service)
        answer = features.historical(feature_service=spec.feature_service, entity_uri=str(entity_path),
                                     dataset_name=f"{spec.model_name}-{job_id[:12]}", timeout=timeout)
        table = _read(answer.uri, "training set")
        if spec.timestamp_column != "event_timestamp" and "event_timestamp" in table.column_names:
            table = table.rename_columns(
                [spec.timestamp_column if c == "event_timestamp" else c for c in table.column_names])
        content_hash = answer.content_sha256 or content_sha256(table)
        source = answer.uri
        missing = [name for name in contract.features if name not in table.column_names]
        if missing:
            raise JobError(f"the training set lacks feature(s) {', '.join(missing)} of {spec.feature_service}")
        feature_names = [c for c in table.column_names if c in set(contract.features) and c != spec.label]
        entity_keys = contract.join_keys
    if spec.label not in table.column_names:
        raise JobError(f"the training set has no label column {spec.label!r} "
                       f"(columns: {', '.join(table.column_names[:30])})")
    if not feature_names:
        raise JobError("the training set has no feature columns")
    frame = table.to_pandas()
    frame[spec.timestamp_column] = pd.to_datetime(frame[spec.timestamp_column], utc=True)
    frame = frame.sort_values(spec.timestamp_column, kind="mergesort").reset_index(drop=True)
    frame[spec.label] = _binary_label(frame[spec.label], spec.label)
    if len(frame) < MIN_ROWS:
        raise JobError(f"only {len(frame)} rows in the window {_window_text(spec.window)}; at least {MIN_ROWS} needed")
    return TrainingSet(frame=frame, features=feature_names, label=spec.label, timestamp=spec.timestamp_column,
                       content_hash=content_hash, source_uri=source, entity_keys=entity_keys)


def _window_text(window: pb.TimeWindow) -> str:
    return f"[{window.start.ToJsonString()}, {window.end.ToJsonString()})"


def _binary_label(values: pd.Series, name: str) -> pd.Series:
    if values.isna().any():
        raise JobError(f"label column {name!r} has {int(values.isna().sum())} missing values")
    if values.dtype == bool:
        return values.astype(np.int64)
    try:
        numeric = pd.to_numeric(values)
    except (ValueError, TypeError):
        raise JobError(f"label column {name!r} must hold 0/1 values; it holds values such as {values.iloc[0]!r}") \
            from None
    found = sorted(set(numeric.unique().tolist()))
    if not set(found) <= {0, 1}:
        raise JobError(f"label column {name!r} must hold 0/1 values; found {found[:10]}")
    return numeric.astype(np.int64)


def split(data: TrainingSet, validation: pb.TimeHoldout) -> Split:
    """Time-based: hold-out = newest rows; early-stopping = newest rows of the rest; train = the oldest."""
    frame, ts = data.frame, data.timestamp
    if validation.WhichOneof("boundary") == "holdout_start":
        boundary = pd.Timestamp(validation.holdout_start.ToDatetime(tzinfo=UTC))
    else:
        boundary = _boundary(frame[ts], validation.holdout_fraction)
    rest, holdout = frame[frame[ts] < boundary], frame[frame[ts] >= boundary]
    es_boundary = _boundary(rest[ts], validation.early_stopping_fraction) if len(rest) else boundary
    train, early = rest[rest[ts] < es_boundary], rest[rest[ts] >= es_boundary]
    for part, name in ((train, "training"), (early, "early-stopping"), (holdout, "hold-out")):
        if len(part) == 0:
            raise JobError(f"the {name} slice of the time split is empty; widen the window or change the split")
        if part[data.label].nunique() < 2:
            raise JobError(f"the {name} slice ({len(part)} rows) holds only label {int(part[data.label].iloc[0])}; "
                           "both classes are needed")
    return Split(train=train, early_stopping=early, holdout=holdout, holdout_start=boundary.to_pydatetime())


def _boundary(stamps: pd.Series, fraction: float) -> pd.Timestamp:
    """The time from which the newest `fraction` of the rows start (rows sharing that time go with them)."""
    n = len(stamps)
    held = max(1, math.ceil(n * fraction))
    return pd.Timestamp(stamps.iloc[n - held])
