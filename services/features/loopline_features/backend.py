"""The Feast adapter: one object owning the feature store for reads, plans, training sets and materialization.

Two FeatureStore instances over the same config: one for the online hot path (its online store client
is used only from the server's event loop), one for slow batch work (materialization, training sets,
pushes) run in worker threads, so that a long job never shares a connection with a read.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd  # type: ignore[import-untyped]
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]
import pyarrow.fs as pafs  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from loopline_common.errors import InvalidArgument, NotFound
from loopline_features import repo
from loopline_features.aggregates import (
    AGGREGATE_TAG,
    STREAM_SOURCE_TAG,
    STREAM_WINDOW_TAG,
    SpecError,
    StreamView,
    empty_rows,
    parse_aggregate,
    parse_window,
)
from loopline_features.errors import translate
from loopline_features.online import OnDemandRead, OnlineReader, Plan, ViewRead

log = logging.getLogger(__name__)

ENTITY_TIMESTAMP = "event_timestamp"
_ROW_ID = "__loopline_row"
_DATASET_NAME = re.compile(r"^[A-Za-z0-9_-]{1,100}$")
_INTEGER_TYPES = {"INT64", "INT32"}


@dataclass(frozen=True)
class FeatureDescription:
    ref: str
    feature_view: str
    name: str
    value_type: str
    ttl_seconds: float | None
    join_keys: tuple[str, ...]
    on_demand: bool


@dataclass(frozen=True)
class FeatureServiceDescription:
    name: str
    description: str
    tags: dict[str, str]
    features: tuple[FeatureDescription, ...]


@dataclass(frozen=True)
class TrainingSet:
    uri: str
    row_count: int
    content_sha256: str
    columns: list[str]


@dataclass(frozen=True)
class Materialized:
    feature_views: list[str]
    start: datetime | None
    end: datetime


def _ttl_seconds(ttl: timedelta | None) -> float | None:
    if ttl is None or ttl.total_seconds() <= 0:
        return None
    return ttl.total_seconds()


def _dtype_name(dtype: Any) -> str:
    return str(dtype.to_value_type().name)


class FeastBackend:
    """The feature repo applied to one store, and everything the API does with it."""

    def __init__(
        self, *, repo_dir: Path, data_dir: Path, environment: str, max_entities: int, store_timeout_seconds: float
    ) -> None:
        self.repo_dir = repo_dir
        self.data_dir = data_dir
        self.environment = environment
        self.max_entities = max_entities
        self.store_timeout_seconds = store_timeout_seconds
        self.online = repo.build_store(repo_dir=repo_dir, data_dir=data_dir, environment=environment)
        self.batch = repo.build_store(repo_dir=repo_dir, data_dir=data_dir, environment=environment)
        self._plans: dict[Any, Plan] = {}
        self._batch_lock = threading.Lock()
        self.reader: OnlineReader | None = None
        self._views: dict[str, Any] = {}
        self._odfvs: dict[str, Any] = {}
        self._services: dict[str, Any] = {}
        self._entities: dict[str, Any] = {}

    # ---- start-up ----------------------------------------------------------------------------------
    def apply(self) -> dict[str, int]:
        """Register the repo's declarations, make sure offline files exist, and load the registry."""
        contents = repo.load_declarations(self.repo_dir)
        counts = repo.apply(self.batch, contents)
        self.reload()
        self.ensure_offline_files()
        return counts

    def reload(self) -> None:
        """Read the registry into lookup tables; plans are rebuilt on demand."""
        store = self.online
        store.refresh_registry()  # type: ignore[no-untyped-call]
        self._entities = {e.name: e for e in store.list_entities()}
        self._views = {v.name: v for v in store.list_feature_views()}
        self._odfvs = {v.name: v for v in store.list_on_demand_feature_views()}
        self._services = {s.name: s for s in store.list_feature_services()}
        self.batch.refresh_registry()  # type: ignore[no-untyped-call]
        self._plans.clear()
        self._install_redis_client()
        self.reader = OnlineReader(store=self.online, max_entities=self.max_entities)

    def _install_redis_client(self) -> None:
        """Give a Redis online store a client that fails fast: bounded socket timeouts, no retry back-off.

        redis-py's default retries a failed command three times with up to seconds of back-off, which
        turns "the store is down" into a multi-second hang; the service answers UNAVAILABLE at once.
        """
        for store in (self.online, self.batch):
            online_store: Any = store._get_provider().online_store
            if type(online_store).__name__ != "RedisOnlineStore":
                continue
            config = store.config.online_store
            if str(config.redis_type.value) != "redis":
                continue  # cluster and sentinel keep Feast's client
            from redis import Redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry

            nodes, kwargs = online_store._parse_connection_string(config.connection_string)
            kwargs.setdefault("socket_timeout", self.store_timeout_seconds)
            kwargs.setdefault("socket_connect_timeout", self.store_timeout_seconds)
            online_store._client = Redis(
                host=nodes[0]["host"], port=int(nodes[0]["port"]), retry=Retry(NoBackoff(), 0), **kwargs
            )

    def warm_up(self) -> None:
        """Build the read plan of every feature service now rather than on its first request."""
        for name in self._services:
            self.plan(feature_service=name, refs=None)

    def _reader(self) -> OnlineReader:
        if self.reader is None:
            raise RuntimeError("the feature repo is not loaded yet")
        return self.reader

    def ping(self) -> bool:
        """Readiness: the online store answers."""
        online_store: Any = self.online._get_provider().online_store
        if type(online_store).__name__ == "RedisOnlineStore":
            return bool(online_store._get_client(self.online.config.online_store).ping())
        conn = online_store._get_conn(self.online.config)
        conn.execute("SELECT 1").fetchone()
        return True

    # ---- the objects -------------------------------------------------------------------------------
    def stream_views(self) -> list[StreamView]:
        """The streaming views declared by tags (see feature_repo/feature_views.py)."""
        views = []
        for fv in self._views.values():
            source = fv.tags.get(STREAM_SOURCE_TAG)
            if not source:
                continue
            if fv.stream_source is None or type(fv.stream_source).__name__ != "PushSource":
                raise SpecError(f"streaming view {fv.name} needs a push source")
            if len(fv.entity_columns) != 1:
                raise SpecError(f"streaming view {fv.name} must have exactly one entity")
            aggregates = []
            for f in fv.features:
                tag = f.tags.get(AGGREGATE_TAG)
                if not tag:
                    raise SpecError(f"streaming view {fv.name}: feature {f.name} has no {AGGREGATE_TAG} tag")
                aggregates.append(parse_aggregate(f.name, tag, integer=_dtype_name(f.dtype) in _INTEGER_TYPES))
            views.append(
                StreamView(
                    name=fv.name,
                    push_source=fv.stream_source.name,
                    source=source,
                    join_key=fv.entity_columns[0].name,
                    window_seconds=parse_window(fv.tags.get(STREAM_WINDOW_TAG, "")),
                    aggregates=tuple(aggregates),
                )
            )
        return sorted(views, key=lambda v: v.name)

    def offline_path(self, view_name: str) -> Path:
        fv = self._views[view_name]
        path = Path(fv.batch_source.path)
        return path if path.is_absolute() else self.data_dir / path

    def ensure_offline_files(self) -> None:
        """An empty parquet file with the right schema for each streaming view that has none yet
        (pushes append to it)."""
        for view in self.stream_views():
            path = self.offline_path(view.name)
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                table = pa.Table.from_pandas(empty_rows(view), preserve_index=False)
                pq.write_table(table.cast(table.schema.set(0, pa.field(view.join_key, pa.string()))), path)

    def newest_offline_event(self, view_name: str) -> float | None:
        """Epoch seconds of the newest row in a view's offline source (for freshness), or None."""
        try:
            path = self.offline_path(view_name)
            column = pq.read_table(path, columns=[ENTITY_TIMESTAMP]).column(ENTITY_TIMESTAMP)
        except (OSError, KeyError, pa.ArrowInvalid):
            return None
        newest = pc.max(column).as_py()
        return newest.timestamp() if newest is not None else None

    # ---- feature selection -------------------------------------------------------------------------
    def plan(self, *, feature_service: str | None, refs: Sequence[str] | None) -> Plan:
        key: Any = ("service", feature_service) if feature_service else ("refs", tuple(refs or ()))
        plan = self._plans.get(key)
        if plan is None:
            plan = self._build_plan(feature_service=feature_service, refs=refs)
            self._plans[key] = self._reader().prepare(plan)
        return plan

    def resolve_refs(self, *, feature_service: str | None, refs: Sequence[str] | None) -> list[tuple[str, str]]:
        """(view, feature) pairs of a selection, validated; NotFound / InvalidArgument otherwise."""
        if feature_service:
            service = self._services.get(feature_service)
            if service is None:
                raise NotFound(
                    f"feature service {feature_service!r} does not exist "
                    f"(there are: {', '.join(sorted(self._services)) or 'none'})",
                    details={"feature_service": feature_service},
                )
            return [(p.name_to_use(), f.name) for p in service.feature_view_projections for f in p.features]
        if not refs:
            raise InvalidArgument("name a feature service or at least one feature reference")
        pairs: list[tuple[str, str]] = []
        seen: set[tuple[str, str]] = set()
        for ref in refs:
            view, sep, feature = ref.partition(":")
            if not sep or not view or not feature:
                raise InvalidArgument(f"feature reference {ref!r} is not <feature view>:<feature>",
                                      details={"ref": ref})
            obj = self._views.get(view) or self._odfvs.get(view)
            if obj is None:
                raise NotFound(f"feature view {view!r} of reference {ref!r} does not exist", details={"ref": ref})
            if feature not in {f.name for f in obj.features}:
                raise NotFound(f"feature view {view!r} has no feature {feature!r}", details={"ref": ref})
            if (view, feature) in seen:
                raise InvalidArgument(f"feature reference {ref!r} is given twice", details={"ref": ref})
            seen.add((view, feature))
            pairs.append((view, feature))
        return pairs

    def _build_plan(self, *, feature_service: str | None, refs: Sequence[str] | None) -> Plan:
        pairs = self.resolve_refs(feature_service=feature_service, refs=refs)
        views: dict[str, ViewRead] = {}
        on_demand: dict[str, OnDemandRead] = {}
        join_keys: dict[str, int] = {}
        request_fields: list[str] = []
        names = [f"{v}:{f}" for v, f in pairs]

        def view_read(name: str) -> ViewRead:
            read = views.get(name)
            if read is None:
                fv = self._views[name]
                keys = tuple(c.name for c in fv.entity_columns)
                for column in fv.entity_columns:
                    join_keys[column.name] = column.dtype.to_value_type().value
                read = views[name] = ViewRead(fv, name, keys, [], [], _ttl_seconds(fv.ttl))
            return read

        for pos, (view, feature) in enumerate(pairs):
            if view in self._views:
                read = view_read(view)
                read.features.append(feature)
                read.positions.append(pos)
            else:
                odfv = self._odfvs[view]
                od = on_demand.get(view)
                if od is None:
                    fields = [f.name for s in odfv.source_request_sources.values() for f in s.schema]
                    od = on_demand[view] = OnDemandRead(odfv, view, [], [], fields, [])
                    request_fields.extend(f for f in fields if f not in request_fields)
                od.features.append(feature)
                od.positions.append(pos)
        for od in on_demand.values():  # inputs an on-demand view needs but the caller did not ask for
            for projection in od.odfv.source_feature_view_projections.values():
                read = view_read(projection.name)
                for f in projection.features:
                    if f.name not in read.features:
                        read.features.append(f.name)
                        read.positions.append(-1)
        return Plan(names, list(views.values()), list(on_demand.values()), join_keys, request_fields)

    # ---- describe ----------------------------------------------------------------------------------
    def describe(self, name: str) -> FeatureServiceDescription:
        service = self._services.get(name)
        if service is None:
            raise NotFound(f"feature service {name!r} does not exist", details={"feature_service": name})
        features = []
        for projection in service.feature_view_projections:
            view_name = projection.name_to_use()
            fv = self._views.get(projection.name)
            for f in projection.features:
                features.append(
                    FeatureDescription(
                        ref=f"{view_name}:{f.name}",
                        feature_view=view_name,
                        name=f.name,
                        value_type=_dtype_name(f.dtype),
                        ttl_seconds=_ttl_seconds(fv.ttl) if fv is not None else None,
                        join_keys=tuple(c.name for c in fv.entity_columns) if fv is not None else (),
                        on_demand=fv is None,
                    )
                )
        return FeatureServiceDescription(service.name, service.description, dict(service.tags), tuple(features))

    def list_services(self) -> list[FeatureServiceDescription]:
        return [self.describe(name) for name in sorted(self._services)]

    # ---- training sets -----------------------------------------------------------------------------
    def historical(
        self,
        *,
        feature_service: str | None,
        refs: Sequence[str] | None,
        entity_df: pd.DataFrame,
        dataset_name: str,
        root: str,
    ) -> TrainingSet:
        """A point-in-time-correct training set for `entity_df`, written as parquet under `root`."""
        if not _DATASET_NAME.match(dataset_name):
            raise InvalidArgument(f"dataset name {dataset_name!r} must be 1-100 letters, digits, '-' or '_'")
        pairs = self.resolve_refs(feature_service=feature_service, refs=refs)
        needed: set[str] = set()
        for view, _ in pairs:
            if view in self._views:
                needed.update(c.name for c in self._views[view].entity_columns)
            else:
                odfv = self._odfvs[view]
                needed.update(f.name for s in odfv.source_request_sources.values() for f in s.schema)
                for p in odfv.source_feature_view_projections.values():
                    needed.update(c.name for c in self._views[p.name].entity_columns)
        missing = sorted(needed - set(entity_df.columns))
        if missing:
            raise InvalidArgument(f"entity rows lack column(s) {', '.join(missing)} that the features need")
        if ENTITY_TIMESTAMP not in entity_df.columns:
            raise InvalidArgument("entity rows need an event time")
        with self._batch_lock:
            frame = self._point_in_time(pairs, entity_df)
        table = pa.Table.from_pandas(frame, preserve_index=False)
        table = canonical(table, list(entity_df.columns))
        digest = content_sha256(table)
        base = root.rstrip("/")
        uri = f"{base}/{dataset_name}/{digest[:16]}.parquet"
        filesystem, path = pafs.FileSystem.from_uri(uri if "://" in uri else str(Path(uri).resolve()))
        filesystem.create_dir(path.rsplit("/", 1)[0], recursive=True)
        pq.write_table(table, path, filesystem=filesystem)
        return TrainingSet(uri=uri, row_count=table.num_rows, content_sha256=digest, columns=table.column_names)

    def _point_in_time(self, pairs: list[tuple[str, str]], entity_df: pd.DataFrame) -> pd.DataFrame:
        """Feast's point-in-time join, one feature view at a time, left-joined back onto every entity row.

        Feast's file (dask) offline store drops an entity row entirely when a view has rows for that
        entity but none within the TTL before the row's time; joining view by view onto a row id keeps
        every entity row and leaves only that view's features empty. On-demand features are computed
        afterwards with the view's own transformation, as on the online path.
        """
        n = len(entity_df)
        frame = entity_df.reset_index(drop=True).copy()
        row_ids = pd.RangeIndex(n)
        keyed = frame.assign(**{_ROW_ID: row_ids})
        wanted: dict[str, list[str]] = {}
        for view, feature in pairs:
            if view in self._views:
                wanted.setdefault(view, []).append(feature)
            else:
                for projection in self._odfvs[view].source_feature_view_projections.values():
                    for f in projection.features:
                        if f.name not in wanted.setdefault(projection.name, []):
                            wanted[projection.name].append(f.name)
        columns: dict[tuple[str, str], pd.Series] = {}
        for view, features in wanted.items():
            keys = [c.name for c in self._views[view].entity_columns]
            subset = keyed[[*keys, ENTITY_TIMESTAMP, _ROW_ID]]
            job = self.batch.get_historical_features(
                entity_df=subset, features=[f"{view}:{f}" for f in features], full_feature_names=True
            )
            result = job.to_df().drop_duplicates(_ROW_ID, keep="last").set_index(_ROW_ID).reindex(row_ids)
            for f in features:
                columns[(view, f)] = result[f"{view}__{f}"]
        for view, feature in pairs:
            if view in self._views:
                frame[feature] = columns[(view, feature)].to_numpy()
        for odfv_name in dict.fromkeys(v for v, _ in pairs if v not in self._views):
            odfv = self._odfvs[odfv_name]
            inputs: dict[str, list[Any]] = {}
            for (view, feature), series in columns.items():
                values = [None if pd.isna(x) else x for x in series.tolist()]
                inputs.setdefault(feature, values)
                inputs.setdefault(f"{view}__{feature}", values)
            for source in odfv.source_request_sources.values():
                for field in source.schema:
                    inputs[field.name] = frame[field.name].tolist()
            output = odfv.transform_dict(inputs)
            for view, feature in pairs:
                if view == odfv_name:
                    frame[feature] = output.get(feature, output.get(f"{odfv_name}__{feature}"))
        return frame

    # ---- materialization ---------------------------------------------------------------------------
    def materialize(self, *, start: datetime | None, end: datetime | None, views: Sequence[str]) -> Materialized:
        unknown = [v for v in views if v not in self._views]
        if unknown:
            raise NotFound(f"feature view(s) {', '.join(unknown)} do not exist", details={"views": ",".join(unknown)})
        end = end or datetime.now(UTC)
        if start is not None and start >= end:
            raise InvalidArgument("start_time must be before end_time")
        names = list(views) or sorted(n for n, v in self._views.items() if v.online)
        with self._batch_lock:
            try:
                if start is None:
                    self.batch.materialize_incremental(end_date=end, feature_views=names)
                else:
                    self.batch.materialize(start_date=start, end_date=end, feature_views=names)
            except Exception as exc:
                error = translate(exc, what="materialization")
                if error is None:
                    raise
                raise error from exc
        return Materialized(names, start, end)

    # ---- pushes (stream ingestion) -----------------------------------------------------------------
    def push(self, push_source: str, frame: pd.DataFrame, *, offline: bool) -> None:
        """Push rows through a Feast push source: online, or to the offline history."""
        from feast.data_source import PushMode

        with self._batch_lock:
            self.batch.push(push_source, frame, to=PushMode.OFFLINE if offline else PushMode.ONLINE)


def canonical(table: pa.Table, entity_columns: list[str]) -> pa.Table:
    """The training set in a canonical form: entity columns by name, then the event time, then the
    features in the order asked; rows sorted by every column in that order. The same request gives the
    same bytes, whichever transport (or map order) the entity rows came through."""
    entity = sorted(c for c in entity_columns if c in table.column_names and c != ENTITY_TIMESTAMP)
    ordered = [*entity, ENTITY_TIMESTAMP, *(c for c in table.column_names if c not in entity and c != ENTITY_TIMESTAMP)]
    table = table.select(ordered)
    keys = list(ordered)
    sortable = [c for c in keys if not pa.types.is_nested(table.schema.field(c).type)]
    order = pc.sort_indices(table, sort_keys=[(c, "ascending") for c in sortable])
    table = table.take(order)
    return table.replace_schema_metadata(None)


def content_sha256(table: pa.Table) -> str:
    """SHA-256 of the table's content: schema and rows through the Arrow IPC stream format."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table.combine_chunks())
    return hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()

