"""The features service core: what both transports call. It knows no transport.

Online reads run on the caller's thread (the server's event loop): a read is a few hundred
microseconds against a local SQLite file or one Redis round trip, cheaper than a thread hop, and a
down store fails within the store timeout. Training sets and materialization are slow, run in a worker
thread, one at a time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from loopline_common.errors import InvalidArgument, LooplineError, Unavailable
from loopline_features.backend import (
    ENTITY_TIMESTAMP,
    FeastBackend,
    FeatureServiceDescription,
    Materialized,
    TrainingSet,
)
from loopline_features.errors import STORE_DOWN, translate
from loopline_features.metrics import FeaturesMetrics
from loopline_features.online import OnlineResult

log = logging.getLogger(__name__)


class FeaturesCore:
    def __init__(
        self, *, backend: FeastBackend, metrics: FeaturesMetrics, training_sets_root: str, max_historical_rows: int
    ) -> None:
        self.backend = backend
        self.metrics = metrics
        self.training_sets_root = training_sets_root
        self.max_historical_rows = max_historical_rows

    # ---- online --------------------------------------------------------------------------------
    def get_online_features(
        self,
        *,
        feature_service: str | None,
        refs: Sequence[str] | None,
        entities: Sequence[Mapping[str, Any]],
        request_data: Sequence[Mapping[str, Any]] | None = None,
    ) -> OnlineResult:
        """Values with status and event time for each entity row (see online.OnlineReader.read)."""
        plan = self.backend.plan(feature_service=feature_service, refs=refs)
        try:
            return self.backend._reader().read(plan, entities, request_data)
        except LooplineError:
            raise
        except STORE_DOWN as exc:
            self.metrics.store_errors.labels("online_read").inc()
            raise Unavailable(
                f"the online store is unavailable: {type(exc).__name__}: {exc}", details={"store": "online"}
            ) from exc

    # ---- training sets -------------------------------------------------------------------------
    async def get_historical_features(
        self,
        *,
        feature_service: str | None,
        refs: Sequence[str] | None,
        rows: Sequence[tuple[Mapping[str, Any], datetime]],
        entity_uri: str,
        dataset_name: str,
    ) -> TrainingSet:
        """Write a point-in-time-correct training set; returns where, how many rows and its hash."""
        if rows and entity_uri:
            raise InvalidArgument("give entity rows inline or an entity_uri, not both")
        if not rows and not entity_uri:
            raise InvalidArgument("give entity rows (inline, or an entity_uri to a parquet file)")
        if len(rows) > self.max_historical_rows:
            raise InvalidArgument(f"{len(rows)} entity rows; the limit is {self.max_historical_rows}")
        return await asyncio.to_thread(
            self._historical, feature_service=feature_service, refs=refs, rows=rows, entity_uri=entity_uri,
            dataset_name=dataset_name or "training-set",
        )

    def _historical(
        self,
        *,
        feature_service: str | None,
        refs: Sequence[str] | None,
        rows: Sequence[tuple[Mapping[str, Any], datetime]],
        entity_uri: str,
        dataset_name: str,
    ) -> TrainingSet:
        entity_df = self._entity_frame(rows) if rows else self._read_entities(entity_uri)
        if len(entity_df) > self.max_historical_rows:
            raise InvalidArgument(f"{len(entity_df)} entity rows; the limit is {self.max_historical_rows}")
        try:
            return self.backend.historical(
                feature_service=feature_service, refs=refs, entity_df=entity_df, dataset_name=dataset_name,
                root=self.training_sets_root,
            )
        except LooplineError:
            raise
        except Exception as exc:
            error = translate(exc, what="building the training set")
            if error is None:
                raise
            self.metrics.store_errors.labels("historical").inc()
            raise error from exc

    @staticmethod
    def _entity_frame(rows: Sequence[tuple[Mapping[str, Any], datetime]]) -> pd.DataFrame:
        columns: dict[str, list[Any]] = {}
        for i, (values, _) in enumerate(rows):
            if ENTITY_TIMESTAMP in values:
                raise InvalidArgument(f"row {i}: {ENTITY_TIMESTAMP} is the row's event time, not a value column")
            for name in values:
                columns.setdefault(name, [])
        for i, (values, _) in enumerate(rows):
            if set(values) != set(columns):
                raise InvalidArgument(f"row {i} has columns {sorted(values)}, others have {sorted(columns)}")
            for name in columns:
                columns[name].append(values[name])
        frame = pd.DataFrame(columns)
        frame[ENTITY_TIMESTAMP] = pd.to_datetime([t for _, t in rows], utc=True)
        return frame

    @staticmethod
    def _read_entities(uri: str) -> pd.DataFrame:
        try:
            table = pq.read_table(uri if "://" in uri else str(Path(uri)))
        except (OSError, ValueError) as exc:
            raise InvalidArgument(f"cannot read entity rows from {uri!r}: {exc}") from exc
        frame = table.to_pandas()
        if ENTITY_TIMESTAMP not in frame.columns:
            raise InvalidArgument(f"{uri} has no {ENTITY_TIMESTAMP} column")
        frame[ENTITY_TIMESTAMP] = pd.to_datetime(frame[ENTITY_TIMESTAMP], utc=True)
        return frame

    # ---- materialization -----------------------------------------------------------------------
    async def materialize(
        self, *, start: datetime | None, end: datetime | None, feature_views: Sequence[str]
    ) -> Materialized:
        """Incremental (no `start`) or by range; returns the views and interval materialized."""
        done = await asyncio.to_thread(self.backend.materialize, start=start, end=end, views=feature_views)
        for view in done.feature_views:
            newest = await asyncio.to_thread(self.backend.newest_offline_event, view)
            if newest is not None:
                self.metrics.mark_fresh(view, min(newest, done.end.timestamp()))
        return done

    # ---- describe ------------------------------------------------------------------------------
    def list_feature_services(self) -> list[FeatureServiceDescription]:
        return self.backend.list_services()

    def get_feature_service(self, *, name: str) -> FeatureServiceDescription:
        if not name:
            raise InvalidArgument("name the feature service")
        return self.backend.describe(name)
