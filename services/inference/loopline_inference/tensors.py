"""OIP v2 tensors: datatypes, and the conversions between the wire forms and numpy arrays.

Wire forms: JSON `data` (flat or nested, row-major), the REST binary tensor extension (raw little-endian
bytes; BYTES elements as a 4-byte little-endian length and the bytes), gRPC typed `contents` and gRPC
`raw_input_contents` / `raw_output_contents` (the same raw layout as the binary extension). BYTES tensors
are numpy object arrays of `bytes`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from loopline_common.errors import InvalidArgument

# OIP datatype -> numpy dtype (little-endian). BYTES is an object array of bytes.
DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "BYTES": np.dtype(object),
}
_BY_KIND = {(v.kind, v.itemsize): k for k, v in DTYPES.items() if k != "BYTES"}

# ONNX Runtime's type strings -> OIP datatypes.
ORT_TYPES: dict[str, str] = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}

# gRPC InferTensorContents field per datatype (FP16 has none: raw contents only).
CONTENTS_FIELD: dict[str, str] = {
    "BOOL": "bool_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


@dataclass(slots=True)
class Tensor:
    """One named tensor of a request or a response."""

    name: str
    datatype: str
    array: np.ndarray[Any, Any]


def datatype_of(array: np.ndarray[Any, Any]) -> str:
    if array.dtype.kind in ("O", "S", "U"):
        return "BYTES"
    try:
        return _BY_KIND[(array.dtype.kind, array.dtype.itemsize)]
    except KeyError:
        raise InvalidArgument(f"arrays of dtype {array.dtype} have no OIP datatype") from None


def element_count(shape: list[int] | tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def check_shape(name: str, shape: Any) -> list[int]:
    """`shape` as a list of non-negative ints (a list passed in is returned as is, not copied)."""
    if isinstance(shape, list | tuple):
        for d in shape:
            if type(d) is not int or d < 0:
                break
        else:
            return shape if type(shape) is list else list(shape)
    raise InvalidArgument(f"input '{name}': shape must be a list of non-negative integers, got {shape!r}")


def dtype_for(name: str, datatype: Any) -> np.dtype[Any]:
    try:
        return DTYPES[datatype]
    except (KeyError, TypeError):
        raise InvalidArgument(f"input '{name}': unsupported datatype {datatype!r}") from None


# ---- JSON -------------------------------------------------------------------------------------------

def _flatten(data: list[Any]) -> list[Any]:
    out: list[Any] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            out.append(item)
        else:
            stack.pop()
    return out


def from_json(name: str, datatype: Any, shape: Any, data: Any) -> np.ndarray[Any, Any]:
    """A numpy array from a JSON tensor's `data` (flat or nested, row-major)."""
    dims = check_shape(name, shape)
    dtype = dtype_for(name, datatype)
    if not isinstance(data, list):
        raise InvalidArgument(f"input '{name}': data must be a JSON array")
    count = element_count(dims)
    if datatype == "BYTES":
        flat = _flatten(data)
        if len(flat) != count:
            raise _size_error(name, dims, len(flat))
        values = np.empty(count, dtype=object)
        for i, v in enumerate(flat):
            if isinstance(v, str):
                values[i] = v.encode()
            elif isinstance(v, bytes):
                values[i] = v
            else:
                raise InvalidArgument(f"input '{name}': BYTES data must be strings")
        return values.reshape(dims)
    try:
        if datatype == "BOOL":
            flat = _flatten(data)
            if not all(type(v) is bool for v in flat):
                raise InvalidArgument(f"input '{name}': BOOL data must be true or false")
            array = np.array(flat, dtype=dtype)
        else:
            array = np.array(data, dtype=dtype)
            if array.ndim != 1:
                array = array.reshape(-1)
            elif data and isinstance(data[0], bool):
                raise InvalidArgument(f"input '{name}': {datatype} data must be numbers")
    except (ValueError, TypeError, OverflowError) as exc:
        raise InvalidArgument(f"input '{name}': data does not match datatype {datatype}: {exc}") from None
    if array.size != count:
        raise _size_error(name, dims, array.size)
    return array.reshape(dims)


