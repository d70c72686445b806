"""Columnar batches of prediction records, and their compact binary form for the state store.

`Frame` holds records of one model version and track as the drift windows need them: request ids, event
times, the numeric features (NaN = missing) and categorical codes (-1 = missing) in the reference profile's
order, and the prediction. `CanaryFrame` holds every record of one model (all versions and tracks) as the
canary comparison and de-duplication need them.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, fields
from typing import Any, ClassVar, TypeVar

import numpy as np
import numpy.typing as npt

F = TypeVar("F", bound="_Columnar")

_HEADER = struct.Struct("<I")


def _strings_to_bytes(values: list[str]) -> tuple[bytes, list[int]]:
    joined = "".join(values)
    if joined.isascii():  # request ids nearly always are: one encode, lengths in characters = bytes
        return joined.encode("ascii"), list(map(len, values))
    encoded = [v.encode() for v in values]
    return b"".join(encoded), [len(e) for e in encoded]


class _Columnar:
    """Arrays of equal length plus a list of request ids; slicing, concatenation and (de)serialization."""

    ARRAYS: ClassVar[tuple[str, ...]] = ()
    request_ids: list[str]

    def __len__(self) -> int:
        return len(self.request_ids)

    def take(self: F, index: slice | npt.NDArray[np.int64]) -> F:
        values: dict[str, Any] = {}
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if f.name == "request_ids":
                values[f.name] = value[index] if isinstance(index, slice) else [value[i] for i in index]
            else:
                values[f.name] = value[index]
        return type(self)(**values)

    @classmethod
    def concat(cls: type[F], parts: list[F]) -> F:
        if len(parts) == 1:
            return parts[0]
        values: dict[str, Any] = {}
        for f in fields(cls):  # type: ignore[arg-type]
            if f.name == "request_ids":
                values[f.name] = [rid for p in parts for rid in p.request_ids]
            else:
                values[f.name] = np.concatenate([getattr(p, f.name) for p in parts])
        return cls(**values)

    def to_bytes(self) -> bytes:
        ids, lengths = _strings_to_bytes(self.request_ids)
        header: dict[str, Any] = {"n": len(self), "ids": lengths, "arrays": []}
        blobs = [ids]
        for name in self.ARRAYS:
            array = np.ascontiguousarray(getattr(self, name))
            header["arrays"].append([name, array.dtype.str, list(array.shape)])
            blobs.append(array.tobytes())
        head = json.dumps(header, separators=(",", ":")).encode()
        return _HEADER.pack(len(head)) + head + b"".join(blobs)

    @classmethod
    def from_bytes(cls: type[F], data: bytes) -> F:
        (size,) = _HEADER.unpack_from(data)
        header = json.loads(data[_HEADER.size : _HEADER.size + size])
        offset = _HEADER.size + size
        ids = []
        for length in header["ids"]:
            ids.append(data[offset : offset + length].decode())
            offset += length
        values: dict[str, Any] = {"request_ids": ids}
        for name, dtype, shape in header["arrays"]:
            count = int(np.prod(shape)) if shape else 1
            array = np.frombuffer(data, dtype=np.dtype(dtype), count=count, offset=offset).reshape(shape)
            values[name] = array.copy()
            offset += array.nbytes
        return cls(**values)


@dataclass
class Frame(_Columnar):
    """Records of one model version and track, in a reference profile's feature order."""

    ARRAYS: ClassVar[tuple[str, ...]] = ("time", "numeric", "categorical", "prediction")

    request_ids: list[str]
    time: npt.NDArray[np.float64]  # event time, seconds since the epoch
    numeric: npt.NDArray[np.float64]  # (n, numeric features), NaN = missing
    categorical: npt.NDArray[np.int64]  # (n, categorical features), category codes, -1 = missing
    prediction: npt.NDArray[np.float64]  # (n,), NaN = missing

    @classmethod
    def empty(cls, numeric: int, categorical: int) -> Frame:
        return cls(
            [], np.zeros(0), np.zeros((0, numeric)), np.zeros((0, categorical), dtype=np.int64), np.zeros(0)
        )


@dataclass
class CanaryFrame(_Columnar):
    """Every record of one model, for the canary comparison and de-duplication."""

    ARRAYS: ClassVar[tuple[str, ...]] = ("time", "track", "version", "prediction", "latency_us", "ok")

    request_ids: list[str]
    time: npt.NDArray[np.float64]
    track: npt.NDArray[np.int64]
    version: npt.NDArray[np.int64]
    prediction: npt.NDArray[np.float64]
    latency_us: npt.NDArray[np.int64]
    ok: npt.NDArray[np.bool_]
