"""Point-in-time feature values for the skew check, from the features service's offline store.

For the sampled predictions of a model version, one GetHistoricalFeatures call: one entity row per
prediction (its entity ids as join keys, its time as the event time, and a passthrough column numbering
the rows), for the feature service the version was trained on (from the registry's lineage). The service
answers with a parquet file, read here with pyarrow and matched back to the samples by that column.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from loopline.features.v1 import features_pb2, features_pb2_grpc
from loopline_common.errors import FailedPrecondition, Unavailable
from loopline_common.grpc_client import ServiceClient
from loopline_monitoring.skew import Value

ROW_COLUMN = "loopline_skew_row"


class FeaturesOffline:
    def __init__(
        self, *, target: str, token: str = "", timeout: float = 30.0, feature_service: Callable[[str, int], str]
    ) -> None:
        self.client = ServiceClient(service="features", target=target, token=token or None, timeout=timeout)
        self.stub = features_pb2_grpc.FeaturesServiceStub(self.client.channel)  # type: ignore[no-untyped-call]
        self._feature_service = feature_service
        self._services: dict[tuple[str, int], tuple[str, frozenset[str]]] = {}

    def _service_of(self, model_name: str, version: int) -> tuple[str, frozenset[str]]:
        """The version's feature service and the names of its features."""
        key = (model_name, version)
        if key not in self._services:
            name = self._feature_service(model_name, version)
            if not name:
                raise FailedPrecondition(f"{model_name} v{version} records no feature service in its lineage")
            described = self.client.call(
                self.stub.GetFeatureService, features_pb2.GetFeatureServiceRequest(name=name), idempotent=True
            )
            self._services[key] = (name, frozenset(f.name for f in described.feature_service.features))
        return self._services[key]

    def lookup(self, *, model_name: str, version: int, samples: list[dict[str, Any]]) -> list[dict[str, Value] | None]:
        service, feature_names = self._service_of(model_name, version)
        request = features_pb2.GetHistoricalFeaturesRequest(
            feature_service=service, dataset_name=f"monitoring-skew-{uuid.uuid4().hex[:12]}"
        )
        for i, sample in enumerate(samples):
            row = request.rows.add()
            row.event_time.FromNanoseconds(int(sample["time"] * 1e9))
            for key, value in sample["entity_ids"].items():
                row.values[key].string_value = value
            # Served inputs that are not features of the service are request data (e.g. the amount an
            # on-demand feature needs): they go along as they were served.
            for key, value in sample["served"].items():
                if key in feature_names or key in sample["entity_ids"] or value is None:
                    continue
                if isinstance(value, str):
                    row.values[key].string_value = value
                else:
                    row.values[key].double_value = value
            row.values[ROW_COLUMN].int64_value = i
        response = self.client.call(self.stub.GetHistoricalFeatures, request, idempotent=True)
        return _rows(response.uri, samples)

    def close(self) -> None:
        self.client.close()


def _rows(uri: str, samples: list[dict[str, Any]]) -> list[dict[str, Value] | None]:
    import pyarrow.parquet as pq  # type: ignore[import-untyped]  # only when skew is on: the file the features service wrote

    try:
        table = pq.read_table(uri)
    except (OSError, ValueError) as exc:
        raise Unavailable(f"features: cannot read the offline values at {uri}: {exc}") from None
    columns = table.column_names
    out: list[dict[str, Value] | None] = [None] * len(samples)
    data = table.to_pydict()
    for position, index in enumerate(data.get(ROW_COLUMN, [])):
        served = samples[int(index)]["served"]
        values: dict[str, Value] = {}
        for name in served:
            column = _column_for(name, columns)
            if column is None:
                continue
            value = data[column][position]
            values[name] = value if value is None or isinstance(value, str) else float(value)
        out[int(index)] = values
    return out


def _column_for(name: str, columns: list[str]) -> str | None:
    if name in columns:
        return name
    for column in columns:
        if column.endswith((f"__{name}", f":{name}")):
            return column
    return None

