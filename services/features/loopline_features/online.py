"""The online read path: resolve what is asked into a read plan once, then read rows with it fast.

`FeatureStore.get_online_features` re-resolves the request, re-reads the registry cache, and converts
through generic structures into Feast's response on every call; at 1 entity x 10 features that costs
more than the store read itself. Here a request's feature selection is resolved once into a `Plan`
(cached), and each call only validates the entity keys, reads the online store and applies TTLs.

How the store is read, per Feast online store type:
  sqlite  directly, in Feast's table layout (table names from Feast's `compute_table_id`, entity keys
          from Feast's `serialize_entity_key`, values as Feast `Value` protos), over a connection of our
          own without sqlite3's type converters, only the requested features, one statement per view;
  redis   one pipelined HMGET per (entity, view) for the whole call, in Feast's key layout (entity key +
          project, murmur3 field names, `_ts:<view>` timestamps) through the store's client;
  others  Feast's `OnlineStore.online_read`, one call per view.
A test reads the same rows through the Feast SDK and through this path, for both stores, and compares.
On-demand views run through Feast's own transformation (`transform_dict`).
"""

from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.helpers import _mmh3, compute_table_id
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.value_type import ValueType

from loopline_common.errors import InvalidArgument

PRESENT = 1
NOT_FOUND = 2
EXPIRED = 3
STATUS_NAMES = {PRESENT: "PRESENT", NOT_FOUND: "NOT_FOUND", EXPIRED: "EXPIRED"}

# Python types accepted for each entity key value type (bool is not an int here).
_KEY_TYPES: dict[int, tuple[type, ...]] = {
    ValueType.STRING.value: (str,),
    ValueType.INT64.value: (int,),
    ValueType.INT32.value: (int,),
}
_KEY_FIELD = {
    ValueType.STRING.value: "string_val",
    ValueType.INT64.value: "int64_val",
    ValueType.INT32.value: "int32_val",
}


def python_value(value: Any) -> Any:
    """A Feast ValueProto as a Python scalar (None when unset)."""
    kind = value.WhichOneof("val")
    if kind is None or kind == "null_val":
        return None
    return getattr(value, kind)


@dataclass
class ViewRead:
    """What one call reads from one feature view."""

    view: Any  # feast FeatureView
    name: str
    join_keys: tuple[str, ...]
    features: list[str]
    positions: list[int]  # where each feature goes in the output (-1: read only as an on-demand input)
    ttl_seconds: float | None
    redis_fields: list[bytes] = field(default_factory=list)
    sql: str = ""


@dataclass
class OnDemandRead:
    odfv: Any  # feast OnDemandFeatureView
    name: str
    features: list[str]
    positions: list[int]
    request_fields: list[str]
    inputs: list[tuple[str, int]]  # (feature name, index into the plan's flat read list)


@dataclass
class Plan:
    """A resolved feature selection."""

    feature_names: list[str]
    views: list[ViewRead]
    on_demand: list[OnDemandRead]
    join_keys: dict[str, int]  # join key -> ValueType value
    request_fields: list[str]

    @property
    def width(self) -> int:
        return len(self.feature_names)


@dataclass
class OnlineResult:
    """Values, statuses and event times (epoch seconds or None) per entity row, in `feature_names` order."""

    feature_names: list[str]
    values: list[list[Any]]
    statuses: list[list[int]]
    event_times: list[list[float | None]]


def parse_key(row_index: int, name: str, raw: Any, value_type: int) -> ValueProto:
    accepted = _KEY_TYPES.get(value_type)
    if accepted is None:
        raise InvalidArgument(f"join key {name} has a type this server cannot look up ({value_type})")
    if isinstance(raw, bool) or not isinstance(raw, accepted):
        want = ValueType(value_type).name.lower()
        got = "null" if raw is None else type(raw).__name__
        raise InvalidArgument(
            f"entity row {row_index}: join key {name} must be a {want}, got {got}",
            details={"row": str(row_index), "join_key": name, "expected": want, "got": got},
        )
    proto = ValueProto()
    setattr(proto, _KEY_FIELD[value_type], raw)
    return proto


