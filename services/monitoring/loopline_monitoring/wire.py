"""Fast, columnar decoding of the prediction log.

Reading 20 features of a record through the generated classes costs ~20 µs in Python (one `Value` object
and a `WhichOneof` per feature), which alone would cap the consumer near 50k records/s. Monitoring
therefore parses `loopline.events.v1.PredictionLogBatch` with a *projection*: the same message, built at
run time from the contract's own descriptor in a private descriptor pool, in which the feature map's values
are declared `bytes` instead of `loopline.common.v1.Value`. That is wire-compatible (both are
length-delimited), keeps the full name (so the content-type check of the consumer is unchanged), and
leaves each feature as its serialized `Value`, which numpy then decodes for a whole batch at once: a double
is `0x09` + 8 bytes, an int64 `0x10` + varint, a bool `0x20` + varint, a string `0x1a` + length + UTF-8, and
no bytes at all is a null. A test checks the projection against the contract field by field.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from functools import cache
from typing import Any

import numpy as np
import numpy.typing as npt
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, timestamp_pb2
from google.protobuf.message import DecodeError, Message

from loopline.common.v1 import types_pb2
from loopline.events.v1 import predictions_pb2

DOUBLE_TAG = 0x09
INT64_TAG = 0x10
STRING_TAG = 0x1A
BOOL_TAG = 0x20
_DOUBLE = struct.Struct("<d")


@cache
def projection() -> type[Message]:
    """The PredictionLogBatch projection class (built once, on first use)."""
    file = descriptor_pb2.FileDescriptorProto()
    predictions_pb2.DESCRIPTOR.CopyToProto(file)  # type: ignore[no-untyped-call]
    file.name = "loopline_monitoring/prediction_projection.proto"
    for message in file.message_type:
        if message.name != "PredictionRecord":
            continue
        for nested in message.nested_type:
            if nested.name == "FeaturesEntry":
                for field in nested.field:
                    if field.name == "value":
                        field.type = descriptor_pb2.FieldDescriptorProto.TYPE_BYTES
                        field.ClearField("type_name")
    del file.dependency[:]
    file.dependency.append("google/protobuf/timestamp.proto")
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(timestamp_pb2.DESCRIPTOR.serialized_pb)  # type: ignore[no-untyped-call]
    pool.Add(file)  # type: ignore[no-untyped-call]
    descriptor = pool.FindMessageTypeByName("loopline.events.v1.PredictionLogBatch")  # type: ignore[no-untyped-call]
    return message_factory.GetMessageClass(descriptor)


def decode_numbers(parts: Sequence[bytes | None]) -> tuple[npt.NDArray[np.float64], int]:
    """Serialized `Value`s (None or b"" = null) as float64 (NaN = null or not a number); and how many were
    strings (not numbers)."""
    n = len(parts)
    out = np.full(n, np.nan)
    if n == 0:
        return out, 0
    if None in parts:
        parts = [p or b"" for p in parts]
    lengths = np.fromiter(map(len, parts), dtype=np.int64, count=n)  # type: ignore[arg-type]
    buffer = np.frombuffer(b"".join(parts), dtype=np.uint8)  # type: ignore[arg-type]
    if buffer.shape[0] == 9 * n and buffer[::9].min() == DOUBLE_TAG == buffer[::9].max():
        return buffer.reshape(n, 9)[:, 1:].copy().view("<f8").reshape(n), 0
    starts = np.cumsum(lengths) - lengths
    present = lengths > 0
    tags = np.zeros(n, dtype=np.uint8)
    tags[present] = buffer[starts[present]]
    doubles = np.flatnonzero((tags == DOUBLE_TAG) & (lengths >= 9))
    if doubles.size:
        gather = starts[doubles, None] + 1 + np.arange(8)
        out[doubles] = buffer[gather].copy().view("<f8").reshape(-1)
    varints = np.flatnonzero((tags == INT64_TAG) | (tags == BOOL_TAG))
    if varints.size:
        out[varints] = _varints(buffer, starts[varints] + 1, starts[varints] + lengths[varints])
    return out, int(np.count_nonzero(tags == STRING_TAG))


def _varints(buffer: npt.NDArray[np.uint8], begin: npt.NDArray[np.int64], end: npt.NDArray[np.int64]) -> Any:
    """Decode one base-128 varint starting at each `begin` (int64 two's complement), as float64."""
    value = np.zeros(begin.shape[0], dtype=np.uint64)
    going = np.ones(begin.shape[0], dtype=bool)
    for i in range(10):
        position = begin + i
        going &= position < end
        byte = np.zeros(begin.shape[0], dtype=np.uint64)
        byte[going] = buffer[position[going]]
        value |= (byte & np.uint64(0x7F)) << np.uint64(7 * i)
        going &= (byte & np.uint64(0x80)) != 0
    return value.view(np.int64).astype(np.float64)


def decode_label(part: bytes | None, vocabulary: Sequence[str] = ()) -> str | None:
    """A serialized `Value` as a category label: strings as they are, numbers and booleans as text. With the
    model's input `vocabulary`, a number is a code: the label at that index (a negative code is missing)."""
    if not part:
        return None
    if vocabulary and part[0] == DOUBLE_TAG and len(part) == 9:
        (code,) = _DOUBLE.unpack_from(part, 1)
        if code.is_integer() and 0 <= code < len(vocabulary):
            return vocabulary[int(code)]
        return None
    if part[0] == STRING_TAG and len(part) > 1 and part[1] < 0x80:  # the common case: a short string
        return part[2 : 2 + part[1]].decode(errors="replace")
    try:
        value = types_pb2.Value.FromString(part)
    except DecodeError:
        return None
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return value.string_value
    if kind == "int64_value":
        return str(value.int64_value)
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    if kind == "double_value":
        number = value.double_value
        return str(int(number)) if number.is_integer() else repr(number)
    return None
