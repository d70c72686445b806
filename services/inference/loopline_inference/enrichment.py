"""Feature enrichment: a request that names entities instead of carrying feature tensors gets its input
built from the features service's online features, in the model's feature order.

`OnlineFeatures` is the small adapter over the features service's gRPC API (GetOnlineFeatures);
`build_input` is the transport- and service-neutral core: rows of (value, status) to the model's input
matrix. A categorical feature (one with a vocabulary in the model's preprocessing metadata) is fed as its
label's code, as training encoded it; a label the vocabulary does not hold is a present value with the
unknown code. The missing-feature policy: "default" fills the model's default value (a categorical's
unknown code) and flags the row (counted, and reported back in the response parameter
`loopline_defaulted_rows`), "reject" refuses the request with INVALID_ARGUMENT (HTTP 400) naming the first
missing feature and the entity row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np

from loopline.common.v1 import types_pb2
from loopline.features.v1 import features_pb2, features_pb2_grpc
from loopline_common.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from loopline_inference.model import Categorical, OnnxModel
from loopline_inference.tensors import DTYPES, Tensor

FEATURE_SERVICE_KEY = "loopline.feature_service"

PRESENT = features_pb2.FEATURE_STATUS_PRESENT
EXPIRED = features_pb2.FEATURE_STATUS_EXPIRED


@dataclass(frozen=True, slots=True)
class FeatureCell:
    value: float | None
    # True when the value is missing or expired.
    flagged: bool


@dataclass(slots=True)
class Enriched:
    tensor: Tensor
    entities: list[dict[str, str]]
    defaulted_rows: int


def entity_rows(model: OnnxModel, inputs: list[Tensor]) -> list[dict[str, Any]] | None:
    """The request's entity rows when its inputs are exactly the model's entity keys, else None."""
    if not model.entity_keys or {t.name for t in inputs} != set(model.entity_keys):
        return None
    columns: dict[str, list[Any]] = {}
    rows = -1
    for t in inputs:
        values = t.array.reshape(-1)
        if rows not in (-1, len(values)):
            raise InvalidArgument("every entity key tensor must have the same number of elements")
        rows = len(values)
        if t.datatype == "BYTES":
            columns[t.name] = [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in values]
        elif t.datatype in ("INT32", "INT64"):
            columns[t.name] = [int(v) for v in values]
        else:
            raise InvalidArgument(f"entity key '{t.name}' must be BYTES or INT64, got {t.datatype}")
    return [{k: columns[k][i] for k in model.entity_keys} for i in range(rows)]


def build_input(
    model: OnnxModel, rows: list[list[FeatureCell]], *, policy: str, defaults: dict[str, float] | None = None
) -> tuple[np.ndarray[Any, Any], int]:
    """The model's single input matrix [rows, features] and the number of defaulted rows."""
    spec = model.inputs[0]
    names = model.feature_names
    matrix = np.empty((len(rows), len(names)), dtype=DTYPES[spec.datatype])
    defaulted = 0
    # A missing categorical is fed as training fed it: the unknown code.
    fallback = {name: c.unknown for name, c in model.categorical.items()} | (defaults or {})
    for i, row in enumerate(rows):
        flagged = False
        for j, cell in enumerate(row):
            value = cell.value
            if cell.flagged or value is None or (isinstance(value, float) and math.isnan(value)):
                if policy == "reject":
                    raise InvalidArgument(
                        f"feature '{names[j]}' is missing or expired for entity row {i}",
                        details={"feature": names[j], "row": str(i)},
                    )
                flagged = True
                value = fallback.get(names[j], math.nan if spec.datatype in ("FP32", "FP64") else 0.0)
            matrix[i, j] = value
        defaulted += flagged
    return matrix, defaulted


def _value(proto: types_pb2.Value) -> float | None:
    kind = proto.WhichOneof("kind")
    if kind == "double_value":
        return proto.double_value
    if kind == "int64_value":
        return float(proto.int64_value)
    if kind == "bool_value":
        return 1.0 if proto.bool_value else 0.0
    return None


def _code(proto: types_pb2.Value, kind: Categorical) -> float | None:
    """A categorical value's code; None (missing) when the value is empty. Numbers and booleans are
    labelled as training labelled them (`str()` of the value)."""
    which = proto.WhichOneof("kind")
    if which == "string_value":
        return kind.code(proto.string_value)
    if which == "int64_value":
        return kind.code(str(proto.int64_value))
    if which == "bool_value":
        return kind.code(str(proto.bool_value))
    if which == "double_value":
        return kind.code(str(proto.double_value))
    return None


class OnlineFeatures:
    """Adapter over FeaturesService.GetOnlineFeatures (gRPC)."""

    def __init__(self, address: str, *, timeout_seconds: float = 1.0) -> None:
        self.address = address
        self.timeout = timeout_seconds
        self._channel: grpc.aio.Channel | None = None
        self._stub: features_pb2_grpc.FeaturesServiceStub | None = None

    def _client(self) -> features_pb2_grpc.FeaturesServiceStub:
        if self._stub is None:
            self._channel = grpc.aio.insecure_channel(self.address)
            self._stub = features_pb2_grpc.FeaturesServiceStub(self._channel)  # type: ignore[no-untyped-call]
        return self._stub

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()

    async def fetch(self, model: OnnxModel, entities: list[dict[str, Any]]) -> list[list[FeatureCell]]:
        """One row of cells per entity, in the model's feature order."""
        request = features_pb2.GetOnlineFeaturesRequest()
        service = model.metadata.get(FEATURE_SERVICE_KEY)
        if service:
            request.feature_service = service
        else:
            request.feature_refs.refs.extend(model.feature_names)
        for row in entities:
            entity = request.entities.add()
            for key, value in row.items():
                if isinstance(value, int):
                    entity.join_keys[key].int64_value = value
                else:
                    entity.join_keys[key].string_value = str(value)
        try:
            response = await self._client().GetOnlineFeatures(request, timeout=self.timeout)
        except grpc.aio.AioRpcError as exc:  # translated, never forwarded
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                raise NotFound(f"features service: {exc.details()}") from None
            if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                raise InvalidArgument(f"features service refused the entities: {exc.details()}") from None
            raise Unavailable(f"features service unavailable ({exc.code().name})") from None
        columns = _column_index(list(response.feature_names), model.feature_names)
        kinds = model.feature_kinds
        out = []
        for vector in response.results:
            cells = []
            for j, kind in zip(columns, kinds, strict=True):
                fv = vector.values[j]
                value = _value(fv.value) if kind is None else _code(fv.value, kind)
                cells.append(FeatureCell(value, fv.status != PRESENT))
            out.append(cells)
        return out


def _column_index(served: list[str], wanted: tuple[str, ...]) -> list[int]:
    """Where each model feature is among the served `<view>:<feature>` names."""
    index = []
    for name in wanted:
        for j, ref in enumerate(served):
            if ref == name or ref.split(":", 1)[-1] == name.split(":", 1)[-1]:
                index.append(j)
                break
        else:
            raise FailedPrecondition(f"the features service did not return the model's feature '{name}'")
    return index