def _size_error(name: str, shape: list[int], got: int) -> InvalidArgument:
    return InvalidArgument(
        f"input '{name}': shape {shape} needs {element_count(shape)} elements, got {got}",
        details={"input": name},
    )


def to_json_data(array: np.ndarray[Any, Any], datatype: str) -> Any:
    """The flat `data` of a JSON output: a numpy array orjson serializes natively, or a list."""
    if datatype == "BYTES":
        return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in array.reshape(-1)]
    if datatype == "FP16":
        return array.reshape(-1).astype(np.float32)
    return np.ascontiguousarray(array).reshape(-1)


# ---- raw bytes (REST binary extension, gRPC raw contents) -------------------------------------------

def from_raw(name: str, datatype: Any, shape: Any, raw: bytes | memoryview) -> np.ndarray[Any, Any]:
    """A numpy array from raw little-endian bytes (BYTES: 4-byte length-prefixed elements)."""
    dims = check_shape(name, shape)
    dtype = dtype_for(name, datatype)
    count = element_count(dims)
    if datatype == "BYTES":
        return _bytes_from_raw(name, dims, count, bytes(raw))
    if len(raw) != count * dtype.itemsize:
        raise InvalidArgument(
            f"input '{name}': shape {dims} of {datatype} needs {count * dtype.itemsize} bytes, got {len(raw)}",
            details={"input": name},
        )
    return np.frombuffer(raw, dtype=dtype).reshape(dims)


def _bytes_from_raw(name: str, dims: list[int], count: int, raw: bytes) -> np.ndarray[Any, Any]:
    values = np.empty(count, dtype=object)
    offset, end = 0, len(raw)
    for i in range(count):
        if offset + 4 > end:
            raise InvalidArgument(f"input '{name}': raw BYTES data ends after {i} of {count} elements")
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > end:
            raise InvalidArgument(f"input '{name}': raw BYTES element {i} runs past the end of the data")
        values[i] = raw[offset : offset + length]
        offset += length
    if offset != end:
        raise InvalidArgument(f"input '{name}': {end - offset} bytes left over after {count} BYTES elements")
    return values.reshape(dims)


def to_raw(array: np.ndarray[Any, Any], datatype: str) -> bytes:
    if datatype == "BYTES":
        parts = []
        for v in array.reshape(-1):
            b = v if isinstance(v, bytes) else str(v).encode()
            parts.append(struct.pack("<I", len(b)))
            parts.append(b)
        return b"".join(parts)
    return np.ascontiguousarray(array, dtype=DTYPES[datatype]).tobytes()


# ---- gRPC typed contents ----------------------------------------------------------------------------

def from_contents(name: str, datatype: Any, shape: Any, contents: Any) -> np.ndarray[Any, Any]:
    """A numpy array from gRPC `InferTensorContents`."""
    dims = check_shape(name, shape)
    dtype = dtype_for(name, datatype)
    field = CONTENTS_FIELD.get(datatype)
    if field is None:
        raise InvalidArgument(f"input '{name}': {datatype} tensors must be sent in raw_input_contents")
    values = getattr(contents, field)
    count = element_count(dims)
    if len(values) != count:
        raise _size_error(name, dims, len(values))
    if datatype == "BYTES":
        array = np.empty(count, dtype=object)
        array[:] = list(values)
        return array.reshape(dims)
    try:
        return np.array(values, dtype=dtype).reshape(dims)
    except OverflowError as exc:
        raise InvalidArgument(f"input '{name}': value out of range for {datatype}: {exc}") from None


def fill_contents(contents: Any, array: np.ndarray[Any, Any], datatype: str) -> None:
    field = CONTENTS_FIELD[datatype]
    values = array.reshape(-1)
    getattr(contents, field).extend(values.tolist() if datatype != "BYTES" else list(values))
