"""Pure parts, in process: the cgroup-aware CPU limit, model references, the prediction-record encoding
(checked by parsing with the generated protobuf classes) and the missing-feature policy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from loopline_inference.cpu import cpu_limit
from loopline_inference.enrichment import FeatureCell, build_input
from loopline_inference.loader import ModelRef, parse_ref
from loopline_inference.model import Categorical, _categorical, load_model
from loopline_inference.predlog import Prediction, encode_records
from loopline_inference.tensors import Tensor

from loopline.events.v1 import predictions_pb2
from loopline_common.errors import InvalidArgument
from tests.inference.models import mlp_model


def test_cpu_limit_reads_cgroup_v2_and_v1(tmp_path: Path) -> None:
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cpu.max").write_text("150000 100000\n")
    assert cpu_limit(v2) == min(2, len(__import__("os").sched_getaffinity(0)))
    (v2 / "cpu.max").write_text("max 100000\n")
    assert cpu_limit(v2) >= 1
    v1 = tmp_path / "v1" / "cpu"
    v1.mkdir(parents=True)
    (v1 / "cpu.cfs_quota_us").write_text("50000")
    (v1 / "cpu.cfs_period_us").write_text("100000")
    assert cpu_limit(tmp_path / "v1") == 1


def test_model_references() -> None:
    assert parse_ref("fraud@champion") == ModelRef(name="fraud", alias="champion")
    assert parse_ref("models:/fraud@challenger") == ModelRef(name="fraud", alias="challenger")
    assert parse_ref("models:/fraud/3") == ModelRef(name="fraud", version=3)
    assert parse_ref("/mnt/models") == ModelRef(path="/mnt/models")
    with pytest.raises(InvalidArgument):
        parse_ref("models:/fraud@")


@pytest.mark.parametrize("rows", [1, 3, 12])
@pytest.mark.parametrize("with_entities", [False, True])
def test_prediction_records_parse_as_protobuf(rows: int, with_entities: bool) -> None:
    x = np.random.default_rng(rows).normal(size=(rows, 4)).astype(np.float32)
    y = np.random.default_rng(rows + 1).random((rows, 2)).astype(np.float32)
    prediction = Prediction(
        request_id="rid", time_ns=1_700_000_000_123_456_789, model_name="fraud", model_version=3,
        track="challenger", protocol="rest", status="ok", latency_us=250,
        inputs=[Tensor("input", "FP32", x)], feature_names=("a", "b", "c", "d"),
        outputs=[Tensor("label", "INT64", np.arange(rows)), Tensor("probabilities", "FP32", y)],
        entities=[{"customer_id": f"C{i}"} for i in range(rows)] if with_entities else None,
    )
    batch = predictions_pb2.PredictionLogBatch.FromString(encode_records(prediction))
    assert len(batch.records) == rows
    width = len(str(rows - 1))
    for i, record in enumerate(batch.records):
        assert record.request_id == ("rid" if rows == 1 else f"rid.{str(i).zfill(width)}")
        assert (record.model_name, record.model_version, record.track) == ("fraud", 3, predictions_pb2.TRACK_CHALLENGER)
        assert (record.time.seconds, record.time.nanos, record.latency_us) == (1_700_000_000, 123_456_789, 250)
        assert {k: v.double_value for k, v in record.features.items()} == dict(zip("abcd", x[i].tolist(), strict=True))
        assert record.outputs == {"label": i, "probabilities_0": float(y[i, 0]), "probabilities_1": float(y[i, 1])}
        assert dict(record.entity_ids) == ({"customer_id": f"C{i}"} if with_entities else {})


def test_missing_feature_policy(tmp_path: Path) -> None:
    model = load_model(name="m", version=1, source="test", data=mlp_model(tmp_path / "m.onnx", n_features=3)
                       .read_bytes(), threads=1)
    rows = [[FeatureCell(1.0, False), FeatureCell(None, True), FeatureCell(3.0, False)],
            [FeatureCell(4.0, False), FeatureCell(5.0, False), FeatureCell(6.0, True)]]
    matrix, defaulted = build_input(model, rows, policy="default", defaults={"f1": -1.0})
    assert defaulted == 2 and matrix[0, 1] == -1.0 and np.isnan(matrix[1, 2]) and matrix.dtype == np.float32
    with pytest.raises(InvalidArgument, match="f1"):
        build_input(model, rows, policy="reject")
    # A missing categorical feature is fed as training fed it: the unknown code, not NaN.
    model.categorical = {"f2": Categorical(codes={"a": 0.0}, unknown=-1.0)}
    matrix, defaulted = build_input(model, rows, policy="default")
    assert defaulted == 2 and np.isnan(matrix[0, 1]) and matrix[1, 2] == -1.0


def test_preprocessing_metadata_gives_categorical_codes() -> None:
    parsed = _categorical(json.dumps({"features": [
        {"name": "region", "kind": "categorical", "vocabulary": ["east", "north"], "unknown": -1.0},
        {"name": "amount", "kind": "numeric", "missing": "NaN"}]}))
    assert set(parsed) == {"region"}
    assert (parsed["region"].code("north"), parsed["region"].code("mars")) == (1.0, -1.0)
    assert _categorical("not json") == {} and _categorical(None) == {}


@pytest.mark.parametrize("request_id", ["", "call-1", "x" * 300])
@pytest.mark.parametrize("rows", [1, 7])
def test_raw_infer_response_from_the_cached_head_equals_protobuf_encoding(
    tmp_path: Path, request_id: str, rows: int
) -> None:
    """The gRPC raw answer (a cached serialized head plus `id` and the output bytes as wire fields) parses
    to the very message protobuf would build, also on a cache hit with another id and other values. The
    messages are NVIDIA's client's own (the same OIP wire format; in a process that imported tritonclient,
    KServe's copy of the same package cannot be registered)."""
    from loopline_inference.dataplane import InferRequest, InferResult
    from loopline_inference.grpc_api import OipServicer, _encode, _serialize
    from tritonclient.grpc import service_pb2 as m

    model = load_model(name="fraud", version=4, source="test", data=mlp_model(tmp_path / "m.onnx").read_bytes(),
                       threads=1)
    servicer = OipServicer.__new__(OipServicer)
    servicer.pb, servicer._heads = m, {}
    for seed in (0, 1):  # the second answer reuses the first one's head
        x = np.random.default_rng(seed).normal(size=(rows, model.inputs[0].shape[1])).astype(np.float32)
        outputs = model.run({model.inputs[0].name: x})
        result = InferResult(model=model, track="challenger", outputs=outputs, parameters={})
        request = InferRequest(model_name="fraud", model_version="", id=request_id + str(seed) * bool(request_id),
                               request_id="r", inputs=[], outputs=None, parameters={}, protocol="grpc", started=0.0)
        fast = m.ModelInferResponse.FromString(_serialize(servicer._raw_response(result, request)))
        assert fast == _encode(m, result, request, raw=True)
        assert fast.id == request.id and fast.parameters["track"].string_param == "challenger"
        assert np.frombuffer(fast.raw_output_contents[-1], dtype=np.float32).size == outputs[-1].array.size
    assert len(servicer._heads) == 1


def test_histogram_observe_many_counts_as_one_at_a_time() -> None:
    from loopline_inference.stats import SCORE_BUCKETS, _Histogram

    values = np.concatenate([np.random.default_rng(5).random(1000), np.array(SCORE_BUCKETS), [0.0, 2.0]])
    bulk, single = _Histogram(SCORE_BUCKETS), _Histogram(SCORE_BUCKETS)
    bulk.observe_many(values)
    for v in values:
        single.observe(float(v))
    assert bulk.counts == single.counts and sum(bulk.counts) == len(values)
    assert bulk.sum == pytest.approx(single.sum)
