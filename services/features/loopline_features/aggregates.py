"""Streaming aggregates: what a streaming feature view computes, and the batch computation of it.

A streaming view (see feature_repo/feature_views.py) aggregates the raw events of one source per entity
over an event-time window. The value of a view for an entity "as of" time T covers the entity's events
with event time in (T - window, T]; the stream ingester keeps it for T = the entity's newest event time,
and the batch computation here gives it for every event time (the offline history, and the reference the
tests compare the stream with). Nothing here imports feast.
"""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped]

STREAM_SOURCE_TAG = "loopline.stream.source"
STREAM_WINDOW_TAG = "loopline.stream.window"
AGGREGATE_TAG = "loopline.aggregate"
FUNCTIONS = ("count", "sum", "mean", "max")
TIMESTAMP = "event_timestamp"
CREATED = "created"

_WINDOW = re.compile(r"^(\d+)([smhd])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class SpecError(ValueError):
    """A streaming view's tags do not describe a valid aggregate."""


def parse_window(text: str) -> int:
    """Seconds of a window like "1h", "24h", "7d", "90s"."""
    match = _WINDOW.match(text.strip())
    if not match:
        raise SpecError(f"window {text!r} is not <number><s|m|h|d>")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


@dataclass(frozen=True)
class Aggregate:
    feature: str
    function: str  # count | sum | mean | max
    field: str | None  # event field; None for count
    integer: bool  # the feature's type is an integer (counts)


@dataclass(frozen=True)
class StreamView:
    name: str
    push_source: str
    source: str  # WorkloadEvent.source
    join_key: str
    window_seconds: int
    aggregates: tuple[Aggregate, ...]

    @property
    def fields(self) -> list[str]:
        return sorted({a.field for a in self.aggregates if a.field})

    @property
    def columns(self) -> list[str]:
        """Columns of the view's rows: join key, event time, created, features."""
        return [self.join_key, TIMESTAMP, CREATED, *(a.feature for a in self.aggregates)]


def parse_aggregate(feature: str, tag: str, *, integer: bool) -> Aggregate:
    function, _, field = tag.partition(":")
    if function not in FUNCTIONS:
        raise SpecError(f"feature {feature}: aggregate {tag!r} is not one of {', '.join(FUNCTIONS)}")
    if function == "count":
        if field:
            raise SpecError(f"feature {feature}: count takes no field")
        return Aggregate(feature, "count", None, integer)
    if not field:
        raise SpecError(f"feature {feature}: {function} needs an event field, as in {function}:amount")
    return Aggregate(feature, function, field, integer)


def empty_rows(view: StreamView) -> pd.DataFrame:
    """A frame with the view's columns and types and no rows (the offline file's schema)."""
    data: dict[str, Any] = {
        view.join_key: pd.Series([], dtype="string[pyarrow]"),
        TIMESTAMP: pd.Series([], dtype="datetime64[us, UTC]"),
        CREATED: pd.Series([], dtype="datetime64[us, UTC]"),
    }
    for agg in view.aggregates:
        data[agg.feature] = pd.Series([], dtype="int64" if agg.integer else "float64")
    return pd.DataFrame(data)


def aggregate_values(view: StreamView, rows: Iterable[Mapping[str, float]]) -> dict[str, float | int]:
    """The view's features over `rows` (events in the window, field name -> number), as the stream does."""
    rows = list(rows)
    values: dict[str, float | int] = {}
    for agg in view.aggregates:
        if agg.function == "count":
            values[agg.feature] = len(rows)
            continue
        field = agg.field or ""
        xs = [r[field] for r in rows if r.get(field) is not None and not math.isnan(r[field])]
        if agg.function == "sum":
            values[agg.feature] = float(sum(xs))
        elif agg.function == "mean":
            values[agg.feature] = float(sum(xs) / len(xs)) if xs else 0.0
        else:
            values[agg.feature] = float(max(xs)) if xs else 0.0
    return values


def batch_rows(view: StreamView, events: pd.DataFrame) -> pd.DataFrame:
    """The view's value as of every distinct event time of every entity, from `events`.

    `events` has the view's join key, `event_timestamp` (UTC) and the view's numeric fields. `created`
    is set to the event time. Empty fields (NaN) are skipped by sum/mean/max; an empty window gives 0.
    Per entity, windows (T - window, T] are found by binary search over the sorted event times; sums
    and means come from prefix sums, maxima from a monotonic queue, so the cost is linear.
    """
    if events.empty:
        return empty_rows(view)
    key = view.join_key
    frame = events[[key, TIMESTAMP, *view.fields]].sort_values([key, TIMESTAMP], kind="stable")
    stamps = pd.to_datetime(frame[TIMESTAMP], utc=True).astype("datetime64[us, UTC]")
    micros = stamps.dt.tz_localize(None).to_numpy(dtype="datetime64[us]").astype("int64")
    keys = frame[key].to_numpy()
    window = view.window_seconds * 1_000_000
    fields = {f: frame[f].to_numpy(dtype="float64") for f in view.fields}
    out: dict[str, list[Any]] = {key: [], TIMESTAMP: [], **{a.feature: [] for a in view.aggregates}}
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    bounds = [*starts.tolist(), len(keys)]
    for g in range(len(starts)):
        a, b = bounds[g], bounds[g + 1]
        ts = micros[a:b]
        ends = np.flatnonzero(np.r_[ts[1:] != ts[:-1], True])  # last index of each distinct time
        lows = np.searchsorted(ts, ts[ends] - window, side="right")
        columns: dict[str, np.ndarray] = {}
        for agg in view.aggregates:
            if agg.function == "count":
                columns[agg.feature] = (ends - lows + 1).astype("int64")
                continue
            x = fields[agg.field or ""][a:b]
            present = ~np.isnan(x)
            sums = np.r_[0.0, np.cumsum(np.where(present, x, 0.0))]
            counts = np.r_[0, np.cumsum(present)]
            total = sums[ends + 1] - sums[lows]
            n = counts[ends + 1] - counts[lows]
            if agg.function == "sum":
                columns[agg.feature] = total
            elif agg.function == "mean":
                columns[agg.feature] = np.divide(total, n, out=np.zeros_like(total), where=n > 0)
            else:
                columns[agg.feature] = _sliding_max(x, lows, ends)
        out[key].extend([keys[a]] * len(ends))
        out[TIMESTAMP].extend(ts[ends].tolist())
        for feature, values in columns.items():
            out[feature].extend(values.tolist())
    result = pd.DataFrame(out)
    result[TIMESTAMP] = pd.to_datetime(result[TIMESTAMP], unit="us", utc=True).astype("datetime64[us, UTC]")
    result[CREATED] = result[TIMESTAMP]
    for agg in view.aggregates:
        result[agg.feature] = result[agg.feature].astype("int64" if agg.integer else "float64")
    return result[view.columns].sort_values([key, TIMESTAMP], kind="stable").reset_index(drop=True)


def _sliding_max(x: np.ndarray, lows: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """max(x[lo..end]) ignoring NaN (0.0 when none) for windows whose bounds only move forward."""
    queue: deque[int] = deque()
    out = np.zeros(len(ends))
    added = 0
    for i, (lo, end) in enumerate(zip(lows.tolist(), ends.tolist(), strict=True)):
        while added <= end:
            if not math.isnan(x[added]):
                while queue and x[queue[-1]] <= x[added]:
                    queue.pop()
                queue.append(added)
            added += 1
        while queue and queue[0] < lo:
            queue.popleft()
        out[i] = x[queue[0]] if queue else 0.0
    return out


def latest_rows(view: StreamView, events: pd.DataFrame) -> pd.DataFrame:
    """The view's value per entity as of that entity's newest event (what the online store should hold)."""
    rows = batch_rows(view, events)
    return rows.sort_values(TIMESTAMP, kind="stable").groupby(view.join_key, as_index=False).last()
