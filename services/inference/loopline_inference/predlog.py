"""The prediction log: every prediction as a `PredictionRecord`, batched into `PredictionLogBatch`es on
the `loopline.predictions` topic (key: model name), through a non-blocking producer (`kafka_log`).

The request path only appends a tuple to a bounded deque (or counts a drop when it is full); a timer
on the event loop drains it every `flush_seconds`, encodes the records and publishes one batch per model
per drain (split at `max_batch_bytes`). Encoding is vectorised: within one request every record has the
same fields and lengths except the row's numbers, so the request's records are one template repeated
per row, with the feature and output doubles written into it by numpy. That keeps logging a 1,000-row
request to about the cost of copying its numbers, instead of thousands of protobuf objects. The bytes
are the standard protobuf encoding (tests parse them with the generated `PredictionLogBatch`).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import operator
import struct
import uuid
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import numpy as np
from google.protobuf.message import Message

from loopline.events.v1 import predictions_pb2
from loopline_common.topics import PREDICTIONS
from loopline_inference.stats import InferenceStats
from loopline_inference.tensors import Tensor
from loopline_inference.wire import length_delimited as _ld
from loopline_inference.wire import varint as _varint
from loopline_inference.wire import varint_field as _vi

log = logging.getLogger(__name__)

TRACKS = {
    "champion": predictions_pb2.TRACK_CHAMPION,
    "challenger": predictions_pb2.TRACK_CHALLENGER,
    "shadow": predictions_pb2.TRACK_SHADOW,
}


class Prediction(NamedTuple):
    """What the request path hands over: references only (a tuple, cheap to build), encoded later off
    the request path."""

    request_id: str
    time_ns: int
    model_name: str
    model_version: int
    track: str
    protocol: str
    status: str
    latency_us: int
    # Numeric inputs as (name, array) and outputs; None for a failed request.
    inputs: list[Tensor] | None
    feature_names: tuple[str, ...]
    outputs: list[Tensor] | None
    # One dict per row (entity key -> id), when the request named entities.
    entities: list[dict[str, str]] | None = None


# ---- protobuf wire encoding -------------------------------------------------------------------------

def _map_entry_str(field: int, key: str, value: str) -> bytes:
    return _ld(field, _ld(1, key.encode()) + _ld(2, value.encode()))


@dataclass(frozen=True, slots=True)
class _Layout:
    """The fixed part of one row's record: feature and output map entries with double placeholders."""

    body: bytes
    offsets: tuple[int, ...]
    row_struct: struct.Struct
    # struct.pack arguments: each prefix followed by a placeholder for its double.
    row_args: tuple[Any, ...]
    columns: np.dtype[Any]
    packed: np.dtype[Any]


_LAYOUTS: dict[tuple[Any, ...], _Layout] = {}


def _numeric_2d(array: np.ndarray[Any, Any], rows: int) -> np.ndarray[Any, Any] | None:
    ndim = array.ndim
    if array.dtype.kind not in "biuf" or ndim == 0 or ndim > 2 or array.shape[0] != rows:
        return None
    return array if ndim == 2 else array.reshape(rows, 1)


def _layout(
    inputs: list[Tensor], feature_names: tuple[str, ...], outputs: list[Tensor], rows: int
) -> tuple[_Layout, list[np.ndarray[Any, Any]]]:
    """The row layout for these tensors (cached) and their [rows, k] numeric blocks, features first."""
    blocks: list[np.ndarray[Any, Any]] = []
    key: list[Any] = [feature_names]
    for t in inputs:
        block = _numeric_2d(t.array, rows)
        if block is not None:
            blocks.append(block)
            key.append((t.name, block.shape[1], t.array.ndim))
    key.append(None)
    for t in outputs:
        block = _numeric_2d(t.array, rows)
        if block is not None:
            blocks.append(block)
            key.append((t.name, block.shape[1], t.array.ndim))
    cache_key = tuple(key)
    layout = _LAYOUTS.get(cache_key)
    if layout is None:
        layout = _LAYOUTS[cache_key] = _build_layout(inputs, feature_names, outputs, rows)
        if len(_LAYOUTS) > 256:  # many shapes over time: keep the cache bounded
            _LAYOUTS.clear()
            _LAYOUTS[cache_key] = layout
    return layout, blocks