class OnlineReader:
    """Reads plans' rows from one Feast online store."""

    def __init__(self, *, store: Any, max_entities: int) -> None:
        self.store = store
        self.config = store.config
        self.project = store.config.project
        self.key_version = store.config.entity_key_serialization_version
        self.online_store = store._get_provider().online_store
        self.max_entities = max_entities
        kind = type(self.online_store).__name__
        self.is_redis = kind == "RedisOnlineStore"
        self.is_sqlite = kind == "SqliteOnlineStore"
        self._sqlite: sqlite3.Connection | None = None
        self._key_cache: dict[tuple[tuple[str, ...], tuple[Any, ...]], bytes] = {}
        self._ts_cache: dict[Any, float] = {}
        self._value_cache: dict[bytes, Any] = {}

    def prepare(self, plan: Plan) -> Plan:
        if self.is_sqlite:
            versioning = self.config.registry.enable_online_feature_view_versioning
            for read in plan.views:
                table = compute_table_id(self.project, read.view, versioning).replace('"', '""')
                marks = ",".join("?" * len(read.features))
                # A quoted table name from Feast; values are bound parameters.
                select = f'SELECT entity_key, feature_name, value, event_ts FROM "{table}" '  # noqa: S608
                read.sql = select + f"WHERE feature_name IN ({marks}) AND entity_key IN "
        if self.is_redis:
            for read in plan.views:
                read.redis_fields = [_mmh3(f"{read.name}:{f}") for f in read.features] + [
                    f"_ts:{read.name}".encode()
                ]
        return plan

    # ---- the hot path ----------------------------------------------------------------------------
    def read(
        self,
        plan: Plan,
        rows: Sequence[Mapping[str, Any]],
        request_data: Sequence[Mapping[str, Any]] | None = None,
        *,
        now: float | None = None,
    ) -> OnlineResult:
        """Look `rows` (join key -> Python value) up with `plan`; raises InvalidArgument on bad input."""
        n = len(rows)
        if n == 0:
            raise InvalidArgument("no entity rows: give at least one")
        if n > self.max_entities:
            raise InvalidArgument(
                f"{n} entity rows in one call; the limit is {self.max_entities}",
                details={"entities": str(n), "limit": str(self.max_entities)},
            )
        now = time.time() if now is None else now
        keys = self._validate(plan, rows)
        width = plan.width
        values: list[list[Any]] = [[None] * width for _ in range(n)]
        statuses: list[list[int]] = [[NOT_FOUND] * width for _ in range(n)]
        times: list[list[float | None]] = [[None] * width for _ in range(n)]
        hidden: dict[tuple[str, str], list[Any]] = {}

        if self.is_sqlite:
            per_view = self._read_sqlite(plan, keys)
        elif self.is_redis:
            per_view = self._read_redis(plan, keys)
        else:
            per_view = self._read_generic(plan, keys)
        for read, (entity_rows, row_ts) in zip(plan.views, per_view, strict=True):
            ttl = read.ttl_seconds
            for i in range(n):
                ts = row_ts[i]
                data = entity_rows[i]
                if ts is None or data is None:
                    continue
                status = EXPIRED if ttl is not None and now - ts > ttl else PRESENT
                vrow, srow, trow = values[i], statuses[i], times[i]
                for feature, pos, val in zip(read.features, read.positions, data, strict=True):
                    if pos < 0:
                        hidden.setdefault((read.name, feature), [None] * n)[i] = val
                        continue
                    if val is None:
                        continue
                    vrow[pos] = val
                    srow[pos] = status
                    trow[pos] = ts
        if plan.on_demand:
            self._on_demand(plan, values, statuses, times, hidden, request_data, now)
        return OnlineResult(plan.feature_names, values, statuses, times)

    def _validate(self, plan: Plan, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, ValueProto]]:
        wanted = plan.join_keys
        out: list[dict[str, ValueProto]] = []
        for i, row in enumerate(rows):
            parsed: dict[str, ValueProto] = {}
            for name, value_type in wanted.items():
                if name not in row:
                    raise InvalidArgument(
                        f"entity row {i} lacks join key {name} (these features need: {', '.join(sorted(wanted))})",
                        details={"row": str(i), "join_key": name},
                    )
                parsed[name] = parse_key(i, name, row[name], value_type)
            if len(row) != len(parsed):
                extra = sorted(set(row) - set(wanted))
                raise InvalidArgument(
                    f"entity row {i} has join key(s) no requested feature uses: {', '.join(extra)}",
                    details={"row": str(i), "unknown": ",".join(extra)},
                )
            out.append(parsed)
        return out

    def _entity_key(self, read: ViewRead, key: dict[str, ValueProto]) -> EntityKeyProto:
        return EntityKeyProto(join_keys=read.join_keys, entity_values=[key[k] for k in read.join_keys])

    def _read_generic(
        self, plan: Plan, keys: list[dict[str, ValueProto]]
    ) -> list[tuple[list[list[Any] | None], list[float | None]]]:
        """One `online_read` per view, over the distinct entities of the call."""
        results = []
        for read in plan.views:
            index: dict[bytes, int] = {}
            unique: list[EntityKeyProto] = []
            where: list[int] = []
            for key in keys:
                ek = self._entity_key(read, key)
                token = ek.SerializeToString(deterministic=True)
                slot = index.get(token)
                if slot is None:
                    slot = index[token] = len(unique)
                    unique.append(ek)
                where.append(slot)
            fetched = self.online_store.online_read(self.config, read.view, unique, list(read.features))
            rows_u: list[list[Any] | None] = []
            ts_u: list[float | None] = []
            for ts, data in fetched:
                if ts is None or data is None:
                    rows_u.append(None)
                    ts_u.append(None)
                    continue
                rows_u.append([python_value(data[f]) if f in data else None for f in read.features])
                ts_u.append(ts.timestamp())
            results.append(([rows_u[s] for s in where], [ts_u[s] for s in where]))
        return results

    def _serialized_key(self, read: ViewRead, key: dict[str, ValueProto]) -> bytes:
        token = (read.join_keys, tuple(python_value(key[k]) for k in read.join_keys))
        cached = self._key_cache.get(token)
        if cached is None:
            if len(self._key_cache) > 100_000:
                self._key_cache.clear()
            cached = self._key_cache[token] = serialize_entity_key(self._entity_key(read, key), self.key_version)
        return cached

    def _value(self, raw: bytes) -> Any:
        """A stored Feast Value as a Python scalar, memoized by its bytes (values repeat a lot)."""
        cache = self._value_cache
        if raw in cache:
            return cache[raw]
        if len(cache) > 200_000:
            cache.clear()
        value = ValueProto()
        value.ParseFromString(raw)
        result = cache[raw] = python_value(value)
        return result

    def _connection(self) -> sqlite3.Connection:
        if self._sqlite is None:
            path = self.online_store._get_db_path(self.config)
            # No detect_types: timestamps are parsed here, only for the rows read.
            self._sqlite = sqlite3.connect(path, check_same_thread=False, cached_statements=256)
        return self._sqlite

    def _seconds(self, stored: Any) -> float:
        """Epoch seconds of a stored `event_ts`, read exactly as Feast's SQLite store reads it back (it
        writes whole epoch seconds of the naive-UTC time; older rows may hold ISO text)."""
        cached = self._ts_cache.get(stored)
        if cached is None:
            if len(self._ts_cache) > 100_000:
                self._ts_cache.clear()
            if isinstance(stored, int | float):
                moment = datetime.fromtimestamp(int(stored))
            else:
                moment = datetime.fromisoformat(stored.decode() if isinstance(stored, bytes) else stored)
            cached = moment.replace(tzinfo=UTC).timestamp()
            self._ts_cache[stored] = cached
        return cached

    def _read_sqlite(
        self, plan: Plan, keys: list[dict[str, ValueProto]]
    ) -> list[tuple[list[list[Any] | None], list[float | None]]]:
        conn = self._connection()
        results = []
        for read in plan.views:
            serialized = [self._serialized_key(read, key) for key in keys]
            unique = list(dict.fromkeys(serialized))
            sql = read.sql + "(" + ",".join("?" * len(unique)) + ")"
            found: dict[bytes, tuple[dict[str, Any], float]] = {}
            for entity_key, feature, raw, ts in conn.execute(sql, (*read.features, *unique)):
                entry = found.get(entity_key)
                if entry is None:
                    entry = found[entity_key] = ({}, self._seconds(ts))
                entry[0][feature] = self._value(raw)
            rows: list[list[Any] | None] = []
            stamps: list[float | None] = []
            for ek in serialized:
                hit = found.get(ek)
                if hit is None:
                    rows.append(None)
                    stamps.append(None)
                else:
                    rows.append([hit[0].get(f) for f in read.features])
                    stamps.append(hit[1])
            results.append((rows, stamps))
        return results

    def _read_redis(
        self, plan: Plan, keys: list[dict[str, ValueProto]]
    ) -> list[tuple[list[list[Any] | None], list[float | None]]]:
        """One pipelined round trip: HMGET per (entity, view), Feast's key layout."""
        client = self.online_store._get_client(self.config.online_store)
        project = self.project.encode()
        commands: list[tuple[bytes, list[bytes]]] = []
        for read in plan.views:
            for key in keys:
                redis_key = self._serialized_key(read, key) + project
                commands.append((redis_key, read.redis_fields))
        with client.pipeline(transaction=False) as pipe:
            for redis_key, fields in commands:
                pipe.hmget(redis_key, fields)
            replies = pipe.execute()
        results = []
        offset = 0
        n = len(keys)
        for _ in plan.views:
            rows: list[list[Any] | None] = []
            stamps: list[float | None] = []
            for reply in replies[offset : offset + n]:
                ts_raw = reply[-1]
                if not ts_raw:
                    rows.append(None)
                    stamps.append(None)
                    continue
                stamp = _timestamp_seconds(ts_raw)
                row: list[Any] = []
                for raw in reply[:-1]:
                    row.append(self._value(raw) if raw else None)
                rows.append(row)
                stamps.append(stamp)
            offset += n
            results.append((rows, stamps))
        return results

    def _on_demand(
        self,
        plan: Plan,
        values: list[list[Any]],
        statuses: list[list[int]],
        times: list[list[float | None]],
        hidden: dict[tuple[str, str], list[Any]],
        request_data: Sequence[Mapping[str, Any]] | None,
        now: float,
    ) -> None:
        n = len(values)
        request_data = request_data or [{}] * n
        if len(request_data) != n:
            raise InvalidArgument(f"{len(request_data)} request data rows for {n} entity rows")
        for od in plan.on_demand:
            inputs: dict[str, list[Any]] = {}
            for name in od.request_fields:
                column = []
                for i, data in enumerate(request_data):
                    if name not in data or data[name] is None:
                        raise InvalidArgument(
                            f"entity row {i} lacks request data {name}, which on-demand view {od.name} needs",
                            details={"row": str(i), "request_data": name},
                        )
                    column.append(data[name])
                inputs[name] = column
            for (view, feature), column in hidden.items():
                inputs.setdefault(feature, column)
                inputs.setdefault(f"{view}__{feature}", column)
            for view_read in plan.views:
                for feature, pos in zip(view_read.features, view_read.positions, strict=True):
                    if pos >= 0:
                        column = [values[i][pos] for i in range(n)]
                        inputs.setdefault(feature, column)
                        inputs.setdefault(f"{view_read.name}__{feature}", column)
            output = od.odfv.transform_dict(inputs)
            for feature, pos in zip(od.features, od.positions, strict=True):
                column = output.get(feature) or output.get(f"{od.name}__{feature}")
                for i in range(n):
                    value = column[i] if column is not None else None
                    if isinstance(value, float) and math.isnan(value):
                        value = None
                    values[i][pos] = value
                    statuses[i][pos] = PRESENT if value is not None else NOT_FOUND
                    times[i][pos] = now


def _timestamp_seconds(raw: bytes) -> float:
    from google.protobuf.timestamp_pb2 import Timestamp

    ts = Timestamp()
    ts.ParseFromString(raw)
    return ts.seconds + ts.nanos / 1e9


def utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)