def _build_layout(inputs: list[Tensor], feature_names: tuple[str, ...], outputs: list[Tensor], rows: int) -> _Layout:
    fnames: list[str] = []
    for t in inputs:
        block = _numeric_2d(t.array, rows)
        if block is None:
            continue
        k = block.shape[1]
        if len(inputs) == 1 and len(feature_names) == k:
            fnames.extend(feature_names)
        elif t.array.ndim == 1 or k == 1:
            fnames.append(t.name)
        else:
            fnames.extend(f"{t.name}_{j}" for j in range(k))
    onames: list[str] = []
    for t in outputs:
        block = _numeric_2d(t.array, rows)
        if block is None:
            continue
        k = block.shape[1]
        onames.extend([t.name] if k == 1 else [f"{t.name}_{j}" for j in range(k)])
    body = bytearray()
    offsets: list[int] = []
    prefixes: list[bytes] = []
    for name in fnames:  # features: map<string, Value>, Value.double_value = field 1 (fixed64)
        prefixes.append(_ld(7, _ld(1, name.encode()) + _ld(2, b"\x09" + bytes(8)))[:-8])
    for name in onames:  # outputs: map<string, double>, value = field 2 (fixed64)
        prefixes.append(_ld(8, _ld(1, name.encode()) + b"\x11" + bytes(8))[:-8])
    fmt = "<"
    for prefix in prefixes:
        body += prefix
        offsets.append(len(body))
        body += bytes(8)
        fmt += f"{len(prefix)}sd"
    n = len(offsets)
    return _Layout(
        body=bytes(body),
        offsets=tuple(offsets),
        row_struct=struct.Struct(fmt),
        row_args=tuple(x for prefix in prefixes for x in (prefix, 0.0)),
        columns=np.dtype({"names": [f"v{i}" for i in range(n)], "formats": ["<f8"] * n, "offsets": offsets,
                          "itemsize": len(body)}),
        packed=np.dtype([(f"v{i}", "<f8") for i in range(n)]),
    )


_HEADS: dict[tuple[str, int, str, str, str], bytes] = {}


def _constant_head(p: Prediction) -> bytes:
    """Fields 3, 4, 5, 10 and 11, the same for every record of a model version, track and outcome."""
    key = (p.model_name, p.model_version, p.track, p.protocol, p.status)
    head = _HEADS.get(key)
    if head is None:
        if len(_HEADS) > 4096:
            _HEADS.clear()
        head = _HEADS[key] = (
            _ld(3, p.model_name.encode())
            + _vi(4, p.model_version)
            + _vi(5, TRACKS.get(p.track, 0))
            + _ld(10, p.protocol.encode())
            + _ld(11, p.status.encode())
        )
    return head


def encode_records(p: Prediction) -> bytes:
    """The request's records, each as field 3 of a PredictionLogBatch (so batches are concatenations)."""
    seconds, nanos = divmod(p.time_ns, 1_000_000_000)
    stamp = b"\x08" + _varint(seconds) + (b"\x10" + _varint(nanos) if nanos else b"")
    latency = b"\x48" + _varint(p.latency_us) if p.latency_us else b""
    head = b"\x12" + _varint(len(stamp)) + stamp + _constant_head(p) + latency
    if p.inputs is None or p.outputs is None:
        return _ld(3, _ld(1, p.request_id.encode()) + head)
    rows = p.inputs[0].array.shape[0] if p.inputs and p.inputs[0].array.ndim else 1
    layout, blocks = _layout(p.inputs, p.feature_names, p.outputs, rows)
    rid = p.request_id.encode()
    if rows == 1 and p.entities is None:  # the common case, kept to a handful of calls
        args = list(layout.row_args)
        flat: list[float] = []
        for block in blocks:
            flat += block.ravel().tolist()
        args[1::2] = flat
        record = head + b"\x0a" + _varint(len(rid)) + rid + layout.row_struct.pack(*args)
        return b"\x1a" + _varint(len(record)) + record
    values = (np.hstack(blocks) if len(blocks) > 1 else blocks[0]).astype("<f8", copy=False) if blocks else None
    width = len(str(rows - 1)) if rows > 1 else 0
    if p.entities is not None or rows <= 4:  # row by row: small requests, or rows of different lengths
        return _encode_row_by_row(p, head, rid, layout, values, rows, width)
    rid_field = _ld(1, rid + b"." + b"0" * width)
    record = head + rid_field + layout.body
    prefix = _varint(3 << 3 | 2) + _varint(len(record))
    template = prefix + record
    size = len(template)
    body_at = size - len(layout.body)
    buffer = bytearray(template * rows)
    if values is not None:
        columns = np.ndarray((rows,), dtype=layout.columns, buffer=buffer, offset=body_at, strides=(size,))
        columns[...] = np.ascontiguousarray(values).view(layout.packed).reshape(rows)
    digits_at = body_at - width
    grid = np.frombuffer(buffer, dtype=np.uint8).reshape(rows, size)
    powers = 10 ** np.arange(width - 1, -1, -1)
    grid[:, digits_at:body_at] = (np.arange(rows)[:, None] // powers % 10 + 48).astype(np.uint8)
    return bytes(buffer)


def _encode_row_by_row(
    p: Prediction, head: bytes, rid: bytes, layout: _Layout, values: np.ndarray[Any, Any] | None, rows: int,
    width: int,
) -> bytes:
    entities = p.entities or []
    parts = []
    args: list[Any] = list(layout.row_args)
    for i in range(rows):
        if values is not None:
            args[1::2] = values[i].tolist()
            body = layout.row_struct.pack(*args)
        else:
            body = layout.body
        ids = entities[i] if i < len(entities) else {}
        ent = b"".join(_map_entry_str(6, k, v) for k, v in ids.items()) if ids else b""
        rid_i = _ld(1, rid + b"." + str(i).zfill(width).encode()) if width else _ld(1, rid)
        parts.append(_ld(3, head + rid_i + body + ent))
    return b"".join(parts)


# ---- one-row predictions, encoded in bulk ------------------------------------------------------------
#
# Most requests score one row. Their records differ only in request id, time, latency and numbers, so a
# drain groups them by everything else (model, version, track, outcome, tensor layout, request-id length)
# and writes each group as one numpy grid: a record template repeated per row, with the numbers, the id
# bytes and the three integers written column-wise. The integers are written as 5-byte varints (low
# groups with the continuation bit set even when a shorter form exists), which every protobuf parser
# reads as the same value; that keeps every record of a group the same length.

_PAD5 = b"\x80\x80\x80\x80\x00"
_SHIFTS = np.array([0, 7, 14, 21, 28], dtype=np.uint64)
_CONTINUE = np.array([0x80, 0x80, 0x80, 0x80, 0x00], dtype=np.uint64)


_NAME = operator.attrgetter("name")


def _bulk_key(p: Prediction) -> tuple[Any, ...] | None:
    """The group of a prediction that may be encoded in bulk (None: encode it on its own). Cheap: the
    tensor shapes are checked when the group is encoded (a group that does not fit is encoded one by
    one)."""
    inputs, outputs = p.inputs, p.outputs
    if not inputs or not outputs or p.entities is not None:
        return None
    # p[2:7]: model name, version, track, protocol and status.
    return (p[2:7], len(p.request_id), p.feature_names, inputs[0].array.shape, tuple(map(_NAME, inputs)),
            tuple(map(_NAME, outputs)))


def _varint5(values: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """[n] non-negative integers below 2**35 as [n, 5] bytes of padded varints."""
    v = values.astype(np.uint64)[:, None]
    return ((v >> _SHIFTS) & np.uint64(0x7F) | _CONTINUE).astype(np.uint8)


def encode_group(group: list[Prediction]) -> bytes:
    """The records of predictions that share a `_bulk_key`, as PredictionLogBatch field 3 entries: in
    bulk when they are one-row predictions of one tensor layout, else one by one."""
    try:
        data = _encode_one_row_group(group)
    except (ValueError, TypeError):  # shapes or dtypes differ within the group
        data = None
    return data if data is not None else b"".join(encode_records(p) for p in group)


def _encode_one_row_group(group: list[Prediction]) -> bytes | None:
    first = group[0]
    if first.inputs is None or first.outputs is None:
        return None
    n = len(group)
    if first.inputs[0].array.ndim == 0 or first.inputs[0].array.shape[0] != 1:
        return None
    for t in (*first.inputs, *first.outputs):
        if t.array.dtype.kind not in "biuf" or t.array.ndim == 0 or t.array.ndim > 2 or t.array.shape[0] != 1:
            return None
    layout, _ = _layout(first.inputs, first.feature_names, first.outputs, 1)
    rid_len = len(first.request_id.encode())
    # Record: rid (1), time (2: seconds 1, nanos 2), the constant fields, latency (9), then the numbers.
    fixed = b"\x12\x0c\x08" + _PAD5 + b"\x10" + _PAD5 + _constant_head(first) + b"\x48" + _PAD5
    if rid_len >= 128:
        return None
    prefix = b"\x1a" + _varint(2 + rid_len + len(fixed) + len(layout.body))
    template = prefix + b"\x0a" + bytes((rid_len,)) + b"\x00" * rid_len + fixed + layout.body
    size = len(template)
    buffer = bytearray(template * n)
    grid = np.frombuffer(buffer, dtype=np.uint8).reshape(n, size)
    at = len(prefix) + 2
    ids = b"".join(p.request_id.encode() for p in group)
    if len(ids) != n * rid_len:  # ids of one character length but different byte lengths
        return None
    if rid_len:
        grid[:, at : at + rid_len] = np.frombuffer(ids, dtype=np.uint8).reshape(n, rid_len)
    at += rid_len + 3
    stamps = np.fromiter((p.time_ns for p in group), dtype=np.int64, count=n)
    seconds, nanos = np.divmod(stamps, 1_000_000_000)
    grid[:, at : at + 5] = _varint5(seconds)
    grid[:, at + 6 : at + 11] = _varint5(nanos)
    at = len(prefix) + 2 + rid_len + len(fixed) - 5
    grid[:, at : at + 5] = _varint5(np.fromiter((p.latency_us for p in group), dtype=np.int64, count=n))
    blocks = []
    for j, t in enumerate(first.inputs):
        block = np.concatenate([p.inputs[j].array for p in group])  # type: ignore[index]
        if block.shape[0] != n or block.shape[1:] != t.array.shape[1:]:
            return None
        blocks.append(block.reshape(n, -1))
    for j, t in enumerate(first.outputs):
        block = np.concatenate([p.outputs[j].array for p in group])  # type: ignore[index]
        if block.shape[0] != n or block.shape[1:] != t.array.shape[1:]:
            return None
        blocks.append(block.reshape(n, -1))
    if blocks:
        values = np.hstack(blocks).astype("<f8", copy=False) if len(blocks) > 1 else blocks[0].astype("<f8")
        columns = np.ndarray((n,), dtype=layout.columns, buffer=buffer, offset=size - len(layout.body),
                             strides=(size,))
        columns[...] = np.ascontiguousarray(values).view(layout.packed).reshape(n)
    return bytes(buffer)


class LogSink(Protocol):
    """Where drained batches go: `kafka_log.LogProducer` (or any producer with this shape)."""

    def publish_bytes(self, topic: str, value: bytes, *, message_type: type[Message], key: str | bytes | None) -> bool:
        ...

    def poll(self) -> None:
        ...


class PredictionLog:
    """Bounded hand-off from the request path to an encoder/publisher that runs on the event loop every
    `flush_seconds` (`start`), or when `drain` is called."""

    def __init__(
        self,
        *,
        producer: LogSink | None,
        stats: InferenceStats,
        instance: str,
        max_pending: int = 50_000,
        flush_seconds: float = 0.2,
        max_batch_bytes: int = 512 * 1024,
    ) -> None:
        self.producer = producer
        self.stats = stats
        self.instance = instance
        self.max_pending = max_pending
        self.flush_seconds = flush_seconds
        self.max_batch_bytes = max_batch_bytes
        self._pending: collections.deque[Prediction] = collections.deque()
        self._timer: asyncio.TimerHandle | None = None

    @property
    def enabled(self) -> bool:
        return self.producer is not None

    def add(self, prediction: Prediction) -> None:
        """Hot path: never blocks; counts a drop when the hand-off buffer is full."""
        if len(self._pending) >= self.max_pending:
            self.stats.dropped("handoff_full")
            return
        self._pending.append(prediction)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Drain every `flush_seconds` on `loop`, the thread that serves requests.

        On the loop rather than on a thread of its own: on a one-core pod a second Python thread shares the
        core anyway, and each hand-over of the GIL between it and the event loop cost more CPU than the
        encoding itself (a drain is ~3 µs per one-row request, vectorised, and the loop runs it between
        requests)."""
        if self.producer is None or self._timer is not None:
            return
        self._timer = loop.call_later(self.flush_seconds, self._tick, loop)

    def stop(self) -> None:
        """Stop the timer and drain what is pending (on the loop's thread)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.drain()

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            self.drain()
        except Exception:  # never let the log stop
            log.exception("prediction log drain failed")
        self._timer = loop.call_later(self.flush_seconds, self._tick, loop)

    def drain(self) -> int:
        """Encode and publish everything pending; return the number of requests drained."""
        producer = self.producer
        pending = self._pending
        if producer is None:
            pending.clear()
            return 0
        producer.poll()  # delivery reports of earlier batches, also while no requests come
        items = []
        while pending:
            items.append(pending.popleft())
        # One-row predictions in groups (encoded in bulk), everything else one by one, in order per group.
        groups: dict[tuple[Any, ...], list[Prediction]] = {}
        singles: list[Prediction] = []
        for p in items:
            key = _bulk_key(p)
            if key is None:
                singles.append(p)
            else:
                group = groups.get(key)
                if group is None:
                    groups[key] = [p]
                else:
                    group.append(p)
        by_model: dict[str, list[bytes]] = {}
        sizes: dict[str, int] = {}
        counts: dict[str, int] = {}

        def add(model: str, data: bytes, records: int) -> None:
            parts = by_model.setdefault(model, [])
            if parts and sizes[model] + len(data) > self.max_batch_bytes:
                self._publish(producer, model, parts, counts[model])
                parts.clear()
                sizes[model] = counts[model] = 0
            parts.append(data)
            sizes[model] = sizes.get(model, 0) + len(data)
            counts[model] = counts.get(model, 0) + records

        for group in groups.values():
            first = group[0]
            layout, _ = _layout(first.inputs or [], first.feature_names, first.outputs or [], 1)
            # Records per grid, so that one grid stays within a batch.
            chunk = max(1, self.max_batch_bytes // (len(layout.body) + 64 + len(first.request_id)))
            for start in range(0, len(group), chunk):
                part = group[start : start + chunk]
                try:
                    data = encode_group(part)
                except Exception:
                    log.exception("cannot encode prediction records")
                    self.stats.dropped("encode_failed", len(part))
                    continue
                add(part[0].model_name, data, len(part))
        for p in singles:
            try:
                data = encode_records(p)
            except Exception:
                log.exception("cannot encode a prediction record", extra={"request_id": p.request_id})
                self.stats.dropped("encode_failed")
                continue
            add(p.model_name, data, _rows(p))
        for model, parts in by_model.items():
            if parts:
                self._publish(producer, model, parts, counts[model])
        return len(items)

    def _publish(self, producer: LogSink, model: str, parts: list[bytes], records: int) -> None:
        header = _ld(1, uuid.uuid4().hex.encode()) + _ld(2, self.instance.encode())
        batch = header + b"".join(parts)
        if producer.publish_bytes(
            PREDICTIONS, batch, message_type=predictions_pb2.PredictionLogBatch, key=model
        ):
            self.stats.log_records += records
        else:
            self.stats.dropped("buffer_full", records)


def _rows(p: Prediction) -> int:
    if p.inputs and p.inputs[0].array.ndim:
        return int(p.inputs[0].array.shape[0])
    return 1
